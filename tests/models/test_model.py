"""The in-context learner and its ensembles: causality, token layout, engines, labelling."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import gens

from icl_stl.config import ModelConfig
from icl_stl.loop.labelling import label, label_cached, label_uncached
from icl_stl.models import build_ensemble
from icl_stl.models.backbones import gpt2_config
from icl_stl.models.ensemble import ModuleEnsemble
from icl_stl.models.gpt2 import NativeGPT2
from icl_stl.models.model import ICLModel, build_model, deinterleave, interleave

D, K, B = 3, 6, 4


def _inputs(seed: int, *lead: int) -> tuple[torch.Tensor, torch.Tensor]:
    """xs (*lead, K, D), ys (*lead, K) of standard normals."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, K, D, generator=g), torch.randn(*lead, K, generator=g)


READOUT_GAIN = 100.0  # at GPT-2's init (std 0.02) outputs are ~1e-2: too flat to see changes


def _single(cfg: ModelConfig):
    """fn(xs (B, k, d), ys (B, k)) -> (mean, log_var) of one ICLModel, in eval mode."""
    model = build_model(cfg, D, K, torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        model.read_out.weight.mul_(READOUT_GAIN)
    return lambda xs, ys: model(xs, ys)


def _engine(cfg: ModelConfig, engine: str) -> ModelConfig:
    return dataclasses.replace(cfg, engine=engine)


def _ensemble(cfg: ModelConfig, engine: str):
    """fn(xs (B, k, d), ys (B, k)) -> member 1's prediction in a 2-member ensemble."""
    ens = build_ensemble(_engine(cfg, engine), D, K, gens(0, 2)).eval()
    with torch.no_grad():
        if isinstance(ens, NativeGPT2):
            ens.read_out.weight.mul_(READOUT_GAIN)
        else:
            for m in ens.models:
                m.read_out.weight.mul_(READOUT_GAIN)

    def fn(xs, ys):
        pred = ens(torch.stack([xs.flip(0), xs]), torch.stack([ys.flip(0), ys]))
        return type(pred)(pred.mean[1], None if pred.log_var is None else pred.log_var[1])

    return fn


MODELS = {
    "gpt2": lambda c: _single(c),
    "gpt2-native": lambda c: _ensemble(c, "native"),
    "gpt2-reference": lambda c: _ensemble(c, "reference"),
    "lstm": lambda c: _single(dataclasses.replace(c, arch="lstm", engine="reference")),
    "mlp": lambda c: _single(dataclasses.replace(c, arch="mlp", engine="reference")),
}


@pytest.mark.parametrize("gaussian_head", [False, True])
@pytest.mark.parametrize("which", list(MODELS))
@torch.no_grad()
def test_prediction_at_j_ignores_everything_after_x_j(which, gaussian_head, tiny_model):
    fn = MODELS[which](dataclasses.replace(tiny_model, gaussian_head=gaussian_head))
    xs, ys = _inputs(1, B)
    base = fn(xs, ys)
    assert base.mean.shape == (B, K)
    assert (base.log_var is not None) == gaussian_head
    for j in range(K):
        xs2, ys2 = xs.clone(), ys.clone()
        xs2[:, j + 1:] += 3.0  # every later input ...
        ys2[:, j:] -= 5.0  # ... and y_j itself, which comes after x_j
        after = fn(xs2, ys2)
        torch.testing.assert_close(after.mean[:, :j + 1], base.mean[:, :j + 1], rtol=0, atol=1e-5)
        if gaussian_head:
            torch.testing.assert_close(after.log_var[:, :j + 1], base.log_var[:, :j + 1],
                                       rtol=0, atol=1e-5)
        if j + 1 < K:  # the perturbation is visible where it is allowed to be
            assert (after.mean[:, j + 1:] - base.mean[:, j + 1:]).abs().max() > 1e-4
    # and the prediction at j does read the label y_{j-1} (a model blind to labels is trivially
    # causal)
    ys3 = ys.clone()
    ys3[:, 2] += 5.0
    assert (fn(xs, ys3).mean[:, 3] - base.mean[:, 3]).abs().max() > 1e-4


def test_interleave_round_trip_and_padding():
    xs, ys = _inputs(2, 2, B)  # leading (2, B) axes: the layout works for ensembles too
    tokens = interleave(xs, ys)
    assert tokens.shape == (2, B, 2 * K, D)
    assert torch.equal(tokens[..., 0::2, :], xs)
    assert torch.equal(tokens[..., 1::2, 0], ys)
    assert torch.equal(tokens[..., 1::2, 1:], torch.zeros(2, B, K, D - 1))
    back_x, back_y = deinterleave(tokens)
    assert torch.equal(back_x, xs) and torch.equal(back_y, ys)


def test_gpt2_backbone_config(tiny_model):
    config = gpt2_config(tiny_model, 2 * K)
    assert config.vocab_size == 1 and config.n_positions == 2 * K
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.0
    model = build_model(tiny_model, D, K, torch.Generator().manual_seed(0))
    built = model.backbone.gpt2.config
    assert built.vocab_size == 1 and built.n_positions == 2 * K
    assert built._attn_implementation == "sdpa"
    assert model.backbone.gpt2.wpe.weight.shape == (2 * K, tiny_model.n_embd)
    assert built.n_layer == tiny_model.n_layer and built.n_embd == tiny_model.n_embd


@pytest.mark.parametrize("gaussian_head", [False, True])
@torch.no_grad()
def test_native_gpt2_matches_transformers_members(gaussian_head, tiny_model):
    cfg = dataclasses.replace(tiny_model, gaussian_head=gaussian_head)
    native = build_ensemble(_engine(cfg, "native"), D, K, gens(5, 3)).eval()
    reference = build_ensemble(_engine(cfg, "reference"), D, K, gens(5, 3)).eval()
    assert isinstance(native, NativeGPT2) and isinstance(reference, ModuleEnsemble)
    xs, ys = _inputs(3, 3, B)
    a, b = native(xs, ys), reference(xs, ys)
    assert a.mean.shape == (3, B, K)
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-4, atol=1e-5)
    if gaussian_head:
        torch.testing.assert_close(a.log_var, b.log_var, rtol=1e-4, atol=1e-5)
    # the members really differ (different init generators), so the match is not trivial
    assert (a.mean[0] - a.mean[1]).abs().max() > 1e-3


@pytest.mark.parametrize("engine", ["native", "reference"])
@torch.no_grad()
def test_member_and_load_member_round_trip(engine, tiny_model):
    ens = build_ensemble(_engine(tiny_model, engine), D, K, gens(0, 3)).eval()
    xs, ys = _inputs(4, 3, B)
    before = ens(xs, ys).mean
    alone = ens.member(1).eval()
    assert isinstance(alone, ICLModel)
    torch.testing.assert_close(alone(xs[1], ys[1]).mean, before[1], rtol=1e-4, atol=1e-5)
    # member i == the model build_model makes from the same generator
    fresh = build_model(tiny_model, D, K, gens(0, 3)[1])
    assert alone.state_dict().keys() == fresh.state_dict().keys()
    for (name, p), q in zip(alone.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(p, q), name  # the unused 1-row token table too: zero in both
    # loading member 2 into slot 0 makes slot 0 predict like member 2, leaving others alone
    ens.load_member_(0, ens.member(2))
    after = ens(xs[[2, 1, 2]], ys[[2, 1, 2]]).mean
    torch.testing.assert_close(after[0], after[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=1e-6)


def _label_both(cfg: ModelConfig, c: int, noisy: bool, noise_std: float | None):
    ens = build_ensemble(cfg, D, K, gens(7, 2)).eval()
    xs, ys = _inputs(8, 2, 16)
    noise = torch.randn(2, 16, K, generator=torch.Generator().manual_seed(9)) if noisy else None
    cached = label_cached(ens, xs, ys[..., :c], noise, noise_std)
    uncached = label_uncached(ens, xs, ys[..., :c], noise, noise_std)
    return ens, xs, ys, noise, cached, uncached


@pytest.mark.parametrize("c", [0, 2])
@pytest.mark.parametrize("head,noise_std", [(False, 0.3), (False, None), (True, None)])
def test_kv_cached_labels_equal_uncached(c, head, noise_std, tiny_model):
    cfg = dataclasses.replace(tiny_model, gaussian_head=head)
    noisy = head or noise_std is not None
    ens, xs, ys, noise, cached, uncached = _label_both(cfg, c, noisy, noise_std)
    assert cached.shape == (2, 16, K)
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-5)
    assert torch.equal(cached[..., :c], ys[..., :c])  # real context labels kept as they are
    # every label is the model's own output on the labelled prefix (plus its noise)
    with torch.no_grad():
        pred = ens(xs, cached)
    expected = pred.mean
    if noisy:
        scale = noise_std if noise_std is not None else torch.exp(0.5 * pred.log_var)
        expected = pred.mean + scale * noise
    torch.testing.assert_close(cached[..., c:], expected[..., c:], rtol=1e-5, atol=1e-5)
    # the reference engine (transformers GPT2Model) labels the same
    ref = build_ensemble(_engine(cfg, "reference"), D, K, gens(7, 2)).eval()
    by_ref = label_uncached(ref, xs, ys[..., :c], noise, noise_std)
    torch.testing.assert_close(by_ref, cached, rtol=1e-4, atol=1e-5)


def test_label_chunks_and_engine_dispatch(tiny_model):
    ens = build_ensemble(tiny_model, D, K, gens(7, 2))
    ens.train()
    xs, ys = _inputs(10, 2, 10)
    noise = torch.randn(2, 10, K, generator=torch.Generator().manual_seed(1))
    whole = label(ens, xs, ys[..., :1], noise, 0.2, batch_size=100)
    chunked = label(ens, xs, ys[..., :1], noise, 0.2, batch_size=3)
    uncached = label(ens, xs, ys[..., :1], noise, 0.2, use_cache=False, batch_size=4)
    torch.testing.assert_close(whole, chunked, rtol=0, atol=1e-6)
    torch.testing.assert_close(whole, uncached, rtol=1e-5, atol=1e-5)
    assert ens.training  # labelling restores the mode it found


def test_noise_without_scale_or_head_is_an_error(tiny_model):
    ens = build_ensemble(dataclasses.replace(tiny_model, gaussian_head=False), D, K, gens(0, 1))
    xs, ys = _inputs(0, 1, 2)
    with pytest.raises(ValueError, match="noise"):
        label(ens, xs, ys[..., :0], torch.randn(1, 2, K), None)
