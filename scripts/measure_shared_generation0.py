"""Generation-0 wall time with `loop.share_generation_0` on and off (issue 10).

    python scripts/measure_shared_generation0.py [--repeats 2] [--threads 1] [hydra overrides]

Runs generation 0 only (loop.generations=0) of a loop of 2 seeds x 5 lambdas with the tiny
model, 300 steps, alternating off/on, each in a fresh checkpoint directory, and prints the
seconds spent in `learner.fit` (training) and in the whole generation (timing.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR, load_app_config, runtime_options
from icl_stl.cli.loop import loop_settings, members_from_config
from icl_stl.loop.runner import LoopRun

BASE = ["model=tiny", "train.steps=300", "data.n=200", "members.seeds=[0,1]",
        "members.real_fractions=[0,0.25,0.5,0.75,1]", "loop.generations=0",
        "logger.mode=disabled", "runtime.device=cpu"]


def once(overrides: list[str], share: bool, root: Path) -> dict:
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("loop", overrides=[*overrides, f"loop.share_generation_0={share}"])
    app = load_app_config(cfg, needs_loop=True)
    run = LoopRun(loop_settings(app, runtime_options(app.runtime)), members_from_config(app),
                  root / "ck", run_dir=root)
    fit, spent = run.learner.fit, {}

    def timed_fit(*args, **kwargs):
        start = time.perf_counter()
        info = fit(*args, **kwargs)
        spent["fit_s"] = time.perf_counter() - start
        spent["trained_members"] = info.get("trained_members")
        return info

    run.learner.fit = timed_fit
    run.run()
    timing = json.loads((root / "timing.json").read_text())["generations"][0]
    return {"share": share, "members": len(run.members), **spent,
            "generation_s": timing["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    print("load before:", os.getloadavg(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for share in (False, True):
                row = once([*BASE, *overrides], share, Path(tmp) / f"{r}-{share}")
                row["load1"] = os.getloadavg()[0]
                print(json.dumps(row), flush=True)
                rows.append(row)
    for share in (False, True):
        fits = [r["fit_s"] for r in rows if r["share"] is share]
        print(f"share_generation_0={share}: fit {statistics.mean(fits):.1f} s "
              f"(runs {', '.join(f'{f:.1f}' for f in fits)})")
    off = statistics.mean(r["fit_s"] for r in rows if not r["share"])
    on = statistics.mean(r["fit_s"] for r in rows if r["share"])
    print(f"saving: {off - on:.1f} s of {off:.1f} s ({1 - on / off:.0%}); ratio {off / on:.2f}x")
    print("load after:", os.getloadavg())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
