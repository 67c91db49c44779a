"""Real-data schedules (icl_stl/config/schedules.py): values, floors and one-line setting errors."""

from __future__ import annotations

import math

import pytest

from icl_stl.config import ConfigError
from icl_stl.config.schedules import RealSchedule, real_count_rounded, real_fraction


def test_constant_holds_lambda_and_generation_zero_is_all_real():
    assert [real_fraction(i, "constant", 0.3) for i in range(4)] == [1.0, 0.3, 0.3, 0.3]


def test_linear_decays_by_rate_to_the_floor_and_stays():
    got = [real_fraction(i, "linear", 0.5, 0.1, 0.2) for i in range(7)]
    assert got == pytest.approx([1.0, 0.5, 0.4, 0.3, 0.2, 0.2, 0.2])
    assert real_fraction(20, "linear", 0.5, 0.1, 0.0) == 0.0  # floor 0: reaches 0, not below


def test_exponential_decays_geometrically_to_the_floor():
    got = [real_fraction(i, "exponential", 0.8, math.log(2), 0.1) for i in range(6)]
    assert got == pytest.approx([1.0, 0.8, 0.4, 0.2, 0.1, 0.1])
    unfloored = real_fraction(30, "exponential", 0.8, 0.5, 0.0)
    assert 0 < unfloored < 1e-6  # floor 0: tends to 0 (collapse is expected there)


def test_floor_reached_in_the_documented_number_of_generations():
    lam0, floor = 0.6, 0.15
    lin = RealSchedule("linear", lam0, 0.05, floor)
    first = next(i for i in range(1, 100) if lin.fraction(i) == floor)
    assert first == math.ceil((lam0 - floor) / 0.05 - 1e-9) + 1
    exp = RealSchedule("exponential", lam0, 0.3, floor)
    first = next(i for i in range(1, 100) if exp.fraction(i) == floor)
    assert first == math.ceil(math.log(lam0 / floor) / 0.3) + 1


def test_schedule_object_lists_fractions_and_counts():
    s = RealSchedule("linear", 0.5, 0.125, 0.25)
    assert s.fractions(4) == [1.0, 0.5, 0.375, 0.25, 0.25]
    assert s.counts(8, 4, "exact") == [8, 4, 3, 2, 2]
    assert RealSchedule("exponential", 0.5, 0.7).counts(10, 3, "round") == [10, 5, 2, 1]
    assert RealSchedule("exponential", 0.5, 0.7).counts(10, 3, "floor") == [10, 5, 2, 1]
    assert RealSchedule("exponential", 0.5, 0.7).counts(10, 3, "ceil") == [10, 5, 3, 2]


def test_exact_rounding_names_the_schedule():
    with pytest.raises(ConfigError, match=r"^loop\.rounding=exact needs lambda_i n whole .*"
                                          r"loop\.real_schedule gives lambda_i=0\.375 with n=10"):
        RealSchedule("linear", 0.5, 0.125).counts(10, 2, "exact")
    with pytest.raises(ConfigError, match=r"^loop\.rounding must be one of"):
        real_count_rounded(0.5, 10, "nearest")


@pytest.mark.parametrize("args, message", [
    (("sometimes", 0.5, 0.1, 0.0), r"loop\.real_schedule must be one of \['constant', "
                                   r"'linear', 'exponential'\], got 'sometimes'"),
    (("linear", 1.5, 0.1, 0.0), r"loop\.real_fraction must be a number <= 1\.0, got 1\.5"),
    (("linear", 0.5, -0.1, 0.0), r"loop\.real_schedule_rate must be a number >= 0\.0, got -0\.1"),
    (("linear", 0.5, float("nan"), 0.0), r"loop\.real_schedule_rate must be a finite number"),
    (("linear", 0.5, 0.0, 0.0), r"loop\.real_schedule_rate must be > 0 for "
                                r"loop\.real_schedule=linear, got 0\.0"),
    (("linear", 0.5, 1.5, 0.0), r"loop\.real_schedule_rate must be <= 1 for "
                                r"loop\.real_schedule=linear"),
    (("exponential", 0.5, 0.1, 0.6), r"loop\.real_schedule_floor must be <= "
                                     r"loop\.real_fraction \(0\.5\), got 0\.6"),
    (("exponential", 0.5, 0.1, -0.1), r"loop\.real_schedule_floor must be a number >= 0\.0, "
                                      r"got -0\.1"),
    (("constant", 0.5, "fast", 0.0), r"loop\.real_schedule_rate must be a finite number, "
                                     r"got 'fast'"),
])
def test_bad_settings_give_one_line_naming_the_setting(args, message):
    with pytest.raises(ConfigError, match="^" + message) as err:
        real_fraction(1, *args)
    assert "\n" not in str(err.value)


def test_constant_ignores_rate_and_floor_and_messages_take_a_path():
    assert real_fraction(3, "constant", 0.4, 0.0, 0.9) == 0.4  # floor unused when constant
    with pytest.raises(ConfigError, match=r"^sweep\.loop\.real_schedule_rate must be > 0"):
        RealSchedule("exponential", 0.5, 0.0, path="sweep.loop")
    with pytest.raises(ConfigError, match=r"^sweep\.loop\.real_fraction=0\.3 times data\.n=16"):
        RealSchedule("constant", 0.3, path="sweep.loop").count(1, 16, "exact")


@pytest.mark.parametrize("generation", [-1, 1.0, True])
def test_generation_must_be_a_count(generation):
    with pytest.raises(ValueError, match="generation must be an integer >= 0"):
        real_fraction(generation, "constant", 0.5)
