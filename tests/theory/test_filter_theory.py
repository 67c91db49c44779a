"""The reference learner with a filter: closed forms (icl_stl/theory/filters.py) against the
filters' own machinery (verifier scores on prompts, `select`, least-squares w's).

Each check is sharp: the unfiltered loop's value lies many standard errors away.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression
from icl_stl.loop.fidelity import implied_weights
from icl_stl.loop.filters import pool_size, select
from icl_stl.loop.verifier import fit_verifier, verifier_scores
from icl_stl.theory.filters import (
    best_fraction_threshold,
    contraction,
    keep_fraction,
    kept_second_moment,
    linear_plateau,
    residual_keep_fraction,
    simulate_drift,
    step_drift,
)
from icl_stl.theory.reference import mean_drift_fresh

D, K = 3, 4  # k > d: every prompt's w is read off exactly
Z_TOL = 4.0


def z(a: np.ndarray, b: float | np.ndarray, axis: int = -1) -> np.ndarray:
    """(mean of a - b) in standard errors of the mean of a."""
    return (a.mean(axis) - b) / (a.std(axis, ddof=1) / math.sqrt(a.shape[axis]))


def verifier_centre(seed: int = 0, n_real: int = 8):
    """A verifier fitted on n_real real prompts: its centre misses mu* = 0 by O(1/n_real)."""
    real = sample_prompts(LinearRegression(d=D), n_real, K, make_generator(seed, "S0"))
    return fit_verifier(real, 0.0, w_var=1.0)


def filtered_generation(mu: torch.Tensor, verifier, n: int, keep: float, tau: float | None,
                        gen: torch.Generator) -> tuple[torch.Tensor, int, int]:
    """One generation of the reference learner at lambda = 0 through the filter machinery, for
    every seed at once. mu (S, d) -> (new mu (S, d), prompts passed, prompts labelled)."""
    seeds, pool = mu.shape[0], pool_size(n, keep)
    w = mu[:, None, :] + torch.randn(seeds, pool, D, generator=gen, dtype=torch.float64)
    xs = torch.randn(seeds * pool, K, D, generator=gen, dtype=torch.float64)
    prompts = PromptSet(xs, torch.einsum("nkd,nd->nk", xs, w.reshape(-1, D)))
    scores = verifier_scores(verifier, prompts).reshape(seeds, pool)
    threshold = None if tau is None else tau / K  # k * score = ||w - c||^2 / w_var
    kept, passed = [], 0
    for s in range(seeds):
        sel = select(scores[s], n, threshold)
        kept.append(sel.index + s * pool)
        passed += sel.passed
    w_kept = implied_weights(prompts[torch.cat(kept)]).reshape(seeds, n, D)
    return w_kept.mean(1), passed, seeds * pool


def test_closed_forms_match_direct_sampling():
    rng = np.random.default_rng(0)
    delta = np.array([0.8, 0.3, 0.0])
    shift2, tau = float(delta @ delta), 3.0
    zs = delta + rng.standard_normal((400_000, D))
    r = (zs ** 2).sum(1)
    kept = r <= tau
    p = keep_fraction(tau, D, shift2)
    assert abs(kept.mean() - p) < 4 * math.sqrt(p * (1 - p) / len(r))
    assert np.all(np.abs(z(zs[kept][:, :2], contraction(tau, D, shift2) * delta[:2], 0)) < Z_TOL)
    assert abs(z(r[kept], kept_second_moment(tau, D, shift2))) < Z_TOL
    assert contraction(tau, D, 4.0) < contraction(tau, D) < 1  # contracts, harder when far off
    assert residual_keep_fraction(1.0, 6) == pytest.approx(0.5768, abs=1e-4)  # chi2_6 at 6
    assert best_fraction_threshold(1.0, D) == math.inf
    assert linear_plateau(math.inf, D, 10) == math.inf


def test_one_filtered_generation_through_the_machinery_is_exact():
    """From a fixed mu_{i-1} = c + delta: the pass rate, the mean drift from c and its mean
    square match the closed forms; unfiltered values are far away."""
    seeds, n, keep, tau = 3000, 10, 0.2, 3.0  # pool 50: a shortfall is a 1e-4 event
    v = verifier_centre()
    delta = torch.tensor([0.9, -0.4, 0.0], dtype=torch.float64)
    mu = (v.centre + delta).expand(seeds, D)
    new, passed, labelled = filtered_generation(mu, v, n, keep, tau, make_generator(0, "step"))
    shift2 = float(delta @ delta)
    p = keep_fraction(tau, D, shift2)
    assert abs(passed / labelled - p) < 4 * math.sqrt(p * (1 - p) / labelled)
    off = (new - v.centre).numpy()  # (S, d)
    g = contraction(tau, D, shift2)
    assert np.all(np.abs(z(off, g * delta.numpy(), 0)) < Z_TOL)
    assert abs(z(off[:, 0], delta[0].item(), 0)) > 10 * Z_TOL  # no filter: no contraction
    sq = (off ** 2).sum(1)
    assert abs(z(sq, step_drift(shift2, tau, D, n))) < Z_TOL
    assert abs(z(sq, shift2 + D / n)) > 10 * Z_TOL


@pytest.mark.parametrize("tau, keep", [(3.0, 0.25), (None, 0.5)])
def test_filtered_loop_through_the_machinery_matches_the_simulation(tau, keep):
    """lambda = 0 for six generations: the drift ||mu_i - mu*||^2 of loops run with the
    verifier and `select` matches `simulate_drift` (threshold, and best fraction) at every
    generation, settles near the first-order plateau, and is far below the unfiltered line."""
    seeds, n, generations = 1500, 10, 6
    v = verifier_centre()
    gen = make_generator(1, "loop")
    mu = torch.randn(seeds, n, D, generator=gen, dtype=torch.float64).mean(1)  # generation 0
    drift = [mu.pow(2).sum(1).numpy()]
    for _ in range(generations):
        mu, _, _ = filtered_generation(mu, v, n, keep, tau, gen)
        drift.append(mu.pow(2).sum(1).numpy())
    drift = np.stack(drift)  # (G + 1, S)
    sim = simulate_drift(generations, D, n, keep=keep, threshold=tau, centre=v.centre.numpy(),
                         seeds=20000, seed=3)
    se = np.sqrt(drift.var(1, ddof=1) / seeds + sim.var(1, ddof=1) / sim.shape[1])
    assert np.all(np.abs(drift.mean(1) - sim.mean(1)) < Z_TOL * se)
    unfiltered = mean_drift_fresh(generations, D, n, 0.0)
    assert drift.mean(1)[-1] < 0.5 * unfiltered[-1]
    threshold = best_fraction_threshold(keep, D) if tau is None else tau
    plateau = linear_plateau(threshold, D, n, centre_err2=v.centre.pow(2).sum().item())
    assert drift.mean(1)[-1] == pytest.approx(plateau, rel=0.15)


def test_simulation_without_a_filter_is_the_unfiltered_closed_form():
    for lam in (0.0, 0.5):
        sim = simulate_drift(5, D, 10, real_fraction=lam, seeds=40000, seed=4)
        exact = mean_drift_fresh(5, D, 10, lam)
        assert np.all(np.abs(z(sim, exact, 1)) < Z_TOL)
    with pytest.raises(ValueError, match="whole"):
        simulate_drift(2, D, 10, real_fraction=0.25)


def test_first_order_plateau_and_verifier_quality():
    """The plateau is the verifier's centre error plus a filter term, so it falls as the
    verifier improves (prediction P6); the first-order form holds without shortfalls."""
    tau, n, d = 3.0, 20, D
    for centre_err in (0.0, 0.5):
        centre = [math.sqrt(centre_err), 0.0, 0.0]
        sim = simulate_drift(24, d, n, keep=0.2, threshold=tau, centre=centre, seeds=3000,
                             seed=5)
        plateau_per_seed = sim[12:].mean(0)
        expected = linear_plateau(tau, d, n, centre_err2=centre_err)
        assert abs(plateau_per_seed.mean() / expected - 1) < 0.05
    worse = linear_plateau(tau, d, n, centre_err2=d / 4)  # a centre fitted on 4 real prompts
    better = linear_plateau(tau, d, n, centre_err2=d / 400)
    assert better < worse
    assert linear_plateau(1.0, d, n) < linear_plateau(6.0, d, n)  # a stricter filter: lower
