"""The pilot of P5, version 2 (docs/THEORY.md section 8.6), on seeds outside any
confirmatory set.

    .venv/bin/python scripts/pilot_p5_v2.py run       # the loops (resumable: same command)
    .venv/bin/python scripts/pilot_p5_v2.py analyse   # curves, noise, power -> pilot.json
    .venv/bin/python scripts/pilot_p5_v2.py size      # power from the P1/P2 pilot's noise

`run` trains conf/experiment/pilot/p5_v2_d2.yaml as one process on one thread: both arms (the
loop labelled by its own model and its oracle-augmented twin) at every m of the grid, with
compute growing with m (loop.steps_scale=per_prompt). Killed, it resumes from its checkpoints.
Its summary.json is copied to --results/runs/p5/. `analyse` reads the records with the report's
own functions: per seed the quadratic in m / n of the log excess risk at generation 1, the
curvature, vertex and end contrasts (`p5v2_core`), the oracle arm's, the retrain noise of one
point of the curve (the residual of the per-seed quadratics), and the power of the rule at the
pilot's own curve by simulation (`simulate_p5.p5_rates`) for a range of seed counts. `size`
needs no new run: it takes the retrain-to-retrain noise of one from-scratch generation's log
excess risk that the P1/P2 pilot measured (docs/results/pilot-v2/pilot.json, the oracle arm at
n = 10,000, 6,000 steps, lambda 0 and 0.5) as the noise of one point of the curve, and writes
the power of the rule against dips of given depths by seed count (sizing.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PRESET = "pilot/p5_v2_d2"
NAME = "pilot_p5_v2_d2"
SEED_COUNTS = (5, 10, 20, 40, 80, 160, 320)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "analyse", "size"))
    parser.add_argument("--work", type=Path, default=Path("outputs/pilot_p5_v2"),
                        help="run directory and checkpoints (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-p5-v2",
                        help="where the records and pilot.json go (default: %(default)s)")
    parser.add_argument("--draws", type=int, default=20_000,
                        help="simulated groups per power estimate (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="extra settings for `run` (KEY=VALUE)")
    return parser.parse_args(argv)


def run(work: Path, results: Path, overrides: list[str]) -> int:
    cmd = [str(REPO / ".venv/bin/icl-stl-loop"), f"experiment={PRESET}", "runtime.threads=1",
           f"run.name={NAME}", f"run.checkpoint_root={work / 'checkpoints'}",
           f"hydra.run.dir={work / 'run'}", *overrides]
    with open(work / "run.log", "a") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO).returncode
    if code == 0:
        (results / "runs" / "p5").mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "timing.json"):
            if (work / "run" / name).exists():
                shutil.copy(work / "run" / name, results / "runs" / "p5" / name)
    return code


def analyse(results: Path, draws: int) -> dict:
    """pilot.json: the curves, their fits, the noise and the power by seed count."""
    from icl_stl.report.matched import matched_loops
    from icl_stl.report.predictions.p5_augmentation_v2 import p5v2_core
    from icl_stl.report.quadratic import fit_quadratics
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_p5 import Noise, dip, p5_rates, quadratic_truth
    from icl_stl.training.gate import gap_closed

    summary = json.loads((results / "runs" / "p5" / "summary.json").read_text())
    records = summary["generations"]
    zero = summary["baselines"]["zero"]["risk"]
    cfg = ReportConfig()
    loops = matched_loops(records, {}, cfg.gate_tolerance, cfg.failure_gap,
                          cfg.failure_train_ratio)
    seeds = sorted({lp.seed for lp in loops})
    ms = sorted({lp.augment for lp in loops})
    n = loops[0].n
    r = np.array(ms, dtype=float) / n
    cell = {(lp.seed, lp.augment): lp for lp in loops}
    last = max(loops[0].generations)
    model = np.array([[np.log(cell[s, m].excess[-1]) for m in ms] for s in seeds])
    oracle = np.array([[np.log(cell[s, m].control[-1]) for m in ms] for s in seeds])
    pilot_cfg = ReportConfig(min_seeds=2)  # read the 2 pilot seeds' numbers, not a verdict
    out = {"seeds": seeds, "n": n, "ms": ms, "m_over_n": r.tolist(), "generation": last,
           "log_excess_model": model.tolist(), "log_excess_oracle": oracle.tolist(),
           "excess_model": np.exp(model).tolist(), "excess_oracle": np.exp(oracle).tolist()}
    gens0 = [rec for rec in records if rec["generation"] == 0]
    out["gap_closed_generation_0"] = sorted({round(gap_closed(rec["test_risk"],
                                                              rec["ridge_risk"], zero), 4)
                                             for rec in gens0})
    out["gap_closed_generation_1"] = {
        f"{rec['labeller']} m={rec['augment']} seed={rec['seed']}":
            round(gap_closed(rec["test_risk"], rec["ridge_risk"], zero), 4)
        for rec in records if rec["generation"] == last}
    out["steps"] = {str(m): sorted({rec["steps"] for rec in records
                                    if rec["generation"] == last and rec["augment"] == m})
                    for m in ms}
    out["gated"] = all(lp.gated for lp in loops)
    out["failures"] = [f"{lp.describe()}: {f}" for lp in loops for f in lp.failures]
    relative = [rec["bayes_excess_se"] / rec["bayes_excess"] for rec in records]
    out["excess_relative_se"] = {"mean": float(np.mean(relative)),
                                 "max": float(np.max(relative))}
    for arm, y in (("model", model), ("oracle", oracle)):
        core = p5v2_core(y, r, pilot_cfg)
        coef = fit_quadratics(y, r)
        design = np.stack([np.ones_like(r), r, r * r], axis=1)
        resid = y - coef @ design.T
        dof = len(seeds) * (len(ms) - 3)
        sigma = float(np.sqrt((resid ** 2).sum() / dof))
        out[arm] = {"coef_per_seed": coef.tolist(),
                    "curvature_per_seed": coef[:, 2].tolist(),
                    "curvature_mean": float(coef[:, 2].mean()),
                    "vertex_of_mean": float(core["vertex"]["vertex"]),
                    "low_end_per_seed": (y[:, 0] - y[:, 1:-1].mean(-1)).tolist(),
                    "high_end_per_seed": (y[:, -1] - y[:, 1:-1].mean(-1)).tolist(),
                    "residual_sigma": sigma, "residual_dof": dof,
                    "curvature_sd_over_seeds": float(coef[:, 2].std(ddof=1)),
                    "curvature_sd_from_sigma": float(sigma * np.sqrt(
                        np.linalg.inv(design.T @ design)[2, 2]))}
    contrast = model - oracle
    out["contrast_slope_per_seed"] = [float(np.polyfit(r, c, 1)[0]) for c in contrast]
    # The noise of one point of a curve: the residual sigma pooled over both arms (4 dof each
    # with 2 seeds and 5 points), the retrain-to-retrain noise plus test-set noise.
    sigma = float(np.sqrt((out["model"]["residual_sigma"] ** 2
                           + out["oracle"]["residual_sigma"] ** 2) / 2))
    out["sigma_pooled"] = sigma
    coef_mean = np.array(out["model"]["coef_per_seed"]).mean(0)
    power = {}
    # the pilot's own mean curve, and the stated effect: a dip of depth v2_p5_depth (each end
    # that far above the interior's mean) with its vertex mid-grid
    for label, truth in (("pilot_curve", quadratic_truth(*coef_mean)),
                         ("stated_effect", dip(cfg.v2_p5_depth, 1.5, r))):
        power[label] = {str(s): p5_rates(truth, r, s, Noise(sigma), ReportConfig(),
                                         draws=draws)["confirmed"] for s in SEED_COUNTS}
    out["power"] = power
    out["draws"] = draws
    out["seeds_for_80_percent"] = {
        label: min((s for s in SEED_COUNTS if rates[str(s)] >= 0.8), default=None)
        for label, rates in power.items()}
    # what one seed costs: generation 0 once, then every (m, arm) loop's later generations
    per_seed = [rec for rec in records if rec["seed"] == seeds[0]]
    out["member_steps_per_seed"] = int(
        max(rec["steps"] for rec in per_seed if rec["generation"] == 0)
        + sum(rec["steps"] for rec in per_seed if rec["generation"] > 0))
    return out


DEPTHS = (0.1, 0.2, 0.3)
GRID = (0.0, 0.5, 1.0, 2.0, 3.0)


def size(draws: int) -> dict:
    """sizing.json: power of the interior-optimum rule against a dip of each depth (vertex at
    m / n = 1.5), at the P1/P2 pilot's retrain noise of one generation's log excess risk."""
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_p5 import Noise, dip, p5_rates

    source = REPO / "docs/results/pilot-v2/pilot.json"
    lams = json.loads(source.read_text())["lambdas"]
    sds = {lam: row["oracle_log_excess_sd_retrain"] for lam, row in lams.items()}
    sigma = float(np.sqrt(np.mean([sd ** 2 for sd in sds.values()])))
    r = np.array(GRID)
    power = {f"{depth:g}": {str(s): p5_rates(dip(depth, 1.5, r), r, s, Noise(sigma),
                                               ReportConfig(), draws=draws)["confirmed"]
                            for s in SEED_COUNTS} for depth in DEPTHS}
    return {"source": "docs/results/pilot-v2/pilot.json: oracle_log_excess_sd_retrain",
            "retrain_sd_by_lambda": sds, "sigma": sigma, "grid_m_over_n": list(GRID),
            "vertex": 1.5, "draws": draws, "power_by_depth_and_seeds": power,
            "seeds_for_80_percent": {
                depth: min((s for s in SEED_COUNTS if rates[str(s)] >= 0.8), default=None)
                for depth, rates in power.items()}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "size":
        sizing = size(args.draws)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "sizing.json").write_text(json.dumps(sizing, indent=2) + "\n")
        print(f"[size] sigma {sizing['sigma']:.3f}; seeds for 80% power by depth: "
              f"{sizing['seeds_for_80_percent']}")
        return 0
    if args.step == "run":
        args.work.mkdir(parents=True, exist_ok=True)
        return run(args.work, args.results, args.overrides)
    pilot = analyse(args.results, args.draws)
    (args.results / "pilot.json").write_text(json.dumps(pilot, indent=2) + "\n")
    for arm in ("model", "oracle"):
        row = pilot[arm]
        print(f"[pilot] {arm}: curvature per seed {np.round(row['curvature_per_seed'], 3)}, "
              f"vertex {row['vertex_of_mean']:.2f}, residual sigma {row['residual_sigma']:.3f}")
    print(f"[pilot] power at the pilot's curve: {pilot['power']['pilot_curve']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
