"""Prediction 9 (accumulation with S_0 kept) through `icl-stl-report` over planted runs: it reads
the accumulate_s0 arm against the same seed's oracle-labelled replace loop, over the window the
reference learner fixes, with the version-2 fields, shows the contrast against the arm's own
oracle twin beside, and never lets an accumulating run count for P1."""

from __future__ import annotations

import math

import pytest
from test_rules_v2 import judge as judge_v2
from test_rules_v2 import matched, record, wobble, write

from icl_stl.report.predictions.p9_accumulation import p9_window, p9_window_start
from icl_stl.report.rules import ReportConfig
from icl_stl.theory.accumulation import window_start

CFG = ReportConfig()
SEEDS = tuple(range(8))


def settings(arm: str) -> dict:
    return {"task": {"d": 2, "k": 5}, "model": {"arch": "gpt2"},
            "train": {"steps": 100, "batch_size": 64},
            "loop": {"learner": "transformer", "synthetic": arm, "init": "from_scratch"},
            "seed": 0}


def plant(tmp, contrast, arm="accumulate_s0", generations=CFG.v2_p9_horizon, name=None,
          control=True, **extra):
    """The arm's loops beside their own oracle twins (`matched`: generation 0 shared, the
    twin's excess risk 0.03 x a wobble). With `control`, also the same seeds' oracle-only
    replace run, whose excess risk is `control` x the twin's where a number is given."""
    records = matched(contrast, lams=(0.0,), seeds=SEEDS, generations=generations, **extra)
    if arm != "replace":
        for r in records:
            r["synthetic"] = arm
    write(tmp, records, name or arm, settings(arm))
    if control is not False and arm == "accumulate_s0":
        plant_control(tmp, generations, (lambda s, g: 1.0) if control is True else control)


def plant_control(tmp, generations, factor, name="replace_oracle"):
    """An oracle-labelled replace run of the same seeds: its twin-like excess risk (the same
    formula as `matched`'s oracle arm) times factor(seed, generation) after generation 0."""
    records = [r for r in matched(lambda lam, s, g: 0.0, lams=(0.0,), seeds=SEEDS,
                                  generations=generations) if r["labeller"] == "oracle"]
    for r in records:
        if r["generation"]:
            r.update(bayes_excess=r["bayes_excess"] * factor(r["seed"], r["generation"]))
    oracle_only = settings("replace")
    oracle_only["loop"]["labeller"] = "oracle"
    write(tmp, records, name, oracle_only)


def p9(data: dict) -> dict:
    return data["verdicts"]["9"]


def bounded(lam, s, g):
    return 0.15 + wobble(s, g, 0.02)


def rising(lam, s, g):
    return 0.12 * g + wobble(s, g, 0.02)


def test_the_window_starts_where_the_reference_learner_settles():
    assert p9_window_start(CFG) == window_start(CFG.v2_delta2, 0.2) == 6
    assert p9_window(CFG, list(range(1, 13))) == list(range(6, 13))
    assert p9_window(CFG, list(range(1, 8))) is None  # 6-7: shorter than v2_p9_min_window


def test_a_window_too_short_is_not_judged(tmp_path):
    plant(tmp_path, bounded, generations=7)
    cfg = ReportConfig(v2_p9_horizon=7)
    out = p9(judge_v2(tmp_path, cfg))
    assert out["verdict"] == "not applicable", out["numbers"]


def test_a_bounded_accumulating_loop_is_confirmed_with_the_v2_fields(tmp_path):
    plant(tmp_path, bounded)
    out = p9(judge_v2(tmp_path))
    assert out["verdict"] == "confirmed", out["numbers"]
    assert out["rules_version"] == "v2"
    assert out["scale"] == "excess_risk" and "oracle-labelled replace loop" in out["control"]
    assert out["seeds"] == len(SEEDS)
    assert out["margins"]["i_0"] == 6 and out["margins"]["delta_2"] == CFG.v2_delta2
    group = out["groups"][0]
    assert group["left_out"]["missed_gate"] == 0
    part = group["parts"]["p1_statistic_below_delta_1"]
    G = CFG.v2_p9_horizon
    expected = sum(bounded(0, s, g) for s in SEEDS for g in range(1, G + 1)) / (G * len(SEEDS))
    assert part["estimate"] == pytest.approx(expected, rel=1e-9)
    # the control is as flat as the own twin here, so the two contrasts agree
    own = group["parts"]["own_twin"]
    assert own["seeds"] == list(SEEDS)
    assert own["mean_log_contrast"] == pytest.approx(expected, rel=1e-9)


def test_the_control_is_the_replace_loop_not_the_arms_own_twin(tmp_path):
    """The own twin keeps improving (0.1 per generation in log): against it the loop rises,
    against the stationary replace control it is bounded. P9 reads the control and shows the
    own-twin contrast, its slope and the twin's trend beside."""
    plant(tmp_path, lambda lam, s, g: bounded(lam, s, g) + 0.1 * g,
          control=lambda s, g: math.exp(0.1 * g))
    out = p9(judge_v2(tmp_path))
    assert out["verdict"] == "confirmed", out["numbers"]
    own = out["groups"][0]["parts"]["own_twin"]
    assert own["slope_over_window"] == pytest.approx(0.1, abs=0.02)
    assert own["twin_trend"] == pytest.approx(0.0, abs=0.1)  # `matched`'s twin only wobbles
    assert "against its own oracle twin (not decisive)" in out["groups"][0]["numbers"]


def test_a_loop_rising_against_the_control_is_refuted_whatever_its_own_twin_does(tmp_path):
    plant(tmp_path, bounded, control=lambda s, g: math.exp(-0.12 * g))
    assert p9(judge_v2(tmp_path))["verdict"] == "refuted"


def test_without_the_replace_control_nothing_is_judged(tmp_path):
    plant(tmp_path, bounded, control=False)
    out = p9(judge_v2(tmp_path))
    assert out["verdict"] == "not tested"
    assert "replace arm's oracle-labelled loop" in out["groups"][0]["numbers"]


def test_a_control_of_other_seeds_or_another_s0_is_not_a_control(tmp_path):
    plant(tmp_path, bounded, control=False)
    records = [r for r in matched(lambda lam, s, g: 0.0, lams=(0.0,),
                                  seeds=tuple(s + 100 for s in SEEDS),
                                  generations=CFG.v2_p9_horizon) if r["labeller"] == "oracle"]
    records += [record(s, 0.0, g, "oracle", 0.03, s0="another") for s in SEEDS
                for g in range(CFG.v2_p9_horizon + 1)]
    oracle_only = settings("replace")
    oracle_only["loop"]["labeller"] = "oracle"
    write(tmp_path, records, "elsewhere", oracle_only)
    assert p9(judge_v2(tmp_path))["verdict"] == "not tested"


def test_a_rising_accumulating_loop_is_refuted(tmp_path):
    plant(tmp_path, rising)
    assert p9(judge_v2(tmp_path))["verdict"] == "refuted"


def test_a_short_horizon_is_not_tested(tmp_path):
    plant(tmp_path, bounded, generations=CFG.v2_p9_horizon - 1)
    out = p9(judge_v2(tmp_path))
    assert out["verdict"] == "not tested"


def test_only_the_primary_arm_is_judged_and_the_others_are_shown(tmp_path):
    """A replace run that collapses and a volume-matched run beside the accumulating one: P9
    judges the accumulating loops, lists the other arms, and P1 reads only the replace run."""
    plant(tmp_path, bounded, control=False)  # the replace pair's oracle loop is the control
    plant(tmp_path, rising, arm="replace")
    plant(tmp_path, lambda lam, s, g: 0.05 + wobble(s, g, 0.02), arm="volume_matched")
    data = judge_v2(tmp_path)
    out = p9(data)
    assert out["verdict"] == "confirmed" and len(out["groups"]) == 1
    others = out["groups"][0]["parts"]["other_arms"]
    assert set(others) == {"replace", "volume_matched"}
    assert others["replace"]["mean_log_contrast"] > others["volume_matched"][
        "mean_log_contrast"]
    p1 = data["verdicts"]["1"]
    counted = [g for g in p1["groups"] if g["counted"]]
    assert len(counted) == 1 and "replace" in counted[0]["group"]


def test_accumulating_runs_alone_never_count_for_p1(tmp_path):
    plant(tmp_path, rising)
    p1 = judge_v2(tmp_path)["verdicts"]["1"]
    assert p1["verdict"] == "not tested" and not any(g["counted"] for g in p1["groups"])


def test_a_reference_learner_run_is_shown_not_counted(tmp_path):
    plant(tmp_path, bounded)
    reference = settings("accumulate_s0")
    reference["loop"]["learner"] = "gaussian_prior"
    records = matched(bounded, lams=(0.0,), seeds=SEEDS, generations=CFG.v2_p9_horizon)
    write(tmp_path, [{**r, "synthetic": "accumulate_s0"} for r in records], "reference",
          reference)
    groups = p9(judge_v2(tmp_path))["groups"]
    assert sorted((("gaussian_prior" in g["group"]), g["counted"]) for g in groups) == [
        (False, True), (True, False)]
