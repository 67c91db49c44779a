"""What a verdict is, the settings every rule uses, and how group verdicts combine.

The rules themselves (texts printed verbatim in REPORT.md, and the code that applies them) are
in `loop_verdicts` (predictions 1, 2), `probe_verdicts` (3), `decay_verdicts` (4),
`augment_verdicts` (5) and `extension_verdicts` (6-8: filters, schedules, task pools); the
statistics in `stats`.
docs/THEORY.md states each prediction with its test, margin and possible verdicts.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from icl_stl.report.stats import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    Levels,
    holm,
)
from icl_stl.training.gate import RIDGE_TOLERANCE, gap_closed, reached_ridge

__all__ = ["CONFIRMED", "INCONCLUSIVE", "NOT_APPLICABLE", "NOT_TESTED", "REFUTED",
           "UNDERPOWERED", "RIDGE_TOLERANCE"]


@dataclass
class ReportConfig:
    """Every threshold of the verdicts, fixed before the data are read (`icl-stl-report KEY=V`).

    Margins are relative (to the generation-0 risk, the plateau, or gamma) so one default fits
    every scale; docs/THEORY.md explains each default.
    """

    alpha: float = 0.05  # one-sided level of every test (intervals shown are 1 - 2 alpha)
    power: float = 0.80  # power the minimum detectable effect (MDE) is computed for
    min_seeds: int = 5  # fewer seeds than this: underpowered, never confirmed or refuted
    p1_margin: float = 0.10  # collapse: rise (final - gen 0) / gen-0 risk must exceed this
    p2_margin: float = 0.02  # bounded: |slope per generation| / plateau inside +-this
    order_margin: float = 0.05  # larger lambda, lower plateau: fall across the lambda range
    p3_shrink_margin: float = 0.10  # gamma against n: log-log slope below -this
    p3_bounded_margin: float = 0.05  # gamma bounded in i: |slope| / mean gamma inside +-this
    chaos_ratio: float = 0.5  # gamma must be significantly below this x the chaos ceiling
    p4_metric: str = "gen_gap"  # primary decay metric; excess_risk is shown beside it
    p4_tolerance: float = 0.0  # consistent: decay exponent significantly below -1/4 + this
    p4_margin: float = 0.10  # resolution: underpowered when the exponent's MDE exceeds it
    p4_min_ns: int = 6  # decay fit needs at least this many n ...
    p4_min_decades: float = 2.0  # ... spanning at least this many decades
    p4_fit_min_n: int | None = None  # fit range, fixed in advance (null: the probe's fit_ns)
    p4_fit_max_n: int | None = None
    p4_floor: float | None = None  # E_inf of y = E_inf + A n^b (null: fitted)
    p5_margin: float = 0.02  # interior optimum: risk gain over the better endpoint / risk
    p6_margin: float = 0.02  # filtered loop bounded: |slope per generation| / plateau inside
    p6_order_margin: float = 0.05  # better verifier, lower plateau: fall across quality range
    p7_margin: float = 0.10  # decaying lambda like constant at its floor: risk ratio 1 +- this
    p7_collapse_margin: float = 0.02  # floor 0: risk grows by more than this per generation
    p8_margin: float = math.log(2)  # pool below threshold: log(dist to ridge / dist to dMMSE)
    p8_drift_margin: float = 0.10  # drift below vs above: log rise differs by log(1 + this)
    bootstrap: int = 2000  # seed-bootstrap replicates (P4, P5)
    bootstrap_seed: int = 0
    gate_tolerance: float = RIDGE_TOLERANCE  # the training gate (icl_stl.training.gate)
    primary: dict[str, str] = field(default_factory=dict)  # prediction -> group name

    @property
    def levels(self) -> Levels:
        return Levels(self.alpha, self.power, self.min_seeds)

    def validate(self) -> None:
        for name in ("alpha", "power"):
            v = getattr(self, name)
            if not (0.0 < v < 1.0):
                raise ValueError(f"report setting {name} must be in (0, 1), got {v!r}")
        if self.alpha >= 0.5:
            raise ValueError(f"report setting alpha must be below 0.5, got {self.alpha!r}")
        if int(self.min_seeds) != self.min_seeds or self.min_seeds < 2:
            raise ValueError(f"report setting min_seeds must be an integer >= 2, "
                             f"got {self.min_seeds!r}")
        for name in ("p1_margin", "p2_margin", "order_margin", "p3_shrink_margin",
                     "p3_bounded_margin", "p4_margin", "p5_margin", "p4_min_decades",
                     "gate_tolerance", "p6_margin", "p6_order_margin", "p7_margin",
                     "p7_collapse_margin", "p8_margin", "p8_drift_margin"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"report setting {name} must be a finite number >= 0, got {v!r}")
        if not (0.0 < self.chaos_ratio <= 1.0):
            raise ValueError(f"report setting chaos_ratio must be in (0, 1], "
                             f"got {self.chaos_ratio!r}")
        if self.p4_metric not in ("gen_gap", "excess_risk", "test_risk", "real_gen_gap"):
            raise ValueError(f"report setting p4_metric must be gen_gap, excess_risk, test_risk "
                             f"or real_gen_gap, got {self.p4_metric!r}")
        if self.bootstrap < 100:
            raise ValueError(f"report setting bootstrap must be >= 100, got {self.bootstrap!r}")
        if self.p4_min_ns < 3:
            raise ValueError(f"report setting p4_min_ns must be >= 3, got {self.p4_min_ns!r}")

    @classmethod
    def from_overrides(cls, overrides: Iterable[str]) -> ReportConfig:
        """Settings from "key=value" strings (`primary.3=NAME` names a primary group)."""
        cfg = cls()
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in overrides:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"report setting must be KEY=VALUE, got {item!r}")
            if key.startswith("primary."):
                cfg.primary[key.removeprefix("primary.")] = value
                continue
            if key not in types or key == "primary":
                known = ", ".join(sorted(k for k in types if k != "primary"))
                raise ValueError(f"unknown report setting {key!r} (known: {known}, primary.N)")
            setattr(cfg, key, _parse(key, value, str(types[key])))
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _parse(key: str, value: str, kind: str):
    text = value.strip()
    if "None" in kind and text.lower() in ("null", "none", ""):
        return None
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"report setting {key} must be a number, got {value!r}") from None
    return text


@dataclass
class GroupResult:
    """One group's verdict with the numbers behind it (JSON: `to_json`)."""

    group: str
    verdict: str
    estimate: float | None = None
    interval: list[float] | None = None
    margin: float | None = None
    n_seeds: int = 0
    min_detectable_effect: float | None = None
    p_refute: float | None = None  # one-sided p-value of the refuting direction
    p_refute_holm: float | None = None  # after Holm's correction over the counted groups
    counted: bool = True  # in the theorem's setting (else shown, not counted)
    gate: dict | None = None  # the training gate of this group (None: not checked)
    statistic: str = ""  # what estimate and interval are
    numbers: str = ""  # the same in words, for REPORT.md
    reading: str = ""  # a sentence where the verdict alone would mislead (P4)
    parts: dict = field(default_factory=dict)  # sub-tests, each with the numeric fields
    key: dict = field(default_factory=dict)  # coordinates (n, lambda, ...) for the primary rule

    def to_json(self) -> dict:
        out = {k: _clean(getattr(self, k)) for k in (
            "group", "verdict", "estimate", "interval", "margin", "n_seeds",
            "min_detectable_effect", "p_refute", "p_refute_holm", "counted", "gate",
            "statistic", "reading", "parts")}
        out["numbers"] = self.numbers
        return out


def _clean(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def fields_of(result: dict, index=()) -> dict:
    """estimate / interval / MDE / p-value of one entry of a `stats` test result."""
    def get(name):
        v = np.asarray(result[name])[index] if np.ndim(result[name]) else result[name]
        return float(v)

    return {"estimate": get("estimate"), "interval": [get("low"), get("high")],
            "min_detectable_effect": get("mde"), "p_refute": get("p_refute"),
            "p_confirm": get("p_confirm")}


@dataclass
class Prediction:
    """A prediction of docs/THEORY.md: its rule, its groups and the combined verdict."""

    number: int
    statement: str
    rule: str
    can_get: tuple[str, ...]  # the verdicts this prediction can get
    heuristic: bool = False
    groups: list[GroupResult] = field(default_factory=list)
    primary_rule: str = ""
    primary: str | None = None
    verdict: str = NOT_TESTED
    reading: str = ""
    sub: dict[str, Prediction] = field(default_factory=dict)  # e.g. P2's ordering heuristic
    primary_key: str = ""  # key of `ReportConfig.primary` (default: str(number))
    alpha: float = 0.05  # the level `finalise` used

    def primary_group(self) -> GroupResult | None:
        return next((g for g in self.groups if g.group == self.primary and g.counted), None)

    @property
    def numbers(self) -> str:
        g = self.primary_group()
        if g is None:
            if not self.groups:
                return "no run holds the data this prediction needs"
            return (f"no counted group ({len(self.groups)} group(s) outside the theorem's "
                    "setting)")
        text = f"primary group {g.group or '(all)'}: {g.numbers}"
        refuting = [h for h in self.groups if h.counted and h is not g and h.p_refute_holm
                    is not None and h.p_refute_holm < self.alpha and self.verdict == REFUTED]
        if refuting:
            text += "; refuted in " + ", ".join(h.group for h in refuting)
        return text

    def to_json(self) -> dict:
        g = self.primary_group()
        out = {"verdict": self.verdict, "statement": self.statement,
               "heuristic": self.heuristic, "can_get": list(self.can_get),
               "primary_group": self.primary, "primary_rule": self.primary_rule,
               "estimate": None, "interval": None, "margin": None, "n_seeds": 0,
               "min_detectable_effect": None, "statistic": "", "reading": self.reading,
               "numbers": self.numbers, "rule": self.rule,
               "groups": [h.to_json() for h in self.groups]}
        if g is not None:
            for key in ("estimate", "interval", "margin", "n_seeds", "min_detectable_effect",
                        "statistic"):
                out[key] = _clean(getattr(g, key))
        for name, sub in self.sub.items():
            out[name] = sub.to_json()
        return out


def finalise(pred: Prediction, cfg: ReportConfig,
             choose: Callable[[list[GroupResult]], GroupResult | None]) -> Prediction:
    """Holm over the counted groups' refutations, pick the primary group, set the verdict.

    - the primary group is `cfg.primary[str(number)]` when it names a counted group, else the
      one `choose` picks by the rule stated in advance (`pred.primary_rule`) among the counted
      groups whose design holds the data the rule needs (not "not tested");
    - "refuted" if any counted group's refutation survives Holm's correction (the predictions
      are claims about every setting of the theorem), when the prediction can be refuted;
    - otherwise the primary group's verdict, with a refutation that does not survive Holm read
      as "inconclusive";
    - "not tested" when no counted group exists.
    """
    pred.alpha = cfg.alpha
    counted = [g for g in pred.groups if g.counted]
    eligible = [g for g in counted if g.p_refute is not None and g.verdict not in
                (NOT_APPLICABLE, NOT_TESTED) and g.n_seeds >= cfg.min_seeds]
    adjusted = holm([g.p_refute for g in eligible])
    for g, p in zip(eligible, adjusted):
        g.p_refute_holm = float(p) if math.isfinite(p) else None
    named = cfg.primary.get(pred.primary_key or str(pred.number))
    primary = next((g for g in counted if g.group == named), None) if named else None
    with_data = [g for g in counted if g.verdict != NOT_TESTED]
    primary = primary or choose(with_data) or choose(counted)
    pred.primary = None if primary is None else primary.group
    if primary is None:
        pred.verdict = NOT_TESTED
        return pred
    survived = [g for g in eligible if g.p_refute_holm is not None
                and g.p_refute_holm < cfg.alpha and g.verdict == REFUTED]
    if REFUTED in pred.can_get and survived:
        pred.verdict = REFUTED
    elif primary.verdict == REFUTED:
        pred.verdict = INCONCLUSIVE  # a refutation that Holm's correction does not keep
    else:
        pred.verdict = primary.verdict
    pred.reading = primary.reading
    return pred


def apply_gate(result: GroupResult, gate: dict | None) -> GroupResult:
    """A group whose generation 0 missed ridge is "not applicable" (its numbers are kept).

    A gate that cannot be checked (no generation-0 record, or no zero-predictor risk in old
    runs) leaves the verdict alone but says so: the reader must know it was not checked."""
    result.gate = gate
    if gate is None or gate.get("reached") is None:
        result.numbers = "training gate not checked (no generation-0 zero/ridge risks); " \
            + result.numbers
    elif gate["reached"] is False:
        result.numbers = (f"training gate failed: generation 0 closed {fmt(gate['gap_closed'])} "
                          f"of the zero-to-ridge gap at n={gate.get('n')} (needs "
                          f">= {fmt(1 - gate['tolerance'])}); would read: {result.verdict}; "
                          + result.numbers)
        result.verdict = NOT_APPLICABLE
    return result


def gate_of(records: list[dict], tolerance: float = RIDGE_TOLERANCE) -> dict | None:
    """The training gate on generation-0 records (one per seed): mean test, ridge and zero
    risk over seeds; `reached` when test - ridge <= tolerance x (zero - ridge).

    `seeds_reached` counts the loops that pass on their own. Both are computed from the risks
    (`zero_risk` from the record, or from summary.json's zero baseline in runs written before
    records carried it) rather than read from the records' `gap_closed` / `reached_ridge`:
    the same numbers, but at this report's tolerance and valid for records averaged over
    several test sets."""
    gen0 = {r["seed"]: r for r in records if r["generation"] == 0
            and r.get("ridge_risk") is not None}
    if not gen0:
        return None
    rows = list(gen0.values())
    zeros = [r.get("zero_risk") for r in rows]
    test = float(np.mean([r["test_risk"] for r in rows]))
    ridge = float(np.mean([r["ridge_risk"] for r in rows]))
    if any(z is None for z in zeros):
        return {"n": rows[0].get("n"), "seeds": len(rows), "test_risk": test,
                "ridge_risk": ridge, "zero_risk": None, "gap_closed": None, "reached": None,
                "tolerance": tolerance}
    zero = float(np.mean(zeros))
    per_seed = [gap_closed(r["test_risk"], r["ridge_risk"], r["zero_risk"]) for r in rows]
    return {"n": rows[0].get("n"), "seeds": len(rows), "test_risk": test, "ridge_risk": ridge,
            "zero_risk": zero, "gap_closed": gap_closed(test, ridge, zero),
            "gap_closed_min": float(np.nanmin(per_seed)) if per_seed else None,
            "seeds_reached": sum(bool(c >= 1.0 - tolerance) for c in per_seed),
            "reached": reached_ridge(test, ridge, zero, tolerance), "tolerance": tolerance}


# ---------------------------------------------------------------------------------------------
# Helpers


def _natural(value: object) -> tuple:
    """Sort numbers by value and before strings (n = 16 before n = 128)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if is_number else (1, 0, str(value))


def in_theorem_setting(records: Iterable[dict]) -> bool:
    """Whether a group's records all come from the theorem's setting (else: shown, not
    counted; `collect.THEOREM_SETTING`)."""
    return all(bool(r.get("in_theorem_setting", True)) for r in records)


def group_by(records: Iterable[dict], key: Callable[[dict], tuple]) -> dict[tuple, list[dict]]:
    """Records grouped by `key`, groups in natural order of their keys."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(map(_natural, kv[0]))))


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


def last_third(generations: list[int]) -> list[int]:
    """The window boundedness is judged on: the last third of generations, at least 3 of them,
    never generation 0 (the rise from generation 0 to a plateau is expected, not growth).
    Empty when fewer than 3 generations follow generation 0."""
    later = [g for g in generations if g > 0]
    size = max(3, math.ceil(len(generations) / 3))
    return later[-size:] if len(later) >= size else []


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or isinstance(x, str):
        return "n/a" if x is None else x
    return f"{x:.{digits}g}" if math.isfinite(x) else ("inf" if x > 0 else "n/a")


def fmt_ci(interval) -> str:
    if interval is None:
        return "[n/a]"
    return f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def describe_group(config: str, **fields_: object) -> str:
    """"config; n=40, m=0" style names (config left out when the runs do not differ)."""
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields_.items()]
    return ", ".join(([config] if config else []) + parts)


def describe_test(res: GroupResult, unit: str = "") -> str:
    """"estimate 0.12 [0.05, 0.19] (margin 0.1, 5 seeds, MDE 0.08)" for a group's table."""
    seeds = f"{res.n_seeds} seed" + ("" if res.n_seeds == 1 else "s")
    return (f"{res.statistic} {fmt(res.estimate)}{unit} {fmt_ci(res.interval)} (margin "
            f"{fmt(res.margin)}, {seeds}, MDE {fmt(res.min_detectable_effect)})")
