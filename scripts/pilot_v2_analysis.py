"""The analysis of a version-2 pilot (used by scripts/pilot_v2.py): pilot.json from the
runs' summary.json under results/runs/.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np

ARMS = ("model", "oracle")


def collect(work: Path, results: Path) -> list[str]:
    """Each process's summary.json and timing.json, copied from work to results/runs/."""
    copied = []
    for summary in sorted(work.glob("*/summary.json")):
        dest = results / "runs" / summary.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "timing.json"):
            if (summary.parent / name).exists():
                shutil.copyfile(summary.parent / name, dest / name)
        copied.append(summary.parent.name)
    return copied


def _two_way(values: np.ndarray) -> tuple[float, float]:
    """(sigma, tau) of values (seeds, generations) = generation mean + seed offset + noise."""
    s, g = values.shape
    resid = values - values.mean(0, keepdims=True) - values.mean(1, keepdims=True) \
        + values.mean()
    sigma2 = float((resid ** 2).sum() / ((s - 1) * (g - 1)))
    seed_var = float(values.mean(1).var(ddof=1)) - sigma2 / g
    return float(np.sqrt(sigma2)), float(np.sqrt(max(seed_var, 0.0)))


def summaries(results: Path) -> list[dict]:
    """Every run's summary.json under results/runs/, in the order of their directory names."""
    found = sorted((results / "runs").glob("*/summary.json"))
    if not found:
        raise SystemExit(f"scripts/pilot_v2.py: no runs under {results / 'runs'} (run the "
                         "pilot, then analyse with its --work)")
    return [json.loads(p.read_text()) for p in found]


def loop_gates(runs: list[dict]) -> list[dict]:
    """Each matched loop's gate and training failures, read by the report's own functions
    (report/matched.py) at the rules' thresholds: which loops the rules would read."""
    from icl_stl.report.matched import matched_loops
    from icl_stl.report.rules import ReportConfig

    cfg = ReportConfig()
    records = [r for run in runs for r in run["generations"]]
    loops = matched_loops(records, {}, cfg.gate_tolerance, cfg.failure_gap,
                          cfg.failure_train_ratio)
    return [{"seed": lp.seed, "lambda": lp.real_fraction, "gap_closed": lp.gate["gap_closed"],
             "reached": lp.gated, "failures": lp.failures,
             "readable": lp.gated and not lp.failures} for lp in loops]


def _noise(em: np.ndarray, eo: np.ndarray) -> dict:
    """The contrast's noise and the arms' agreement over (seeds, generations 0..)."""
    contrast = np.log(em[:, 1:] / eo[:, 1:])
    sigma, tau = _two_way(contrast)
    log_o = np.log(eo[:, 1:])
    resid = lambda x: x - x.mean(0) - x.mean(1, keepdims=True) + x.mean()  # noqa: E731
    rm, ro = resid(np.log(em[:, 1:])), resid(log_o)
    return {
        "contrast": contrast.tolist(),
        "contrast_mean_by_generation": contrast.mean(0).tolist(),
        "contrast_sd_by_generation": contrast.std(0, ddof=1).tolist(),
        "sigma": sigma, "tau": tau,
        "oracle_log_excess_sd_retrain": _two_way(log_o)[0],
        "arm_correlation": float((rm * ro).sum() / np.sqrt((rm ** 2).sum() * (ro ** 2).sum())),
    }


def _table(by: dict, arm: str, key: str, gens: list[int], seeds: list[int],
           lam: float) -> np.ndarray:
    """(seeds, generations) of one record field of one arm at one lambda."""
    return np.array([[by[arm][(s, lam, g)][0][key] for g in gens] for s in seeds],
                    dtype=float).reshape(len(seeds), len(gens))


def analyse(results: Path, setting: str | None = None) -> dict:
    """pilot.json: per lambda the contrast by generation, its noise and the arms' agreement.

    With `setting` (pilots after d = 2, named): also each loop's gate and failures, the noise
    read from the readable loops only, and the Bayes and least-squares risk per position."""
    from icl_stl.training.gate import gap_closed

    extended = setting is not None
    runs = summaries(results)
    by: dict[str, dict] = {arm: {} for arm in ARMS}
    for run in runs:
        zero = run["baselines"]["zero"]["risk"]
        for r in run["generations"]:
            by[r.get("labeller", "model")][(r["seed"], r["real_fraction"], r["generation"])] = \
                (r, zero)
    seeds = sorted({k[0] for k in by["model"]})
    lams = sorted({k[1] for k in by["model"]})
    gens = sorted({k[2] for k in by["model"]} & {k[2] for k in by["oracle"]})
    later = [g for g in gens if g > 0]
    relative = [r["bayes_excess_se"] / r["bayes_excess"] for arm in ARMS for run in runs
                for r in run["generations"] if r.get("labeller", "model") == arm]
    out = {"seeds": seeds, "generations": gens, "lambdas": {},
           "test_prompts": runs[0]["settings"]["eval_prompts"],
           "excess_relative_se": {"mean": float(np.mean(relative)),
                                  "max": float(np.max(relative))}}
    gates = loop_gates(runs) if extended else []
    for lam in lams:
        read = ([g["seed"] for g in gates if g["lambda"] == lam and g["readable"]] if extended
                else seeds)
        get = partial(_table, by, lam=lam)
        em, eo = get("model", "bayes_excess", gens, read), get("oracle", "bayes_excess", gens, read)
        closed = {arm: [[gap_closed(by[arm][(s, lam, g)][0]["test_risk"],
                                    by[arm][(s, lam, g)][0]["ridge_risk"], by[arm][(s, lam, g)][1])
                         for g in gens] for s in seeds] for arm in ARMS}
        ratio = get("model", "train_risk", later, read) / get("oracle", "train_risk", later, read)
        row = {"excess_model": em.tolist(), "excess_oracle": eo.tolist()}
        if len(read) >= 2 and len(later) >= 2:
            row.update(_noise(em, eo))
        row.update(gap_closed=closed, train_risk_ratio=ratio.tolist())
        if extended:
            every = _noise(get("model", "bayes_excess", gens, seeds),
                           get("oracle", "bayes_excess", gens, seeds))
            row.update(seeds_read=read,
                       all_seeds={k: every[k] for k in ("sigma", "tau",
                                                         "contrast_mean_by_generation")})
        out["lambdas"][f"{lam:g}"] = row
    if extended:
        out.update(setting_facts(runs[0], setting), gate=gates,
                   gate_passed={"loops": len(gates), "reached": sum(g["reached"] for g in gates),
                                "readable": sum(g["readable"] for g in gates)})
    return out


def setting_facts(run: dict, name: str) -> dict:
    """What the pilot trained, and the risk per position of the Bayes predictor (ridge at the
    Bayes alpha) and of least squares on its test set: the setting is not degenerate when the
    two differ and the Bayes risk stays above zero at every position."""
    s = run["settings"]
    base = run["baselines"]
    return {"setting": {"name": name, "task": s["task"], "n": run["members"][0]["n"],
                        "steps": s["train"]["steps"], "batch_size": s["train"]["batch_size"],
                        "ridge_alpha": run["ridge_alpha"]},
            "risk_per_position": {"bayes": base["ridge"]["per_position"],
                                  "least_squares": base["least_squares"]["per_position"],
                                  "zero": base["zero"]["per_position"]}}
