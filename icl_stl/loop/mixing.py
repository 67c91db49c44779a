"""Building S_i: the real prompts of a member's generation plan plus synthetic prompts from
generation i-1.

Every draw comes from a stream named by (member seed, purpose, generation), so two loops with
the same seed (the stability probe's twins) share every draw except their S_0. How many prompts
each part has is the member's `GenerationPlan` (icl_stl/loop/plan.py): lambda_i n real ones,
and the `n_labelled` x's generation i-1 labels (with a filter, more than it keeps). With a task
pool (`task.n_tasks`, `MemberSpec.pool`) every real prompt, S_0's, fresh ones and the real
counterparts of synthetic x's, draws its task from the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from icl_stl.config import LoopConfig
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import TaskPool, sample_pool_prompts
from icl_stl.data.tasks import Task
from icl_stl.loop.plan import GenerationPlan, MemberSpec

__all__ = ["MemberSpec", "SyntheticInputs", "draw_s0", "real_counterpart", "real_part",
           "real_prompts", "sample_real", "synthetic_inputs"]


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


def real_part(loop: LoopConfig, member: MemberSpec, s0: PromptSet, plan: GenerationPlan,
              task: Task, k: int) -> tuple[PromptSet, Tensor | None]:
    """The `plan.n_real` real prompts of S_i and, when reused from S_0, their indices in S_0."""
    if loop.real_source == "fresh":
        gen = make_generator(member.seed, "fresh_real", plan.generation)
        return sample_real(task, member, plan.n_real, k, gen), None
    draw = plan.generation if loop.redraw_real else 0
    order = torch.randperm(len(s0), generator=make_generator(member.seed, "real_subset", draw))
    idx = order[:plan.n_real].sort().values
    return s0[idx.to(s0.device)], idx


def real_counterpart(member: MemberSpec, plan: GenerationPlan, task: Task,
                     k: int) -> PromptSet:
    """The real prompts whose x's generation i-1 labels (all `plan.n_labelled` of them): their
    real labels are what the generator's fidelity is measured against (same x's, so only the
    labels differ)."""
    return sample_real(task, member, plan.n_labelled, k,
                       make_generator(member.seed, "synthetic_x", plan.generation))


def synthetic_inputs(loop: LoopConfig, member: MemberSpec, plan: GenerationPlan, task: Task,
                     k: int) -> SyntheticInputs:
    """Fresh x's (and in context mode the first c real pairs of a fresh task) to be labelled."""
    fresh = real_counterpart(member, plan, task, k)
    c = loop.context_pairs if loop.label_mode == "context" else 0
    noisy = (member.labelled_by(loop) == "oracle" or loop.label_mode == "sample"
             or (loop.label_mode == "context" and loop.context_noise))
    noise = None
    if noisy:
        noise = torch.randn(len(fresh), k,
                            generator=make_generator(member.seed, "label_noise", plan.generation))
    return SyntheticInputs(fresh.xs, fresh.ys[:, :c], noise)
