"""`icl-stl-bench --suite gpu-estimate`: the version-2 programme's GPU time, from a command.

    icl-stl-bench --suite gpu-estimate                            # v2-cpu and v2-garg, H200
    icl-stl-bench --suite gpu-estimate --programme v2-cpu --packing by-lambda --gpu H100
    icl-stl-bench --suite gpu-estimate --preset collapse_vs_lambda   # any loop preset
    icl-stl-bench --suite gpu-estimate --launch-us 5 --efficiency 0.1  # other assumptions

On a CUDA device the training step times are measured there (`--measure` forces it on the CPU,
which gives the programme's CPU time instead); elsewhere they are modelled from the kernels
per step (counted on the CPU) and the assumed launch time, peak and efficiency, and the output
says so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from icl_stl.bench.estimate import (
    GPU_PEAKS_TFLOPS,
    GpuAssumptions,
    estimate_programme,
)
from icl_stl.bench.gpu_steps import count_kernels, measure_step_s
from icl_stl.bench.programmes import PACKINGS, PROGRAMMES, shape_from_app, v2_programme
from icl_stl.cli.common import CONFIG_DIR, load_app_config
from icl_stl.persistence import atomic_write_json
from icl_stl.training.engine import RuntimeOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gpu-estimate (--suite gpu-estimate)")
    g.add_argument("--programme", nargs="+", choices=list(PROGRAMMES), default=None,
                   help="built-in programmes (default: both, unless --preset is given)")
    g.add_argument("--packing", choices=PACKINGS, default="one",
                   help="one: the whole programme as one ensemble; by-lambda: a run per lambda")
    g.add_argument("--preset", nargs="+", default=[], metavar="EXPERIMENT",
                   help="loop presets (conf/experiment/...) to estimate as one run each")
    g.add_argument("--steps-per-generation", type=int, default=None,
                   help="override the programme's steps per generation")
    g.add_argument("--gpu", choices=list(GPU_PEAKS_TFLOPS), default="H200")
    g.add_argument("--launch-us", type=float, default=None,
                   help=f"assumed seconds per kernel, in us (default "
                        f"{GpuAssumptions.launch_s * 1e6:g})")
    g.add_argument("--efficiency", type=float, default=None,
                   help=f"assumed share of the bf16 peak reached (default "
                        f"{GpuAssumptions.efficiency:g})")
    g.add_argument("--measure", action="store_true",
                   help="measure step times on this device even if it is not a GPU")


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("launch_us", "efficiency", "steps_per_generation"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.efficiency is not None and args.efficiency > 1:
        p.error(f"--efficiency must be at most 1, got {args.efficiency}")


def programmes(args: argparse.Namespace) -> dict[str, list]:
    """name -> run shapes, for every programme and preset asked for."""
    chosen = args.programme if args.programme is not None else ([] if args.preset
                                                                else list(PROGRAMMES))
    out = {name: v2_programme(PROGRAMMES[name], args.packing, args.steps_per_generation)
           for name in chosen}
    for preset in args.preset:
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose("loop", overrides=[f"experiment={preset}"])
        out[preset] = [shape_from_app(load_app_config(cfg, needs_loop=True), preset)]
    return out


def run_gpu_estimate(args: argparse.Namespace, runtime: RuntimeOptions, command: str,
                     machine: dict) -> dict:
    gpu = GpuAssumptions(
        gpu=args.gpu,
        **({} if args.launch_us is None else {"launch_s": args.launch_us * 1e-6}),
        **({} if args.efficiency is None else {"efficiency": args.efficiency}))
    measure = runtime.device.type == "cuda" or args.measure
    result = {"machine": machine, "command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
              "suite": "gpu-estimate",
              "step_times": "measured on " + machine["device"] if measure else
              "modelled: max(launch_s x kernels per step, FLOPs / (peak x efficiency))",
              "programmes": {}}
    counts = {}
    for name, shapes in programmes(args).items():
        for shape in shapes:
            key = (repr(shape.model), shape.d, shape.k)
            if key not in counts:
                counts[key] = count_kernels(shape.model, shape.d, shape.k)
        measured = ({s.name: measure_step_s(s, runtime) for s in shapes} if measure else None)
        est = estimate_programme(shapes, {s.name: counts[(repr(s.model), s.d, s.k)]
                                          for s in shapes},
                                 gpu, measured)
        result["programmes"][name] = est
        print(f"{name}: {est['minutes']:.1f} min on one {gpu.gpu} "
              f"({est['member_steps']:,} member steps, {est['flops'] / 1e15:.1f} PFLOP, "
              f"{100 * est['share_of_peak']:.2f}% of the bf16 peak)", flush=True)
        for r in est["runs"]:
            print(f"  {r['name']:12s} K = {r['members_first']}/{r['members_later']} "
                  f"(generation 0 / later) in {r['chunks']} ensemble(s): step "
                  f"{r['step_ms_first']:.2f}/{r['step_ms_later']:.2f} ms ({r['bound']}, "
                  f"{r['kernels_per_step']} kernels at K = {r['members_later']}), evaluation "
                  f"and labelling "
                  f"{r['eval_label_s_per_generation']:.1f} s per generation, "
                  f"{r['minutes']:.1f} min", flush=True)
    assumed = next(iter(result["programmes"].values()), {}).get("assumptions", {})
    print("assumed: " + ", ".join(assumed.get("assumed", [])) + f" (launch "
          f"{gpu.launch_s * 1e6:g} us, efficiency {gpu.efficiency:g}, peak "
          f"{gpu.peak_flops() / 1e12:g} TFLOP/s)")
    atomic_write_json(Path(args.out), result)
    print(f"written to {args.out}")
    return result
