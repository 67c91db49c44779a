"""P6, version 2: planted records of four loops per seed (filtered and unfiltered, each beside
its oracle twin) flip the verdict, on the excess-risk scale and on each co-primary scale
(calibration, spread); filters not admitted are not judged and show their kept spread; the
primary group is the residual filter's; the registry's version 2 judges P6 with this module."""

from __future__ import annotations

import math

import pytest
from test_report import RIDGE, ZERO

from icl_stl.report.evidence import Evidence
from icl_stl.report.predictions import REGISTRY, REGISTRY_V1, p6_filters, p6_matched_filters
from icl_stl.report.rules import ReportConfig
from icl_stl.report.verdict import CONFIRMED, NOT_APPLICABLE, NOT_TESTED, REFUTED

CFG = ReportConfig()
SEEDS = tuple(range(10))
G = 8
BASE = {"task.d": 3, "task.k": 8, "model.arch": "gpt2", "loop.learner": "transformer",
        "loop.synthetic": "replace", "train.steps": 100, "loop.real_fraction": 0.0, "seed": 0}


def _records(run: str, filter_: str, model_excess, spread: float = 1.0,
             model_z2=lambda g: 1.0 + g * 0.1, fields: bool = True) -> list[dict]:
    out = []
    for s in SEEDS:
        for g in range(G + 1):
            for labeller in ("model", "oracle"):
                wiggle = 1 + 0.05 * math.sin(7 * s + 3 * g + (labeller == "oracle"))
                excess = (model_excess(g) if labeller == "model" and g else 0.03) * wiggle
                z2 = (model_z2(g) if labeller == "model" else 1.0 + g * 0.1) * wiggle
                kept = (spread if labeller == "model" else 1.0) * wiggle
                rec = {"run": run, "config": f"loop.filter={filter_}", "seed": s,
                       "real_fraction": 0.0, "n": 10_000, "generation": g, "augment": 0,
                       "labeller": labeller, "test_risk": RIDGE * 1.01, "ridge_risk": RIDGE,
                       "zero_risk": ZERO, "bayes_excess": excess}
                if fields:
                    rec["head_z2"] = z2
                if fields and g:  # the training set's: a filtered loop's kept prompts
                    rec["syn_w_cov_ratio"] = kept
                if filter_ != "none" and g and fields:
                    rec |= {"filter_w_cov_ratio_after": kept,
                            "filter_w_norm_ratio_after": math.sqrt(kept)}
                out.append(rec)
    return out


def _settings(filter_: str) -> dict:
    extra = {} if filter_ == "none" else {"loop.filter": filter_, "loop.filter_keep": 0.5}
    return {**BASE, **extra}


def collapsing(g: int) -> float:
    return 0.03 * (1 + 0.259 * g)


def _verdict(filtered_excess, filter_: str = "residual", spread: float = 1.0, **kw):
    records = (_records("plain", "none", collapsing)
               + _records(filter_, filter_, filtered_excess, spread, **kw))
    settings = {"plain": _settings("none"), filter_: _settings(filter_)}
    return p6_matched_filters.verdict(Evidence.from_records(records, settings), CFG)


def test_an_admitted_filter_that_removes_collapse_is_confirmed():
    pred = _verdict(lambda g: 0.03)
    (group,) = pred.groups
    assert group.verdict == CONFIRMED and pred.verdict == CONFIRMED
    assert pred.rules_version == "v2"
    assert group.parts["calibration_interaction"]["verdict"] == CONFIRMED
    assert group.parts["spread_interaction"]["verdict"] == CONFIRMED
    assert group.estimate == pytest.approx(-sum(math.log1p(0.259 * g) for g in range(1, G + 1))
                                           / G, abs=0.05)
    assert group.parts["kept_spread"]["filter_w_cov_ratio_after"]["model"] == pytest.approx(
        1.0, abs=0.01)
    assert group.parts["head_z2"]["filtered"]["model"] == pytest.approx(1.45, abs=0.02)
    assert group.scale == "excess_risk" and "oracle-labelled loop" in group.control


def test_an_admitted_filter_that_does_nothing_is_refuted():
    pred = _verdict(collapsing, "density_ratio")
    assert pred.groups[0].verdict == REFUTED and pred.verdict == REFUTED


def test_a_filter_that_moves_the_collapse_to_calibration_is_refuted():
    """The pilot's residual filter: excess risk held down while the head grows over-confident
    (its z^2 a half more than the unfiltered loop's by generation 4)."""
    pred = _verdict(lambda g: 0.03, model_z2=lambda g: (1.0 + g * 0.1) * (1 + 0.12 * g))
    (group,) = pred.groups
    assert group.parts["excess_interaction"]["verdict"] == CONFIRMED
    assert group.parts["calibration_interaction"]["verdict"] == REFUTED
    assert group.verdict == REFUTED and pred.verdict == REFUTED


def test_a_filter_that_shrinks_the_kept_spread_in_the_loop_is_refuted():
    pred = _verdict(lambda g: 0.03, spread=0.6)
    (group,) = pred.groups
    assert group.parts["spread_interaction"]["verdict"] == REFUTED
    assert group.parts["spread_interaction"]["estimate"] == pytest.approx(math.log(0.6), abs=0.02)
    assert group.verdict == REFUTED


def test_a_small_co_primary_cost_inside_the_margins_still_confirms():
    pred = _verdict(lambda g: 0.03, spread=0.92, model_z2=lambda g: (1.0 + g * 0.1) * 1.08)
    assert pred.groups[0].verdict == CONFIRMED


def test_without_the_co_primary_scales_not_tested():
    records = (_records("plain", "none", collapsing, fields=False)
               + _records("residual", "residual", lambda g: 0.03, fields=False))
    settings = {"plain": _settings("none"), "residual": _settings("residual")}
    pred = p6_matched_filters.verdict(Evidence.from_records(records, settings), CFG)
    assert pred.groups[0].verdict == NOT_TESTED
    assert "co-primary" in pred.groups[0].numbers


def test_the_primary_group_is_the_residual_filter():
    records = (_records("plain", "none", collapsing)
               + _records("density_ratio", "density_ratio", collapsing)
               + _records("residual", "residual", lambda g: 0.03))
    settings = {"plain": _settings("none"), "residual": _settings("residual"),
                "density_ratio": _settings("density_ratio")}
    pred = p6_matched_filters.verdict(Evidence.from_records(records, settings), CFG)
    assert "filter=residual" in pred.primary and len(pred.groups) == 2
    # both counted: the density-ratio filter's refutation is a claim about every admitted filter
    assert pred.verdict == REFUTED


def test_a_filter_not_admitted_is_not_judged_and_shows_its_spread():
    pred = _verdict(lambda g: 0.03, "verifier", spread=0.52)
    (group,) = pred.groups
    assert group.verdict == NOT_APPLICABLE and not group.counted
    assert "filter not admitted" in group.numbers and "0.52" in group.numbers
    assert pred.verdict == NOT_TESTED  # no counted group


def test_without_the_unfiltered_pair_not_tested():
    records = _records("residual", "residual", lambda g: 0.03)
    pred = p6_matched_filters.verdict(
        Evidence.from_records(records, {"residual": _settings("residual")}), CFG)
    assert pred.groups[0].verdict == NOT_TESTED


def test_registry():
    assert p6_matched_filters in REGISTRY and p6_filters not in REGISTRY
    assert p6_filters in REGISTRY_V1 and p6_matched_filters not in REGISTRY_V1
