"""bf16 autocast (the GPU path, `runtime.bf16`) agrees with exact fp32, checked on the CPU.

The engine's and the evaluation's autocast follow the runtime's device, so the bf16 path runs
here too. Measured first (tiny GPT-2, d = 2, k = 6, K = 2, batch 64, the same initialisation and
batches, one thread; torch 2.13 CPU):

    after 100 steps     final training loss differs by 1.6e-4 and 6.9e-5 (relative, per member)
                        test risk (both models evaluated in fp32): 4.8e-5 and 1.3e-5
    after 600 steps     loss 7.1e-3 and 2.9e-3; test risk 9.1e-3 and 5.5e-3
    evaluation only     the same fp32 model evaluated under bf16 against fp32: test risk
                        3.7e-6 and 1.7e-4 (100 steps), 2.8e-4 and 2.0e-5 (600 steps);
                        predictions, RMS difference over the labels' RMS: 1.4e-3 (100 steps)
(scripts/measure_bf16_parity.py, docs/bench/bf16-parity-cpu-2026-12-06.json.)

The tolerance is 2^-9 (0.2%, relative), bf16's unit roundoff: bf16 keeps 8 significant bits, so
a single rounding of a matmul input moves it by up to 2^-9. After 100 steps the two runs may not
differ by more than one such rounding in their loss or test risk; the measured gaps are 11 to
150 times smaller. A single prediction passes through more roundings (one or more per layer),
so its bound is 4 roundoffs on the labels' scale (measured: 0.7 of one). Trajectories drift
apart as training leaves the plateau (0.9% at 600 steps), so the bound is stated for a short
run only: bf16 is for speed on a GPU, never for the committed CPU results, which stay exact
fp32.
"""

from __future__ import annotations

import copy

import pytest
import torch

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.models.model import MODEL_SIZES
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble
from icl_stl.training.evaluation import model_errors, predict

BF16_UNIT_ROUNDOFF = 2.0 ** -9
D, K_PROMPT, MEMBERS, STEPS = 2, 6, 2, 100


@pytest.fixture(scope="module")
def runs():
    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    task = make_task(TaskConfig(d=D, k=K_PROMPT))
    data = [MemberData(i, sample_prompts(task, 512, K_PROMPT, make_generator(i, "s0")))
            for i in range(MEMBERS)]
    test = sample_prompts(task, 1000, K_PROMPT, make_generator(99, "test"))
    init = build_ensemble(cfg, D, K_PROMPT, [make_generator(i, "init") for i in range(MEMBERS)])
    train = TrainConfig(steps=STEPS, batch_size=64, log_every=STEPS // 4, checkpoint_every=0,
                        warmup_steps=10)
    out = {"test": test}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        model = copy.deepcopy(init)
        result = train_ensemble(model, data, task, K_PROMPT, train, RuntimeOptions(bf16=bf16))
        out[name] = (model, torch.tensor(result.final_loss))
    return out


def _relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() / b.abs()


def test_a_short_bf16_training_run_agrees_with_fp32(runs):
    (model32, loss32), (model16, loss16) = runs["fp32"], runs["bf16"]
    gap = _relative(loss16, loss32)
    assert (gap > 0).any()  # bf16 did run: the two paths are not the same computation
    assert (gap <= BF16_UNIT_ROUNDOFF).all(), gap
    exact = RuntimeOptions()
    risk32 = model_errors(model32, runs["test"], 250, exact).mean(dim=(1, 2))
    risk16 = model_errors(model16, runs["test"], 250, exact).mean(dim=(1, 2))
    assert (_relative(risk16, risk32) <= BF16_UNIT_ROUNDOFF).all()


def test_bf16_evaluation_agrees_with_fp32_evaluation_of_the_same_model(runs):
    model, test = runs["fp32"][0], runs["test"]
    exact, bf16 = RuntimeOptions(), RuntimeOptions(bf16=True)
    risk32 = model_errors(model, test, 250, exact).mean(dim=(1, 2))
    risk16 = model_errors(model, test, 250, bf16).mean(dim=(1, 2))
    gap = _relative(risk16, risk32)
    assert (gap > 0).any() and (gap <= BF16_UNIT_ROUNDOFF).all(), gap
    xs, ys = test.xs.expand(MEMBERS, *test.xs.shape), test.ys.expand(MEMBERS, *test.ys.shape)
    pred32 = predict(model, xs, ys, 250, exact)
    pred16 = predict(model, xs, ys, 250, bf16)
    assert pred16.dtype == torch.float32  # returned in fp32 whatever the compute dtype
    # Per prediction, on the labels' scale (early in training the predictions are near 0): a
    # rounding per layer accumulates through the 3 layers, so within 4 roundoffs.
    rms = ((pred16 - pred32).pow(2).mean() / ys.pow(2).mean()).sqrt()
    assert 0 < rms <= 4 * BF16_UNIT_ROUNDOFF, rms
