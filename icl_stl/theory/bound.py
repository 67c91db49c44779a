"""The shape of the generalization bound for transformers in a self-consuming training loop.

Fu et al. (ICLR 2025) bound the test risk after training on n prompts by

    c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4      (natural logarithm, c1, c2, c3 >= 0)

with constants the theory does not give. Only the shape is used here: its three terms as a
basis (for `icl_stl.theory.fits.fit_bound`) and its value for given constants.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["as_sample_sizes", "bound_basis", "bound_shape"]

FloatArray = npt.NDArray[np.float64]


def as_sample_sizes(n: npt.ArrayLike) -> FloatArray:
    """n as a float array, checked to be finite and >= 1 (ValueError naming the bad values).

    n >= 1 rather than n > 0 because for n < 1 the log terms turn negative and the "bound"
    would no longer be a sum of non-negative terms; sample sizes are counts anyway.
    """
    arr = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 1):
        bad = arr[~np.isfinite(arr) | (arr < 1)]
        raise ValueError(f"sample sizes n must be finite and >= 1, got {bad.tolist()[:10]}")
    return arr


def bound_basis(n: npt.ArrayLike) -> FloatArray:
    """The bound's three terms evaluated at each n, as a ``(len(n), 3)`` matrix.

    Columns: ``n^-1 log^2 n``, ``n^-1/2 log n``, ``n^-1/4`` (natural logarithm), for n >= 1. A
    scalar n gives a ``(1, 3)`` matrix.
    """
    arr = np.atleast_1d(as_sample_sizes(n)).ravel()
    log_n = np.log(arr)
    return np.stack([log_n**2 / arr, log_n / np.sqrt(arr), arr**-0.25], axis=1)


def bound_shape(n: npt.ArrayLike, c1: float, c2: float, c3: float) -> FloatArray | float:
    """``c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4``, vectorised over n >= 1.

    Returns an array of n's shape, or a float when n is a scalar. For n >= e^8 (about 3000) the
    n^-1/4 term decays slowest, so it dominates asymptotically whenever c3 > 0: that is why the
    theory's rate is quoted as n^-1/4.
    """
    arr = as_sample_sizes(n)
    log_n = np.log(arr)
    value = c1 * log_n**2 / arr + c2 * log_n / np.sqrt(arr) + c3 * arr**-0.25
    return float(value) if np.ndim(value) == 0 else value
