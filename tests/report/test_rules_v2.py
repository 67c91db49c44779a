"""Version-2 rules (docs/THEORY.md section 8): P1 and P2 on excess risk against each loop's
matched oracle-labelled control, through `icl-stl-report` over planted run directories.

Each planted loop has a twin labelled by the oracle: the same seed, lambda, n and S_0, and the
same generation 0. The oracle loop's excess risk wanders from one retrain to the next; the
loop's is the oracle's times exp(contrast(lambda, seed, generation)), so every test plants the
contrast the rules read and checks the verdict they reach.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from icl_stl.persistence import atomic_write_json
from icl_stl.report.predictions.p2_matched_bounded import transient_end
from icl_stl.report.report import write_report
from icl_stl.report.rules import ReportConfig

K, RIDGE, ZERO = 5, 0.1, 1.0
SEEDS = tuple(range(8))
SETTINGS = {"task": {"d": 2, "k": K}, "model": {"arch": "gpt2"},
            "train": {"steps": 100, "batch_size": 64},
            "loop": {"learner": "transformer", "synthetic": "replace", "init": "from_scratch"},
            "seed": 0}
CFG = ReportConfig()  # the committed version-2 margins


def wobble(seed: int, g: int, scale: float) -> float:
    return scale * math.sin(2.3 * seed + 1.7 * g + 0.4)


def record(seed: int, lam: float, g: int, labeller: str, excess: float, n: int = 1000,
           **extra) -> dict:
    """One loop's generation record as the loop writes it (version-2 fields included)."""
    s0 = f"{seed:04d}{n:08d}abcdef"
    return {"member": 0, "seed": seed, "real_fraction": lam, "n": n, "augment": 0, "tag": "",
            "labeller": labeller, "regime": "from_scratch", "s0": s0,
            "pair": f"seed={seed} n={n} m=0 lambda={lam} s0={s0[:12]} regime=from_scratch",
            "generation": g, "test_risk": RIDGE + excess, "ridge_risk": RIDGE,
            "excess_risk": excess, "bayes_excess": excess, "bayes_excess_se": 0.01 * excess,
            "test_risk_per_position": [RIDGE + excess] * K, "train_risk": 0.1,
            "zero_risk": ZERO, **extra}


def matched(contrast, lams=(0.0, 0.5), seeds=SEEDS, generations=8, base=0.03,
            oracle_noise=0.15, **extra) -> list[dict]:
    """Records of loops and their oracle twins; generation 0 shared (contrast 0 there)."""
    out = []
    for lam in lams:
        for s in seeds:
            for g in range(generations + 1):
                oracle = base * math.exp(wobble(s, g, oracle_noise) if g else 0.0)
                model = oracle * math.exp(contrast(lam, s, g) if g else 0.0)
                out.append(record(s, lam, g, "oracle", oracle, **extra))
                out.append(record(s, lam, g, "model", model, **extra))
    return out


def collapse(lam: float, seed: int, g: int) -> float:
    """Growth at lambda = 0; at lambda > 0 a rise that settles (the transient) and stays."""
    if lam == 0:
        return 0.25 * g + wobble(seed, g, 0.1)
    return 0.1 * (1 - (1 - lam) ** (g + 1)) ** 2 + wobble(seed, g, 0.05)


def write(tmp: Path, records: list[dict], name: str = "a", settings: dict = SETTINGS) -> None:
    atomic_write_json(tmp / "runs" / name / "summary.json", {
        "members": [], "generations": records, "settings": settings, "ridge_alpha": 0.0,
        "baselines": {"ridge": {"risk": RIDGE}, "zero": {"risk": ZERO}}})


def judge(tmp: Path, cfg: ReportConfig = CFG, figures: bool = False) -> dict:
    write_report([tmp / "runs"], tmp / "report", cfg, figures=figures)
    return json.loads((tmp / "report" / "verdicts.json").read_text())


def test_collapse_and_bounded_against_the_matched_control(tmp_path):
    write(tmp_path, matched(collapse))
    data = judge(tmp_path, figures=True)
    p1, p2 = data["verdicts"]["1"], data["verdicts"]["2"]
    assert data["rules"] == "v2"
    assert p1["verdict"] == "confirmed" and p2["verdict"] == "confirmed"
    for p in (p1, p2):
        assert p["scale"] == "excess_risk" and "oracle-labelled" in p["control"]
        assert p["seeds"] == len(SEEDS)
    assert p1["margins"] == {"delta_1": CFG.v2_delta1}
    assert p2["margins"]["i_0"] == 4 and p2["margins"]["delta_2"] == CFG.v2_delta2
    # the estimate is the mean log contrast over generations 1..8
    expected = sum(collapse(0.0, s, g) for s in SEEDS for g in range(1, 9)) / (8 * len(SEEDS))
    assert p1["estimate"] == pytest.approx(expected, rel=1e-9)
    assert list((tmp_path / "report" / "figures").glob("matched_*.png"))


def test_no_growth_at_lambda_zero_refutes_p1(tmp_path):
    write(tmp_path, matched(lambda lam, s, g: wobble(s, g, 0.05)))
    assert judge(tmp_path)["verdicts"]["1"]["verdict"] == "refuted"


def test_a_loop_that_collapses_is_never_certified_bounded(tmp_path):
    """Flat over the window, but its excess risk sits far above the control's: P1's statistic
    exceeds delta_1, so the joint test refutes boundedness."""
    write(tmp_path, matched(lambda lam, s, g: 1.0 + wobble(s, g, 0.02), lams=(0.5,)))
    p2 = judge(tmp_path)["verdicts"]["2"]
    assert p2["verdict"] == "refuted"
    part = p2["groups"][0]["parts"]["p1_statistic_below_delta_1"]
    assert part["estimate"] > CFG.v2_delta1


def test_growth_after_the_transient_refutes_p2(tmp_path):
    write(tmp_path, matched(lambda lam, s, g: 0.2 * max(0, g - 3) + wobble(s, g, 0.02),
                            lams=(0.5,)))
    assert judge(tmp_path)["verdicts"]["2"]["verdict"] == "refuted"


def test_a_bounded_loop_in_its_transient_is_not_judged_and_not_refuted(tmp_path):
    """lambda = 0.25: (0.75)^(i+1) <= 0.05 first at i = 10 > 2G/3, so not judged at G = 8."""
    write(tmp_path, matched(collapse, lams=(0.25,)))
    p2 = judge(tmp_path)["verdicts"]["2"]
    assert p2["groups"][0]["verdict"] == "not applicable"
    assert transient_end(0.25, 0.05) == 10 and transient_end(0.5, 0.05) == 4
    assert transient_end(0.9, 0.05) == 1


def test_a_short_horizon_is_not_tested(tmp_path):
    write(tmp_path, matched(collapse, generations=5))
    data = judge(tmp_path)
    assert data["verdicts"]["1"]["verdict"] == "not tested"
    assert "horizon of 8" in data["verdicts"]["1"]["groups"][0]["numbers"]
    assert "generations 1..5:" in data["verdicts"]["1"]["groups"][0]["numbers"]


def test_generation_0_alone_is_read_as_such(tmp_path):
    write(tmp_path, matched(collapse, generations=0))
    data = judge(tmp_path)
    for p in "12":
        assert data["verdicts"][p]["verdict"] == "not tested"
        assert "generation 0 only: needs a horizon of 8" in data["verdicts"][p]["groups"][0][
            "numbers"]


def test_two_seeds_are_underpowered(tmp_path):
    write(tmp_path, matched(collapse, seeds=(0, 1)))
    data = judge(tmp_path)
    assert data["verdicts"]["1"]["verdict"] == "underpowered"
    assert data["verdicts"]["2"]["verdict"] == "underpowered"


def test_a_loop_whose_own_generation_0_misses_the_gate_is_left_out_and_counted(tmp_path):
    records = matched(collapse)
    for r in records:  # seed 3's lambda = 0 loop (both arms share its generation 0)
        if r["seed"] == 3 and r["real_fraction"] == 0 and r["generation"] == 0:
            r["test_risk"] = RIDGE + 0.2  # closes 78% of the gap
    write(tmp_path, records)
    p1 = judge(tmp_path)["verdicts"]["1"]
    group = p1["groups"][0]
    assert p1["seeds"] == len(SEEDS) - 1 and group["left_out"]["missed_gate"] == 1
    assert "seed 3" in group["left_out"]["loops"][0] and "1 loop(s) left out" in group["numbers"]
    # the lambda = 0.5 loops of seed 3 passed their own gate and still count
    assert judge(tmp_path)["verdicts"]["2"]["seeds"] == len(SEEDS)


def test_a_failed_later_generation_is_a_training_failure_not_collapse(tmp_path):
    records = matched(lambda lam, s, g: wobble(s, g, 0.05))  # no collapse anywhere
    for r in records:  # seed 5's lambda = 0 loop is back on the plateau in generation 4
        if (r["seed"], r["real_fraction"], r["generation"], r["labeller"]) == (5, 0, 4, "model"):
            r.update(test_risk=0.97 * ZERO, bayes_excess=0.9)
    write(tmp_path, records)
    group = judge(tmp_path)["verdicts"]["1"]["groups"][0]
    assert group["left_out"]["training_failures"] == 1 and group["seeds"] == len(SEEDS) - 1
    assert "generation 4 (model arm) on the plateau" in group["left_out"]["loops"][0]
    assert group["verdict"] == "refuted"  # read on the loops that trained: no collapse


def test_training_risk_far_above_the_oracle_arms_is_a_training_failure(tmp_path):
    records = matched(collapse)
    for r in records:
        if (r["seed"], r["real_fraction"], r["generation"], r["labeller"]) == (2, 0, 6, "model"):
            r["train_risk"] = 10 * CFG.failure_train_ratio
    write(tmp_path, records)
    group = judge(tmp_path)["verdicts"]["1"]["groups"][0]
    assert group["left_out"]["training_failures"] == 1


def test_the_control_may_come_from_a_run_of_its_own(tmp_path):
    """The oracle arm run separately (loop.labeller=oracle, records without `labeller`)."""
    records = matched(collapse)
    for labeller in ("model", "oracle"):
        own = [{k: v for k, v in r.items() if k != "labeller"} for r in records
               if r["labeller"] == labeller]
        loop = {**SETTINGS["loop"], "labeller": labeller}
        write(tmp_path, own, labeller, {**SETTINGS, "loop": loop})
    data = judge(tmp_path)
    assert data["verdicts"]["1"]["verdict"] == "confirmed"
    assert data["verdicts"]["1"]["seeds"] == len(SEEDS)


def test_records_without_the_excess_over_bayes_are_not_read_by_version_2(tmp_path):
    write(tmp_path, [{k: v for k, v in r.items() if k != "bayes_excess"}
                     for r in matched(collapse)])
    assert judge(tmp_path)["verdicts"]["1"]["verdict"] == "not tested"


def test_shuffled_records_give_the_same_verdicts(tmp_path):
    records = matched(collapse)
    write(tmp_path / "one", records)
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    write(tmp_path / "two", shuffled)
    first, second = judge(tmp_path / "one"), judge(tmp_path / "two")
    for data in (first, second):
        data.pop("runs")
    assert first == second


@pytest.mark.parametrize("key, value", [("rules", "v3"), ("v2_delta1", "0"),
                                        ("v2_transient", "1.5"), ("v2_horizon", "2")])
def test_bad_version_2_settings_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        ReportConfig.from_overrides([f"{key}={value}"])


def test_seeds_enter_in_a_fixed_order_up_to_the_stated_count(tmp_path):
    records = matched(collapse)
    for r in records:  # seed 1 misses the gate: seeds 0, 2, 3, 4, 5 are the first five read
        if r["seed"] == 1 and r["generation"] == 0:
            r["test_risk"] = RIDGE + 0.3
    write(tmp_path, records)
    data = judge(tmp_path, ReportConfig(v2_p1_seeds=5))
    group = data["verdicts"]["1"]["groups"][0]
    assert data["verdicts"]["1"]["seeds"] == 5
    assert group["left_out"]["missed_gate"] == 1 and group["left_out"]["beyond_count"] == [6, 7]


def test_training_failures_are_counted_beside_the_gate(tmp_path):
    records = matched(collapse)
    for r in records:
        if (r["seed"], r["real_fraction"], r["generation"], r["labeller"]) == (1, 0.5, 7, "oracle"):
            r["test_risk"] = 0.9 * ZERO
    write(tmp_path, records)
    failures = judge(tmp_path)["ridge_gate"]["training_failures"]
    assert failures["pairs"] == 2 * len(SEEDS) and failures["failed"] == 1
    assert "generation 7 (oracle arm)" in failures["generations"][0]
