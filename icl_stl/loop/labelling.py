"""Self-labelling: a trained ensemble labels fresh x's position by position.

Every label is fed back as context for the next position, in one batched pass per position over
all prompts and members. With the native GPT-2 the keys and values of the prefix are cached, so
each position costs two new tokens instead of a full forward pass.

A confidence filter (`loop.filter=confidence`) also needs the Gaussian head's predicted variance
at every labelled position: pass a `variance` buffer (K, m, k) to be filled in place.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icl_stl.models.ensemble import Ensemble
from icl_stl.models.gpt2 import NativeGPT2
from icl_stl.models.model import interleave
from icl_stl.persistence.faults import fault_point


def _noisy(mean: Tensor, log_var: Tensor | None, noise: Tensor | None,
           noise_std: float | None) -> Tensor:
    """mean + scale * noise, the scale fixed or read from the Gaussian head."""
    if noise is None:
        return mean
    if noise_std is None:
        if log_var is None:
            raise ValueError("label noise needs a fixed scale or a Gaussian head")
        return mean + torch.exp(0.5 * log_var.clamp(-12, 12)) * noise
    return mean + noise_std * noise


def _record(variance: Tensor | None, j: int, log_var: Tensor | None) -> None:
    """Store the head's predicted variance of position j (clamped as `_noisy` clamps it)."""
    if variance is not None:
        if log_var is None:
            raise ValueError("a predicted variance needs a Gaussian head")
        variance[..., j] = torch.exp(log_var.clamp(-12, 12))


@torch.no_grad()
def label_uncached(model: Ensemble, xs: Tensor, context_ys: Tensor, noise: Tensor | None,
                   noise_std: float | None, variance: Tensor | None = None) -> Tensor:
    """Reference path: a forward pass over the prefix for every position (any backbone).

    xs (K, m, k, d); context_ys (K, m, c) real labels of the first c pairs; noise (K, m, k)
    standard normals or None. Returns labels (K, m, k): the c real ones, then the model's.
    """
    c, k = context_ys.shape[-1], xs.shape[-2]
    ys = torch.zeros(xs.shape[:-1], dtype=xs.dtype, device=xs.device)
    ys[..., :c] = context_ys
    for j in range(c, k):
        fault_point("label_position")
        pred = model(xs[..., : j + 1, :], ys[..., : j + 1])  # only the prefix matters
        lv = None if pred.log_var is None else pred.log_var[..., j]
        _record(variance, j, lv)
        ys[..., j] = _noisy(pred.mean[..., j], lv, None if noise is None else noise[..., j],
                            noise_std)
    return ys


@torch.no_grad()
def label_cached(model: NativeGPT2, xs: Tensor, context_ys: Tensor, noise: Tensor | None,
                 noise_std: float | None, variance: Tensor | None = None) -> Tensor:
    """Same labels as `label_uncached`, reusing the prefix's keys and values."""
    c, k = context_ys.shape[-1], xs.shape[-2]
    cache = model.new_cache()
    ys = torch.zeros(xs.shape[:-1], dtype=xs.dtype, device=xs.device)
    ys[..., :c] = context_ys
    # Prefill: the c real pairs and x_{c+1}; afterwards each step adds (y_j, x_{j+1}).
    tokens = torch.cat([interleave(xs[..., :c, :], context_ys), xs[..., c:c + 1, :]], dim=-2)
    for j in range(c, k):
        fault_point("label_position")
        pred = model.step(tokens, cache)  # for y_j: (K, m, 1)
        lv = None if pred.log_var is None else pred.log_var[..., 0]
        _record(variance, j, lv)
        ys[..., j] = _noisy(pred.mean[..., 0], lv, None if noise is None else noise[..., j],
                            noise_std)
        if j + 1 < k:
            tokens = interleave(xs[..., j + 1:j + 2, :], ys[..., j:j + 1])  # (x_{j+1}, y_j)
            tokens = tokens.flip(-2)  # order y_j then x_{j+1}
    return ys


def label(model: Ensemble, xs: Tensor, context_ys: Tensor, noise: Tensor | None,
          noise_std: float | None, *, use_cache: bool = True, batch_size: int = 4096,
          return_variance: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Label in chunks of `batch_size` prompts (per member) with the fastest valid path.

    return_variance: also the head's predicted variance (K, m, k) at each labelled position
    (0 at the c real opening positions), as (labels, variance).
    """
    was_training = model.training
    model.eval()
    cached = use_cache and isinstance(model, NativeGPT2)
    fn = label_cached if cached else label_uncached
    variance = xs.new_zeros(xs.shape[:-1]) if return_variance else None  # (K, m, k)
    out = []
    for s in range(0, xs.shape[1], batch_size):
        sl = slice(s, s + batch_size)
        out.append(fn(model, xs[:, sl], context_ys[:, sl],
                      None if noise is None else noise[:, sl], noise_std,
                      None if variance is None else variance[:, sl]))  # a view: filled in place
    model.train(was_training)
    ys = torch.cat(out, dim=1) if out else xs.new_zeros(xs.shape[:-1])
    return (ys, variance) if return_variance else ys
