"""The bound's shape (icl_stl/theory/bound.py): its three terms against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_stl.theory.bound import bound_basis, bound_shape


def test_bound_basis_and_shape_match_hand_values():
    n = np.array([1.0, math.e**4, 10_000.0])
    basis = bound_basis(n)
    assert basis.shape == (3, 3)
    # n = 1: both log terms vanish, n^-1/4 = 1.
    np.testing.assert_allclose(basis[0], [0.0, 0.0, 1.0])
    # n = e^4: log n = 4.
    e4 = math.e**4
    np.testing.assert_allclose(basis[1], [16.0 / e4, 4.0 / math.e**2, 1.0 / math.e], rtol=1e-12)
    c = np.array([0.3, 1.7, 2.5])
    np.testing.assert_allclose(bound_shape(n, *c), basis @ c, rtol=1e-12)
    # Scalar in, float out.
    assert isinstance(bound_shape(100.0, 1.0, 1.0, 1.0), float)
    assert bound_basis(100.0).shape == (1, 3)
    with pytest.raises(ValueError, match="n must be finite and >= 1"):
        bound_basis([0.5, 10.0])
