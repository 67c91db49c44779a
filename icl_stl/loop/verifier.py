"""The ridge verifier: does a synthetic prompt look like a real one?

In context, every prompt has its own task w, so what real data can teach a verifier is the task
prior. `fit_verifier` reads w off each real prompt by least squares and takes their mean as the
verifier's knowledge centre c (Yi et al., arXiv 2510.16657: verified retraining converges to
this centre); the prior's variance per coordinate w_var is given (the task's w_scale^2, as the
reference learner knows it; `loop.verifier_w_var=known`, the default) or estimated from the same
real prompts (`estimate_w_var`: `loop.verifier_w_var=s0`, and always for the density-ratio
filter). `verifier_scores` then runs ridge centred on c with
alpha = s2 / w_var over each prompt, position by position, and scores the prompt by its mean
squared *standardised* prequential residual

    score = mean_j (y_j - x_j^T m_j)^2 / (s2 + x_j^T S_j x_j),

m_j, S_j the posterior of w given the pairs before j under N(c, w_var I) and noise variance s2.
For a prompt drawn from that very model the standardised residuals are independent N(0, 1),
so k * score is chi-square with k degrees of freedom: a threshold's kept fraction is known
exactly (`theory.filters.residual_keep_fraction`). Without label noise (s2 -> 0, see
`MIN_NOISE_VAR_RELATIVE`) and k >= d, k * score tends to ||w - c||^2 / w_var: the verifier
then judges a prompt by how far its task lies from the centre, the form the reference
learner's closed forms use.

Verifier quality is degradable on purpose: fewer real prompts (`n_real`), noise on the real
labels before fitting (`label_noise_std`) or on the centre itself (`centre_noise_std`, so
E||c - mu*||^2 = d w_var / n_real + d centre_noise_std^2 without label noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icl_stl.data.prompts import PromptSet
from icl_stl.loop.fidelity import implied_weights

__all__ = ["MIN_NOISE_VAR_RELATIVE", "RidgeVerifier", "estimate_w_var", "fit_verifier",
           "predictive_moments",
           "verifier_scores"]

# Noiseless labels make the likelihood degenerate; the verifier's noise variance is at least
# this times w_var. Small enough that k * score equals ||w - c||^2 / w_var to ~1e-6 relative on
# exactly linear prompts, large enough that the (d, d) solves stay well conditioned in float64.
MIN_NOISE_VAR_RELATIVE = 1e-6
# Bounds the (chunk, k, d, d) float64 intermediates of `verifier_scores`.
CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RidgeVerifier:
    """Prior N(centre, w_var I) and noise variance noise_var (floored, see module doc)."""

    centre: Tensor  # (d,) float64
    w_var: float
    noise_var: float
    n_real: int  # real prompts it was fitted on

    def __post_init__(self) -> None:
        if self.centre.ndim != 1:
            raise ValueError(f"verifier centre must have shape (d,), got {tuple(self.centre.shape)}")
        if not (math.isfinite(self.w_var) and self.w_var > 0):
            raise ValueError(f"verifier w_var must be a finite number > 0, got {self.w_var!r}")
        if not (math.isfinite(self.noise_var) and self.noise_var >= 0):
            raise ValueError(f"verifier noise_var must be finite and >= 0, got {self.noise_var!r}")

    @property
    def s2(self) -> float:
        """The noise variance the verifier computes with."""
        return max(self.noise_var, MIN_NOISE_VAR_RELATIVE * self.w_var)


def fit_verifier(real: PromptSet, noise_var: float, *, w_var: float | None = None,
                 n_real: int | None = None, label_noise_std: float = 0.0,
                 centre_noise_std: float = 0.0, gen: torch.Generator | None = None
                 ) -> RidgeVerifier:
    """A verifier fitted on the first `n_real` prompts of `real` (default: all; S_0 by default
    in the loop, so that it works at lambda = 0, or the current real part).

    noise_var: the label noise it assumes (the task's noise_std^2). w_var: the prior variance
    per coordinate; None reads it off the implied w's less the label noise's share
    (`estimate_w_var`; needs 2 prompts). label_noise_std /
    centre_noise_std degrade it (drawn from `gen`, which they require).
    """
    count = len(real) if n_real is None else n_real
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(real):
        raise ValueError(f"n_real must be an integer in [1, {len(real)}], got {n_real!r}")
    for name, value in (("label_noise_std", label_noise_std),
                        ("centre_noise_std", centre_noise_std)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if (label_noise_std > 0 or centre_noise_std > 0) and gen is None:
        raise ValueError("a degraded verifier needs a generator for its noise")
    data = real[:count]
    ys = data.ys.double()  # (count, k)
    if label_noise_std > 0:
        ys = ys + label_noise_std * torch.randn(ys.shape, generator=gen, dtype=torch.float64,
                                                device=gen.device).to(ys.device)
    w = implied_weights(PromptSet(data.xs.double(), ys)).cpu()  # (count, d)
    centre = w.mean(0)
    if centre_noise_std > 0:
        centre = centre + centre_noise_std * torch.randn(centre.shape, generator=gen,
                                                         dtype=torch.float64,
                                                         device=gen.device).cpu()
    if w_var is None:
        if count < 2:
            raise ValueError("estimating w_var needs at least 2 real prompts")
        w_var = estimate_w_var(PromptSet(data.xs.double(), ys), noise_var + label_noise_std ** 2, w)
    return RidgeVerifier(centre, float(w_var), float(noise_var), count)


def estimate_w_var(real: PromptSet, noise_var: float, w: Tensor | None = None) -> float:
    """The prior's variance per coordinate, read off real prompts without knowing it.

    Each least-squares task is w_hat = w + (X^T X)^-1 X^T eps, so the spread of the w_hat
    overstates w_var by noise_var E tr (X^T X)^-1 / d (1.6% at d = 3, k = 8, noise 0.25); that
    part is subtracted. The label noise variance is the task's, known as the verifier knows it.
    w: the prompts' implied tasks when already computed (m, d)."""
    w = implied_weights(real).cpu() if w is None else w
    xs = real.xs.double().cpu()
    inflation = 0.0
    if noise_var > 0:
        inv = torch.linalg.pinv(xs.transpose(-1, -2) @ xs)  # (m, d, d)
        inflation = noise_var * inv.diagonal(dim1=-2, dim2=-1).sum(-1).mean().item() / w.shape[1]
    return max(w.var(0, correction=1).mean().item() - inflation, 1e-12)


def _moments_chunk(v: RidgeVerifier, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """xs (b, k, d), ys (b, k) float64 -> the verifier's predictive mean and variance of every
    y_j given the pairs before j, (b, k) each."""
    b, k, d = xs.shape
    alpha = v.s2 / v.w_var
    c = v.centre.to(xs)
    centre_guess = xs @ c  # (b, k)
    resid = ys - centre_guess  # (b, k): labels minus the centre's guess
    outer = xs.unsqueeze(-1) * xs.unsqueeze(-2)  # (b, k, d, d)
    gram = torch.cat([torch.zeros_like(outer[:, :1]), outer.cumsum(1)[:, :-1]], 1)  # pairs < j
    xr = xs * resid.unsqueeze(-1)  # (b, k, d)
    xtr = torch.cat([torch.zeros_like(xr[:, :1]), xr.cumsum(1)[:, :-1]], 1)  # (b, k, d)
    system = gram + alpha * torch.eye(d, dtype=xs.dtype, device=xs.device)  # (b, k, d, d)
    # A = G_j + alpha I: ridge offset m_j - c = A^-1 X^T r, posterior S_j = s2 A^-1.
    sol = torch.linalg.solve(system, torch.stack([xtr, xs], -1))  # (b, k, d, 2)
    mean = centre_guess + (xs * sol[..., 0]).sum(-1)  # (b, k): x_j^T m_j
    var = v.s2 * (1.0 + (xs * sol[..., 1]).sum(-1))  # (b, k): predictive variance
    return mean, var


def _chunks(prompts: PromptSet):
    xs, ys = prompts.xs.double().cpu(), prompts.ys.double().cpu()
    chunk = max(1, CHUNK_ELEMENTS // max(1, prompts.k * prompts.d * prompts.d))
    for s in range(0, len(prompts), chunk):
        yield xs[s:s + chunk], ys[s:s + chunk]


def predictive_moments(verifier: RidgeVerifier, prompts: PromptSet) -> tuple[Tensor, Tensor]:
    """The verifier's prequential predictive N(mean, var) of every label, (m, k) each, float64:
    position j's given the pairs before it, under the prior N(centre, w_var I) and noise s2."""
    if prompts.d != verifier.centre.shape[0]:
        raise ValueError(f"verifier has d={verifier.centre.shape[0]}, prompts d={prompts.d}")
    out = [_moments_chunk(verifier, xs, ys) for xs, ys in _chunks(prompts)]
    if not out:
        empty = torch.zeros(0, prompts.k, dtype=torch.float64)
        return empty, empty.clone()
    return torch.cat([m for m, _ in out]), torch.cat([v for _, v in out])


def verifier_scores(verifier: RidgeVerifier, prompts: PromptSet, start: int = 0) -> Tensor:
    """(m,) mean over positions start..k-1 of the squared standardised prequential residual
    (module doc): about 1 for prompts like the verifier's real data, larger the further off.
    `start` skips positions the model did not label (context mode's c real pairs)."""
    if not 0 <= start < prompts.k:
        raise ValueError(f"start must be in [0, {prompts.k}), got {start}")
    mean, var = predictive_moments(verifier, prompts)
    z2 = (prompts.ys.double().cpu() - mean).pow(2) / var  # (m, k)
    return z2[:, start:].mean(1)
