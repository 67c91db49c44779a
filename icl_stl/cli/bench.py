"""icl-stl-bench measures speed (training, labelling and evaluation throughput against matmul
references) and time to ridge against Garg et al.'s recipe, and writes the numbers as JSON.
Start here: icl-stl-bench --quick (a smoke test of the speed suite in seconds).

    icl-stl-bench                      # speed suite, CPU defaults: outputs/bench/bench.json
    icl-stl-bench --sizes tiny small --ks 1 2 4 8 16 --out bench.json
    icl-stl-bench --suite ridge        # time to ridge: outputs/bench/ridge.json
    icl-stl-bench --suite ridge --ridge-cases demo tiny --ridge-seeds 0 1
    icl-stl-bench --suite ablation     # what each change of the recipe buys (demo case)
    icl-stl-bench --suite warm_start   # a warm-started generation's time back to ridge
    icl-stl-bench --suite head         # the Gaussian head's losses against squared error
    icl-stl-bench --suite gpu-estimate # the version-2 programme's GPU time (cli/gpu_estimate.py)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from icl_stl.bench import speed
from icl_stl.bench.ridge import (
    ABLATION,
    CASES,
    HEAD,
    bench_ablation,
    bench_time_to_ridge,
    bench_warm_start,
    describe,
)
from icl_stl.cli import gpu_estimate
from icl_stl.cli.common import CONFIG_DIR
from icl_stl.cli.help import DescribedParser
from icl_stl.config import ModelConfig
from icl_stl.data.seeding import resolve_device
from icl_stl.models.model import MODEL_SIZES
from icl_stl.persistence import atomic_write_json
from icl_stl.training.engine import RuntimeOptions

# Training seconds allowed per time-to-ridge run, and steps between its evaluations.
RIDGE_CAPS = {"demo": 120.0, "tiny": 600.0, "small": 600.0}
RIDGE_EVAL_EVERY = {"demo": 50, "tiny": 100, "small": 100}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = DescribedParser(prog="icl-stl-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--sizes", nargs="+", default=None, choices=list(MODEL_SIZES))
    p.add_argument("--ks", nargs="+", type=int, default=None, help="ensemble sizes")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--k", type=int, default=11)
    p.add_argument("--budget", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--quick", action="store_true", help="tiny sizes and budgets (smoke test)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--compile", action="store_true",
                   help="the compiled engine (runtime.compile with fused AdamW) for training")
    p.add_argument("--training-only", action="store_true",
                   help="speed suite: the training rates alone (the K-scaling table)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default: outputs/bench/bench.json, ridge.json, "
                        "ablation.json)")
    p.add_argument("--suite", default="speed",
                   choices=["speed", "ridge", "ablation", "warm_start", "head",
                            "gpu-estimate"],
                   help="speed: throughput; ridge: time to ridge of the default recipe and "
                        "Garg et al.'s; ablation: what each change of the recipe buys; "
                        "warm_start: a warm-started loop generation's time back to ridge; "
                        "head: time to ridge of the Gaussian head's mean, per loss; "
                        "gpu-estimate: the version-2 programme's GPU time")
    p.add_argument("--ridge-cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--ridge-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--ridge-cap", nargs="+", type=float, default=None, metavar="SECONDS",
                   help="training seconds allowed per run, one per case (default: "
                        + ", ".join(f"{c} {s:g}" for c, s in RIDGE_CAPS.items()) + ")")
    gpu_estimate.add_arguments(p)
    args = p.parse_args(argv)
    gpu_estimate.check_arguments(p, args)
    if args.ridge_cap is not None and len(args.ridge_cap) != len(args.ridge_cases):
        p.error(f"--ridge-cap needs one value per case ({len(args.ridge_cases)}), got "
                f"{args.ridge_cap}")
    if args.out is None:
        args.out = Path("outputs/bench") / {"speed": "bench.json"}.get(args.suite,
                                                                        f"{args.suite}.json")
    for name in ("batch", "d", "k"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be a positive integer, got {args.threads}")
    if args.budget < 0:
        p.error(f"--budget must be >= 0, got {args.budget}")
    return args


def machine(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"platform": platform.platform(), "processor": platform.processor(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if cuda else "cpu"}


def run_ridge(args: argparse.Namespace, runtime: RuntimeOptions, command: str) -> dict:
    """Time to ridge (or the ablation): one line per run as it finishes, then the JSON."""
    caps = dict(zip(args.ridge_cases, args.ridge_cap)) if args.ridge_cap else RIDGE_CAPS
    if args.quick:  # a smoke test of the harness, not a measurement
        caps = {case: 1.0 for case in CASES}
    result = {"machine": machine(runtime.device), "command": command,
              "date": time.strftime("%Y-%m-%d %H:%M"), "suite": args.suite,
              "gate": "test - ridge <= 0.1 (zero - ridge), on 1,000 fresh prompts"}

    def report(row: dict) -> None:
        print(describe(row), flush=True)

    if args.suite == "ridge":
        result["runs"] = bench_time_to_ridge(
            CONFIG_DIR, args.ridge_cases, caps, seeds=args.ridge_seeds,
            eval_every=RIDGE_EVAL_EVERY, runtime=runtime, report=report)
    elif args.suite in ("ablation", "head"):
        case = args.ridge_cases[0] if args.suite == "head" else "demo"
        result["runs"] = bench_ablation(CONFIG_DIR, seeds=args.ridge_seeds, cap_s=caps[case],
                                        eval_every=RIDGE_EVAL_EVERY[case], runtime=runtime,
                                        changes=HEAD if args.suite == "head" else ABLATION,
                                        case=case, report=report)
    else:
        quick = {"n": 64, "overrides": ["train.steps=20", "loop.steps=20"]} if args.quick else {}
        # --quick bounds generation 1 by its 20 steps, not by seconds: a time cap would cut
        # its curve short on a loaded machine (CI stopped it after 10 steps once)
        result["runs"] = bench_warm_start(CONFIG_DIR, seeds=args.ridge_seeds,
                                          cap_s=float("inf") if args.quick else caps["demo"],
                                          eval_every=10 if args.quick else RIDGE_EVAL_EVERY["demo"],
                                          runtime=runtime, report=report, **quick)
    atomic_write_json(args.out, result)
    print(f"written to {args.out}")
    return result


def run(argv: list[str] | None = None) -> dict:
    """Run the chosen suite, print a table, write JSON; return the results."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    runtime = RuntimeOptions(device=device, bf16=cuda, fused_adam=cuda or args.compile,
                             compile=args.compile)
    command = "icl-stl-bench " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.suite == "gpu-estimate":
        return gpu_estimate.run_gpu_estimate(args, runtime, command, machine(device))
    if args.suite != "speed":
        return run_ridge(args, runtime, command)
    sizes = args.sizes or (["tiny"] if args.quick else ["tiny", "small", "standard"])
    ks = args.ks or ([1, 2] if args.quick else [1, 2, 4, 8, 16] + ([64] if cuda else []))
    budget = 0.0 if args.quick else args.budget
    tokens = args.batch * 2 * args.k
    result: dict = {
        "machine": machine(device),
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "matmul_gflops": {
            "square_1024": speed.matmul_rate(device, 1024, 1024, 1024, max(budget / 2, 0.05)),
            "tiny_model_gemms": speed.model_matmul_rate(
                device, ModelConfig(**MODEL_SIZES["tiny"]), tokens, max(budget / 2, 0.05))},
        "training": [], "labelling": None, "evaluation": None, "generation": None}
    for size in sizes:
        size_ks = ks if size == "tiny" or cuda else [k_ for k_ in ks if k_ <= 4]
        rows = speed.bench_training(size, size_ks, runtime, args.d, args.k, args.batch, budget)
        result["training"] += rows
        for r in rows:
            print(f"train {r['size']:8s} {r['engine']:15s} K={r['K']:3d} "
                  f"{r['steps_per_s']:8.2f} steps/s  {r['member_steps_per_s']:8.2f} member "
                  f"steps/s  {r['prompts_per_s']:10.0f} prompts/s  {r['model_gflops']:7.2f} "
                  f"model GFLOP/s", flush=True)
    if args.training_only:
        atomic_write_json(args.out, result)
        print(f"written to {args.out}")
        return result
    result["labelling"] = speed.bench_labelling(runtime, 256 if args.quick else 4096, args.d,
                                                args.k, budget)
    print("labelling", json.dumps(result["labelling"]), flush=True)
    result["evaluation"] = speed.bench_evaluation(runtime, 64 if args.quick else 1280,
                                                  5 if args.quick else 20,
                                                  11 if args.quick else 41, budget)
    print("evaluation", json.dumps(result["evaluation"]), flush=True)
    result["generation"] = speed.bench_generation(runtime, 64 if args.quick else 1024,
                                                  10 if args.quick else 500, args.d, args.k)
    print("generation", json.dumps(result["generation"]), flush=True)
    tiny1 = next((r for r in result["training"] if r["size"] == "tiny" and r["K"] == 1
                  and r["engine"] == "native"), None)
    mm = result["matmul_gflops"]
    # The targets are ratios of a single tiny model's rate; without one (--ks 25 50) there
    # is nothing to state, which is not an error.
    result["cpu_targets" if not cuda else "gpu"] = {} if tiny1 is None else {
        "tiny_K1_steps_per_s": tiny1["steps_per_s"],
        "tiny_model_gflops_over_square_matmul": tiny1["model_gflops"] / mm["square_1024"],
        "tiny_model_gflops_over_model_gemms": tiny1["model_gflops"] / mm["tiny_model_gemms"]}
    if cuda:
        name = result["machine"]["device"]
        peak = next((v for k_, v in speed.GPU_PEAK_BF16.items() if k_ in name), None)
        result["gpu"]["bf16_peak_tflops"] = peak
    print("summary", json.dumps(result["cpu_targets" if not cuda else "gpu"]), flush=True)
    atomic_write_json(args.out, result)
    print(f"written to {args.out}")
    return result


def main() -> None:
    run()


if __name__ == "__main__":
    main()
