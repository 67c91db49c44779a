"""Run K self-consuming loops together, generation by generation, resumably.

Checkpoint layout (`checkpoint_dir`):
    loop.json               what this loop is (settings and members); checked on resume
    gen_003/synthetic.pt    generation 3's labelled synthetic prompts (written before training)
    gen_003/train.pt        mid-training state (resume point inside a generation)
    gen_003/model.pt        the trained generation
    gen_003/metrics.json    written last: its presence marks generation 3 as finished

A loop killed at any moment and started again with the same settings resumes at the last
finished generation (or mid-training checkpoint) and ends with the same numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from icl_stl.config import (
    EvalConfig,
    LoopConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
)
from icl_stl.data.prompts import PromptSet
from icl_stl.data.tasks import make_task
from icl_stl.loop.fidelity import NO_SYNTHETIC, generator_fidelity
from icl_stl.loop.filtering import filter_members, no_filter_record
from icl_stl.loop.held_out import loop_test_sets
from icl_stl.loop.identity import check_checkpoint_identity, member_records, member_settings
from icl_stl.loop.learners import Learner, LearnerContext, make_learner
from icl_stl.loop.metrics import generation_record, log_gate, loop_fields, member_bayes_excess
from icl_stl.loop.mixing import (
    MemberSpec,
    draw_s0,
    real_counterpart,
    real_part,
    synthetic_inputs,
)
from icl_stl.loop.oracle import oracle_synthesize
from icl_stl.loop.plan import GenerationPlan, generation_steps, plan_generations, train_sizes
from icl_stl.loop.progress import (
    group_labels,
    group_metrics,
    member_names,
    risk_line,
)
from icl_stl.persistence import (
    CheckpointSlot,
    CorruptCheckpointError,
    MissingCheckpointError,
    RunLock,
    atomic_write_json,
    load_state,
    read_json,
    save_state,
)
from icl_stl.persistence.faults import fault_point
from icl_stl.persistence.identity import loop_checkpoint_identity
from icl_stl.runs.logger import RunLogger
from icl_stl.runs.provenance import code_provenance
from icl_stl.training.baselines import bayes_optimal_ridge_alpha
from icl_stl.training.engine import DivergenceError, RuntimeOptions
from icl_stl.training.evaluation import baseline_errors, bayes_predictions, summarise

log = logging.getLogger(__name__)

GATE_LINES_PER_LOOP = 8  # up to this many loops, the gate is reported loop by loop

# Hook for probes: (generation, learner, datasets, synthetic) -> extra metrics per member.
ExtraMetrics = Callable[[int, Learner, list[PromptSet], list[PromptSet]], list[dict]]


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


class LoopRun:
    """One execution of K loops; `run()` returns the summary dict written to summary.json."""

    def __init__(self, settings: LoopSettings, members: list[MemberSpec], checkpoint_dir: Path,
                 run_dir: Path | None = None, logger: RunLogger | None = None,
                 extra_metrics: ExtraMetrics | None = None):
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
        self.bayes = (bayes_predictions(settings.task, self.test_set) if self.pool is None
                      else None)
        # Each member's labeller settled (probes build members without one), and the pool.
        members = [dataclasses.replace(m, labeller=m.labelled_by(settings.loop),
                                       pool=self.pool if self.pool is not None else m.pool)
                   for m in members]
        self.members = members
        ctx = LearnerContext(self.task, self.k, settings.model, settings.train, settings.loop,
                             settings.eval, settings.runtime)
        self.learner = make_learner(ctx, members)
        # plans[m][i]: member m's lambda_i and the sizes of its S_i, fixed by the settings.
        self.plans = [plan_generations(settings.loop, m) for m in members]
        self.s0s = [draw_s0(self.task, m, self.k) for m in members]
        self.loop_fields = [loop_fields(m, s0.fingerprint(), settings.loop.init)
                            for m, s0 in zip(members, self.s0s)]
        self._filtered: dict[int, list[dict]] = {}  # generation -> per member: record, index
        specs = [m.describe() for m in members]
        self.names, self.groups = member_names(specs), group_labels(specs)

    def _plans(self, i: int) -> list[GenerationPlan]:
        """Every member's plan of generation i."""
        return [plans[i] for plans in self.plans]

    # -- checkpoint bookkeeping --------------------------------------------------------------
    def gen_dir(self, i: int) -> Path:
        return self.checkpoint_dir / f"gen_{i:03d}"

    def _members(self) -> list[dict]:
        return member_records(self.members, self.s0s, self.s.loop.labeller)

    def _check_identity(self) -> None:
        check_checkpoint_identity(self.checkpoint_dir,
                                  {"settings": self.s.identity(), "members": self._members()})

    def _finished(self, i: int) -> dict | None:
        """Generation i's stored metrics if it finished and its model loads, else None."""
        metrics = self.gen_dir(i) / "metrics.json"
        if not metrics.exists():
            return None
        try:
            load_state(self.gen_dir(i) / "model.pt")
        except (CorruptCheckpointError, MissingCheckpointError) as err:
            log.warning("generation %d is marked finished but its model is unusable (%s); it "
                        "will be recomputed", i, err)
            return None
        return read_json(metrics)

    # -- one generation ----------------------------------------------------------------------
    def _synthetic(self, i: int) -> list[PromptSet]:
        """Generation i's newly labelled synthetic prompts (cached on disk once labelled)."""
        path = self.gen_dir(i) / "synthetic.pt"
        if path.exists():
            try:
                state = load_state(path)
                if "filter" in state:
                    self._filtered[i] = state["filter"]
                return [PromptSet.from_state_dict(s) for s in state["members"]]
            except CorruptCheckpointError as err:
                log.warning("relabelling generation %d: %s", i, err)
        plans = self._plans(i)
        inputs = [synthetic_inputs(self.s.loop, m, plan, self.task, self.k)
                  for m, plan in zip(self.members, plans)]
        labelled, variances = self._label(i, inputs)
        bad = [m for m, s in enumerate(labelled) if not torch.isfinite(s.ys).all()]
        if bad:
            inspect = self.gen_dir(i) / "synthetic.diverged.pt"
            save_state(inspect, {"members": [s.state_dict() for s in labelled]})
            raise DivergenceError(
                f"generation {i}: generation {i - 1} produced non-finite synthetic labels for "
                f"member(s) {bad} (label step, before training step 0); they are saved in "
                f"{inspect} and no finished generation was touched")
        state = {}
        if self.s.loop.filter != "none":
            labelled, state["filter"] = filter_members(self.s.loop, self.s.task, self.task,
                                                       self.members, self.s0s, plans, self.k,
                                                       labelled, variances)
            self._filtered[i] = state["filter"]
        save_state(path, {"members": [s.state_dict() for s in labelled], **state})
        return labelled

    def _label(self, i: int, inputs: list) -> tuple[list[PromptSet], list]:
        """Every member's labelled inputs (and the predicted variances a confidence filter
        ranks by): the learner labels its own loops' prompts, the oracle its controls'."""
        labelled, variances = [None] * len(inputs), [None] * len(inputs)
        oracle = [m for m, member in enumerate(self.members) if member.labeller == "oracle"]
        model = [m for m in range(len(inputs)) if m not in oracle]
        if oracle:
            for m, out in zip(oracle, oracle_synthesize(self.task, [inputs[m] for m in oracle])):
                labelled[m] = out
        if model:
            mine = [inputs[m] for m in model]
            subset = {} if len(model) == len(inputs) else {"members": model}  # else: all
            if self.s.loop.filter == "confidence":  # no oracle member then (config.loop)
                out, var = self.learner.synthesize_with_variance(i, mine, **subset)
            else:
                out, var = self.learner.synthesize(i, mine, **subset), [None] * len(model)
            for m, syn, v in zip(model, out, var):
                labelled[m], variances[m] = syn, v
        return labelled, variances

    def _datasets(self, i: int, history: list[list[PromptSet]]) -> tuple[list, list, list]:
        """(S_i, its real part, the synthetic prompts new at i) of every member."""
        if i == 0:
            return self.s0s, self.s0s, [PromptSet(s.xs[:0], s.ys[:0]) for s in self.s0s]
        new = self._synthetic(i)
        sets, reals = [], []
        for m, member in enumerate(self.members):
            real, _ = real_part(self.s.loop, member, self.s0s[m], self.plans[m][i], self.task,
                                self.k)
            synthetic = (PromptSet.concat(history[m] + [new[m]])
                         if self.s.loop.synthetic == "accumulate" else new[m])
            sets.append(PromptSet.concat([real, synthetic]))
            reals.append(real)
        return sets, reals, new

    def _evaluate(self, i: int, sets, reals, new, train_info: dict, ridge_risk: float,
                  zero_risk: float) -> list:
        # (K, n_test, k) errors and predictions
        test_errors, predictions, calibration = self.learner.test_metrics(self.test_set)
        excess = member_bayes_excess(predictions, self.bayes, self.test_set.d)
        prior_risks = [{} for _ in self.members]
        if self.pool is not None:  # the same learners on the Gaussian prior's tasks
            prior_risks = self.tests.prior_distances(self.learner.predictions(self.tests.prior),
                                                     self.s.task.noise_std, self.ridge_alpha)
        # S_i = concat(real part, synthetic) (`_datasets`): the real risk is a prefix's.
        train_risks, real_risks = self.learner.member_risks(sets, [len(r) for r in reals])
        extra = (self.extra_metrics(i, self.learner, sets, new) if self.extra_metrics
                 else [{}] * len(self.members))
        records = []
        steps = train_info.get("member_steps") or [train_info["steps"]] * len(self.members)
        for m, member in enumerate(self.members):
            plan = self.plans[m][i]
            rec = {"member": m, **member.describe(), **self.loop_fields[m], "generation": i,
                   "real_fraction_i": plan.real_fraction,
                   "n_real": plan.n_real, "n_synthetic_new": plan.n_synthetic,
                   "train_size": len(sets[m]),
                   **generation_record(test_errors[m], train_risks[m], real_risks[m],
                                       ridge_risk, zero_risk, excess[m]),
                   **self._fidelity(i, m, new[m]), **self._filter_record(i, m),
                   **prior_risks[m], **calibration[m],
                   "train_loss": train_info["train_loss"][m], "steps": steps[m],
                   **extra[m]}
            records.append(rec)
        return records

    def _fidelity(self, i: int, m: int, synthetic: PromptSet) -> dict:
        """Member m's generation-i synthetic prompts against real labels of the same x's."""
        if i == 0:
            return dict(NO_SYNTHETIC)
        real = real_counterpart(self.members[m], self.plans[m][i], self.task, self.k)
        if i in self._filtered:  # the kept prompts' real counterparts
            real = real[self._filtered[i][m]["index"].to(real.xs.device)]
        return generator_fidelity(synthetic, real)

    def _filter_record(self, i: int, m: int) -> dict:
        if self.s.loop.filter == "none":
            return {}
        return no_filter_record() if i == 0 else dict(self._filtered[i][m]["record"])

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.checkpoint_dir):
            return self._run_locked()

    def _run_locked(self) -> dict:
        s = self.s
        self._check_identity()
        alpha = self.ridge_alpha
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
        s = self.s
        done = self._finished(i)
        if done is not None:
            log.info("generation %d already finished; loaded from %s", i, self.gen_dir(i))
            # Records written before a loop's labeller, regime, S_0 and pair were recorded gain
            # them (its bayes_excess would need the model's predictions: left out).
            loaded = [{"labeller": self.members[r["member"]].labeller,
                       **self.loop_fields[r["member"]], **r} for r in done["records"]]
            all_records += loaded
            self._log_generation(i, loaded)  # if a kill came before it was logged
            if i < s.loop.generations:  # later generations need it to label and warm-start
                if i > 0:  # read (or relabel) with generation i-1 still loaded
                    for m, syn in enumerate(self._synthetic(i)):
                        history[m].append(syn)
                self.learner.load_state_dict(load_state(self.gen_dir(i) / "model.pt"))
            return None
        start = time.perf_counter()
        self.gen_dir(i).mkdir(parents=True, exist_ok=True)
        bar.set_postfix_str(f"generation {i}: labelling" if i else "generation 0: data")
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
        info = self.learner.fit(i, sets, CheckpointSlot(self.gen_dir(i), "train"), on_log)
        bar.set_postfix_str(f"generation {i}: evaluating")
        records = self._evaluate(i, sets, reals, new, info, ridge_risk, zero_risk)
        if i == 0:
            log_gate(records, self.groups, GATE_LINES_PER_LOOP)
        save_state(self.gen_dir(i) / "model.pt", self.learner.state_dict())
        atomic_write_json(self.gen_dir(i) / "metrics.json", {"records": records})
        fault_point("generation_end")
        # the finished model supersedes the resume points (one per step count: `fit`)
        for f in self.gen_dir(i).glob("train*.pt"):
            f.unlink(missing_ok=True)
        for m in range(len(self.members)):
            if i > 0:
                history[m].append(new[m])
        timings.append({"generation": i, "seconds": time.perf_counter() - start,
                        "trained_members": info.get("trained_members", len(self.members))})
        all_records += records
        self._log_generation(i, records)
        return records

    def _log_generation(self, i: int, records: list[dict]) -> None:
        """Each loop's scalars (to its own W&B run, see `RunLogger.open_member_runs`) and, for
        several loops, the job's per-group median [min, max] of the test risk; once per
        generation across kills (`RunLogger.log_generation`)."""
        if self.logger is None:
            return
        # What identifies a loop is in its run's config, not a metric.
        skip = {"generation", "member", *self.members[0].describe()}
        self.logger.log_generation(
            i, [{f"gen/{k}": v for k, v in rec.items()
                 if isinstance(v, (int, float)) and k not in skip} for rec in records],
            job=group_metrics([r["test_risk"] for r in records], self.groups, "gen/test_risk")
            if len(records) > 1 else None)

    def _summary(self, records: list[dict], base: dict, alpha: float, timings: list,
                 base_prior: dict | None = None) -> dict:
        summary = {
            "members": self._members(),
            "generations": records,
            "baselines": {name: summarise(err) for name, err in base.items()},
            **({} if base_prior is None else {
                "baselines_prior": {name: summarise(err) for name, err in base_prior.items()}}),
            "ridge_alpha": alpha,
            "settings": self.s.identity(),
            "checkpoint_dir": str(self.checkpoint_dir),
            "code": code_provenance(),
        }
        if self.run_dir is not None:
            # Wall times differ between runs; they go beside, not into, summary.json.
            atomic_write_json(self.run_dir / "timing.json", {"generations": timings})
        return summary
