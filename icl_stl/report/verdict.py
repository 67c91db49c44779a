"""What a verdict is: the verdict codes, one group's result, a prediction's groups and how
they combine into its verdict (Holm, the primary group, the training gate).

The rules' settings are in `rules` (`ReportConfig`); how records are grouped and named in
`groups`; each prediction's rule in `predictions/`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    CODES,
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    holm,
)
from icl_stl.training.gate import RIDGE_TOLERANCE, gap_closed, reached_ridge

__all__ = ["CONFIRMED", "INCONCLUSIVE", "NOT_APPLICABLE", "NOT_TESTED", "REFUTED",
           "UNDERPOWERED", "GroupResult", "Prediction", "apply_gate", "describe_test",
           "fields_of", "finalise", "fmt", "fmt_ci", "gate_of", "largest", "result_of"]


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
    # Version 2 (matched controls): the scale judged, the control it is judged against, every
    # margin, and the loops left out (missed the gate, failed to train); empty under v1.
    scale: str = ""
    control: str = ""
    margins: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {k: _clean(getattr(self, k)) for k in (
            "group", "verdict", "estimate", "interval", "margin", "n_seeds",
            "min_detectable_effect", "p_refute", "p_refute_holm", "counted", "gate",
            "statistic", "reading", "parts")}
        if self.scale:
            out.update({"scale": self.scale, "control": self.control, "seeds": self.n_seeds,
                        "margins": _clean(self.margins), "left_out": _clean(self.left_out)})
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


# A version-2 rule whose design is built but whose margins and seed counts still wait for its
# pilot (docs/THEORY.md section 8.1): its verdicts are reported, labelled as such.
PROVISIONAL = "v2-provisional"
V2 = "v2"  # a version-2 rule fixed from its pilot


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
    # the rules `finalise` judged it by (a section redraws its figures with them)
    rules: ReportConfig = field(default_factory=ReportConfig)
    # "v2": judged against matched controls on excess risk (docs/THEORY.md section 8.1);
    # "v1": by the first design's rules, exploratory (section 5)
    rules_version: str = "v1"

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
                    is not None and h.p_refute_holm < self.rules.alpha and self.verdict == REFUTED]
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
               "numbers": self.numbers, "rule": self.rule, "rules_version": self.rules_version,
               "groups": [h.to_json() for h in self.groups]}
        if g is not None:
            for key in ("estimate", "interval", "margin", "n_seeds", "min_detectable_effect",
                        "statistic"):
                out[key] = _clean(getattr(g, key))
            if g.scale:  # version 2: what the verdict is on and against
                out.update({"scale": g.scale, "control": g.control, "seeds": g.n_seeds,
                            "margins": _clean(g.margins)})
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
    pred.rules = cfg
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
    """The training gate of a group on generation-0 records, by seed: mean test, ridge and zero
    risk over seeds; `reached` when test - ridge <= tolerance x (zero - ridge).

    Superseded for verdicts by the per-loop gate (`gating.split_by_gate`: every loop on its own
    generation 0, a loop that misses left out); kept for the ridge table of REPORT.md. A seed
    with several loops (lambdas, m) is the mean of its loops' generation-0 records, never the
    one read last. `seeds_reached` counts the seeds that pass on their own. Both are computed
    from the risks (`zero_risk` from the record, or from summary.json's zero baseline for
    records that do not carry it) rather than read from the records' `gap_closed` /
    `reached_ridge`: the same numbers, but at this report's tolerance and valid for records
    averaged over several test sets."""
    by_seed: dict[int, list[dict]] = {}
    for r in records:
        if r["generation"] == 0 and r.get("ridge_risk") is not None:
            by_seed.setdefault(r["seed"], []).append(r)
    if not by_seed:
        return None
    rows = [_mean_record(by_seed[s]) for s in sorted(by_seed)]
    zeros = [r.get("zero_risk") for r in rows]
    test = float(np.mean([r["test_risk"] for r in rows]))
    ridge = float(np.mean([r["ridge_risk"] for r in rows]))
    n = min(r.get("n") for r in rows) if all(r.get("n") is not None for r in rows) else None
    if any(z is None for z in zeros):
        return {"n": n, "seeds": len(rows), "test_risk": test,
                "ridge_risk": ridge, "zero_risk": None, "gap_closed": None, "reached": None,
                "tolerance": tolerance}
    zero = float(np.mean(zeros))
    per_seed = [gap_closed(r["test_risk"], r["ridge_risk"], r["zero_risk"]) for r in rows]
    return {"n": n, "seeds": len(rows), "test_risk": test, "ridge_risk": ridge,
            "zero_risk": zero, "gap_closed": gap_closed(test, ridge, zero),
            "gap_closed_min": float(np.nanmin(per_seed)) if per_seed else None,
            "seeds_reached": sum(bool(c >= 1.0 - tolerance) for c in per_seed),
            "reached": reached_ridge(test, ridge, zero, tolerance), "tolerance": tolerance}


def _mean_record(records: list[dict]) -> dict:
    """One seed's generation-0 risks: its record, or the mean over its loops' records (in a
    fixed order, so the order they were read in never changes a digit)."""
    if len(records) == 1:
        return records[0]
    records = sorted(records, key=lambda r: (float(r["real_fraction"]), r.get("augment") or 0,
                                             str(r.get("labeller")), str(r.get("run"))))
    out = dict(records[0])
    for key in ("test_risk", "ridge_risk", "zero_risk"):
        values = [r.get(key) for r in records]
        out[key] = None if any(v is None for v in values) else float(np.mean(values))
    return out


def result_of(name: str, test: dict, margin: float, statistic: str, index=()) -> GroupResult:
    """A group's result from one entry of a `stats` test (its code, estimate, interval, ...)."""
    fields = fields_of(test, index)
    code = int(np.asarray(test["code"])[index]) if np.ndim(test["code"]) else int(test["code"])
    return GroupResult(name, CODES[code], fields["estimate"], fields["interval"], margin,
                       int(test["n_seeds"]), fields["min_detectable_effect"],
                       fields["p_refute"], statistic=statistic)


def largest(groups: list[GroupResult], key: str, then: str | None = None) -> GroupResult | None:
    """The group with the largest `key` (ties: smallest `then`, then first)."""
    if not groups:
        return None
    best = max(g.key.get(key, 0) for g in groups)
    top = [g for g in groups if g.key.get(key, 0) == best]
    if then is not None:
        low = min(g.key.get(then, 0) for g in top)
        top = [g for g in top if g.key.get(then, 0) == low]
    return top[0]


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or isinstance(x, str):
        return "n/a" if x is None else x
    return f"{x:.{digits}g}" if math.isfinite(x) else ("inf" if x > 0 else "n/a")


def fmt_ci(interval) -> str:
    if interval is None:
        return "[n/a]"
    return f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def describe_test(res: GroupResult, unit: str = "") -> str:
    """"estimate 0.12 [0.05, 0.19] (margin 0.1, 5 seeds, MDE 0.08)" for a group's table."""
    seeds = f"{res.n_seeds} seed" + ("" if res.n_seeds == 1 else "s")
    return (f"{res.statistic} {fmt(res.estimate)}{unit} {fmt_ci(res.interval)} (margin "
            f"{fmt(res.margin)}, {seeds}, MDE {fmt(res.min_detectable_effect)})")
