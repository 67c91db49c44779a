"""P6, version 2 (provisional): planted records of four loops per seed (filtered and unfiltered,
each beside its oracle twin) flip the verdict; filters not admitted are not judged and show
their kept spread; the registry's version 2 judges P6 with this module."""

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


def _records(run: str, filter_: str, model_excess, spread: float = 1.0) -> list[dict]:
    out = []
    for s in SEEDS:
        for g in range(G + 1):
            for labeller in ("model", "oracle"):
                wiggle = 1 + 0.05 * math.sin(7 * s + 3 * g + (labeller == "oracle"))
                excess = (model_excess(g) if labeller == "model" and g else 0.03) * wiggle
                rec = {"run": run, "config": f"loop.filter={filter_}", "seed": s,
                       "real_fraction": 0.0, "n": 10_000, "generation": g, "augment": 0,
                       "labeller": labeller, "test_risk": RIDGE * 1.01, "ridge_risk": RIDGE,
                       "zero_risk": ZERO, "bayes_excess": excess, "head_z2": 1.0 + g * 0.1}
                if filter_ != "none" and g:
                    rec |= {"filter_w_cov_ratio_after": spread,
                            "filter_w_norm_ratio_after": math.sqrt(spread)}
                out.append(rec)
    return out


def _settings(filter_: str) -> dict:
    extra = {} if filter_ == "none" else {"loop.filter": filter_, "loop.filter_keep": 0.5}
    return {**BASE, **extra}


def collapsing(g: int) -> float:
    return 0.03 * (1 + 0.259 * g)


def _verdict(filtered_excess, filter_: str = "residual", spread: float = 1.0):
    records = (_records("plain", "none", collapsing)
               + _records(filter_, filter_, filtered_excess, spread))
    settings = {"plain": _settings("none"), filter_: _settings(filter_)}
    return p6_matched_filters.verdict(Evidence.from_records(records, settings), CFG)


def test_an_admitted_filter_that_removes_collapse_is_confirmed():
    pred = _verdict(lambda g: 0.03)
    (group,) = pred.groups
    assert group.verdict == CONFIRMED and pred.verdict == CONFIRMED
    assert pred.rules_version == "v2-provisional"
    assert group.estimate == pytest.approx(-sum(math.log1p(0.259 * g) for g in range(1, G + 1))
                                           / G, abs=0.05)
    assert group.parts["kept_spread"]["filter_w_cov_ratio_after"]["model"] == pytest.approx(1.0)
    assert group.parts["head_z2"]["filtered"]["model"] == pytest.approx(1.45)
    assert group.scale == "excess_risk" and "oracle-labelled loop" in group.control


def test_an_admitted_filter_that_does_nothing_is_refuted():
    pred = _verdict(collapsing, "density_ratio")
    assert pred.groups[0].verdict == REFUTED and pred.verdict == REFUTED


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
