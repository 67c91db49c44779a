"""Filters on synthetic data: label a larger pool, keep the prompts a score ranks best.

Synthetic counts stay as configured: to keep `wanted` prompts at keep fraction q, the loop
labels `pool_size(wanted, q)` = ceil(wanted / q) prompts, scores each (lower is better) and
`select`s exactly `wanted`. Two selection rules:

- best fraction (`threshold=None`): the `wanted` lowest scores (ties: pool order);
- threshold: the prompts scoring <= threshold, the first `wanted` in pool order (rejection
  sampling: the kept prompts are distributed as the pool conditioned on passing, which is what
  `icl_stl.theory.filters` computes). If fewer pass, the best of the rest fill the count and the
  shortfall is reported (`filter_shortfall`): a run never silently trains on fewer prompts.

Scores: `variance_scores` (the Gaussian head's predicted variance), `disagreement_scores` (the
spread of several members' predicted means) and the ridge verifier of `icl_stl.loop.verifier`.
`filter_record` gives what summary.json records: the kept fraction (prompts that passed over
the pool) and the label drift before and after filtering, measured as the loop's fidelity
measures the generator (`icl_stl.loop.fidelity`): synthetic labels against real labels of the
same x's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icl_stl.config import ConfigError
from icl_stl.data.prompts import PromptSet
from icl_stl.loop.fidelity import (
    implied_weights,
    label_var_ratio_per_position,
    task_spread,
    wasserstein_1d,
)

__all__ = ["DRIFT_KEYS", "FILTERS", "Selection", "check_keep", "disagreement_scores", "filter_record",
           "label_drift", "pool_size", "select", "variance_scores"]

FILTERS = ("none", "confidence", "verifier", "residual", "density_ratio")
# What `label_drift` returns, in its order.
DRIFT_KEYS = ("label_w1", "label_var_ratio", "w_shift2", "w_cov_ratio", "w_norm_ratio")


def check_keep(keep: object, path: str = "loop.filter_keep") -> float:
    """The keep fraction q in (0, 1]."""
    if (isinstance(keep, bool) or not isinstance(keep, (int, float)) or not math.isfinite(keep)
            or not 0 < keep <= 1):
        raise ConfigError(f"{path} must be a number in (0, 1], got {keep!r}")
    return float(keep)


def pool_size(wanted: int, keep: float) -> int:
    """How many prompts to label so that a fraction `keep` of them is `wanted`: ceil(wanted/q).

    The 1e-9 guards against 0.3 * 10 style rounding asking for one prompt too many.
    """
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
        raise ValueError(f"wanted must be an integer >= 0, got {wanted!r}")
    keep = check_keep(keep)
    return max(wanted, math.ceil(wanted / keep - 1e-9))


@dataclass(frozen=True)
class Selection:
    """Which pool prompts were kept, and how the filter fared."""

    index: Tensor  # (wanted,) long, ascending pool positions of the kept prompts
    passed: int  # prompts that passed the filter (best-fraction mode: wanted)
    pool: int  # prompts labelled and scored
    shortfall: int  # kept prompts that did NOT pass (threshold mode, too few passed)

    @property
    def kept_fraction(self) -> float:
        """Prompts that passed over prompts labelled (1.0 for an empty pool)."""
        return self.passed / self.pool if self.pool else 1.0


def select(scores: Tensor, wanted: int, threshold: float | None = None) -> Selection:
    """Keep exactly `wanted` of the scored pool (see the module doc). NaN scores never pass.

    scores (pool,) -> Selection with index (wanted,).
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (pool,), got {tuple(scores.shape)}")
    pool = scores.shape[0]
    if not 0 <= wanted <= pool:
        raise ValueError(f"cannot keep {wanted} of a pool of {pool}")
    clean = torch.nan_to_num(scores.double(), nan=math.inf)  # (pool,)
    order = torch.sort(clean, stable=True).indices  # (pool,): best first, ties in pool order
    if threshold is None:
        return Selection(order[:wanted].sort().values, wanted, pool, 0)
    passing = (clean <= threshold).nonzero().flatten()  # (passed,) in pool order
    passed = passing.numel()
    if passed >= wanted:
        return Selection(passing[:wanted], passed, pool, 0)
    failing = order[~(clean[order] <= threshold)][: wanted - passed]
    return Selection(torch.cat([passing, failing]).sort().values, passed, pool, wanted - passed)


def _position_mean(values: Tensor, start: int) -> Tensor:
    """(m, k) -> (m,): mean over positions start..k-1 (the self-labelled ones); (m,) as is."""
    if values.ndim == 1:
        return values.double()
    if values.ndim != 2 or not 0 <= start < values.shape[1]:
        raise ValueError(f"expected (m, k) values with 0 <= start < k, got "
                         f"{tuple(values.shape)} and start={start}")
    return values[:, start:].double().mean(1)


def variance_scores(variance: Tensor, start: int = 0) -> Tensor:
    """Confidence by the Gaussian head: its predicted variance per prompt (lower: surer).

    variance (m, k) per position (or (m,) already per prompt) -> (m,). `start` skips opening
    positions that were not labelled by the model (context mode's c real pairs).
    """
    return _position_mean(variance, start)


def disagreement_scores(means: Tensor, start: int = 0) -> Tensor:
    """Confidence by agreement: variance across E >= 2 members' predicted means, averaged over
    positions. means (E, m, k) -> (m,)."""
    if means.ndim != 3 or means.shape[0] < 2:
        raise ValueError(f"disagreement needs (E >= 2, m, k) predicted means, got "
                         f"{tuple(means.shape)}")
    return _position_mean(means.double().var(0, correction=0), start)


def label_drift(synthetic: PromptSet, real: PromptSet) -> dict[str, float]:
    """Synthetic labels against real labels of the same x's, as `fidelity.generator_fidelity`
    measures them: `label_w1` (W1 of the label marginals, 0: real-like), `label_var_ratio`
    (mean over positions of the variance ratio, 1: real-like) and `w_shift2`
    (||mean implied w of synthetic - mean implied w of real||^2: the loop-side analogue of the
    reference learner's drift ||mu_i - mu*||^2), and the tasks' spread (`fidelity.task_spread`:
    `w_cov_ratio`, `w_norm_ratio`, 1: real-like). NaN with fewer than 2 prompts."""
    if len(synthetic) < 2:
        return dict.fromkeys(DRIFT_KEYS, math.nan)
    if synthetic.xs.shape != real.xs.shape or not torch.equal(synthetic.xs, real.xs):
        raise ValueError("label drift compares labels of the same x's")
    ratios = label_var_ratio_per_position(synthetic, real)
    shift = implied_weights(synthetic).mean(0) - implied_weights(real).mean(0)  # (d,)
    return {"label_w1": wasserstein_1d(synthetic.ys, real.ys),
            "label_var_ratio": sum(ratios) / len(ratios),
            "w_shift2": shift.pow(2).sum().item(), **task_spread(synthetic, real)}


def filter_record(selection: Selection, pool: PromptSet, real: PromptSet) -> dict[str, float]:
    """What a generation records about its filter. `pool` is the labelled pool and `real` the
    real labels of the same x's (`mixing.real_counterpart` drawn at the pool's size)."""
    before = label_drift(pool, real)
    after = label_drift(pool[selection.index], real[selection.index])
    return {"filter_kept_fraction": selection.kept_fraction, "filter_pool": selection.pool,
            "filter_shortfall": selection.shortfall,
            **{f"filter_{k}_before": v for k, v in before.items()},
            **{f"filter_{k}_after": v for k, v in after.items()}}
