"""The analysis of P9's pilot (used by scripts/pilot_p9.py): pilot.json from each arm's
summary.json, read with the report's own functions (report/matched.py: the loop-and-twin pairs,
each loop's gate and training failures, the readable loops).

Noise: the per-seed, per-generation values x[s, g] of a statistic over generations 1..G are
split as x = (generation mean) + (seed offset) + (residual), the two-way layout without
interaction (scripts/pilot_v2_analysis.py `_two_way`): sigma is the residual's standard
deviation ((S - 1)(G - 1) degrees of freedom: the retrain-to-retrain noise of one generation),
tau the seed offsets' standard deviation after removing sigma^2 / G (S - 1 degrees of freedom:
with the pilot's 2 seeds, one). The generation means absorb any common trend, so the noise is
not inflated by a drift every seed shares.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from pilot_v2_analysis import _two_way
from pilot_v2_analysis import collect as collect_runs

# Seed-paired contrasts between arms (first against second), shown beside the twin contrast.
ARM_PAIRS = (("accumulate_s0", "replace"), ("volume_matched", "accumulate_s0"),
             ("accumulate", "accumulate_s0"))
FIGURE_ARMS = ("replace", "accumulate_s0", "accumulate", "volume_matched")  # in this order
LEVEL = 0.90  # the two-sided interval of a per-seed mean (the rules' TOST level)


class AnalysisError(Exception):
    """Bad input: one line, exit code 2."""


def collect(work: Path, results: Path) -> list[str]:
    """Each arm's summary.json and timing.json (pilot_v2_analysis.collect), and the pilot's
    invocations.json, copied from work to results/runs/."""
    copied = collect_runs(work, results)
    if (work / "invocations.json").exists():
        shutil.copyfile(work / "invocations.json", results / "runs" / "invocations.json")
    return copied


def load_arms(results: Path) -> dict[str, dict]:
    """{arm: summary} for every results/runs/<arm>/summary.json; the arm is the run's own
    loop.synthetic, checked against its folder."""
    from icl_stl.theory.accumulation import ARMS

    out = {}
    for path in sorted((results / "runs").glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
            arm = summary["settings"]["loop"].get("synthetic", "replace")
            summary["generations"]  # noqa: B018 (present)
        except (ValueError, KeyError, TypeError) as err:
            raise AnalysisError(f"{path}: not a loop's summary.json ({err!r})") from None
        if arm not in ARMS or arm != path.parent.name:
            raise AnalysisError(f"{path}: its loop.synthetic is {arm!r}, not the folder's "
                                f"{path.parent.name!r}")
        out[arm] = summary
    if not out:
        raise AnalysisError(f"no arm's summary.json under {results / 'runs'} (run the pilot, "
                            "then analyse with its --work)")
    return out


def interval(values: np.ndarray) -> list[float] | None:
    """The LEVEL t-interval of the mean over seeds (None with one seed)."""
    from icl_stl.report.stats import t_quantile

    if values.size < 2:
        return None
    half = t_quantile(0.5 + LEVEL / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return [float(values.mean() - half), float(values.mean() + half)]


def noise(values: np.ndarray) -> dict | None:
    """sigma and tau of (seeds, generations 1..G) values (module doc), or None when fewer than
    2 seeds or 2 generations."""
    if values.shape[0] < 2 or values.shape[1] < 2:
        return None
    sigma, tau = _two_way(values)
    s, g = values.shape
    return {"sigma": sigma, "tau": tau, "sigma_dof": (s - 1) * (g - 1), "tau_dof": s - 1}


def trend(log_values: np.ndarray, gens: list[int]) -> dict:
    """Per-seed least-squares slope of (seeds, gens) values, their mean and LEVEL interval."""
    from icl_stl.report.stats import slopes

    per_seed = slopes(gens, log_values)
    return {"generations": gens, "per_seed": per_seed.tolist(),
            "estimate": float(per_seed.mean()), "interval": interval(per_seed)}


def arm_part(summary: dict, arm: str, cfg) -> dict:
    """One arm: every loop's gate and failures, each labeller's excess risk, the log contrast
    against the twin, its noise, the twin's own trend and the reference learner's curves."""
    from icl_stl.report.matched import matched_loops, readable
    from icl_stl.report.predictions.p9_accumulation import p9_window, p9_window_start
    from icl_stl.report.stats import slopes
    from icl_stl.theory.accumulation import (
        accumulation_drift,
        oracle_twin_drift,
        reference_contrast,
    )

    loops = matched_loops(summary["generations"], {}, cfg.gate_tolerance, cfg.failure_gap,
                          cfg.failure_train_ratio)
    if not loops:
        raise AnalysisError(f"arm {arm}: no loop with its oracle twin (members.labellers: "
                            "[model, oracle]) and bayes_excess in every generation")
    group = readable(loops)
    gens = group.generations or sorted(set.intersection(*(set(lp.generations)
                                                         for lp in loops)))
    later = [g for g in gens if g > 0]
    last = max(gens)
    read = {lp.seed for lp in group.loops}
    out = {"loops": [{"seed": lp.seed, "n": lp.n, "gap_closed": lp.gate["gap_closed"],
                      "reached_gate": lp.gated, "failures": lp.failures,
                      "readable": lp.seed in read} for lp in loops],
           "generations": gens, "seeds_read": sorted(read)}
    pick = lambda lp, values: [float(values[lp.generations.index(g)]) for g in gens]  # noqa: E731
    out["bayes_excess"] = {"model": {str(lp.seed): pick(lp, lp.excess) for lp in loops},
                           "oracle": {str(lp.seed): pick(lp, lp.control) for lp in loops}}
    out["log_contrast"] = {str(lp.seed): pick(lp, lp.contrast) for lp in loops}
    contrast = group.matrix(gens) if group.loops else np.empty((0, len(gens)))
    own = np.array([[np.log(lp.excess[lp.generations.index(g)] / lp.excess[0]) for g in gens]
                    for lp in group.loops]).reshape(len(group.loops), len(gens))
    twin = np.array([[np.log(lp.control[lp.generations.index(g)]) for g in gens]
                     for lp in group.loops]).reshape(len(group.loops), len(gens))
    out["log_contrast_mean"] = contrast.mean(0).tolist() if group.loops else None
    cols = [gens.index(g) for g in later]
    out["noise"] = {"log_contrast": noise(contrast[:, cols]),
                    "own_log_excess": noise(own[:, cols]),
                    "oracle_log_excess": noise(twin[:, cols])}
    window = p9_window(cfg, later)
    span = window or later
    out["oracle_twin_trend"] = {
        "over": "P9's window" if window else f"generations 1..{last} (shorter than P9's window "
                f"from i_0 = {p9_window_start(cfg)})",
        **(trend(twin[:, [gens.index(g) for g in span]], span) if len(span) >= 2
           and group.loops else {"generations": span, "estimate": None}),
        "reference_learner": float(slopes(span, np.log(oracle_twin_drift(last, arm))[span]))
        if len(span) >= 2 else None}
    upper = (out["oracle_twin_trend"].get("interval") or [None, None])[1]
    out["oracle_twin_trend"]["keeps_improving"] = None if upper is None else upper < 0
    out["contrast_trend"] = (trend(contrast[:, [gens.index(g) for g in span]], span)
                             if len(span) >= 2 and group.loops else None)
    drift = accumulation_drift(last, arm)
    out["reference_learner"] = {
        "drift": drift.tolist(), "twin_drift": oracle_twin_drift(last, arm).tolist(),
        "log_contrast": reference_contrast(last, arm).tolist(),
        "own_log_excess": np.log(drift / drift[0]).tolist(),
        "units": "D_i = n E||mu_i - mu*||^2 / (d w_var) (theory/accumulation.py); the logs "
                 "are comparable with the transformer's log contrasts"}
    first = {r["generation"]: r for r in summary["generations"]
             if r["seed"] == loops[0].seed and r.get("labeller", "model") == "model"}
    batch = summary["settings"].get("train", {}).get("batch_size")
    out["train_size"] = [first.get(g, {}).get("train_size") for g in gens]
    out["passes"] = [first[g]["steps"] * batch / first[g]["train_size"]
                     if batch and first.get(g, {}).get("train_size") and "steps" in first[g]
                     else None for g in gens]
    out["_matrices"] = {"contrast": contrast, "own": own, "seeds": [lp.seed for lp in
                                                                    group.loops],
                        "model": {lp.seed: lp.excess for lp in group.loops},
                        "oracle": {lp.seed: lp.control for lp in group.loops},
                        "loops": group.loops}
    return out


def between(parts: dict[str, dict], a: str, b: str) -> dict | None:
    """Arm a against arm b, seed-paired over their readable seeds: log(E_a / E_b) of each
    labeller, the difference of their twin contrasts, and a's loop against b's oracle twin
    (log(E_a / E_b-oracle)), by generation."""
    from icl_stl.theory.accumulation import accumulation_drift, oracle_twin_drift

    if a not in parts or b not in parts:
        return None
    ma, mb = parts[a]["_matrices"], parts[b]["_matrices"]
    seeds = sorted(set(ma["seeds"]) & set(mb["seeds"]))
    gens = sorted(set(parts[a]["generations"]) & set(parts[b]["generations"]))
    ga, gb = ([parts[x]["generations"].index(g) for g in gens] for x in (a, b))
    ratio = {lab: np.array([np.log(ma[lab][s][ga] / mb[lab][s][gb]) for s in seeds])
             .reshape(len(seeds), len(gens)) for lab in ("model", "oracle")}
    diff = ratio["model"] - ratio["oracle"]
    # a's loop against b's oracle twin: for b = replace a control whose real volume stays n
    against_twin = np.array([np.log(ma["model"][s][ga] / mb["oracle"][s][gb]) for s in seeds]
                            ).reshape(len(seeds), len(gens))
    last = max(gens)
    later = [i for i, g in enumerate(gens) if g > 0]
    return {"seeds": seeds, "generations": gens,
            "log_ratio_model": ratio["model"].tolist(), "log_ratio_oracle": ratio["oracle"]
            .tolist(), "difference_of_twin_contrasts": diff.tolist(),
            "log_ratio_model_mean": ratio["model"].mean(0).tolist() if seeds else None,
            "noise_log_ratio_model": noise(ratio["model"][:, later]),
            "log_ratio_against_twin": against_twin.tolist(),
            "log_ratio_against_twin_mean": against_twin.mean(0).tolist() if seeds else None,
            "noise_log_ratio_against_twin": noise(against_twin[:, later]),
            "reference_learner": {
                "log_ratio_model": np.log(accumulation_drift(last, a)
                                          / accumulation_drift(last, b))[gens].tolist(),
                "log_ratio_oracle": np.log(oracle_twin_drift(last, a)
                                           / oracle_twin_drift(last, b))[gens].tolist(),
                "log_ratio_against_twin": np.log(accumulation_drift(last, a)
                                                 / oracle_twin_drift(last, b))[gens].tolist()}}


def analyse(results: Path) -> dict:
    """pilot.json (module doc of scripts/pilot_p9.py)."""
    from icl_stl.report.predictions.p9_accumulation import p9_window_start
    from icl_stl.report.rules import ReportConfig

    cfg = ReportConfig()
    summaries = load_arms(results)
    parts = {arm: arm_part(s, arm, cfg) for arm, s in summaries.items()}
    s = next(iter(summaries.values()))["settings"]
    train, loop = s.get("train", {}), s.get("loop", {})
    out = {"setting": {"task": s.get("task"), "n": sorted({lp["n"] for p in parts.values()
                                                           for lp in p["loops"]}),
                       "steps": train.get("steps"), "batch_size": train.get("batch_size"),
                       "eval_prompts": s.get("eval_prompts"), "test_seed": s.get("seed"),
                       "init": loop.get("init"), "real_fraction": loop.get("real_fraction")},
           "commits": {arm: sm.get("code", {}) for arm, sm in summaries.items()},
           "i_0": p9_window_start(cfg), "horizon_rule": cfg.v2_p9_horizon,
           "delta_1": cfg.v2_delta1, "delta_2": cfg.v2_delta2,
           "noise_how": __doc__.split("\n\n")[1].replace("\n", " "),
           "interval_level": LEVEL, "arms": parts, "between_arms": {}}
    for a, b in ARM_PAIRS:
        row = between(parts, a, b)
        if row is not None:
            out["between_arms"][f"{a} vs {b}"] = row
    primary = parts.get("accumulate_s0")
    out["control"] = None if primary is None else {
        "question": "does the accumulate_s0 arm's oracle twin keep improving? If so, the "
                    "contrast against it rises by construction (the reference learner's does), "
                    "and P9 against the twin is not testable: choose another control",
        "twin_trend": primary["oracle_twin_trend"]}
    return out


def figure(results: Path, pilot: dict) -> Path | None:
    """figures/arms.png: each arm's readable loops beside their oracle twins
    (`report.arms_figure`); None (and no figure) when no arm has a readable loop."""
    from icl_stl.report.arms_figure import draw

    path = results / "figures" / "arms.png"
    path.unlink(missing_ok=True)  # a figure of earlier records would outlive them
    arms = {arm: pilot["arms"][arm]["_matrices"]["loops"] for arm in FIGURE_ARMS
            if arm in pilot["arms"] and pilot["arms"][arm]["_matrices"]["loops"]}
    if not arms:
        return None
    first = next(iter(arms.values()))[0]
    return draw(arms, path, f"P9 pilot: each arm beside its oracle twin (λ = "
                f"{first.real_fraction:g}, n = {first.n:,}; readable seeds only)",
                rule_panel=rule_panel(pilot))


def rule_panel(pilot: dict):
    """The statistic P9's rule reads (docs/THEORY.md section 8.10): accumulate_s0 against the
    same seed's oracle-labelled replace loop, with the reference learner's log D_g and delta_1;
    None without both arms."""
    from icl_stl.report.arms_figure import RulePanel

    pair = pilot["between_arms"].get("accumulate_s0 vs replace")
    if pair is None or not pair["seeds"]:
        return None
    return RulePanel(
        title="P9's statistic: against the replace loop's oracle twin",
        ylabel="log(E_acc / E_oracle-replace)", arm="accumulate_s0",
        generations=pair["generations"], per_seed=np.array(pair["log_ratio_against_twin"]),
        reference=np.array(pair["reference_learner"]["log_ratio_against_twin"]),
        reference_label="reference learner, log D_g", margin=pilot["delta_1"],
        margin_label="δ₁ (the level the mean must stay below)")


def public(pilot: dict) -> dict:
    """pilot.json as written: without the arrays the sizing reads."""
    arms = {arm: {k: v for k, v in part.items() if not k.startswith("_")}
            for arm, part in pilot["arms"].items()}
    return {**pilot, "arms": arms}
