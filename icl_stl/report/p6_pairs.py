"""Which loops a P6 group reads, and the per-seed interactions of its co-primary scales.

Prediction 6 (version 2, `report.predictions.p6_matched_filters`) compares four loops per seed:
a filtered loop and its oracle-labelled twin under the same filter, beside the same seed's
unfiltered loop and its oracle twin. `filter_groups` groups the filtered matched loops by
(base configuration, regime, n, lambda, filter settings), each with its unfiltered partner, and
indexes the records by loop and labeller; `seed_pairs` picks the seeds of a group that the rule
reads and their common window; `coprimary` computes the seed-paired filter x labeller
interactions of the head's log z^2 (calibration) and of the training set's log covariance-trace
ratio (spread). The rule and the pilot's co-primary scales (scripts/pilot_p6_coprimary.py) read
the same pairs through these functions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import FIELDS
from icl_stl.report.matched import (
    MatchedGroup,
    MatchedLoop,
    base_config,
    labeller_of,
    matched_loops,
    readable,
    regime_of,
)
from icl_stl.report.rules import ReportConfig

FILTER_FIELDS = tuple(k for k in FIELDS if k.startswith(("filter", "verifier")))


def _spread_field(filtered: bool) -> str:
    """The training set's covariance-trace ratio against real (the kept prompts' when filtered;
    `syn_w_cov_ratio` holds the same number there, the filter's own field says so)."""
    return "filter_w_cov_ratio_after" if filtered else "syn_w_cov_ratio"


def _loop_key(r: dict, settings: dict) -> tuple:
    run = settings.get(r.get("run", ""), {})
    return (base_config(r.get("config", "")), regime_of(r, run), int(r["n"]),
            int(r.get("augment", 0)), float(r["real_fraction"]), int(r["seed"]))


def _index(evidence: Evidence) -> tuple[dict, dict]:
    """{loop key: tagged generation-0 record} and {(loop key, labeller): {generation: record}}."""
    first, arms = {}, defaultdict(dict)
    for r in evidence.tagged:
        key = _loop_key(r, evidence.settings)
        arms[(key, labeller_of(r, evidence.settings.get(r.get("run", ""), {})))][
            int(r["generation"])] = r
        if int(r["generation"]) == 0:
            first.setdefault(key, r)
    return first, arms


def _key_of(loop: MatchedLoop) -> tuple:
    return (loop.config, loop.regime, loop.n, loop.augment, loop.real_fraction, loop.seed)


def filter_groups(evidence: Evidence, cfg: ReportConfig
                  ) -> tuple[dict[tuple, list[tuple[MatchedLoop, MatchedLoop | None]]], dict]:
    """Filtered matched loops grouped by (base, regime, n, lambda, filter settings), each with
    the same seed's unfiltered matched loop (None when missing), and the record index."""
    first, arms = _index(evidence)
    loops = matched_loops(evidence.records, evidence.settings, cfg.gate_tolerance,
                          cfg.failure_gap, cfg.failure_train_ratio)
    plain, filtered = {}, defaultdict(list)
    for loop in loops:
        tag = first.get(_key_of(loop))
        if tag is None or loop.augment != 0 or tag.get("schedule", "constant") != "constant":
            continue
        where = (tag["base"], loop.regime, loop.n, loop.real_fraction)
        if tag.get("filter", "none") == "none":
            plain.setdefault((*where, loop.seed), loop)
        else:
            settings = json.dumps({k: tag.get(k) for k in FILTER_FIELDS}, default=str)
            filtered[(*where, settings)].append(loop)
    groups = {key: [(lp, plain.get((*key[:4], lp.seed))) for lp in members]
              for key, members in filtered.items()}
    return groups, arms


@dataclass(frozen=True)
class SeedPairs:
    """The seeds a P6 group reads: each filtered loop with its unfiltered partner."""

    filtered: MatchedGroup  # the filtered loops, readable ones kept (`readable`)
    partners: dict  # seed -> the same seed's unfiltered matched loop (None when missing)
    both: list[MatchedLoop]  # the filtered loops whose partner is readable too, seed order
    window: list[int]  # the generations >= 1 every loop of `both` and its partner have


def seed_pairs(pairs: list, count: int | None = None) -> SeedPairs:
    """The seeds of one filter group (`filter_groups`' pairs) whose filtered loop and unfiltered
    partner are both readable, the first `count` of them, and their common window. Used by the
    rule (`p6_matched_filters`) and by the pilot's co-primary scales
    (scripts/pilot_p6_coprimary.py)."""
    filtered = readable([lp for lp, _ in pairs])
    partners = {lp.seed: plain for lp, plain in pairs}
    both = [lp for lp in filtered.loops if partners.get(lp.seed) is not None
            and partners[lp.seed].gated and not partners[lp.seed].failures]
    both = both[:count] if count is not None else both
    window = sorted(set.intersection(*(set(lp.generations) & set(partners[lp.seed].generations)
                                       for lp in both)) - {0}) if both else []
    return SeedPairs(filtered, partners, both, window)


def _arm_mean(arms: dict, loop: MatchedLoop, labeller: str, field: str,
              window: list[int]) -> float | None:
    values = [arms[(_key_of(loop), labeller)].get(g, {}).get(field) for g in window]
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def labeller_means(arms: dict, loops: list[MatchedLoop], field: str, window: list[int]) -> dict:
    """{"model": mean, "oracle": mean} of `field` over the loops' arms of each labeller and the
    window (None where no record has it)."""
    out = {}
    for labeller in ("model", "oracle"):
        vals = [_arm_mean(arms, lp, labeller, field, window) for lp in loops]
        vals = [v for v in vals if v is not None]
        out[labeller] = float(np.mean(vals)) if vals else None
    return out


def _log_twin_ratio(arms: dict, loop: MatchedLoop, field: str,
                    window: list[int]) -> list[float] | None:
    """log(X_model / X_oracle) of one loop by generation; None when a record lacks X."""
    model, oracle = arms[(_key_of(loop), "model")], arms[(_key_of(loop), "oracle")]
    out = []
    for g in window:
        a, b = model.get(g, {}).get(field), oracle.get(g, {}).get(field)
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            return None
        out.append(float(np.log(a / b)))
    return out


def coprimary(arms: dict, both: list[MatchedLoop], partners: dict,
              window: list[int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The calibration and spread interactions (seeds, window), None where a record lacks them
    (a model without the Gaussian head has no z^2)."""
    out = []
    for field_of in (lambda filtered: "head_z2", _spread_field):
        rows = []
        for lp in both:
            own = _log_twin_ratio(arms, lp, field_of(True), window)
            ref = _log_twin_ratio(arms, partners[lp.seed], field_of(False), window)
            if own is None or ref is None:
                rows = None
                break
            rows.append(np.subtract(own, ref))
        out.append(None if rows is None else np.array(rows))
    return out[0], out[1]
