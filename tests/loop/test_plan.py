"""A member's generation plans (icl_stl/loop/plan.py): lambda_i and the sizes of S_i, against
the documented formulas, computed once and validated once."""

from __future__ import annotations

import itertools
import math

import pytest

from icl_stl.config import ConfigError, LoopConfig
from icl_stl.config import schedules as schedules_module
from icl_stl.loop.plan import GenerationPlan, MemberSpec, plan_generation, plan_generations

GENERATIONS = 6
# (schedule, rate, floor): a held lambda, two linear and two exponential decays, floored or not
SCHEDULES = [("constant", 0.0, 0.0), ("linear", 0.1, 0.0), ("linear", 0.125, 0.25),
             ("exponential", 0.7, 0.0), ("exponential", 0.3, 0.1)]
LAMBDAS = [0, 0.25, 0.3, 0.5, 1, 1.0, 0.8]  # ints as members.real_fractions=[0,0.5,1] gives
NS = [8, 10, 16, 21]
ROUNDINGS = ["exact", "floor", "round", "ceil"]
AUGMENTS = [0, 3]
FILTERS = [("none", 1.0), ("verifier", 0.4), ("verifier", 0.3)]


def expected_lambda(schedule: str, lam0: float, rate: float, floor: float, i: int) -> float:
    """docs: lambda_0 = 1; constant lambda0; linear max(floor, lambda0 - rate (i - 1));
    exponential max(floor, lambda0 exp(-rate (i - 1)))."""
    if i == 0:
        return 1.0
    if schedule == "constant":
        return lam0
    if schedule == "linear":
        return max(floor, lam0 - rate * (i - 1))
    return max(floor, lam0 * math.exp(-rate * (i - 1)))


def expected_real(lam: float, n: int, rounding: str) -> int | None:
    """lambda n under the rounding rule; None where `exact` meets a fractional count."""
    value = lam * n
    if rounding == "exact":
        return round(value) if abs(value - round(value)) <= 1e-9 else None
    return int({"floor": math.floor, "round": round, "ceil": math.ceil}[rounding](value))


def expected_labelled(m: int, kind: str, keep: float) -> int:
    """A filter labels ceil(m / keep) x's to keep m of them (up to float noise in m / keep)."""
    return m if kind == "none" else max(m, math.ceil(m / keep - 1e-9))


def check_plans(schedule: tuple, lam: float, n: int, rounding: str, m: int,
                filt: tuple) -> None:
    name, rate, floor = schedule
    loop = LoopConfig(generations=GENERATIONS, real_schedule=name, real_schedule_rate=rate,
                      real_schedule_floor=floor, rounding=rounding, filter=filt[0],
                      filter_keep=filt[1])
    member = MemberSpec(seed=0, real_fraction=lam, n=n, augment=m)
    lambdas = [expected_lambda(name, lam, rate, floor, i) for i in range(GENERATIONS + 1)]
    reals = [n] + [expected_real(x, n, rounding) for x in lambdas[1:]]
    if None in reals:
        with pytest.raises(ConfigError, match=r"^loop\.(real_fraction|rounding)") as err:
            plan_generations(loop, member)
        assert "\n" not in str(err.value)
        return
    plans = plan_generations(loop, member)
    assert [p.generation for p in plans] == list(range(GENERATIONS + 1))
    assert plans[0] == GenerationPlan(0, 1.0, n, 0, 0)  # S_0: all real, nothing labelled
    for i, plan in enumerate(plans[1:], start=1):
        synthetic = n - reals[i] + m
        assert plan == GenerationPlan(i, lambdas[i], reals[i], synthetic,
                                      expected_labelled(synthetic, *filt)), (i, plan)
        # records write lambda_i as the member gives it: 0 stays 0, not 0.0
        assert type(plan.real_fraction) is type(lambdas[i])
        assert plan_generation(loop, member, i) == plan


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[f"{s}-{r}-{f}" for s, r, f in SCHEDULES])
def test_plan_counts_follow_the_documented_formulas(schedule):
    """Every (lambda, n, rounding, m, filter) of the grid, one schedule per test."""
    checked = 0
    for lam, n, rounding, m, filt in itertools.product(LAMBDAS, NS, ROUNDINGS, AUGMENTS,
                                                        FILTERS):
        if schedule[0] != "constant" and schedule[2] > lam:
            continue  # a floor above lambda0 is refused by the settings
        check_plans(schedule, lam, n, rounding, m, filt)
        checked += 1
    assert checked >= 400


def test_a_constant_schedule_is_one_lambda_for_every_generation():
    loop = LoopConfig(generations=4, real_fraction=0.25, rounding="floor")
    plans = plan_generations(loop, MemberSpec(seed=0, real_fraction=0.3, n=10, augment=2))
    assert [(p.real_fraction, p.n_real, p.n_synthetic) for p in plans] == [
        (1.0, 10, 0), *[(0.3, 3, 9)] * 4]  # the member's lambda, not loop.real_fraction


def test_generations_argument_and_default():
    loop = LoopConfig(generations=3)
    member = MemberSpec(seed=0, real_fraction=0.5, n=8)
    assert len(plan_generations(loop, member)) == 4
    assert len(plan_generations(loop, member, 7)) == 8
    assert plan_generations(loop, member, 0) == [GenerationPlan(0, 1.0, 8, 0, 0)]


def test_the_schedule_is_validated_once_per_member(monkeypatch):
    calls = []
    original = schedules_module.validate_schedule
    monkeypatch.setattr(schedules_module, "validate_schedule",
                        lambda *a, **k: calls.append(a) or original(*a, **k))
    loop = LoopConfig(generations=20, real_schedule="linear", real_schedule_rate=0.05,
                      rounding="floor", filter="verifier", filter_keep=0.5)
    plan_generations(loop, MemberSpec(seed=0, real_fraction=0.5, n=16))
    assert calls == [("linear", 0.5, 0.05, 0.0, "loop")]


def test_decayed_counts_name_the_schedule_and_held_ones_real_fraction():
    member = MemberSpec(seed=0, real_fraction=0.5, n=10)
    decaying = LoopConfig(generations=2, real_schedule="linear", real_schedule_rate=0.125)
    with pytest.raises(ConfigError, match=r"^loop\.rounding=exact needs lambda_i n whole .* "
                                          r"lambda_i=0\.375 with n=10"):
        plan_generations(decaying, member)
    assert plan_generation(decaying, member, 1).n_real == 5
    with pytest.raises(ConfigError, match=r"^loop\.real_fraction=0\.3 times data\.n=11 is 3\.3"):
        plan_generations(LoopConfig(), MemberSpec(seed=0, real_fraction=0.3, n=11))
