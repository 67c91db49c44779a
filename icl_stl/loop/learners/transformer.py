"""The transformer learner: an ensemble of in-context learners, one member per loop, that
trains on each generation's S_i and labels synthetic prompts with its own predictions."""

from __future__ import annotations

import dataclasses
import logging

from torch import Tensor

from icl_stl.config import EvalConfig, LoopConfig, ModelConfig, TrainConfig  # noqa: F401
from icl_stl.data.prompts import PromptSet, pad_stack
from icl_stl.data.seeding import derive_seed, make_generator
from icl_stl.loop.labelling import label
from icl_stl.loop.learners.base import Learner, LearnerContext
from icl_stl.loop.mixing import MemberSpec, SyntheticInputs
from icl_stl.loop.plan import generation_steps
from icl_stl.models import build_ensemble
from icl_stl.models.ensemble import Ensemble
from icl_stl.persistence import CheckpointSlot
from icl_stl.training.engine import MemberData, train_ensemble
from icl_stl.training.evaluation import (
    head_calibration,
    model_errors,
    predict,
    predict_distribution,
    stack_sets,
)
from icl_stl.training.losses import squared_error

log = logging.getLogger(__name__)


class TransformerLearner(Learner):
    def __init__(self, ctx: LearnerContext, members: list[MemberSpec]):
        super().__init__(ctx, members)
        self.ensemble = self._fresh(0)
        self._untouched = True  # self.ensemble is generation 0's initialisation as built

    def _fresh(self, generation: int, members: list[MemberSpec] | None = None) -> Ensemble:
        gens = [make_generator(m.seed, "init", generation) for m in members or self.members]
        return build_ensemble(self.ctx.model, self.ctx.task.d, self.ctx.k,
                              gens).to(self.ctx.runtime.device)

    def training_key(self, i: int, generation: int, dataset: PromptSet) -> tuple:
        """Everything member i's training at `generation` depends on besides the shared settings:
        its initialisation and batch (and dropout) streams, and its data."""
        member = self.members[i]
        return (derive_seed(member.seed, "init", generation), member.batch_seed(generation),
                tuple(dataset.xs.shape), tuple(dataset.ys.shape), dataset.fingerprint())

    def distinct(self, generation: int, datasets: list[PromptSet]) -> tuple[list[int], list[int]]:
        """(unique, index): the first member of each group with equal `training_key`, and for
        every member the position of its group in `unique`."""
        first: dict[tuple, int] = {}
        unique, index = [], []
        for i, s in enumerate(datasets):
            key = self.training_key(i, generation, s)
            if key not in first:
                first[key] = len(unique)
                unique.append(i)
            index.append(first[key])
        return unique, index

    def _share(self, generation: int, datasets: list[PromptSet],
               checkpoint: CheckpointSlot | None, plain: dict) -> tuple[list, list, dict] | None:
        """Generation 0 trains each distinct member once (`loop.share_generation_0`): the
        (unique, index, checkpoint identity) to do so, or None to train every member."""
        if generation != 0:
            return None
        unique, index = self.distinct(generation, datasets)
        if len(unique) == len(datasets):
            return None
        identity = {**plain, "data": [datasets[u].fingerprint() for u in unique],
                    "shared": {"members": unique, "of": len(datasets)}}
        # A mid-training checkpoint is resumed the way it was written, whatever the setting now
        # (the numbers are the same either way).
        stored = None
        if checkpoint is not None and checkpoint.exists():
            loaded = checkpoint.load_latest()
            stored = None if loaded is None else loaded[0].get("identity")
        if stored == plain:
            return None
        if stored == identity or self.ctx.loop.share_generation_0:
            return unique, index, identity
        return None

    def member_steps(self, generation: int, datasets: list[PromptSet]) -> list[int]:
        """Each member's optimizer steps at `generation` (`plan.generation_steps`: with
        loop.steps_scale=per_prompt, proportional to the size of its S_i)."""
        return [generation_steps(self.ctx.loop, self.ctx.train, generation, member.n, len(s))
                for member, s in zip(self.members, datasets)]

    def fit(self, generation, datasets, checkpoint, on_log=None, real_sizes=None) -> dict:
        steps = self.member_steps(generation, datasets)
        if len(set(steps)) == 1:
            return self._fit(generation, datasets, checkpoint, on_log, steps[0], real_sizes)
        # One ensemble trains every member for one step count: members whose counts differ
        # (loop.steps_scale=per_prompt with several m) train as one ensemble per count, each
        # with its own resume point. A member's numbers do not depend on its ensemble.
        fresh = generation > 0 and self.ctx.loop.init == "from_scratch"
        self._untouched = False
        full = self._fresh(generation) if fresh else self.ensemble
        losses = [0.0] * len(datasets)
        info = {"bad_steps": 0, "trained_members": 0}
        for count in sorted(set(steps)):
            group = [m for m, c in enumerate(steps) if c == count]
            part = TransformerLearner.__new__(TransformerLearner)
            Learner.__init__(part, self.ctx, [self.members[m] for m in group])
            part.ensemble = (part._fresh(generation) if fresh else full.select(group))
            part._untouched = False
            slot = (None if checkpoint is None
                    else CheckpointSlot(checkpoint.directory, f"{checkpoint.name}-{count}steps"))
            log_fn = None
            if on_log is not None:  # the other members' losses are None (not logged)
                def log_fn(record: dict, group=group) -> None:
                    loss = [None] * len(datasets)
                    for j, m in enumerate(group):
                        loss[m] = record["loss"][j]
                    on_log({**record, "loss": loss})
            out = part._fit(generation, [datasets[m] for m in group], slot, log_fn, count,
                            None if real_sizes is None else [real_sizes[m] for m in group])
            for j, m in enumerate(group):
                full.load_member_(m, part.ensemble.member(j))
                losses[m] = out["train_loss"][j]
            info["bad_steps"] += out["bad_steps"]
            info["trained_members"] += out["trained_members"]
        self.ensemble = full
        return {"train_loss": losses, "steps": max(steps), "member_steps": steps, **info}

    def _fit(self, generation, datasets, checkpoint, on_log, steps: int,
             real_sizes: list[int] | None = None) -> dict:
        ctx = self.ctx
        fresh = (generation == 0 and not self._untouched) or (
            generation > 0 and ctx.loop.init == "from_scratch")
        self._untouched = False
        # generations >= 1 (warm-started or not) have their own budget and warm-up
        later = generation > 0
        warmup = (ctx.loop.warmup_steps if later and ctx.loop.warmup_steps is not None
                  else ctx.train.warmup_steps)
        train_cfg = dataclasses.replace(ctx.train, steps=steps, warmup_steps=warmup)
        identity = {"generation": generation, "data": [s.fingerprint() for s in datasets]}
        shared = self._share(generation, datasets, checkpoint, identity)
        trained, index = list(range(len(datasets))), None
        if shared is None:
            if fresh:
                self.ensemble = self._fresh(generation)
            model = self.ensemble
        else:
            trained, index, identity = shared
            log.info("generation %d: training %d distinct members for %d loops", generation,
                     len(trained), len(datasets))
            model = (self._fresh(generation, [self.members[u] for u in trained]) if fresh
                     else self.ensemble.select(trained))  # untouched: generation 0's init
        weight = None if real_sizes is None else ctx.loop.real_weight
        data = [MemberData(self.members[u].batch_seed(generation), datasets[u],
                           None if weight is None else real_sizes[u], weight)
                for u in trained]

        def expand(values: list) -> list:
            return values if index is None else [values[j] for j in index]

        log_fn = on_log
        if on_log is not None and index is not None:
            def log_fn(record: dict) -> None:
                on_log({**record, "loss": expand(record["loss"])})

        result = train_ensemble(model, data, ctx.task, ctx.k, train_cfg, ctx.runtime,
                                checkpoint=checkpoint, identity=identity, on_log=log_fn,
                                description=f"generation {generation}")
        if index is not None:
            self.ensemble = model.select(index)
        return {"train_loss": expand(result.final_loss), "steps": result.steps,
                "member_steps": [result.steps] * len(datasets),
                "bad_steps": result.bad_steps, "trained_members": len(trained)}

    def synthesize(self, generation, inputs, members=None) -> list[PromptSet]:
        return self._label(inputs, members, with_variance=False)[0]

    def synthesize_with_variance(self, generation, inputs, members=None):
        return self._label(inputs, members, with_variance=True)

    def _label(self, inputs: list[SyntheticInputs], members: list[int] | None,
               with_variance: bool) -> tuple[list[PromptSet], list[Tensor | None]]:
        ctx, device = self.ctx, self.ctx.runtime.device
        ensemble = self.ensemble
        if members is not None and members != list(range(ensemble.n_members)):
            ensemble = ensemble.select(members)  # a copy of the few weights, not of the labels
        sizes = [s.xs.shape[0] for s in inputs]
        xs = pad_stack([s.xs for s in inputs]).to(device)  # (K, m_max, k, d)
        context = pad_stack([s.context_ys for s in inputs]).to(device)
        noise = None
        if inputs[0].noise is not None:
            noise = pad_stack([s.noise for s in inputs]).to(device)
        noise_std = None if ctx.loop.label_mode == "mean" else ctx.loop.label_noise_std
        if ctx.loop.label_mode == "mean":
            noise = None
        var = None
        if with_variance and ctx.model.gaussian_head:
            ys, var = label(ensemble, xs, context, noise, noise_std,
                            use_cache=ctx.loop.kv_cache, batch_size=ctx.loop.label_batch_size,
                            return_variance=True)
            var = var.cpu()
        else:
            ys = label(ensemble, xs, context, noise, noise_std, use_cache=ctx.loop.kv_cache,
                       batch_size=ctx.loop.label_batch_size)
        ys = ys.cpu()
        sets = [PromptSet(s.xs, ys[i, :m]) for i, (s, m) in enumerate(zip(inputs, sizes))]
        return sets, [None if var is None else var[i, :m] for i, m in enumerate(sizes)]

    def errors(self, sets) -> Tensor:
        return model_errors(self.ensemble, sets, self.ctx.eval.batch_size, self.ctx.runtime)

    def predictions(self, sets: PromptSet) -> Tensor:
        xs, ys = stack_sets(sets, self.ensemble.n_members)
        return predict(self.ensemble, xs, ys, self.ctx.eval.batch_size, self.ctx.runtime).cpu()

    def predictive_distribution(self, sets: PromptSet) -> tuple[Tensor, Tensor | None]:
        xs, ys = stack_sets(sets, self.ensemble.n_members)
        mean, var = predict_distribution(self.ensemble, xs, ys, self.ctx.eval.batch_size,
                                         self.ctx.runtime)
        return mean.cpu(), None if var is None else var.cpu()

    def test_metrics(self, test_set: PromptSet) -> tuple[Tensor, Tensor, list[dict]]:
        """One pass over the test set gives the errors, the predictions and the head's
        calibration."""
        xs, ys = stack_sets(test_set, self.ensemble.n_members)
        mean, var = predict_distribution(self.ensemble, xs, ys, self.ctx.eval.batch_size,
                                         self.ctx.runtime)
        mean, real = mean.cpu(), test_set.ys.cpu()
        errors = squared_error(mean, ys.cpu(), test_set.d)
        if var is None:
            return errors, mean, [{} for _ in self.members]
        return errors, mean, [head_calibration(mean[i], var[i].cpu(), real)
                              for i in range(len(self.members))]

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.ensemble.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.ensemble.load_state_dict(state)
        self._untouched = False
