"""Numbers quoted in README.md and BENCHMARKS.md are the committed results they came from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "docs" / "bench"
README = (REPO / "README.md").read_text()
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


def _flat(text: str) -> str:
    return " ".join(text.split())  # quotes may wrap across lines


@pytest.mark.parametrize("case", ["demo", "tiny"])
def test_readme_time_to_ridge_is_the_committed_run(case):
    run = _run(case, "fresh", "default")
    assert run["reached"]
    quoted = f"{run['steps']:,} steps, {run['seconds']:.1f} s"
    assert quoted in _flat(README) and quoted in _flat(BENCHMARKS)
    garg = _run(case, "fresh", "garg")
    assert not garg["reached"]
    assert f"{100 * garg['gap_closed']:.0f}% of the gap" in _flat(BENCHMARKS)


@pytest.mark.parametrize("case", ["demo", "tiny"])
def test_readme_finite_n_rows_are_the_committed_runs(case):
    run = _run(case, "n2000", "default")
    assert not run["reached"]
    flat = _flat(README)
    assert f"best test risk {run['best_risk']:.3f}" in flat
    assert f"{100 * run['gap_closed']:.0f}% of the gap".replace("-", "−") in flat


def test_quickstart_figures_are_the_committed_run():
    result = _load("quickstart-cpu-2026-12-02.json")
    s = result["summary"]
    assert s["reached_ridge"] and result["command"] == "icl-stl-train experiment=quickstart"
    flat = _flat(README)
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
    """The README's demo numbers: wall times, the gate and the verdicts of docs/results/demo-cpu."""
    demo = REPO / "docs" / "results" / "demo-cpu"
    seconds = json.loads((demo / "demo_timing.json").read_text())["seconds"]
    flat = _flat(README)
    assert f"Total {seconds['total']:.0f} s of wall time" in flat
    assert f"in about {seconds['total'] / 60:.0f} minutes" in flat
    for part in ("collapse", "reference"):
        assert f"| {seconds[part]:.0f} s |" in flat, part
    verdicts = json.loads((demo / "verdicts.json").read_text())
    gate = verdicts["ridge_gate"]
    assert gate["reached"] == gate["groups"]  # the demo's promise: every group at ridge
    (transformer,) = [row for row in gate["rows"] if "learner=transformer" in row["group"]]
    assert f"closes {100 * transformer['gap_closed']:.1f}% of the zero-to-ridge gap" in flat
    assert f"(the transformer's: {100 * transformer['gap_closed']:.1f}% of the gap, one seed of " \
           f"the two alone)" in flat and transformer["seeds_reached"] == 1
    v = verdicts["verdicts"]
    assert [v[p]["verdict"] for p in "12345"] == ["underpowered"] * 2 + ["not tested"] * 3
    assert "risk 0.309 -> 0.326 over 3 generations" in v["1"]["numbers"]
    assert "drifts from 0.309 to 0.326 over 3 generations" in flat
    assert "docs/results/demo-cpu/figures/reference.png" in README


def test_warm_start_figures_are_the_committed_run():
    (row,) = _load("warm-start-cpu-2026-11-30.json")["runs"]
    risks = [risk for _, _, risk in row["curve"]]
    quoted = (f"(worst {max(risks):.3f}, final {row['final_risk']:.3f}, threshold "
              f"{row['threshold']:.3f}")
    for text in (README, BENCHMARKS):
        flat = _flat(text)
        assert quoted in flat
        assert f"at test risk {row['generation_0_risk']:.3f}" in flat or \
            f"reached test risk {row['generation_0_risk']:.3f}" in flat
        assert f"{100 * row['generation_0_gap_closed']:.0f}% of the gap" in flat
    assert row["reached"] and row["steps"] == 50 and row["generation_1_final_reached"]
    assert max(risks) <= row["threshold"]  # "stayed past it for the whole budget"
    assert row["steps_run"] == row["loop_steps"] == 5000


def test_head_figures_in_the_readme_are_the_committed_run():
    runs = sorted(_load(HEAD)["runs"], key=lambda r: r["seed"])

    def steps(label: str) -> list[int]:
        return [r["steps"] for r in runs if r["change"].startswith(label)]

    half, mse = steps("Gaussian head, beta-NLL beta = 0.5"), steps("squared error")
    assert len(half) == len(mse) == 2 and half[0] == half[1]
    assert (f"reached ridge in as many steps: {half[0]:,} for seeds 0 and 1, against "
            f"{mse[0]:,} and {mse[1]:,} without it") in _flat(README)


# ---------------------------------------------------------------------------------------------
# The generator run (docs/results/generator-cpu)

GENERATOR = REPO / "docs" / "results" / "generator-cpu"


def _generator_tables():
    module = _script("generator_table")
    return module, module.load(GENERATOR)


def test_generator_tables_in_the_readme_are_the_committed_run():
    module, records = _generator_tables()
    for line in module.risk_table(records) + module.ratio_table(records):
        assert line in README, line


def test_generator_run_shows_what_the_generator_issue_asks():
    """Generation 0 passed the gate with a head calibrated when pooled over positions, and
    generation 1's synthetic labels have 0.8-1.25 of the real variance at every position (the
    issue's 'must show')."""
    from test_generator import POOLED_TOLERANCE

    _, records = _generator_tables()
    model = records["model"]
    gen0 = [r for r in model if r["generation"] == 0]
    assert all(r["reached_ridge"] for r in gen0)
    for r in gen0:
        assert 1 / POOLED_TOLERANCE < r["head_var_ratio"] < POOLED_TOLERANCE
    per_position = [x for r in gen0 for x in r["head_var_ratio_per_position"]]
    assert f"per position {min(per_position):.2f}-{max(per_position):.2f}" in _flat(README)
    for r in (r for r in model if r["generation"] == 1):
        assert all(0.8 <= x <= 1.25 for x in r["syn_label_var_ratio_per_position"])
    flat = _flat(README)
    closed = sorted({round(100 * r["gap_closed"]) for r in gen0})
    heads = sorted({f"{r['head_var_ratio']:.2f}" for r in gen0})
    assert f"closed {closed[0]}% and {closed[1]}% of the zero-to-ridge gap" in flat
    assert f"realised squared error {heads[0]} and {heads[1]} on fresh prompts" in flat


def test_generator_drift_quoted_in_the_readme_is_the_committed_run():
    _, records = _generator_tables()
    model = records["model"]

    def mean_risk(lam: float, generation: int) -> float:
        return sum(r["test_risk"] for r in model if r["real_fraction"] == lam
                   and r["generation"] == generation) / 2

    rise = mean_risk(0.0, 5) / mean_risk(0.0, 0) - 1
    last = sorted(r["syn_label_var_ratio"] for r in model
                  if r["real_fraction"] == 0.0 and r["generation"] == 5)
    flat = _flat(README)
    assert f"At λ = 0 risk rose {100 * rise:.0f}% over five generations" in flat
    assert f"(variance ratio {last[0]:.2f} by generation 5) and the other's spreading " \
           f"({last[1]:.2f})" in flat
    summary = json.loads((GENERATOR / "verdicts.json").read_text())
    assert {v["verdict"] for k, v in summary["verdicts"].items() if k in ("1", "2")} == \
        {"underpowered"}


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


def test_readme_results_are_the_committed_reproduction():
    """Every verdict and number of the README's Results table is verdicts.json's."""
    module = _script("results_table")
    for line in module.results_table(CPU):
        assert line in README, line
    assert module.gate_line(CPU) in README


def test_results_prose_quotes_the_committed_verdicts():
    """The numbers the Results section says in words come from verdicts.json."""
    verdicts = json.loads((CPU / "verdicts.json").read_text())
    v = verdicts["verdicts"]
    section = _flat(README[README.index("## Results"):README.index("## Two commands")])
    assert f"slope of log γ against log n: {v['3']['estimate']:.2f})" in section
    ceiling = float(v["3"]["numbers"].split("gamma / chaos ceiling n=1000: ")[1].split(",")[0])
    assert f"n = 1,000 one replaced prompt moves the model almost as far as another batch " \
           f"order does ({ceiling:.2f} of the chaos ceiling)" in section
    low, high = v["4"]["interval"]
    assert f"n^{v['4']['estimate']:.2f} [{low:.2f}, {high:.2f}]" in section
    assert "n=10000: m*=0 " in v["5"]["numbers"] and "(m* = 0)" in section
    at_10k = {("batch 128" if "batch_size=128" in r["group"] else "batch 64"): r["gap_closed"]
              for r in verdicts["ridge_gate"]["rows"]
              if r["n"] == 10_000 and "learner=transformer" in r["group"]
              and "n_tasks" not in r["group"]}  # a pool's gate is read on the pool's tasks
    assert f"closed {100 * at_10k['batch 128']:.1f}% of the zero-to-ridge gap in the collapse " \
           f"part (batch 128) and {100 * at_10k['batch 64']:.1f}% in the other parts" in section
    for line in _script("results_table").regimes_table(CPU, REPO / "docs/results/generator-cpu"):
        assert line.strip() in README, line


def test_results_lead_the_readme_and_name_what_ran():
    assert README.index("## Results") < README.index("## A quick tour")
    timing = json.loads((CPU / "timing.json").read_text())
    section = _flat(README[README.index("## Results"):README.index("## A quick tour")])
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
    """P6-P8's numbers in the README's words come from verdicts.json and the filter runs."""
    v = json.loads((CPU / "verdicts.json").read_text())["verdicts"]
    section = _flat(README[README.index("## Results"):README.index("## Two commands")])
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
    zero = p7["collapse"]
    assert f"rises {100 * zero['estimate']:.1f}% per generation, close to the constant λ = 0 " \
           f"loop's {100 * zero['groups'][0]['parts']['constant_zero']['estimate']:.1f}%" in section
    p8 = v["8"]["numbers"]
    assert "M=2: 1.48 (5 seeds); M=16: -0.42" in p8 and "(log distance ratio 1.48;" in section
    assert "(a) at M=2: 1.48 [0.616, 2.35] (underpowered" in p8
    assert "log rise at M=2 0.0431 against M=null 0.0926" in p8
    assert "difference -0.0495 [-0.0707, -0.0283] (refuted)" in p8
    assert "(log rise 0.043 over six generations) and at M = null (0.093) differ by -0.050 " \
           "[-0.071, -0.028]" in section
