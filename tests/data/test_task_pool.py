"""Finite task pools and dMMSE (icl_stl/data/task_pool.py) against exact cases and brute force."""

from __future__ import annotations

import math

import pytest
import torch

from icl_stl.config import ConfigError
from icl_stl.data import task_pool
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import (
    POOL_STREAM,
    TaskPool,
    check_n_tasks,
    dmmse,
    dmmse_reference,
    draw_pool,
    sample_pool_prompts,
)
from icl_stl.data.tasks import LinearRegression
from icl_stl.training.baselines import bayes_optimal_ridge_alpha, ridge


def test_pool_is_fixed_by_its_stream():
    task = LinearRegression(d=3, w_scale=2.0)
    a = draw_pool(task, 7, make_generator(0, POOL_STREAM))
    b = draw_pool(task, 7, make_generator(0, POOL_STREAM))
    c = draw_pool(task, 7, make_generator(1, POOL_STREAM))
    assert a.weights.shape == (7, 3) and len(a) == 7
    assert torch.equal(a.weights, b.weights) and not torch.equal(a.weights, c.weights)


def test_pool_prompts_use_only_pool_tasks_uniformly():
    task = LinearRegression(d=2)
    pool = draw_pool(task, 4, make_generator(0, POOL_STREAM))
    prompts = sample_pool_prompts(task, pool, 4000, 5, make_generator(0, "S0"))
    assert prompts.xs.shape == (4000, 5, 2) and prompts.params.shape == (4000, 2)
    match = (prompts.params[:, None, :] == pool.weights[None]).all(-1)  # (n, M)
    assert bool((match.sum(1) == 1).all())  # every prompt's w is exactly one pool member
    counts = match.sum(0).double()
    chi2 = ((counts - 1000) ** 2 / 1000).sum().item()
    assert chi2 < 16.3  # chi-square with 3 dof: p = 0.001
    assert torch.allclose(prompts.ys, torch.einsum("nkd,nd->nk", prompts.xs, prompts.params))


def test_pool_prompts_carry_the_task_noise():
    task = LinearRegression(d=2, noise_std=0.5)
    pool = draw_pool(task, 3, make_generator(0, POOL_STREAM))
    prompts = sample_pool_prompts(task, pool, 3000, 4, make_generator(0, "S0"))
    resid = prompts.ys - torch.einsum("nkd,nd->nk", prompts.xs, prompts.params)
    assert abs(resid.std().item() - 0.5) < 0.02


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_dmmse_matches_brute_force(noise_std):
    task = LinearRegression(d=2, noise_std=noise_std)
    pool = draw_pool(task, 5, make_generator(1, POOL_STREAM))
    prompts = sample_prompts(task, 6, 4, make_generator(1, "test"))  # off-pool tasks too
    fast = dmmse(prompts.xs.double(), prompts.ys.double(), pool, noise_std)
    slow = dmmse_reference(prompts.xs.double(), prompts.ys.double(), pool, noise_std)
    assert fast.shape == (6, 4)
    assert torch.allclose(fast, slow, rtol=1e-9, atol=1e-9)


def test_dmmse_position_zero_is_the_pool_mean():
    task = LinearRegression(d=3, noise_std=0.1)
    pool = draw_pool(task, 9, make_generator(2, POOL_STREAM))
    prompts = sample_prompts(task, 10, 3, make_generator(2, "test"))
    pred = dmmse(prompts.xs, prompts.ys, pool, 0.1)
    expected = prompts.xs[:, 0] @ pool.weights.mean(0)
    assert torch.allclose(pred[:, 0], expected, atol=1e-6)


@pytest.mark.parametrize("noise_std", [0.0, 0.5])
def test_one_task_pool_is_exact(noise_std):
    task = LinearRegression(d=4)  # noiseless labels, whatever the likelihood assumes
    pool = draw_pool(task, 1, make_generator(3, POOL_STREAM))
    prompts = sample_pool_prompts(task, pool, 50, 6, make_generator(3, "S0"))
    pred = dmmse(prompts.xs.double(), prompts.ys.double(), pool, noise_std)
    assert torch.allclose(pred, prompts.ys.double(), atol=1e-5)  # every position, even 0


def test_noiseless_dmmse_identifies_the_task_after_one_pair():
    task = LinearRegression(d=3)
    pool = draw_pool(task, 16, make_generator(4, POOL_STREAM))
    prompts = sample_pool_prompts(task, pool, 200, 5, make_generator(4, "S0"))
    pred = dmmse(prompts.xs, prompts.ys, pool, 0.0)
    assert torch.allclose(pred[:, 1:], prompts.ys[:, 1:], atol=1e-4)
    assert not torch.allclose(pred[:, 0], prompts.ys[:, 0], atol=1e-2)


def test_large_pool_approaches_ridge_on_the_gaussian_prior():
    """Self-normalised importance sampling of the posterior with prior draws: as M grows, the
    pool posterior mean tends to the Gaussian one, which is ridge at the Bayes alpha."""
    noise, d, k = 0.5, 2, 6
    task = LinearRegression(d=d, noise_std=noise)
    prompts = sample_prompts(task, 300, k, make_generator(5, "test"))
    bayes = ridge(prompts.xs, prompts.ys, bayes_optimal_ridge_alpha(noise, 1.0)).double()
    gaps = []
    for m in (4, 64, 16384):
        pool = draw_pool(task, m, make_generator(5, POOL_STREAM, m))
        pred = dmmse(prompts.xs, prompts.ys, pool, noise)
        gaps.append((pred.double() - bayes).pow(2).mean().item())
    bayes_risk = (bayes - prompts.ys.double()).pow(2).mean().item()
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.01 * bayes_risk  # the pool's Bayes error is nearly ridge's
    assert gaps[0] > 0.1 * bayes_risk  # a small pool is far from it: the check is sharp


def test_dmmse_keeps_leading_dims_dtype_and_is_chunk_independent(monkeypatch):
    task = LinearRegression(d=3, noise_std=0.2)
    pool = draw_pool(task, 33, make_generator(6, POOL_STREAM))
    prompts = sample_prompts(task, 12, 7, make_generator(6, "test"))
    whole = dmmse(prompts.xs, prompts.ys, pool.weights, 0.2)
    assert whole.dtype == torch.float32
    stacked = dmmse(prompts.xs.reshape(3, 4, 7, 3), prompts.ys.reshape(3, 4, 7), pool, 0.2)
    assert stacked.shape == (3, 4, 7) and torch.allclose(stacked.reshape(12, 7), whole)
    monkeypatch.setattr(task_pool, "CHUNK_ELEMENTS", 7 * 33 * 2)  # two prompts per chunk
    assert torch.allclose(dmmse(prompts.xs, prompts.ys, pool, 0.2), whole)


def test_dmmse_rejects_bad_input():
    pool = TaskPool(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="pool weights"):
        dmmse(torch.zeros(4, 5, 3), torch.zeros(4, 5), pool, 0.1)
    with pytest.raises(ValueError, match="xs"):
        dmmse(torch.zeros(4, 5, 2), torch.zeros(4, 4), pool, 0.1)
    with pytest.raises(ValueError, match="noise_std"):
        dmmse(torch.zeros(4, 5, 2), torch.zeros(4, 5), pool, -1.0)
    with pytest.raises(ValueError, match="M >= 1"):
        TaskPool(torch.zeros(0, 2))
    # an all-zero pool (w_scale tiny) still gives finite predictions
    assert torch.isfinite(dmmse(torch.ones(1, 3, 2), torch.ones(1, 3), pool, 0.0)).all()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_n_tasks_setting_is_checked(bad):
    with pytest.raises(ConfigError, match=r"^task\.n_tasks must be null or an integer >= 1, got"):
        check_n_tasks(bad)
    assert check_n_tasks(None) is None and check_n_tasks(8) == 8
    assert math.isfinite(float(check_n_tasks(1)))
