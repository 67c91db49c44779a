"""What P9's pilot sizes (used by scripts/pilot_p9.py analyse): sizing.json, the power of P9's
rule at the pilot's own noise for each control the proposal considers, and the results'
README.md from the runs' records.

Each control is a per-seed statistic by generation that P9's joint test could read:
- oracle_twin: log(E_acc / E_oracle-acc), the accumulate_s0 loop against its own oracle twin
  (the control the issue named; the rule reads replace_twin instead);
- replace_arm: log(E_acc / E_replace), against the same seed's replace loop (model-labelled);
- replace_twin: log(E_acc / E_oracle-replace), against the same seed's oracle-labelled loop of
  the replace arm (lambda = 0, the same compute, its real volume held at n prompts: a
  stationary control, whose reference learner's D is 1 in every generation);
- own_window: log(E_acc(g) / E_acc(0)), the arm against its own generation 0.
Its noise (sigma, tau) is the pilot's (pilot_p9_analysis.noise); each truth is drawn with it and
judged by `simulate_p9.p9_rates` (the report's own `p2_matched_core` over P9's window at the
rule's horizon). Truths: the reference learner's prediction for that statistic, the bounded
drift log D_g (the rule's target: what a flat control would give), and the pilot's own mean
curve where the pilot reached the rule's horizon.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEED_COUNTS = (5, 10, 15, 20, 25, 30)
SENSITIVE = "replace_twin"  # the rule's control (docs/THEORY.md section 8.10)
PRIMARY = "accumulate_s0"


def _tabulated(values) -> object:
    values = np.asarray(values, dtype=float)
    return lambda g: values[np.asarray(g, dtype=int)]


def _margins(horizon: int) -> dict[str, tuple]:
    """The rule's margins as truths (its false-confirm rates at the pilot's noise)."""
    from icl_stl.report.predictions.p9_accumulation import p9_window
    from icl_stl.report.rules import ReportConfig

    cfg = ReportConfig(v2_p9_horizon=horizon)
    g = np.arange(horizon + 1, dtype=float)
    i0 = p9_window(cfg, list(range(1, horizon + 1)))[0]
    after = np.clip(g - i0, 0.0, None)
    return {"slope_plus_delta_2": (f"flat up to i_0 = {i0}, then +delta_2 per generation",
                                   cfg.v2_delta2 * after),
            "slope_minus_delta_2": (f"flat up to i_0 = {i0}, then -delta_2 per generation",
                                    -cfg.v2_delta2 * after),
            "flat_at_delta_1": ("flat at delta_1 (the collapse margin)",
                                np.full(horizon + 1, cfg.v2_delta1))}


def controls(pilot: dict, horizon: int) -> dict[str, dict]:
    """Each control's statistic, noise and truths (arrays over generations 0..horizon)."""
    from icl_stl.theory.accumulation import accumulation_drift, reference_contrast

    arm = pilot["arms"].get(PRIMARY)
    if arm is None:
        return {}
    bounded = np.log(accumulation_drift(horizon, PRIMARY))
    reach = max(arm["generations"]) >= horizon

    def own_mean():
        m = arm["_matrices"]["own"]
        return m.mean(0)[: horizon + 1] if reach and m.size else None

    out = {"oracle_twin": {
        "statistic": "log(E_acc / E_oracle-acc): accumulate_s0 against its own oracle twin",
        "noise": arm["noise"]["log_contrast"],
        "truths": {"reference_learner": ("log((g + 1) D_g): the reference learner against its "
                                         "twin", reference_contrast(horizon, PRIMARY)),
                   "bounded": ("log D_g: the reference learner's drift, a flat control",
                               bounded),
                   "pilot_mean": ("the pilot's mean log contrast", np.array(
                       arm["log_contrast_mean"][: horizon + 1]) if reach else None)}},
        "own_window": {
        "statistic": "log(E_acc(g) / E_acc(0)): accumulate_s0 against its own generation 0",
        "noise": arm["noise"]["own_log_excess"],
        "truths": {"bounded": ("log D_g: the reference learner's own drift", bounded),
                   "pilot_mean": ("the pilot's mean log(E(g) / E(0))", own_mean())}}}
    pair = pilot["between_arms"].get(f"{PRIMARY} vs replace")
    if pair is not None:
        out["replace_arm"] = {
            "statistic": "log(E_acc / E_replace): accumulate_s0 against the same seed's "
                         "replace loop, both model-labelled",
            "noise": pair["noise_log_ratio_model"],
            "truths": {"reference_learner": ("log(D_g / (g + 1)): the reference learner",
                                             bounded - np.log(np.arange(horizon + 1) + 1.0)),
                       "bounded": ("log D_g: a bounded drift against a flat control", bounded),
                       "pilot_mean": ("the pilot's mean log ratio", np.array(
                           pair["log_ratio_model_mean"][: horizon + 1]) if reach else None)}}
        out["replace_twin"] = {
            "statistic": "log(E_acc / E_oracle-replace): accumulate_s0 against the same seed's "
                         "oracle-labelled replace loop (real volume n)",
            "noise": pair["noise_log_ratio_against_twin"],
            "truths": {"reference_learner": ("log D_g: the reference learner (the control's D "
                                             "is 1)", bounded),
                       **_margins(horizon),
                       "pilot_mean": ("the pilot's mean log ratio", np.array(
                           pair["log_ratio_against_twin_mean"][: horizon + 1])
                           if reach else None)}}
    return out


def sizing(pilot: dict, draws: int, seed_counts=SEED_COUNTS) -> dict:
    """sizing.json: per control, its noise and per truth the share of each P9 verdict by seed
    count (`draws` simulated groups each)."""
    from icl_stl.report.predictions.p9_accumulation import p9_window
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_p9 import p9_rates
    from icl_stl.report.simulate_v2 import Noise

    cfg = ReportConfig()
    horizon = cfg.v2_p9_horizon
    out = {"how": __doc__.split("\n\n")[1].replace("\n", " "), "horizon": horizon,
           "window": p9_window(cfg, list(range(1, horizon + 1))), "delta_1": cfg.v2_delta1,
           "delta_2": cfg.v2_delta2, "draws": draws, "seed_counts": list(seed_counts),
           "pilot_generations": max(pilot["arms"][PRIMARY]["generations"])
           if PRIMARY in pilot["arms"] else None, "controls": {}}
    k = 0
    for name, control in controls(pilot, horizon).items():
        row = {"statistic": control["statistic"], "noise": control["noise"], "truths": {}}
        if control["noise"] is None:
            row["not_sized"] = "fewer than 2 readable seeds or 2 later generations"
            out["controls"][name] = row
            continue
        noise = Noise(control["noise"]["sigma"], control["noise"]["tau"])
        for truth_name, (what, values) in control["truths"].items():
            if values is None:
                row["truths"][truth_name] = {"truth": what, "not_sized": (
                    f"the pilot did not reach the rule's horizon {horizon}")}
                continue
            rates = {}
            for seeds in seed_counts:
                k += 1
                rates[str(seeds)] = p9_rates(_tabulated(values), seeds, noise, cfg, draws, k)
            row["truths"][truth_name] = {"truth": what, "values": np.asarray(values).tolist(),
                                         "rates_by_seeds": rates}
        out["controls"][name] = row
    if out["controls"].get(SENSITIVE, {}).get("noise"):
        out["sensitivity"] = sensitivity(out["controls"][SENSITIVE], horizon, cfg, draws,
                                         seed_counts)
    return out


def sensitivity(row: dict, horizon: int, cfg, draws: int, seed_counts) -> dict:
    """The rule's power against the bounded drift when the pilot's sigma is too low: sigma at
    the upper end of its one-sided 90% chi-square interval ((S - 1)(G - 1) degrees of freedom),
    tau as measured."""
    from scipy import stats

    from icl_stl.report.simulate_p9 import p9_rates
    from icl_stl.report.simulate_v2 import Noise
    from icl_stl.theory.accumulation import accumulation_drift

    noise = row["noise"]
    dof = noise["sigma_dof"]
    upper = noise["sigma"] * float(np.sqrt(dof / stats.chi2.ppf(0.10, dof)))
    truth = _tabulated(np.log(accumulation_drift(horizon, PRIMARY)))
    rates = {str(seeds): p9_rates(truth, seeds, Noise(upper, noise["tau"]), cfg, draws,
                                  10_000 + seeds) for seeds in seed_counts}
    return {"control": SENSITIVE, "truth": "log D_g: the reference learner's bounded drift",
            "sigma_upper_90": upper, "tau": noise["tau"], "rates_by_seeds": rates}


def readme(results: Path, pilot: dict) -> str:
    """results/README.md: machine, commit, command and wall time per arm, from the records."""
    runs = results / "runs"
    calls = (json.loads((runs / "invocations.json").read_text())
             if (runs / "invocations.json").exists() else [])
    lines = ["# P9's pilot: accumulation as Gerstgrasser et al. (2024) state it", "",
             "Written by `scripts/pilot_p9.py analyse` from the records under `runs/` (each "
             "arm's summary.json and timing.json, and `runs/invocations.json`, every process "
             "the pilot started). pilot.json holds the curves, contrasts, noise and the oracle "
             "twin's trend; sizing.json the power of P9's rule at that noise "
             "(docs/accumulation.md).", "", "| arm | commit | processes (exit codes) | wall "
             "time, all processes (s) | training (s, timing.json) | generations |",
             "|---|---|---|---|---|---|"]
    for arm in pilot["arms"]:
        mine = [c for c in calls if c["arm"] == arm]
        code = pilot["commits"].get(arm, {})
        commit = (code.get("git_commit", "?")[:10] + ("+dirty" if code.get("git_dirty") else ""))
        timing_path = runs / arm / "timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        training = sum(row.get("phases", {}).get("training", 0.0)
                       for rec in [timing, *timing.get("earlier", [])]
                       for row in rec.get("generations", []))
        lines.append(f"| {arm} | {commit} | {len(mine)} ({', '.join(str(c['returncode']) for c in mine) or '-'}) "
                     f"| {sum(c['seconds'] for c in mine):.0f} | {training:.0f} | "
                     f"0-{max(pilot['arms'][arm]['generations'])} |")
    machines = sorted({json.dumps({k: v for k, v in c["machine"].items() if k != "date"},
                                  sort_keys=True) for c in calls if "machine" in c})
    commands = sorted({c.get("pilot_command", "") for c in calls} - {""})
    lines += ["", "Machine(s): " + ("; ".join(machines) or "not recorded"), "",
              "Commands:", "", *[f"    .venv/bin/python {c}" for c in commands],
              "    .venv/bin/python scripts/pilot_p9.py analyse --work <work> --results "
              f"{results}", ""]
    if calls:
        dates = sorted(c["machine"]["date"] for c in calls if "machine" in c)
        if dates:
            lines += [f"The processes ended between {dates[0]} and {dates[-1]}.", ""]
    if (results / "figures" / "arms.png").exists():
        lines += ["![each arm beside its oracle twin](figures/arms.png)", "",
                  "Each arm (one colour) over its readable seeds. Left: excess risk over the "
                  "Bayes predictor against generation, the mean over seeds, solid for the loop "
                  "labelled by its own model, dashed for the same seeds' oracle-labelled twin. "
                  "Middle: the log contrast log(E / E_oracle), the mean of the seeds' contrasts "
                  "with its 90% t-interval (from 3 seeds on); a line that levels off is the "
                  "bounded drift accumulation predicts, one that keeps rising is replace's "
                  "collapse. Third panel: the statistic P9's rule reads, accumulate_s0 against "
                  "the same seed's oracle-labelled replace loop (a stationary control), beside "
                  "the reference learner's log D_g and delta_1, the level its mean over "
                  "generations 1..G must stay below (docs/THEORY.md section 8.10).", ""]
    return "\n".join(lines)
