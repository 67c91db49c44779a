"""Calibration of P6, version 2 (provisional), on the code the report runs
(`p6_matched_core` through `simulate_p6`), with the P1/P2 pilot's noise doubled in variance
(a difference of two independent contrasts): at most 5% false confirmations at the margin,
none when the filter does nothing, power against a filter that removes the pilot's collapse,
and fewer than min_seeds seeds always underpowered."""

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
    interaction_noise,
    p6_rates,
    removes_collapse,
)
from icl_stl.report.simulate_v2 import constant
from icl_stl.report.verdict import CODES, CONFIRMED, UNDERPOWERED

REPO = Path(__file__).resolve().parents[2]
DRAWS = 4000


def test_the_noise_is_the_pilots():
    sizing = json.loads((REPO / "docs" / "results" / "pilot-v2" / "sizing.json").read_text())
    assert (PILOT_SIGMA, PILOT_TAU) == pytest.approx(
        (sizing["noise"]["sigma"], sizing["noise"]["tau"]), abs=5e-4)


def test_false_confirmations_at_the_margin():
    cfg = ReportConfig()
    rate = p6_rates(constant(-cfg.v2_p6_delta), cfg.v2_p6_seeds, interaction_noise(), cfg,
                    DRAWS, seed=1)["confirmed"]
    assert rate <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / DRAWS)
    assert rate >= 0.05 - 4 * np.sqrt(0.05 * 0.95 / DRAWS)  # a real test, not a wall


def test_a_filter_that_does_nothing_is_refuted_not_confirmed():
    cfg = ReportConfig()
    out = p6_rates(constant(0.0), cfg.v2_p6_seeds, interaction_noise(), cfg, DRAWS, seed=2)
    assert out["confirmed"] < 0.001 and out["refuted"] > 0.8


def test_power_against_a_filter_that_removes_the_collapse():
    cfg = ReportConfig()
    out = p6_rates(removes_collapse(), cfg.v2_p6_seeds, interaction_noise(), cfg, DRAWS, seed=3)
    assert out["confirmed"] > 0.8


def test_too_few_seeds_underpowered():
    cfg = ReportConfig()
    strong = np.full((cfg.min_seeds - 1, cfg.v2_horizon), -2.0)
    strong += np.random.default_rng(0).normal(0, 0.1, strong.shape)
    assert CODES[int(p6_matched_core(strong, cfg)["code"])] == UNDERPOWERED
    more = np.vstack([strong, strong])  # the same effect on enough seeds is confirmed
    assert CODES[int(p6_matched_core(more, cfg)["code"])] == CONFIRMED
