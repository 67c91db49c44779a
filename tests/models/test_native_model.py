"""The native GPT-2 with a member axis: parity with transformers, one initialisation for both
paths, a member's results independent of its ensemble (bit for bit on the CPU), per-member
dropout, and the MLP backbone's cumulative-sum form."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import gens
from einops import rearrange

from icl_stl.config import ConfigError, ModelConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression
from icl_stl.models import build_ensemble
from icl_stl.models.backbones import MLPBackbone
from icl_stl.models.ensemble import ModuleEnsemble
from icl_stl.models.gpt2 import NativeGPT2
from icl_stl.models.model import MODEL_SIZES, build_model
from icl_stl.persistence import CheckpointSlot, load_state
from icl_stl.training.engine import MemberData, train_ensemble

D, K = 3, 6
TASK = LinearRegression(d=D)
SMALL = ModelConfig(n_layer=2, n_head=2, n_embd=32)


def _inputs(seed: int, members: int, batch: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(members, batch, K, D, generator=g), torch.randn(members, batch, K,
                                                                       generator=g)


@torch.no_grad()
def _perturb_(model: torch.nn.Module, seed: int) -> None:
    """Move every parameter off its initialisation (biases and layer norms included), so a
    comparison of predictions is not one of near-zero outputs."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.2)


# ---------------------------------------------------------------------------------------------
# Parity with the transformers reference


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("init", ["gpt2", "torch_default"])
@pytest.mark.parametrize("gaussian_head", [False, True])
@torch.no_grad()
def test_every_member_matches_its_transformers_model(gaussian_head, init, attn):
    cfg = dataclasses.replace(SMALL, gaussian_head=gaussian_head, init=init,
                              attn_implementation=attn)
    native = build_ensemble(cfg, D, K, gens(4, 3))
    assert isinstance(native, NativeGPT2)
    _perturb_(native, 0)
    native.eval()
    xs, ys = _inputs(1, 3)
    pred = native(xs, ys)
    assert pred.mean.shape == (3, 5, K) and pred.mean.abs().max() > 0.1
    for i in range(3):
        reference = native.member(i).eval()  # an ICLModel on transformers' GPT2Model
        ref = reference(xs[i], ys[i])
        torch.testing.assert_close(ref.mean, pred.mean[i], rtol=1e-5, atol=1e-5)
        if gaussian_head:
            torch.testing.assert_close(ref.log_var, pred.log_var[i], rtol=1e-5, atol=1e-5)
        else:
            assert ref.log_var is None and pred.log_var is None
    assert (pred.mean[0] - pred.mean[1]).abs().max() > 1e-2  # members differ: not trivial


@torch.no_grad()
def test_load_member_round_trips():
    native = build_ensemble(SMALL, D, K, gens(2, 3))
    _perturb_(native, 1)
    before = {n: p.detach().clone() for n, p in native.named_parameters()}
    third = native.member(2)
    native.load_member_(0, third)
    for name, p in native.named_parameters():
        assert torch.equal(p[0], before[name][2]), name
        assert torch.equal(p[1:], before[name][1:]), name
    for name, value in native.member(0).state_dict().items():
        assert torch.equal(value, third.state_dict()[name]), name


@pytest.mark.parametrize("init", ["gpt2", "torch_default"])
def test_member_is_build_model_from_the_same_generator(init):
    """Both paths draw the same numbers in the same order: identical starting weights."""
    cfg = dataclasses.replace(SMALL, init=init, gaussian_head=True)
    native = build_ensemble(cfg, D, K, gens(7, 3))
    reference = build_ensemble(dataclasses.replace(cfg, engine="reference"), D, K, gens(7, 3))
    assert isinstance(reference, ModuleEnsemble)
    for i in range(3):
        alone = build_model(cfg, D, K, gens(7, 3)[i]).state_dict()
        for source in (native, reference):
            member = source.member(i).state_dict()
            assert member.keys() == alone.keys()
            for name, value in member.items():
                assert torch.equal(value, alone[name]), (type(source).__name__, i, name)


def test_read_in_and_read_out_initialisation_schemes():
    h = SMALL.n_embd
    gpt2 = build_model(dataclasses.replace(SMALL, init="gpt2"), D, K, make_generator(0, "init"))
    assert gpt2.read_in.bias.abs().max() == 0 and gpt2.read_out.bias.abs().max() == 0
    assert 0.015 < gpt2.read_in.weight.std().item() < 0.025
    torch_default = build_model(dataclasses.replace(SMALL, init="torch_default"), D, K,
                                make_generator(0, "init"))
    for lin, fan_in in ((torch_default.read_in, D), (torch_default.read_out, h)):
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default for weight and bias alike
        assert lin.weight.abs().max() <= bound and lin.bias.abs().max() <= bound
        assert lin.weight.abs().max() > 0.8 * bound
    assert torch_default.read_in.bias.abs().min() > 0
    # the backbone keeps GPT-2's scheme whatever model.init says
    for name, p in torch_default.backbone.gpt2.named_parameters():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("bias") or name == "wte.weight":
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            assert 0.003 < p.std().item() < 0.025, name


def test_native_engine_for_another_architecture_is_a_config_error():
    for arch in ("lstm", "mlp"):
        with pytest.raises(ConfigError, match=r"model\.engine.*'native'"):
            build_ensemble(dataclasses.replace(SMALL, arch=arch), D, K, gens(0, 1))
    lstm = build_ensemble(dataclasses.replace(SMALL, arch="lstm", engine="reference"), D, K,
                          gens(0, 2))
    assert isinstance(lstm, ModuleEnsemble)


# ---------------------------------------------------------------------------------------------
# A member's results do not depend on its ensemble


def _member_data(i: int, finite: bool, twin_of: int | None = None) -> MemberData:
    j = i if twin_of is None else twin_of
    dataset = sample_prompts(TASK, 40, K, make_generator(j, "S0")) if finite else None
    return MemberData(batch_seed=100 + j, dataset=dataset)


CLIPPED = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=3, log_every=1,
                      checkpoint_every=0, grad_clip=0.05, weight_decay=0.1)


def _run(cfg: ModelConfig, n_members: int, finite: bool, twins: bool = False,
         train: TrainConfig = CLIPPED):
    """Train members 0..n-1 (or n twins of member 0): member parameters, loss history, and
    whether training left torch's global generator alone."""
    sources = [0] * n_members if twins else list(range(n_members))
    ens = build_ensemble(cfg, D, K, [make_generator(s, "init") for s in sources])
    data = [_member_data(i, finite, twin_of=s) for i, s in enumerate(sources)]
    rng_before = torch.get_rng_state()
    result = train_ensemble(ens, data, TASK, K, train)
    untouched = torch.equal(torch.get_rng_state(), rng_before)
    params = [{n: p[i].detach().clone() for n, p in ens.named_parameters()}
              for i in range(n_members)] if ens.member_axis else \
        [{n: p.detach().clone() for n, p in m.named_parameters()} for m in ens.models]
    losses = [[r["loss"][i] for r in result.history] for i in range(n_members)]
    return params, losses, untouched


def _assert_identical(a: tuple, i: int, b: tuple, j: int) -> None:
    (pa, la, _), (pb, lb, _) = a, b
    assert la[i] == lb[j]
    assert pa[i].keys() == pb[j].keys()
    for name, value in pa[i].items():
        assert torch.equal(value, pb[j][name]), name


def test_clipping_is_active_in_the_independence_runs():
    ens = build_ensemble(SMALL, D, K, [make_generator(0, "init")])
    data = _member_data(0, True).dataset
    pred = ens(data.xs[None, :16], data.ys[None, :16])
    ((pred.mean - data.ys[None, :16]) ** 2).mean().backward()
    assert ens.grad_norms()[0] > 2 * CLIPPED.grad_clip


@pytest.mark.parametrize("finite, dropout, threads, size", [
    (True, 0.0, 1, SMALL), (False, 0.0, 1, SMALL), (True, 0.1, 1, SMALL),
    (False, 0.1, 1, SMALL),
    (True, 0.0, 2, SMALL),  # threads split work by size, never by member (shorter: two threads
    # on a loaded two-core machine mostly wait for each other)
    (False, 0.0, 1, ModelConfig(**MODEL_SIZES["tiny"])),
], ids=["finite", "fresh", "finite-dropout", "fresh-dropout", "finite-2-threads", "fresh-tiny"])
def test_member_run_is_bit_identical_alone_and_with_companions(finite, dropout, threads, size):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = dataclasses.replace(size, dropout=dropout)
        train = CLIPPED if threads == 1 else dataclasses.replace(CLIPPED, steps=10)
        alone = _run(cfg, 1, finite, train=train)
        for companions in (1, 3, 7) if threads == 1 else (3,):
            _assert_identical(alone, 0, _run(cfg, 1 + companions, finite, train=train), 0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_dropout_twins_stay_identical_and_dropout_is_per_member(engine):
    cfg = dataclasses.replace(SMALL, dropout=0.2, engine=engine)
    twins = _run(cfg, 3, finite=True, twins=True)
    assert twins[2]  # no mask came from the global generator
    _assert_identical(twins, 0, twins, 1)
    _assert_identical(twins, 0, twins, 2)
    if engine == "reference":  # (the native engine: in the test above, with companions)
        _assert_identical(twins, 0, _run(cfg, 1, finite=True), 0)
    no_dropout = _run(dataclasses.replace(cfg, dropout=0.0), 1, finite=True)
    assert twins[1][0] != no_dropout[1][0]  # the masks did something


class _Killed(Exception):
    pass


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_dropout_generators_resume_exactly(engine, tmp_path):
    cfg = dataclasses.replace(SMALL, dropout=0.2, engine=engine)
    train = dataclasses.replace(CLIPPED, steps=20, log_every=5, checkpoint_every=10)
    data = [_member_data(i, True) for i in range(2)]

    def fresh():
        return build_ensemble(cfg, D, K, gens(3, 2))

    straight = fresh()
    expected = train_ensemble(straight, data, TASK, K, train)

    def crash_at_15(record: dict) -> None:
        if record["step"] == 15:
            raise _Killed

    slot = CheckpointSlot(tmp_path, "train")
    with pytest.raises(_Killed):
        train_ensemble(fresh(), data, TASK, K, train, checkpoint=slot, on_log=crash_at_15)
    state = load_state(slot.latest_path)
    assert state["step"] == 10 and len(state["dropout_generators"]) == 2
    assert "torch_rng" not in state
    resumed_model = fresh()
    resumed = train_ensemble(resumed_model, data, TASK, K, train, checkpoint=slot)
    assert resumed.history == expected.history
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[name]), name


# ---------------------------------------------------------------------------------------------
# The MLP backbone


def _mlp_prefix_reference(backbone: MLPBackbone, embeds: torch.Tensor) -> torch.Tensor:
    """The former forward: every prefix zero-padded and flattened, (B, t, T, H) in memory."""
    b, t, h = embeds.shape
    padded = torch.nn.functional.pad(embeds, (0, 0, 0, backbone.n_positions - t))
    causal = torch.ones(t, backbone.n_positions).tril()
    prefixes = padded.unsqueeze(1) * causal[None, :, :, None]  # (B, t, T, H)
    return backbone.mlp(rearrange(prefixes, "b t s h -> b t (s h)"))


@torch.no_grad()
def test_mlp_backbone_cumulative_sum_matches_the_flattened_prefix():
    cfg = dataclasses.replace(SMALL, arch="mlp", engine="reference", n_layer=3)
    backbone = MLPBackbone(cfg, n_positions=2 * K)
    backbone.init_weights_(make_generator(0, "init"))  # outputs of order 1
    g = torch.Generator().manual_seed(3)
    for m in backbone.mlp:
        if isinstance(m, torch.nn.Linear):
            m.bias.normal_(0.0, 0.1, generator=g)  # zero at initialisation: make them count
    for t in (2 * K, 5, 1):
        embeds = torch.randn(4, t, cfg.n_embd, generator=g)
        ours, ref = backbone(embeds), _mlp_prefix_reference(backbone, embeds)
        assert ours.shape == ref.shape == (4, t, cfg.n_embd)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
