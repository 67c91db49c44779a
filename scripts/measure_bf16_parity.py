"""How far bf16 autocast (the GPU path) moves a short training run and an evaluation from fp32,
measured on the CPU: what tests/training/test_bf16_parity.py's tolerance was chosen from.

The same initialisation and batches (tiny GPT-2, d = 2, k = 6, 2 members, batch 64, S_0 of 512
prompts each) are trained in fp32 and under bf16 autocast, and each model is evaluated on 1,000
test prompts in fp32 and in bf16. Relative differences per member:

    .venv/bin/python scripts/measure_bf16_parity.py --steps 100 600 \
        --out docs/bench/bf16-parity-cpu-<date>.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.models.model import MODEL_SIZES
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble
from icl_stl.training.evaluation import model_errors, predict

D, K, MEMBERS = 2, 6, 2


def relative(a: list[float], b: list[float]) -> list[float]:
    return [abs(x - y) / abs(y) for x, y in zip(a, b)]


def measure(steps: int) -> dict:
    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    task = make_task(TaskConfig(d=D, k=K))
    data = [MemberData(i, sample_prompts(task, 512, K, make_generator(i, "s0")))
            for i in range(MEMBERS)]
    test = sample_prompts(task, 1000, K, make_generator(99, "test"))
    init = build_ensemble(cfg, D, K, [make_generator(i, "init") for i in range(MEMBERS)])
    train = TrainConfig(steps=steps, batch_size=64, log_every=max(1, steps // 4),
                        checkpoint_every=0, warmup_steps=10)
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        model = copy.deepcopy(init)
        result = train_ensemble(model, data, task, K, train, RuntimeOptions(bf16=bf16))
        out[name] = {
            "final_loss": result.final_loss,
            "test_risk_fp32_eval": model_errors(model, test, 250, RuntimeOptions())
            .mean(dim=(1, 2)).tolist(),
            "test_risk_bf16_eval": model_errors(model, test, 250, RuntimeOptions(bf16=True))
            .mean(dim=(1, 2)).tolist()}
        if not bf16:
            out["fp32_model"] = model
    # The fp32 model's predictions under bf16 against fp32, on the scale of the labels (early
    # in training the predictions themselves are near 0, so relative to them is no scale).
    model = out["fp32_model"]
    xs, ys = test.xs.expand(MEMBERS, *test.xs.shape), test.ys.expand(MEMBERS, *test.ys.shape)
    diff = predict(model, xs, ys, 250, RuntimeOptions(bf16=True)) - predict(
        model, xs, ys, 250, RuntimeOptions())
    prediction_rms = (diff.pow(2).mean() / ys.pow(2).mean()).sqrt().item()
    del out["fp32_model"]
    return {"steps": steps, **out, "prediction_rms_diff_over_label_rms": prediction_rms,
            "relative": {
        "final_loss": relative(out["bf16"]["final_loss"], out["fp32"]["final_loss"]),
        "test_risk_trained_bf16": relative(out["bf16"]["test_risk_fp32_eval"],
                                           out["fp32"]["test_risk_fp32_eval"]),
        "test_risk_eval_only": relative(out["fp32"]["test_risk_bf16_eval"],
                                        out["fp32"]["test_risk_fp32_eval"])}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", nargs="+", type=int, default=[100, 600])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    runs = []
    for steps in args.steps:
        runs.append(measure(steps))
        print(json.dumps({"steps": steps, **runs[-1]["relative"], "prediction_rms":
                          runs[-1]["prediction_rms_diff_over_label_rms"]}), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python scripts/measure_bf16_parity.py --steps "
                   + " ".join(map(str, args.steps)) + f" --out {args.out}",
        "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
        "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
