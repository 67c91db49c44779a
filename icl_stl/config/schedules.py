"""Real-data schedules: the share lambda_i of real prompts in S_i, held or decayed.

The seed theorem fixes lambda; "From collapse to improvement" (arXiv 2602.10531) analyses a
real-data weight that decays over generations. Three schedules, for generations i >= 1 (S_0 is
all real, so generation 0 has lambda_0 = 1 whatever the schedule):

    constant     lambda_i = lambda0
    linear       lambda_i = max(floor, lambda0 - rate (i - 1))
    exponential  lambda_i = max(floor, lambda0 exp(-rate (i - 1)))

so lambda_1 = lambda0 in every schedule, and with floor > 0 both decays reach the floor after a
finite number of generations (linear: (lambda0 - floor) / rate + 1; exponential:
ln(lambda0 / floor) / rate + 1) and stay there: from then on the loop *is* a constant-lambda
loop at the floor, which is what prediction P7 compares it with.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from icl_stl.config.fields import ConfigError, check_choice, check_float

__all__ = ["ROUNDINGS", "SCHEDULES", "RealSchedule", "real_count", "real_count_rounded",
           "real_fraction", "validate_schedule"]

SCHEDULES = ("constant", "linear", "exponential")
ROUNDINGS = ("exact", "floor", "round", "ceil")


def real_count(real_fraction: float, n: int, rounding: str, path: str = "loop") -> int:
    """The number of real prompts lambda n, under the configured rounding rule."""
    exact = real_fraction * n
    if rounding == "exact":
        if abs(exact - round(exact)) > 1e-9:
            raise ConfigError(
                f"{path}.real_fraction={real_fraction} times data.n={n} is {exact:g}, not a whole "
                f"number of prompts; choose them so, or set {path}.rounding to floor, round or ceil")
        return int(round(exact))
    return int({"floor": math.floor, "round": round, "ceil": math.ceil}[rounding](exact + 0.0))


def real_count_rounded(fraction: float, n: int, rounding: str, path: str = "loop") -> int:
    """lambda_i n as a count (`real_count`'s rounding). A decayed lambda_i n is rarely whole, so
    `exact` rounding names the schedule (not a fixed real_fraction) as the setting to change."""
    check_choice(f"{path}.rounding", rounding, ROUNDINGS)
    try:
        return real_count(fraction, n, rounding, path)
    except ConfigError:
        raise ConfigError(
            f"{path}.rounding=exact needs lambda_i n whole at every generation, but "
            f"{path}.real_schedule gives lambda_i={fraction:g} with n={n} ({fraction * n:g} "
            f"prompts); set {path}.rounding to floor, round or ceil") from None


def validate_schedule(schedule: str, lambda0: float, rate: float, floor: float,
                      path: str = "loop") -> None:
    """ConfigError naming the setting and value of the first bad one.

    Settings: `{path}.real_schedule`, `{path}.real_fraction` (lambda0, in [0, 1]),
    `{path}.real_schedule_rate` (>= 0; linear: lambda lost per generation, so at most 1;
    exponential: per-generation log decay) and `{path}.real_schedule_floor` (in [0, lambda0]).
    A decay needs a positive rate: a decaying schedule that never decays is a typo.
    """
    check_choice(f"{path}.real_schedule", schedule, SCHEDULES)
    check_float(f"{path}.real_fraction", lambda0, 0.0, 1.0)
    check_float(f"{path}.real_schedule_rate", rate, 0.0)
    check_float(f"{path}.real_schedule_floor", floor, 0.0, 1.0)
    if schedule == "constant":
        return
    if rate == 0:
        raise ConfigError(f"{path}.real_schedule_rate must be > 0 for "
                          f"{path}.real_schedule={schedule}, got {rate!r}")
    if schedule == "linear" and rate > 1:
        raise ConfigError(f"{path}.real_schedule_rate must be <= 1 for "
                          f"{path}.real_schedule=linear (lambda lost per generation), "
                          f"got {rate!r}")
    if floor > lambda0:
        raise ConfigError(f"{path}.real_schedule_floor must be <= {path}.real_fraction "
                          f"({lambda0!r}), got {floor!r}")


@dataclass(frozen=True)
class RealSchedule:
    """A schedule, validated when built (a ConfigError names `{path}.<setting>`): `fraction(i)`
    is lambda_i, `count(i, n, rounding)` the real prompts of S_i."""

    schedule: str = "constant"
    lambda0: float = 0.5
    rate: float = 0.0
    floor: float = 0.0
    path: str = dataclasses.field(default="loop", compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_schedule(self.schedule, self.lambda0, self.rate, self.floor, self.path)

    def fraction(self, generation: int) -> float:
        """lambda_i (see the module doc); 1.0 at generation 0, and a constant schedule's
        lambda0 as given (an int 0 or 1 of `members.real_fractions` stays one in records)."""
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise ValueError(f"generation must be an integer >= 0, got {generation!r}")
        if generation == 0:
            return 1.0
        steps = generation - 1
        if self.schedule == "constant":
            return self.lambda0
        if self.schedule == "linear":
            return max(float(self.floor), self.lambda0 - self.rate * steps)
        return max(float(self.floor), self.lambda0 * math.exp(-self.rate * steps))

    def fractions(self, generations: int) -> list[float]:
        """lambda_i for i = 0..generations: what summary.json records per generation."""
        return [self.fraction(i) for i in range(generations + 1)]

    def count(self, generation: int, n: int, rounding: str) -> int:
        """Real prompts of S_i: n at generation 0, else lambda_i n under `rounding`. Where
        `exact` rounding fails, the message names the setting to change: real_fraction while
        lambda_i is it, the schedule once it has decayed."""
        fraction = self.fraction(generation)
        if generation == 0:
            return n
        if fraction == self.lambda0:
            check_choice(f"{self.path}.rounding", rounding, ROUNDINGS)
            return real_count(fraction, n, rounding, self.path)
        return real_count_rounded(fraction, n, rounding, self.path)

    def counts(self, n: int, generations: int, rounding: str) -> list[int]:
        """Real prompts of S_i for i = 0..generations (n at generation 0)."""
        return [self.count(i, n, rounding) for i in range(generations + 1)]


def real_fraction(generation: int, schedule: str, lambda0: float, rate: float = 0.0,
                  floor: float = 0.0) -> float:
    """lambda_i of `generation` (see the module doc); 1.0 at generation 0 (S_0 is all real).

    Raises ConfigError (paths under `loop.`) for a bad schedule and ValueError for a negative
    generation.
    """
    return RealSchedule(schedule, lambda0, rate, floor).fraction(generation)

