"""Time to ridge of a few model sizes at the reproduction's setting (d = 2, k = 6, finite S_0).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/size_models.py LAYERS WIDTH HEADS N SEED BATCH

Prints one JSON line: whether and when (steps, training seconds) the learner closed 90% of the
zero-to-ridge gap on 1,000 fresh prompts (evaluated every 100 steps, at most 4,000 steps or
150 s), and the gap closed along the way. Used to pick the reproduction's model
(docs/results/cpu/README.md; runs in docs/bench/sizes-cpu-2026-12-03.json).
"""

import json
import sys

import torch

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.training.ridge_time import ridge_target, time_to_ridge


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    layers, width, heads, n, seed, batch = (int(a) for a in argv)
    task = TaskConfig(d=2, k=6)
    target = ridge_target(task, 1000, 0)
    r = time_to_ridge(ModelConfig(n_layer=layers, n_embd=width, n_head=heads), task,
                      TrainConfig(steps=4000, batch_size=batch), n=n, seed=seed, target=target,
                      eval_every=100, max_seconds=150, stop_at_ridge=True)
    gap = target.zero_risk - target.ridge_risk
    print(json.dumps({"cfg": argv, "reached": r.reached, "steps": r.steps, "seconds": r.seconds,
                      "run": r.steps_run, "secs_run": r.seconds_run, "gap": r.gap_closed,
                      "curve": [(s, round(t, 1), round((target.zero_risk - x) / gap, 3))
                                for s, t, x in r.curve][::5]}))


if __name__ == "__main__":
    main(sys.argv[1:])
