"""How to spend the 2-core CPU on the confirmatory reproduction: one process on 2 threads, or
two processes on one thread each, and how many members per ensemble.

Times the training step (batch sampling, forward, backward, clipping, AdamW) of the tiny GPT-2
at the reproduction's shape (d = 2, k = 6, batch 64) for ensembles of K members:

    .venv/bin/python scripts/measure_v2_workers.py --out docs/bench/v2-workers-cpu-<date>.json

Each configuration runs in fresh processes (one, or two at once for the two-process rows), so
the rows do not share warm caches; `--budget` seconds per measurement after a warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(k_members: int, threads: int, budget: float, d: int, k: int, batch: int) -> float:
    """Ensemble steps/s of K tiny members on `threads` threads (this process)."""
    import torch

    from icl_stl.bench.speed import train_rate
    from icl_stl.config import ModelConfig, TaskConfig
    from icl_stl.data.seeding import make_generator
    from icl_stl.data.tasks import make_task
    from icl_stl.models import build_ensemble
    from icl_stl.models.model import MODEL_SIZES
    from icl_stl.training.engine import RuntimeOptions

    torch.set_num_threads(threads)
    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    ens = build_ensemble(cfg, d, k, [make_generator(i, "init") for i in range(k_members)])
    runtime = RuntimeOptions(device=torch.device("cpu"))
    return train_rate(ens, make_task(TaskConfig(d=d, k=k)), k, batch, runtime, budget, 20)


def spawn(k_members: int, threads: int, args) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", str(k_members), str(threads),
           "--budget", str(args.budget), "--d", str(args.d), "--k", str(args.k),
           "--batch", str(args.batch)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)


def measure(k_members: int, threads: int, processes: int, args) -> dict:
    start = time.perf_counter()
    procs = [spawn(k_members, threads, args) for _ in range(processes)]
    rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    row = {"K": k_members, "threads": threads, "processes": processes,
           "steps_per_s_each": rates,
           "member_steps_per_s_total": sum(r * k_members for r in rates),
           "wall_s": round(time.perf_counter() - start, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", nargs=2, type=int, metavar=("K", "THREADS"), default=None)
    p.add_argument("--budget", type=float, default=4.0)
    p.add_argument("--d", type=int, default=2)
    p.add_argument("--k", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ks", nargs="+", type=int, default=[2, 4, 8, 16, 32])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.child:
        print(one(*args.child, args.budget, args.d, args.k, args.batch))
        return 0
    rows = []
    for k_members in args.ks:
        rows.append(measure(k_members, 1, 1, args))
        rows.append(measure(k_members, 2, 1, args))
        rows.append(measure(k_members, 1, 2, args))
    if args.out:
        import torch

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=REPO).stdout.strip()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": "python scripts/measure_v2_workers.py " + " ".join(
                f"--{k} {v}" for k, v in (("budget", args.budget), ("d", args.d),
                                          ("k", args.k), ("batch", args.batch))),
            "ks": args.ks, "commit": commit, "torch": torch.__version__,
            "date": datetime.datetime.now().isoformat(timespec="minutes"),
            "note": "training step only (no labelling or evaluation); the machine's other "
                    "work shows in the rates", "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
