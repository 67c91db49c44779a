"""Benchmarks: every speed-up is a ratio against a plain reference timed in the same run.

The reference is one model at a time with the backbone configured as Garg et al.'s public code
does it (the default 50,257-row token embedding, eager attention) and a Python loop over models.
Each measurement runs for a time budget rather than a fixed step count, after a warm-up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.loop.labelling import label_cached, label_uncached
from icl_stl.models import build_ensemble
from icl_stl.models.ensemble import ModuleEnsemble
from icl_stl.models.model import MODEL_SIZES, ICLModel
from icl_stl.training import baselines
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble
from icl_stl.training.evaluation import baseline_errors, model_errors

# Dense bf16 tensor-core peaks (TFLOP/s) for model FLOP utilisation on known GPUs.
GPU_PEAK_BF16 = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, budget_s: float,
          min_reps: int = 2) -> float:
    """Seconds per call of `fn`, after one warm-up call, over at least `min_reps` calls."""
    fn()
    sync(device)
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < budget_s:
        fn()
        reps += 1
    sync(device)
    return (time.perf_counter() - start) / reps


def matmul_rate(device: torch.device, m: int, k: int, n: int, budget_s: float = 1.0,
                dtype=torch.float32) -> float:
    """Achieved GFLOP/s of an (m, k) @ (k, n) matmul."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    return 2 * m * k * n / timed(lambda: a @ b, device, budget_s, min_reps=5) / 1e9


def model_matmul_rate(device: torch.device, cfg: ModelConfig, tokens: int,
                      budget_s: float = 1.0) -> float:
    """fp32 GFLOP/s of the model's own GEMMs (tokens x width x {3,1,4,4} width), FLOP-weighted."""
    h = cfg.n_embd
    shapes = [(tokens, h, 3 * h), (tokens, h, h), (tokens, h, 4 * h), (tokens, 4 * h, h)]
    flops = [2 * m * k * n for m, k, n in shapes]
    seconds = [f / (matmul_rate(device, *s, budget_s / 4) * 1e9) for s, f in zip(shapes, flops)]
    return sum(flops) / sum(seconds) / 1e9


def garg_reference_model(cfg: ModelConfig, d: int, k: int, gen: torch.Generator) -> ICLModel:
    """The backbone as Garg et al. configure it: default vocabulary (50,257 rows), eager attention."""
    from transformers import GPT2Config, GPT2Model

    model = ICLModel(cfg, d, k)
    model.backbone.gpt2 = GPT2Model(GPT2Config(
        n_positions=2 * k, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
        attn_implementation="eager"))
    model.init_weights_(gen)
    return model


def nonembedding_flops_per_step(cfg: ModelConfig, d: int, k: int, batch: int) -> float:
    """6 x non-embedding parameters x tokens (nanoGPT's estimate of a training step's FLOPs)."""
    model = ICLModel(cfg, d, k)
    return 6.0 * model.num_parameters(non_embedding=True) * batch * 2 * k


def train_rate(ensemble: nn.Module, task, k: int, batch: int, runtime: RuntimeOptions,
               budget_s: float, steps: int = 5) -> float:
    """Optimizer steps per second of an ensemble on finite sets (whole step: data to update)."""
    members = [MemberData(i, sample_prompts(task, 1024, k, make_generator(i, "bench")))
               for i in range(ensemble.n_members)]
    cfg = TrainConfig(steps=steps, batch_size=batch, log_every=steps, checkpoint_every=0,
                      warmup_steps=0)
    seconds = timed(lambda: train_ensemble(ensemble, members, task, k, cfg, runtime), runtime.device,
                    budget_s, min_reps=1)
    return steps / seconds


def bench_training(size: str, ks: list[int], runtime: RuntimeOptions, d: int, k: int,
                   batch: int, budget_s: float, reference_k: int = 8) -> list[dict]:
    """Steps/s of ensembles of K members against K reference models trained one by one."""
    cfg = ModelConfig(**MODEL_SIZES[size])
    task = make_task(TaskConfig(d=d, k=k))
    flops = nonembedding_flops_per_step(cfg, d, k, batch)
    rows = []
    steps = 20 if size == "tiny" else 5
    for n_members in ks:
        ens = build_ensemble(cfg, d, k, [make_generator(i, "init") for i in range(n_members)])
        rate = train_rate(ens.to(runtime.device), task, k, batch, runtime, budget_s, steps)
        rows.append({"size": size, "engine": "native", "compile": runtime.compile,
                     "K": n_members, "steps_per_s": rate,
                     "member_steps_per_s": rate * n_members,
                     "prompts_per_s": rate * n_members * batch,
                     "model_gflops": rate * n_members * flops / 1e9})
    # The reference: K Garg-configured models trained one after another (a Python loop).
    ref = ModuleEnsemble([garg_reference_model(cfg, d, k, make_generator(0, "init"))])
    # The reference is never compiled: it stands for the plain recipe.
    plain = dataclasses.replace(runtime, compile=False, fused_adam=runtime.device.type == "cuda")
    ref_rate = train_rate(ref.to(runtime.device), task, k, batch, plain, budget_s, steps)
    rows.append({"size": size, "engine": "garg_reference", "K": 1, "steps_per_s": ref_rate,
                 "member_steps_per_s": ref_rate, "prompts_per_s": ref_rate * batch,
                 "model_gflops": ref_rate * flops / 1e9,
                 "note": f"K={reference_k} one after another runs at {ref_rate:.2f} member "
                         f"steps/s: the same summed rate"})
    return rows


def bench_labelling(runtime: RuntimeOptions, n_prompts: int, d: int, k: int,
                    budget_s: float) -> dict:
    """Self-labelling n prompts with the tiny model: KV cache against the uncached path."""
    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    ens = build_ensemble(cfg, d, k, [make_generator(0, "init")]).to(runtime.device).eval()
    gen = make_generator(0, "bench-label")
    xs = torch.randn(1, n_prompts, k, d, generator=gen).to(runtime.device)
    noise = torch.randn(1, n_prompts, k, generator=gen).to(runtime.device)
    ctx = xs.new_zeros(1, n_prompts, 0)
    cached = timed(lambda: label_cached(ens, xs, ctx, noise, 0.1), runtime.device, budget_s, 1)
    uncached = timed(lambda: label_uncached(ens, xs, ctx, noise, 0.1), runtime.device,
                     budget_s, 1)
    same = (label_cached(ens, xs, ctx, noise, 0.1) - label_uncached(ens, xs, ctx, noise, 0.1)
            ).abs().max().item()
    return {"prompts": n_prompts, "k": k, "cached_s": cached, "uncached_s": uncached,
            "speedup": uncached / cached, "max_abs_diff": same}


def bench_evaluation(runtime: RuntimeOptions, n_prompts: int, d: int, k: int,
                     budget_s: float) -> dict:
    """Per-position errors of a model and every baseline against prompt-by-prompt LS + ridge."""
    task = make_task(TaskConfig(d=d, k=k))
    prompts = sample_prompts(task, n_prompts, k, make_generator(0, "bench-eval"))
    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    ens = build_ensemble(cfg, d, k, [make_generator(0, "init")]).to(runtime.device)
    names = ["least_squares", "ridge", "averaging", "knn", "zero"]

    def ours():
        model_errors(ens, prompts, n_prompts, runtime)
        baseline_errors(prompts, names, ridge_alpha=0.25, knn_neighbours=3)

    def reference():
        baselines.least_squares_reference(prompts.xs, prompts.ys)
        baselines.ridge_reference(prompts.xs, prompts.ys, 0.25)

    fast = timed(ours, runtime.device, budget_s, 1)
    slow = timed(reference, runtime.device, 0.0, 1)
    diff = (baselines.least_squares(prompts.xs, prompts.ys)
            - baselines.least_squares_reference(prompts.xs, prompts.ys)).abs().max().item()
    return {"prompts": n_prompts, "d": d, "k": k, "vectorised_s": fast, "reference_s": slow,
            "speedup": slow / fast, "least_squares_max_abs_diff": diff}


def bench_generation(runtime: RuntimeOptions, n: int, steps: int, d: int, k: int,
                     members: int = 1) -> dict:
    """Wall time of one loop generation (label, mix, train, evaluate) with the tiny model."""
    import tempfile
    from pathlib import Path

    from icl_stl.config import EvalConfig, LoopConfig
    from icl_stl.loop.mixing import MemberSpec
    from icl_stl.loop.runner import LoopRun, LoopSettings

    settings = LoopSettings(
        task=TaskConfig(d=d, k=k), model=ModelConfig(**MODEL_SIZES["tiny"]),
        train=TrainConfig(steps=steps, batch_size=64, log_every=steps, checkpoint_every=0),
        eval=EvalConfig(n_prompts=1280), loop=LoopConfig(generations=1, real_fraction=0.5),
        runtime=runtime)
    specs = [MemberSpec(seed=i, real_fraction=0.5, n=n) for i in range(members)]
    with tempfile.TemporaryDirectory() as tmp:
        LoopRun(settings, specs, Path(tmp) / "ck", Path(tmp)).run()
        from icl_stl.persistence import read_json

        timing = read_json(Path(tmp) / "timing.json")["generations"]
    return {"n": n, "steps": steps, "members": members,
            "generation_0_s": timing[0]["seconds"], "generation_1_s": timing[1]["seconds"]}
