"""The exactly solvable reference learner in the real loop code, against its closed forms.

Many loops (one per seed) run as one LoopRun; the Monte-Carlo mean over seeds of the measured
drift must lie within a few standard errors of `icl_stl.theory` at every generation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from icl_stl.baselines import ridge
from icl_stl.config import EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.loop.learners import LearnerContext, make_learner
from icl_stl.loop.metrics import implied_weights
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.probes.reference import GaussianPriorLearner, prior_drift_metrics
from icl_stl.probes.stability import StabilityHook, combine_hooks, probe_set, twin_members
from icl_stl.prompts import sample_prompts
from icl_stl.seeding import make_generator
from icl_stl.tasks import make_task
from icl_stl.theory import covariance_shrinkage, geometric_rate, mean_drift_fresh
from icl_stl.training import RuntimeOptions

D, K_PAIRS, N, GENERATIONS, SEEDS = 3, 5, 20, 5, 200
Z_TOL = 4.0  # standard errors: 12 comparisons, a false alarm at 4 SE is ~1e-4 per run


def settings(lam: float = 0.0, generations: int = GENERATIONS, d: int = D, k: int = K_PAIRS,
             **loop) -> LoopSettings:
    loop_cfg = LoopConfig(generations=generations, real_fraction=lam, real_source="fresh",
                          learner="gaussian_prior", **loop)
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


def assert_within_se(measured: np.ndarray, theory: np.ndarray, what: str) -> None:
    mean = measured.mean(1)
    se = measured.std(1, ddof=1) / math.sqrt(measured.shape[1])
    z = (mean - theory) / se
    assert np.all(np.abs(z) < Z_TOL), f"{what}: measured {mean}, theory {theory}, z {z}"


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
    s = settings(prior_covariance=True)
    records = run(tmp_path, "cov", s, [MemberSpec(seed, 0.0, N) for seed in range(SEEDS)])
    ratio = by_generation(records, "prior_cov_trace_ratio")
    assert_within_se(ratio, covariance_shrinkage(GENERATIONS, N), "tr Sigma_i / tr Sigma*")
    assert geometric_rate(ratio.mean(1)) == pytest.approx((N - 1) / N, abs=0.02)


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
