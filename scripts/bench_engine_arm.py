"""One arm of the engine A/B benchmark (scripts/bench_engine_ab.py runs it in a fresh process).

Imports whichever icl_stl comes first on sys.path (the A/B script puts the arm's checkout
first, since the package is installed editable) and prints one JSON line: the module path, the
training rate at one ensemble size, and the wall time of whole training runs of a fresh model,
cold (first in the process: imports done, compile included) and warm (a second fresh model).
Only APIs that the last landed commit already had are used, so an old checkout runs it too.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300, help="steps of each timed training run")
    ap.add_argument("--compile", action="store_true", help="runtime.compile (and fused AdamW)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import icl_stl
    from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
    from icl_stl.data.prompts import sample_prompts
    from icl_stl.data.seeding import make_generator
    from icl_stl.data.tasks import make_task
    from icl_stl.models import build_ensemble
    from icl_stl.models.model import MODEL_SIZES
    from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble

    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    task = make_task(TaskConfig(d=args.d, k=args.k))
    runtime = RuntimeOptions(compile=args.compile, fused_adam=args.compile)
    members = [MemberData(i, sample_prompts(task, 4096, args.k, make_generator(i, "bench")))
               for i in range(args.members)]

    def run(offset: int, steps: int) -> float:
        """Seconds to train a fresh ensemble for `steps` steps (as a loop generation does)."""
        ens = build_ensemble(cfg, args.d, args.k,
                             [make_generator(i + offset, "init") for i in range(args.members)])
        train = TrainConfig(steps=steps, batch_size=args.batch, log_every=steps,
                            checkpoint_every=0, warmup_steps=0)
        start = time.perf_counter()
        train_ensemble(ens, members, task, args.k, train, runtime)
        return time.perf_counter() - start

    cold = run(0, args.steps)
    warm = run(100, args.steps)
    # The rate: a short and a long run of fresh models, so that set-up cancels out.
    short, long = run(200, 20), run(300, 20 + args.steps)
    rate = args.steps * args.members / (long - short)
    print(json.dumps({"module": icl_stl.__file__, "members": args.members,
                      "threads": args.threads, "compile": args.compile,
                      "member_steps_per_s": rate, "cold_run_s": cold, "warm_run_s": warm,
                      "steps": args.steps}))


if __name__ == "__main__":
    main()
