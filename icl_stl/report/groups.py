"""How records are grouped and named: groups in natural order, the seed matrix of a group,
the window boundedness is judged on, whether a group is in the theorem's setting, and its name.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np


def _natural(value: object) -> tuple:
    """Sort numbers by value and before strings (n = 16 before n = 128)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if is_number else (1, 0, str(value))


def natural_key(values: tuple) -> tuple:
    """A tuple's sort key in natural order (`_natural` per entry): numbers before strings."""
    return tuple(map(_natural, values))


def in_theorem_setting(records: Iterable[dict]) -> bool:
    """Whether a group's records all come from the theorem's setting (else: shown, not
    counted; `collect.THEOREM_SETTING`)."""
    return all(bool(r.get("in_theorem_setting", True)) for r in records)


def group_by(records: Iterable[dict], key: Callable[[dict], tuple]) -> dict[tuple, list[dict]]:
    """Records grouped by `key`, groups in natural order of their keys."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return dict(sorted(out.items(), key=lambda kv: natural_key(kv[0])))


def shared_generations(records: Iterable[dict],
                       loop: Callable[[dict], object] = lambda r: r["seed"]) -> list[int]:
    """The generations every loop of `records` has (a loop: `loop(record)`, by default its
    seed), sorted. Loops of uneven length (one stopped early, one ran further) are compared on
    what they share, so no loop drops out because another ran one generation more."""
    gens: dict[object, set[int]] = defaultdict(set)
    for r in records:
        gens[loop(r)].add(r["generation"])
    return sorted(set.intersection(*gens.values())) if gens else []


def seed_matrix(records: list[dict], generations: list[int],
                metric: str = "test_risk") -> tuple[np.ndarray, list[int]]:
    """(seeds, len(generations)) of `metric` for every seed that has every generation."""
    by_seed: dict[int, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.get(metric) is not None:
            by_seed[r["seed"]][r["generation"]] = float(r[metric])
    seeds = [s for s, vals in sorted(by_seed.items()) if all(g in vals for g in generations)]
    mat = np.array([[by_seed[s][g] for g in generations] for s in seeds], dtype=float)
    return mat.reshape(len(seeds), len(generations)), seeds


def last_shared(records: Iterable[dict],
                loop: Callable[[dict], object] = lambda r: (r["n"], r["seed"])) -> int:
    """The last generation every loop reached: the smallest of the loops' last generations (a
    loop: `loop(record)`, by default its (n, seed)). One loop run further never moves it."""
    last: dict[object, int] = {}
    for r in records:
        key = loop(r)
        last[key] = max(last.get(key, r["generation"]), r["generation"])
    return min(last.values())


def last_third(generations: list[int]) -> list[int]:
    """The window boundedness is judged on: the last third of generations, at least 3 of them,
    never generation 0 (the rise from generation 0 to a plateau is expected, not growth).
    Empty when fewer than 3 generations follow generation 0."""
    later = [g for g in generations if g > 0]
    size = max(3, math.ceil(len(generations) / 3))
    return later[-size:] if len(later) >= size else []


def describe_group(config: str, **fields_: object) -> str:
    """"config; n=40, m=0" style names (config left out when the runs do not differ)."""
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields_.items()]
    return ", ".join(([config] if config else []) + parts)
