"""sizing.json of the P6 pilot (used by scripts/pilot_p6.py analyse): delta_6 built as the
version-2 rules build their margins (docs/THEORY.md section 8.2), and the rule's power by
simulation with the report's own function (`report.simulate_p6.p6_rates`) at the pilot's noise.

- Noise: the interaction's own sigma (one generation, retrain to retrain) and tau (a seed's
  persistent part), measured on the pilot's readable pairs (pilot.json `noise`, pooled over the
  filters). It is the noise of a difference of two contrasts already, so it is used as it is
  (simulate_p6's `interaction_noise` doubles P1/P2's only in the absence of this pilot).
- The collapse the filters are read against: the unfiltered pair's mean log contrast by
  generation, fitted as log(1 + beta g) (size_v2's `collapse_beta`: concave, no faster than the
  pilot shows) and carried to the horizon G.
- delta_6: halfway between the two truths of the interaction, "the filter does nothing" (0)
  and "the filter removes the collapse" (-log(1 + beta g)), on the rule's statistic (the mean
  over generations 1..G), as delta_1 lies halfway between the collapsing and the bounded loop.
  When the unfiltered loop shows no collapse the two truths coincide and P6 is not testable at
  this budget (`truths_separated`).
- Truths simulated at 5, 10 and 20 seeds: exactly at the margin (the false-confirm rate), the
  filter doing nothing, removing the collapse, and each filter as the pilot shows it
  (log(1 + beta_f g) - log(1 + beta g), beta_f fitted to its own loop's contrast).
- The joint rule with its co-primary scales (`joint`, by `simulate_p6.p6_joint_rates` at the
  co-primary interactions' own pilot noise): removing the collapse at no cost on either scale;
  removing it with each co-primary interaction exactly at its margin (the false-confirm rate);
  and removing it at each filter's co-primary cost as the pilot shows it (its mean over the
  pilot's generations, held constant: the pilot's interactions grow with the generation, so
  this understates the cost).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from size_v2 import collapse_beta, seeds_to_list

SEED_COUNTS = (5, 10, 20)
POWER = 0.80


def _truths(beta: float, filters: dict, delta: float) -> dict:
    from icl_stl.report.simulate_v2 import constant

    out = {"at the margin (-delta_6)": constant(-delta),
           "the filter does nothing (0)": constant(0.0),
           f"removes the collapse (-log(1 + {beta:.3g} g))":
               lambda g: -np.log1p(beta * g)}
    for name, beta_f in filters.items():
        out[f"{name} as the pilot shows it (beta_f {beta_f:.3g})"] = \
            lambda g, b=beta_f: np.log1p(b * g) - np.log1p(beta * g)
    return out


def size(pilot: dict, draws: int) -> dict:
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_p6 import p6_rates
    from icl_stl.report.simulate_v2 import Noise

    base = ReportConfig()
    gens = np.arange(1, base.v2_horizon + 1, dtype=float)
    unfiltered = pilot["unfiltered_pair"]["contrast_mean_by_generation"]
    out: dict = {"horizon": base.v2_horizon, "seed_counts": list(SEED_COUNTS), "draws": draws,
                 "placeholder_delta_6": base.v2_p6_delta, "noise": pilot["noise"],
                 "unfiltered_contrast_mean_by_generation": unfiltered}
    if unfiltered:
        beta = collapse_beta(unfiltered)
        statistic = float(np.log1p(beta * gens).mean())
        delta = round(0.5 * statistic, 2)
        out.update(collapse_beta=beta, unfiltered_p1_statistic_at_horizon=statistic,
                   truths_separated=delta > 0, delta_6=delta if delta > 0 else None)
    else:
        out.update(collapse_beta=None, truths_separated=None, delta_6=None,
                   why_no_delta="no readable unfiltered pair with a generation after 0")
    gates = [g for g in pilot["gate"] if g["arm"] == "unfiltered"]
    share = sum(g["readable"] for g in gates) / len(gates) if gates else None
    out["readable_share"] = share
    out["seeds_to_list"] = {str(s): seeds_to_list(s, share) for s in SEED_COUNTS}
    noise = pilot["noise"]
    if noise["sigma"] is None or not out["delta_6"]:
        out["power"] = None
        out["why_no_power"] = ("no noise estimate: fewer than 2 readable seeds in every "
                               "filter's pairs" if noise["sigma"] is None
                               else "no delta_6: the unfiltered loop shows no collapse")
        return out
    cfg = replace(base, v2_p6_delta=out["delta_6"])
    filters = {name: collapse_beta(row["filtered_contrast_mean_by_generation"])
               for name, row in pilot["interaction"].items()
               if row["filtered_contrast_mean_by_generation"]}
    out["filter_beta"] = filters
    power = {label: {str(s): p6_rates(truth, s, Noise(noise["sigma"], noise["tau"]), cfg,
                                      draws=draws) for s in SEED_COUNTS}
             for label, truth in _truths(out["collapse_beta"], filters, cfg.v2_p6_delta).items()}
    out["power"] = power
    out["joint"] = _joint(pilot, out["collapse_beta"], noise, cfg, draws)
    out["seeds_for_80_percent"] = {
        label: min((s for s in SEED_COUNTS if rates[str(s)]["confirmed"] >= POWER),
                   default=None)
        for label, rates in power.items() if "margin" not in label and "nothing" not in label}
    return out


def _joint(pilot: dict, beta: float, noise: dict, cfg, draws: int) -> dict | None:
    """Rates of the joint rule (excess risk and the two co-primary scales) by seed count."""
    from icl_stl.report.simulate_p6 import p6_joint_rates
    from icl_stl.report.simulate_v2 import Noise, constant

    co = pilot.get("coprimary")
    if not co or any(co["noise"][s]["sigma"] is None for s in ("calibration", "spread")):
        return None
    noises = (Noise(noise["sigma"], noise["tau"]),
              *(Noise(co["noise"][s]["sigma"], co["noise"][s]["tau"])
                for s in ("calibration", "spread")))
    removes = lambda g: -np.log1p(beta * g)  # noqa: E731
    truths = {"removes the collapse, no co-primary cost": (removes, constant(0.0),
                                                           constant(0.0)),
              "removes the collapse, co-primary at the margins": (
                  removes, constant(cfg.v2_p6_calibration), constant(-cfg.v2_p6_spread))}
    for name, row in co["filters"].items():
        if row["calibration"] and row["spread"]:
            truths[f"removes the collapse at {name}'s co-primary cost"] = (
                removes, constant(row["calibration"]["mean"]), constant(row["spread"]["mean"]))
    return {"noise": co["noise"],
            "rates": {label: {str(s): p6_joint_rates(t, noises, s, cfg, draws=draws)
                              for s in SEED_COUNTS} for label, t in truths.items()}}
