"""What each loop of an ensemble does: its member settings and, per generation, its plan.

A `GenerationPlan` holds what the settings fix about S_i before any prompt is drawn: lambda_i
(`loop.real_schedule`, icl_stl/config/schedules.py), the number of real prompts lambda_i n
(under `loop.rounding`), the synthetic prompts S_i keeps, (1 - lambda_i) n + m, and how many
generation i-1 labels for them (`filters.pool_size(m, loop.filter_keep)` under a filter). It is
computed once per member and generation (`plan_generations`, the schedule validated once) and
handed to the mixing, the filtering and the records, which read the counts from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icl_stl.config import LoopConfig, TrainConfig
from icl_stl.config.loop import ACCUMULATES, KEEPS_S0
from icl_stl.config.schedules import RealSchedule
from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import derive_seed
from icl_stl.data.task_pool import TaskPool
from icl_stl.loop.filters import pool_size

__all__ = ["GenerationPlan", "MemberSpec", "generation_steps", "plan_generation",
           "plan_generations", "train_sizes"]


@dataclass
class MemberSpec:
    """One loop of an ensemble of loops: its seed, lambda, n, m (augmentation) and labeller.

    `labeller` is what labels its synthetic prompts: "model" (the loop's own learner: the loop
    under test) or "oracle" (the true posterior predictive: its matched control, which shares
    the seed's S_0, initialisation, batch order and synthetic x's). None: the run's
    `loop.labeller`, which `LoopRun` fills in (probes build members without one).
    """

    seed: int
    real_fraction: float
    n: int
    augment: int = 0
    s0: PromptSet | None = field(default=None, repr=False)  # given S_0 (twins); else drawn
    tag: str = ""
    pool: TaskPool | None = field(default=None, repr=False)  # task.n_tasks: the run's pool
    labeller: str | None = None  # "model" | "oracle"; None: loop.labeller (class doc)
    # 0: the seed's own batch stream; r > 0: another one (`batch_seed`), every other draw
    # shared: the dose-response probe's chaos twin (icl_stl/probes/dose_response.py)
    batch_order: int = 0

    def describe(self) -> dict:
        spec = {"seed": self.seed, "real_fraction": self.real_fraction, "n": self.n,
                "augment": self.augment, "tag": self.tag, "labeller": self.labeller}
        if self.batch_order:  # listed only when set, so earlier runs' identities still match
            spec["batch_order"] = self.batch_order
        return spec

    def batch_seed(self, generation: int) -> int:
        """The seed of this loop's batch sampler at `generation`."""
        if self.batch_order:
            return derive_seed(self.seed, "batches", generation, "order", self.batch_order)
        return derive_seed(self.seed, "batches", generation)

    def labelled_by(self, loop: LoopConfig) -> str:
        """The member's labeller, the run's `loop.labeller` unless the member names its own."""
        return self.labeller if self.labeller is not None else loop.labeller


@dataclass(frozen=True)
class GenerationPlan:
    """The sizes of one member's S_i. Generation 0: S_0, all n prompts real, none labelled."""

    generation: int
    real_fraction: float  # lambda_i
    n_real: int  # lambda_i n, rounded by loop.rounding
    n_synthetic: int  # new synthetic prompts S_i keeps: (1 - lambda_i) n + m (i x that when
    # loop.synthetic=volume_matched)
    n_labelled: int  # prompts generation i-1 labels: n_synthetic, or the filter's larger pool


def _plan(loop: LoopConfig, schedule: RealSchedule, member: MemberSpec,
          generation: int) -> GenerationPlan:
    n_real = schedule.count(generation, member.n, loop.rounding)
    if generation == 0:
        return GenerationPlan(0, schedule.fraction(0), n_real, 0, 0)
    n_synthetic = member.n - n_real + member.augment
    if loop.synthetic == "volume_matched":  # i sets' worth, all from generation i-1
        n_synthetic *= generation
    n_labelled = (n_synthetic if loop.filter == "none"
                  else pool_size(n_synthetic, loop.filter_keep))
    return GenerationPlan(generation, schedule.fraction(generation), n_real, n_synthetic,
                          n_labelled)


def plan_generations(loop: LoopConfig, member: MemberSpec,
                     generations: int | None = None) -> list[GenerationPlan]:
    """The plans of generations 0..`generations` (default `loop.generations`) of `member`.

    Raises ConfigError for a schedule or rounding the member's lambda and n do not admit.
    """
    schedule = loop.schedule(member.real_fraction)
    last = loop.generations if generations is None else generations
    return [_plan(loop, schedule, member, i) for i in range(last + 1)]


def plan_generation(loop: LoopConfig, member: MemberSpec, generation: int) -> GenerationPlan:
    """The plan of one generation (for code that handles one, as warm-start checks do)."""
    return _plan(loop, loop.schedule(member.real_fraction), member, generation)


def train_sizes(loop: LoopConfig, plans: list[GenerationPlan]) -> list[int]:
    """|S_i| of generations 0..len(plans) - 1 of one member: its real part (all of S_0 for the
    arms that keep it) and the synthetic prompts it trains on (the new ones, or with
    `loop.synthetic` accumulate or accumulate_s0 every generation's so far)."""
    sizes, synthetic = [], 0
    for plan in plans:
        synthetic = (synthetic if loop.synthetic in ACCUMULATES else 0) + plan.n_synthetic
        real = plans[0].n_real if loop.synthetic in KEEPS_S0 else plan.n_real
        sizes.append(real + synthetic)
    return sizes


def generation_steps(loop: LoopConfig, train: TrainConfig, generation: int, n: int,
                     size: int) -> int:
    """Optimizer steps of one member's generation: train.steps at generation 0, the budget of
    generations >= 1 (loop.steps, else train.steps) after it, scaled by |S_i| / n when
    `loop.steps_scale=per_prompt` so that passes over the data stay fixed (never below 1)."""
    if generation == 0:
        base = train.steps
    else:
        base = loop.steps if loop.steps is not None else train.steps
    if loop.steps_scale == "fixed":
        return base
    return max(1, round(base * size / n))
