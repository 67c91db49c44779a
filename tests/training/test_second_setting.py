"""The second setting of the version-2 rules (label noise at d = 3, issue 29) is not degenerate:
its Bayes predictor (ridge at alpha = noise^2 / w_scale^2) keeps a risk above zero at every
position and differs from least squares, so the excess-risk scale has something to resolve;
the d = 2 noiseless setting is shown beside it to be degenerate (the test can fail). The gate
and `bayes_excess` of the setting's presets use that Bayes predictor."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_cfg

from icl_stl.cli.common import load_app_config
from icl_stl.config import TaskConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.training.baselines import bayes_optimal_ridge_alpha, least_squares, ridge
from icl_stl.training.evaluation import bayes_excess, bayes_predictions
from icl_stl.training.losses import squared_error

PRESETS = ("pilot/v2_d3", "reproduce_v2/d3_p1", "reproduce_v2/d3_p2")


def setting(preset: str = "pilot/v2_d3"):
    return load_app_config(compose_cfg("loop", f"experiment={preset}"), needs_loop=True)


def draw(task: TaskConfig, n: int, seed: int = 0):
    return sample_prompts(make_task(task), n, task.k, make_generator(seed, "second_setting"))


def per_position(errors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over prompts per position and its standard error."""
    return errors.mean(0), errors.std(0) / math.sqrt(errors.shape[0])


@pytest.mark.parametrize("preset", PRESETS)
def test_the_presets_are_label_noise_at_d_3(preset):
    app = setting(preset)
    assert (app.task.d, app.task.k, app.task.noise_std, app.data.n) == (3, 8, 0.25, 10_000)
    assert app.task.name in ("linear_regression", "noisy_linear_regression")
    assert app.loop.init == "from_scratch"
    # eval.ridge_alpha null: the gate's ridge is the Bayes predictor (runner.ridge_alpha)
    assert app.eval.ridge_alpha is None
    assert bayes_optimal_ridge_alpha(app.task.noise_std, app.task.w_scale) == 0.0625


def test_every_position_keeps_a_bayes_risk_above_zero():
    """E[(y_j - f_Bayes)^2] / d >= noise^2 / d at every position j: the label noise stays
    however many pairs were seen. At j = 0 it is (d w_scale^2 + noise^2) / d."""
    task = setting().task
    test = draw(task, 20_000)
    bayes = bayes_predictions(task, test)
    risk, se = per_position(squared_error(bayes, test.ys.double(), task.d))
    floor = task.noise_std ** 2 / task.d
    assert risk.shape == (task.k,)
    assert bool((risk - 4 * se > 0).all()), risk
    assert bool((risk > 0.9 * floor).all()), (risk, floor)
    first = (task.d * task.w_scale ** 2 + task.noise_std ** 2) / task.d
    assert risk[0].item() == pytest.approx(first, abs=4 * se[0].item())
    assert bool((risk[1:] < risk[:-1] + 4 * se[1:]).all())  # more pairs never hurt


def test_ridge_at_the_bayes_alpha_and_least_squares_differ():
    """Least squares fits the noise once it can fit (positions >= d), so its predictions leave
    the Bayes predictor's there. At the last position (k - 1 = d + 4 pairs, where its error has
    a finite variance) its excess over the Bayes predictor is many standard errors above zero,
    and equals its risk minus the Bayes risk within their errors."""
    task = setting().task
    test = draw(task, 20_000, seed=1)
    xs, ys = test.xs.double(), test.ys.double()
    bayes = bayes_predictions(task, test)
    ls = least_squares(xs, ys)
    gap = (ls - bayes).abs().mean(0)
    assert bool((gap[task.d:] > 0.01).all()), gap
    last = task.k - 1
    assert last - task.d >= 4
    excess, excess_se = bayes_excess(ls[:, last:], bayes[:, last:], task.d)
    assert excess > 10 * excess_se
    difference = (squared_error(ls, ys, task.d) - squared_error(bayes, ys, task.d))[:, last]
    diff_se = difference.std().item() / math.sqrt(difference.shape[0])
    assert abs(difference.mean().item() - excess) < 4 * math.hypot(diff_se, excess_se)
    assert not torch.allclose(ridge(xs, ys, 0.0625), ls, atol=1e-3)


def test_the_d_2_noiseless_setting_is_the_degenerate_one():
    """Beside it, d = 2 without noise: the Bayes risk after d pairs is zero and ridge is least
    squares (what the second setting is there to avoid)."""
    task = TaskConfig(d=2, k=6)
    test = draw(task, 2_000, seed=2)
    xs, ys = test.xs.double(), test.ys.double()
    bayes = bayes_predictions(task, test)
    assert bayes_optimal_ridge_alpha(task.noise_std, task.w_scale) == 0.0
    risk, _ = per_position(squared_error(bayes, ys, task.d))
    assert float(risk[task.d:].max()) < 1e-8
    assert torch.allclose(ridge(xs, ys, 0.0), least_squares(xs, ys))
