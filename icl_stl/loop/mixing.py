"""Building S_i: a fraction lambda_i of real prompts plus synthetic prompts from generation i-1.

Every draw comes from a stream named by (member seed, purpose, generation), so two loops with
the same seed (the stability probe's twins) share every draw except their S_0. lambda_i follows
`loop.real_schedule` (constant: the member's real_fraction). With a task pool (`task.n_tasks`,
`MemberSpec.pool`) every real prompt, S_0's, fresh ones and the real counterparts of synthetic
x's, draws its task from the pool. With a filter, generation i-1 labels
`filters.pool_size(m, loop.filter_keep)` x's so that m of them can be kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from icl_stl.config import LoopConfig, real_count
from icl_stl.config.schedules import real_count_rounded
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import TaskPool, sample_pool_prompts
from icl_stl.data.tasks import Task
from icl_stl.loop.filters import pool_size


@dataclass
class MemberSpec:
    """One loop of an ensemble of loops: its seed, lambda, n and m (augmentation)."""

    seed: int
    real_fraction: float
    n: int
    augment: int = 0
    s0: PromptSet | None = field(default=None, repr=False)  # given S_0 (twins); else drawn
    tag: str = ""
    pool: TaskPool | None = field(default=None, repr=False)  # task.n_tasks: the run's pool

    def describe(self) -> dict:
        return {"seed": self.seed, "real_fraction": self.real_fraction, "n": self.n,
                "augment": self.augment, "tag": self.tag}


@dataclass
class SyntheticInputs:
    """What generation i-1 labels: fresh x's, c real opening labels, and its noise draws."""

    xs: Tensor  # (m, k, d)
    context_ys: Tensor  # (m, c)
    noise: Tensor | None  # (m, k) standard normals, None when labels carry no noise


def sample_real(task: Task, member: MemberSpec, n: int, k: int,
                gen: torch.Generator) -> PromptSet:
    """n real prompts: tasks from the prior, or from the member's task pool when it has one."""
    return real_prompts(task, n, k, gen, member.pool)


def real_prompts(task: Task, n: int, k: int, gen: torch.Generator,
                 pool: TaskPool | None = None) -> PromptSet:
    """n real prompts: tasks from the prior, or from `pool` when there is one."""
    if pool is None:
        return sample_prompts(task, n, k, gen)
    return sample_pool_prompts(task, pool, n, k, gen)


def draw_s0(task: Task, member: MemberSpec, k: int) -> PromptSet:
    """S_0: n real prompts from the member's data stream (or the given set)."""
    if member.s0 is not None:
        return member.s0
    return sample_real(task, member, member.n, k, make_generator(member.seed, "S0"))


def real_fraction_at(loop: LoopConfig, member: MemberSpec, generation: int) -> float:
    """lambda_i: 1 at generation 0 (S_0 is all real), then the member's schedule."""
    if generation == 0:
        return 1.0
    if loop.real_schedule == "constant":
        return member.real_fraction
    return loop.schedule(member.real_fraction).fraction(generation)


def counts(loop: LoopConfig, member: MemberSpec, generation: int = 1) -> tuple[int, int]:
    """(real, synthetic) prompts of S_i at generation i >= 1: lambda_i n and
    (1 - lambda_i) n + m. A constant schedule counts as before schedules existed."""
    if loop.real_schedule == "constant":
        n_real = real_count(member.real_fraction, member.n, loop.rounding)
    else:
        n_real = real_count_rounded(real_fraction_at(loop, member, generation), member.n,
                                    loop.rounding)
    return n_real, member.n - n_real + member.augment


def labelled_count(loop: LoopConfig, member: MemberSpec, generation: int) -> int:
    """Synthetic prompts generation i-1 labels: m, or the filter's larger pool."""
    _, m = counts(loop, member, generation)
    return m if loop.filter == "none" else pool_size(m, loop.filter_keep)


def real_part(loop: LoopConfig, member: MemberSpec, s0: PromptSet, generation: int, task: Task,
              k: int) -> tuple[PromptSet, Tensor | None]:
    """The real prompts of S_i and, when reused from S_0, their indices in S_0."""
    n_real, _ = counts(loop, member, generation)
    if loop.real_source == "fresh":
        gen = make_generator(member.seed, "fresh_real", generation)
        return sample_real(task, member, n_real, k, gen), None
    draw = generation if loop.redraw_real else 0
    order = torch.randperm(len(s0), generator=make_generator(member.seed, "real_subset", draw))
    idx = order[:n_real].sort().values
    return s0[idx.to(s0.device)], idx


def real_counterpart(loop: LoopConfig, member: MemberSpec, generation: int, task: Task,
                     k: int) -> PromptSet:
    """The real prompts whose x's generation i-1 labels (all `labelled_count` of them): their
    real labels are what the generator's fidelity is measured against (same x's, so only the
    labels differ)."""
    return sample_real(task, member, labelled_count(loop, member, generation), k,
                       make_generator(member.seed, "synthetic_x", generation))


def synthetic_inputs(loop: LoopConfig, member: MemberSpec, generation: int, task: Task,
                     k: int) -> SyntheticInputs:
    """Fresh x's (and in context mode the first c real pairs of a fresh task) to be labelled."""
    fresh = real_counterpart(loop, member, generation, task, k)
    c = loop.context_pairs if loop.label_mode == "context" else 0
    noisy = (loop.labeller == "oracle" or loop.label_mode == "sample"
             or (loop.label_mode == "context" and loop.context_noise))
    noise = None
    if noisy:
        noise = torch.randn(len(fresh), k,
                            generator=make_generator(member.seed, "label_noise", generation))
    return SyntheticInputs(fresh.xs, fresh.ys[:, :c], noise)
