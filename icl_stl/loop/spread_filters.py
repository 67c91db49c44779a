"""Filters that keep the task spread (P6): neither ranks prompts by how far their task lies.

The ridge verifier's score (`icl_stl.loop.verifier`) is, without label noise, ||w - c||^2 / w_var:
any cut on it keeps the tasks near the centre, so the kept prompts' tasks spread less than real
ones (issue 30: label variance 0.52 of real after one generation, implied ||w|| 0.37 against
1.25 after six). The two filters here do not look at w:

- `loop.filter=residual`: the least-squares residual over all k positions,
  score = ||y - X w_hat||^2 / (s2 (k - d)), s2 the task's noise variance. For y = X w + eps the
  residual is ||(I - P_X) eps||^2: it depends on the noise alone, never on w, and for Gaussian
  noise it is independent of w_hat. On oracle-labelled prompts the kept tasks are therefore
  distributed as real ones, whatever the cut (and the score is chi2_{k-d} / (k - d)); on
  model-labelled prompts it keeps the labellings that are most nearly linear. Needs k > d.
- `loop.filter=density_ratio`: rejection sampling from the generator towards the verifier. The
  generator drew y_j ~ N(mu_j, sigma_j^2) (the Gaussian head's mean and variance given the
  prefix, or the oracle's posterior predictive); the verifier's prequential predictive is
  N(m_j, v_j) (ridge on N(c, w_var I), c and w_var both read off S_0). A prompt's log density
  ratio is L = sum_j log N(y_j; m_j, v_j) - log N(y_j; mu_j, sigma_j^2) over the positions the
  generator labelled, and the prompt is accepted with probability min(1, exp(L - log M)). The
  accepted prompts follow the verifier's model N(c, w_var I) wherever exp(L - log M) <= 1, so
  their spread is S_0's, not the generator's. M is set from the pool (`acceptance`): the
  smallest bound whose expected acceptances reach the wanted count plus three standard
  deviations, so that a shortfall is rare; prompts above the bound are accepted with
  probability 1 (a cap, documented by `filter_kept_fraction`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from icl_stl.data.prompts import PromptSet
from icl_stl.loop.fidelity import implied_weights
from icl_stl.loop.verifier import MIN_NOISE_VAR_RELATIVE, RidgeVerifier, predictive_moments

__all__ = ["acceptance", "acceptance_bound", "log_density_ratio", "residual_scores"]

LOG_2PI = math.log(2.0 * math.pi)


def residual_scores(prompts: PromptSet, noise_var: float) -> Tensor:
    """(m,) ||y - X w_hat||^2 / (s2 (k - d)) over all k positions (module doc); s2 is
    `noise_var`, floored at 1e-6 for noiseless tasks (the ranking does not change)."""
    if prompts.k <= prompts.d:
        raise ValueError(f"the residual filter needs k > d (else every residual is 0), got "
                         f"k={prompts.k}, d={prompts.d}")
    xs, ys = prompts.xs.double().cpu(), prompts.ys.double().cpu()
    w = implied_weights(PromptSet(xs, ys))  # (m, d)
    rss = (ys - (xs @ w.unsqueeze(-1)).squeeze(-1)).pow(2).sum(1)  # (m,)
    return rss / (max(noise_var, MIN_NOISE_VAR_RELATIVE) * (prompts.k - prompts.d))


def _log_normal(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * ((y - mean).pow(2) / var + var.log() + LOG_2PI)


def log_density_ratio(verifier: RidgeVerifier, prompts: PromptSet, gen_mean: Tensor,
                      gen_var: Tensor, start: int = 0) -> Tensor:
    """(m,) log of verifier density over generator density of each prompt's labels at
    positions start..k-1 (module doc). gen_mean, gen_var (m, k): the generator's predictive
    N(mu_j, sigma_j^2) of y_j given the prefix."""
    if gen_mean.shape != prompts.ys.shape or gen_var.shape != prompts.ys.shape:
        raise ValueError(f"generator moments must have shape {tuple(prompts.ys.shape)}, got "
                         f"{tuple(gen_mean.shape)} and {tuple(gen_var.shape)}")
    if not 0 <= start < prompts.k:
        raise ValueError(f"start must be in [0, {prompts.k}), got {start}")
    ys = prompts.ys.double().cpu()
    v_mean, v_var = predictive_moments(verifier, prompts)
    g_var = gen_var.double().cpu().clamp(min=1e-30)
    log_ratio = _log_normal(ys, v_mean, v_var) - _log_normal(ys, gen_mean.double().cpu(), g_var)
    return log_ratio[:, start:].sum(1)


def acceptance_bound(log_ratio: Tensor, target: float) -> float:
    """log M with sum_i min(1, exp(L_i - log M)) = target (0 < target <= pool), by bisection:
    the expected number of acceptances is the target."""
    pool = log_ratio.numel()
    if not 0 < target <= pool:
        raise ValueError(f"target must be in (0, {pool}], got {target!r}")
    lr = log_ratio.double()
    # Above max L every probability is exp(L - log M) < 1: the sum is exact there.
    uncapped = (torch.logsumexp(lr, 0) - math.log(target)).item()
    if uncapped >= lr.max().item():
        return uncapped
    lo, hi = lr.min().item(), lr.max().item()  # sum(lo) = pool >= target >= sum(hi)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if torch.exp(lr - mid).clamp(max=1.0).sum().item() > target:
            lo = mid
        else:
            hi = mid
    return hi


def acceptance(log_ratio: Tensor, wanted: int, gen: torch.Generator) -> tuple[Tensor, float]:
    """Scores and threshold for `filters.select`: a prompt passes when log u <= L - log M,
    u ~ U(0, 1) from `gen` (score log u - L, threshold -log M; module doc). The bound M makes
    wanted + 3 sqrt(wanted) acceptances expected (at most the pool)."""
    pool = log_ratio.numel()
    if not 0 <= wanted <= pool:
        raise ValueError(f"cannot keep {wanted} of a pool of {pool}")
    u = torch.rand(pool, generator=gen, dtype=torch.float64)
    if pool == 0:
        return u, 0.0
    target = min(float(pool), wanted + 3.0 * math.sqrt(wanted)) or 1.0
    log_bound = acceptance_bound(log_ratio, target)
    return u.log() - log_ratio.double().cpu(), -log_bound
