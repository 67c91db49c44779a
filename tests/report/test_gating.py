"""The training gate per loop (icl_stl/report/gating.py): each loop is judged on its own
generation 0, a loop that misses is left out of its group and counted, and a group's mean never
stands in for a seed that missed."""

from __future__ import annotations

import json

import pytest
from test_extension_verdicts import BASE, curve, flat, verdict_p7
from test_report import SEEDS, ZERO, record, rel_noise, write_decay, write_loop

from icl_stl.report.gating import (
    describe_loop,
    gate_loops,
    loop_key,
    ridge_gate_counts,
    seeds_left_out,
    split_by_gate,
)
from icl_stl.report.report import verdicts_of, write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.report.verdict import gate_of

CFG = ReportConfig()

PASS, MISS = 0.15, 0.3  # generation-0 risks: (1 - 0.15) / 0.9 = 0.94, (1 - 0.3) / 0.9 = 0.78

# Planted records without oracle-labelled twins: P1 and P2 read by the version-1 rules.
V1 = ReportConfig(rules="v1")


def gen0(seed: int, lam: float, risk: float, **extra) -> dict:
    return {**record(seed, lam, 40, 0, risk), "zero_risk": ZERO, **extra}


def test_a_loop_is_its_configuration_seed_lambda_n_m_and_labeller():
    r = gen0(3, 0.5, PASS, config="c")
    assert loop_key(r) == ("c", 3, 0.5, 40, 0, "model")  # no labeller: the model's
    assert loop_key({**r, "labeller": "oracle"})[-1] == "oracle"
    assert describe_loop(loop_key({**r, "labeller": "oracle", "augment": 100})) == \
        "c: seed 3, λ=0.5, n=40, m=100, oracle labels"


def test_each_loop_is_gated_on_its_own_generation_0_in_any_order():
    """Seed 0's lambda = 0 loop missed while its lambda = 0.5 loop passed: only the former is
    left out, whichever record comes last (the old gate kept the last one per seed)."""
    records = [gen0(0, 0.0, MISS), gen0(0, 0.5, PASS), gen0(1, 0.0, PASS), gen0(1, 0.5, PASS)]
    records += [{**r, "generation": 1} for r in records]
    for order in (records, records[::-1]):
        kept, summary = split_by_gate(order, 0.1)
        assert {(r["seed"], r["real_fraction"]) for r in kept} == {(0, 0.5), (1, 0.0), (1, 0.5)}
        assert len(kept) == 6
        assert summary["loops"] == 4 and summary["loops_reached"] == 3
        assert summary["left_out"] == ["seed 0, λ=0, n=40 (closed 0.778 of the gap)"]
    gates = gate_loops(records, 0.1)
    assert gates[("", 0, 0.0, 40, 0, "model")]["reached"] is False
    assert gates[("", 0, 0.5, 40, 0, "model")]["gap_closed"] == pytest.approx(0.85 / 0.9)
    assert gate_of(records) == gate_of(records[::-1])  # the by-seed table: order-free too


def test_a_loop_without_the_gate_risks_is_kept_and_flagged():
    records = [gen0(0, 0.0, PASS), {**gen0(1, 0.0, PASS), "zero_risk": None},
               {**record(2, 0.0, 40, 1, PASS), "zero_risk": ZERO}]  # seed 2: no generation 0
    kept, summary = split_by_gate(records, 0.1)
    assert len(kept) == 3 and summary["loops_unchecked"] == 2 and summary["loops_reached"] == 1
    assert ridge_gate_counts(records) == {"loops": 3, "loops_reached": 1, "loops_missed": 0,
                                          "loops_unchecked": 2}


def test_a_seed_is_gated_on_its_own_loop_at_the_reference_setting():
    """Predictions about n gate each seed at its largest n (small n cannot reach ridge)."""
    records = [{**gen0(s, 0.5, risk), "n": n} for s, risks in ((0, (0.9, MISS)), (1, (0.9, PASS)))
               for n, risk in zip((10, 1000), risks)]
    missed, summary = seeds_left_out(records, 0.1, lambda r: r["n"] == 1000)
    assert missed == {0} and summary["loops"] == 2 and summary["seeds_reached"] == 1


def test_a_group_whose_mean_passes_does_not_pass_for_the_seed_that_missed(tmp_path):
    """P4: seed 0's generation 0 at the largest n closes 78% of the gap, the others 94%; the
    mean (91%) passes. Seed 0 is left out and named; the verdict rests on the other five."""
    write_decay(tmp_path / "runs" / "d", lambda n, s: (0.01 + 2 * n ** -0.6) * rel_noise(n, s))
    path = tmp_path / "runs" / "d" / "summary.json"
    summary = json.loads(path.read_text())
    largest = max(r["n"] for r in summary["generations"])
    for r in summary["generations"]:
        if r["seed"] == 0 and r["n"] == largest and r["generation"] == 0:
            r["test_risk"] = MISS
    path.write_text(json.dumps(summary))
    write_report([tmp_path / "runs"], tmp_path / "report", V1, figures=False)
    data = json.loads((tmp_path / "report" / "verdicts.json").read_text())
    p4 = data["verdicts"]["4"]
    group = p4["groups"][0]
    assert p4["verdict"] == "confirmed" and p4["n_seeds"] == len(SEEDS) - 1
    assert group["gate"]["loops"] == len(SEEDS) and group["gate"]["loops_reached"] == 5
    assert group["gate"]["left_out"] == [f"seed 0, λ=0.5, n={largest} (closed 0.778 of the gap)"]
    assert "1 of 6 loops left out" in group["numbers"]
    assert data["ridge_gate"]["loops"] == 6 * len(SEEDS)
    assert data["ridge_gate"]["loops_reached"] + data["ridge_gate"]["loops_missed"] == 36


def test_every_loop_missing_makes_the_group_not_applicable(tmp_path):
    write_decay(tmp_path / "runs" / "d", lambda n, s: (0.01 + 2 * n ** -0.6) * rel_noise(n, s),
                gate_risk=MISS)
    write_report([tmp_path / "runs"], tmp_path / "report", V1, figures=False)
    assert verdicts_of(tmp_path / "report")[4] == "not applicable"


def test_extension_groups_leave_out_the_loops_that_missed():
    """P7: the decaying loop of seed 0 missed its own gate; its group is judged on the rest,
    and a constant comparison loop that missed is no comparison."""
    sched = {"loop.real_schedule": "linear", "loop.real_schedule_rate": 0.25,
             "loop.real_schedule_floor": 0.25, "loop.real_fraction": 0.75}
    recs = curve("collapse", 0.25, flat(0.2)) + curve("decaying", 0.75, flat(0.2))
    settings = {"collapse": dict(BASE), "decaying": {**BASE, **sched}}
    ok = verdict_p7(recs, settings, CFG).primary_group()
    assert ok.n_seeds == len(SEEDS) and ok.gate["loops_missed"] == 0
    bad = [{**r, "test_risk": MISS} if r["generation"] == 0 and r["seed"] == 0
           and r["run"] == "decaying" else r for r in recs]
    group = verdict_p7(bad, settings, CFG).primary_group()
    assert group.n_seeds == len(SEEDS) - 1 and group.gate["left_out"][0].startswith(
        "decaying: seed 0")
    const_bad = [{**r, "test_risk": MISS} if r["generation"] == 0 and r["seed"] == 1
                 and r["run"] == "collapse" else r for r in recs]
    assert verdict_p7(const_bad, settings, CFG).primary_group().n_seeds == len(SEEDS) - 1


def test_the_gate_counts_read_at_the_report_tolerance(tmp_path):
    """Generation 0 closes 94% of the gap: every loop passes at 0.1, none at 0.01."""
    write_loop(tmp_path / "runs" / "a", [record(s, 0.0, 40, g, PASS + 0.01 * g)
                                         for s in SEEDS for g in range(7)])
    for tolerance, reached in ((0.1, len(SEEDS)), (0.01, 0)):
        write_report([tmp_path / "runs"], tmp_path / "report",
                     ReportConfig(gate_tolerance=tolerance), figures=False)
        gate = json.loads((tmp_path / "report" / "verdicts.json").read_text())["ridge_gate"]
        assert gate["loops"] == len(SEEDS) and gate["loops_reached"] == reached
        assert gate["loops_missed"] == len(SEEDS) - reached
