"""The excess risk over the Bayes predictor, measured directly (`evaluation.bayes_excess`): zero
for the Bayes predictor, never negative, and in expectation the test risk minus the Bayes
(ridge) risk, with the test risk's normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from icl_stl.config import TaskConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.training.baselines import bayes_optimal_ridge_alpha, ridge
from icl_stl.training.evaluation import bayes_excess, bayes_predictions
from icl_stl.training.losses import squared_error

NOISY = TaskConfig(name="noisy_linear_regression", d=3, k=8, noise_std=0.5)
NOISELESS = TaskConfig(d=3, k=8)


def prompts(task: TaskConfig, n: int, seed: int = 0):
    return sample_prompts(make_task(task), n, task.k, make_generator(seed, "bayes_excess_test"))


@pytest.mark.parametrize("task", [NOISY, NOISELESS], ids=["noisy", "noiseless"])
def test_the_bayes_predictor_has_no_excess(task):
    test = prompts(task, 200)
    bayes = bayes_predictions(task, test)
    alpha = bayes_optimal_ridge_alpha(task.noise_std, task.w_scale)
    assert torch.equal(bayes, ridge(test.xs.double(), test.ys.double(), alpha))
    assert bayes_excess(bayes, bayes, task.d) == (0.0, 0.0)
    # float32 predictions of the same predictor (as a model's are): excess at rounding level
    excess, _ = bayes_excess(ridge(test.xs, test.ys, alpha), bayes, task.d)
    assert 0 <= excess < 1e-10


def test_a_task_without_a_gaussian_prior_has_no_bayes_predictor():
    task = TaskConfig(name="sparse_linear_regression", d=3, k=8, sparsity=1)
    assert bayes_predictions(task, prompts(NOISELESS, 4)) is None


def test_never_negative_and_its_error_is_the_spread_of_per_prompt_means():
    test = prompts(NOISY, 50)
    bayes = bayes_predictions(NOISY, test)
    pred = bayes + torch.randn(bayes.shape, generator=make_generator(1, "pred"),
                               dtype=torch.float64)
    excess, se = bayes_excess(pred, bayes, NOISY.d)
    per_prompt = ((pred - bayes) ** 2 / NOISY.d).mean(-1)
    assert excess == pytest.approx(per_prompt.mean().item(), rel=1e-12) and excess > 0
    assert se == pytest.approx(per_prompt.std().item() / math.sqrt(50), rel=1e-12)
    assert bayes_excess(bayes - 3.0, bayes, NOISY.d)[0] == pytest.approx(9.0 / NOISY.d)


@pytest.mark.parametrize("task, wrong_alpha", [(NOISY, 3.0), (NOISELESS, 0.5)],
                         ids=["noisy", "noiseless"])
def test_in_expectation_it_is_the_test_risk_minus_the_bayes_risk(task, wrong_alpha):
    """Monte Carlo: ridge at a wrong alpha on many prompts. The direct estimate and the
    difference of risks (both normalised by d per position) agree within their errors, while
    the excess itself is many errors from zero (so a missing 1/d would be seen)."""
    n = 20_000
    test = prompts(task, n, seed=3)
    bayes = bayes_predictions(task, test)
    pred = ridge(test.xs.double(), test.ys.double(), wrong_alpha)
    direct, direct_se = bayes_excess(pred, bayes, task.d)
    ys = test.ys.double()
    difference = (squared_error(pred, ys, task.d) - squared_error(bayes, ys, task.d)).mean(-1)
    diff, diff_se = difference.mean().item(), difference.std().item() / math.sqrt(n)
    assert direct > 20 * direct_se  # a real excess, well measured
    assert abs(direct - diff) < 4 * math.hypot(direct_se, diff_se)
    assert direct_se < diff_se  # the direct estimate carries no label noise
