"""The stability probe's twin loops and the prompts they share with the loop run.

Both twins are members of ONE ensemble, with the same seed, so every other draw is shared by
construction (initialisation, batch order, synthetic x's, label noise, fresh real prompts: all
are streams keyed by the member's seed). A base loop per (n, seed) is shared by all its
neighbours (one per replaced index), so r indices cost r + 1 loops, not 2r.

The chaos control (`probe.chaos_control`): per (n, seed) one more member trains on the same S_0
with a different batch order, and gamma_chaos (the same statistics against the base loop) is the
ceiling gamma is read against: a replaced prompt whose effect is no larger than a reshuffled
batch order measures the training's chaos, not the prompt. `batch_order` (default) gives the
control S_0 in another order: the batch sampler draws indices with the member's own stream, so
every batch differs while every other draw is shared; prompts S_i reuses from S_0 are only
permuted among themselves, so S_i holds the same prompts. `seed` gives it S_0 under another
member seed: a different initialisation as well (and different synthetic x's, noise and reused
subset).

With a task pool (`task.n_tasks` = M) every prompt the probe draws takes its task from the run's
pool (the one LoopRun draws, `POOL_STREAM` of the run's seed): S_0 (as `draw_s0` draws it), the
fresh replacement (a new prompt from the distribution the loop trains on) and the probe prompts
gamma is measured on (in distribution, like the loop's test set). A `flip` replacement negates
its task, so that one prompt leaves the pool on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from icl_stl.config import CHAOS_CONTROLS, LoopConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import derive_seed, make_generator
from icl_stl.data.task_pool import POOL_STREAM, TaskPool, draw_pool
from icl_stl.data.tasks import Task
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_part, real_prompts
from icl_stl.loop.plan import plan_generations
from icl_stl.loop.runner import LoopRun, LoopSettings


@dataclass(frozen=True)
class TwinPair:
    """Member `neighbour` is member `base` with prompt `index` of S_0 replaced, or, with kind
    "control", its chaos control (index -1): the same S_0 with another batch order or seed."""

    base: int
    neighbour: int
    index: int
    kind: str = "neighbour"
    shared_draws: bool = True  # every draw but the batch order is shared with the base loop


def neighbour_set(task: Task, s0: PromptSet, index: int, replacement: str, seed: int,
                  k: int, pool: TaskPool | None = None) -> PromptSet:
    """S_0' = S_0 with prompt `index` replaced.

    fresh: a new prompt from the task distribution, the pool's with a pool (stream
    `replacement/<index>`); flip: the same x's with labels (and task parameters) negated;
    identical: the same prompt (gamma must be 0).
    """
    old = s0[index]
    if replacement == "fresh":
        new = real_prompts(task, 1, k, make_generator(seed, "replacement", index), pool)
    elif replacement == "flip":
        new = PromptSet(old.xs, -old.ys, None if old.params is None else -old.params)
    elif replacement == "identical":
        new = old
    else:
        raise ValueError(f"replacement must be fresh, flip or identical, got {replacement!r}")
    return s0.replace(index, new)


def chaos_order(loop: LoopConfig | None, member: MemberSpec, s0: PromptSet, task: Task,
                k: int) -> torch.Tensor:
    """A permutation of S_0 for the batch-order control: random within the classes of prompts
    that every generation's reused real part (`mixing.real_part`) treats alike, so the control's
    S_i holds the same prompts as the base's, only in another order."""
    n = len(s0)
    # reused[j, g]: prompt j is in generation g's reused real part. Prompts with equal rows
    # are interchangeable (a bit mask would overflow past 63 generations and merge classes).
    reused = torch.zeros(n, 1, dtype=torch.bool)
    if loop is not None and loop.real_source != "fresh" and loop.generations >= 1:
        draws = range(1, loop.generations + 1) if loop.redraw_real else (1,)
        reused = torch.zeros(n, len(draws), dtype=torch.bool)
        plans = plan_generations(loop, member)
        for column, generation in enumerate(draws):
            _, idx = real_part(loop, member, s0, plans[generation], task, k)
            reused[idx, column] = True
    _, signature = torch.unique(reused, dim=0, return_inverse=True)
    gen = make_generator(member.seed, "chaos_order", member.n)
    perm = torch.arange(n)
    for value in range(int(signature.max()) + 1):
        where = torch.nonzero(signature == value).flatten()
        perm[where] = where[torch.randperm(where.numel(), generator=gen)]
    return perm


def chaos_member(task: Task, k: int, member: MemberSpec, s0: PromptSet, control: str,
                 loop: LoopConfig | None) -> tuple[MemberSpec, bool]:
    """The chaos control of a base loop, and whether it shares every draw but the batches."""
    tag = f"n{member.n}/seed{member.seed}/chaos-{control}"
    if control == "batch_order":
        order = chaos_order(loop, member, s0, task, k)
        return MemberSpec(member.seed, member.real_fraction, member.n, member.augment,
                          s0=s0[order], tag=tag, pool=member.pool), True
    if control == "seed":
        seed = derive_seed(member.seed, "chaos_seed") % (1 << 31)
        return MemberSpec(seed, member.real_fraction, member.n, member.augment, s0=s0,
                          tag=tag, pool=member.pool), False
    raise ValueError(f"chaos control must be one of {CHAOS_CONTROLS}, got {control!r}")


def twin_members(task: Task, k: int, ns: Sequence[int], seeds: Sequence[int],
                 indices: Sequence[int], real_fraction: float, augment: int,
                 replacement: str, control: str = "none", loop: LoopConfig | None = None,
                 pool: TaskPool | None = None) -> tuple[list[MemberSpec], list[TwinPair]]:
    """For every (n, seed): the base loop on S_0, one neighbour per replaced index, and with
    `control` (batch_order | seed) its chaos control (`loop` says which prompts S_i reuses).
    With `pool` (the run's task pool) S_0 and fresh replacements draw their tasks from it."""
    members: list[MemberSpec] = []
    pairs: list[TwinPair] = []
    for n in ns:
        for seed in seeds:
            s0 = draw_s0(task, MemberSpec(seed, real_fraction, n, augment, pool=pool), k)
            base = len(members)
            members.append(MemberSpec(seed, real_fraction, n, augment, s0=s0,
                                      tag=f"n{n}/seed{seed}/base", pool=pool))
            for index in indices:
                pairs.append(TwinPair(base, len(members), index))
                members.append(MemberSpec(
                    seed, real_fraction, n, augment,
                    s0=neighbour_set(task, s0, index, replacement, seed, k, pool),
                    tag=f"n{n}/seed{seed}/replace{index}", pool=pool))
            if control != "none":
                member, shared = chaos_member(task, k, members[base], s0, control, loop)
                pairs.append(TwinPair(base, len(members), -1, "control", shared))
                members.append(member)
    return members, pairs


def probe_set(task: Task, k: int, n_prompts: int, seed: int,
              pool: TaskPool | None = None) -> PromptSet:
    """The fixed real prompts gamma is measured on (own stream, distinct from the test set);
    with a task pool their tasks come from it, as the loop's test set's do."""
    return real_prompts(task, n_prompts, k, make_generator(seed, "probe_set"), pool)


def run_pool(task: Task, settings: LoopSettings) -> TaskPool | None:
    """The task pool LoopRun draws for these settings (`test_sets.loop_test_sets`: the run's
    seed, `POOL_STREAM`), or None without `task.n_tasks`: twins, base and test set share it."""
    n_tasks = settings.task.n_tasks
    if n_tasks is None:
        return None
    return draw_pool(task, n_tasks, make_generator(settings.seed, POOL_STREAM))


def check_same_pool(pool: TaskPool | None, run: LoopRun) -> None:
    """Fail loudly if the probe's prompts came from another pool than the run trains on."""
    if (pool is None) != (run.pool is None) or (
            pool is not None and not torch.equal(pool.weights, run.pool.weights.to(pool.weights))):
        raise RuntimeError("the probe's task pool is not the loop run's")

