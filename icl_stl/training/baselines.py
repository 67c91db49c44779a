"""Classical in-context baselines for linear regression prompts.

Every baseline predicts *every* position of a batch of prompts ``(x_1, y_1, ..., x_k, y_k)`` from
its own prefix: the prediction at (0-based) position ``j`` sees only the pairs ``i < j`` and the
query ``x_j``, so position 0 sees no pairs at all. All functions take ``xs`` of shape
``(..., k, d)`` and ``ys`` of shape ``(..., k)`` with any number of leading batch dims, and return
predictions of shape ``(..., k)`` in the inputs' dtype and on their device.

Least squares and ridge fit all ``k`` prefixes of all prompts in one batched pass (no loop over
prompts or positions); see :func:`_prefix_fit` for how. :func:`least_squares_reference` and
:func:`ridge_reference` are the slow, obviously-correct loops they are checked and benchmarked
against.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

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

# The fast path solves Gram / kernel systems whose condition number is the *square* of the
# data's, so its relative error grows like eps64 * cond. Prefixes whose (over-)estimated condition
# number exceeds this are recomputed by SVD of the data itself. At d=20, k=41 with Gaussian data
# this sends ~0.3% of (prompt, position) pairs to the fallback and keeps the worst relative error
# against an SVD solution near 4e-9 (1e10: 0.1% and 2e-8; 1e8: 0.8% and 5e-10).
_MAX_FAST_CONDITION = 1e9
# Bounds the memory of the SVD fallback: it materialises (chunk, k, d) masked prefixes.
_FALLBACK_CHUNK = 4096


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


def _exclusive_cumsum(t: Tensor, dim: int) -> Tensor:
    """Sum over the entries strictly before each index along ``dim`` (0 at index 0).

    Shifting, not ``cumsum(t) - t``: the subtraction would cancel catastrophically after a
    large entry and would let a NaN at j leak into position j itself.
    """
    if t.shape[dim] == 0:
        return t.clone()
    summed = torch.cumsum(t, dim).narrow(dim, 0, t.shape[dim] - 1)
    return torch.cat([torch.zeros_like(t.narrow(dim, 0, 1)), summed], dim)


def default_rtol(dtype: torch.dtype, k: int, d: int) -> float:
    """Relative singular-value cutoff used by :func:`least_squares` when ``rtol`` is None.

    ``max(k, d) * eps(dtype)`` of the *input* dtype, i.e. what ``torch.linalg.pinv`` would use on
    the whole ``(k, d)`` prompt: directions of the data below its own precision count as absent.
    """
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    return max(k, d, 1) * eps


# ---------------------------------------------------------------------------------------------
# Batched prefix fits (least squares and ridge)


def _prefix_fit(X: Tensor, Y: Tensor, alpha: float, rtol: float) -> Tensor:
    """Predictions of ridge (alpha > 0) or min-norm least squares (alpha = 0) at every prefix.

    X: (N, k, d) float64, Y: (N, k) float64 -> (N, k) float64.

    Underdetermined positions j < d use the kernel ("dual") form: the prediction is
    k_j^T (K_j + alpha I)^{-1} y_{<j} with K = X X^T, and because K_j is the leading j x j block
    of K, one Cholesky factor L of the first min(d, k) rows serves all of them at once:
    pred_j = L[j, :j] . (L^{-1} y)[:j]  (the Gaussian-process posterior-mean identity).

    Positions j >= d use the same identity after absorbing the first d pairs into a prior:
    G_j + alpha I = A + sum_{d <= i < j} x_i x_i^T with A = X_d^T X_d + alpha I is a Bayesian
    linear regression with prior mean A^{-1} b_d, prior covariance A^{-1} and unit noise, whose
    posterior mean at x_j is m(x_j) + Lg[t, :t] . (Lg^{-1} (y - m))[:t] where Lg is the Cholesky
    factor of U U^T + I with u_i = R^{-1} x_i, A = R R^T. U U^T + I has eigenvalues >= 1, so this
    stays accurate however small alpha is, as long as A itself is well conditioned.

    Both forms square the data's condition number; prefixes whose estimated condition number
    is too large for that (or for the rank cutoff ``rtol`` when alpha = 0) are flagged and
    recomputed from an SVD of the masked prefix by :func:`_svd_fallback`.
    """
    N, k, d = X.shape
    dev = X.device
    pred = torch.zeros(N, k, dtype=X.dtype, device=dev)
    flag = torch.zeros(N, k, dtype=torch.bool, device=dev)
    # The fast path never truncates singular values, so it may only be trusted where the
    # min-norm cutoff cannot bite: cond(Gram) < 1 / rtol^2 implies s_min / s_max > rtol.
    limit = _MAX_FAST_CONDITION if alpha > 0 else min(_MAX_FAST_CONDITION, rtol**-2)
    sq_norms = (X * X).sum(-1)  # (N, k)
    # trace of the prefix Gram G_j (pairs i < j): tr(G_j) = tr(K_j) = sum_{i<j} |x_i|^2
    trace_prefix = _exclusive_cumsum(sq_norms, -1)  # (N, k)

    # ---- dual form, positions 0 <= j < n0
    n0 = min(d, k)
    X0, Y0 = X[:, :n0], Y[:, :n0]  # (N, n0, d), (N, n0)
    eye0 = torch.eye(n0, dtype=X.dtype, device=dev)
    K0 = X0 @ X0.mT + alpha * eye0  # (N, n0, n0)
    L0, ok0 = _cholesky(K0)  # (N, n0, n0), (N,)
    rhs0 = torch.cat([Y0[..., None], eye0.expand(N, n0, n0)], -1)  # (N, n0, 1 + n0)
    sol0 = torch.linalg.solve_triangular(L0, rhs0, upper=False)
    z0, L0inv = sol0[..., 0], sol0[..., 1:]  # (N, n0), (N, n0, n0)
    pred[:, :n0] = _strictly_lower_matvec(L0, z0)
    # cond(K_j) <= tr(K_j) tr(K_j^{-1}); tr(K_j^{-1}) = ||L_j^{-1}||_F^2 and L_j^{-1} is the
    # leading block of L^{-1}, so its Frobenius norms over j are a shifted cumsum of row norms.
    row_sq = (L0inv * L0inv).sum(-1)  # (N, n0)
    trace_inv0 = _exclusive_cumsum(row_sq, -1)
    ar0 = torch.arange(n0, device=dev)
    cond0 = (trace_prefix[:, :n0] + alpha * ar0) * trace_inv0  # (N, n0)
    flag[:, :n0] = ~(cond0 <= limit) | (~ok0[:, None] & (ar0 > 0))

    # ---- prior-absorbed form, positions d <= j < k
    if k > d:
        P = k - d
        Xa, Xg = X[:, :d], X[:, d:]  # (N, d, d), (N, P, d)
        eye_d = torch.eye(d, dtype=X.dtype, device=dev)
        A = Xa.mT @ Xa + alpha * eye_d  # (N, d, d)
        R, okA = _cholesky(A)  # (N, d, d), (N,)
        b0 = Xa.mT @ Y[:, :d, None]  # (N, d, 1)
        rhsA = torch.cat([b0, Xg.mT, eye_d.expand(N, d, d)], -1)  # (N, d, 1 + P + d)
        solA = torch.linalg.solve_triangular(R, rhsA, upper=False)
        c, Ut, Rinv = solA[..., 0], solA[..., 1 : 1 + P], solA[..., 1 + P :]
        prior_mean = (Ut * c[..., None]).sum(-2)  # (N, P): x_i^T A^{-1} b0
        resid = Y[:, d:] - prior_mean  # (N, P)
        eye_p = torch.eye(P, dtype=X.dtype, device=dev)
        Lg, okG = _cholesky(Ut.mT @ Ut + eye_p)  # (N, P, P), (N,)
        zg = torch.linalg.solve_triangular(Lg, resid[..., None], upper=False)[..., 0]  # (N, P)
        pred[:, d:] = prior_mean + _strictly_lower_matvec(Lg, zg)
        # lambda_min(G_j + alpha I) >= lambda_min(A) >= 1 / tr(A^{-1}) for every j >= d
        trace_inv_a = (Rinv * Rinv).sum((-2, -1))  # (N,)
        condg = (trace_prefix[:, d:] + alpha * d) * trace_inv_a[:, None]  # (N, P)
        flag[:, d:] = ~(condg <= limit) | ~(okA & okG)[:, None]

    if bool(flag.any()):
        bi, ji = flag.nonzero(as_tuple=True)
        pred[bi, ji] = _svd_fallback(X, Y, bi, ji, alpha, rtol)
    return pred


def _cholesky(M: Tensor) -> tuple[Tensor, Tensor]:
    """Batched Cholesky factor of M (N, n, n) and a (N,) mask of the factorisations that worked.

    A failed factor may hold NaN or garbage; it is replaced by I so that it cannot poison the
    batched ops downstream, and the caller's flags send those prompts to the fallback.
    """
    L, info = torch.linalg.cholesky_ex(M)
    ok = info == 0
    if not bool(ok.all()):
        L = torch.where(
            ok[:, None, None], L, torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        )
    return L, ok


def _strictly_lower_matvec(L: Tensor, z: Tensor) -> Tensor:
    """tril(L, -1) @ z for L (N, n, n), z (N, n) -> (N, n).

    A masked sum rather than a matmul with tril(L, -1), whose 0 * z_i terms would let a NaN or
    inf in z_{>=j} (from a non-finite x_j) leak into earlier predictions.
    """
    n = L.shape[-1]
    strictly_lower = torch.ones(n, n, dtype=torch.bool, device=L.device).tril(-1)
    return torch.where(strictly_lower, L * z[..., None, :], 0.0).sum(-1)


def _svd_fallback(
    X: Tensor, Y: Tensor, bi: Tensor, ji: Tensor, alpha: float, rtol: float
) -> Tensor:
    """Predictions at (prompt bi, position ji) pairs from an SVD of the masked prefix.

    X: (N, k, d), Y: (N, k), bi/ji: (n,) -> (n,). Rows i >= j are zeroed, which leaves the
    min-norm / ridge solution of the prefix unchanged, so all pairs share one (k, d) shape.
    """
    k = X.shape[1]
    out = []
    for start in range(0, bi.numel(), _FALLBACK_CHUNK):
        b = bi[start : start + _FALLBACK_CHUNK]
        j = ji[start : start + _FALLBACK_CHUNK]
        keep_rows = torch.arange(k, device=X.device) < j[:, None]  # (c, k)
        # where, not multiplication: a NaN in a later row must not survive being masked out
        Xm = torch.where(keep_rows[..., None], X[b], 0.0)  # (c, k, d)
        Ym = torch.where(keep_rows, Y[b], 0.0)  # (c, k)
        # LAPACK's SVD raises on NaN/inf; such prefixes get NaN predictions instead
        finite = Xm.isfinite().all(-1).all(-1)  # (c,)
        Xm = torch.where(finite[:, None, None], Xm, 0.0)
        U, S, Vh = torch.linalg.svd(Xm, full_matrices=False)  # (c,k,m), (c,m), (c,m,d)
        if alpha > 0:
            inv_s = S / (S * S + alpha)
        else:
            kept = S > rtol * S[:, :1]
            inv_s = torch.where(kept, 1.0 / torch.where(kept, S, torch.ones_like(S)), 0.0)
        coef = inv_s * (U.mT @ Ym[..., None])[..., 0]  # (c, m)
        w = (Vh.mT @ coef[..., None])[..., 0]  # (c, d)
        out.append(torch.where(finite, (X[b, j] * w).sum(-1), math.nan))
    return torch.cat(out)


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
    return _finish(_prefix_fit(_work(X), _work(Y), 0.0, rtol), xs, shape, dtype)


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
    return _finish(_prefix_fit(_work(X), _work(Y), alpha, 0.0), xs, shape, dtype)


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
    prefix_sum = _exclusive_cumsum(yx, 1)  # (N, k, d): sum over i < j
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
