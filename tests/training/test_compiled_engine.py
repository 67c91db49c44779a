"""The compiled engine (`runtime.compile`): same maths as the reference forms, and a member's
numbers never depend on its companions, alone or with any number of them, on one thread or two.

Compiling takes seconds per ensemble size, so the model here is one layer of width 16.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.models.fusable import (
    fusable_layer_norm,
    gelu_tanh_as_sigmoid,
    matmul_attention,
    set_fusable,
)
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble

D, K = 2, 5
TASK = make_task(TaskConfig(d=D, k=K))
SMALL = ModelConfig(n_layer=1, n_head=2, n_embd=16)
FAST = RuntimeOptions(compile=True, fused_adam=True)
TRAIN = TrainConfig(steps=12, batch_size=16, lr=3e-3, warmup_steps=3, log_every=4,
                    checkpoint_every=0, grad_clip=0.05)


def test_each_fusable_form_equals_its_reference():
    gen = make_generator(0, "forms")
    x = torch.randn(3, 4, 7, 16, generator=gen)
    w, b = torch.randn(3, 16, generator=gen), torch.randn(3, 16, generator=gen)
    reference = torch.stack([F.layer_norm(x[i], (16,), w[i], b[i], eps=1e-5) for i in range(3)])
    torch.testing.assert_close(fusable_layer_norm(x, w, b), reference, rtol=0, atol=2e-6)
    wide = 4 * torch.randn(10_000, generator=gen)
    torch.testing.assert_close(gelu_tanh_as_sigmoid(wide), F.gelu(wide, approximate="tanh"),
                               rtol=0, atol=2e-6)
    q, k, v = (torch.randn(6, 2, 7, 8, generator=gen) for _ in range(3))
    allowed = torch.ones(7, 7, dtype=torch.bool).tril()
    torch.testing.assert_close(matmul_attention(q, k, v, allowed),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=0, atol=2e-6)


def test_the_fusable_model_computes_the_reference_model_up_to_rounding():
    model = build_ensemble(ModelConfig(), D, K, [make_generator(i, "init") for i in range(2)])
    data = sample_prompts(TASK, 32, K, make_generator(0, "S0"))
    xs, ys = data.xs.expand(2, -1, -1, -1), data.ys.expand(2, -1, -1)
    reference = model(xs, ys)
    set_fusable(model, True)
    fused = model(xs, ys)
    set_fusable(model, False)
    torch.testing.assert_close(fused.mean, reference.mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(fused.log_var, reference.log_var, rtol=0, atol=1e-5)


def _train(seeds: list[int], runtime: RuntimeOptions, cfg: ModelConfig = SMALL):
    ens = build_ensemble(cfg, D, K, [make_generator(s, "init") for s in seeds])
    members = [MemberData(100 + s, sample_prompts(TASK, 40, K, make_generator(s, "S0")))
               for s in seeds]
    result = train_ensemble(ens, members, TASK, K, TRAIN, runtime)
    return ens, result


def _member(ens, result, i: int):
    return ({n: p[i].detach().clone() for n, p in ens.named_parameters()},
            [r["loss"][i] for r in result.history])


@pytest.mark.parametrize("threads", [1, 2])
def test_a_member_compiled_is_bit_identical_alone_and_with_companions(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = _member(*_train([3], FAST), 0)
        for seeds in ([3, 5], [0, 3, 5]):
            params, losses = _member(*_train(seeds, FAST), seeds.index(3))
            assert losses == alone[1]
            for name, value in params.items():
                assert torch.equal(value, alone[0][name]), (seeds, name)
    finally:
        torch.set_num_threads(before)


def test_compiled_training_follows_the_uncompiled_run_and_leaves_the_reference_forms_on():
    compiled, fast = _train([0, 1], FAST)
    plain, reference = _train([0, 1], RuntimeOptions())
    assert not any(getattr(m, "fusable", False) for m in compiled.modules())
    # The same maths rounded otherwise: the first window's losses agree to float precision,
    # and 12 steps later the members are still the same function to a few parts in 10^4.
    assert fast.history[0]["loss"] == pytest.approx(reference.history[0]["loss"], rel=1e-5)
    for (name, p), q in zip(compiled.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-3, msg=name)


def test_the_compiled_clipping_computes_each_members_norm():
    ens, _ = _train([0, 1, 2], FAST)
    for p in ens.parameters():
        p.grad = torch.randn(p.shape, generator=make_generator(p.numel(), "grads"))
    from icl_stl.training.compiled import CompiledClipping

    expected = ens.grad_norms()
    torch.testing.assert_close(CompiledClipping(ens, torch.device("cpu"))(0.0), expected,
                               rtol=1e-6, atol=0)
