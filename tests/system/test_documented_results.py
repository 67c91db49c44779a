"""Numbers quoted in README.md, docs/ and BENCHMARKS.md are the committed results they came from.

Each test names the page a number is quoted on: README.md (the version-2 rules and pilot; its
confirmatory results table is tests/system/test_cpu_v2_results.py's), docs/results/cpu/README.md
(the exploratory reproduction's results table and notes), docs/usage.md (training and the loop),
docs/reproduce.md (the demo, the reproduction's prose, the generator run) and docs/report.md
(the report's settings)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "docs" / "bench"
README = (REPO / "README.md").read_text()
USAGE = (REPO / "docs" / "usage.md").read_text()
REPRODUCE = (REPO / "docs" / "reproduce.md").read_text()
BENCHMARKS = (REPO / "BENCHMARKS.md").read_text()
RIDGE = ["ridge-demo-tiny-cpu-2026-11-30.json", "ridge-small-cpu-2026-11-30.json"]
ABLATION = "ablation-cpu-2026-11-30.json"
HEAD = "head-cpu-2026-12-02.json"


def _load(name: str) -> dict:
    return json.loads((BENCH / name).read_text())


def _run(case: str, data: str, recipe: str) -> dict:
    runs = [r for name in RIDGE for r in _load(name)["runs"]]
    return next(r for r in runs if (r["case"], r["data"], r["recipe"], r["seed"])
                == (case, data, recipe, 0))


def _script(name: str):
    """scripts/<name>.py imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _test_module(folder: str, name: str):
    """tests/<folder>/<name>.py imported as a module, whatever the tests already imported."""
    path = REPO / "tests" / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_documented_{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flat(text: str) -> str:
    return " ".join(text.split())  # quotes may wrap across lines


def _section(text: str, heading: str) -> str:
    """The flattened text under a Markdown heading, up to the next heading of any level."""
    start = text.index(heading + "\n") + len(heading)
    following = re.search(r"\n#{2,6} ", text[start:])
    return _flat(text[start:start + following.start()] if following else text[start:])


@pytest.mark.parametrize("case", ["demo", "tiny"])
def test_time_to_ridge_is_the_committed_run(case):
    run = _run(case, "fresh", "default")
    assert run["reached"]
    quoted = f"{run['steps']:,} steps, {run['seconds']:.1f} s"
    assert quoted in _flat(USAGE) and quoted in _flat(BENCHMARKS)
    garg = _run(case, "fresh", "garg")
    assert not garg["reached"]
    assert f"{100 * garg['gap_closed']:.0f}% of the gap" in _flat(BENCHMARKS)


@pytest.mark.parametrize("case", ["demo", "tiny"])
def test_finite_n_rows_are_the_committed_runs(case):
    run = _run(case, "n2000", "default")
    assert not run["reached"]
    flat = _flat(USAGE)
    assert f"not in {run['steps_run']:,} steps" in flat
    assert f"best test risk {run['best_risk']:.3f}" in flat
    assert f"{100 * run['gap_closed']:.0f}% of the gap".replace("-", "−") in flat


def test_quickstart_figures_are_the_committed_run():
    result = _load("quickstart-cpu-2026-12-02.json")
    s = result["summary"]
    assert s["reached_ridge"] and result["command"] == "icl-stl-train experiment=quickstart"
    flat = _flat(USAGE)
    assert f"takes {result['wall_seconds']:.1f} s" in flat
    assert (f"test risk {s['test_risk']:.3f}, against {s['ridge_risk']:.3f} for ridge and "
            f"{s['zero_risk']:.3f} for the zero predictor: {100 * s['gap_closed']:.0f}% of the "
            f"gap closed") in flat
    assert (f"predicted variance over realised squared error "
            f"{result['calibration']['head_var_ratio']:.2f}") in flat


def test_benchmarks_tables_are_printed_from_the_committed_json():
    tables = _script("ridge_tables")
    for name in RIDGE:
        for line in tables.ridge_table(_load(name)["runs"]):
            assert line in BENCHMARKS, line
    for line in tables.ablation_table(_load(ABLATION)["runs"]):
        assert line in BENCHMARKS, line
    for line in tables.ablation_table(_load(HEAD)["runs"]):
        assert line in BENCHMARKS, line


def test_speed_figures_are_the_committed_run():
    rows = _load("speed-cpu-2026-11-30.json")["training"]
    tiny = {(r["engine"], r["K"]): r for r in rows if r["size"] == "tiny"}
    native, garg = tiny[("native", 1)]["steps_per_s"], tiny[("garg_reference", 1)]["steps_per_s"]
    assert f"| tiny (3×4×64) | native | 1 | {native:.1f} | {native:.1f} | {native / garg:.2f}× |" \
        in BENCHMARKS


def test_demo_text_is_the_committed_demo_run():
    """docs/reproduce.md's demo numbers: wall times, the gate and the verdicts of
    docs/results/demo-cpu, and its main figure, the matched-control contrast."""
    demo = REPO / "docs" / "results" / "demo-cpu"
    timing = json.loads((demo / "demo_timing.json").read_text())
    seconds = timing["seconds"]
    idle = json.loads((demo / "demo_timing_idle.json").read_text())["seconds"]
    flat = _section(REPRODUCE, "## The demo (`make demo`)")
    assert f"took {seconds['total']:.0f} s of wall time" in flat
    assert f"otherwise idle machine took {idle['total']:.0f} s" in flat and idle["total"] < 300
    for part in ("collapse", "reference", "reference_drift"):
        assert f"| {seconds[part]:.0f} s |" in flat, part
    gate = timing["gate_gap_closed"]
    assert min(gate.values()) >= 0.93  # the demo's promise: every seed with room to spare
    assert (f"closes {100 * gate['0']:.1f}% (seed 0) and {100 * gate['1']:.1f}% (seed 1)"
            in flat)
    verdicts = json.loads((demo / "verdicts.json").read_text())
    ridge = verdicts["ridge_gate"]
    assert ridge["loops_reached"] == ridge["loops"]
    assert f"{ridge['loops_reached']} of {ridge['loops']} loops" in flat
    v = verdicts["verdicts"]
    assert [v[p]["verdict"] for p in "12"] == ["not tested"] * 2
    assert "needs a horizon of 8" in v["1"]["groups"][0]["numbers"]
    assert (demo / "figures" / "matched_01.png").exists()
    assert "](results/demo-cpu/figures/matched_01.png)" in REPRODUCE
    assert "](results/demo-cpu/figures/reference.png)" in REPRODUCE


def test_warm_start_figures_are_the_committed_run():
    (row,) = _load("warm-start-cpu-2026-11-30.json")["runs"]
    risks = [risk for _, _, risk in row["curve"]]
    quoted = (f"(worst {max(risks):.3f}, final {row['final_risk']:.3f}, threshold "
              f"{row['threshold']:.3f}")
    for text in (USAGE, BENCHMARKS):
        flat = _flat(text)
        assert quoted in flat
        assert f"at test risk {row['generation_0_risk']:.3f}" in flat or \
            f"reached test risk {row['generation_0_risk']:.3f}" in flat
        assert f"{100 * row['generation_0_gap_closed']:.0f}% of the gap" in flat
    assert row["reached"] and row["generation_1_final_reached"]
    assert max(risks) <= row["threshold"]  # "stayed past it for the whole budget"
    assert row["steps_run"] == row["loop_steps"]
    assert (f"passed the gate at its first evaluation (step {row['steps']}) and stayed past it "
            f"for its whole {row['loop_steps']:,}-step budget") in _flat(USAGE)


def test_head_figures_are_the_committed_run():
    runs = sorted(_load(HEAD)["runs"], key=lambda r: r["seed"])

    def steps(label: str) -> list[int]:
        return [r["steps"] for r in runs if r["change"].startswith(label)]

    half, mse = steps("Gaussian head, beta-NLL beta = 0.5"), steps("squared error")
    assert len(half) == len(mse) == 2 and half[0] == half[1]
    assert (f"reached ridge in as many steps: {half[0]:,} for seeds 0 and 1, against "
            f"{mse[0]:,} and {mse[1]:,} without it") in _flat(USAGE)


# ---------------------------------------------------------------------------------------------
# The generator run (docs/results/generator-cpu)

GENERATOR = REPO / "docs" / "results" / "generator-cpu"


def _generator_tables():
    module = _script("generator_table")
    return module, module.load(GENERATOR)


def _generator_section() -> str:
    return _section(REPRODUCE, "## The generator run")


def test_generator_tables_are_the_committed_run():
    module, records = _generator_tables()
    for line in module.risk_table(records) + module.ratio_table(records):
        assert line in REPRODUCE, line


def test_generator_run_shows_what_the_generator_issue_asks():
    """Generation 0 passed the gate with a head calibrated when pooled over positions, and
    generation 1's synthetic labels have 0.8-1.25 of the real variance at every position (the
    issue's 'must show')."""
    pooled_tolerance = _test_module("loop", "test_generator").POOLED_TOLERANCE
    _, records = _generator_tables()
    model = records["model"]
    gen0 = [r for r in model if r["generation"] == 0]
    assert all(r["reached_ridge"] for r in gen0)
    for r in gen0:
        assert 1 / pooled_tolerance < r["head_var_ratio"] < pooled_tolerance
    flat = _generator_section()
    per_position = [x for r in gen0 for x in r["head_var_ratio_per_position"]]
    assert f"per position {min(per_position):.2f}-{max(per_position):.2f}" in flat
    for r in (r for r in model if r["generation"] == 1):
        assert all(0.8 <= x <= 1.25 for x in r["syn_label_var_ratio_per_position"])
    closed = sorted({round(100 * r["gap_closed"]) for r in gen0})
    heads = sorted({f"{r['head_var_ratio']:.2f}" for r in gen0})
    assert f"closed {closed[0]}% and {closed[1]}% of the zero-to-ridge gap" in flat
    assert f"realised squared error {heads[0]} and {heads[1]} on fresh prompts" in flat


def test_the_heads_stated_tolerance_is_the_tested_one():
    """docs/usage.md states the calibration tolerance tests/loop/test_generator.py checks."""
    module = _test_module("loop", "test_generator")
    assert (f"within {100 * (module.POOLED_TOLERANCE - 1):.0f}% pooled over positions and within "
            f"a factor {module.POSITION_FACTOR} at every position") in _flat(USAGE)


def test_generator_drift_quoted_is_the_committed_run():
    _, records = _generator_tables()
    model = records["model"]

    def mean_risk(lam: float, generation: int) -> float:
        return sum(r["test_risk"] for r in model if r["real_fraction"] == lam
                   and r["generation"] == generation) / 2

    rise = mean_risk(0.0, 5) / mean_risk(0.0, 0) - 1
    last = sorted(r["syn_label_var_ratio"] for r in model
                  if r["real_fraction"] == 0.0 and r["generation"] == 5)
    flat = _generator_section()
    assert f"At λ = 0 risk rose {100 * rise:.0f}% over five generations" in flat
    assert f"(variance ratio {last[0]:.2f} by generation 5) and the other's spreading " \
           f"({last[1]:.2f})" in flat
    summary = json.loads((GENERATOR / "verdicts.json").read_text())
    assert {v["verdict"] for k, v in summary["verdicts"].items() if k in ("1", "2")} == \
        {"underpowered"}
    assert "With two seeds every verdict is **underpowered**" in flat


def test_generator_results_readme_numbers_are_the_committed_run():
    _, records = _generator_tables()
    model = records["model"]
    text = _flat((GENERATOR / "README.md").read_text())
    gen1 = [r for r in model if r["generation"] == 1]
    ratios = [x for r in gen1 for x in r["syn_label_var_ratio_per_position"]]
    oracle = [x for r in records["oracle"] if r["generation"] == 1
              for x in r["syn_label_var_ratio_per_position"]]
    assert f"within {min(ratios):.2f}-{max(ratios):.2f} of real labels" in text
    assert f"(the oracle's: {min(oracle):.2f}-{max(oracle):.2f})" in text
    half = [r["syn_label_var_ratio"] for r in model if r["real_fraction"] == 0.5
            and r["generation"] > 0]
    assert f"within {min(half):.2f}-{max(half):.2f} at every generation" in text


# ---------------------------------------------------------------------------------------------
# The CPU reproduction (docs/results/cpu)

CPU = REPO / "docs" / "results" / "cpu"


def _data_show() -> str:
    return _section(REPRODUCE, "### What the data show")


def _cpu_notes() -> str:
    return (CPU / "README.md").read_text()


def test_the_exploratory_results_are_the_committed_reproduction():
    """docs/results/cpu/README.md's Results block (table, legend, gate line) is exactly what
    scripts/results_table.py prints from verdicts.json, which `--report-only` writes there."""
    module = _script("results_table")
    notes = _cpu_notes()
    assert notes.count(module.BEGIN) == 1 and notes.count(module.END) == 1
    block = notes.split(module.BEGIN, 1)[1].split(module.END, 1)[0].strip("\n").splitlines()
    assert block == module.readme_block(CPU)
    for line in module.results_table(CPU) + module.legend(CPU) + [module.gate_line(CPU)]:
        assert line in block, line
    assert f"`{module.COMMON}`" in notes
    assert "](REPORT.md)" in _section(notes, "## Results")


def test_the_exploratory_table_follows_its_verdicts(tmp_path):
    """refresh_readme rewrites only the block, from the folder's verdicts.json: a changed
    estimate changes the row; a README without the markers is left alone."""
    module = _script("results_table")
    shutil.copy2(CPU / "verdicts.json", tmp_path / "verdicts.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{module.BEGIN}\nold\n{module.END}\nafter\n")
    assert module.refresh_readme(readme, tmp_path)
    text = readme.read_text()
    assert "old" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert text.split(module.BEGIN)[1].split(module.END)[0].strip().splitlines() == \
        module.readme_block(CPU)
    report = json.loads((CPU / "verdicts.json").read_text())
    report["verdicts"]["7"]["estimate"] = -0.5
    (tmp_path / "verdicts.json").write_text(json.dumps(report))
    assert module.readme_block(tmp_path) != module.readme_block(CPU)
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not module.refresh_readme(plain, tmp_path) and plain.read_text() == "no markers\n"


def test_reproduce_report_only_writes_the_table_into_its_results_folder(tmp_path, capsys):
    """scripts/reproduce.py's --results step rewrites the table in that folder's README (never
    the repository's); verdicts the readings were not written for leave it as it was, saying
    so."""
    module, reproduce = _script("results_table"), _script("reproduce")
    shutil.copy2(CPU / "verdicts.json", tmp_path / "verdicts.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"notes\n{module.BEGIN}\nSTALE ROW\n{module.END}\n")
    before = (REPO / "README.md").read_text()
    reproduce.refresh_results_readme(tmp_path)
    assert readme.read_text() == (f"notes\n{module.BEGIN}\n"
                                  + "\n".join(module.readme_block(CPU)) + f"\n{module.END}\n")
    assert (REPO / "README.md").read_text() == before
    report = json.loads((CPU / "verdicts.json").read_text())
    report["verdicts"]["1"]["primary_group"] = "another setting"
    (tmp_path / "verdicts.json").write_text(json.dumps(report))
    kept = readme.read_text()
    reproduce.refresh_results_readme(tmp_path)
    assert readme.read_text() == kept and "left as it was" in capsys.readouterr().out


def test_the_readme_and_the_exploratory_results_are_short_and_said_once():
    """README.md at most 200 lines, no paragraph twice in it or in the exploratory notes, and
    no group label of the exploratory table over 40 characters."""
    module = _script("results_table")
    assert len(README.splitlines()) <= 200
    for text in (README, _cpu_notes()):
        paragraphs = [_flat(p) for p in text.split("\n\n") if p.strip()]
        repeated = {p for p in paragraphs if paragraphs.count(p) > 1}
        assert not repeated, repeated
    rows = module.results_table(CPU)[2:]
    assert len(rows) == len(module.PREDICTIONS) == 8  # one row per prediction
    for row in rows:
        group = row.split(" | ")[3]
        assert len(group) <= module.SHORT_NAME_LIMIT == 40, group
    assert _cpu_notes().count("Training gate:") == 1
    assert "Training gate:" not in README  # the exploratory table lives in its folder


def test_the_exploratory_reproduction_is_labelled_and_linked():
    """README.md leads with the confirmatory programme and links the exploratory reproduction
    in one labelled paragraph; that folder's notes say at the top that they are exploratory and
    why, linking docs/THEORY.md section 8."""
    results = _section(README, "## Results")
    assert "confirmatory" in results.split("**Exploratory")[0]
    assert results.count("**Exploratory: the first CPU reproduction**") == 1
    assert "](docs/results/cpu/README.md)" in results
    assert "| P1 | λ = 0: risk grows (collapse) |" not in README
    top = _flat(_cpu_notes().split("\n## ", 1)[0])
    assert "**Exploratory.**" in top and "Evidence design, version 2" in top
    assert "](../../THEORY.md#8-evidence-design-version-2)" in top
    assert "](../cpu-v2/README.md)" in top and "confirmatory" in top


def test_results_prose_quotes_the_committed_verdicts():
    """The numbers docs/reproduce.md says in words come from verdicts.json."""
    verdicts = json.loads((CPU / "verdicts.json").read_text())
    v = verdicts["verdicts"]
    section = _data_show()
    rise = math.expm1(v["1"]["estimate"])
    assert f"(+{100 * rise:.1f}% over six)" in section and v["1"]["n_seeds"] == 5
    assert f"judged against a {100 * math.expm1(v['1']['margin']):.0f}% rise" in section
    assert v["2"]["ordering"]["verdict"] == "confirmed"  # "larger λ gives a lower one"
    assert f"slope of log γ against log n: {v['3']['estimate']:.2f})" in section
    gammas = v["3"]["numbers"].split("gamma at generation 4: n=1000: ")[1].split(";")[0]
    small, large = float(gammas.split(",")[0]), float(gammas.split("n=10000: ")[1])
    assert round(small / large) == 10 and "falls tenfold from n = 1,000 to 10,000" in section
    ceiling = float(v["3"]["numbers"].split("gamma / chaos ceiling n=1000: ")[1].split(",")[0])
    assert f"n = 1,000 one replaced prompt moves the model almost as far as another batch " \
           f"order does ({ceiling:.2f} of the chaos ceiling)" in section
    assert "(n=1000: 160, n=10000: 16)" in v["3"]["numbers"]
    assert "saw S_0 ten times as often at n = 1,000 as at 10,000" in section
    low, high = v["4"]["interval"]
    assert f"n^{v['4']['estimate']:.2f} [{low:.2f}, {high:.2f}]" in section
    floor = float(v["4"]["numbers"].split("fit E_inf ")[1].split(" ")[0])
    assert floor < 0 and "the fitted floor is negative" in section
    assert "n=10000: m*=0 " in v["5"]["numbers"] and "(m* = 0)" in section
    at_10k = {("batch 128" if "batch_size=128" in r["group"] else "batch 64"): r["gap_closed"]
              for r in verdicts["ridge_gate"]["rows"]
              if r["n"] == 10_000 and "learner=transformer" in r["group"]
              and "n_tasks" not in r["group"]}  # a pool's gate is read on the pool's tasks
    assert f"closed {100 * at_10k['batch 128']:.1f}% of the zero-to-ridge gap in the collapse " \
           f"part (batch 128) and {100 * at_10k['batch 64']:.1f}% in the other parts" in section


def test_warm_start_against_from_scratch_is_the_committed_runs():
    section = _section(REPRODUCE, "### Warm start against from scratch")
    for line in _script("results_table").regimes_table(CPU, REPO / "docs/results/generator-cpu"):
        assert _flat(line) in section, line


def test_the_reproduction_names_what_ran():
    timing = json.loads((CPU / "timing.json").read_text())
    section = _section(REPRODUCE, "## The CPU reproduction (`make reproduce`)")
    for part, seconds in timing["seconds_per_part"].items():
        assert f"{part}: {seconds / 60:.0f} min" in section, part
    notes = (CPU / "README.md").read_text()
    for part in timing["seconds_per_part"]:  # the commit each part's summaries were written at
        summaries = sorted((CPU / "runs" / part).rglob("summary.json"))
        assert summaries, part
        for path in summaries:
            summary = json.loads(path.read_text())
            assert summary["code"]["git_commit"][:7] in notes, path


def test_results_prose_of_the_new_predictions_quotes_the_committed_runs():
    """P6-P8's numbers in docs/reproduce.md's words come from verdicts.json and the filter runs."""
    report = json.loads((CPU / "verdicts.json").read_text())
    v, settings = report["verdicts"], report["settings"]
    section = _data_show()
    groups = {g["group"].split("n=10000, ")[-1]: g for g in v["6"]["groups"]}
    assert f"{100 * v['6']['estimate']:.1f}% of the plateau per generation" in section
    unfiltered = v["7"]["collapse"]["groups"][0]["parts"]["constant_zero"]["estimate"]
    assert f"against {100 * unfiltered:.1f}% for the unfiltered λ = 0 loop" in section
    assert f"drifted {100 * groups['filter=confidence, keep=0.5']['estimate']:.1f}% per " \
           f"generation ({groups['filter=confidence, keep=0.5']['verdict']})" in section
    plateaus = v["6"]["quality"]["numbers"].split("log verifier_n_real 1.39: ")[1]
    weak, full = plateaus.split(", 9.21: ")[0], plateaus.split(", 9.21: ")[1].split(";")[0]
    assert f"(plateaus {weak} and {full})" in section and v["6"]["quality"]["verdict"] == "refuted"

    def ratio(name: str) -> float:
        recs = json.loads((CPU / "runs" / "filters" / name / "summary.json").read_text())
        last = [r["syn_label_var_ratio"] for r in recs["generations"] if r["generation"] == 6]
        return sum(last) / len(last)

    assert f"had {ratio('verifier'):.2f} of the real labels' variance ({ratio('confidence'):.2f}" \
           f" with the confidence filter)" in section
    p7 = v["7"]
    assert f"ends {-100 * p7['estimate']:.1f}% below" in section
    decaying, constant = p7["numbers"].split("decaying ")[1].split(", constant ")
    assert f"(window risk {decaying} against {constant.split(';')[0]})" in section
    assert f"well inside ±{100 * settings['p7_margin']:.0f}%" in section
    zero = p7["collapse"]
    assert f"refuted at its {100 * settings['p7_collapse_margin']:.0f}% per generation margin" \
        in section and zero["verdict"] == "refuted"
    assert f"rises {100 * zero['estimate']:.1f}% per generation, close to the constant λ = 0 " \
           f"loop's {100 * zero['groups'][0]['parts']['constant_zero']['estimate']:.1f}%" in section
    p8 = v["8"]["numbers"]
    assert "M=2: 1.48 (5 seeds); M=16: -0.42" in p8 and "(log distance ratio 1.48;" in section
    assert "M = 16 closer to ridge (-0.42)" in section
    assert "(a) at M=2: 1.48 [0.616, 2.35] (underpowered" in p8
    assert "log rise at M=2 0.0431 against M=null 0.0926" in p8
    assert "difference -0.0495 [-0.0707, -0.0283] (refuted)" in p8
    assert "(log rise 0.043 over six generations) and at M = null (0.093) differ by -0.050 " \
           "[-0.071, -0.028]" in section


def test_the_exploratory_notes_state_the_setting_and_gate_from_its_records():
    """The setting docs/results/cpu/README.md's Results section names is the one every part's
    summaries record, and the gate it states is the tolerance verdicts.json applied."""
    results = _section(_cpu_notes(), "## Results")
    settings = [json.loads(path.read_text())["settings"]
                for path in sorted((CPU / "runs").rglob("summary.json"))]
    transformer = [s for s in settings if s["loop"]["learner"] == "transformer"]
    assert transformer and {(s["task"]["d"], s["task"]["k"], s["model"]["n_layer"],
                             s["model"]["n_embd"], s["train"]["steps"], s["loop"]["init"],
                             s["loop"]["steps"]) for s in transformer} == \
        {(2, 6, 3, 64, 2500, "warm_start", 200)}
    assert ("tiny GPT-2 at d = 2, k = 6: generation 0 trained 2,500 steps from scratch on S_0, "
            "later generations warm-started for 200 steps") in results
    report = json.loads((CPU / "verdicts.json").read_text())
    assert {v["n_seeds"] for v in report["verdicts"].values()} == {report["settings"]["min_seeds"]}
    assert f"{report['settings']['min_seeds']} seeds per prediction" in results
    tolerance = report["ridge_gate"]["tolerance"]
    assert (f"closes at least {100 * (1 - tolerance):.0f}% of the zero-to-ridge gap on fresh "
            f"prompts (test − ridge ≤ {tolerance:g} × (zero − ridge))") in results
    largest = {row["n"]: row["reached"] for row in report["ridge_gate"]["rows"]}
    assert max(largest) == 10_000 and largest[10_000]
    assert "largest n, n = 10,000, where it passed" in results


def test_the_exploratory_notes_quote_the_reread_they_came_from():
    """docs/results/cpu/README.md's version-2 re-read is reread_v2.json, which the script
    regenerates byte for byte from the committed collapse records."""
    assert _script("reread_exploratory").main(["--check"]) == 0
    data = json.loads((REPO / "docs/results/cpu/reread_v2.json").read_text())
    text = _flat(_cpu_notes())
    for lam in ("0", "0.5"):
        row = data["lambdas"][lam]
        for key in ("mean_log_contrast", "slope_per_generation"):
            est, (lo, hi) = row[key]["estimate"], row[key]["interval"]
            assert f"{est:.3f} [{lo:.3f}, {hi:.3f}]" in text, (lam, key)


def test_readme_quotes_the_version_2_rules_and_pilot_they_came_from():
    pilot = REPO / "docs/results/pilot-v2"
    sizing = json.loads((pilot / "sizing.json").read_text())
    contrasts = json.loads((pilot / "pilot.json").read_text())["lambdas"]
    text = _flat(README)
    assert f"δ₁ = {sizing['delta_1']:g}" in text
    assert f"slope margin of {sizing['delta_2']:g} per generation" in text
    assert f"{sizing['seeds_p1']} seeds for P1 and {sizing['seeds_p2']} for P2" in text
    for lam in ("0", "0.5"):
        quoted = ", ".join(f"{c:.3f}" for c in contrasts[lam]["contrast_mean_by_generation"])
        assert quoted in text, lam


def test_the_exploratory_notes_say_how_todays_gate_reads_them():
    """docs/results/cpu/README.md's note on the per-loop gate matches the changes the
    regeneration test requires."""
    regenerated = (REPO / "tests/report/test_regenerated_results.py").read_text()
    for before, number in (("not applicable", "3"), ("confirmed", "4"), ("inconclusive", "5")):
        assert f'"{number}": ("{before}", "underpowered", SEED0)' in regenerated, number
    assert "closed 89.5% " in regenerated
    text = _flat(_cpu_notes())
    assert "closed 89.5% of the gap" in text and "P3, P4 and P5 read **underpowered**" in text


def test_the_compiled_engine_figures_are_the_committed_ab_run():
    ab = _load("engine-ab-cpu-2026-12-06.json")
    flat = _flat(BENCHMARKS)
    lo, hi = ab["ratio_interval_95"]
    assert f"Median ratio {ab['median_ratio']:.2f}× [{lo:.2f}, {hi:.2f}]" in flat
    assert len(ab["rounds"]) >= 8 and ab["median_ratio"] >= 1.5
    rates = ab["median_member_steps_per_s"]
    assert f"{rates['old']:.1f} → {rates['new']:.1f} member steps/s" in flat
    for arm in ("old", "new"):  # each arm imported its own checkout
        assert ab[arm]["module"].startswith(ab[arm]["root"])
        assert all(r[arm]["module"] == ab[arm]["module"] for r in ab["rounds"])
    for r in ab["rounds"]:
        assert f"| {r['old']['member_steps_per_s']:.1f} | {r['new']['member_steps_per_s']:.1f} " \
               f"| {r['ratio']:.3f} |" in BENCHMARKS


def _theory_section(heading: str) -> str:
    text = (REPO / "docs" / "THEORY.md").read_text()
    start = text.index(heading)
    following = re.search(r"^#{1,3} ", text[start + len(heading):], flags=re.M)
    return _flat(text[start:start + len(heading) + following.start()] if following
                 else text[start:])


def _testability(number: str) -> str:
    from icl_stl.report.untestable import NOT_TESTABLE_ON_CPU

    return _flat(NOT_TESTABLE_ON_CPU[number].reason)


def test_p3_version_2_pilot_numbers_are_the_committed_pilot():
    """docs/report.md, docs/results/pilot-p3-v2/README.md, THEORY.md section 8.4 and the
    verdict a confirmatory programme gives P3 quote the dose-response pilot's pilot.json."""
    pilot = json.loads((REPO / "docs/results/pilot-p3-v2/pilot.json").read_text())["s2500_g0"]
    row = pilot["lambdas"]["0"]
    noise = pilot["sizing"]["noise"]
    dists = ", ".join(f"{v:.4f}" for v in row["sq_dist_by_q"][0])
    chaos = f"{row['chaos_sq_dist'][0]:.4f}"
    results = _flat((REPO / "docs/results/pilot-p3-v2/README.md").read_text())
    theory = _theory_section("### 8.4 P3, version 2")
    for text in (_flat((REPO / "docs" / "report.md").read_text()), results, theory):
        assert dists.replace(", 0.12", " and 0.12") in text or dists in text
        assert chaos in text
        assert f"{noise['sigma_relative']:.2f}" in text
        assert f"{noise['sigma_relative_upper90']:.2f}" in text
    reason = _testability("3")
    assert f"{noise['sigma_relative']:.2f} of the slope" in reason
    assert f"upper bound {noise['sigma_relative_upper90']:.2f}" in reason
    assert " and ".join(f"{b:.2f}" for b in pilot["generation_0_slope"]) in results
    assert f"{row['slope_origin_mean'][0]:.2f}" in results
    assert f"{row['w2_sq_slope_mean'][0]:.2f}" in results
    gate = pilot["gap_closed_generation_0"]
    assert f"{100 * gate['min']:.1f}-{100 * gate['max']:.1f}%" in results
    sizing = pilot["sizing"]
    power10 = f"{100 * sizing['by_seeds']['point']['10']['power']:.0f}%"
    assert f"10 seeds give {power10}" in results and f"10 seeds give {power10}" in theory
    assert sizing["seeds_for_80_percent_point"] == 10
    assert sizing["seeds_for_80_percent_upper90"] == 80
    assert "10 seeds for 80% power (80 at the upper bound)" in reason


def test_p4_version_2_pilot_numbers_are_the_committed_pilot():
    """THEORY.md section 8.5 and the "not testable" reason quote the P4 pilot's pilot.json,
    and the pilot's own decision is the one they state."""
    pilot = json.loads((REPO / "docs/results/pilot-p4-v2/pilot.json").read_text())
    assert pilot["testable"] is False
    theory, reason = _theory_section("### 8.5 P4, version 2"), _testability("4")
    for n, row in pilot["per_n"].items():
        closed = " and ".join(f"{100 * g:.0f}%" for g in row["gap_closed"]).replace("-0%", "0%")
        assert f"| {int(n):,} | {closed} |" in theory, (n, closed)
    learning = pilot["learning_ns"]
    decades = math.log10(max(learning) / min(learning))
    quoted = f"{len(learning)} n over {decades:.2f} decades ({min(learning):,} to {max(learning):,})"
    assert quoted in theory and quoted in reason
    assert f"{len(learning)} n over {decades:.2f} decades" in pilot["decision"]
    readme = _flat((REPO / "docs/results/pilot-p4-v2/README.md").read_text())
    for n, row in pilot["per_n"].items():
        closed = ", ".join(f"{100 * g:.1f}%" for g in row["gap_closed"])
        steps = ", ".join(f"{s:,}" for s in row["stopped_step"])
        assert f"| {int(n):,} | {closed} | {steps} |" in readme, n
    assert quoted in readme
    assert f"cap of {pilot['setting']['step_cap']:,} steps" in theory
    assert f"{pilot['stopped_at_cap']} of the larger n stopped at the cap".capitalize() \
        .replace("3 of", "Three of") in theory


def test_p5_version_2_pilot_numbers_are_the_committed_pilot():
    """THEORY.md section 8.6 and the "not testable" reason quote the P5 pilot's pilot.json."""
    pilot = json.loads((REPO / "docs/results/pilot-p5-v2/pilot.json").read_text())
    theory, reason = _theory_section("### 8.6 P5, version 2"), _testability("5")
    curve = ", ".join(f"{v:.2f}" for v in pilot["log_excess_model"][0])
    assert curve.rsplit(", ", 1)[0] + " and " + curve.rsplit(", ", 1)[1] in theory
    for arm, text in (("model", reason), ("model", theory), ("oracle", theory)):
        ends = pilot[arm]["high_end_per_seed"]
        assert all(e < 0 for e in ends), "the pre-stated 'falls and flattens' outcome"
        assert " and ".join(f"{-e:.2f}" for e in ends) in text, arm
    gates = " and ".join(f"{100 * g:.1f}%" for g in pilot["gap_closed_generation_0"])
    assert f"({gates})" in theory
    at_zero = [v for k, v in pilot["gap_closed_generation_1"].items() if " m=0 " in k]
    assert f"{100 * min(at_zero):.0f}-{100 * max(at_zero):.0f}%" in theory
    assert len(pilot["failures"]) == 1 and "one of them is a training failure" in theory
    assert pilot["steps"]["0"] == [1000] and "1,000 steps per n prompts" in theory
    readme = _flat((REPO / "docs/results/pilot-p5-v2/README.md").read_text())
    assert ", ".join(f"{v:.2f}" for v in pilot["log_excess_model"][0]) in readme
    for arm in ("model", "oracle"):
        ends = " and ".join(f"{-e:.2f}" for e in pilot[arm]["high_end_per_seed"])
        assert f"{arm}: {ends} below" in readme
        assert f"{pilot[arm]['vertex_of_mean']:.1f} ({arm})" in readme
    assert f"({gates} of the gap)" in readme


@pytest.mark.parametrize("d", [2, 5])
def test_the_k_scaling_rows_are_the_committed_runs(d):
    rows = {}
    for tag in ("", "-compiled"):
        run = _load(f"kscaling-d{d}{tag}-cpu-2026-12-06.json")
        rows[tag] = {r["K"]: r for r in run["training"] if r["engine"] == "native"}
        assert all(r["compile"] == (tag == "-compiled") for r in rows[tag].values())
    for K in (1, 8, 32, 64):
        ref, fast = rows[""][K]["member_steps_per_s"], rows["-compiled"][K]["member_steps_per_s"]
        assert f"| {K} | {ref:.1f} | {fast:.1f} | {fast / ref:.2f}× |" in BENCHMARKS


def test_the_second_settings_gate_scan_is_the_committed_scan():
    """BENCHMARKS.md's table of the d = 3 gate scan quotes docs/bench/gate-scan-d3-*.json."""
    (path,) = sorted((REPO / "docs" / "bench").glob("gate-scan-d3-cpu-*.json"))
    scans = json.loads(path.read_text())["scans"]
    section = _flat(BENCHMARKS[BENCHMARKS.index("### The second setting: the gate at d = 3"):])
    for scan in scans:
        closed = ", ".join(f"{100 * loop['gap_closed']:.1f}%" for loop in scan["loops"])
        row = f"| {scan['steps']:,} | {scan['members']} | {closed} | {scan['seconds']:,.0f} s |"
        assert row in section, row
        assert all("task.d=3" in scan["overrides"] and "task.noise_std=0.25" in scan["overrides"]
                   for scan in scans)
    passed = [loop["gap_closed"] >= 0.9 for scan in scans for loop in scan["loops"]]
    assert 0 < sum(passed) < len(passed)


def test_p10_version_2_pilot_numbers_are_the_committed_pilot():
    """THEORY.md section 8.8 and the "not testable" reason quote the P10 pilot's pilot.json and
    sizing.json, and the pilot's own reading is the pre-stated "no dip"."""
    results = REPO / "docs/results/pilot-p10"
    pilot = json.loads((results / "pilot.json").read_text())
    sizing = json.loads((results / "sizing.json").read_text())
    theory, reason = _theory_section("### 8.8 P10, version 2"), _testability("10")
    assert pilot["testable"] is False
    fresh = pilot["sources"]["fresh"]
    model = np.array(fresh["model"]["log_excess"])
    oracle = np.array(fresh["oracle"]["log_excess"])
    curve = [f"{v:.2f}" for v in model.mean(0)]
    assert ", ".join(curve[:-1]) + " and " + curve[-1] in theory
    assert int(np.argmin(model.mean(0))) == len(curve) - 1  # "lowest at w = 1"
    ends = fresh["model"]["high_end_per_seed"]
    assert all(e < 0 for e in ends)
    for text in (theory, reason):
        assert " and ".join(f"{-e:.2f}" for e in ends) in text
        assert f"{fresh['model']['curvature']:.2f}" in text
        gap = (model.mean(0) - oracle.mean(0))[:-1]  # w <= 0.75
        assert f"{gap.min():.2f}-{gap.max():.2f} above" in text
    assert "seeds 9601 and 9602" in reason and pilot["seeds_read"] == [9601, 9602]
    gates = sorted({g["gap_closed"]["model"] for g in pilot["gate"]})
    assert " and ".join(f"{100 * g:.1f}%" for g in gates) in theory
    assert pilot["gate_passed"] == {"loops": 20, "reached": 20, "readable": 20}
    reuse = pilot["sources"]["reuse"]["model"]["high_end_per_seed"]
    assert f"w = 1 end\n  {-reuse[0]:.2f}".replace("\n  ", " ") in theory
    assert f"{-reuse[1]:.2f} below" in theory
    assert f"{pilot['kappa']['reuse']['model']:.2f} times the reference's" in theory
    direction = pilot["direction"]
    assert f"{direction['estimate']:.3f} (90% interval {direction['interval'][0]:.2f} to " \
           f"{direction['interval'][1]:.2f})" in theory
    assert f"sigma = {sizing['sigma']:.3f}" in theory
    rates = sizing["interior_optimum_confirmed"]
    assert f"{100 * rates['stated_effect']['10']:.1f}% of draws" in theory
    assert f"flat truth in {100 * rates['flat']['10']:.2f}%" in theory
    assert all(v == 0.0 for v in rates["pilot_fresh_curve"].values())
    times = [float(t) for t in re.findall(r"^\| (?:fresh|reuse)_w[\d.]+ \| (\d+) \|", (results / "README.md")
                                          .read_text(), flags=re.M)]
    assert len(times) == 10 and f"{min(times) / 60:.0f}-{max(times) / 60:.0f} minutes" in theory


def _pilot_and_theory(folder: str, heading: str) -> tuple[Path, dict, dict, str]:
    """A pilot's results folder, its pilot.json and sizing.json, and the THEORY section that
    quotes them."""
    results = REPO / "docs/results" / folder
    return (results, json.loads((results / "pilot.json").read_text()),
            json.loads((results / "sizing.json").read_text()), _theory_section(heading))


def test_p6_version_2_pilot_numbers_are_the_committed_pilot():
    """THEORY.md section 8.9 and the rule's settings quote the P6 pilot's pilot.json and
    sizing.json."""
    from icl_stl.report.rules import ReportConfig

    results, pilot, sizing, theory = _pilot_and_theory("pilot-p6", "### 8.9 P6, version 2")
    cfg = ReportConfig()
    assert cfg.v2_p6_delta == sizing["delta_6"] and f"-δ_6 = -{sizing['delta_6']:.2f}" in theory

    def seq(values):
        return ", ".join(f"{v:.2f}" for v in values)

    assert seq(pilot["unfiltered_pair"]["contrast_mean_by_generation"]) in theory
    assert f"log(1 + {sizing['collapse_beta']:.3f} g)" in theory
    inter = pilot["interaction"]
    assert seq(inter["residual"]["interaction_mean_by_generation"]) in theory
    assert seq(inter["residual"]["interaction_per_seed"]) in theory
    assert seq(inter["density_ratio"]["interaction_mean_by_generation"]) in theory
    co = pilot["coprimary"]["filters"]
    for scale in ("calibration", "spread"):
        for name in ("residual", "density_ratio"):
            assert seq(co[name][scale]["mean_by_generation"]) in theory
    assert f"{co['residual']['calibration']['mean']:.2f} and " \
           f"{co['residual']['spread']['mean']:.2f}" in theory
    noise, joint = sizing["noise"], sizing["joint"]
    assert f"σ = {noise['sigma']:.3f} and τ = {noise['tau']:.3f}" in theory
    for scale in ("calibration", "spread"):
        n = joint["noise"][scale]
        assert f"σ = {n['sigma']:.3f}, τ = {n['tau']:.3f} ({scale})" in theory
    ten = str(cfg.v2_p6_seeds)
    power = sizing["power"]
    beta = f"{sizing['collapse_beta']:.3g}"
    assert f"{100 * power[f'removes the collapse (-log(1 + {beta} g))'][ten]['confirmed']:.1f}%" \
        in theory
    assert f"{100 * power['at the margin (-delta_6)'][ten]['confirmed']:.1f}%" in theory
    rates = joint["rates"]
    at_margins = rates["removes the collapse, co-primary at the margins"][ten]["confirmed"]
    residual_cost = rates["removes the collapse at residual's co-primary cost"][ten]["refuted"]
    assert f"in {100 * at_margins:.2f}%" in theory
    assert f"refuted in {100 * residual_cost:.1f}%" in theory
    assert f"({sizing['readable_share']}) {sizing['seeds_to_list'][ten]} seeds" in theory
    last = {arm: pilot["curves"][arm]["model"] for arm in ("residual", "unfiltered")}
    z2 = np.mean([last["residual"][s]["head_z2"][3] for s in ("9701", "9702", "9704", "9705")])
    cov = np.mean([last["residual"][s]["kept_cov_ratio"][3] for s in ("9701", "9702", "9704",
                                                                        "9705")])
    assert f"z^2 {z2:.1f}" in theory and f"{cov:.2f} of real's covariance trace" in theory
    gates = {g["seed"]: g for g in pilot["gate"] if g["arm"] == "unfiltered"}
    assert f"closed {100 * gates[9703]['gap_closed']['model']:.1f}% of the gap" in theory
    assert sum(g["readable"] for g in gates.values()) == 7 and "7 of 8 passed" in theory


def test_the_d3_gate_pass_counts_in_benchmarks_are_the_pilots():
    """BENCHMARKS.md's later screens of the d = 3 recipe quote the two pilots' gates."""
    d3 = json.loads((REPO / "docs/results/pilot-v2-d3/pilot.json").read_text())["gate"]
    p6 = [g for g in json.loads((REPO / "docs/results/pilot-p6/pilot.json").read_text())["gate"]
          if g["arm"] == "unfiltered"]
    closed_d3 = {g["seed"]: g["gap_closed"]["model"] for g in d3}
    closed_p6 = {g["seed"]: g["gap_closed"]["model"] for g in p6}
    text = _flat((REPO / "BENCHMARKS.md").read_text())
    passed_d3 = sum(v >= 0.9 for v in closed_d3.values())
    passed_p6 = sum(v >= 0.9 for v in closed_p6.values())
    assert passed_d3 == len(closed_d3) == 6 and f"{len(closed_d3)} seeds" in text
    assert f"{100 * min(closed_d3.values()):.1f}-{100 * max(closed_d3.values()):.1f}%" in text
    assert f"passed {passed_p6} of {len(closed_p6)}" in text
    assert f"{100 * min(closed_p6.values()):.1f}-{100 * max(closed_p6.values()):.1f}%" in text
    assert f"{passed_d3 + passed_p6} of {len(closed_d3) + len(closed_p6)}" in text


def test_p9_version_2_pilot_numbers_are_the_committed_pilot():
    """THEORY.md section 8.10 and P9's settings quote the P9 pilot's pilot.json and
    sizing.json."""
    from icl_stl.report.rules import ReportConfig

    results, pilot, sizing, theory = _pilot_and_theory("pilot-p9", "### 8.10 P9, version 2")
    cfg = ReportConfig()

    def seq(values):  # rounded as the text writes them: no "-0.00"
        return ", ".join(f"{round(v, 2) + 0.0:.2f}" for v in values)

    primary, replace = pilot["arms"]["accumulate_s0"], pilot["arms"]["replace"]
    gaps = [lp["gap_closed"]["model"] for lp in primary["loops"]]
    assert f"{100 * gaps[0]:.1f}% and {100 * gaps[1]:.1f}% of the gap" in theory
    pair = pilot["between_arms"]["accumulate_s0 vs replace"]
    assert seq(pair["log_ratio_against_twin_mean"][1:]) in theory
    assert seq(pair["reference_learner"]["log_ratio_against_twin"][1:]) in theory
    noise = pair["noise_log_ratio_against_twin"]
    assert f"σ = {noise['sigma']:.3f} per generation ({noise['sigma_dof']} degrees of freedom)," \
           f" τ = {noise['tau']:.3f} per seed ({noise['tau_dof']})" in theory
    assert seq(primary["log_contrast_mean"][1:]) in theory
    assert f"σ = {primary['noise']['log_contrast']['sigma']:.3f}" in theory
    trend = primary["oracle_twin_trend"]
    assert f"{trend['estimate']:.3f} per generation (90% interval {trend['interval'][0]:.2f} " \
           f"to {trend['interval'][1]:.2f})" in theory
    contrast = replace["log_contrast_mean"]
    assert f"{contrast[1]:.2f} to {contrast[-1]:.2f}" in theory
    model = {arm: np.mean(list(part["bayes_excess"]["model"].values()), axis=0)
             for arm, part in pilot["arms"].items()}
    assert f"to {model['replace'][-1]:.3f} at generation 8" in theory
    assert f"{model['accumulate_s0'][1:].min():.3f}-{model['accumulate_s0'][1:].max():.3f}" \
        in theory
    assert f"rose to {model['volume_matched'][-1]:.3f}" in theory
    assert f"{model['accumulate'][1:].min():.3f}-{model['accumulate'][1:].max():.3f}" in theory
    between = pilot["between_arms"]
    assert f"lay {-pair['log_ratio_model_mean'][-1]:.2f} below" in theory
    assert f"(reference learner {-pair['reference_learner']['log_ratio_model'][-1]:.2f})" \
        in theory
    vm = between["volume_matched vs accumulate_s0"]
    assert f"lay {vm['log_ratio_model_mean'][-1]:.2f} above" in theory
    assert f"puts it {-vm['reference_learner']['log_ratio_model'][-1]:.2f} below" in theory
    acc = between["accumulate vs accumulate_s0"]
    assert f"lay {acc['log_ratio_model_mean'][-1]:.2f} above it (reference learner " \
           f"{acc['reference_learner']['log_ratio_model'][-1]:.2f})" in theory
    twin = sizing["controls"]["replace_twin"]["truths"]
    power = twin["reference_learner"]["rates_by_seeds"]
    assert f"{100 * power['10']['confirmed']:.1f}% of draws at 10 seeds, " \
           f"{100 * power['15']['confirmed']:.1f}% at 15 and " \
           f"{100 * power['20']['confirmed']:.1f}% at 20" in theory
    margins = [twin[k]["rates_by_seeds"]["20"]["confirmed"]
               for k in ("slope_plus_delta_2", "slope_minus_delta_2", "flat_at_delta_1")]
    assert f"{100 * min(margins):.1f}-{100 * max(margins):.1f}% at 20 seeds" in theory
    sens = sizing["sensitivity"]
    assert f"({sens['sigma_upper_90']:.3f}), 20 seeds confirm the bounded drift in " \
           f"{100 * sens['rates_by_seeds']['20']['confirmed']:.1f}%" in theory
    assert sens["rates_by_seeds"]["20"]["confirmed"] > 0.85 and "above 85%" in theory
    own = sizing["controls"]["oracle_twin"]["truths"]
    assert all(r["refuted"] == 1.0 for r in own["reference_learner"]["rates_by_seeds"].values())
    assert f"only {100 * own['bounded']['rates_by_seeds']['20']['confirmed']:.1f}% at 20 seeds" \
        in theory
    assert cfg.v2_p9_seeds == 20 and "with 20 seeds (`v2_p9_seeds`)" in theory
    assert cfg.v2_p9_horizon == sizing["horizon"] == 12
