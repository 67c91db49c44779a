"""The benchmark that matters: time to ridge of the default recipe against Garg et al.'s.

Each recipe is a list of Hydra overrides on `conf/train.yaml`, so what is timed is exactly what
`icl-stl-train` runs with the same overrides. Each case is a model and a prompt shape, trained on
fresh prompts and on a finite S_0 of n = 2,000. Garg et al.'s recipe (Adam 1e-4, batch 64, no
schedule, PyTorch's default read-in/read-out initialisation; no curriculum, which a finite S_0
cannot use) runs in the same process, one after the other, so the two share the machine's state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from icl_stl.config import AppConfig, parse_app_config
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.ridge_time import TimeToRidge, ridge_target, time_to_ridge

log = logging.getLogger(__name__)

# Model and prompt shape of each case. "demo" is the demo's setting (tiny at d = 2, k = 6).
CASES: dict[str, list[str]] = {
    "demo": ["model=tiny", "task.d=2", "task.k=6"],
    "tiny": ["model=tiny", "task.d=5", "task.k=11"],
    "small": ["model=small", "task.d=5", "task.k=11"],
}
DATA: dict[str, list[str]] = {"fresh": ["data.n=null"], "n2000": ["data.n=2000"]}

GARG = ["train=garg", "train.curriculum.enabled=false", "train.steps=1000000",
        "model.init=torch_default", "model.gaussian_head=false"]
MSE = ["model.gaussian_head=false"]  # the squared-error learner (no Gaussian head)
RECIPES: dict[str, list[str]] = {"default": [], "garg": GARG}

# What each change of the default recipe buys, from Garg et al.'s recipe one change at a time
# (cumulative), on the demo case with fresh prompts, for the squared-error learner.
ABLATION: list[tuple[str, list[str]]] = [
    ("Garg et al.: Adam 1e-4, batch 64, constant", GARG),
    ("+ AdamW lr 1e-3, 100 warm-up steps, clipping at 1",
     [*GARG, "train.optimizer=adamw", "train.lr=1e-3", "train.warmup_steps=100",
      "train.grad_clip=1.0"]),
    ("+ batch 128", [*GARG, "train.optimizer=adamw", "train.lr=1e-3", "train.warmup_steps=100",
                     "train.grad_clip=1.0", "train.batch_size=128"]),
    ("+ cosine decay over 5,000 steps (the default recipe)", MSE),
    ("default recipe, GPT-2 initialisation of read-in/read-out", [*MSE, "model.init=gpt2"]),
    ("default recipe, 2 heads instead of 4", [*MSE, "model.n_head=2"]),
]

# The generator's Gaussian head against the squared-error learner, on the default recipe: does
# its mean still reach ridge, and how fast, with each loss (icl_stl/training/losses.py)?
HEAD: list[tuple[str, list[str]]] = [
    ("squared error, no head", MSE),
    ("Gaussian head, beta-NLL beta = 1", ["model.gaussian_head=true", "train.nll_beta=1.0"]),
    ("Gaussian head, beta-NLL beta = 0.5 (the default)", ["model.gaussian_head=true",
                                                           "train.nll_beta=0.5"]),
    ("Gaussian head, plain NLL (beta = 0)", ["model.gaussian_head=true", "train.nll_beta=0.0"]),
]


def compose_app(config_dir: str, overrides: list[str], primary: str = "train") -> AppConfig:
    """conf/<primary>.yaml with `overrides`, validated into typed settings."""
    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        cfg = compose(primary, overrides=overrides)
    return parse_app_config(OmegaConf.to_container(cfg, resolve=True),
                            needs_loop=primary == "loop")


def run_case(config_dir: str, overrides: list[str], *, seed: int, eval_every: int,
             max_seconds: float, runtime: RuntimeOptions) -> TimeToRidge:
    app = compose_app(config_dir, [*overrides, f"seed={seed}"])
    target = ridge_target(app.task, eval_prompts=1000, seed=seed)
    return time_to_ridge(app.model, app.task, app.train, n=app.data.n, seed=seed, target=target,
                         eval_every=eval_every, max_seconds=max_seconds, runtime=runtime)


def row(result: TimeToRidge, **labels) -> dict:
    return {**labels, **dataclasses.asdict(result)}  # curve tuples are written as JSON lists


def bench_time_to_ridge(config_dir: str, cases: list[str], caps: dict[str, float], *,
                        seeds: list[int], eval_every: dict[str, int], runtime: RuntimeOptions,
                        report: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Every case x data x recipe x seed, the default recipe and Garg's back to back."""
    rows = []
    for case in cases:
        for data, data_overrides in DATA.items():
            for seed in seeds:
                for recipe, recipe_overrides in RECIPES.items():
                    result = run_case(config_dir, [*CASES[case], *data_overrides,
                                                   *recipe_overrides],
                                      seed=seed, eval_every=eval_every[case],
                                      max_seconds=caps[case], runtime=runtime)
                    rows.append(row(result, case=case, data=data, recipe=recipe, seed=seed,
                                    cap_s=caps[case]))
                    report(rows[-1])
    return rows


def bench_ablation(config_dir: str, *, seeds: list[int], cap_s: float, eval_every: int,
                   runtime: RuntimeOptions, changes: list[tuple[str, list[str]]] = ABLATION,
                   case: str = "demo",
                   report: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Each (label, overrides) of `changes` on `case` with fresh prompts, seed by seed."""
    rows = []
    for label, overrides in changes:
        for seed in seeds:
            result = run_case(config_dir, [*CASES[case], *DATA["fresh"], *overrides],
                              seed=seed, eval_every=eval_every, max_seconds=cap_s,
                              runtime=runtime)
            rows.append(row(result, change=label, case=case, seed=seed, cap_s=cap_s))
            report(rows[-1])
    return rows


def bench_warm_start(config_dir: str, *, seeds: list[int], cap_s: float, eval_every: int,
                     runtime: RuntimeOptions, n: int = 10_000, real_fraction: float = 0.5,
                     overrides: tuple[str, ...] = (),
                     report: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Generation 1 of a loop warm-started from generation 0 (demo setting, the loop's default
    settings otherwise), trained for its whole budget: the first step it passes the gate and
    where it settles. n is large enough for generation 0 to pass the gate."""
    from icl_stl.loop.warm_start import warm_start_time_to_ridge

    rows = []
    for seed in seeds:
        app = compose_app(config_dir, [*CASES["demo"], f"data.n={n}", f"seed={seed}",
                                       f"loop.real_fraction={real_fraction}", *overrides],
                          primary="loop")
        target = ridge_target(app.task, eval_prompts=1000, seed=seed)
        out = warm_start_time_to_ridge(app.task, app.model, app.train, app.loop, n=n,
                                       real_fraction=real_fraction, seed=seed, target=target,
                                       eval_every=eval_every, max_seconds=cap_s,
                                       runtime=runtime)
        generation_1 = out.pop("generation_1")
        rows.append({"case": "demo", "n": n, "real_fraction": real_fraction, "seed": seed,
                     "cap_s": cap_s if math.isfinite(cap_s) else None,  # None: no time cap
                     "loop_steps": app.loop.steps or app.train.steps,
                     "loop_warmup_steps": app.loop.warmup_steps, "label_mode": app.loop.label_mode,
                     **out, **generation_1})
        report(rows[-1])
    return rows


def describe(r: dict) -> str:
    """One line per result, for the console."""
    if "generation_0_risk" in r:
        return describe_warm_start(r)
    what = " ".join(str(r[key]) for key in ("case", "data", "recipe", "change") if key in r)
    if r["reached"]:
        return (f"{what} seed {r['seed']}: ridge in {r['steps']} steps, {r['seconds']:.1f} s "
                f"(risk {r['final_risk']:.3f}, threshold {r['threshold']:.3f})")
    return (f"{what} seed {r['seed']}: not reached in {r['steps_run']} steps, "
            f"{r['seconds_run']:.1f} s (best {r['best_risk']:.3f}, threshold "
            f"{r['threshold']:.3f}, gap closed {r['gap_closed']:.2f})")


def describe_warm_start(r: dict) -> str:
    first = (f"first passes the gate at step {r['steps']} ({r['seconds']:.1f} s)" if r["reached"]
             else "never passes the gate")
    return (f"warm start (n {r['n']}, lambda {r['real_fraction']}, seed {r['seed']}): generation"
            f" 0 risk {r['generation_0_risk']:.3f} (gap closed "
            f"{r['generation_0_gap_closed']:.2f}); generation 1 {first}, ends at "
            f"{r['final_risk']:.3f} after {r['steps_run']} steps (gap closed "
            f"{r['gap_closed']:.2f}, threshold {r['threshold']:.3f})")
