"""The analysis of the P10 pilot (scripts/pilot_p10.py analyse): pilot.json and sizing.json from
the runs' summary.json, read with the report's own functions.

- Each loop's gate and failures: `p10_real_weight.weighted_loops` (report/matched.py at the
  rules' thresholds: a loop's own generation 0 must close 90% of the zero-to-ridge gap).
- Per source, labeller and seed, the excess risk over Bayes (`bayes_excess`, the version-2
  scale) at the last generation against the real weight w, as P10's rule reads it
  (`p10_real_weight._curves`: readable seeds, the grid every seed has, ending at 1).
- The rule's core read (`p10_core`: P5's quadratic and end contrasts with P10's margins) per
  source for the model arm and the oracle arm, and the direction (`p10_direction`), on the
  pilot's seeds (min_seeds lowered to 2: the numbers, not a verdict); `testable`: the fresh
  loops' point estimates show a dip (curvature and both end contrasts > 0), the criterion of
  docs/THEORY.md section 8.8.
- The noise: sigma, one retrain's noise of one point of a curve, and tau, a seed's persistent
  level, from the additive model y_sj = m_j + u_s + e_sj (weight mean + seed level + noise:
  the model report/simulate_p10.py draws from), fitted per source and arm and pooled over the
  sources of the model arm: sigma^2 = the residual sum of squares over sources x (S-1)(J-1)
  dof, tau^2 = the variance of the seed means minus sigma^2 / J (floored at 0).
- The reference learner's curves (theory/real_weight.py) on the pilot's grid at its lambda and
  generation, and kappa, the least-squares scale of the pilot's mean curve on them.
- sizing.json: the power of the rule (`simulate_p10.p10_rates`, `direction_rates`) at the
  pilot's (sigma, tau) for 5-40 seeds against the stated effect, the reference curves (kappa 1
  and 0.3), the pilot's own curves and a null.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

SEED_COUNTS = (5, 10, 20, 40)
KAPPAS = (1.0, 0.3)  # the reference curves in full and at a third (docs/THEORY.md section 8.8)
COPIED = ("summary.json", "timing.json", "done.json")


class PilotInputError(ValueError):
    """Records the pilot cannot be read from (one line, exit 2)."""


def collect(work: Path, results: Path) -> list[str]:
    """Each finished run's records, copied from work/<point>/ to results/runs/<point>/."""
    copied = []
    for summary in sorted(work.glob("*/summary.json")):
        dest = results / "runs" / summary.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            if (summary.parent / name).exists():
                shutil.copyfile(summary.parent / name, dest / name)
        copied.append(summary.parent.name)
    return copied


def two_way(y: np.ndarray) -> tuple[float, float, int]:
    """(residual sum of squares, variance of the seed means, dof) of y (seeds, grid) under
    y_sj = m_j + u_s + e_sj."""
    s, j = y.shape
    resid = y - y.mean(0, keepdims=True) - y.mean(1, keepdims=True) + y.mean()
    return float((resid ** 2).sum()), float(y.mean(1).var(ddof=1)), (s - 1) * (j - 1)


def noise(ys: list[np.ndarray]) -> dict:
    """sigma and tau pooled over curves (seeds, grid) of the same shape."""
    parts = [two_way(y) for y in ys]
    dof = sum(p[2] for p in parts)
    sigma2 = sum(p[0] for p in parts) / dof
    tau2 = float(np.mean([p[1] - sigma2 / y.shape[1] for p, y in zip(parts, ys)]))
    return {"sigma": float(np.sqrt(sigma2)), "tau": float(np.sqrt(max(tau2, 0.0))), "dof": dof}


def fit(core: dict, y: np.ndarray) -> dict:
    from icl_stl.report.quadratic import end_contrasts
    from icl_stl.report.stats import CODES

    low, high = end_contrasts(y)
    cv, vx = core["curvature"], core["vertex"]
    return {"curvature_per_seed": core["coef"][:, 2].tolist(),
            "curvature": float(cv["estimate"]),
            "curvature_interval": [float(cv["low"]), float(cv["high"])],
            "vertex": float(vx["vertex"]), "vertex_interval": [float(vx["low"]),
                                                                float(vx["high"])],
            "low_end_per_seed": low.tolist(), "high_end_per_seed": high.tolist(),
            "low_end": float(core["low_end"]["estimate"]),
            "high_end": float(core["high_end"]["estimate"]),
            "dip_seen": bool(core["dip_seen"]), "code_at_pilot_seeds": CODES[int(core["code"])]}


def loop_table(items: list) -> tuple[list[dict], dict]:
    """Each loop's gate and failures, and per source, labeller and seed its excess risk at its
    last generation by weight (every loop, readable or not)."""
    gates, table = [], {}
    for source, weight, lp in sorted(items, key=lambda it: (it[0], it[1], it[2].seed)):
        gates.append({"source": source, "weight": weight, "seed": lp.seed,
                      "gap_closed": lp.gate["gap_closed"], "reached": lp.gated,
                      "failures": lp.failures, "readable": lp.gated and not lp.failures,
                      "last_generation": lp.generations[-1]})
        for arm, values in (("model", lp.excess), ("oracle", lp.control)):
            table.setdefault(source, {}).setdefault(arm, {}).setdefault(
                str(lp.seed), {})[f"{weight:g}"] = float(values[-1])
    return gates, table


def reference(lam: float, generation: int, grid: np.ndarray) -> dict:
    from icl_stl.report.simulate_p10 import reference_truth
    from icl_stl.theory.real_weight import optimal_real_weight, weighted_drift

    out = {}
    for source in ("fresh", "reuse"):
        out[source] = {
            "error_in_units_of_d_wvar_over_n": [
                float(weighted_drift(generation, 1, 1, lam, float(w), 1.0, source)[-1])
                for w in grid],
            "log_relative_to_minimum": reference_truth(lam, source, 1.0, generation)(grid)
            .tolist(),
            "optimal_weight": optimal_real_weight(lam, source, generation),
            "optimal_weight_plateau": optimal_real_weight(lam, source)}
    return out


def kappa(y: np.ndarray, truth: np.ndarray) -> float:
    """Least-squares scale of the mean curve (centred) on the reference curve (centred)."""
    m, t = y.mean(0) - y.mean(), truth - truth.mean()
    return float((m * t).sum() / (t * t).sum())


def analyse(results: Path) -> dict:
    """pilot.json from results/runs/*/summary.json."""
    from icl_stl.report.evidence import collect as collect_evidence
    from icl_stl.report.predictions.p10_real_weight import (
        _curves,
        p10_core,
        p10_direction,
        weighted_loops,
    )
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.stats import CODES

    cfg = ReportConfig()
    items = weighted_loops(collect_evidence([results / "runs"]), cfg)
    if not items:
        raise PilotInputError(f"no loop with a real weight and an oracle twin under "
                              f"{results / 'runs'}")
    groups = {(lp.config, lp.regime, lp.real_fraction, lp.n) for _, _, lp in items}
    if len(groups) > 1:
        raise PilotInputError(f"the runs under {results / 'runs'} form {len(groups)} groups "
                              "(configuration, regime, lambda, n); the pilot is one")
    (config, regime, lam, n), = groups
    gates, table = loop_table(items)
    curves = _curves(items, cfg)
    out = {"group": {"config": config, "regime": regime, "lambda": lam, "n": n},
           "gate": gates,
           "gate_passed": {"loops": len(gates), "reached": sum(g["reached"] for g in gates),
                           "readable": sum(g["readable"] for g in gates)},
           "excess_at_last_generation": table,
           "seeds_read": curves["seeds"], "generation_read": curves["generation"],
           "left_out": curves["left_out"], "sources": {}}
    per_source = curves["per_source"]
    pilot_cfg = ReportConfig(min_seeds=2)  # read the pilot's seeds' numbers, not a verdict
    for source, c in per_source.items():
        row = {"grid": c["v"].tolist()}
        for arm in ("model", "oracle"):
            row[arm] = {"log_excess": c[arm].tolist(),
                        **fit(p10_core(c[arm], c["v"], pilot_cfg), c[arm])}
        out["sources"][source] = row
    if "fresh" not in per_source:
        out["testable"] = None
        out["not_read"] = (f"no grid of >= 4 weights ending at 1 with fresh real data shared by "
                           f"{len(curves['seeds'])} readable seed(s) after generation 0")
        return out
    fresh = out["sources"]["fresh"]["model"]
    out["testable"] = fresh["dip_seen"]
    grid = per_source["fresh"]["v"]
    out["reference"] = reference(lam, curves["generation"], grid)
    out["kappa"] = {source: {arm: kappa(c[arm], np.array(
        out["reference"][source]["log_relative_to_minimum"]))
        for arm in ("model", "oracle")} for source, c in per_source.items()
        if np.array_equal(c["v"], grid)}
    if "reuse" in per_source and np.array_equal(per_source["reuse"]["v"],
                                                per_source["fresh"]["v"]):
        d = p10_direction(per_source["fresh"]["model"], per_source["reuse"]["model"], pilot_cfg)
        out["direction"] = {"estimate": float(d["estimate"]),
                            "interval": [float(d["low"]), float(d["high"])],
                            "code_at_pilot_seeds": CODES[int(d["code"])]}
    if len(curves["seeds"]) < 2:
        out["not_sized"] = "fewer than 2 readable seeds: no noise estimate"
        return out
    out["noise"] = {arm: noise([c[arm] for c in per_source.values()])
                    for arm in ("model", "oracle")}
    out["noise"]["how"] = ("additive model y_sj = m_j + u_s + e_sj per source and arm (the model "
                           "report/simulate_p10.py draws from); sigma^2: residual sum of squares "
                           "over sources x (S-1)(J-1) dof; tau^2: variance of the seed means "
                           "minus sigma^2 / J, floored at 0; the model arm sizes the rule")
    return out


def size(pilot: dict, draws: int) -> dict:
    """sizing.json: the power of the rule at the pilot's noise, by seed count."""
    from icl_stl.report.quadratic import fit_quadratics
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_p5 import dip, flat, quadratic_truth
    from icl_stl.report.simulate_p10 import Noise, direction_rates, p10_rates, reference_truth

    cfg = ReportConfig()
    lam, gen = pilot["group"]["lambda"], pilot["generation_read"]
    grid = np.array(pilot["sources"]["fresh"]["grid"])
    noise_ = Noise(pilot["noise"]["model"]["sigma"], pilot["noise"]["model"]["tau"])
    vertex = pilot["reference"]["fresh"]["optimal_weight"]
    ref = {(s, k): reference_truth(lam, s, k, gen) for s in ("fresh", "reuse") for k in KAPPAS}
    pilot_curve = {s: quadratic_truth(*fit_quadratics(np.array(row["model"]["log_excess"]),
                                                      np.array(row["grid"])).mean(0))
                   for s, row in pilot["sources"].items()}
    interior = {"stated_effect": dip(cfg.v2_p10_depth, vertex, grid), "flat": flat(),
                **{f"reference_fresh_kappa_{k:g}": ref["fresh", k] for k in KAPPAS},
                **{f"reference_reuse_kappa_{k:g}": ref["reuse", k] for k in KAPPAS},
                "pilot_fresh_curve": pilot_curve["fresh"]}
    direction = {"null_same_curve": (ref["reuse", 1.0], ref["reuse", 1.0]),
                 **{f"reference_kappa_{k:g}": (ref["fresh", k], ref["reuse", k])
                    for k in KAPPAS}}
    if "reuse" in pilot_curve and "direction" in pilot:
        direction["pilot_curves"] = (pilot_curve["fresh"], pilot_curve["reuse"])
    power = {name: {str(s): p10_rates(t, grid, s, noise_, cfg, draws)["confirmed"]
                    for s in SEED_COUNTS} for name, t in interior.items()}
    power_dir = {name: {str(s): direction_rates(f, r, grid, s, noise_, cfg, draws)["confirmed"]
                        for s in SEED_COUNTS} for name, (f, r) in direction.items()}
    first = lambda rates: min((s for s in SEED_COUNTS if rates[str(s)] >= cfg.power),  # noqa: E731
                              default=None)
    return {"sigma": noise_.sigma, "tau": noise_.tau, "grid": grid.tolist(), "lambda": lam,
            "generation": gen, "stated_effect": {"depth": cfg.v2_p10_depth, "vertex": vertex},
            "draws": draws, "seed_counts": list(SEED_COUNTS),
            "interior_optimum_confirmed": power, "direction_confirmed": power_dir,
            "seeds_for_power": {"power": cfg.power,
                                "interior": {k: first(v) for k, v in power.items()},
                                "direction": {k: first(v) for k, v in power_dir.items()}}}


def figure(pilot: dict, path: Path) -> Path:
    """Error against the real weight for both sources and arms, with the reference curves."""
    from icl_stl.report.real_weight_figure import draw

    path.parent.mkdir(parents=True, exist_ok=True)
    sources = pilot["sources"]
    grid = np.array(next(iter(sources.values()))["grid"])
    curves = {source: {arm: np.array(row[arm]["log_excess"]) for arm in ("model", "oracle")}
              for source, row in sources.items()}
    ref = {source: np.array(pilot["reference"][source]["log_relative_to_minimum"])
           for source in sources}
    g = pilot["group"]
    return draw(grid, curves, ref, path, f"P10 pilot: {g['regime']}, λ = {g['lambda']:g}, "
                f"n = {g['n']:,}, generation {pilot['generation_read']}, seeds "
                f"{', '.join(map(str, pilot['seeds_read']))}")


def analyse_work(work: Path, results: Path, draws: int) -> int:
    """`analyse`: copy, read, write pilot.json, sizing.json and README.md; the exit code."""
    from pilot_p10_readme import write_readme

    copied = collect(work, results)
    if not copied:
        print(f"scripts/pilot_p10.py: no finished run (summary.json) under --work {work}",
              file=sys.stderr)
        return 2
    print(f"[analyse] copied {', '.join(copied)} from {work}")
    try:
        pilot = analyse(results)
    except PilotInputError as err:
        print(f"scripts/pilot_p10.py: {err}", file=sys.stderr)
        return 2
    (results / "pilot.json").write_text(json.dumps(pilot, indent=2) + "\n")
    sizing = size(pilot, draws) if "noise" in pilot else None
    if sizing is not None:
        (results / "sizing.json").write_text(json.dumps(sizing, indent=2) + "\n")
    if pilot.get("sources"):  # a grid too short to read has none to draw
        figure(pilot, results / "figures" / "real_weight.png")
    write_readme(results, pilot, sizing)
    print(f"[analyse] gate: {pilot['gate_passed']}; testable (fresh dip seen): "
          f"{pilot['testable']}")
    for source, row in pilot["sources"].items():
        print(f"[analyse] {source}: curvature {row['model']['curvature']:.3f}, vertex "
              f"{row['model']['vertex']:.3f}, ends {row['model']['low_end']:.3f} / "
              f"{row['model']['high_end']:.3f} (oracle vertex {row['oracle']['vertex']:.3f})")
    if sizing is not None:
        print(f"[analyse] sigma {sizing['sigma']:.3f}, tau {sizing['tau']:.3f}; seeds for power: "
              f"{sizing['seeds_for_power']}")
    return 0
