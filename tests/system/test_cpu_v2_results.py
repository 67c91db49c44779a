"""docs/results/cpu-v2, the confirmatory reproduction, once it is committed: its rules were
fixed first (`rules_commit` an ancestor of the commit that added verdicts.json, every section
of docs/THEORY.md that existed at rules_commit unchanged between the two: sections added later
hold other rules), it meets the issue's floor, and `scripts/reproduce_v2.py
--report-only` over a copy of its runs/ regenerates its verdicts.json.

Until scripts/reproduce_v2.py has written that folder, every test here is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results" / "cpu-v2"
VERDICTS = RESULTS / "verdicts.json"
NOT_YET = ("docs/results/cpu-v2/verdicts.json does not exist yet: the confirmatory reproduction "
           "(scripts/reproduce_v2.py) has not landed")


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.fixture
def verdicts() -> dict:
    if not VERDICTS.exists():
        pytest.skip(NOT_YET)
    return json.loads(VERDICTS.read_text())


def _results_commit() -> str | None:
    """The commit that added verdicts.json (the first that did), or None while uncommitted."""
    added = _git("log", "--diff-filter=A", "--format=%H", "--", str(VERDICTS.relative_to(REPO)))
    commits = added.stdout.split()
    return commits[-1] if added.returncode == 0 and commits else None


def test_the_rules_were_committed_before_the_results(verdicts):
    rules = verdicts.get("rules_commit")
    assert rules and re.fullmatch(r"[0-9a-f]{40}", rules), rules
    try:
        inside = _git("rev-parse", "--is-inside-work-tree")
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("git is not available: the commits cannot be checked")
    if inside.returncode != 0:
        pytest.skip("not a git checkout (e.g. an unpacked archive): the commits cannot be checked")
    if _git("cat-file", "-e", f"{rules}^{{commit}}").returncode != 0:
        if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            pytest.skip(f"a shallow clone lacks rules_commit {rules[:12]}: run "
                        "`git fetch --unshallow` to check it")
        pytest.fail(f"rules_commit {rules} is not a commit of this repository")
    results = _results_commit()
    # Not committed yet: the commit that adds it will sit on HEAD, and THEORY.md is compared
    # with the working tree.
    target = results or "HEAD"
    assert _git("merge-base", "--is-ancestor", rules, target).returncode == 0, (
        f"rules_commit {rules[:12]} is not an ancestor of {target}")
    then = _git("show", f"{rules}:docs/THEORY.md").stdout
    now = (_git("show", f"{results}:docs/THEORY.md").stdout if results
           else (REPO / "docs" / "THEORY.md").read_text())
    changed = _programme().changed_sections(then, now)
    assert then and not changed, (
        f"docs/THEORY.md changed between rules_commit {rules[:12]} and the results: {changed}")


def _programme():
    sys.path.insert(0, str(REPO / "scripts"))
    return importlib.import_module("v2_programme")


def test_the_results_meet_the_issues_floor(verdicts):
    """P1 and P2 on the excess-risk scale against a control, at least 10 and 20 seeds at
    d = 2, every loop gated, no counted group holding a loop that missed, confirmatory.
    An interim report (committed part by part while the programme runs) is confirmatory too,
    but its seed counts are not yet the floor."""
    assert verdicts["programme"]["confirmatory"] is True
    if not verdicts["programme"]["finished"]:
        pytest.skip("docs/results/cpu-v2 holds an interim report: the programme has not finished")
    for number, floor in (("1", 10), ("2", 20)):
        v = verdicts["verdicts"][number]
        assert v["scale"] == "excess_risk" and v["control"], number
        assert v["seeds"] >= floor and v["design"]["seeds"] == floor, number
        for group in v["groups"]:  # a loop that missed is left out and counted, never read
            assert "missed_gate" in group["left_out"], (number, group["group"])
    gate = verdicts["ridge_gate"]
    assert gate["loops"] > 0 and gate["loops_reached"] >= 1


def _script():
    spec = importlib.util.spec_from_file_location("reproduce_v2",
                                                  REPO / "scripts" / "reproduce_v2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_only_over_a_copy_of_runs_regenerates_verdicts(verdicts, tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "report"))
    from test_regenerated_results import differences

    shutil.copytree(RESULTS / "runs", tmp_path / "runs")
    # a results folder other than the committed one: its README's table is rewritten, the
    # repository's README is not
    table = _results_table_module()
    copy = tmp_path / "results"
    copy.mkdir()
    (copy / "README.md").write_text(f"notes\n{table.BEGIN}\nSTALE ROW\n{table.END}\n")
    readme_before = (REPO / "README.md").read_text()
    assert _script().main(["--report-only", "--runs", str(tmp_path / "runs"), "--out",
                           str(tmp_path / "out"), "--results", str(copy), "--no-figures"]) == 0
    regenerated = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert differences(verdicts, regenerated) == []
    text = (copy / "README.md").read_text()
    assert "STALE ROW" not in text and table.results_table(copy)[-1] in text
    assert (REPO / "README.md").read_text() == readme_before


def _parts_table_module():
    sys.path.insert(0, str(REPO / "scripts"))
    import v2_parts_table

    return v2_parts_table


def test_the_readmes_parts_table_is_parts_json():
    """docs/results/cpu-v2/README.md's wall times are parts.json's, row for row."""
    module = _parts_table_module()
    state = json.loads((RESULTS / "parts.json").read_text())
    text = (RESULTS / "README.md").read_text()
    table = text.split(module.BEGIN, 1)[1].split(module.END, 1)[0].strip().splitlines()
    assert table == module.parts_table(state)
    finished = [p for p in state["parts"] if p.get("finished")]
    assert f"**{len(finished)} finished**" in table[-1]
    for part in finished:  # a finished part has a measured wall time in its row
        row = next(r for r in table if r.startswith(f"| {part['index']} |"))
        seconds = sum(i["seconds"] for i in part["invocations"])
        assert f"| {seconds / 60:.1f} |" in row


def test_the_parts_table_follows_its_state(tmp_path):
    module = _parts_table_module()
    state = json.loads((RESULTS / "parts.json").read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{module.BEGIN}\nold\n{module.END}\nafter\n")
    state["parts"][0]["invocations"][0]["seconds"] += 600.0
    assert module.refresh_readme(readme, state)
    text = readme.read_text()
    assert "old" not in text and text.startswith("before\n") and text.endswith("after\n")
    first = state["parts"][0]
    assert f"| {sum(i['seconds'] for i in first['invocations']) / 60:.1f} |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not module.refresh_readme(plain, state) and plain.read_text() == "no markers\n"


def _results_table_module():
    sys.path.insert(0, str(REPO / "scripts"))
    import results_table_v2

    return results_table_v2


def test_the_readmes_results_table_is_verdicts_json():
    module = _results_table_module()
    text = (RESULTS / "README.md").read_text()
    table = text.split(module.BEGIN, 1)[1].split(module.END, 1)[0].strip().splitlines()
    assert table == module.results_table(RESULTS)
    verdicts = json.loads(VERDICTS.read_text())["verdicts"]
    assert len(table) == 2 + len(verdicts)
    for number, v in verdicts.items():
        row = next(r for r in table if r.startswith(f"| P{number} |"))
        assert f"**{v['verdict']}**" in row


def test_a_judged_row_quotes_its_numbers(tmp_path):
    """A planted confirmed verdict: the row carries the estimate, interval, margin, seeds and
    MDE as verdicts.json holds them; a changed estimate changes the row."""
    module = _results_table_module()
    verdict = {"verdict": "confirmed", "rules_version": "v2", "estimate": 0.6123,
               "interval": [0.5011, 0.7235], "margin": 0.48, "n_seeds": 10,
               "min_detectable_effect": 0.0953, "statistic": "mean log contrast",
               "primary_group": "regime=from_scratch, n=10000"}
    (tmp_path / "verdicts.json").write_text(json.dumps({"verdicts": {"1": verdict}}))
    (row,) = module.results_table(tmp_path)[2:]
    assert "**confirmed**" in row and "regime=from_scratch, n=10000" in row
    assert "mean log contrast 0.612 [0.501, 0.724] against 0.48, 10 seeds, MDE 0.0953" in row
    verdict["estimate"] = 0.7
    (tmp_path / "verdicts.json").write_text(json.dumps({"verdicts": {"1": verdict}}))
    assert module.results_table(tmp_path)[2:] != [row]


def test_the_running_programme_can_resume_under_this_checkout(verdicts):
    """A resume compares docs/THEORY.md's sections with rules_commit's (a section added later
    is fine, a changed one refuses): the working tree must keep every section the programme
    started under, or the d = 2 programme could only resume from an old checkout."""
    rules = verdicts.get("rules_commit")
    if not (REPO / ".git").exists() or _git("cat-file", "-e", f"{rules}^{{commit}}").returncode:
        pytest.skip("needs the repository's history holding rules_commit")
    then = _git("show", f"{rules}:docs/THEORY.md").stdout
    now = (REPO / "docs" / "THEORY.md").read_text()
    assert then and _programme().changed_sections(then, now) == []


def test_the_repositorys_readme_leads_with_every_settings_results():
    """README.md's Results open with the block scripts/results_table_v2.py writes from the
    committed folders: one status line per setting (d = 2's from its verdicts.json and
    parts.json: interim or finished, the parts finished), then one row per prediction and
    setting that judges it, every verdict as its verdicts.json holds it."""
    module = _results_table_module()
    readme = (REPO / "README.md").read_text()
    assert readme.count(module.README_BEGIN) == 1 and readme.count(module.README_END) == 1
    block = readme.split(module.README_BEGIN, 1)[1].split(module.README_END, 1)[0]
    lines = block.strip("\n").splitlines()
    assert lines == module.readme_block()
    assert [s.name for s in module.SETTINGS] == ["d2", "d3", "p9"]
    assert module.SETTINGS[0].folder == RESULTS
    report = json.loads(VERDICTS.read_text())
    status = lines[0]
    finished = report["programme"]["finished"]
    assert status.startswith("- **d = 2** ([docs/results/cpu-v2](docs/results/cpu-v2/README.md)): "
                             + ("**Finished**" if finished else "**Interim**"))
    assert f"`programme.finished`: {str(finished).lower()}" in status
    parts = json.loads((RESULTS / "parts.json").read_text())["parts"]
    done = [p["index"] for p in parts if p.get("finished")]
    assert done and f"{min(done)}-{max(done)} finished" in status
    table = lines[lines.index("") + 1:]
    assert table == module.combined_table()
    for number, v in report["verdicts"].items():  # d = 2's rows: all but those it did not run
        rows = [r for r in table if r.startswith(f"| P{number} |") and "| d = 2 |" in r]
        assert len(rows) == (v["verdict"] != "not run")
        assert all(f"**{v['verdict']}**" in r for r in rows)
    for setting in module.SETTINGS[1:]:
        for number in setting.judges:
            assert sum(f"| {setting.label} |" in r for r in table
                       if r.startswith(f"| P{number} |")) == 1
    results = readme.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    paragraphs = results.strip().split("\n\n")
    assert paragraphs[1].startswith(module.README_BEGIN)  # after one intro, before the rest
    assert "](docs/results/cpu-v2/README.md)" in results


def _planted_settings(module, tmp_path, with_d3: bool):
    """The real d = 2 folder, and d3 / p9 folders under tmp_path: d3 holding a copy of d = 2's
    verdicts.json recast as the second setting's (P1 and P2 read, P6 planted as refuted, the
    others "not run") when `with_d3`, p9 none."""
    settings = tuple(module.Setting(s.name, s.label, s.folder if s.name == "d2"
                                    else tmp_path / s.name, s.judges, s.arm_names)
                     for s in module.SETTINGS)
    if with_d3:
        report = json.loads(VERDICTS.read_text())
        for number in list(report["verdicts"]):
            if number not in ("1", "2", "6"):
                report["verdicts"][number] = {"verdict": "not run", "why": "not here"}
        report["verdicts"]["6"] = {**report["verdicts"]["1"], "verdict": "refuted",
                                   "estimate": -0.25}
        (tmp_path / "d3").mkdir()
        (tmp_path / "d3" / "verdicts.json").write_text(json.dumps(report))
        shutil.copy2(RESULTS / "parts.json", tmp_path / "d3" / "parts.json")
    return settings


def test_the_combined_table_takes_each_prediction_from_the_settings_that_judge_it(tmp_path):
    """Before the second setting has a verdicts.json its predictions read "not started" and
    d = 2's "not run" rows give way to them; once it has one, its rows quote it (a planted P6
    verdict), and its predictions marked "not run" there add no row."""
    module = _results_table_module()
    before = module.combined_table(_planted_settings(module, tmp_path, with_d3=False))
    p6 = [r for r in before if r.startswith("| P6 |")]
    assert len(p6) == 1 and "| d = 3, σ = 0.25 | **not started** |" in p6[0]
    assert not any("**not run**" in r for r in before)
    assert sum(r.startswith("| P1 |") for r in before) == 2
    settings = _planted_settings(module, tmp_path, with_d3=True)
    after = module.combined_table(settings)
    p6 = [r for r in after if r.startswith("| P6 |")]
    assert len(p6) == 1 and "| d = 3, σ = 0.25 | **refuted** |" in p6[0] and "-0.25" in p6[0]
    assert sum(r.startswith("| P3 |") for r in after) == 1  # d3 does not run it
    (p1_d3,) = [r for r in after if r.startswith("| P1 |") and "| d = 3, σ = 0.25 |" in r]
    assert "**confirmed**" in p1_d3 and "1.02 [0.909, 1.14]" in p1_d3
    p9 = [r for r in after if r.startswith("| P9 |")]
    assert len(p9) == 1 and "**not started**" in p9[0] and "--setting p9" in p9[0]
    status = module.readme_block(settings)[:3]
    assert status[1].startswith("- **d = 3, σ = 0.25** (") and "**Interim**" in status[1]
    assert "not started" in status[2]


def test_only_the_committed_folders_rewrite_the_repositorys_readme(tmp_path):
    """`--report-only --results X` refreshes X/README.md, and README.md only when X is one of
    the settings' committed folders; the status line follows the programme's state."""
    module = _results_table_module()
    assert module.readmes_for(RESULTS) == [RESULTS / "README.md", REPO / "README.md"]
    for setting in module.SETTINGS:
        assert REPO / "README.md" in module.readmes_for(setting.folder) or not (
            REPO / "README.md").exists()
    copy = tmp_path / "cpu-v2"
    copy.mkdir()
    for name in ("verdicts.json", "parts.json"):
        shutil.copy2(RESULTS / name, copy / name)
    (copy / "README.md").write_text(f"notes\n{module.BEGIN}\nSTALE ROW\n{module.END}\n")
    assert module.readmes_for(copy) == [copy / "README.md"]
    assert module.refresh_readmes(copy) == [copy / "README.md"]
    text = (copy / "README.md").read_text()
    assert "STALE ROW" not in text and module.results_table(copy)[-1] in text
    report = json.loads(VERDICTS.read_text())
    report["programme"]["finished"] = True
    (copy / "verdicts.json").write_text(json.dumps(report))
    assert module.status_line(copy).startswith("**Finished**")
    assert module.status_line(copy) != module.status_line(RESULTS)


def test_an_interim_status_names_the_verdicts_that_cannot_change(tmp_path):
    """A rule whose arm has its full count read and every seed it ran through the horizon is
    settled; one seed short of either, it is not."""
    module = _results_table_module()
    report = json.loads(VERDICTS.read_text())
    report["programme"]["finished"] = False
    arms, verdicts = report["programme"]["arms"], report["verdicts"]
    for arm in ("p1", "p2"):
        arms[arm]["seeds_run"] = arms[arm]["seeds_finished"] = arms[arm]["seeds_listed"][
            :arms[arm]["count"]]
        verdicts[arm[1:]]["n_seeds"] = arms[arm]["count"]
    assert module.settled_rules(report) == ["1", "2"]
    arms["p2"]["seeds_finished"] = arms["p2"]["seeds_finished"][:-1]  # one still running
    verdicts["1"]["n_seeds"] -= 1  # read one seed short (a spare to come)
    assert module.settled_rules(report) == []
    arms["p2"]["seeds_finished"] = arms["p2"]["seeds_run"]
    (tmp_path / "verdicts.json").write_text(json.dumps(report))
    shutil.copy2(RESULTS / "parts.json", tmp_path / "parts.json")
    status = module.status_line(tmp_path)
    assert "Every loop P2 reads is through generation 8, so its verdict below" in status


def _reading(rule: str) -> str | None:
    """The hand-written reading of `rule` (e.g. "P1") in the results README, between its
    markers, on one line; None where there is none."""
    text = (RESULTS / "README.md").read_text()
    begin, end = f"<!-- {rule} reading: begin -->", f"<!-- {rule} reading: end -->"
    if begin not in text:
        return None
    return " ".join(text.split(begin, 1)[1].split(end, 1)[0].split())


def _judged_reading(verdicts: dict, number: str) -> tuple[dict, str | None]:
    """Prediction `number`'s verdict and its hand-written reading, which opens with the verdict
    and the seeds read; no reading only where the prediction was not tested."""
    verdict = verdicts["verdicts"][number]
    reading = _reading(f"P{number}")
    if reading is None:
        assert verdict["verdict"] == "not tested", (
            f"P{number} is judged: its reading belongs in the README")
    else:
        assert (f"**P{number} is {verdict['verdict']}** on its {verdict['n_seeds']} seeds"
                in reading)
    return verdict, reading


def test_the_p2_paragraph_quotes_verdicts_json(verdicts):
    """The hand-written reading of P2 under the results table: its verdict, its loops left
    out, and every decimal it quotes as verdicts.json's P2 numbers (or its planned MDE) hold
    them."""
    p2, reading = _judged_reading(verdicts, "2")
    if reading is None:
        return
    (group,) = [g for g in p2["groups"] if g["counted"]]
    left_out = group["left_out"]
    if f"none of its {2 * p2['n_seeds']} loops missed the gate or failed to train" in reading:
        assert left_out["missed_gate"] == left_out["training_failures"] == 0
    if "both of its conditions hold" in reading:
        assert group["parts"]["p1_statistic_below_delta_1"]["verdict"] == "confirmed"
    planned = f"{p2['design']['min_detectable_effect']:.3g}"
    decimals = re.findall(r"\d+\.\d+", reading)
    assert len(decimals) >= 9 and f"the plan expected {planned}" in reading
    for number in decimals:
        assert number in p2["numbers"] or number == planned, number


def test_the_p1_paragraph_quotes_verdicts_json(verdicts):
    """The hand-written reading of P1 under the results table: its verdict, the gate's count,
    and every decimal it quotes as verdicts.json's P1 numbers hold them."""
    p1, reading = _judged_reading(verdicts, "1")
    if reading is None:
        return
    gate = verdicts["ridge_gate"]
    assert f"{gate['loops_reached']} of {gate['loops']} loops reached the gate" in reading
    decimals = re.findall(r"\d+\.\d+", reading)
    assert len(decimals) >= 8
    for number in decimals:
        assert number in p1["numbers"], number
