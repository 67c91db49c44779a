"""P10's figure (icl_stl/report/real_weight_figure.py): each arm's curve against the real
weight, and the reference learner's shape drawn through the model arm's mean."""

from __future__ import annotations

import numpy as np
import pytest

from icl_stl.report.real_weight_figure import anchored_reference, draw

GRID = np.array([0.25, 0.5, 0.618, 0.75, 1.0])


def test_the_reference_passes_through_the_model_mean_at_its_minimum():
    reference = np.array([0.7, 0.07, 0.0, 0.08, 0.48])
    model_mean = np.array([-1.8, -1.7, -1.6, -1.75, -2.1])
    moved = anchored_reference(reference, model_mean)
    assert moved[2] == pytest.approx(-1.6)
    assert np.diff(moved) == pytest.approx(np.diff(reference))  # the shape is unchanged


def test_the_figure_is_written_for_both_sources(tmp_path):
    rng = np.random.default_rng(0)
    curves = {source: {arm: rng.normal(-2.0, 0.2, (3, len(GRID))) for arm in ("model", "oracle")}
              for source in ("fresh", "reuse")}
    reference = {"fresh": np.array([0.7, 0.07, 0.0, 0.08, 0.48]),
                 "reuse": np.array([0.54, 0.19, 0.11, 0.05, 0.0])}
    path = draw(GRID, curves, reference, tmp_path / "real_weight.png", "toy")
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_off_the_grid_are_refused(tmp_path):
    curves = {"fresh": {"model": np.zeros((2, 4))}}
    with pytest.raises(ValueError, match="4 weights, grid has 5"):
        draw(GRID, curves, {}, tmp_path / "x.png", "toy")
