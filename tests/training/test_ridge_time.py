"""The training gate and the time-to-ridge measurement: definitions, and that they can fail."""

from __future__ import annotations

import math

import pytest

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.training.gate import RIDGE_TOLERANCE, gap_closed, reached_ridge
from icl_stl.training.ridge_time import RidgeTarget, ridge_target, time_to_ridge

TASK = TaskConfig(d=2, k=5)
MODEL = ModelConfig(n_layer=1, n_head=1, n_embd=16)


def test_gap_closed_is_one_at_ridge_zero_at_the_zero_predictor():
    assert gap_closed(0.25, 0.25, 1.0) == 1.0
    assert gap_closed(1.0, 0.25, 1.0) == 0.0
    assert gap_closed(1.75, 0.25, 1.0) == pytest.approx(-1.0)  # worse than predicting zero
    assert math.isnan(gap_closed(0.5, 1.0, 1.0))  # no gap to close: undefined, never "reached"


def test_reached_ridge_is_within_ten_percent_of_the_gap():
    assert RIDGE_TOLERANCE == 0.1
    zero, ridge = 1.0, 0.2
    edge = ridge + 0.1 * (zero - ridge)
    assert reached_ridge(edge - 1e-9, ridge, zero)
    assert not reached_ridge(edge + 1e-6, ridge, zero)
    assert not reached_ridge(float("nan"), ridge, zero)
    assert not reached_ridge(0.1, 0.5, 0.5)


def test_ridge_target_measures_zero_and_ridge_on_fresh_prompts():
    target = ridge_target(TASK, eval_prompts=400, seed=3)
    # x, w ~ N(0, I): the zero predictor's risk is E[y^2]/d = 1; least squares is exact from
    # position d+1 on (noise-free), so ridge's risk is well below it.
    assert target.zero_risk == pytest.approx(1.0, abs=0.15)
    assert target.ridge_risk < 0.5 * target.zero_risk
    assert target.threshold == pytest.approx(
        target.ridge_risk + 0.1 * (target.zero_risk - target.ridge_risk))
    again = ridge_target(TASK, eval_prompts=400, seed=3)
    assert again.ridge_risk == target.ridge_risk  # its own seed stream: reproducible


def _target(threshold_above_zero: bool) -> RidgeTarget:
    target = ridge_target(TASK, eval_prompts=128, seed=0)
    if threshold_above_zero:  # every model passes at its first evaluation
        return RidgeTarget(target.prompts, zero_risk=100.0, ridge_risk=50.0)
    return RidgeTarget(target.prompts, zero_risk=1.0, ridge_risk=-1.0)  # nobody passes


def test_time_to_ridge_stops_at_the_first_passing_evaluation():
    train = TrainConfig(steps=40, batch_size=8, warmup_steps=2)
    result = time_to_ridge(MODEL, TASK, train, n=None, seed=0, target=_target(True),
                           eval_every=10)
    assert result.reached and result.steps == 10 and result.steps_run == 10
    assert len(result.curve) == 1 and result.seconds == result.curve[0][1]


def test_time_to_ridge_reports_a_miss_with_the_whole_curve():
    train = TrainConfig(steps=30, batch_size=8, warmup_steps=2)
    result = time_to_ridge(MODEL, TASK, train, n=64, seed=0, target=_target(False),
                           eval_every=10)
    assert not result.reached and result.steps is None and result.seconds is None
    assert [step for step, _, _ in result.curve] == [10, 20, 30]
    seconds = [s for _, s, _ in result.curve]
    assert seconds == sorted(seconds) and result.seconds_run == seconds[-1]
    assert result.eval_seconds > 0
    assert result.final_risk == result.curve[-1][2]
    assert result.best_risk == min(r for _, _, r in result.curve)


def test_time_to_ridge_stops_at_the_time_cap():
    train = TrainConfig(steps=1000, batch_size=8, warmup_steps=2)
    result = time_to_ridge(MODEL, TASK, train, n=None, seed=0, target=_target(False),
                           eval_every=5, max_seconds=0.0)
    assert not result.reached and result.steps_run == 5


@pytest.mark.slow
def test_quickstart_reaches_ridge(tmp_path):
    """The README's first example does what it says (about a minute of training on 2 cores)."""
    from conftest import compose_cfg

    from icl_stl.cli.train import train_from_config

    cfg = compose_cfg("train", "experiment=quickstart", f"run.checkpoint_root={tmp_path}/ck")
    summary = train_from_config(cfg, tmp_path / "out")
    assert summary["reached_ridge"], summary["gap_closed"]
    assert summary["gap_closed"] >= 0.9
