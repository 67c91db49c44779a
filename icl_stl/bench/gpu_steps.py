"""The measured inputs of the GPU estimate (icl_stl/bench/estimate.py): kernels per step,
counted on the CPU, and step times, measured on whatever device is there."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from icl_stl.bench.estimate import KernelCounts, RunShape
from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble
from icl_stl.training.evaluation import predict

_NOT_KERNELS = ("empty", "empty_strided", "empty_like", "detach", "lift_fresh", "alias",
                "set_", "resize_", "_local_scalar_dense", "is_nonzero", "item",
                "_record_function_enter_new", "_record_function_exit")


def _is_kernel(func) -> bool:
    """Whether an aten operator does work on the device: views and allocations do not."""
    return not (func.is_view or func._schema.name.split("::")[-1] in _NOT_KERNELS)


def count_kernels(model: ModelConfig, d: int, k: int) -> KernelCounts:
    """Backend operators of one training step (forward, backward, clipping, AdamW, batch
    sampling) and of one evaluation forward, counted on the CPU with bf16 autocast: a step as
    the difference between runs of 2 and 4 steps (so that set-up is not counted), and the part
    per member as the difference between ensembles of 2 and 3 members.

    The CPU runs the members' layer norms one member at a time (`MemberLayerNorm`: faster
    there), the GPU all members in one normalisation and one affine kernel: layer-norm
    operators are therefore not counted per member, and the two of an ensemble of 2 stand for
    the GPU's two kernels per layer norm."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = self.layer_norms = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if _is_kernel(func):
                self.n += 1
                self.layer_norms += "layer_norm" in func._schema.name
            return func(*args, **(kwargs or {}))

    task = make_task(TaskConfig(d=d, k=k))
    runtime = RuntimeOptions(bf16=True)

    def counts(members: int) -> tuple[int, int, int, int]:
        """(operators, layer-norm operators) of a step, then of a forward."""
        data = [MemberData(i, sample_prompts(task, 16, k, make_generator(i, "count")))
                for i in range(members)]
        runs = []
        for steps in (2, 4):
            ens = build_ensemble(model, d, k, [make_generator(i, "init") for i in range(members)])
            cfg = TrainConfig(steps=steps, batch_size=2, log_every=10 ** 6, checkpoint_every=0,
                              warmup_steps=0)
            with Counter() as counter:
                train_ensemble(ens, data, task, k, cfg, runtime)
            runs.append((counter.n, counter.layer_norms))
        xs = torch.stack([m.dataset.xs[:2] for m in data])
        ys = torch.stack([m.dataset.ys[:2] for m in data])
        with Counter() as counter:
            predict(ens, xs, ys, batch_size=2, runtime=runtime)
        return ((runs[1][0] - runs[0][0]) // 2, (runs[1][1] - runs[0][1]) // 2, counter.n,
                counter.layer_norms)

    train2, norms2, forward2, fnorms2 = counts(2)
    train3, norms3, forward3, fnorms3 = counts(3)
    train_each = (train3 - train2) - (norms3 - norms2)
    forward_each = (forward3 - forward2) - (fnorms3 - fnorms2)
    return KernelCounts(train_fixed=train2 - 2 * train_each,
                        forward_fixed=forward2 - 2 * forward_each,
                        train_per_member=train_each, forward_per_member=forward_each)


def measure_step_s(shape: RunShape, runtime: RuntimeOptions, steps: int = 20,
                   repeats: int = 3) -> Callable[[int], float]:
    """A function K -> measured seconds of one training step of K members on `runtime`'s
    device (fresh prompts; the fastest of `repeats` runs of `steps` steps after a warm-up run),
    cached by K."""
    task = make_task(TaskConfig(d=shape.d, k=shape.k))
    cache: dict[int, float] = {}

    def sync() -> None:
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()

    def measure(members: int) -> float:
        if members not in cache:
            ens = build_ensemble(shape.model, shape.d, shape.k,
                                 [make_generator(i, "init") for i in range(members)])
            data = [MemberData(i) for i in range(members)]
            cfg = TrainConfig(steps=steps, batch_size=shape.batch, log_every=steps,
                              checkpoint_every=0, warmup_steps=0)
            train_ensemble(ens, data, task, shape.k, cfg, runtime)  # warm-up
            best = math.inf
            for _ in range(repeats):
                sync()
                start = time.perf_counter()
                train_ensemble(ens, data, task, shape.k, cfg, runtime)
                sync()
                best = min(best, (time.perf_counter() - start) / steps)
            cache[members] = best
        return cache[members]

    return measure
