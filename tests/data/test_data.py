"""Tasks and prompt sets: shapes, seeding, labels, replacement, persistence, task variants."""

from __future__ import annotations

import pytest
import torch

from icl_stl.config import TaskConfig
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import derive_seed, make_generator
from icl_stl.data.tasks import (
    LinearRegression,
    NoisyLinearRegression,
    ReluNetworkRegression,
    SparseLinearRegression,
    make_task,
)

ALL_TASKS = ["linear_regression", "noisy_linear_regression", "sparse_linear_regression",
             "relu_2nn_regression"]


def _task(name: str, d: int = 4, **kw):
    noise = kw.pop("noise_std", 0.5 if name == "noisy_linear_regression" else 0.0)
    return make_task(TaskConfig(name=name, d=d, noise_std=noise, sparsity=2, hidden=8, **kw))


@pytest.mark.parametrize("name", ALL_TASKS)
def test_sample_prompts_shapes(name):
    task = _task(name)
    s = sample_prompts(task, 7, 5, make_generator(0, "S0"))
    assert s.xs.shape == (7, 5, 4) and s.ys.shape == (7, 5)
    assert s.params is not None and s.params.shape[0] == 7
    assert (len(s), s.k, s.d) == (7, 5, 4)
    assert s.xs.dtype == torch.float32 and torch.isfinite(s.ys).all()


@pytest.mark.parametrize("name", ALL_TASKS)
def test_same_seed_same_tensors_other_seed_other_tensors(name):
    task = _task(name)
    a = sample_prompts(task, 6, 5, make_generator(3, "S0"))
    b = sample_prompts(task, 6, 5, make_generator(3, "S0"))
    c = sample_prompts(task, 6, 5, make_generator(4, "S0"))
    other_stream = sample_prompts(task, 6, 5, make_generator(3, "test"))
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys) and torch.equal(a.params, b.params)
    for different in (c, other_stream):
        assert not torch.equal(a.xs, different.xs)
        assert not torch.equal(a.ys, different.ys)


def test_derive_seed_is_stable_and_keyed():
    assert derive_seed(0, "S0") == derive_seed(0, "S0")
    assert len({derive_seed(0, "S0"), derive_seed(1, "S0"), derive_seed(0, "init", 0),
                derive_seed(0, "init", 1)}) == 4
    assert 0 <= derive_seed(2**40, "x", 3) < 2**63


def test_noiseless_labels_are_exact_inner_products():
    task = LinearRegression(d=3)
    s = sample_prompts(task, 50, 6, make_generator(0, "S0"))
    expected = torch.einsum("nkd,nd->nk", s.xs, s.params)
    torch.testing.assert_close(s.ys, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("noise_std", [0.1, 0.5])
def test_noisy_label_residuals_have_the_noise_scale(noise_std):
    task = NoisyLinearRegression(d=3, noise_std=noise_std)
    s = sample_prompts(task, 2000, 10, make_generator(1, "S0"))
    residual = s.ys - torch.einsum("nkd,nd->nk", s.xs, s.params)  # (n, k)
    # 20 000 draws: the sample std is within a few percent of the true one.
    assert residual.std().item() == pytest.approx(noise_std, rel=0.05)
    assert residual.mean().abs().item() < 5 * noise_std / 20_000 ** 0.5 + 1e-3


def test_add_noise_is_identity_without_noise():
    ys = torch.randn(4, 5)
    assert LinearRegression(d=2).add_noise(ys, make_generator(0, "x")) is ys


def test_replace_changes_exactly_one_prompt():
    task = LinearRegression(d=3)
    s0 = sample_prompts(task, 10, 5, make_generator(0, "S0"))
    new = sample_prompts(task, 1, 5, make_generator(0, "other"))
    s1 = s0.replace(4, new)
    changed = [i for i in range(10)
               if not (torch.equal(s0.xs[i], s1.xs[i]) and torch.equal(s0.ys[i], s1.ys[i]))]
    assert changed == [4]
    assert torch.equal(s1.xs[4], new.xs[0]) and torch.equal(s1.ys[4], new.ys[0])
    assert torch.equal(s1.params[4], new.params[0])
    assert not torch.equal(s0.xs[4], new.xs[0])  # the original is not mutated
    assert s0.fingerprint() != s1.fingerprint()
    assert s0.replace(4, s0[4]).fingerprint() == s0.fingerprint()


def test_replace_rejects_wrong_shapes_and_indices():
    task = LinearRegression(d=3)
    s0 = sample_prompts(task, 4, 5, make_generator(0, "S0"))
    with pytest.raises(ValueError):
        s0.replace(0, s0[0:2])
    with pytest.raises(ValueError):
        s0.replace(0, sample_prompts(task, 1, 6, make_generator(0, "x")))
    with pytest.raises(IndexError):
        s0.replace(4, s0[0])


def test_fingerprint_tracks_content():
    task = LinearRegression(d=2)
    a = sample_prompts(task, 5, 4, make_generator(0, "S0"))
    same = PromptSet(a.xs.clone(), a.ys.clone())
    assert a.fingerprint() == same.fingerprint()
    ys = a.ys.clone()
    ys[2, 3] += 1e-3
    assert PromptSet(a.xs, ys).fingerprint() != a.fingerprint()


def test_save_load_round_trip(tmp_path):
    s = sample_prompts(SparseLinearRegression(d=4, sparsity=2), 6, 5, make_generator(0, "S0"))
    s.save(tmp_path / "s.pt")
    back = PromptSet.load(tmp_path / "s.pt")
    assert torch.equal(back.xs, s.xs) and torch.equal(back.ys, s.ys)
    assert torch.equal(back.params, s.params)
    assert back.fingerprint() == s.fingerprint()
    no_params = PromptSet(s.xs, s.ys)
    no_params.save(tmp_path / "t.pt")
    assert PromptSet.load(tmp_path / "t.pt").params is None


def test_indexing_and_concat():
    task = LinearRegression(d=2)
    a = sample_prompts(task, 5, 4, make_generator(0, "a"))
    b = sample_prompts(task, 3, 4, make_generator(0, "b"))
    both = PromptSet.concat([a, b])
    assert len(both) == 8 and torch.equal(both.xs[5:], b.xs) and torch.equal(both.ys[:5], a.ys)
    assert torch.equal(a[-1].xs, a.xs[-1:]) and len(a[1:3]) == 2
    synthetic = PromptSet(b.xs, b.ys)  # no params: the concat cannot have them either
    assert PromptSet.concat([a, synthetic]).params is None
    with pytest.raises(ValueError):
        PromptSet(a.xs, a.ys[:, :3])


def test_sparse_task_has_exactly_sparsity_nonzeros():
    task = SparseLinearRegression(d=7, sparsity=3)
    w = task.sample_params(500, make_generator(0, "w"))
    assert ((w != 0).sum(dim=1) == 3).all()
    # every coordinate is used by some prompt (the support is random, not fixed)
    assert ((w != 0).sum(dim=0) > 0).all()
    s = sample_prompts(task, 20, 5, make_generator(0, "S0"))
    torch.testing.assert_close(s.ys, torch.einsum("nkd,nd->nk", s.xs, s.params))


def test_relu_task_labels_finite_and_not_linear():
    task = ReluNetworkRegression(d=3, hidden=16)
    s = sample_prompts(task, 1, 200, make_generator(0, "S0"))
    assert torch.isfinite(s.ys).all() and s.ys.std() > 0.05
    # Homogeneous of degree 1 but not odd: f(-x) != -f(x) for a ReLU network.
    minus = task.f(s.params, -s.xs)
    assert (minus + s.ys).abs().max() > 1e-2
    torch.testing.assert_close(task.f(s.params, 2 * s.xs), 2 * s.ys, rtol=1e-5, atol=1e-5)
    # and no linear function explains it: least squares leaves a large residual
    xs, ys = s.xs[0].double(), s.ys[0].double()
    w = torch.linalg.lstsq(xs, ys.unsqueeze(-1)).solution
    residual = (xs @ w).squeeze(-1) - ys
    assert residual.pow(2).mean() > 0.05 * ys.pow(2).mean()


def test_make_task_dispatch_and_unknown_name():
    assert isinstance(_task("sparse_linear_regression"), SparseLinearRegression)
    assert _task("sparse_linear_regression").sparsity == 2
    assert isinstance(_task("relu_2nn_regression"), ReluNetworkRegression)
    assert _task("linear_regression").is_linear and not _task("relu_2nn_regression").is_linear
    from icl_stl.config import ConfigError

    with pytest.raises(ConfigError, match="task.name"):
        make_task(TaskConfig(name="quadratic_regression"))
