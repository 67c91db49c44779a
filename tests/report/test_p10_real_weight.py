"""Prediction 10 (version 2, provisional): the real weight's interior optimum with fresh data
and its direction between reused and fresh data, on planted curves (direct and through
`icl-stl-report`), and its calibration by simulation through the report's own functions
(`report.simulate_p10`) at a provisional noise (P5's pilot retrain noise, until P10's pilot)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_rules_v2 import SETTINGS, judge, record, wobble, write

from icl_stl.report.predictions.p10_real_weight import p10_core, p10_direction
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p5 import dip, flat
from icl_stl.report.simulate_p10 import Noise, direction_rates, p10_rates, reference_truth
from icl_stl.report.simulate_v2 import interval
from icl_stl.report.stats import C_CONFIRMED, C_REFUTED

GRID = np.array([0.25, 0.5, 0.618, 0.75, 1.0])
CFG = ReportConfig()
NOISE = Noise(0.255, tau=0.3)  # docs/results/pilot-p5-v2/sizing.json's sigma (provisional)
DRAWS = 3000
FRESH, REUSED = reference_truth(0.5, "fresh", 1.0, 3), reference_truth(0.5, "reuse", 1.0, 3)


def test_the_reference_truths_are_the_closed_forms_shape():
    fresh, reused = FRESH(GRID), REUSED(GRID)
    assert np.argmin(fresh) == 2 and fresh[0] > fresh[2] and fresh[-1] > fresh[2]
    assert np.all(np.diff(reused) < 0)  # reused: falls all the way to v = 1


def test_core_and_direction_on_planted_curves():
    rng = np.random.default_rng(0)
    level = rng.normal(0, 0.3, (20, 1))
    fresh = FRESH(GRID) + level + rng.normal(0, 0.05, (20, GRID.size))
    reused = REUSED(GRID) + level + rng.normal(0, 0.05, (20, GRID.size))
    core = p10_core(fresh, GRID, CFG)
    assert int(core["code"]) == C_CONFIRMED and bool(core["dip_seen"])
    assert float(core["vertex"]["vertex"]) == pytest.approx(0.62, abs=0.05)
    assert int(p10_core(reused, GRID, CFG)["code"]) == C_REFUTED  # the v = 1 end lies below
    assert int(p10_direction(fresh, reused, CFG)["code"]) == C_CONFIRMED
    assert int(p10_direction(reused, fresh, CFG)["code"]) == C_REFUTED
    assert not bool(p10_core(level + 0.3 * GRID + 0 * fresh, GRID, CFG)["dip_seen"])  # a line


# ---------------------------------------------------------------------------------------------
# Through icl-stl-report


def weighted(fresh_truth, reused_truth, seeds=range(8), weights=tuple(GRID), sigma=0.03,
             gen0=0.03, generations=3) -> dict[tuple[float, str], list[dict]]:
    """Records of one run per (weight, source), each loop beside its oracle twin."""
    runs = {}
    for source, truth in (("fresh", fresh_truth), ("reuse", reused_truth)):
        for j, v in enumerate(weights):
            out = []
            for s in seeds:
                for g in range(generations + 1):
                    for arm in ("model", "oracle"):
                        shape = truth(np.array([v]))[0] if arm == "model" else 0.0
                        excess = gen0 if g == 0 else gen0 * math.exp(
                            shape * g / generations + wobble(s + 10 * j, g, sigma))
                        out.append(record(s, 0.5, g, arm, excess, real_weight=v,
                                          real_source=source))
            runs[v, source] = out
    return runs


def write_runs(tmp_path, runs) -> None:
    for (v, source), records in runs.items():
        settings = {**SETTINGS, "loop": {**SETTINGS["loop"], "real_weight": v,
                                         "real_source": source}}
        write(tmp_path, records, f"{source}-{v:g}", settings)


def p10(verdicts: dict) -> dict:
    return verdicts["verdicts"]["10"]


def test_the_reference_learners_curves_are_confirmed_with_the_version_2_fields(tmp_path):
    write_runs(tmp_path, weighted(FRESH, REUSED))
    out = p10(judge(tmp_path, ReportConfig(v2_p10_seeds=8)))
    assert out["verdict"] == "confirmed" and out["rules_version"] == "v2-provisional"
    group = out["groups"][0]
    assert group["scale"] == "excess_risk" and "oracle-labelled" in group["control"]
    assert group["seeds"] == 8 and group["margins"]["depth"] == CFG.v2_p10_depth
    parts = group["parts"]
    assert parts["fresh"]["vertex"] == pytest.approx(0.62, abs=0.05)
    assert parts["fresh"]["grid"] == list(GRID) and parts["testable"] is True
    assert parts["reuse"]["interior"] is False and parts["direction"]["verdict"] == "confirmed"
    assert parts["fresh"]["oracle_arm"]["dip_seen"] is False  # the oracle arm is flat here
    assert "real_weight" not in group["group"] and "λ=0.5" in group["group"]


def test_a_flat_fresh_curve_is_reported_without_curvature(tmp_path):
    write_runs(tmp_path, weighted(flat(), REUSED))
    out = p10(judge(tmp_path, ReportConfig(v2_p10_seeds=8)))
    group = out["groups"][0]
    assert out["verdict"] != "confirmed" and group["parts"]["testable"] is False
    assert "no curvature" in group["numbers"]


def test_a_grid_without_the_weight_1_is_not_tested(tmp_path):
    write_runs(tmp_path, weighted(FRESH, REUSED, weights=(0.25, 0.5, 0.618, 0.75)))
    out = p10(judge(tmp_path, ReportConfig(v2_p10_seeds=8)))
    assert out["verdict"] == "not tested" and "ending at 1" in out["numbers"]


def test_loops_without_a_weight_leave_p10_untested(tmp_path):
    runs = weighted(FRESH, REUSED)
    records = [{k: v for k, v in r.items() if k not in ("real_weight", "real_source")}
               for r in runs[0.5, "fresh"]]
    write(tmp_path, records)
    out = p10(judge(tmp_path))
    assert out["verdict"] == "not tested" and out["groups"] == []


def test_the_order_of_the_runs_does_not_change_the_verdict(tmp_path):
    runs = weighted(FRESH, REUSED)
    write_runs(tmp_path / "a", runs)
    write_runs(tmp_path / "b", {k: v[::-1] for k, v in reversed(list(runs.items()))})
    cfg = ReportConfig(v2_p10_seeds=8)
    assert p10(judge(tmp_path / "a", cfg)) == p10(judge(tmp_path / "b", cfg))


# ---------------------------------------------------------------------------------------------
# Calibration by simulation (the report's own functions)


def test_no_optimum_is_confirmed_in_at_most_5_percent():
    for truth in (flat(), REUSED):
        rate = p10_rates(truth, GRID, CFG.v2_p10_seeds, NOISE, CFG, DRAWS)["confirmed"]
        assert interval(rate, DRAWS)[0] <= 0.05, rate


def test_no_direction_is_confirmed_in_at_most_5_percent():
    for truth in (flat(), FRESH, REUSED):
        rate = direction_rates(truth, truth, GRID, CFG.v2_p10_seeds, NOISE, CFG,
                               DRAWS)["confirmed"]
        assert interval(rate, DRAWS)[0] <= 0.05, rate


def test_the_stated_effect_is_found_with_80_percent_power():
    """A dip of the depth margin at 1/phi; and the reference learner's own curves, whole."""
    stated = p10_rates(dip(CFG.v2_p10_depth, 0.618, GRID), GRID, CFG.v2_p10_seeds, NOISE, CFG,
                       DRAWS)["confirmed"]
    assert interval(stated, DRAWS)[1] >= 0.80, stated
    assert p10_rates(FRESH, GRID, CFG.v2_p10_seeds, NOISE, CFG, DRAWS)["confirmed"] > 0.99
    assert direction_rates(FRESH, REUSED, GRID, CFG.v2_p10_seeds, NOISE, CFG,
                           DRAWS)["confirmed"] > 0.99
