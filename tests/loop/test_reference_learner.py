"""The exactly solvable reference learner in the real loop code, against its closed forms.

Many loops (one per seed) run as one LoopRun; the Monte-Carlo mean over seeds of the measured
drift must lie within a few standard errors of `icl_stl.theory` at every generation, and each
test is sharp: the nearest wrong closed form (an off-by-one exponent, fresh instead of reused
real data) lies many standard errors away and is checked to be rejected.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from icl_stl.config import EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.loop.fidelity import implied_weights
from icl_stl.loop.hooks import combine_hooks
from icl_stl.loop.learners import LearnerContext, make_learner
from icl_stl.loop.learners.reference import GaussianPriorLearner, prior_drift_metrics
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.probes.stability import StabilityHook
from icl_stl.probes.twins import probe_set, twin_members
from icl_stl.theory import (
    covariance_shrinkage,
    geometric_rate,
    mean_drift_fresh,
    mean_drift_reuse,
)
from icl_stl.training.baselines import ridge
from icl_stl.training.engine import RuntimeOptions

D, K_PAIRS, N, GENERATIONS, SEEDS = 3, 5, 20, 5, 200
Z_TOL = 4.0  # standard errors: 12 comparisons, a false alarm at 4 SE is ~1e-4 per run


def settings(lam: float = 0.0, generations: int = GENERATIONS, d: int = D, k: int = K_PAIRS,
             **loop) -> LoopSettings:
    loop_cfg = LoopConfig(**{"generations": generations, "real_fraction": lam,
                             "real_source": "fresh", "learner": "gaussian_prior", **loop})
    return LoopSettings(TaskConfig(d=d, k=k), ModelConfig(), TrainConfig(steps=1),
                        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]), loop_cfg)


def run(tmp_path: Path, name: str, s: LoopSettings, members: list[MemberSpec], hook=None) -> list:
    hook = combine_hooks(prior_drift_metrics, hook)
    return LoopRun(s, members, tmp_path / name, extra_metrics=hook).run()["generations"]


def by_generation(records: list[dict], key: str, **match) -> np.ndarray:
    """(generations + 1, seeds) values of `key` over the records matching `match`."""
    gens = sorted({r["generation"] for r in records})
    return np.array([[r[key] for r in records if r["generation"] == g
                      and all(r[m] == v for m, v in match.items())] for g in gens])


def z_scores(measured: np.ndarray, theory: np.ndarray) -> np.ndarray:
    """(mean over seeds - theory) / standard error, per generation."""
    se = measured.std(1, ddof=1) / math.sqrt(measured.shape[1])
    return (measured.mean(1) - theory) / se


def assert_within_se(measured: np.ndarray, theory: np.ndarray, what: str) -> None:
    z = z_scores(measured, theory)
    assert np.all(np.abs(z) < Z_TOL), f"{what}: measured {measured.mean(1)}, theory {theory}, z {z}"


def assert_rejected(measured: np.ndarray, wrong: np.ndarray, what: str) -> None:
    """The wrong closed form is far outside the tolerance (the test can tell them apart)."""
    z = z_scores(measured, wrong)
    assert np.max(np.abs(z)) > 2 * Z_TOL, f"{what} not rejected: z {z}"


def test_mean_drift_matches_closed_forms_with_fresh_real_data(tmp_path):
    s = settings()
    members = [MemberSpec(seed, lam, N) for lam in (0.0, 0.5) for seed in range(SEEDS)]
    records = run(tmp_path, "drift", s, members)
    for lam in (0.0, 0.5):
        err2 = by_generation(records, "prior_mean_err2", real_fraction=lam)
        assert err2.shape == (GENERATIONS + 1, SEEDS)
        assert_within_se(err2, mean_drift_fresh(GENERATIONS, D, N, lam), f"lambda={lam}")
    # The two regimes are told apart: linear growth at lambda 0, a plateau at lambda 0.5.
    grow = by_generation(records, "prior_mean_err2", real_fraction=0.0).mean(1)
    flat = by_generation(records, "prior_mean_err2", real_fraction=0.5).mean(1)
    assert grow[-1] > 4 * grow[0] and flat[-1] < 2 * flat[0]
    plateau = (D / N) / (1 - 0.5 ** 2)
    se = by_generation(records, "prior_mean_err2", real_fraction=0.5)[-1].std(ddof=1) / \
        math.sqrt(SEEDS)
    assert abs(flat[-1] - plateau) < Z_TOL * se


def test_covariance_shrinks_geometrically_without_real_data(tmp_path):
    """E[tr Sigma_i] / tr Sigma* = ((n-1)/n)^(i+1). With n = 5 prompts the factor is 0.8, and at
    generation 0 the off-by-one form ((n-1)/n)^i (= 1) lies about 12 standard errors away."""
    n, seeds, generations = 5, 400, 4
    s = settings(generations=generations, prior_covariance=True)
    records = run(tmp_path, "cov", s, [MemberSpec(seed, 0.0, n) for seed in range(seeds)])
    ratio = by_generation(records, "prior_cov_trace_ratio")
    assert ratio.shape == (generations + 1, seeds)
    theory = covariance_shrinkage(generations, n)
    assert_within_se(ratio, theory, "tr Sigma_i / tr Sigma*")
    assert_rejected(ratio, theory * n / (n - 1), "((n-1)/n)^i")
    assert_rejected(ratio, theory * (n - 1) / n, "((n-1)/n)^(i+2)")
    assert geometric_rate(ratio.mean(1)) == pytest.approx((n - 1) / n, abs=0.03)


@pytest.mark.parametrize("lam", [0.25, 0.5])
def test_mean_drift_matches_closed_form_with_reused_real_data(tmp_path, lam):
    """The loop's default real source: the same lambda n prompts of S_0 every generation."""
    s = settings(lam, real_source="reuse")
    records = run(tmp_path, f"reuse{lam}", s, [MemberSpec(seed, lam, N) for seed in range(SEEDS)])
    err2 = by_generation(records, "prior_mean_err2")
    theory = mean_drift_reuse(GENERATIONS, D, N, lam)
    assert_within_se(err2, theory, f"reuse, lambda={lam}")
    # the reused prompts' error never averages out: fresh real data is rejected
    assert_rejected(err2, mean_drift_fresh(GENERATIONS, D, N, lam), "the fresh-data form")


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_sample_mode_noise_is_what_the_closed_forms_assume(tmp_path, noise_std):
    """label_mode=sample: each synthetic prompt's w is mu_{i-1} + N(0, w_scale^2 I) (known
    covariance) and its labels carry the task's noise and nothing else (`loop.label_noise_std`
    is a transformer setting, here 0.5, and must not leak in). With noise_std = 0 the labels
    are exactly linear in x, so w is recovered exactly: the closed forms' assumption."""
    w_scale, k = 1.5, 40
    s = settings(0.5, generations=2, d=D, k=k, label_noise_std=0.5, real_source="reuse")
    s.task.w_scale, s.task.noise_std = w_scale, noise_std
    deviations, residuals, previous = [], [], {}

    def check(generation, learner, datasets, new_synthetic):
        for m, syn in enumerate(new_synthetic):
            if generation > 0:
                xs, ys = syn.xs.double(), syn.ys.double()
                w = torch.linalg.lstsq(xs, ys.unsqueeze(-1)).solution.squeeze(-1)  # (m, d)
                residuals.append(ys - torch.einsum("nkd,nd->nk", xs, w))
                deviations.append(w - previous[m])
            previous[m] = learner.mu[m].clone()
        return [{} for _ in datasets]

    run(tmp_path, f"noise{noise_std}", s, [MemberSpec(seed, 0.5, 60) for seed in range(20)],
        check)
    dev = torch.cat(deviations).numpy()  # w - mu_{i-1}, pooled over members and generations
    resid = torch.cat(residuals)
    cov = np.cov(dev.T)
    se = w_scale**2 * math.sqrt(2 / dev.shape[0])  # of a variance estimate, Gaussian
    assert np.abs(dev.mean(0)).max() < Z_TOL * w_scale / math.sqrt(dev.shape[0])
    assert np.abs(np.diag(cov) - w_scale**2).max() < Z_TOL * se, np.diag(cov)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < Z_TOL * se
    if noise_std == 0:
        assert resid.abs().max().item() < 1e-5  # float32 labels, exactly linear otherwise
    else:  # residual variance of least squares: noise^2 (k - d) / k
        var = resid.pow(2).mean().item() * k / (k - D)
        assert var == pytest.approx(noise_std**2, rel=0.05)


def test_known_prior_predicts_like_bayes_ridge():
    s = settings()
    s.task.noise_std = 0.5
    task = make_task(s.task)
    ctx = LearnerContext(task, K_PAIRS, s.model, s.train, s.loop, s.eval, RuntimeOptions())
    learner = make_learner(ctx, [MemberSpec(0, 0.0, N), MemberSpec(1, 0.0, N)])
    assert isinstance(learner, GaussianPriorLearner)
    prompts = sample_prompts(task, 16, K_PAIRS, make_generator(0, "x"))
    pred = learner.predictions(prompts)  # (2, 16, k), the untrained learner knows the prior
    expected = ridge(prompts.xs.double(), prompts.ys.double(), alpha=0.5 ** 2)
    torch.testing.assert_close(pred[0], expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pred[1], expected, rtol=1e-9, atol=1e-9)


def test_twin_difference_contracts_by_one_minus_lambda(tmp_path):
    """With fresh real data and shared draws, mu_i - mu'_i = (1 - lambda)(mu_{i-1} - mu'_{i-1})
    exactly, so gamma_i / gamma_{i-1} = 1 - lambda: it holds only if every draw is shared."""
    for lam in (0.0, 0.5):
        s = settings(lam, generations=3)
        task = make_task(s.task)
        members, pairs = twin_members(task, K_PAIRS, [N], [0, 1], [0, 7], lam, 0, "fresh")
        hook = StabilityHook(pairs, probe_set(task, K_PAIRS, 32, 0))
        records = run(tmp_path, f"twins{lam}", s, members, hook)
        for pair in pairs:
            gamma = [r["gamma_mean"] for r in records if r["member"] == pair.neighbour]
            assert gamma[0] > 0
            # rtol: synthetic prompts are stored in float32 (relative rounding ~1e-7 of labels
            # against a difference that shrinks geometrically); unshared draws would be O(1) off.
            np.testing.assert_allclose(np.array(gamma[1:]) / np.array(gamma[:-1]), 1 - lam,
                                       rtol=1e-4)


@pytest.mark.parametrize("mode", ["mean", "context", "sample"])
def test_label_modes_draw_from_the_previous_prior(tmp_path, mode):
    """mean: every synthetic prompt carries w = mu_{i-1}; sample: labels linear in x; context:
    the first c labels are the fresh task's real ones and the rest follow the posterior mean,
    which (noiseless) interpolates them, so one w still fits the whole prompt."""
    s = settings(0.5, generations=2, label_mode=mode, synthetic="accumulate", augment=4)
    task = make_task(s.task)
    previous: dict[int, torch.Tensor] = {}

    def check(generation, learner, datasets, new_synthetic):
        for m, syn in enumerate(new_synthetic):
            if generation > 0:
                if mode == "context":
                    real = sample_prompts(task, len(syn), K_PAIRS, make_generator(
                        members[m].seed, "synthetic_x", generation))
                    assert torch.equal(syn.ys[:, :2], real.ys[:, :2])
                w = implied_weights(syn)  # (m_syn, d): exact, labels are noiseless and linear
                fitted = torch.einsum("nkd,nd->nk", syn.xs.double(), w)
                torch.testing.assert_close(fitted, syn.ys.double(), rtol=1e-4, atol=1e-4)
                if mode == "mean":
                    torch.testing.assert_close(w, previous[m].expand_as(w), rtol=1e-4, atol=1e-4)
            previous[m] = learner.mu[m].clone()
        return [{} for _ in datasets]

    members = [MemberSpec(seed, 0.5, N, augment=4) for seed in range(3)]
    records = run(tmp_path, mode, s, members, check)
    # lambda n = 10 real prompts, and 14 new synthetic ones (n - 10 + m) kept every generation
    assert [r["train_size"] for r in records if r["member"] == 0] == [N, 10 + 14, 10 + 2 * 14]
    assert all(math.isfinite(r["test_risk"]) for r in records)


def test_resume_continues_from_stored_priors(tmp_path):
    members = [MemberSpec(seed, 0.5, N) for seed in range(4)]
    short = run(tmp_path, "resumed", settings(0.5, generations=2), members)
    resumed = run(tmp_path, "resumed", settings(0.5, generations=4), members)
    fresh = run(tmp_path, "fresh", settings(0.5, generations=4), members)
    assert resumed[: len(short)] == short
    keys = ("test_risk", "prior_mean_err2", "syn_w_norm")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in fresh]
