"""Run K self-consuming loops together, generation by generation, resumably.

Each generation is checkpointed under `checkpoint_dir` (layout: icl_stl/loop/checkpoints.py). A
loop killed at any moment and started again with the same settings resumes at the last
finished generation (or mid-training checkpoint) and ends with the same numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from icl_stl.config import (
    EvalConfig,
    LoopConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
)
from icl_stl.config.loop import ACCUMULATES, KEEPS_S0
from icl_stl.data.prompts import PromptSet
from icl_stl.data.tasks import make_task
from icl_stl.loop.checkpoints import LoopCheckpoints
from icl_stl.loop.early_stopping import STOPPING_FILE, early_stopping_splits
from icl_stl.loop.held_out import loop_test_sets
from icl_stl.loop.hooks import ExtraMetrics
from icl_stl.loop.identity import member_settings
from icl_stl.loop.learners import LearnerContext, make_learner
from icl_stl.loop.metrics import log_gate, loop_fields
from icl_stl.loop.mixing import (
    MemberSpec,
    draw_s0,
    real_part,
)
from icl_stl.loop.plan import GenerationPlan, generation_steps, plan_generations, train_sizes
from icl_stl.loop.progress import (
    group_labels,
    member_names,
    risk_line,
)
from icl_stl.loop.records import LoopRecords
from icl_stl.loop.synthesis import LoopSynthesis
from icl_stl.loop.timing import PhaseTimer, TimedSlot
from icl_stl.persistence import RunLock, atomic_write_json, save_state
from icl_stl.persistence.faults import fault_point
from icl_stl.persistence.identity import loop_checkpoint_identity
from icl_stl.runs.logger import RunLogger
from icl_stl.training.baselines import bayes_optimal_ridge_alpha
from icl_stl.training.early_stopping import EarlyStopping
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.evaluation import baseline_errors, bayes_predictions

log = logging.getLogger(__name__)

GATE_LINES_PER_LOOP = 8  # up to this many loops, the gate is reported loop by loop

@dataclass
class LoopSettings:
    task: TaskConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    loop: LoopConfig
    seed: int = 0
    runtime: RuntimeOptions = dataclasses.field(default_factory=RuntimeOptions)

    def steps_before(self, generation: int, sizes: list[list[int]] | None = None,
                     ns: list[int] | None = None) -> int:
        """Optimizer steps of generations 0..generation-1: the offset of `train/global_step`
        (the rule of `TransformerLearner.fit`: loop.steps, if set, from generation 1 on). With
        loop.steps_scale=per_prompt, each generation counts its longest member's steps, given
        every member's |S_i| (`sizes[member][i]`) and n (`ns`)."""
        if self.loop.steps_scale == "per_prompt" and sizes is not None and ns is not None:
            return sum(max(generation_steps(self.loop, self.train, g, n, size[g])
                           for n, size in zip(ns, sizes)) for g in range(generation))
        later = self.loop.steps if self.loop.steps is not None else self.train.steps
        return 0 if generation == 0 else self.train.steps + (generation - 1) * later

    def identity(self) -> dict:
        """What must match for a checkpoint to be resumed (the generation count may grow)."""
        return loop_checkpoint_identity(self.task, self.model, self.train, self.eval,
                                        self.loop, self.seed)


class LoopRun(LoopCheckpoints, LoopRecords, LoopSynthesis):
    """One execution of K loops; `run()` returns the summary dict written to summary.json."""

    def __init__(self, settings: LoopSettings, members: list[MemberSpec], checkpoint_dir: Path,
                 run_dir: Path | None = None, logger: RunLogger | None = None,
                 extra_metrics: ExtraMetrics | None = None):
        self._started = time.perf_counter()
        # The run's own phases; `self.clock` is a trained generation's timer while it runs.
        self.run_clock = self.clock = PhaseTimer()
        with self.run_clock.phase("setup"):
            self._setup(settings, members, checkpoint_dir, run_dir, logger, extra_metrics)

    def _setup(self, settings: LoopSettings, members: list[MemberSpec], checkpoint_dir: Path,
               run_dir: Path | None, logger: RunLogger | None,
               extra_metrics: ExtraMetrics | None) -> None:
        self.s, self.members = settings, members
        self.checkpoint_dir, self.run_dir = Path(checkpoint_dir), run_dir
        self.logger, self.extra_metrics = logger, extra_metrics
        self.task = make_task(settings.task)
        self.k = settings.task.k
        # One test set for all members: lambdas and seeds are compared on the same prompts.
        # With task.n_tasks, one pool for the run, shared by every member (`test_sets`).
        self.tests = loop_test_sets(self.task, settings.task, settings.eval.n_prompts, self.k,
                                    settings.seed)
        self.test_set, self.pool = self.tests.test, self.tests.pool
        self.ridge_alpha = (settings.eval.ridge_alpha if settings.eval.ridge_alpha is not None
                            else bayes_optimal_ridge_alpha(settings.task.noise_std,
                                                           settings.task.w_scale))
        # f_Bayes on the test set, for every generation's bayes_excess. With a task pool the
        # test prompts' tasks come from the pool, whose Bayes predictor is not ridge: none.
        with self.run_clock.phase("baselines"):
            self.bayes = (bayes_predictions(settings.task, self.test_set) if self.pool is None
                          else None)
        # Each member's labeller settled (probes build members without one), and the pool.
        members = [dataclasses.replace(m, labeller=m.labelled_by(settings.loop),
                                       pool=self.pool if self.pool is not None else m.pool)
                   for m in members]
        self.members = members
        loop_cfg = settings.loop
        self.held_out = early_stopping_splits(settings, members, self.task, self.k)
        if self.held_out is not None:  # each member's own model is snapshotted: no sharing
            loop_cfg = dataclasses.replace(loop_cfg, share_generation_0=False)
        ctx = LearnerContext(self.task, self.k, settings.model, settings.train, loop_cfg,
                             settings.eval, settings.runtime)
        self.learner = make_learner(ctx, members)
        # plans[m][i]: member m's lambda_i and the sizes of its S_i, fixed by the settings.
        self.plans = [plan_generations(settings.loop, m) for m in members]
        self.s0s = ([draw_s0(self.task, m, self.k) for m in members] if self.held_out is None
                    else [split.train for split in self.held_out])
        self.loop_fields = [loop_fields(m, s0.fingerprint(), settings.loop.init)
                            for m, s0 in zip(members, self.s0s)]
        self._filtered: dict[int, list[dict]] = {}  # generation -> per member: record, index
        specs = [m.describe() for m in members]
        self.names, self.groups = member_names(specs), group_labels(specs)

    def _plans(self, i: int) -> list[GenerationPlan]:
        """Every member's plan of generation i."""
        return [plans[i] for plans in self.plans]

    # -- one generation ----------------------------------------------------------------------
    def _datasets(self, i: int, history: list[list[PromptSet]]) -> tuple[list, list, list]:
        """(S_i, its real part, the synthetic prompts new at i) of every member."""
        if i == 0:
            return self.s0s, self.s0s, [PromptSet(s.xs[:0], s.ys[:0]) for s in self.s0s]
        new = self._synthetic(i)
        sets, reals = [], []
        arm = self.s.loop.synthetic
        for m, member in enumerate(self.members):
            real = (self.s0s[m] if arm in KEEPS_S0 else  # S_0 whole (lambda = 0: config.loop)
                    real_part(self.s.loop, member, self.s0s[m], self.plans[m][i], self.task,
                              self.k)[0])
            synthetic = PromptSet.concat(history[m] + [new[m]]) if arm in ACCUMULATES else new[m]
            sets.append(PromptSet.concat([real, synthetic]))
            reals.append(real)
        return sets, reals, new

    def _real_sizes(self, i: int, reals: list[PromptSet]) -> dict:
        """`fit`'s `real_sizes` (each S_i's real prefix, which `loop.real_weight` weighs) from
        generation 1 on; nothing without a real weight (S_0 is all real)."""
        if self.s.loop.real_weight is None or i == 0:
            return {}
        return {"real_sizes": [len(r) for r in reals]}

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.checkpoint_dir):
            return self._run_locked()

    def _run_locked(self) -> dict:
        s = self.s
        self._check_identity()
        alpha = self.ridge_alpha
        with self.run_clock.phase("baselines"):
            base = baseline_errors(self.test_set, s.eval.baselines, ridge_alpha=alpha,
                                   knn_neighbours=s.eval.knn_neighbours)
            pool_base, base_prior = self.tests.pool_baselines(s.task.noise_std, alpha)
            base.update(pool_base)  # dmmse, with a task pool
            # The training gate needs ridge and zero whether or not eval.baselines lists them.
            missing = [name for name in ("ridge", "zero") if name not in base]
            gate_base = {**base, **baseline_errors(self.test_set, missing, ridge_alpha=alpha,
                                                   knn_neighbours=1)}
        ridge_risk = gate_base["ridge"].mean().item()
        zero_risk = gate_base["zero"].mean().item()
        history: list[list[PromptSet]] = [[] for _ in self.members]
        all_records: list[dict] = []
        timings = []
        if self.logger is not None:
            self.logger.open_member_runs(
                self.names, [{"index": m, **spec.describe()} for m, spec in enumerate(self.members)],
                [member_settings(spec) for spec in self.members])
        # Silent off a terminal (disable=None); the phase shows what a long generation is doing.
        bar = tqdm(total=s.loop.generations + 1, desc="generations", unit="gen", disable=None,
                   leave=False)
        try:
            for i in range(s.loop.generations + 1):
                records = self._generation(i, history, all_records, timings, ridge_risk,
                                           zero_risk, bar)
                bar.update(1)
                if records is not None:
                    log.info("generation %d/%d: %s", i, s.loop.generations,
                             risk_line([r["test_risk"] for r in records], self.groups))
        finally:
            bar.close()
        return self._summary(all_records, base, alpha, timings, base_prior)

    def _generation(self, i: int, history: list[list[PromptSet]], all_records: list[dict],
                    timings: list, ridge_risk: float, zero_risk: float,
                    bar: tqdm) -> list[dict] | None:
        """Run (or load) generation i; return its records, or None when it was loaded."""
        with self.run_clock.phase("resume"):
            if i == 0:
                self.resume_at = self._resume_point()
            if i <= self.resume_at:
                self._resume(i, history, all_records)
                return None
        return self._train_generation(i, history, all_records, timings, ridge_risk, zero_risk,
                                      bar)

    def _train_generation(self, i: int, history: list[list[PromptSet]], all_records: list[dict],
                          timings: list, ridge_risk: float, zero_risk: float,
                          bar: tqdm) -> list[dict]:
        s = self.s
        start = time.perf_counter()
        clock = self.clock = PhaseTimer()
        self.gen_dir(i).mkdir(parents=True, exist_ok=True)
        bar.set_postfix_str(f"generation {i}: labelling" if i else "generation 0: data")
        with clock.phase("data"):  # labelling and its checkpoint nest inside
            sets, reals, new = self._datasets(i, history)
        on_log = None
        if self.logger is not None:
            offset = s.steps_before(i, [train_sizes(s.loop, p) for p in self.plans],
                                    [m.n for m in self.members])

            def on_log(rec: dict) -> None:
                self.logger.log_metrics(
                    {"train/step": rec["step"], "train/global_step": offset + rec["step"],
                     "generation": i, "train/lr": rec["lr"]},
                    members=[{"train/loss": loss} for loss in rec["loss"]])
        bar.set_postfix_str(f"generation {i}: training")
        stopping = None
        if self.held_out is not None:
            stopping = EarlyStopping([h.held_out for h in self.held_out], s.eval.batch_size,
                                     s.runtime, self.gen_dir(i) / STOPPING_FILE,
                                     {"generation": i, "held_out": [h.held_out.fingerprint()
                                                                    for h in self.held_out]})
            on_log = stopping.callback(lambda: self.learner.ensemble, on_log)
        with clock.phase("training"):  # its mid-training checkpoints count as checkpoints
            info = self.learner.fit(i, sets, TimedSlot(self.gen_dir(i), "train", clock), on_log,
                                    **self._real_sizes(i, reals))
            if stopping is not None:
                stopping.restore(self.learner.ensemble)
                info["early_stopping"] = [{**h.record(), **r} for h, r in
                                          zip(self.held_out, stopping.records())]
        bar.set_postfix_str(f"generation {i}: evaluating")
        with clock.phase("evaluation"):
            records = self._evaluate(i, sets, reals, new, info, ridge_risk, zero_risk)
        if i == 0:
            log_gate(records, self.groups, GATE_LINES_PER_LOOP)
        with clock.phase("checkpoints"):
            save_state(self.gen_dir(i) / "model.pt", self.learner.state_dict())
            atomic_write_json(self.gen_dir(i) / "metrics.json", {"records": records})
        fault_point("generation_end")
        # the finished model supersedes the resume points (one per step count: `fit`)
        for f in [*self.gen_dir(i).glob("train*.pt"), self.gen_dir(i) / STOPPING_FILE,
                  self.gen_dir(i) / (STOPPING_FILE + ".prev")]:
            f.unlink(missing_ok=True)
        for m in range(len(self.members)):
            if i > 0:
                history[m].append(new[m])
        timings.append({"generation": i, "seconds": time.perf_counter() - start,
                        "trained_members": info.get("trained_members", len(self.members)),
                        "phases": clock.record()})
        self.clock = self.run_clock
        all_records += records
        self._log_generation(i, records)
        return records
