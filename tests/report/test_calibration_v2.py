"""Calibration of the version-2 rules, on the code the report runs, with the pilot's noise.

docs/results/pilot-v2/sizing.json and calibration.json come from scripts/size_v2.py over the
committed pilot.json; `ReportConfig`'s defaults and docs/THEORY.md section 8.1 must be those
numbers. Each truth is re-simulated here with fewer draws and must agree with the committed
rate within Monte Carlo error, and meet the rule's promise: at most 5% false confirmations at
the margin, at least 80% power at the pilot's truths, a bounded loop in its transient not
refuted, and a loop P1 calls collapsing never certified bounded.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_v2 import Noise, constant, p1_rates, p2_rates, settling

REPO = Path(__file__).resolve().parents[2]
PILOT = REPO / "docs" / "results" / "pilot-v2"
SIZING = json.loads((PILOT / "sizing.json").read_text())
CALIBRATION = json.loads((PILOT / "calibration.json").read_text())
DRAWS = 4000
NOISE = Noise(SIZING["noise"]["sigma"], SIZING["noise"]["tau"])
SEEDS = {"P1": SIZING["seeds_p1"], "P2": SIZING["seeds_p2"]}


def _script():
    spec = importlib.util.spec_from_file_location("size_v2", REPO / "scripts" / "size_v2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_defaults_are_the_pilots_numbers():
    cfg = ReportConfig()
    assert cfg.v2_delta1 == SIZING["delta_1"] and cfg.v2_delta2 == SIZING["delta_2"]
    assert cfg.v2_horizon == SIZING["horizon"]
    assert (cfg.v2_p1_seeds, cfg.v2_p2_seeds) == (SIZING["seeds_p1"], SIZING["seeds_p2"])
    assert min(SIZING["seeds_p1"], SIZING["seeds_p2"]) >= 10


def test_sizing_and_calibration_regenerate_from_the_committed_pilot():
    assert _script().main(["--check"]) == 0


def test_theory_states_the_rules_numbers():
    text = " ".join((REPO / "docs" / "THEORY.md").read_text().split())
    assert f"delta_1 = {SIZING['delta_1']:g}" in text
    assert f"delta_2 = {SIZING['delta_2']:g}" in text
    assert f"{SEEDS['P1']} seeds for P1 and {SEEDS['P2']} for P2" in text
    for row in CALIBRATION:
        assert f"{100 * row['rate']:.1f}%" in text, row["truth"]


def _mc_tolerance(rate: float) -> float:
    return 4 * np.sqrt(max(rate * (1 - rate), 1e-4) / DRAWS)


@pytest.mark.parametrize("row", CALIBRATION, ids=lambda r: f"{r['rule']}: {r['truth'][:40]}")
def test_each_committed_rate_meets_its_promise(row):
    promise = {"confirmed": 0.05, "refuted": 0.05}
    truth = row["truth"]
    if row["reads"] == "confirmed" and "the pilot's" in truth:  # power at the pilot's truths
        assert row["rate"] >= 0.80, truth
    elif "P1 calls collapsing" in truth:
        assert row["rate"] <= 0.001, truth
    else:  # at the margin, flat truths, a loop in its transient: an error rate
        assert row["rate"] <= promise[row["reads"]] + 2 * (row["interval"][1] - row["rate"])


def test_rates_re_simulated_here_agree_with_the_committed_ones():
    cfg = ReportConfig()
    p1 = p1_rates(constant(cfg.v2_delta1), SEEDS["P1"], NOISE, cfg, DRAWS, seed=7)["confirmed"]
    assert p1 == pytest.approx(CALIBRATION[0]["rate"], abs=_mc_tolerance(0.05))
    level = SIZING["bounded_level"]
    p2 = p2_rates(settling(level, 0.5), 0.5, SEEDS["P2"], NOISE, cfg, DRAWS, seed=7)["confirmed"]
    row = next(r for r in CALIBRATION if "the pilot's lambda = 0.5" in r["truth"])
    assert p2 == pytest.approx(row["rate"], abs=_mc_tolerance(row["rate"]))


def test_the_joint_test_never_certifies_a_collapsing_loop_at_any_seed_count():
    cfg = ReportConfig()
    beta = SIZING["collapse_beta"]
    for seeds in (5, SEEDS["P2"], 40):
        rates = p2_rates(lambda g: np.log1p(beta * g), 0.5, seeds, NOISE, cfg, DRAWS)
        assert rates["confirmed"] == 0.0, seeds
