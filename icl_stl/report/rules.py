"""What a verdict is, how group verdicts combine, and the constants every rule uses."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

COMBINE_RULE = """\
A prediction of THEORY.md is judged separately in every *group* of comparable data (one
configuration and n for P1 and P2, one configuration and lambda for P3 (pooled over n) and P5,
one decay run for P4). A group's
verdict is one of "confirmed", "refuted", "inconclusive" or "no data" (too few generations,
seeds or n to apply the rule). Groups outside the theorem's setting (another architecture, the
reference learner, accumulated synthetic data) are shown but not counted. The prediction's
verdict combines the counted groups:

- "refuted" if any counted group refutes it (the predictions are claims about every setting);
- "confirmed" if every counted group with data confirms it;
- "inconclusive" otherwise; "no data" when no counted group has data.
"""

CONFIRMED, REFUTED, INCONCLUSIVE, NO_DATA = "confirmed", "refuted", "inconclusive", "no data"

# A growth per generation below this fraction of the risk (or gamma) is negligible: a fitted
# slope whose interval lies below it is "flat", one whose interval lies above it is "growing".
NEGLIGIBLE_GROWTH = 0.01
# Generation 0 has "reached ridge" when its excess risk over ridge is at most this fraction of
# the gap between the zero predictor and ridge (both measured on the same test prompts).
RIDGE_TOLERANCE = 0.10
# Confidence level of every fitted interval.
LEVEL = 0.95


@dataclass
class GroupVerdict:
    """The verdict of one group of comparable data, with the numbers behind it."""

    group: str
    verdict: str
    numbers: str
    counted: bool = True


@dataclass
class Verdict:
    """A prediction's verdict over all groups."""

    prediction: int
    statement: str
    rule: str
    groups: list[GroupVerdict] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return combine([g.verdict for g in self.groups if g.counted])

    @property
    def numbers(self) -> str:
        """The numbers of the counted groups that decided the verdict (at most three)."""
        counted = [g for g in self.groups if g.counted and g.verdict != NO_DATA]
        decisive = [g for g in counted if g.verdict == self.verdict] or counted
        text = "; ".join(f"{g.group}: {g.numbers}" if g.group else g.numbers
                         for g in decisive[:3])
        more = len(decisive) - 3
        if more > 0:
            text += f"; and {more} more group(s)"
        if not counted:
            uncounted = sum(not g.counted for g in self.groups)
            text = (f"only {uncounted} group(s) outside the theorem's setting" if uncounted
                    else "no run holds the data this prediction needs")
        return text


def combine(verdicts: Iterable[str]) -> str:
    """The rule of the module docstring."""
    with_data = [v for v in verdicts if v != NO_DATA]
    if not with_data:
        return NO_DATA
    if REFUTED in with_data:
        return REFUTED
    if all(v == CONFIRMED for v in with_data):
        return CONFIRMED
    return INCONCLUSIVE


def _natural(value: object) -> tuple:
    """Sort numbers by value and before strings (n = 16 before n = 128)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if is_number else (1, 0, str(value))


def group_by(records: Iterable[dict], key: Callable[[dict], tuple]) -> dict[tuple, list[dict]]:
    """Records grouped by `key`, groups in natural order of their keys."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(map(_natural, kv[0]))))


def seed_matrix(records: list[dict], generations: list[int],
                metric: str = "test_risk") -> np.ndarray:
    """(len(generations), seeds): `metric` of each seed that has every generation."""
    by_seed: dict[int, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.get(metric) is not None:
            by_seed[r["seed"]][r["generation"]] = float(r[metric])
    columns = [[vals[g] for g in generations] for _, vals in sorted(by_seed.items())
               if all(g in vals for g in generations)]
    return np.array(columns, dtype=float).T.reshape(len(generations), len(columns))


def seed_spread(values: np.ndarray) -> float:
    """Sample standard deviation over seeds (0 with one seed: no spread can be measured)."""
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0


def last_third(generations: list[int]) -> list[int]:
    """The window boundedness is judged on: the last third of generations, at least 3 of them,
    never generation 0 (the rise from generation 0 to a plateau is expected, not growth).
    Empty when fewer than 3 generations follow generation 0."""
    later = [g for g in generations if g > 0]
    size = max(3, math.ceil(len(generations) / 3))
    return later[-size:] if len(later) >= size else []


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def fmt_ci(lo: float, hi: float) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def describe_group(config: str, **fields_: object) -> str:
    """"config; n=40, m=0" style names (config left out when the runs do not differ)."""
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields_.items()]
    return ", ".join(([config] if config else []) + parts)
