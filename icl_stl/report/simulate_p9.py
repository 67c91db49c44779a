"""Simulated log contrasts with known truths: the calibration of P9's rule (docs/THEORY.md section 8.10).

The draws are those of `simulate_v2.draw` (truth + a seed's offset tau + a generation's noise
sigma), judged by the very function P9's report calls (`p2_matched_core`) over P9's window
(`p9_accumulation.p9_window`). Until P9's pilot measures its own noise, the rows use the
version-2 pilot's (docs/results/pilot-v2/sizing.json). The truths:

- at the margin: flat up to i_0, then a slope of exactly +delta_2 (or -delta_2) per
  generation, the mean log contrast low: the slope's TOST must confirm at most 5%;
- flat at delta_1: no trend, but at the collapse margin: at most 5%;
- the pilot's collapse log(1 + 0.259 g) (a loop P1 calls collapsing): never certified;
- the reference learner's own drift with S_0 kept, log D_g against a flat twin (bounded, its
  remaining rise within the window at most 0.2 delta_2 a generation): the power;
- the reference learner's contrast against its oracle twin, log((g + 1) D_g): its twin gains
  from the volume, so the contrast keeps rising and the rule refutes it.
"""

from __future__ import annotations

import numpy as np

from icl_stl.report.predictions.p2_matched_bounded import p2_matched_core
from icl_stl.report.predictions.p9_accumulation import PRIMARY_ARM, p9_window
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_v2 import Noise, Truth, constant, draw, interval, sloped_after
from icl_stl.report.stats import rates
from icl_stl.theory.accumulation import accumulation_drift, reference_contrast

PILOT_COLLAPSE_BETA = 0.259  # docs/results/pilot-v2/sizing.json collapse_beta


def p9_rates(truth: Truth, seeds: int, noise: Noise, cfg: ReportConfig, draws: int = 20_000,
             seed: int = 0) -> dict[str, float]:
    """Share of each P9 verdict over `draws` simulated groups at horizon cfg.v2_p9_horizon."""
    gens = np.arange(1, cfg.v2_p9_horizon + 1)
    window = p9_window(cfg, [int(g) for g in gens])
    if window is None:
        raise ValueError(f"P9's window is shorter than {cfg.v2_p9_min_window} generations at "
                         f"horizon {cfg.v2_p9_horizon}")
    contrast = draw(truth, gens, seeds, noise, draws, np.random.default_rng(seed))
    test = p2_matched_core(contrast[..., gens >= window[0]], window, contrast, cfg)
    return rates(test["code"])


def _tabulated(values: np.ndarray) -> Truth:
    """A truth given at generations 0..len - 1."""
    return lambda g: values[np.asarray(g, dtype=int)]


def reference_drift(horizon: int) -> Truth:
    """log D_g with S_0 kept: the reference learner's own drift against a flat twin."""
    return _tabulated(np.log(accumulation_drift(horizon, PRIMARY_ARM)))


def reference_against_twin(horizon: int) -> Truth:
    """log((g + 1) D_g): the reference learner against its oracle twin of the same volume."""
    return _tabulated(reference_contrast(horizon, PRIMARY_ARM))


def truths(cfg: ReportConfig) -> list[tuple[str, Truth, str]]:
    """(description, truth, the verdict whose rate is read) of each calibration row."""
    i0 = p9_window(cfg, list(range(1, cfg.v2_p9_horizon + 1)))[0]
    G = cfg.v2_p9_horizon
    return [
        (f"slope exactly +delta_2 after i_0 = {i0}, mean log contrast low", sloped_after(
            0.0, cfg.v2_delta2, i0), "confirmed"),
        (f"slope exactly -delta_2 after i_0 = {i0}, mean log contrast low", sloped_after(
            0.0, -cfg.v2_delta2, i0), "confirmed"),
        ("flat at delta_1 (no trend, at the collapse margin)", constant(cfg.v2_delta1),
         "confirmed"),
        (f"collapse log(1 + {PILOT_COLLAPSE_BETA} g) (the version-2 pilot's)",
         lambda g: np.log1p(PILOT_COLLAPSE_BETA * g), "confirmed"),
        ("the reference learner's drift with S_0 kept, log D_g (bounded)", reference_drift(G),
         "confirmed"),
        ("the reference learner against its oracle twin, log((g + 1) D_g)",
         reference_against_twin(G), "refuted"),
    ]


def calibration(noise: Noise, cfg: ReportConfig, seeds: int, draws: int = 20_000,
                seed: int = 0) -> list[dict]:
    """One row per truth (`truths`): the rate of its verdict with a Wilson 95% interval."""
    rows = []
    for k, (what, truth, reads) in enumerate(truths(cfg)):
        rate = p9_rates(truth, seeds, noise, cfg, draws, seed + k)[reads]
        rows.append({"truth": what, "seeds": seeds, "reads": reads, "rate": rate,
                     "interval": list(interval(rate, draws)), "draws": draws})
    return rows

