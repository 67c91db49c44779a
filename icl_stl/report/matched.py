"""Loops and their matched controls (version-2 rules): pairing, log contrasts, failures.

Every loop under test (labelled by its own model) is paired, seed by seed, with the loop that is
identical except that its synthetic prompts are labelled by the oracle: the same S_0,
initialisation, batch-order stream, synthetic x's, regime and compute per generation. The
contrast at generation g is log(E(g) / E_oracle(g)) with E the excess risk over the Bayes
predictor (`bayes_excess`: the mean of (f - f_Bayes)^2 / d over test prompts and positions). A
generation 0 shared by both arms gives a contrast of exactly 0 there.

A pair is read only when both loops' own generation 0 passed the training gate, and every later
generation is checked: a generation still near the zero predictor's plateau, or whose risk on
its own training data is far above the oracle arm's, is a *training failure*. It is reported and
counted, never read as collapse: the pair leaves the group.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from icl_stl.training.gate import gap_closed

__all__ = ["MatchedLoop", "base_config", "labeller_of", "matched_loops", "regime_of"]

SCALE = "excess_risk"  # what the version-2 loop verdicts are on (verdicts.json `scale`)
EXCESS = "bayes_excess"  # the record field that holds it
_LABELLER_TERM = re.compile(r"(^|, )loop\.labeller=\w+")


def labeller_of(record: dict, settings: dict | None = None) -> str:
    """"model" or "oracle": the record's own labeller, else its run's loop.labeller."""
    return str(record.get("labeller") or (settings or {}).get("loop.labeller") or "model")


def regime_of(record: dict, settings: dict | None = None) -> str:
    """"from_scratch" or "warm_start": the record's regime, else its run's loop.init."""
    return str(record.get("regime") or (settings or {}).get("loop.init") or "from_scratch")


def base_config(config: str) -> str:
    """A run's configuration label without its labeller: a loop and its oracle control may
    come from two runs that differ only there."""
    return _LABELLER_TERM.sub("", config).lstrip(", ")


@dataclass
class MatchedLoop:
    """One loop under test with its oracle control, generation by generation."""

    config: str  # base configuration (labeller left out)
    regime: str
    n: int
    augment: int
    real_fraction: float
    seed: int
    generations: list[int]  # generations both arms have
    excess: np.ndarray  # the loop's excess risk per generation
    control: np.ndarray  # the oracle loop's
    gate: dict  # gap closed by each arm's own generation 0, and whether both passed
    failures: list[dict] = field(default_factory=list)  # failed generations (either arm)
    in_theorem_setting: bool = True
    s0: str | None = None

    @property
    def contrast(self) -> np.ndarray:
        """log(E / E_oracle) per generation."""
        return np.log(self.excess / self.control)

    @property
    def gated(self) -> bool:
        return bool(self.gate.get("reached"))

    def describe(self) -> str:
        return (f"seed {self.seed}, λ={self.real_fraction:g}, n={self.n}"
                + (f", m={self.augment}" if self.augment else ""))


def _gap(record: dict) -> float:
    zero = record.get("zero_risk")
    if zero is None or record.get("ridge_risk") is None:
        return float("nan")
    return gap_closed(float(record["test_risk"]), float(record["ridge_risk"]), float(zero))


def _failure(g: int, arm: str, record: dict, oracle: dict, plateau_gap: float,
             train_ratio: float) -> dict | None:
    """Generation g of one arm failed to train: still near the zero-predictor plateau (test
    risk closes less than `plateau_gap` of the zero-to-ridge gap), or its risk on its own
    training data exceeds `train_ratio` x the oracle arm's on its own."""
    closed = _gap(record)
    if math.isfinite(closed) and closed < plateau_gap:
        return {"generation": g, "arm": arm, "why": f"on the plateau (gap closed {closed:.3f})"}
    own, ref = record.get("train_risk"), oracle.get("train_risk")
    if own is not None and ref is not None and ref > 0 and own > train_ratio * ref:
        return {"generation": g, "arm": arm,
                "why": f"training risk {own:.4g} over {train_ratio:g} x the oracle arm's "
                       f"{ref:.4g}"}
    return None


def matched_loops(records: list[dict], settings: dict[str, dict], tolerance: float,
                  plateau_gap: float, train_ratio: float) -> list[MatchedLoop]:
    """Every model-labelled loop that has an oracle-labelled twin, in a fixed order.

    Records are matched on (base configuration, regime, n, m, lambda, seed) and, where both
    carry it, the S_0 fingerprint. Loops without `bayes_excess` in every shared generation are
    left out (records of an older version). The order of the records does not matter: the
    result is sorted by its keys.
    """
    arms: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        run_settings = settings.get(r.get("run", ""), {})
        key = (base_config(r.get("config", "")), regime_of(r, run_settings), int(r["n"]),
               int(r.get("augment", 0)), float(r["real_fraction"]), int(r["seed"]))
        arms[key][labeller_of(r, run_settings)][int(r["generation"])] = r
    out = []
    for key in sorted(arms, key=lambda k: tuple(map(str, k))):
        model, oracle = arms[key].get("model"), arms[key].get("oracle")
        if not model or not oracle:
            continue
        gens = sorted(set(model) & set(oracle))
        if not gens or gens[0] != 0:
            continue
        fps = {model[0].get("s0"), oracle[0].get("s0")} - {None}
        if len(fps) > 1:
            continue  # same labels on paper, but not the same S_0: not a matched pair
        if any(model[g].get(EXCESS) is None or oracle[g].get(EXCESS) is None for g in gens):
            continue
        closed = {"model": _gap(model[0]), "oracle": _gap(oracle[0])}
        reached = all(math.isfinite(c) and c >= 1.0 - tolerance for c in closed.values())
        failures = [f for g in gens if g > 0 for arm, rec in (("model", model[g]),
                                                             ("oracle", oracle[g]))
                    if (f := _failure(g, arm, rec, oracle[g], plateau_gap, train_ratio))]
        config, regime, n, m, lam, seed = key
        out.append(MatchedLoop(
            config, regime, n, m, lam, seed, gens,
            np.array([float(model[g][EXCESS]) for g in gens]),
            np.array([float(oracle[g][EXCESS]) for g in gens]),
            {"gap_closed": closed, "reached": reached, "tolerance": tolerance},
            failures, bool(model[0].get("in_theorem_setting", True)), model[0].get("s0")))
    return out


def secondary_contrast(records: list[dict], settings: dict[str, dict],
                       loop: MatchedLoop) -> np.ndarray | None:
    """log(E / E at lambda = 1) per generation of `loop` against the same seed's lambda = 1
    model-labelled loop (the secondary control), or None without one."""
    ones = {int(r["generation"]): r for r in records
            if float(r["real_fraction"]) == 1.0 and int(r["seed"]) == loop.seed
            and int(r["n"]) == loop.n and int(r.get("augment", 0)) == loop.augment
            and base_config(r.get("config", "")) == loop.config
            and labeller_of(r, settings.get(r.get("run", ""), {})) == "model"
            and regime_of(r, settings.get(r.get("run", ""), {})) == loop.regime
            and r.get(EXCESS) is not None}
    if not all(g in ones for g in loop.generations):
        return None
    return np.log(loop.excess / np.array([float(ones[g][EXCESS]) for g in loop.generations]))


@dataclass
class MatchedGroup:
    """The loops of one group that a version-2 verdict may read, and those it may not."""

    loops: list[MatchedLoop]  # gated, trained, on the group's common generations
    generations: list[int]  # generations every kept loop has (both arms)
    left_out: dict  # counts and names: missed the gate, failed to train
    uneven: bool  # the loops did not all reach the same generations

    def matrix(self, generations: list[int]) -> np.ndarray:
        """(loops, len(generations)) log contrasts."""
        rows = [[loop.contrast[loop.generations.index(g)] for g in generations]
                for loop in self.loops]
        return np.array(rows, dtype=float).reshape(len(self.loops), len(generations))


def readable(loops: list[MatchedLoop], count: int | None = None) -> MatchedGroup:
    """Leave out the loops whose own generation 0 missed the gate and those with a training
    failure (each counted by name), and find the generations every remaining loop has.

    Seeds enter in a fixed order (ascending): with `count`, the first `count` readable loops
    are read and any later ones are listed as beyond the stated count, so that adding seeds
    until a verdict appears is not possible."""
    loops = sorted(loops, key=lambda lp: lp.seed)
    missed = [loop for loop in loops if not loop.gated]
    failed = [loop for loop in loops if loop.gated and loop.failures]
    kept = [loop for loop in loops if loop.gated and not loop.failures]
    beyond = kept[count:] if count is not None else []
    kept = kept[:count] if count is not None else kept
    common = sorted(set.intersection(*(set(loop.generations) for loop in kept))) if kept else []
    uneven = len({tuple(loop.generations) for loop in kept}) > 1
    left_out = {"missed_gate": len(missed), "training_failures": len(failed),
                "loops": [f"{loop.describe()}: gate missed (gap closed "
                          f"{min(loop.gate['gap_closed'].values()):.3f})" for loop in missed]
                + [f"{loop.describe()}: generation {f['generation']} ({f['arm']} arm) "
                   f"{f['why']}" for loop in failed for f in loop.failures[:1]],
                "beyond_count": [loop.seed for loop in beyond]}
    return MatchedGroup(kept, common, left_out, uneven)
