"""Where one training step's time goes, reference engine against compiled, phase by phase.

    python scripts/profile_step.py --members 8 --threads 2 --out docs/bench/step-phases-cpu-<date>.json

Times each phase of the engine's step (batch sampling, forward, loss, backward, per-member
clipping, AdamW) with perf_counter over a few hundred steps after a warm-up, for the uncompiled
reference path (`runtime` defaults) and the compiled one (`runtime=cpu_fast`). The phases are
those of `icl_stl.training.engine.train_ensemble`, called here one by one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from icl_stl.config import ModelConfig, TaskConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.models.model import MODEL_SIZES
from icl_stl.training.compiled import CompiledClipping, compiled_forward, fusable_forms
from icl_stl.training.engine import BatchSampler, MemberData
from icl_stl.training.losses import member_losses
from icl_stl.training.optim import configure_optimizer

PHASES = ("sample", "forward", "loss", "backward", "clip", "optimizer")


def profile(compiled: bool, members: int, d: int, k: int, batch: int, steps: int) -> dict:
    cpu = torch.device("cpu")
    task = make_task(TaskConfig(d=d, k=k))
    model = build_ensemble(ModelConfig(**MODEL_SIZES["tiny"]), d, k,
                           [make_generator(i, "init") for i in range(members)])
    data = [MemberData(i, sample_prompts(task, 4096, k, make_generator(i, "bench")))
            for i in range(members)]
    optimizer = configure_optimizer(model.named_parameters(), lr=1e-3, weight_decay=0.0,
                                    betas=(0.9, 0.999), fused=compiled, member_axis=True)
    sampler = BatchSampler(data, task, k, batch, cpu)
    forward = compiled_forward(model, cpu) if compiled else model
    clip = CompiledClipping(model, cpu) if compiled else model.clip_grads_
    seconds = dict.fromkeys(PHASES, 0.0)
    with fusable_forms(model, compiled):
        for step in range(steps + 20):
            marks = [time.perf_counter()]
            xs, ys = sampler.sample(d, k)
            marks.append(time.perf_counter())
            pred = forward(xs, ys)
            marks.append(time.perf_counter())
            losses = member_losses(pred, ys, d)
            marks.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            marks.append(time.perf_counter())
            norms = clip(1.0)
            bool(torch.isfinite(losses).all() & torch.isfinite(norms).all())
            marks.append(time.perf_counter())
            optimizer.step()
            marks.append(time.perf_counter())
            if step >= 20:  # after the warm-up (and the compile)
                for name, a, b in zip(PHASES, marks, marks[1:]):
                    seconds[name] += b - a
    total = sum(seconds.values())
    return {"compiled": compiled, "ms_per_step": {n: 1e3 * s / steps for n, s in seconds.items()},
            "total_ms_per_step": 1e3 * total / steps,
            "member_steps_per_s": steps * members / total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [profile(c, args.members, args.d, args.k, args.batch, args.steps)
            for c in (False, True)]
    for row in rows:
        phases = ", ".join(f"{n} {v:.1f}" for n, v in row["ms_per_step"].items())
        print(f"{'compiled ' if row['compiled'] else 'reference'}: {phases} ms; "
              f"{row['total_ms_per_step']:.1f} ms/step, {row['member_steps_per_s']:.1f} "
              f"member steps/s")
    if args.out:
        result = {"command": "python scripts/profile_step.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if k != "out" and v is not None),
                  "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                  "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
