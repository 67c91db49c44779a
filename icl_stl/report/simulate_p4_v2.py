"""Calibration of P4 version 2 by simulation, with the report's own functions (`decay_v2`).

A draw is a (seeds, n) table of final-generation gaps: a truth curve per n plus independent
Gaussian noise with a per-n standard deviation (the pilot's, or a stated one). Every draw goes
through `decay_v2.p4v2_core`, the function `p4_decay_v2` calls, so the rates below are those of
the report's rule itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icl_stl.report.decay_v2 import OUTCOMES, p4v2_core
from icl_stl.report.simulate_v2 import interval

CHUNK = 250  # draws per call (the bootstrap holds draws x replicates x n values)


def simulate(truth: Sequence[float], sd: Sequence[float] | float, ns: Sequence[int], seeds: int,
             draws: int, seed: int = 0, bootstrap: int = 500, **rules) -> dict[str, float]:
    """Share of draws per outcome of P4 v2 (keys of OUTCOMES), with `rules` passed on."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth, float)
    sd = np.broadcast_to(np.asarray(sd, float), truth.shape)
    counts = np.zeros(len(OUTCOMES), int)
    done = 0
    while done < draws:
        m = min(CHUNK, draws - done)
        values = truth + sd * rng.standard_normal((m, seeds, truth.size))
        out = p4v2_core(values, list(ns), rng, bootstrap=bootstrap, **rules)
        counts += np.bincount(out["outcome"].ravel(), minlength=len(OUTCOMES))
        done += m
    return {name: counts[i] / draws for i, name in enumerate(OUTCOMES)} | {"draws": draws}


def rate_with_interval(rate: float, draws: int) -> list[float]:
    """The Wilson 95% interval of a rate measured on `draws` draws."""
    return list(interval(rate, draws))


def power_table(ns: Sequence[int], level: float, exponent: float, sd: Sequence[float] | float,
                seed_counts: Sequence[int] = (5, 10, 20), draws: int = 2000,
                flat: bool = True) -> dict:
    """Per seed count: the share read "consistent" under level (n / n_0)^exponent, and, with
    `flat`, under a flat truth at `level` (its false-consistent and "no decay" rates)."""
    ns = list(ns)
    curve = level * (np.asarray(ns, float) / ns[0]) ** exponent
    out = {"truth": {"level": level, "exponent": exponent, "ns": ns},
           "sd": np.broadcast_to(np.asarray(sd, float), curve.shape).tolist(), "seeds": {}}
    for s in seed_counts:
        row = {"consistent": simulate(curve, sd, ns, s, draws, seed=s)["consistent"]}
        if flat:
            rates = simulate(np.full(len(ns), level), sd, ns, s, draws, seed=1000 + s)
            row.update(flat_consistent=rates["consistent"], flat_no_decay=rates["no_decay"])
        out["seeds"][str(s)] = row
    return out
