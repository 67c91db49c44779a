"""The report reads any run it can read, the same way every time: uneven generations are named
and never crash it, copied loops count once, and the order of runs and records never changes a
verdict. Runs are written the way the CLIs write them (no model is trained here)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_report import SEEDS, SETTINGS, K, healthy, loops, record, write_loop

from icl_stl.cli.report import main as report_main
from icl_stl.persistence import atomic_write_json
from icl_stl.report.collect import load_runs, loop_records, settings_by_path
from icl_stl.report.figures import position_change
from icl_stl.report.report import write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.report.tidy import tidy_rows
from icl_stl.runs.plots import plot_positions

REPO = Path(__file__).resolve().parents[2]

# Planted records without oracle-labelled twins: P1 and P2 read by the version-1 rules.
V1 = ReportConfig(rules="v1")


def cli_report(tmp_path: Path) -> dict:
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "report"),
                        "--set", "rules=v1"]) == 0
    return json.loads((tmp_path / "report" / "verdicts.json").read_text())


# ---------------------------------------------------------------------------------------------
# Uneven generations


def short_lambda(recs: list[dict]) -> list[dict]:
    """lambda = 0.5 stops one generation before the others."""
    return [r for r in recs if not (r["real_fraction"] == 0.5 and r["generation"] == 6)]


def long_seed(recs: list[dict]) -> list[dict]:
    """Seed 0 at lambda = 0.5 runs one generation further than the others."""
    return recs + [record(0, 0.5, 40, 7, healthy(0.5, 0, 7))]


@pytest.mark.parametrize("uneven, differ", [
    (short_lambda, {f"seed {s}, λ=0.5, n=40": "0-5" for s in SEEDS}),
    (long_seed, {"seed 0, λ=0.5, n=40": "0-7"}),
])
def test_uneven_generations_are_named_and_never_crash_the_report(tmp_path, uneven, differ):
    write_loop(tmp_path / "runs" / "a", uneven(loops(healthy)))
    data = cli_report(tmp_path)
    (group,) = data["uneven_groups"]
    assert group["group"] == "n=40, m=0" and group["generations"] == "0-6"
    assert {d["loop"]: d["generations"] for d in group["differ"]} == differ
    assert any(w.startswith("uneven generations in group n=40, m=0") for w in data["warnings"])
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## Warnings about the input" in text and "uneven generations in group n=40" in text
    assert list((tmp_path / "report" / "figures").glob("positions_*.png"))


def test_a_lambda_that_stopped_early_keeps_its_position_curve():
    change = position_change(short_lambda(loops(healthy)))
    assert sorted(change) == [0.0, 0.5, 1.0]
    assert change[0.5][3] == (0, 5) and change[0.0][3] == (0, 6)
    assert change[0.5][2] == len(SEEDS)


def test_a_curve_without_positions_is_left_out_of_the_position_plot(tmp_path):
    """A mean over no records is a bare nan, not a curve: the plot leaves it out."""
    good = {"per_position": [0.3] * K, "ci_low": [0.2] * K, "ci_high": [0.4] * K}
    empty = {"per_position": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    path = plot_positions({"generation 0": good, "generation 6, λ = 0.5": empty, "ridge": good},
                          tmp_path / "p.png")
    assert path.stat().st_size > 1000


def test_a_report_without_uneven_groups_lists_none(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy))
    data = cli_report(tmp_path)
    assert data["uneven_groups"] == [] and data["warnings"] == [] and data["copied_loops"] == []
    assert "Warnings about the input" not in (tmp_path / "report" / "REPORT.md").read_text()


# ---------------------------------------------------------------------------------------------
# Copied loops


def members_of(records: list[dict], s0) -> list[dict]:
    """summary.json's `members`: one per loop, with its S_0 fingerprint s0(seed, n)."""
    keys = sorted({(r["seed"], r["real_fraction"], r["n"], r["augment"]) for r in records})
    return [{"seed": s, "real_fraction": lam, "n": n, "augment": m, "tag": "", "s0": s0(s, n)}
            for s, lam, n, m in keys]


def write_with_members(run_dir: Path, records: list[dict], s0) -> None:
    write_loop(run_dir, records)
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["members"] = members_of(records, s0)
    atomic_write_json(path, summary)


def test_loops_copied_under_other_seeds_count_once(tmp_path):
    """Five seeds, and the same five loops copied under seeds 10-14 (same S_0): five seeds."""
    recs = loops(healthy, seeds=range(5))
    write_with_members(tmp_path / "runs" / "a", recs, lambda s, n: f"S0-{s}-{n}")
    copied = [{**r, "seed": r["seed"] + 10} for r in recs]
    write_with_members(tmp_path / "runs" / "b", copied, lambda s, n: f"S0-{s - 10}-{n}")
    data = cli_report(tmp_path)
    assert data["verdicts"]["1"]["n_seeds"] == 5 and data["verdicts"]["2"]["n_seeds"] == 5
    assert len(data["copied_loops"]) == 15  # 5 seeds x 3 lambdas
    assert {(c["kept_seed"], tuple(c["seeds"])) for c in data["copied_loops"]} == {
        (s, (s, s + 10)) for s in range(5)}
    warnings = [w for w in data["warnings"] if w.startswith("copied loops counted once")]
    assert len(warnings) == 5 and "seed(s) 10 have the same S_0 (fingerprint S0-0-40)" in \
        warnings[0]
    assert "copied loops counted once" in (tmp_path / "report" / "REPORT.md").read_text()


def test_records_carrying_their_own_s0_are_merged_too_and_distinct_s0_are_not(tmp_path):
    recs = loops(healthy, seeds=range(5))
    write_loop(tmp_path / "runs" / "a", [{**r, "s0": f"S0-{r['seed']}"} for r in recs])
    write_loop(tmp_path / "runs" / "b", [{**r, "seed": r["seed"] + 10, "s0": f"S0-{r['seed']}"}
                                         for r in recs])
    assert cli_report(tmp_path)["verdicts"]["1"]["n_seeds"] == 5
    shutil.rmtree(tmp_path / "runs" / "b")
    write_loop(tmp_path / "runs" / "b", [{**r, "seed": r["seed"] + 10,
                                          "s0": f"S0-{r['seed'] + 10}"} for r in recs])
    data = cli_report(tmp_path)
    assert data["verdicts"]["1"]["n_seeds"] == 10 and data["copied_loops"] == []


# ---------------------------------------------------------------------------------------------
# Order


def rewrite_in_order(src: Path, dst: Path, order) -> list[Path]:
    """Copy the run directories under `src` to `dst`, every list of records (summary.json's
    generations and members, stability.json's per_seed) put in `order`; returns the run
    directories in `order` too (each passed to the report on its own)."""
    shutil.copytree(src, dst)
    for path in sorted(dst.rglob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        for key in ("generations", "members", "per_seed"):
            if isinstance(data.get(key), list):
                data[key] = order(data[key])
        path.write_text(json.dumps(data))
    return order(sorted({p.parent for p in dst.rglob("summary.json")}
                        | {p.parent for p in dst.rglob("decay.json")}))


def shuffled(seed: int):
    def order(items: list) -> list:
        items = list(items)
        random.Random(seed).shuffle(items)
        return items
    return order


def test_the_order_of_runs_and_records_never_changes_a_verdict(tmp_path):
    """The committed CPU reproduction (every prediction judged) read as written, shuffled and
    reversed: verdicts.json is the same to the last digit."""
    src = REPO / "docs" / "results" / "cpu" / "runs"
    texts = []
    for name, order in (("asis", list), ("shuffled", shuffled(7)),
                        ("reversed", lambda items: list(reversed(items)))):
        root = tmp_path / name
        paths = rewrite_in_order(src, root / "runs", order)
        write_report(paths, root / "report", V1, figures=False)
        text = (root / "report" / "verdicts.json").read_text()
        texts.append(text.replace(str(root), "ROOT"))
        csv = (root / "report" / "runs.csv").read_text().replace(str(root), "ROOT")
        texts.append(csv)
    assert texts[0] == texts[2] and texts[0] == texts[4], "verdicts.json depends on the order"
    assert texts[1] == texts[3] and texts[1] == texts[5], "runs.csv depends on the order"
    verdicts = json.loads(texts[0])["verdicts"]
    assert all(v["verdict"] != "not tested" for v in verdicts.values())


def test_duplicate_records_of_one_loop_are_resolved_the_same_way_in_any_order(tmp_path):
    """A summary holding two records of one loop and generation (a re-written file) keeps the
    same one whichever comes first."""
    recs = loops(healthy)
    twin = {**recs[3], "test_risk": recs[3]["test_risk"] + 0.01}
    outs = []
    for name, order in (("a", [twin] + recs), ("b", recs + [twin])):
        write_loop(tmp_path / name / "runs" / "x", order)
        write_report([tmp_path / name / "runs"], tmp_path / name / "report", V1, figures=False)
        outs.append(json.loads((tmp_path / name / "report" / "verdicts.json").read_text()))
    assert outs[0]["verdicts"] == outs[1]["verdicts"]
    assert np.isfinite(outs[0]["verdicts"]["1"]["estimate"])


def test_settings_are_the_first_runs_whatever_order_they_are_given_in(tmp_path):
    """Run directories passed in any order are read in one (sorted) order."""
    write_loop(tmp_path / "runs" / "a", loops(healthy, lams=(0.0,)))
    write_loop(tmp_path / "runs" / "b", loops(healthy, lams=(0.5,)),
               settings={**SETTINGS, "seed": 1})
    outs = []
    for order in ("ab", "ba"):
        paths = [tmp_path / "runs" / c for c in order]
        write_report(paths, tmp_path / f"report_{order}", V1, figures=False)
        outs.append((tmp_path / f"report_{order}" / "verdicts.json").read_text())
    assert outs[0] == outs[1]


def test_a_loop_and_its_oracle_control_in_one_run_are_two_loops(tmp_path):
    """Records with a per-member labeller (a loop and its matched control share seed, lambda, n
    and m) are two loops, never one overwriting the other; runs.csv keeps each labeller."""
    model = [{**r, "labeller": "model"} for r in loops(healthy, lams=(0.0,))]
    oracle = [{**r, "labeller": "oracle", "test_risk": r["test_risk"] + 1.0} for r in model]
    write_loop(tmp_path / "runs" / "a", model + oracle)
    runs = load_runs([tmp_path / "runs"])
    records = loop_records(runs)
    assert len(records) == len(model) + len(oracle)
    assert {r["labeller"] for r in records} == {"model", "oracle"}
    rows = tidy_rows(records, settings_by_path(runs))
    assert sorted({(row["labeller"], row["test_risk"] > 1.0) for row in rows}) == [
        ("model", False), ("oracle", True)]
