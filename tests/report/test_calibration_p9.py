"""Calibration of P9's provisional rule on the code the report runs (icl_stl/report/simulate_p9.py).

docs/results/p9-calibration/calibration.json comes from scripts/calibrate_p9.py; it must
regenerate, each row must re-simulate (fewer draws) within Monte Carlo error, the rule must keep
its promise (at the margins at most 5% false confirmations up to Monte Carlo error, a collapsing
loop never certified, the reference learner's bounded drift found), and the proposed THEORY text
must state the committed rates.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p9 import p9_rates, truths
from icl_stl.report.simulate_v2 import Noise

REPO = Path(__file__).resolve().parents[2]
CALIBRATION = json.loads((REPO / "docs" / "results" / "p9-calibration" /
                          "calibration.json").read_text())
NOISE = Noise(CALIBRATION["noise"]["sigma"], CALIBRATION["noise"]["tau"])
DRAWS = 4000


def _script():
    spec = importlib.util.spec_from_file_location("calibrate_p9",
                                                  REPO / "scripts" / "calibrate_p9.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_calibration_regenerates():
    assert _script().main(["--check"]) == 0


def test_the_report_defaults_are_the_calibrated_ones():
    cfg = ReportConfig()
    assert (cfg.v2_p9_horizon, cfg.v2_p9_seeds) == (CALIBRATION["horizon"], CALIBRATION["seeds"])
    assert CALIBRATION["window"] == list(range(6, cfg.v2_p9_horizon + 1))


@pytest.mark.parametrize("index", range(len(truths(ReportConfig()))))
def test_each_row_resimulates_and_keeps_the_rules_promise(index):
    cfg = ReportConfig()
    row = CALIBRATION["rows"][index]
    what, truth, reads = truths(cfg)[index]
    assert (row["truth"], row["reads"]) == (what, reads)
    rate = p9_rates(truth, row["seeds"], NOISE, cfg, DRAWS, seed=1000 + index)[reads]
    tolerance = 4 * np.sqrt(max(row["rate"] * (1 - row["rate"]), 1e-4) / DRAWS)
    assert abs(rate - row["rate"]) < tolerance, (what, rate, row["rate"])
    if "delta" in what:  # at a margin: at most 5% up to Monte Carlo error
        assert row["interval"][0] <= 0.05 and rate < 0.05 + tolerance
    if what.startswith("collapse"):
        assert row["rate"] == 0.0
    if "log D_g" in what:
        assert row["rate"] >= 0.8
    if "oracle twin" in what:
        assert row["rate"] >= 0.99


def test_the_pilots_horizon_has_almost_no_power():
    """G = 8 leaves a window of 6-8: the reason the rule's horizon is 12."""
    power = CALIBRATION["power_bounded_by_horizon_and_seeds"]
    assert power["8"]["20"] < 0.1 < 0.8 < power["12"]["20"]


def test_the_theory_states_the_committed_rates():
    theory = (REPO / "docs" / "THEORY.md").read_text()
    text = " ".join(theory[theory.index("### 8.10 P9, version 2"):].split())
    for row in CALIBRATION["rows"]:
        assert f"{100 * row['rate']:.1f}% [{100 * row['interval'][0]:.1f}%, " \
               f"{100 * row['interval'][1]:.1f}%]" in text, row["truth"]
    for row in CALIBRATION["rows_at_the_pilots_horizon"]["rows"]:
        assert f"{100 * row['rate']:.1f}%" in text, row["truth"]
    assert f"{100 * CALIBRATION['power_bounded_by_horizon_and_seeds']['12']['20']:.1f}%" in text
