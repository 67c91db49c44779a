"""Classical in-context baselines for linear regression prompts.

Every baseline predicts *every* position of a batch of prompts ``(x_1, y_1, ..., x_k, y_k)`` from
its own prefix: the prediction at (0-based) position ``j`` sees only the pairs ``i < j`` and the
query ``x_j``, so position 0 sees no pairs at all. All functions take ``xs`` of shape
``(..., k, d)`` and ``ys`` of shape ``(..., k)`` with any number of leading batch dims, and return
predictions of shape ``(..., k)`` in the inputs' dtype and on their device.

Least squares and ridge fit all ``k`` prefixes of all prompts in one batched pass (no loop over
prompts or positions); see :func:`icl_stl.training.prefix_fit.prefix_fit` for how.
:func:`least_squares_reference` and :func:`ridge_reference` are the slow, obviously-correct loops
they are checked and benchmarked against.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from icl_stl.training.prefix_fit import exclusive_cumsum, prefix_fit

__all__ = [
    "BASELINES",
    "averaging",
    "bayes_optimal_ridge_alpha",
    "default_rtol",
    "least_squares",
    "least_squares_reference",
    "nearest_neighbours",
    "predict",
    "ridge",
    "ridge_reference",
    "zero",
]


# ---------------------------------------------------------------------------------------------
# Shape handling


def _flatten(xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor, torch.Size, torch.dtype]:
    """Validate shapes and flatten leading dims: (..., k, d), (..., k) -> (N, k, d), (N, k)."""
    if xs.ndim < 2:
        raise ValueError(f"xs must have shape (..., k, d), got {tuple(xs.shape)}")
    if ys.shape != xs.shape[:-1]:
        raise ValueError(
            f"ys must have shape xs.shape[:-1] = {tuple(xs.shape[:-1])}, got {tuple(ys.shape)}"
        )
    out_dtype = torch.promote_types(xs.dtype, ys.dtype)
    if not out_dtype.is_floating_point:
        out_dtype = torch.get_default_dtype()
    n, k, d = math.prod(xs.shape[:-2]), xs.shape[-2], xs.shape[-1]
    return xs.reshape(n, k, d), ys.reshape(n, k), ys.shape, out_dtype


def _work(t: Tensor) -> Tensor:
    # float64 throughout: prefix Gram systems near j = d are badly conditioned. MPS has no
    # float64, so such inputs are computed on the CPU.
    if t.device.type == "mps":
        t = t.cpu()
    return t.to(torch.float64)


def _finish(pred: Tensor, like: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    return pred.to(device=like.device, dtype=dtype).reshape(shape)


def default_rtol(dtype: torch.dtype, k: int, d: int) -> float:
    """Relative singular-value cutoff used by :func:`least_squares` when ``rtol`` is None.

    ``max(k, d) * eps(dtype)`` of the *input* dtype, i.e. what ``torch.linalg.pinv`` would use on
    the whole ``(k, d)`` prompt: directions of the data below its own precision count as absent.
    """
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    return max(k, d, 1) * eps


# ---------------------------------------------------------------------------------------------
# Least squares and ridge (batched: icl_stl.training.prefix_fit)


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"ridge alpha must be a finite number >= 0, got {alpha!r}")
    return alpha


def least_squares(xs: Tensor, ys: Tensor, *, rtol: float | None = None) -> Tensor:
    """Minimum-norm least squares fitted on each prefix: pred_j = <pinv(X_{<j}) y_{<j}, x_j>.

    xs: (..., k, d), ys: (..., k) -> (..., k). Position 0 predicts 0; underdetermined prefixes
    (j < d) use the minimum-norm solution. Singular values below ``rtol`` times the largest are
    treated as zero (default :func:`default_rtol` of the input dtype), exactly as in
    :func:`least_squares_reference`. All prefixes of all prompts are fitted in one batched pass.
    """
    X, Y, shape, dtype = _flatten(xs, ys)
    N, k, d = X.shape
    if rtol is None:
        rtol = default_rtol(dtype, k, d)
    if N == 0 or k == 0:
        return torch.zeros(shape, dtype=dtype, device=xs.device)
    return _finish(prefix_fit(_work(X), _work(Y), 0.0, rtol), xs, shape, dtype)


def ridge(xs: Tensor, ys: Tensor, alpha: float) -> Tensor:
    """Ridge regression fitted on each prefix: w_j = (X_j^T X_j + alpha I)^{-1} X_j^T y_j.

    xs: (..., k, d), ys: (..., k) -> (..., k); pred_j = <w_j, x_j>, position 0 predicts 0.
    ``alpha = 0`` falls back to :func:`least_squares`. With the prior w ~ N(0, w_scale^2 I) and
    noise N(0, noise_std^2), ``alpha = bayes_optimal_ridge_alpha(noise_std, w_scale)`` makes w_j
    the posterior mean of w, hence the Bayes-optimal predictor under squared loss.
    """
    alpha = _check_alpha(alpha)
    if alpha == 0:
        return least_squares(xs, ys)
    X, Y, shape, dtype = _flatten(xs, ys)
    if X.shape[0] == 0 or X.shape[1] == 0:
        return torch.zeros(shape, dtype=dtype, device=xs.device)
    return _finish(prefix_fit(_work(X), _work(Y), alpha, 0.0), xs, shape, dtype)


def bayes_optimal_ridge_alpha(noise_std: float, w_scale: float) -> float:
    """Ridge alpha = noise_std^2 / w_scale^2 that makes :func:`ridge` the posterior mean.

    For y = <w, x> + N(0, noise_std^2) with prior w ~ N(0, w_scale^2 I), the posterior mean is
    (X^T X + (noise_std / w_scale)^2 I)^{-1} X^T y.
    """
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    if not (math.isfinite(w_scale) and w_scale > 0):
        raise ValueError(f"w_scale must be a finite number > 0, got {w_scale!r}")
    return noise_std**2 / w_scale**2


# ---------------------------------------------------------------------------------------------
# Simple baselines


def averaging(xs: Tensor, ys: Tensor) -> Tensor:
    """Averaging estimator of Garg et al.: w_j = mean_{i<j} y_i x_i, pred_j = <w_j, x_j>.

    xs: (..., k, d), ys: (..., k) -> (..., k); position 0 predicts 0.
    """
    X, Y, shape, dtype = _flatten(xs, ys)
    X, Y = _work(X), _work(Y)
    k = X.shape[1]
    yx = Y[..., None] * X  # (N, k, d)
    prefix_sum = exclusive_cumsum(yx, 1)  # (N, k, d): sum over i < j
    count = torch.arange(k, device=X.device, dtype=X.dtype).clamp_min(1)  # (k,)
    pred = (prefix_sum * X).sum(-1) / count
    return _finish(pred, xs, shape, dtype)


def nearest_neighbours(xs: Tensor, ys: Tensor, n_neighbours: int = 3) -> Tensor:
    """Mean y of the ``n_neighbours`` Euclidean-nearest earlier x's (fewer while j < n).

    xs: (..., k, d), ys: (..., k) -> (..., k); position 0 predicts 0. Ties are broken by
    ``torch.topk``, i.e. arbitrarily.
    """
    if isinstance(n_neighbours, bool) or not isinstance(n_neighbours, int) or n_neighbours < 1:
        raise ValueError(f"n_neighbours must be an integer >= 1, got {n_neighbours!r}")
    X, Y, shape, dtype = _flatten(xs, ys)
    X, Y = _work(X), _work(Y)
    N, k, _ = X.shape
    if N == 0 or k == 0:
        return _finish(torch.zeros(N, k, dtype=X.dtype), xs, shape, dtype)
    # exact differences, not the |a|^2 + |b|^2 - 2ab matmul form, so near-ties rank correctly
    dist = torch.cdist(X, X, compute_mode="donot_use_mm_for_euclid_dist")  # (N, k_query, k_key)
    future = torch.ones(k, k, dtype=torch.bool, device=X.device).triu()  # key i >= query j
    dist = dist.masked_fill(future, math.inf)
    n = min(n_neighbours, k)
    near_dist, near_idx = torch.topk(dist, n, dim=-1, largest=False)  # (N, k, n)
    valid = torch.isfinite(near_dist)
    near_y = torch.gather(Y[:, None, :].expand(N, k, k), -1, near_idx)  # (N, k, n)
    total = torch.where(valid, near_y, 0.0).sum(-1)
    pred = total / valid.sum(-1).clamp_min(1)
    return _finish(pred, xs, shape, dtype)


def zero(xs: Tensor, ys: Tensor) -> Tensor:
    """Predicts 0 everywhere (the prior mean of y). xs: (..., k, d), ys: (..., k) -> (..., k)."""
    _, _, shape, dtype = _flatten(xs, ys)
    return torch.zeros(shape, dtype=dtype, device=xs.device)


# ---------------------------------------------------------------------------------------------
# Registry

BASELINES: dict[str, Callable[..., Tensor]] = {
    "least_squares": least_squares,
    "ridge": ridge,
    "averaging": averaging,
    "knn": nearest_neighbours,
    "zero": zero,
}


def predict(
    name: str, xs: Tensor, ys: Tensor, *, ridge_alpha: float, knn_neighbours: int
) -> Tensor:
    """Run the baseline registered as ``name`` in :data:`BASELINES` on every prefix.

    xs: (..., k, d), ys: (..., k) -> (..., k). ``ridge_alpha`` is used only by "ridge" and
    ``knn_neighbours`` only by "knn".
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    if name == "ridge":
        return ridge(xs, ys, ridge_alpha)
    if name == "knn":
        return nearest_neighbours(xs, ys, knn_neighbours)
    return BASELINES[name](xs, ys)


# ---------------------------------------------------------------------------------------------
# Slow references: one fit per prefix per prompt, in float64 on the CPU.


def least_squares_reference(xs: Tensor, ys: Tensor, *, rtol: float | None = None) -> Tensor:
    """Loop-based :func:`least_squares`: one ``torch.linalg.lstsq`` (gelsd) per prefix and prompt.

    xs: (..., k, d), ys: (..., k) -> (..., k). For checks and benchmarks only.
    """
    X, Y, shape, dtype = _flatten(xs, ys)
    N, k, d = X.shape
    if rtol is None:
        rtol = default_rtol(dtype, k, d)
    X = X.detach().to("cpu", torch.float64)
    Y = Y.detach().to("cpu", torch.float64)
    pred = torch.zeros(N, k, dtype=torch.float64)
    for n in range(N):
        for j in range(1, k):
            # gelsd: SVD-based, so rank-deficient prefixes get the min-norm solution
            w = torch.linalg.lstsq(X[n, :j], Y[n, :j, None], rcond=rtol, driver="gelsd").solution
            pred[n, j] = X[n, j] @ w[:, 0]
    return _finish(pred, xs, shape, dtype)


def ridge_reference(xs: Tensor, ys: Tensor, alpha: float) -> Tensor:
    """Loop-based :func:`ridge`: one ``torch.linalg.lstsq`` per prefix and prompt.

    xs: (..., k, d), ys: (..., k) -> (..., k). For checks and benchmarks only. Each prefix is
    solved as the least-squares problem [X_j; sqrt(alpha) I] w = [y_j; 0], whose minimiser is the
    ridge solution: unlike the normal equations its accuracy does not degrade for tiny alpha.
    """
    alpha = _check_alpha(alpha)
    if alpha == 0:
        return least_squares_reference(xs, ys)
    X, Y, shape, dtype = _flatten(xs, ys)
    N, k, d = X.shape
    X = X.detach().to("cpu", torch.float64)
    Y = Y.detach().to("cpu", torch.float64)
    prior_rows = math.sqrt(alpha) * torch.eye(d, dtype=torch.float64)
    prior_targets = torch.zeros(d, 1, dtype=torch.float64)
    pred = torch.zeros(N, k, dtype=torch.float64)
    for n in range(N):
        for j in range(1, k):
            A = torch.cat([X[n, :j], prior_rows])
            b = torch.cat([Y[n, :j, None], prior_targets])
            w = torch.linalg.lstsq(A, b, driver="gelsd").solution
            pred[n, j] = X[n, j] @ w[:, 0]
    return _finish(pred, xs, shape, dtype)
