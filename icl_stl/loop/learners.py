"""Learners the loop retrains every generation, behind one interface.

`TransformerLearner` trains an ensemble of in-context learners (one member per loop) and labels
synthetic prompts with it. The exactly solvable reference learner of THEORY.md plugs in through
the same interface (see `icl_stl.probes.reference`), so the loop code never branches on it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from icl_stl.config import EvalConfig, LoopConfig, ModelConfig, TrainConfig  # noqa: F401
from icl_stl.ensemble import Ensemble, build_ensemble
from icl_stl.evaluation import model_errors, predict, stack_sets
from icl_stl.io import CheckpointSlot
from icl_stl.loop.labelling import label
from icl_stl.loop.mixing import MemberSpec, SyntheticInputs
from icl_stl.prompts import PromptSet, pad_stack
from icl_stl.seeding import derive_seed, make_generator
from icl_stl.tasks import Task
from icl_stl.training import MemberData, RuntimeOptions, train_ensemble


@dataclass
class LearnerContext:
    """Everything a learner needs besides its data; plain typed settings, no Hydra."""

    task: Task
    k: int
    model: ModelConfig
    train: TrainConfig
    loop: LoopConfig
    eval: EvalConfig
    runtime: RuntimeOptions
    engine: str = "batched"


class Learner(ABC):
    """K learners (one per member loop) trained and used together."""

    def __init__(self, ctx: LearnerContext, members: list[MemberSpec]):
        self.ctx, self.members = ctx, members

    @abstractmethod
    def fit(self, generation: int, datasets: list[PromptSet], checkpoint: CheckpointSlot | None,
            on_log: Callable[[dict], None] | None = None) -> dict:
        """Train generation `generation` of every member on its set; return training info."""

    @abstractmethod
    def synthesize(self, generation: int, inputs: list[SyntheticInputs]) -> list[PromptSet]:
        """Label each member's synthetic inputs with its current (previous-generation) model."""

    @abstractmethod
    def errors(self, sets: list[PromptSet] | PromptSet) -> Tensor:
        """Per-position squared errors / d, (K, n, k); a shared set or one set per member."""

    @abstractmethod
    def predictions(self, sets: PromptSet) -> Tensor:
        """Predicted means (K, n, k) on one shared set (the stability probe compares these)."""

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def member_risks(self, sets: list[PromptSet]) -> list[float]:
        """Empirical risk of member i on sets[i]; sets may differ in size."""
        sizes = [len(s) for s in sets]
        if max(sizes) == 0:
            return [float("nan")] * len(sets)
        errors = self.errors(sets)  # (K, n_max, k), zero-padded rows past each set's size
        return [errors[i, :m].mean().item() if m else float("nan") for i, m in enumerate(sizes)]


class TransformerLearner(Learner):
    def __init__(self, ctx: LearnerContext, members: list[MemberSpec]):
        super().__init__(ctx, members)
        self.ensemble = self._fresh(0)

    def _fresh(self, generation: int) -> Ensemble:
        gens = [make_generator(m.seed, "init", generation) for m in self.members]
        return build_ensemble(self.ctx.model, self.ctx.task.d, self.ctx.k, gens,
                              self.ctx.engine).to(self.ctx.runtime.device)

    def fit(self, generation, datasets, checkpoint, on_log=None) -> dict:
        ctx = self.ctx
        if generation == 0 or ctx.loop.init == "from_scratch":
            self.ensemble = self._fresh(generation)
        steps = ctx.train.steps if generation == 0 or ctx.loop.steps is None else ctx.loop.steps
        train_cfg = dataclasses.replace(ctx.train, steps=steps)
        data = [MemberData(derive_seed(m.seed, "batches", generation), s)
                for m, s in zip(self.members, datasets)]
        identity = {"generation": generation, "data": [s.fingerprint() for s in datasets]}
        result = train_ensemble(self.ensemble, data, ctx.task, ctx.k, train_cfg, ctx.runtime,
                                checkpoint=checkpoint, identity=identity, on_log=on_log,
                                description=f"generation {generation}")
        return {"train_loss": result.final_loss, "steps": result.steps,
                "bad_steps": result.bad_steps}

    def synthesize(self, generation, inputs) -> list[PromptSet]:
        ctx, device = self.ctx, self.ctx.runtime.device
        sizes = [s.xs.shape[0] for s in inputs]
        xs = pad_stack([s.xs for s in inputs]).to(device)  # (K, m_max, k, d)
        context = pad_stack([s.context_ys for s in inputs]).to(device)
        noise = None
        if inputs[0].noise is not None:
            noise = pad_stack([s.noise for s in inputs]).to(device)
        noise_std = None if ctx.loop.label_mode == "mean" else ctx.loop.label_noise_std
        if ctx.loop.label_mode == "mean":
            noise = None
        ys = label(self.ensemble, xs, context, noise, noise_std, use_cache=ctx.loop.kv_cache,
                   batch_size=ctx.loop.label_batch_size).cpu()
        return [PromptSet(s.xs, ys[i, :m]) for i, (s, m) in enumerate(zip(inputs, sizes))]

    def errors(self, sets) -> Tensor:
        return model_errors(self.ensemble, sets, self.ctx.eval.batch_size, self.ctx.runtime)

    def predictions(self, sets: PromptSet) -> Tensor:
        xs, ys = stack_sets(sets, self.ensemble.n_members)
        return predict(self.ensemble, xs, ys, self.ctx.eval.batch_size, self.ctx.runtime).cpu()

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.ensemble.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.ensemble.load_state_dict(state)


LEARNERS: dict[str, type[Learner]] = {"transformer": TransformerLearner}


def make_learner(ctx: LearnerContext, members: list[MemberSpec]) -> Learner:
    if ctx.loop.learner == "gaussian_prior":
        from icl_stl.probes.reference import GaussianPriorLearner

        return GaussianPriorLearner(ctx, members)
    return LEARNERS[ctx.loop.learner](ctx, members)
