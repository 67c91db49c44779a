"""The interface every learner of the loop implements: fit, label, predict, score, save."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from icl_stl.config import EvalConfig, LoopConfig, ModelConfig, TrainConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.tasks import Task
from icl_stl.loop.mixing import MemberSpec, SyntheticInputs
from icl_stl.persistence import CheckpointSlot
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.losses import squared_error


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


class Learner(ABC):
    """K learners (one per member loop) trained and used together."""

    def __init__(self, ctx: LearnerContext, members: list[MemberSpec]):
        self.ctx, self.members = ctx, members

    @abstractmethod
    def fit(self, generation: int, datasets: list[PromptSet], checkpoint: CheckpointSlot | None,
            on_log: Callable[[dict], None] | None = None,
            real_sizes: list[int] | None = None) -> dict:
        """Train generation `generation` of every member on its set; return training info.

        real_sizes: with `loop.real_weight`, the size of each set's real part (its first
        prompts), which the fit gives the weight `loop.real_weight`; None: unweighted."""

    @abstractmethod
    def synthesize(self, generation: int, inputs: list[SyntheticInputs],
                   members: list[int] | None = None) -> list[PromptSet]:
        """Label each member's synthetic inputs with its current (previous-generation) model.

        members: whose inputs these are, by index (None: every member, in order); the members
        an oracle labels (`MemberSpec.labeller`) are left out, so the learner labels only its
        own loops' prompts.
        """

    def synthesize_with_variance(self, generation: int, inputs: list[SyntheticInputs],
                                 members: list[int] | None = None
                                 ) -> tuple[list[PromptSet], list[Tensor | None]]:
        """`synthesize`, plus each member's predicted variance per position (m, k) where the
        learner has one (None otherwise): what `loop.filter=confidence` ranks by."""
        return self.synthesize(generation, inputs, members), [None for _ in inputs]

    @abstractmethod
    def errors(self, sets: list[PromptSet] | PromptSet) -> Tensor:
        """Per-position squared errors / d, (K, n, k); a shared set or one set per member."""

    @abstractmethod
    def predictions(self, sets: PromptSet) -> Tensor:
        """Predicted means (K, n, k) on one shared set (the stability probe compares these)."""

    def predictive_distribution(self, sets: PromptSet) -> tuple[Tensor, Tensor | None]:
        """Predicted means and variances (K, n, k) on one shared set; the variance is None for
        a learner without a predictive distribution (a mean-only head)."""
        return self.predictions(sets), None

    def test_metrics(self, test_set: PromptSet) -> tuple[Tensor, Tensor, list[dict]]:
        """Per-position errors (K, n, k) on the shared test set, the predicted means they are
        the errors of (K, n, k), and, per member, the predictive variance against the realised
        squared error there (`evaluation.head_calibration`; empty for learners without a
        variance)."""
        pred = self.predictions(test_set)
        ys = test_set.ys.cpu().to(pred.dtype).expand_as(pred)
        return squared_error(pred, ys, test_set.d).float(), pred, [{} for _ in self.members]

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def member_risks(self, sets: list[PromptSet],
                     prefixes: list[int] | None = None) -> tuple[list[float], list[float]]:
        """Empirical risk of member i on sets[i] and on its first prefixes[i] prompts, from one
        pass (S_i puts its real part first, so the real risk costs no second forward pass; on
        the CPU reproduction the second pass was a third of a generation's evaluation). Sets
        may differ in size; an empty set or prefix has risk nan."""
        sizes = [len(s) for s in sets]
        prefixes = sizes if prefixes is None else prefixes
        if max(sizes) == 0:
            return [float("nan")] * len(sets), [float("nan")] * len(sets)
        errors = self.errors(sets)  # (K, n_max, k), zero-padded rows past each set's size

        def risk(i: int, rows: int) -> float:
            return errors[i, :rows].mean().item() if rows else float("nan")

        return ([risk(i, m) for i, m in enumerate(sizes)],
                [risk(i, p) for i, p in enumerate(prefixes)])
