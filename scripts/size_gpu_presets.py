"""Steps to ridge at finite n for the GPU presets' prompt shape (d = 5, k = 11 by default).

The GPU presets must let generation 0 reach ridge at their largest n. Steps to ridge do not
depend on the machine (the same seed gives the same run on any CPU build), so they can be
measured here and turned into GPU time with a measured GPU step rate later. Each run trains one
learner on a finite S_0 of n prompts with the preset's recipe (its train.steps sets the cosine
schedule) and stops at the first evaluation within 10% of the zero-to-ridge gap.

    python scripts/size_gpu_presets.py --model tiny --ns 10000 30000 100000 --steps 10000 \
        --out docs/bench/gpu-presets-steps-cpu-<date>.json
    python scripts/size_gpu_presets.py --model standard --d 20 --k 41 --ns 100000 \
        --steps 50000 --device cuda --out docs/bench/gpu-presets-steps-standard-d20-<gpu>.json

The second sizes the confirmatory reproduction's GPU preset (conf/experiment/reproduce_v2/
setting/_gpu_d20.yaml), whose train.steps is assumed until it has run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import subprocess
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.config import parse_app_config
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.ridge_time import ridge_target, time_to_ridge


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--ns", nargs="+", type=int, required=True)
    p.add_argument("--steps", type=int, default=10000, help="the recipe's train.steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--k", type=int, default=11)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="fp32 on either: steps to ridge do not depend on the machine")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [f"model={args.model}", f"task.d={args.d}", f"task.k={args.k}",
                 f"train.steps={args.steps}",
                 f"train.batch_size={args.batch}", "train.warmup_steps=500", "logger=disabled"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        app = parse_app_config(OmegaConf.to_container(compose("train", overrides=overrides),
                                                     resolve=True))
    target = ridge_target(app.task, eval_prompts=1000, seed=0)
    runs = []
    for n in args.ns:
        res = time_to_ridge(app.model, app.task, app.train, n=n, seed=args.seed, target=target,
                            eval_every=args.eval_every,
                            runtime=RuntimeOptions(device=torch.device(args.device)))
        row = {"n": n, **{k: v for k, v in dataclasses.asdict(res).items() if k != "curve"},
               "curve": [(s, r) for s, _, r in res.curve]}
        runs.append(row)
        print(json.dumps({k: row[k] for k in ("n", "reached", "steps", "steps_run",
                                              "gap_closed", "best_risk")}), flush=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": "python scripts/size_gpu_presets.py " + " ".join(
                [f"--model {args.model}", f"--d {args.d}", f"--k {args.k}", "--ns",
                 *map(str, args.ns), f"--steps {args.steps}",
                 f"--batch {args.batch}", f"--seed {args.seed}"]),
            "overrides": overrides, "commit": commit,
            "date": datetime.datetime.now().isoformat(timespec="minutes"),
            "torch": torch.__version__, "note": "steps are machine-independent; seconds are "
            "not comparable (measured beside other jobs)", "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
