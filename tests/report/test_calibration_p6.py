"""Calibration of P6, version 2, on the code the report runs (`p6_matched_core` through
`simulate_p6`), with the noise of P6's own pilot (docs/results/pilot-p6/sizing.json; before it
ran, the P1/P2 pilot's doubled in variance, `interaction_noise`): at most 5% false
confirmations at the margin, none when the filter does nothing, power against a filter that
removes the pilot's collapse, fewer than min_seeds seeds always underpowered; and the joint rule
with its co-primary scales: power at no co-primary cost, at most 5% false confirmations with a
co-primary interaction at its margin, and a filter at the residual filter's pilot cost refuted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from icl_stl.report.predictions.p6_matched_filters import p6_matched_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p6 import (
    PILOT_SIGMA,
    PILOT_TAU,
    p6_joint_rates,
    p6_rates,
    removes_collapse,
)
from icl_stl.report.simulate_v2 import Noise, constant
from icl_stl.report.verdict import CODES, CONFIRMED, UNDERPOWERED

REPO = Path(__file__).resolve().parents[2]
DRAWS = 4000
SIZING = json.loads((REPO / "docs/results/pilot-p6/sizing.json").read_text())
PILOT = json.loads((REPO / "docs/results/pilot-p6/pilot.json").read_text())
NOISE = Noise(SIZING["noise"]["sigma"], SIZING["noise"]["tau"])
BETA = SIZING["collapse_beta"]


def _coprimary_noise(scale: str) -> Noise:
    return Noise(SIZING["joint"]["noise"][scale]["sigma"], SIZING["joint"]["noise"][scale]["tau"])


def test_the_rule_is_the_pilots_sizing():
    cfg = ReportConfig()
    assert cfg.v2_p6_delta == SIZING["delta_6"]
    assert SIZING["seeds_for_80_percent"][f"removes the collapse (-log(1 + {BETA:.3g} g))"] \
        <= cfg.v2_p6_seeds


def test_the_p1_p2_noise_constants_are_that_pilots():
    sizing = json.loads((REPO / "docs" / "results" / "pilot-v2" / "sizing.json").read_text())
    assert (PILOT_SIGMA, PILOT_TAU) == pytest.approx(
        (sizing["noise"]["sigma"], sizing["noise"]["tau"]), abs=5e-4)


def test_false_confirmations_at_the_margin():
    cfg = ReportConfig()
    rate = p6_rates(constant(-cfg.v2_p6_delta), cfg.v2_p6_seeds, NOISE, cfg,
                    DRAWS, seed=1)["confirmed"]
    assert rate <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / DRAWS)
    assert rate >= 0.05 - 4 * np.sqrt(0.05 * 0.95 / DRAWS)  # a real test, not a wall


def test_a_filter_that_does_nothing_is_refuted_not_confirmed():
    cfg = ReportConfig()
    out = p6_rates(constant(0.0), cfg.v2_p6_seeds, NOISE, cfg, DRAWS, seed=2)
    assert out["confirmed"] < 0.001 and out["refuted"] > 0.8


def test_power_against_a_filter_that_removes_the_collapse():
    cfg = ReportConfig()
    out = p6_rates(removes_collapse(BETA), cfg.v2_p6_seeds, NOISE, cfg, DRAWS, seed=3)
    assert out["confirmed"] > 0.8


def test_too_few_seeds_underpowered():
    cfg = ReportConfig()
    strong = np.full((cfg.min_seeds - 1, cfg.v2_horizon), -2.0)
    strong += np.random.default_rng(0).normal(0, 0.1, strong.shape)
    assert CODES[int(p6_matched_core(strong, cfg)["code"])] == UNDERPOWERED
    more = np.vstack([strong, strong])  # the same effect on enough seeds is confirmed
    assert CODES[int(p6_matched_core(more, cfg)["code"])] == CONFIRMED


def _joint(calibration: float, spread: float, seed: int) -> dict:
    cfg = ReportConfig()
    return p6_joint_rates((removes_collapse(BETA), constant(calibration), constant(spread)),
                          (NOISE, _coprimary_noise("calibration"), _coprimary_noise("spread")),
                          cfg.v2_p6_seeds, cfg, DRAWS, seed=seed)


def test_joint_power_when_the_filter_costs_nothing_on_the_co_primary_scales():
    assert _joint(0.0, 0.0, seed=4)["confirmed"] > 0.8


def test_joint_false_confirmations_with_a_co_primary_scale_at_its_margin():
    cfg = ReportConfig()
    for calibration, spread in ((cfg.v2_p6_calibration, 0.0), (0.0, -cfg.v2_p6_spread)):
        rate = _joint(calibration, spread, seed=5)["confirmed"]
        assert rate <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / DRAWS)
        assert rate >= 0.05 - 4 * np.sqrt(0.05 * 0.95 / DRAWS)


def test_the_residual_filters_pilot_cost_is_refuted_even_if_it_removed_the_collapse():
    row = PILOT["coprimary"]["filters"]["residual"]
    out = _joint(row["calibration"]["mean"], row["spread"]["mean"], seed=6)
    assert out["refuted"] > 0.99
