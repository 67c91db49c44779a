"""Size and calibrate the version-2 rules from a pilot (docs/results/pilot-v2/pilot.json, or
another setting's: --pilot docs/results/pilot-v2-d3).

    .venv/bin/python scripts/size_v2.py            # writes sizing.json and calibration.json
    .venv/bin/python scripts/size_v2.py --check    # exit 1 if either is stale
    .venv/bin/python scripts/size_v2.py --pilot docs/results/pilot-v2-d3   # the second setting

What it does, in order (docs/THEORY.md section 8.1 states the outcome):
1. Noise: sigma (one generation's log contrast, retrain to retrain) and tau (a seed's
   persistent offset), pooled over the pilot's lambdas.
2. Truths at the horizon G: at lambda = 0 the loop's excess risk accumulates drift,
   E = E_oracle (1 + beta g), so the contrast is log(1 + beta g), beta fitted to the pilot's
   generations (concave: no faster than the pilot shows); at lambda = 0.5 the contrast settles,
   level (1 - (1 - lambda)^(g + 1))^2, at the level the pilot's last generation shows.
3. Margins: delta_1 halfway (on the log scale) between the two truths' P1 statistics, so that
   both sides of the joint test have the same room; delta_2 = delta_1 / (2 (G - i_0)): within
   P2's window a bounded loop may not rise by more than half of the collapse margin.
4. Seeds: the smallest count at which P1 at lambda = 0 and P2 at lambda = 0.5 both reach 80%
   power against those truths (at most MAX_SEEDS), and at least the setting's floor
   (MIN_SEEDS: 10 at d = 2, 6 in the second setting); then the calibration at that count: every
   rule at its margin (false-confirm rate), at its truth (power), a bounded loop still in its
   transient, a collapsing loop offered to P2, and flat truths.

A pilot after d = 2 (its pilot.json names its `setting`) also gets, in sizing.json: the setting,
its floor, the fewest seeds with 80% power before the floor (`seeds_for_power`: what P1 and P2
need), each rule's minimum detectable effect at the chosen counts (`planned_mde`, as the
programme reports it), whether the two truths are apart at all (`truths_separated`), the share
of the pilot's loops that were readable, and the seeds to list so that the count is readable
with 95% chance at that share (`seeds_to_list`: the count and its spares).
The d = 2 sizing.json predates those fields and is kept as committed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from icl_stl.report.predictions.p2_matched_bounded import transient_end
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_v2 import (
    Noise,
    constant,
    interval,
    p1_rates,
    p2_rates,
    settling,
    sloped_after,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs/results/pilot-v2"
HORIZON, LAMBDA, MAX_SEEDS, POWER = 8, 0.5, 24, 0.80
# The confirmatory reproduction's floor per setting, whatever the power (issue 29): at least 10
# seeds at d = 2, at least 6 in the second setting.
MIN_SEEDS = {"d2": 10, "d3": 6}
DRAWS = 20_000


def setting_of(pilot: dict) -> str:
    """The pilot's setting: named by pilots after d = 2, which predates the field."""
    return pilot["setting"]["name"] if "setting" in pilot else "d2"


def noise_of(pilot: dict) -> Noise:
    rows = list(pilot["lambdas"].values())
    short = [lam for lam, r in pilot["lambdas"].items() if "sigma" not in r]
    if short:
        raise SystemExit(f"scripts/size_v2.py: lambda {short[0]}: fewer than 2 readable pilot "
                         "seeds, so no noise estimate; the pilot cannot size the rules")
    return Noise(float(np.sqrt(np.mean([r["sigma"] ** 2 for r in rows]))),
                 float(np.sqrt(np.mean([r["tau"] ** 2 for r in rows]))))


def collapse_beta(means: list[float]) -> float:
    """beta of log(1 + beta g) fitted to the mean contrasts of generations 1..len(means)."""
    gens = np.arange(1, len(means) + 1, dtype=float)
    grid = np.linspace(1e-3, 20.0, 20_000)
    loss = ((np.log1p(grid[:, None] * gens) - np.asarray(means)) ** 2).sum(1)
    return float(grid[loss.argmin()])


def test_prompts_needed(pilot: dict, delta2: float, window: int) -> int:
    """Test prompts at which the test-set SE of P2's per-seed slope is at most 0.2 delta_2:
    the contrast's SE bounded by sqrt(2) x the mean relative SE of one excess risk (the arms
    taken as independent), over the window's sqrt(sum (g - mean)^2), scaled from the pilot's
    test set by 1 / sqrt(prompts)."""
    gens = np.arange(window, dtype=float)
    spread = float(np.sqrt(((gens - gens.mean()) ** 2).sum()))
    slope_se = np.sqrt(2.0) * pilot["excess_relative_se"]["mean"] / spread
    factor = (slope_se / (0.2 * delta2)) ** 2
    return int(math.ceil(pilot["test_prompts"] * factor / 1000.0) * 1000)


def size(pilot: dict) -> tuple[dict, ReportConfig]:
    noise = noise_of(pilot)
    gens = np.arange(1, HORIZON + 1, dtype=float)
    beta = collapse_beta(pilot["lambdas"]["0"]["contrast_mean_by_generation"])
    half = pilot["lambdas"][f"{LAMBDA:g}"]["contrast_mean_by_generation"]
    last = len(half)
    level = max(half[-1], 0.0) / (1 - (1 - LAMBDA) ** (last + 1)) ** 2
    p1_collapse = float(np.log1p(beta * gens).mean())
    p1_bounded = float(settling(level, LAMBDA)(gens).mean())
    delta1 = round(0.5 * (p1_collapse + p1_bounded), 2)
    i0 = transient_end(LAMBDA, 0.05)
    delta2 = round(delta1 / (2 * (HORIZON - i0)), 3)
    cfg = ReportConfig(v2_delta1=delta1, v2_delta2=delta2, v2_horizon=HORIZON, v2_p1_seeds=None,
                       v2_p2_seeds=None)
    collapse = lambda g: np.log1p(beta * g)  # noqa: E731
    powers = {}
    for seeds in range(4, MAX_SEEDS + 1, 2):
        p1 = p1_rates(collapse, seeds, noise, cfg, draws=4000)["confirmed"]
        p2 = p2_rates(settling(level, LAMBDA), LAMBDA, seeds, noise, cfg,
                      draws=4000)["confirmed"]
        powers[seeds] = {"p1": p1, "p2": p2}
    p1_enough = [s for s, p in powers.items() if p["p1"] >= POWER]
    p2_enough = [s for s, p in powers.items() if p["p2"] >= POWER]
    floor = MIN_SEEDS[setting_of(pilot)]
    sizing = {"noise": {"sigma": noise.sigma, "tau": noise.tau},
              "collapse_beta": beta, "bounded_level": level,
              "p1_statistic_truth": {"lambda_0": p1_collapse, f"lambda_{LAMBDA:g}": p1_bounded},
              "delta_1": delta1, "delta_2": delta2, "i_0": i0, "horizon": HORIZON,
              "power_by_seeds": powers,
              "test_prompts_needed": test_prompts_needed(pilot, delta2, HORIZON - i0 + 1),
              # P1 and P2 each at the fewest seeds with 80% power, and at least the floor
              "seeds_p1": max(floor, min(p1_enough)) if p1_enough else None,
              "seeds_p2": max(floor, min(p2_enough)) if p2_enough else None}
    if "setting" in pilot:
        sizing.update(extended_sizing(pilot, sizing, cfg, noise, floor, p1_enough, p2_enough))
    return sizing, cfg


def extended_sizing(pilot: dict, sizing: dict, cfg: ReportConfig, noise: Noise, floor: int,
                    p1_enough: list[int], p2_enough: list[int]) -> dict:
    """What a pilot after d = 2 adds: its setting and floor, what each rule needs before the
    floor, the planned minimum detectable effects and the readable share of its loops."""
    from dataclasses import replace

    from icl_stl.report.simulate_v2 import planned_mde

    counts = {"p1": sizing["seeds_p1"], "p2": sizing["seeds_p2"]}
    planned = None
    if None not in counts.values():
        at = replace(cfg, v2_p1_seeds=counts["p1"], v2_p2_seeds=counts["p2"])
        planned = planned_mde(noise, at, counts["p1"], counts["p2"], lam=LAMBDA)
    gate = pilot["gate_passed"]
    share = gate["readable"] / gate["loops"] if gate["loops"] else None
    truths = sizing["p1_statistic_truth"]
    return {"setting": pilot["setting"]["name"], "seeds_floor": floor,
            "seeds_for_power": {"p1": min(p1_enough) if p1_enough else None,
                                "p2": min(p2_enough) if p2_enough else None,
                                "power": POWER, "max_seeds": MAX_SEEDS},
            "planned_mde": planned,
            # the margins mean something only when the pilot's collapse rises above its bounded
            # loop; otherwise the setting is not testable at this budget
            "truths_separated": truths["lambda_0"] > truths[f"lambda_{LAMBDA:g}"],
            "readable_share": share,
            "seeds_to_list": {rule: seeds_to_list(count, share)
                              for rule, count in counts.items()} | {"chance": LIST_CHANCE}}


LIST_CHANCE = 0.95


def seeds_to_list(count: int | None, share: float | None) -> int | None:
    """The fewest seeds N to list (count and spares) such that at least `count` of them are
    readable with probability LIST_CHANCE, each readable with the pilot's share."""
    if count is None or not share:
        return None
    for n in range(count, 20 * count + 1):
        reach = sum(math.comb(n, r) * share ** r * (1 - share) ** (n - r)
                    for r in range(count, n + 1))
        if reach >= LIST_CHANCE:
            return n
    return None


def calibrate(sizing: dict, cfg: ReportConfig) -> list[dict]:
    """Every rule at its margin, at its truth and at the traps, at the chosen seed count."""
    seeds_of = {"P1": sizing["seeds_p1"] or MAX_SEEDS, "P2": sizing["seeds_p2"] or MAX_SEEDS}
    noise = Noise(sizing["noise"]["sigma"], sizing["noise"]["tau"])
    beta, level, i0 = sizing["collapse_beta"], sizing["bounded_level"], sizing["i_0"]
    d1, d2 = cfg.v2_delta1, cfg.v2_delta2
    cases = [
        ("P1", "mean log contrast exactly delta_1 (flat at the margin)", "confirmed",
         p1_rates(constant(d1), seeds_of["P1"], noise, cfg, DRAWS)),
        ("P1", f"collapse log(1 + {beta:.3g} g) (the pilot's)", "confirmed",
         p1_rates(lambda g: np.log1p(beta * g), seeds_of["P1"], noise, cfg, DRAWS)),
        ("P1", "no collapse: flat at 0 (a flat truth)", "confirmed",
         p1_rates(constant(0.0), seeds_of["P1"], noise, cfg, DRAWS)),
        ("P2", "slope exactly +delta_2 after i_0, P1 statistic low", "confirmed",
         p2_rates(sloped_after(0.0, d2, i0), LAMBDA, seeds_of["P2"], noise, cfg, DRAWS)),
        ("P2", f"bounded, settling to {level:.3g} (the pilot's lambda = 0.5)", "confirmed",
         p2_rates(settling(level, LAMBDA), LAMBDA, seeds_of["P2"], noise, cfg, DRAWS)),
        ("P2", "bounded, settling to twice the pilot's level (the most rise left in the "
               "window)", "refuted",
         p2_rates(settling(2 * level, LAMBDA), LAMBDA, seeds_of["P2"], noise, cfg, DRAWS)),
        ("P2", "a loop P1 calls collapsing (the lambda = 0 truth) offered to P2", "confirmed",
         p2_rates(lambda g: np.log1p(beta * g), LAMBDA, seeds_of["P2"], noise, cfg, DRAWS)),
        ("P2", "flat at delta_1 (no trend, but at the collapse margin)", "confirmed",
         p2_rates(constant(d1), LAMBDA, seeds_of["P2"], noise, cfg, DRAWS)),
    ]
    rows = []
    for rule, truth, reads, rates in cases:
        rate = rates[reads]
        rows.append({"rule": rule, "truth": truth, "seeds": seeds_of[rule], "draws": DRAWS,
                     "reads": reads, "rate": rate, "interval": interval(rate, DRAWS),
                     "rates": rates})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pilot", "--results", dest="results", type=Path, default=RESULTS,
                        help="the pilot's results folder: reads pilot.json, writes sizing.json "
                             "and calibration.json there (default: %(default)s)")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    pilot = json.loads((args.results / "pilot.json").read_text())
    sizing, cfg = size(pilot)
    texts = {"sizing.json": sizing, "calibration.json": calibrate(sizing, cfg)}
    texts = {k: json.dumps(v, indent=2) + "\n" for k, v in texts.items()}
    if args.check:
        stale = [k for k, t in texts.items() if (args.results / k).read_text() != t]
        print("stale: " + ", ".join(stale) if stale else "up to date")
        return 1 if stale else 0
    for name, text in texts.items():
        (args.results / name).write_text(text)
    print(json.dumps({k: sizing[k] for k in ("noise", "delta_1", "delta_2", "seeds_p1",
                                             "seeds_p2")}))
    print(f"power: {sizing['power_by_seeds']}")
    print("calibration: " + "; ".join(f"{r['rule']} {r['truth']}: {r['reads']} "
                                      f"{r['rate']:.3f}" for r in json.loads(
                                          texts["calibration.json"])))
    return 0 if math.isfinite(sizing["delta_1"]) else 1


if __name__ == "__main__":
    sys.exit(main())
