"""Predictions 6-8 (filters, schedules, task pools) are judged from the data: planted records
flip each verdict, comparison loops are found in other runs by base configuration, n and seed,
and REPORT.md / verdicts.json carry P6-P8 beside P1-P5. No model is trained here; the rules'
error rates are checked on simulated draws in tests/report/test_calibration.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_report import RIDGE, ZERO, K, write_loop

from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import base_settings, plain_index, tag
from icl_stl.report.predictions import p6_filters, p7_schedules, p8_pools
from icl_stl.report.predictions.p7_schedules import floor_reached
from icl_stl.report.report import verdicts_of, write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.report.verdict import Prediction

CFG = ReportConfig()


def verdict_p6(records: list[dict], settings: dict, cfg: ReportConfig) -> Prediction:
    return p6_filters.verdict(Evidence.from_records(records, settings), cfg)


def verdict_p7(records: list[dict], settings: dict, cfg: ReportConfig) -> Prediction:
    return p7_schedules.verdict(Evidence.from_records(records, settings), cfg)


def verdict_p8(records: list[dict], settings: dict, cfg: ReportConfig) -> Prediction:
    return p8_pools.verdict(Evidence.from_records(records, settings), cfg)


SEEDS = tuple(range(6))
N = 40
BASE = {"task.d": 2, "task.k": K, "model.arch": "gpt2", "loop.learner": "transformer",
        "loop.synthetic": "replace", "loop.labeller": "model", "train.steps": 100,
        "loop.real_fraction": 0.5, "loop.rounding": "exact", "seed": 0}


def wiggle(seed: int, g: int, scale: float = 0.001) -> float:
    return scale * math.sin(7 * seed + 3 * g + 1)


def rec(run: str, seed: int, lam: float, g: int, risk: float, **extra) -> dict:
    return {"run": run, "seed": seed, "real_fraction": lam, "n": extra.pop("n", N),
            "generation": g, "test_risk": risk, "ridge_risk": RIDGE, "zero_risk": ZERO,
            "augment": 0, **extra}


def curve(run: str, lam: float, risk, seeds=SEEDS, generations: int = 6, **extra) -> list[dict]:
    return [rec(run, s, lam, g, risk(s, g), **extra) for s in seeds
            for g in range(generations + 1)]


def growing(s: int, g: int) -> float:
    return 0.15 + 0.05 * g + wiggle(s, g)


def flat(level: float):
    return lambda s, g: (0.15 if g == 0 else level) + wiggle(s, g)


def collapse_run(lams=(0.0, 0.25), zero=growing) -> tuple[list[dict], dict]:
    recs = [r for lam in lams for r in curve("collapse", lam, zero if lam == 0 else flat(0.2))]
    return recs, {"collapse": dict(BASE)}


# ---------------------------------------------------------------------------------------------
# Pairing across runs


def test_base_configuration_drops_extensions_members_and_seeds():
    flat_settings = {**BASE, "loop.filter": "verifier", "loop.filter_keep": 0.5,
                     "loop.verifier_n_real": 4, "loop.real_schedule": "linear",
                     "loop.real_schedule_floor": 0.25, "task.n_tasks": 2,
                     "members.seeds": [0, 1], "run.name": "x", "logger.wandb": False,
                     "seed": 3, "loop.rounding": "round", "loop.generations": 6}
    base = base_settings(flat_settings)
    assert base == {k: v for k, v in BASE.items() if k not in ("seed", "loop.real_fraction",
                                                               "loop.rounding")} | {
        "loop.generations": 6}
    assert "loop.generations" not in base_settings(flat_settings, drop_generations=True)
    # a run differing in a real setting is another base: no pairing across it
    other = base_settings({**flat_settings, "train.steps": 200})
    assert other != base


def test_comparison_loops_come_from_other_runs_by_base_n_and_seed():
    recs, settings = collapse_run()
    recs += curve("other_lr", 0.0, growing, seeds=(0,))  # another base: never paired
    settings["other_lr"] = {**BASE, "train.lr": 0.01}
    recs += curve("verifier", 0.0, flat(0.2), seeds=(0, 1, 2))
    settings["verifier"] = {**BASE, "seed": 7, "loop.filter": "verifier",
                            "loop.filter_keep": 0.5, "loop.rounding": "round"}
    tagged = tag(recs, settings)
    index = plain_index(tagged)
    verifier = next(r for r in tagged if r["run"] == "verifier")
    collapse = next(r for r in tagged if r["run"] == "collapse")
    assert verifier["base"] == collapse["base"] and verifier["filter"] == "verifier"
    paired = index[(verifier["base"], N, 0.0)]
    assert sorted(paired) == list(SEEDS) and paired[0][6]["run"] == "collapse"
    assert verifier["base_label"] == "train.lr=None" and "train.lr=0.01" in next(
        r for r in tagged if r["run"] == "other_lr")["base_label"]


# ---------------------------------------------------------------------------------------------
# P6


def filter_runs(levels: dict[str, float | None], seeds=SEEDS, risk=None, gate_start=0.15
                ) -> tuple[list[dict], dict]:
    """The collapse run plus one verifier run per n_real (None: all of S_0) at those plateaus."""
    recs, settings = collapse_run()
    for i, (n_real, level) in enumerate(levels.items()):
        name = f"verifier_{n_real}"
        fn = risk or flat(level)
        recs += [{**r, "test_risk": gate_start + wiggle(r["seed"], 0)} if r["generation"] == 0
                 else r for r in curve(name, 0.0, fn, seeds=seeds)]
        settings[name] = {**BASE, "seed": i, "loop.filter": "verifier", "loop.filter_keep": 0.5,
                          **({} if n_real == "all" else {"loop.verifier_n_real": n_real})}
    return recs, settings


def test_p6_confirmed_when_filtered_loops_are_flat_and_a_better_verifier_is_lower():
    recs, settings = filter_runs({"all": 0.2, 4: 0.3})
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "confirmed", p6.numbers
    assert "n_real=all" in p6.primary and p6.sub["quality"].verdict == "confirmed"
    primary = p6.primary_group()
    assert primary.parts["b"]["verdict"] == "confirmed"
    assert primary.parts["unfiltered"]["verdict"] == "confirmed" and primary.reading == ""


def test_p6_refuted_when_the_filtered_loop_grows():
    recs, settings = filter_runs({"all": None}, risk=growing)
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "refuted"
    assert p6.sub["quality"].verdict == "not tested"  # one quality


def test_p6_ordering_refuted_when_the_worse_verifier_is_lower():
    recs, settings = filter_runs({"all": 0.3, 4: 0.2})
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.sub["quality"].verdict == "refuted" and p6.verdict == "refuted"


def test_p6_inconclusive_at_the_margin_and_reading_when_the_unfiltered_loop_does_not_grow():
    slope = CFG.p6_margin * 0.2  # exactly the margin of a 0.2 plateau

    def at_margin(s, g):
        return 0.15 if g == 0 else 0.2 + slope * (g - 5) + wiggle(s, g, 0.0002)

    recs, settings = filter_runs({"all": None}, risk=at_margin)
    recs = [r for r in recs if not (r["run"] == "collapse" and r["real_fraction"] == 0)]
    recs += curve("collapse", 0.0, flat(0.15))
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "inconclusive", p6.numbers
    assert "does not confirm collapse" in p6.primary_group().reading


def test_p6_refuted_carries_no_reading_about_a_bounded_loop():
    """A filtered loop that grows is refuted; the reading that qualifies a *bounded* loop
    (its unfiltered twin did not collapse either) would contradict it, so there is none."""
    def growing(s, g):
        return 0.15 if g == 0 else 0.2 * (1 + 0.1 * g) + wiggle(s, g, 0.0002)

    recs, settings = filter_runs({"all": None}, risk=growing)
    recs = [r for r in recs if not (r["run"] == "collapse" and r["real_fraction"] == 0)]
    recs += curve("collapse", 0.0, flat(0.15))
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "refuted", p6.numbers
    assert p6.primary_group().reading == ""
    assert "P1 " in p6.primary_group().numbers  # the unfiltered loop is still shown


def test_p6_underpowered_not_applicable_and_not_tested():
    recs, settings = filter_runs({"all": 0.2}, seeds=SEEDS[:3])
    assert verdict_p6(recs, settings, CFG).verdict == "underpowered"
    recs, settings = filter_runs({"all": 0.2}, gate_start=0.5)  # generation 0 misses the gate
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "not applicable" and "training gate failed" in p6.numbers
    recs, settings = collapse_run()
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "not tested" and not p6.groups


def test_p6_missing_comparison_is_said_and_reference_learner_not_counted():
    recs, settings = filter_runs({"all": 0.2})
    recs = [r for r in recs if r["run"] != "collapse"]
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "confirmed" and "no unfiltered lambda = 0 loop" in p6.reading
    for name in settings:
        settings[name] = {**settings[name], "loop.learner": "gaussian_prior"}
    p6 = verdict_p6(recs, settings, CFG)
    assert p6.verdict == "not tested" and not any(g.counted for g in p6.groups)


# ---------------------------------------------------------------------------------------------
# P7


def schedule_run(floor: float, lam0: float, rate: float, risk, seeds=SEEDS, generations=6,
                 name="sched", schedule="linear") -> tuple[list[dict], dict]:
    from icl_stl.config.schedules import real_fraction

    recs = [{**r, "real_fraction_i": real_fraction(r["generation"], schedule, lam0, rate, floor)}
            for r in curve(name, lam0, risk, seeds=seeds, generations=generations)]
    return recs, {name: {**BASE, "loop.real_schedule": schedule, "loop.real_schedule_rate": rate,
                         "loop.real_schedule_floor": floor, "loop.rounding": "round"}}


def p7(extra: tuple[list[dict], dict], base=None) -> object:
    recs, settings = base or collapse_run()
    return verdict_p7(recs + extra[0], {**settings, **extra[1]}, CFG)


def test_p7_confirmed_refuted_and_inconclusive_against_the_constant_loop_at_the_floor():
    same = p7(schedule_run(0.25, 0.75, 0.25, flat(0.2)))
    assert same.verdict == "confirmed", same.numbers
    assert "schedule=linear" in same.primary and same.primary_group().n_seeds == len(SEEDS)
    higher = p7(schedule_run(0.25, 0.75, 0.25, flat(0.3)))
    assert higher.verdict == "refuted"
    lower = p7(schedule_run(0.25, 0.75, 0.25, flat(0.14)))  # outside on the lower side
    assert lower.verdict == "refuted"
    edge = p7(schedule_run(0.25, 0.75, 0.25, flat(0.2 * 1.1)))  # exactly at the margin
    assert edge.verdict == "inconclusive", edge.numbers


def test_p7_window_not_at_the_floor_is_not_applicable_with_the_generation_it_is_reached():
    slow = p7(schedule_run(0.25, 0.75, 0.05, flat(0.2)))
    assert slow.verdict == "not applicable"
    assert "reaches its floor 0.25 at generation 11" in slow.numbers
    # 0.5 e^{-0.3 (i - 1)} <= 0.1 from i - 1 = ln 5 / 0.3 = 5.4
    assert floor_reached({"schedule": "exponential", "real_fraction": 0.5, "rate": 0.3,
                          "floor": 0.1}) == 7


def test_p7_not_tested_without_the_constant_loop_and_underpowered_with_few_seeds():
    missing = p7(schedule_run(0.25, 0.75, 0.25, flat(0.2)), collapse_run(lams=(0.0,)))
    assert missing.verdict == "not tested" and "no constant-schedule loop" in missing.numbers
    few = p7(schedule_run(0.25, 0.75, 0.25, flat(0.2), seeds=SEEDS[:2]))
    assert few.verdict == "underpowered"
    assert p7(([], {})).verdict == "not tested"


def test_p7_floor_zero_collapse_part():
    grows = p7(schedule_run(0.0, 0.5, 0.25, growing))
    assert grows.sub["collapse"].verdict == "confirmed" and grows.verdict == "not tested"
    assert "constant λ=0 loop" in grows.sub["collapse"].numbers
    stays = p7(schedule_run(0.0, 0.5, 0.25, flat(0.2)))
    assert stays.sub["collapse"].verdict == "refuted"


# ---------------------------------------------------------------------------------------------
# P8


def pool_runs(ratio: float = 4.0, rise: float = 0.0, seeds=SEEDS, m_small: int = 2,
              with_null: bool = True) -> tuple[list[dict], dict]:
    """Pool runs (one per seed, as the presets): M = m_small over 6 generations whose generation-0
    distance to ridge is `ratio` x that to dMMSE (log ratio spread a little by seed) and whose
    risk rises by exp(rise) x the M = null loop's; M = 16, generation 0, closer to ridge."""
    recs, settings = collapse_run(lams=(0.0,)) if with_null else ([], {})
    for s in seeds:
        for m, gens, r in ((m_small, 6, ratio), (16, 0, 0.25)):
            name = f"pool{m}_s{s}"
            dist = {"prior_distance_dmmse": 0.01,
                    "prior_distance_ridge": 0.01 * r * math.exp(wiggle(s, 0, 0.05)),
                    "test_risk_prior": 0.3}
            recs += curve(name, 0.0, lambda s_, g: growing(s_, g) * math.exp(rise * g / 6),
                          seeds=(s,), generations=gens, **dist)
            settings[name] = {**BASE, "seed": s, "task.n_tasks": m}
    return recs, settings


def test_p8_confirmed_when_the_pool_tracks_dmmse_and_drifts_differently():
    p8 = verdict_p8(*pool_runs(ratio=4.0, rise=0.5), CFG)
    assert p8.verdict == "confirmed", p8.numbers
    g = p8.primary_group()
    assert g.parts["a"]["M"] == 2 and g.parts["b"]["verdict"] == "confirmed"
    assert "estimated threshold: M=16" in g.numbers


def test_p8_refuted_inconclusive_underpowered_and_not_tested():
    assert verdict_p8(*pool_runs(ratio=0.25, rise=0.5), CFG).verdict == "refuted"
    same = verdict_p8(*pool_runs(ratio=4.0, rise=0.0), CFG)  # (b): the same drift
    assert same.verdict == "refuted" and same.primary_group().parts["b"]["verdict"] == "refuted"
    alone = verdict_p8(*pool_runs(ratio=4.0, with_null=False), CFG)
    assert alone.verdict == "inconclusive" and "P8 needs both parts" in alone.reading
    assert verdict_p8(*pool_runs(seeds=SEEDS[:3]), CFG).verdict == "underpowered"
    above = verdict_p8(*pool_runs(m_small=4), CFG)  # no M <= d = 2
    assert above.verdict == "not tested" and "no pool with M <= d = 2" in above.numbers


def test_p8_gate_failure_is_not_applicable():
    recs, settings = pool_runs(ratio=4.0, rise=0.5)
    recs = [{**r, "test_risk": 0.6} if r["generation"] == 0 and "pool2" in r["run"] else r
            for r in recs]
    assert verdict_p8(recs, settings, CFG).verdict == "not applicable"


# ---------------------------------------------------------------------------------------------
# The report, end to end


def test_write_report_judges_p6_to_p8_from_run_directories(tmp_path: Path):
    runs = tmp_path / "runs"

    def write(name: str, recs: list[dict], flat_settings: dict) -> None:
        nested: dict = {}
        for key, value in flat_settings.items():
            *path, last = key.split(".")
            node = nested
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
        full = [{**r, "member": 0, "tag": "", "test_risk_per_position": [r["test_risk"]] * K,
                 "test_ci_low": [r["test_risk"]] * K, "test_ci_high": [r["test_risk"]] * K,
                 "excess_risk": r["test_risk"] - RIDGE, "gen_gap": 0.0}
                for r in recs if r["run"] == name]
        write_loop(runs / name, [{k: v for k, v in r.items() if k != "run"} for r in full],
                   nested)

    recs, settings = filter_runs({"all": 0.2, 4: 0.3})
    sched, sched_settings = schedule_run(0.25, 0.75, 0.25, flat(0.2))
    pools, pool_settings = pool_runs(ratio=4.0, rise=0.5)
    everything = {**settings, **sched_settings, **pool_settings}
    for name, flat_settings in everything.items():
        write(name, recs + sched + pools, flat_settings)
    write_report([runs], tmp_path / "report", ReportConfig(rules="v1"))
    verdicts = verdicts_of(tmp_path / "report")
    assert verdicts[6] == "confirmed" and verdicts[7] == "confirmed"
    assert verdicts[8] == "confirmed"
    assert verdicts[1] == "confirmed"  # the collapse run's lambda = 0 loops, judged without the extensions
    text = (tmp_path / "report" / "REPORT.md").read_text()
    for needle in ("## Prediction 6", "## Prediction 7", "## Prediction 8", "| 6 |",
                   "| 6 (b) |", "| 7 (b, heuristic) |", "risk against generation per filter",
                   "risk against generation per schedule", "distance to dMMSE",
                   "**P6**", "**P7**", "**P8**"):
        assert needle in text, needle
    assert ReportConfig().to_dict()["p8_margin"] == pytest.approx(math.log(2))
