"""Time to ridge: how many steps and seconds a training recipe needs to pass the training gate.

The gate (`icl_stl.training.gate`) asks that test risk close 90% of the zero-to-ridge gap on fresh
prompts. This module trains one learner with the real training code and evaluates it every
`eval_every` steps on a fixed held-out set, stopping at the first evaluation that passes. Seconds
count training only: each evaluation's time is measured and taken out, so a finer evaluation
grid does not make a recipe look slower.

    target = ridge_target(task, k, eval_prompts=1000, seed=0)
    result = time_to_ridge(model_cfg, task_cfg, train_cfg, n=None, seed=0, target=target)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from icl_stl.config import ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import derive_seed, make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.training.baselines import bayes_optimal_ridge_alpha
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble
from icl_stl.training.evaluation import baseline_errors, model_errors
from icl_stl.training.gate import RIDGE_TOLERANCE, gap_closed


@dataclass
class RidgeTarget:
    """The held-out set and the risks that define the gate on it."""

    prompts: PromptSet
    zero_risk: float
    ridge_risk: float

    @property
    def threshold(self) -> float:
        """The highest test risk that passes: ridge + 10% of the zero-to-ridge gap."""
        return self.ridge_risk + RIDGE_TOLERANCE * (self.zero_risk - self.ridge_risk)


def ridge_target(task_cfg: TaskConfig, eval_prompts: int = 1000, seed: int = 0) -> RidgeTarget:
    """Fresh held-out prompts (their own seed stream) and the zero and ridge risks on them."""
    task = make_task(task_cfg)
    prompts = sample_prompts(task, eval_prompts, task_cfg.k, make_generator(seed, "ridge-target"))
    alpha = bayes_optimal_ridge_alpha(task_cfg.noise_std, task_cfg.w_scale)
    errors = baseline_errors(prompts, ["zero", "ridge"], ridge_alpha=alpha, knn_neighbours=1)
    return RidgeTarget(prompts, errors["zero"].mean().item(), errors["ridge"].mean().item())


@dataclass
class TimeToRidge:
    """Outcome of one timed training run."""

    reached: bool
    steps: int | None  # first evaluated step that passed (None: never within the budget)
    seconds: float | None  # training seconds up to that step, evaluations excluded
    steps_run: int
    seconds_run: float
    final_risk: float
    best_risk: float
    gap_closed: float  # of the final evaluation
    zero_risk: float
    ridge_risk: float
    threshold: float
    eval_seconds: float  # total time spent evaluating (not in `seconds`)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (step, s, risk)


class StopTraining(Exception):
    """Raised from a logging hook to end training early (the gate passed or time ran out)."""


class GateMonitor:
    """A logging hook that evaluates a learner on the target's prompts and stops training at
    the first evaluation that passes the gate (or once `max_seconds` of training have passed).

    `risk_of()` returns the learner's current test risk; the hook times itself, so the seconds
    it records are training seconds only. Call `result()` after training."""

    def __init__(self, risk_of, target: RidgeTarget, max_seconds: float = float("inf"),
                 stop_at_ridge: bool = True):
        self.risk_of, self.target = risk_of, target
        self.max_seconds, self.stop_at_ridge = max_seconds, stop_at_ridge
        self.curve: list[tuple[int, float, float]] = []
        self.start, self.eval_seconds = time.perf_counter(), 0.0
        self.reached: tuple[int, float] | None = None

    def __call__(self, record: dict) -> None:
        began = time.perf_counter()
        seconds = began - self.start - self.eval_seconds  # training time so far
        risk = self.risk_of()
        self.eval_seconds += time.perf_counter() - began
        self.curve.append((record["step"], seconds, risk))
        if risk <= self.target.threshold and self.reached is None:
            self.reached = (record["step"], seconds)
            if self.stop_at_ridge:
                raise StopTraining
        if seconds >= self.max_seconds:
            raise StopTraining

    def result(self) -> TimeToRidge:
        target, curve = self.target, self.curve
        final_step, final_seconds, final_risk = curve[-1] if curve else (0, 0.0, float("nan"))
        return TimeToRidge(
            reached=self.reached is not None, steps=self.reached and self.reached[0],
            seconds=None if self.reached is None else self.reached[1], steps_run=final_step,
            seconds_run=final_seconds, final_risk=final_risk,
            best_risk=min((r for _, _, r in curve), default=float("nan")),
            gap_closed=gap_closed(final_risk, target.ridge_risk, target.zero_risk),
            zero_risk=target.zero_risk, ridge_risk=target.ridge_risk,
            threshold=target.threshold, eval_seconds=self.eval_seconds, curve=curve)


def time_to_ridge(model_cfg: ModelConfig, task_cfg: TaskConfig, train_cfg: TrainConfig, *,
                  n: int | None, seed: int, target: RidgeTarget, eval_every: int = 100,
                  max_seconds: float = float("inf"), stop_at_ridge: bool = True,
                  runtime: RuntimeOptions | None = None) -> TimeToRidge:
    """Train one learner (fresh prompts when `n` is None, else a finite S_0 of n prompts) for at
    most `train_cfg.steps` steps and `max_seconds` training seconds; evaluate every `eval_every`
    steps. The schedule is the recipe's own: it is laid over `train_cfg.steps` whether or not
    the run stops early, exactly as a run of that recipe would train."""
    runtime = runtime or RuntimeOptions()
    task = make_task(task_cfg)
    k = task_cfg.k
    s0 = None if n is None else sample_prompts(task, n, k, make_generator(seed, "S0"))
    ensemble = build_ensemble(model_cfg, task.d, k, [make_generator(seed, "init", 0)])
    member = MemberData(derive_seed(seed, "batches", 0), s0)
    cfg = replace(train_cfg, log_every=eval_every, checkpoint_every=0)
    monitor = GateMonitor(
        lambda: model_errors(ensemble, target.prompts, len(target.prompts),
                             runtime)[0].mean().item(),
        target, max_seconds, stop_at_ridge)
    try:
        train_ensemble(ensemble, [member], task, k, cfg, runtime, on_log=monitor,
                       description="time to ridge")
    except StopTraining:
        pass
    return monitor.result()
