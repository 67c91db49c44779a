"""Prediction 6 (b): a better verifier, a lower plateau. Verifier groups of one family (the same
base configuration, n, keep share, threshold and source) that differ in one quality dial are
ordered by quality, and P2's ordering test (`order_core`) runs on their plateaus at
p6_order_margin. `p6_filters` forms the groups and combines (b) with (a).
"""

from __future__ import annotations

import math

import numpy as np

from icl_stl.report.groups import describe_group
from icl_stl.report.predictions.p2_bounded import order_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import CODES
from icl_stl.report.verdict import NOT_TESTED, GroupResult, fields_of, fmt, fmt_ci

DIALS = ("verifier_n_real", "verifier_label_noise", "verifier_centre_noise")


def rule_quality(cfg: ReportConfig) -> str:
    return (
        "Per family of verifier groups (base configuration, n, filter_keep, threshold, "
        "verifier_source) with two or more qualities differing in one dial, seeds shared by "
        "every quality: quality = log verifier_n_real (null: n), or minus the centre or label "
        "noise when that is the dial swept. Per seed, the least-squares slope of the plateau "
        "(mean risk over the last third of generations) against quality times the quality "
        "range, over the mean plateau. One-sided t-test: **confirmed** if significantly below "
        f"-{cfg.p6_order_margin:g}, **refuted** if significantly above it; **not tested** with "
        "one quality or with more than one dial varying.")


def p6b_core(plateaus: np.ndarray, quality: list[float], cfg: ReportConfig) -> dict:
    """P2's ordering test (`order_core`) against verifier quality at p6_order_margin:
    plateaus (..., seeds, len(quality)); the claim is a fall as quality rises."""
    return order_core(plateaus, quality, cfg, margin=cfg.p6_order_margin)


def family_of(r: dict) -> tuple:
    """The verifier family a group belongs to: what (b) holds fixed while quality varies."""
    return r["base"], r["n"], r["filter_keep"], r["filter_threshold"], r["verifier_source"]


def quality_of(members: list[tuple[dict, dict]]) -> tuple[list[float] | None, str]:
    """The quality abscissa of a verifier family (None and why when there is none)."""
    dials = {d: sorted({r[d] if r[d] is not None else -1 for r, *_ in members}) for d in DIALS}
    varying = [d for d, values in dials.items() if len(values) > 1]
    if not varying:
        return None, "one verifier quality"
    if len(varying) > 1:
        return None, f"more than one quality dial varies ({', '.join(varying)})"
    dial = varying[0]
    if dial == "verifier_n_real":
        return [math.log(r[dial] if r[dial] is not None else r["n"]) for r, *_ in members], \
            "log verifier_n_real"
    return [-float(r[dial]) for r, *_ in members], f"minus {dial}"


def b_family(members: list[tuple[dict, dict]], cfg: ReportConfig
              ) -> tuple[GroupResult, dict | None]:
    r0 = members[0][0]
    name = describe_group(r0["base_label"], n=r0["n"], filter="verifier", keep=r0["filter_keep"])
    quality, what = quality_of(members)
    if quality is None:
        return GroupResult(name, NOT_TESTED, numbers=f"not tested: {what}"), None
    if len({q for q in quality}) < len(quality):
        return GroupResult(name, NOT_TESTED, numbers="two groups share one quality"), None
    windows = {m[1]["window"] for m in members}
    if len(windows) > 1:
        return GroupResult(name, NOT_TESTED, numbers="qualities ran different generations"), \
            None
    seeds = sorted(set.intersection(*(set(m[2]) for m in members)))
    if not seeds:
        return GroupResult(name, NOT_TESTED, numbers="no seed has every quality"), None
    order = np.argsort(quality)
    q = [quality[i] for i in order]
    mat = np.array([[members[i][2][s] for i in order] for s in seeds])
    b = p6b_core(mat, q, cfg)
    fields = fields_of(b)
    res = GroupResult(name, CODES[int(b["code"])], fields["estimate"], fields["interval"],
                      cfg.p6_order_margin, len(seeds), fields["min_detectable_effect"],
                      fields["p_refute"], statistic=f"relative plateau change across {what}")
    shown = ", ".join(f"{fmt(qv)}: {fmt(mat[:, i].mean())}" for i, qv in enumerate(q))
    res.numbers = (f"plateaus by {what} {shown}; {res.statistic} {fmt(res.estimate)} "
                   f"{fmt_ci(res.interval)} (margin {fmt(-cfg.p6_order_margin)}, "
                   f"{len(seeds)} seeds, MDE {fmt(res.min_detectable_effect)})")
    res.key = {"n": r0["n"]}
    return res, b
