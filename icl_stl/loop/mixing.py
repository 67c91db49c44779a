"""Building S_i: a fraction lambda of real prompts plus synthetic prompts from generation i-1.

Every draw comes from a stream named by (member seed, purpose, generation), so two loops with
the same seed (the stability probe's twins) share every draw except their S_0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from icl_stl.config import LoopConfig, real_count
from icl_stl.prompts import PromptSet, sample_prompts
from icl_stl.seeding import make_generator
from icl_stl.tasks import Task


@dataclass
class MemberSpec:
    """One loop of an ensemble of loops: its seed, lambda, n and m (augmentation)."""

    seed: int
    real_fraction: float
    n: int
    augment: int = 0
    s0: PromptSet | None = field(default=None, repr=False)  # given S_0 (twins); else drawn
    tag: str = ""

    def describe(self) -> dict:
        return {"seed": self.seed, "real_fraction": self.real_fraction, "n": self.n,
                "augment": self.augment, "tag": self.tag}


@dataclass
class SyntheticInputs:
    """What generation i-1 labels: fresh x's, c real opening labels, and its noise draws."""

    xs: Tensor  # (m, k, d)
    context_ys: Tensor  # (m, c)
    noise: Tensor | None  # (m, k) standard normals, None when labels carry no noise


def draw_s0(task: Task, member: MemberSpec, k: int) -> PromptSet:
    """S_0: n real prompts from the member's data stream (or the given set)."""
    if member.s0 is not None:
        return member.s0
    return sample_prompts(task, member.n, k, make_generator(member.seed, "S0"))


def counts(loop: LoopConfig, member: MemberSpec) -> tuple[int, int]:
    """(real, synthetic) prompts labelled at generation i >= 1: lambda n and (1 - lambda) n + m."""
    n_real = real_count(member.real_fraction, member.n, loop.rounding)
    return n_real, member.n - n_real + member.augment


def real_part(loop: LoopConfig, member: MemberSpec, s0: PromptSet, generation: int, task: Task,
              k: int) -> tuple[PromptSet, Tensor | None]:
    """The real prompts of S_i and, when reused from S_0, their indices in S_0."""
    n_real, _ = counts(loop, member)
    if loop.real_source == "fresh":
        gen = make_generator(member.seed, "fresh_real", generation)
        return sample_prompts(task, n_real, k, gen), None
    draw = generation if loop.redraw_real else 0
    order = torch.randperm(len(s0), generator=make_generator(member.seed, "real_subset", draw))
    idx = order[:n_real].sort().values
    return s0[idx.to(s0.device)], idx


def real_counterpart(loop: LoopConfig, member: MemberSpec, generation: int, task: Task,
                     k: int) -> PromptSet:
    """The real prompts whose x's generation i-1 labels: their real labels are what the
    generator's fidelity is measured against (same x's, so only the labels differ)."""
    _, m = counts(loop, member)
    return sample_prompts(task, m, k, make_generator(member.seed, "synthetic_x", generation))


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
