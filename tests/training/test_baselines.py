"""Tests of icl_stl.training.baselines: exactness, agreement with the loop references, causality, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icl_stl.training.baselines import (
    BASELINES,
    averaging,
    bayes_optimal_ridge_alpha,
    default_rtol,
    least_squares,
    least_squares_reference,
    nearest_neighbours,
    predict,
    ridge,
    ridge_reference,
    zero,
)

F64 = torch.float64


def _prompts(seed: int, b: int, k: int, d: int, noise: float = 0.0, dtype=F64):
    """x ~ N(0, I), w ~ N(0, I), y = <w, x> + noise: xs (b, k, d), ys (b, k), w (b, d)."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(b, k, d, generator=g, dtype=F64)
    w = torch.randn(b, d, generator=g, dtype=F64)
    ys = torch.einsum("bkd,bd->bk", xs, w) + noise * torch.randn(b, k, generator=g, dtype=F64)
    return xs.to(dtype), ys.to(dtype), w


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """|actual - expected| <= rel * (|expected| + 1), elementwise (predictions near j = d spike)."""
    err = (actual.double() - expected.double()).abs() / (expected.double().abs() + 1.0)
    assert err.max().item() <= rel, f"max relative error {err.max().item():.3e} > {rel:.1e}"


def _call(name: str, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    return predict(name, xs, ys, ridge_alpha=0.3, knn_neighbours=3)


# ---------------------------------------------------------------------------------------------
# Least squares


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_least_squares_recovers_w_once_determined(dtype):
    d, k = 6, 20
    xs, ys, _ = _prompts(0, 64, k, d, dtype=dtype)
    pred = least_squares(xs, ys)
    assert pred.shape == ys.shape and pred.dtype == dtype
    assert torch.all(pred[:, 0] == 0)
    torch.testing.assert_close(pred[:, d:], ys[:, d:], atol=1e-4, rtol=0)
    # and not before: with j < d pairs the min-norm fit cannot know w
    assert (pred[:, 1:d] - ys[:, 1:d]).abs().max() > 1e-2


@pytest.mark.parametrize(("d", "k", "noise"), [(5, 11, 0.5), (8, 6, 0.5), (20, 41, 0.1)])
def test_least_squares_matches_reference(d, k, noise):
    xs, ys, _ = _prompts(1 + d, 48 if d < 20 else 12, k, d, noise=noise)
    _close(least_squares(xs, ys), least_squares_reference(xs, ys), 1e-7)


def test_least_squares_is_min_norm_for_rank_deficient_data():
    # x in a 3-dimensional subspace of R^6 plus an exactly repeated point: every prefix is rank
    # deficient, which the fast path cannot factor, so this exercises the SVD fallback.
    g = torch.Generator().manual_seed(2)
    b, k, d, r = 16, 12, 6, 3
    xs = torch.randn(b, k, r, generator=g, dtype=F64) @ torch.randn(r, d, generator=g, dtype=F64)
    xs[:, 5] = xs[:, 2]
    ys = torch.randn(b, k, generator=g, dtype=F64)
    pred = least_squares(xs, ys)
    _close(pred, least_squares_reference(xs, ys), 1e-9)
    # independent check with numpy's pinv, whose default cutoff is far below these data's
    # singular values and far above the numerically-zero ones
    for n in range(b):
        for j in range(1, k):
            w = np.linalg.pinv(xs[n, :j].numpy(), rcond=1e-10) @ ys[n, :j].numpy()
            assert abs(pred[n, j].item() - xs[n, j].numpy() @ w) <= 1e-8 * (1 + abs(pred[n, j]))


def test_least_squares_ill_conditioned_prefix_matches_reference():
    # the 4th point nearly duplicates the 3rd, so prefixes around j = d are nearly singular
    xs, ys, _ = _prompts(3, 32, 12, 4, noise=0.1)
    xs[:, 3] = xs[:, 2] + 1e-6 * xs[:, 1]
    _close(least_squares(xs, ys), least_squares_reference(xs, ys), 1e-7)


def test_default_rtol_follows_input_precision():
    assert default_rtol(F64, 41, 20) == pytest.approx(41 * torch.finfo(F64).eps)
    assert default_rtol(torch.float32, 5, 8) == pytest.approx(8 * torch.finfo(torch.float32).eps)


# ---------------------------------------------------------------------------------------------
# Ridge


def _ridge_numpy(xs: torch.Tensor, ys: torch.Tensor, alpha: float) -> np.ndarray:
    """Per prompt and prefix: w = (X^T X + alpha I)^{-1} X^T y in numpy float64."""
    x, y = xs.double().numpy(), ys.double().numpy()
    b, k, d = x.shape
    out = np.zeros((b, k))
    for n in range(b):
        for j in range(1, k):
            xj = x[n, :j]
            w = np.linalg.solve(xj.T @ xj + alpha * np.eye(d), xj.T @ y[n, :j])
            out[n, j] = x[n, j] @ w
    return out


@pytest.mark.parametrize("alpha", [0.05, 1.0, 4.0])
@pytest.mark.parametrize(("d", "k"), [(5, 11), (8, 6)])
def test_ridge_matches_closed_form_and_reference(d, k, alpha):
    xs, ys, _ = _prompts(4 + d, 32, k, d, noise=0.3)
    pred = ridge(xs, ys, alpha)
    assert torch.all(pred[:, 0] == 0)
    _close(pred, torch.from_numpy(_ridge_numpy(xs, ys, alpha)), 1e-9)
    _close(pred, ridge_reference(xs, ys, alpha), 1e-9)


def test_ridge_matches_reference_at_gpt_shape_and_float32():
    xs, ys, _ = _prompts(5, 4, 41, 20, noise=0.5, dtype=torch.float32)
    pred = ridge(xs, ys, 0.25)
    assert pred.dtype == torch.float32
    _close(pred, ridge_reference(xs, ys, 0.25), 1e-6)


def test_ridge_with_tiny_alpha_approaches_least_squares():
    d, k = 5, 16
    xs, ys, _ = _prompts(6, 32, k, d, noise=0.5)
    torch.testing.assert_close(
        ridge(xs, ys, 1e-9)[:, d + 1 :], least_squares(xs, ys)[:, d + 1 :], atol=1e-5, rtol=0
    )
    # a real penalty does move the fit, so the comparison above is not vacuous
    assert (ridge(xs, ys, 1.0)[:, d + 1 :] - least_squares(xs, ys)[:, d + 1 :]).abs().max() > 1e-3


def test_ridge_alpha_zero_is_least_squares_and_negative_alpha_fails():
    xs, ys, _ = _prompts(7, 8, 9, 4, noise=0.2)
    torch.testing.assert_close(ridge(xs, ys, 0.0), least_squares(xs, ys))
    with pytest.raises(ValueError, match="alpha"):
        ridge(xs, ys, -1.0)


def test_bayes_optimal_ridge_alpha_is_posterior_mean():
    assert bayes_optimal_ridge_alpha(0.5, 2.0) == pytest.approx(0.0625)
    assert bayes_optimal_ridge_alpha(0.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        bayes_optimal_ridge_alpha(0.5, 0.0)
    # Under the matching prior the posterior mean beats other alphas in expected squared error.
    noise_std, w_scale, d, k = 1.0, 1.0, 8, 10
    g = torch.Generator().manual_seed(8)
    xs = torch.randn(4000, k, d, generator=g, dtype=F64)
    w = w_scale * torch.randn(4000, d, generator=g, dtype=F64)
    ys = torch.einsum("bkd,bd->bk", xs, w) + noise_std * torch.randn(
        4000, k, generator=g, dtype=F64
    )
    clean = torch.einsum("bkd,bd->bk", xs, w)

    def risk(alpha: float) -> float:
        return ((ridge(xs, ys, alpha) - clean)[:, 1:] ** 2).mean().item()

    best = risk(bayes_optimal_ridge_alpha(noise_std, w_scale))
    assert best < risk(0.1) and best < risk(10.0)


# ---------------------------------------------------------------------------------------------
# Averaging, nearest neighbours, zero


def test_averaging_hand_example():
    xs = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 0.5]]])
    ys = torch.tensor([[2.0, 4.0, 5.0]])
    # pos 1: w = 2 * [1, 0] -> <[2, 0], [0, 2]> = 0;  pos 2: w = ([2, 0] + [0, 8]) / 2 = [1, 4]
    torch.testing.assert_close(averaging(xs, ys), torch.tensor([[0.0, 0.0, 3.0]]))


def test_knn_hand_example():
    xs = torch.tensor([0.0, 10.0, 1.0, 9.0, 2.0]).reshape(1, 5, 1)
    ys = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    torch.testing.assert_close(
        nearest_neighbours(xs, ys, 2), torch.tensor([[0.0, 1.0, 1.5, 2.5, 2.0]])
    )
    torch.testing.assert_close(
        nearest_neighbours(xs, ys, 1), torch.tensor([[0.0, 1.0, 1.0, 2.0, 3.0]])
    )
    with pytest.raises(ValueError, match="n_neighbours"):
        nearest_neighbours(xs, ys, 0)


def test_knn_with_one_neighbour_returns_nearest_earlier_y():
    xs, ys, _ = _prompts(9, 16, 15, 3, noise=1.0)
    pred = nearest_neighbours(xs, ys, n_neighbours=1)
    for n in range(16):
        for j in range(1, 15):
            nearest = (xs[n, :j] - xs[n, j]).norm(dim=-1).argmin()
            assert pred[n, j] == ys[n, nearest]


def test_zero():
    xs, ys, _ = _prompts(10, 2, 4, 3, dtype=torch.float32)
    pred = zero(xs, ys)
    assert pred.shape == (2, 4) and pred.dtype == torch.float32 and not pred.any()


# ---------------------------------------------------------------------------------------------
# Properties shared by every baseline


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize(("d", "k"), [(5, 12), (8, 6)])
def test_causality(name, d, k):
    xs, ys, _ = _prompts(11, 16, k, d, noise=0.3)
    base = _call(name, xs, ys)
    g = torch.Generator().manual_seed(12)
    for j in range(k):
        ys2 = ys.clone()
        ys2[:, j] += 1.0 + torch.rand(16, generator=g, dtype=F64)
        moved = _call(name, xs, ys2)
        torch.testing.assert_close(moved[:, : j + 1], base[:, : j + 1], rtol=1e-10, atol=1e-10)
        if name != "zero" and j < k - 1:
            # the label does reach later positions (otherwise the check above is vacuous)
            assert (moved[:, j + 1 :] - base[:, j + 1 :]).abs().max() > 1e-6
        xs2 = xs.clone()
        xs2[:, j + 1 :] = torch.randn(16, k - j - 1, d, generator=g, dtype=F64)
        torch.testing.assert_close(
            _call(name, xs2, ys)[:, : j + 1], base[:, : j + 1], rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_leading_dims_match_flattened(name):
    xs, ys, _ = _prompts(13, 12, 9, 4, noise=0.3, dtype=torch.float32)
    nested = _call(name, xs.reshape(3, 4, 9, 4), ys.reshape(3, 4, 9))
    assert nested.shape == (3, 4, 9) and nested.dtype == torch.float32
    torch.testing.assert_close(nested.reshape(12, 9), _call(name, xs, ys))


def test_predict_dispatches_and_rejects_unknown_names():
    xs, ys, _ = _prompts(14, 8, 10, 3, noise=0.3)
    assert set(BASELINES) == {"least_squares", "ridge", "averaging", "knn", "zero"}
    expected = {
        "least_squares": least_squares(xs, ys),
        "ridge": ridge(xs, ys, 0.7),
        "averaging": averaging(xs, ys),
        "knn": nearest_neighbours(xs, ys, 2),
        "zero": torch.zeros_like(ys),
    }
    for name, want in expected.items():
        got = predict(name, xs, ys, ridge_alpha=0.7, knn_neighbours=2)
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match=r"'lasso'.*least_squares"):
        predict("lasso", xs, ys, ridge_alpha=0.7, knn_neighbours=2)


def test_shape_mismatch_is_rejected():
    xs, ys, _ = _prompts(15, 2, 5, 3)
    with pytest.raises(ValueError, match="ys must have shape"):
        least_squares(xs, ys[:, :4])


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("pos", [2, 7])
def test_non_finite_x_only_reaches_later_positions(name, pos):
    # a NaN x_pos sends the fast path's factorisations to the SVD fallback: it must neither
    # raise nor leak into positions before pos
    xs, ys, _ = _prompts(16, 4, 10, 4, noise=0.3)
    clean = _call(name, xs, ys)
    xs[1, pos, 0] = float("nan")
    dirty = _call(name, xs, ys)
    torch.testing.assert_close(dirty[:, :pos], clean[:, :pos])
    torch.testing.assert_close(dirty[[0, 2, 3]], clean[[0, 2, 3]])


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("shape", [(0, 5, 3), (3, 0, 3), (3, 1, 3)])
def test_degenerate_shapes(name, shape):
    xs = torch.randn(shape)
    pred = _call(name, xs, torch.randn(shape[:-1]))
    assert pred.shape == shape[:-1]
    assert not pred.any()  # only position 0, which sees no pairs
