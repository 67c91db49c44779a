"""Synthetic-data filters (icl_stl/loop/filters.py) and the ridge verifier (loop/verifier.py)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from icl_stl.config import ConfigError
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression
from icl_stl.loop import verifier as verifier_module
from icl_stl.loop.filters import (
    check_keep,
    disagreement_scores,
    filter_record,
    label_drift,
    pool_size,
    select,
    variance_scores,
)
from icl_stl.loop.verifier import RidgeVerifier, fit_verifier, verifier_scores
from icl_stl.theory.filters import residual_keep_fraction


def linear_prompts(w: torch.Tensor, k: int, gen: torch.Generator,
                   noise_std: float = 0.0) -> PromptSet:
    """Prompts with the given tasks w (n, d), float64 (exact labels for exact checks)."""
    xs = torch.randn(w.shape[0], k, w.shape[1], generator=gen, dtype=torch.float64)
    ys = torch.einsum("nkd,nd->nk", xs, w)
    ys = ys + noise_std * torch.randn(ys.shape, generator=gen, dtype=torch.float64)
    return PromptSet(xs, ys, w)


# -- pool sizing and selection --------------------------------------------------------------------

@pytest.mark.parametrize("wanted, keep, pool", [(10, 0.5, 20), (10, 0.3, 34), (3, 0.1, 30),
                                                (7, 1.0, 7), (0, 0.5, 0), (9, 0.7, 13)])
def test_pool_size(wanted, keep, pool):
    assert pool_size(wanted, keep) == pool
    assert math.floor(pool * keep + 1e-9) >= wanted  # a fraction keep of it covers the count


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), True, "half"])
def test_keep_setting_is_checked(bad):
    with pytest.raises(ConfigError, match=r"^loop\.filter_keep must be a number in \(0, 1\]"):
        check_keep(bad)


def test_best_fraction_keeps_the_lowest_scores_in_pool_order():
    scores = torch.tensor([5.0, 1.0, 4.0, 1.0, 0.5, float("nan"), 3.0])
    sel = select(scores, 3)
    assert sel.index.tolist() == [1, 3, 4]
    assert (sel.passed, sel.pool, sel.shortfall) == (3, 7, 0)
    assert sel.kept_fraction == pytest.approx(3 / 7)
    assert select(scores, 4).index.tolist() == [1, 3, 4, 6]
    assert select(torch.tensor([2.0, 2.0, 2.0]), 2).index.tolist() == [0, 1]  # ties: pool order


def test_threshold_keeps_the_first_passers_and_reports_the_pass_rate():
    scores = torch.tensor([0.1, 3.0, 0.9, 0.2, 0.95, 2.0, 0.3, float("nan")])
    sel = select(scores, 3, threshold=1.0)
    assert sel.index.tolist() == [0, 2, 3]  # first three passers, not the three best
    assert sel.passed == 5 and sel.shortfall == 0
    assert sel.kept_fraction == pytest.approx(5 / 8)


def test_threshold_shortfall_fills_with_the_best_of_the_rest():
    scores = torch.tensor([0.5, 9.0, 3.0, float("nan"), 2.0])
    sel = select(scores, 3, threshold=1.0)
    assert sel.index.tolist() == [0, 2, 4]
    assert (sel.passed, sel.shortfall) == (1, 2)
    assert len(select(scores, 5, threshold=1.0).index) == 5  # the NaN one comes last


def test_select_rejects_impossible_counts():
    with pytest.raises(ValueError, match="cannot keep 4 of a pool of 3"):
        select(torch.zeros(3), 4)
    with pytest.raises(ValueError, match="shape"):
        select(torch.zeros(3, 2), 1)


# -- confidence scores --------------------------------------------------------------------------

def test_variance_scores_average_the_labelled_positions():
    var = torch.tensor([[9.0, 1.0, 1.0], [0.0, 2.0, 4.0]])
    assert variance_scores(var).tolist() == pytest.approx([11 / 3, 2.0])
    assert variance_scores(var, start=1).tolist() == pytest.approx([1.0, 3.0])
    assert variance_scores(torch.tensor([0.5, 0.2])).tolist() == pytest.approx([0.5, 0.2])
    with pytest.raises(ValueError, match="start"):
        variance_scores(var, start=3)


def test_disagreement_is_the_variance_across_members():
    means = torch.tensor([[[1.0, 0.0], [2.0, 2.0]], [[3.0, 0.0], [2.0, 2.0]]])  # (E=2, m=2, k=2)
    assert disagreement_scores(means).tolist() == pytest.approx([0.5, 0.0])
    assert select(disagreement_scores(means), 1).index.tolist() == [1]
    with pytest.raises(ValueError, match="E >= 2"):
        disagreement_scores(means[:1])


# -- the verifier -------------------------------------------------------------------------------

def test_verifier_residuals_match_ridge_and_are_chi_square_on_its_own_model():
    """Prompts drawn from the verifier's model: standardised prequential residuals are i.i.d.
    N(0, 1), so the kept fraction of a threshold is a chi-square CDF, exactly."""
    d, k, noise = 3, 6, 0.5
    gen = make_generator(0, "verifier")
    centre = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)
    v = RidgeVerifier(centre, 0.8, noise ** 2, 1)
    w = centre + math.sqrt(0.8) * torch.randn(20000, d, generator=gen, dtype=torch.float64)
    prompts = linear_prompts(w, k, gen, noise)
    scores = verifier_scores(v, prompts)
    for tau in (0.6, 1.0, 1.5):
        kept = (scores <= tau).double().mean().item()
        exact = residual_keep_fraction(tau, k)
        assert abs(kept - exact) < 4 * math.sqrt(exact * (1 - exact) / len(w))
    ks = stats.kstest((scores * k).numpy()[:5000], stats.chi2(k).cdf)
    assert ks.pvalue > 1e-3
    # brute force: the Bayes update written out per prompt and position
    s2, few = noise ** 2, prompts[:4]
    for p in range(4):
        x, y, total = few.xs[p], few.ys[p], 0.0
        for j in range(k):
            prec = x[:j].T @ x[:j] / s2 + torch.eye(d, dtype=torch.float64) / 0.8
            cov = torch.linalg.inv(prec)
            mean = centre + cov @ x[:j].T @ (y[:j] - x[:j] @ centre) / s2
            total += ((y[j] - x[j] @ mean) ** 2 / (s2 + x[j] @ cov @ x[j])).item()
        assert scores[p].item() == pytest.approx(total / k, rel=1e-9)


def test_verifier_rejects_prompts_from_a_shifted_prior():
    d, k = 3, 6
    gen = make_generator(1, "verifier")
    v = RidgeVerifier(torch.zeros(d, dtype=torch.float64), 1.0, 0.25, 1)
    near = linear_prompts(torch.randn(4000, d, generator=gen, dtype=torch.float64), k, gen, 0.5)
    far = linear_prompts(2 + torch.randn(4000, d, generator=gen, dtype=torch.float64), k, gen, 0.5)
    assert verifier_scores(v, far).mean() > 2 * verifier_scores(v, near).mean()


def test_noiseless_score_is_the_task_distance_from_the_centre():
    d, k = 3, 5
    gen = make_generator(2, "verifier")
    v = RidgeVerifier(torch.tensor([0.3, 0.0, -0.2], dtype=torch.float64), 2.0, 0.0, 1)
    w = math.sqrt(2.0) * torch.randn(500, d, generator=gen, dtype=torch.float64)
    scores = verifier_scores(v, linear_prompts(w, k, gen))
    mahalanobis = (w - v.centre).pow(2).sum(-1) / 2.0
    assert torch.allclose(scores * k, mahalanobis, rtol=2e-3)


def test_scores_skip_opening_positions_and_do_not_depend_on_chunking(monkeypatch):
    gen = make_generator(3, "verifier")
    prompts = linear_prompts(torch.randn(9, 2, generator=gen, dtype=torch.float64), 4, gen, 0.3)
    v = RidgeVerifier(torch.zeros(2, dtype=torch.float64), 1.0, 0.09, 1)
    whole = verifier_scores(v, prompts)
    late = verifier_scores(v, prompts, start=2)
    assert not torch.allclose(whole, late)
    monkeypatch.setattr(verifier_module, "CHUNK_ELEMENTS", 4 * 2 * 2 * 2)
    assert torch.allclose(verifier_scores(v, prompts), whole)
    with pytest.raises(ValueError, match="start"):
        verifier_scores(v, prompts, start=4)


def test_fit_verifier_centre_and_its_degradations():
    task = LinearRegression(d=3, w_scale=1.0)
    real = sample_prompts(task, 400, 6, make_generator(4, "S0"))
    full = fit_verifier(real, 0.0, w_var=1.0)
    assert torch.allclose(full.centre, real.params.double().mean(0), atol=1e-5)
    assert full.n_real == 400 and full.w_var == 1.0
    few = fit_verifier(real, 0.0, w_var=1.0, n_real=10)
    assert torch.allclose(few.centre, real.params[:10].double().mean(0), atol=1e-5)
    estimated = fit_verifier(real, 0.0)
    assert abs(estimated.w_var - 1.0) < 0.15
    noisy = fit_verifier(real, 0.0, w_var=1.0, centre_noise_std=0.5,
                         gen=make_generator(4, "verifier_noise"))
    assert 0.05 < (noisy.centre - full.centre).norm().item() < 3.0
    blurred = fit_verifier(real, 0.0, label_noise_std=1.0, gen=make_generator(4, "vn"))
    assert blurred.w_var > estimated.w_var  # noisy labels blur the implied tasks


def test_verifier_quality_dials_move_the_centre_error_as_documented():
    """E||c - mu*||^2 = d w_var / n_real + d centre_noise_std^2 (noiseless real prompts)."""
    task = LinearRegression(d=2)
    errs = {}
    for n_real, cn in ((4, 0.0), (64, 0.0), (64, 0.5)):
        vals = []
        for s in range(300):
            real = sample_prompts(task, n_real, 3, make_generator(s, "S0", n_real))
            v = fit_verifier(real, 0.0, w_var=1.0, centre_noise_std=cn,
                             gen=make_generator(s, "verifier_noise"))
            vals.append(v.centre.pow(2).sum().item())
        errs[(n_real, cn)] = sum(vals) / len(vals)
    assert errs[(4, 0.0)] == pytest.approx(2 / 4, rel=0.2)
    assert errs[(64, 0.0)] == pytest.approx(2 / 64, rel=0.2)
    assert errs[(64, 0.5)] == pytest.approx(2 / 64 + 2 * 0.25, rel=0.2)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_real": 0}, "n_real must be an integer in"), ({"n_real": 99}, "n_real"),
    ({"label_noise_std": 0.1}, "needs a generator"), ({"centre_noise_std": -1.0}, ">= 0"),
    ({"n_real": 1}, "at least 2 real prompts"),
])
def test_fit_verifier_rejects_bad_arguments(kwargs, message):
    real = sample_prompts(LinearRegression(d=2), 5, 3, make_generator(0, "S0"))
    with pytest.raises(ValueError, match=message):
        fit_verifier(real, 0.0, **kwargs)


# -- label drift before and after --------------------------------------------------------------

def test_label_drift_and_filter_record():
    """A pool half of which comes from a shifted, spread-out prior: the verifier keeps the
    real-like half, and the drift measures fall to those of real-like prompts."""
    d, k, n = 2, 4, 2000
    gen = make_generator(5, "drift")
    real = linear_prompts(torch.randn(n, d, generator=gen, dtype=torch.float64), k, gen)
    w_syn = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_syn[::2] = 3 + 2 * w_syn[::2]  # every other prompt far off
    pool = PromptSet(real.xs, torch.einsum("nkd,nd->nk", real.xs, w_syn))
    v = RidgeVerifier(torch.zeros(d, dtype=torch.float64), 1.0, 0.0, n)
    sel = select(verifier_scores(v, pool), n // 2)
    rec = filter_record(sel, pool, real)
    assert rec["filter_kept_fraction"] == pytest.approx(0.5) and rec["filter_pool"] == n
    assert rec["filter_label_w1_after"] < 0.25 * rec["filter_label_w1_before"]
    assert rec["filter_label_var_ratio_before"] > 3 and rec["filter_label_var_ratio_after"] < 1.2
    assert rec["filter_w_shift2_before"] > 3 and rec["filter_w_shift2_after"] < 0.1
    same = label_drift(real, real)
    assert same["label_w1"] == 0 and same["label_var_ratio"] == 1 and same["w_shift2"] == 0
    assert math.isnan(label_drift(real[:1], real[:1])["label_w1"])
    with pytest.raises(ValueError, match="same x's"):
        label_drift(pool, PromptSet(real.xs + 1, real.ys))
