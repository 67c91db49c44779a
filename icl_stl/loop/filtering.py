"""`loop.filter` applied to one member's labelled pool at one generation.

The scores, the selection and the record are `icl_stl.loop.filters` and `icl_stl.loop.verifier`;
this module only decides, from the loop's settings, which score a member's pool gets and how many
prompts it keeps (the plan's `n_synthetic`: the configured synthetic count m, so S_i keeps its
size).

The verifier is ridge centred on the tasks of real prompts, with the prior's variance known
(task.w_scale^2, as the reference learner knows it; `loop.verifier_w_var=known`, the default) or
read off the same real prompts (`loop.verifier_w_var=s0`, and always for
`loop.filter=density_ratio`), and the task's noise variance:
- `loop.verifier_source=s0`: fitted on S_0 (so it works at lambda = 0), with its degradation
  noise drawn once (stream "verifier"): the same verifier every generation;
- `loop.verifier_source=real`: fitted on generation i's real part, noise from ("verifier", i).

The filters that keep the task spread (`icl_stl.loop.spread_filters`): `residual` scores the
least-squares residual over all k positions; `density_ratio` accepts by the ratio of the
verifier's density to the generator's (the Gaussian head's mu_j and sigma_j, or the oracle's),
its uniforms from the stream ("density_ratio", i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icl_stl.config import LoopConfig, TaskConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import Task
from icl_stl.loop.filters import DRIFT_KEYS, filter_record, select, variance_scores
from icl_stl.loop.mixing import real_counterpart, real_part
from icl_stl.loop.plan import GenerationPlan, MemberSpec
from icl_stl.loop.spread_filters import acceptance, log_density_ratio, residual_scores
from icl_stl.loop.verifier import (
    RidgeVerifier,
    fit_verifier,
    predictive_moments,
    verifier_scores,
)

__all__ = ["FILTER_KEYS", "Filtered", "apply_filter", "filter_members", "generator_moments",
           "member_verifier", "no_filter_record"]

# What `filters.filter_record` returns, in its order.
FILTER_KEYS = ("filter_kept_fraction", "filter_pool", "filter_shortfall",
               *(f"filter_{k}_{when}" for when in ("before", "after") for k in DRIFT_KEYS))


@dataclass(frozen=True)
class Filtered:
    """The kept prompts, their positions in the labelled pool, and what the record says."""

    kept: PromptSet
    index: Tensor  # (m,) long
    record: dict


def no_filter_record() -> dict:
    """Generation 0 (nothing synthetic): every filter field present, None."""
    return dict.fromkeys(FILTER_KEYS)


def member_verifier(loop: LoopConfig, task_cfg: TaskConfig, task: Task, member: MemberSpec,
                    s0: PromptSet, plan: GenerationPlan, k: int) -> RidgeVerifier:
    """The verifier `member` filters the pool of generation `plan.generation` with (module
    doc)."""
    if loop.verifier_source == "s0":
        data, gen = s0, make_generator(member.seed, "verifier")
    else:
        data = real_part(loop, member, s0, plan, task, k)[0]
        gen = make_generator(member.seed, "verifier", plan.generation)
    known = loop.filter == "verifier" and loop.verifier_w_var == "known"
    return fit_verifier(data, task_cfg.noise_std ** 2,
                        w_var=task_cfg.w_scale ** 2 if known else None,
                        n_real=loop.verifier_n_real,
                        label_noise_std=loop.verifier_label_noise_std,
                        centre_noise_std=loop.verifier_centre_noise_std, gen=gen)


def _finite_or_none(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def apply_filter(loop: LoopConfig, plan: GenerationPlan, labelled: PromptSet,
                 real: PromptSet, variance: Tensor | None = None,
                 verifier: RidgeVerifier | None = None, *, noise_var: float = 0.0,
                 moments: tuple[Tensor, Tensor] | None = None,
                 gen: torch.Generator | None = None) -> Filtered:
    """Score the labelled pool, keep the plan's synthetic count, record how it went.

    labelled: the pool generation i-1 labelled; real: real labels of the same x's
    (`mixing.real_counterpart`); variance (pool, k): the head's predicted variance
    (confidence); verifier: for `loop.filter=verifier` and `density_ratio`; noise_var: the
    task's noise variance (residual); moments: the generator's predictive mean and variance
    (pool, k) and gen: the acceptance draws (density_ratio). Positions the model did not label
    (context mode's c real pairs) are not scored.
    """
    start = loop.context_pairs if loop.label_mode == "context" else 0
    threshold = loop.filter_threshold
    if loop.filter == "confidence":
        if variance is None:
            raise ValueError("loop.filter=confidence needs the learner's predicted variance")
        scores = variance_scores(variance, start)
    elif loop.filter == "verifier":
        if verifier is None:
            raise ValueError("loop.filter=verifier needs a verifier")
        scores = verifier_scores(verifier, labelled, start)
    elif loop.filter == "residual":
        scores = residual_scores(labelled, noise_var)
    elif loop.filter == "density_ratio":
        if verifier is None or moments is None or gen is None:
            raise ValueError("loop.filter=density_ratio needs a verifier, the generator's "
                             "moments and a generator for its acceptance draws")
        log_ratio = log_density_ratio(verifier, labelled, *moments, start)
        scores, threshold = acceptance(log_ratio, plan.n_synthetic, gen)
    else:
        raise ValueError(f"apply_filter called with loop.filter={loop.filter!r}")
    selection = select(scores.cpu(), plan.n_synthetic, threshold)
    record = {k: _finite_or_none(v) for k, v in filter_record(selection, labelled, real).items()}
    index = selection.index.to(torch.long)
    return Filtered(labelled[index.to(labelled.xs.device)], index, record)


def filter_members(loop: LoopConfig, task_cfg: TaskConfig, task: Task,
                   members: list[MemberSpec], s0s: list[PromptSet], plans: list[GenerationPlan],
                   k: int, pools: list[PromptSet], variances: list[Tensor | None],
                   moments: list[tuple[Tensor, Tensor] | None] | None = None
                   ) -> tuple[list[PromptSet], list[dict]]:
    """Every member's filtered pool (`plans`: each member's plan of this generation), and per
    member {"record", "index"}: what the generation records and which pool positions it kept
    (stored with the synthetic prompts, so that a resumed generation records the same).
    moments: each member's generator moments (`loop.filter=density_ratio`)."""
    kept, info = [], []
    for m, member in enumerate(members):
        verifier, gen = None, None
        if loop.filter in ("verifier", "density_ratio"):
            verifier = member_verifier(loop, task_cfg, task, member, s0s[m], plans[m], k)
        if loop.filter == "density_ratio":
            gen = make_generator(member.seed, "density_ratio", plans[m].generation)
        real = real_counterpart(member, plans[m], task, k)
        out = apply_filter(loop, plans[m], pools[m], real, variances[m], verifier,
                           noise_var=task_cfg.noise_std ** 2,
                           moments=None if moments is None else moments[m], gen=gen)
        kept.append(out.kept)
        info.append({"record": out.record, "index": out.index})
    return kept, info


def generator_moments(learner, members: list[MemberSpec], pools: list[PromptSet],
                      loop: LoopConfig, task_cfg: TaskConfig) -> list[tuple[Tensor, Tensor]]:
    """Each member's generator predictive N(mu_j, sigma_j^2) of every label of its pool, (pool, k)
    each: what `loop.filter=density_ratio` divides by. A model-labelled member's are its
    Gaussian head's, read in one forward pass over the labelled pool (position j sees only the
    pairs before it, as when it labelled them), with sigma_j = loop.label_noise_std when that
    fixes the scale; an oracle-labelled member's are the true posterior predictive."""
    out: list[tuple[Tensor, Tensor] | None] = [None] * len(members)
    oracle = RidgeVerifier(torch.zeros(pools[0].d, dtype=torch.float64), task_cfg.w_scale ** 2,
                           task_cfg.noise_std ** 2, 1)
    model = [m for m, member in enumerate(members) if member.labelled_by(loop) == "model"]
    if model:
        mean, var = learner.predictive_distribution(pools)  # (K, pool_max, k) each
        for m in model:
            size = len(pools[m])
            mu = mean[m, :size].double()
            if loop.label_noise_std is not None or var is None:
                scale = loop.label_noise_std if loop.label_noise_std is not None else 0.0
                sigma2 = torch.full_like(mu, scale ** 2)
            else:
                sigma2 = var[m, :size].double()
            out[m] = (mu, sigma2)
    for m in range(len(members)):
        if out[m] is None:
            out[m] = predictive_moments(oracle, pools[m])
    return out
