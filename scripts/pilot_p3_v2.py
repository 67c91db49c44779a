"""The pilot of P3, version 2: recursive stability as a dose-response, on seeds outside any
confirmatory set (docs/THEORY.md section 8.4).

    .venv/bin/python scripts/pilot_p3_v2.py run [--steps N]   # the probe, resumable
    .venv/bin/python scripts/pilot_p3_v2.py analyse           # -> pilot.json, sizing

`run` trains conf/experiment/pilot/p3v2_d2.yaml with `icl-stl-probe` as one process on one
thread (killed, it resumes with the same command): per seed and lambda (0 and 0.5, sharing
generation 0) a base loop and its loops with a fraction q of S_0 replaced, each in two batch
orders (order 1: the chaos twin). `analyse` copies the run's records to --results/run/ and
writes pilot.json: per lambda and generation the chaos floor, the excess squared distance per q,
the dose slopes per seed (with and without intercept) and their noise, W2 beside |delta mu|,
the recursion ratio gamma_i^2 / gamma_0^2 per lambda and its paired contrast, every loop's gap
closed at generation 0, and the seed counts the paired contrast would need
(`icl_stl/report/predictions/p3_dose_response.py` judges it).
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
PRESET = "pilot/p3v2_d2"
# Sized on the shared 2-core machine (docs/results/pilot-p3-v2/README.md): 48 member steps per
# CPU second in training plus about 2.5 CPU seconds per loop and generation for evaluation and
# labelling; 2 seeds x 40 loop-generations at 800 steps is about 26 CPU minutes.
DEFAULT_STEPS = 800
SEEDS = (9201, 9202)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "analyse"))
    parser.add_argument("--work", type=Path, default=Path("outputs/pilot_p3_v2"),
                        help="run directory and checkpoints (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-p3-v2",
                        help="where the records and pilot.json go (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="optimizer steps per generation (default: %(default)s)")
    parser.add_argument("--generations", type=int, default=2,
                        help="generations after generation 0 (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.exit(2, f"--steps must be a positive number of steps, got {args.steps}\n")
    if args.generations < 0:
        parser.exit(2, f"--generations must be 0 or more, got {args.generations}\n")
    return args


def configuration(steps: int, generations: int) -> str:
    """The folder of one pilot configuration: s<steps>_g<generations>."""
    return f"s{steps}_g{generations}"


def run(work: Path, steps: int, generations: int) -> int:
    """One process per seed, one thread each (a seed's loops are one ensemble)."""
    procs = []
    name = configuration(steps, generations)
    (work / name).mkdir(parents=True, exist_ok=True)
    for seed in SEEDS:
        cmd = [str(REPO / ".venv/bin/icl-stl-probe"), f"experiment={PRESET}",
               f"train.steps={steps}", f"loop.generations={generations}",
               f"probe.seeds=[{seed}]", "runtime.threads=1",
               f"run.name=pilot_p3v2_d2_{name}_{seed}",
               f"run.checkpoint_root={work / 'checkpoints'}",
               f"hydra.run.dir={work / name / str(seed)}"]
        log = open(work / name / f"{seed}.log", "a")  # noqa: SIM115 (closed at exit)
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
    return max(p.wait() for p in procs)


def _two_way_sigma(values: np.ndarray) -> float | None:
    """The residual sd of values (seeds, generations) after seed and generation means."""
    s, g = values.shape
    if s < 2 or g < 2:
        return None
    resid = values - values.mean(0, keepdims=True) - values.mean(1, keepdims=True) \
        + values.mean()
    return float(np.sqrt((resid ** 2).sum() / ((s - 1) * (g - 1))))


def analyse_pilot(summaries: list[dict]) -> dict:
    """pilot.json: what sets P3's power (module doc)."""
    from icl_stl.probes.dose_fit import dose_rows, dose_slope
    from icl_stl.training.gate import gap_closed

    records = [r for s in summaries for r in s["generations"]]
    rows = dose_rows(records)
    cell = {(r["seed"], r["real_fraction"], r["generation"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lams = sorted({r["real_fraction"] for r in rows})
    gens = sorted({r["generation"] for r in rows})
    n = rows[0]["n"]
    qs = rows[0]["fractions"]
    gate = [{"seed": r["seed"], "tag": r["tag"],
             "gap_closed": gap_closed(r["test_risk"], r["ridge_risk"], r["zero_risk"])}
            for r in records if r["generation"] == 0 and r["real_fraction"] == lams[0]]
    out: dict = {"seeds": seeds, "generations": gens, "n": n, "fractions": qs,
                 "replaced": rows[0]["replaced"], "lambdas": {},
                 "steps": summaries[0]["settings"]["train"]["steps"],
                 "gap_closed_generation_0": {"min": min(g["gap_closed"] for g in gate),
                                             "max": max(g["gap_closed"] for g in gate),
                                             "loops": gate}}
    b0 = np.array([cell[(s, lams[0], 0)]["sq_dist_slope"] for s in seeds])
    out.update(generation_0_slope=b0.tolist(), generation_0_slope_mean=float(b0.mean()))
    for lam in lams:
        def stat(key, lam=lam):
            return np.array([[cell[(s, lam, g)][key] for g in gens] for s in seeds])
        slope, chaos = stat("sq_dist_slope"), stat("chaos_sq_dist")
        dist = np.array([[cell[(s, lam, g)]["sq_dist"] for g in gens] for s in seeds])
        by_order = np.array([[cell[(s, lam, g)]["sq_dist_by_order"] for g in gens]
                             for s in seeds])  # (seeds, gens, q, orders)
        order_slopes = dose_slope(qs, np.moveaxis(by_order, -1, -2) - chaos[..., None, None])[0]
        out["lambdas"][f"{lam:g}"] = {
            "chaos_sq_dist": chaos.mean(0).tolist(),
            "sq_dist_by_q": dist.mean(0).tolist(),
            "excess_by_q": (dist - chaos[..., None]).mean(0).tolist(),
            "excess_over_chaos_at_largest_q": (dist[..., -1] / chaos).mean(0).tolist(),
            "slope_per_seed": slope.tolist(),
            "slope_mean": slope.mean(0).tolist(),
            "slope_sd": (slope.std(0, ddof=1) if len(seeds) > 1 else 0 * slope[0]).tolist(),
            "intercept_mean": stat("sq_dist_intercept").mean(0).tolist(),
            "slope_origin_mean": stat("sq_dist_slope_origin").mean(0).tolist(),
            "per_prompt_sq_effect": (slope.mean(0) / n).tolist(),
            "slope_order_split_sd": float(np.std(order_slopes[..., 0] - order_slopes[..., 1],
                                                 ddof=1) / 2),
            "w2_sq_slope_mean": stat("w2_sq_slope").mean(0).tolist(),
            "chaos_w2_sq": stat("chaos_w2_sq").mean(0).tolist(),
            "chaos_abs_dist": stat("chaos_abs_dist").mean(0).tolist(),
            "abs_dist_by_q": np.array([[cell[(s, lam, g)]["abs_dist"] for g in gens]
                                       for s in seeds]).mean(0).tolist(),
            "ratio_to_generation_0": (slope.mean(0) / b0.mean()).tolist(),
            "sq_dist_by_order_generation_0": by_order[:, 0].tolist(),
            "chaos_per_seed_generation_0": chaos[:, 0].tolist(),
            "sigma_two_way": _two_way_sigma(slope[:, 1:]) if len(gens) > 2 else None,
        }
    later = [g for g in gens if g > 0]
    if later and len(lams) == 2:
        bz = np.array([[cell[(s, lams[0], g)]["sq_dist_slope"] for g in later] for s in seeds])
        bh = np.array([[cell[(s, lams[1], g)]["sq_dist_slope"] for g in later] for s in seeds])
        out["paired"] = {"rho": float((bz - bh).mean() / b0.mean()),
                         "rho_per_seed": ((bz - bh).mean(1) / b0).tolist(),
                         "generation_0_slope": b0.tolist(),
                         "generation_0_slope_mean": float(b0.mean())}
    return out


def noise_of(pilot: dict) -> dict:
    """The noise of one seed's dose slope, in units of the mean generation-0 slope, pooled from
    the spread over seeds of every (lambda, generation) cell (seed offsets included, so the
    calibration's tau is 0: conservative for the paired contrast, where they cancel) and the
    split between the two batch orders of each seed (`slope_order_split_sd`), with its degrees
    of freedom and a one-sided 90% upper bound (chi-square)."""
    from scipy.stats import chi2

    gens = len(pilot["generations"])
    rows = list(pilot["lambdas"].values())[:1] if gens == 1 else pilot["lambdas"].values()
    cells = [np.var(np.array(row["slope_per_seed"])[:, g], ddof=1)
             for row in rows for g in range(gens)]
    df_seed = len(cells) * (len(pilot["seeds"]) - 1)
    df_order = len(pilot["seeds"]) * gens - 1
    order = [row["slope_order_split_sd"] ** 2 for row in rows]
    pooled = (df_seed * np.mean(cells) + df_order * np.mean(order)) / (df_seed + df_order)
    sigma = float(np.sqrt(pooled))
    df = df_seed + df_order
    upper = sigma * float(np.sqrt(df / chi2.ppf(0.10, df)))
    beta0 = pilot["generation_0_slope_mean"]
    return {"beta0": beta0, "sigma_absolute": sigma, "df": df,
            "sigma_between_seeds": float(np.sqrt(np.mean(cells))),
            "sigma_order_split": float(np.sqrt(np.mean(order))),
            "sigma_relative": sigma / beta0 if beta0 > 0 else None,
            "sigma_relative_upper90": upper / beta0 if beta0 > 0 else None}


def sizing(pilot: dict, delta: float, effect_per_generation: float,
           seed_counts=(5, 10, 20, 40, 80, 160), draws: int = 4000) -> dict:
    """Power at the stated effect (gamma_i^2 / gamma_0^2 = 1 + effect x i at lambda 0, flat at
    0.5) and false-confirm at the margin, by seed count, at the pilot's noise, through the
    report's own rule (`simulate_p3.p3_rates`)."""
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_p3 import SlopeNoise, flat, linear, p3_rates

    noise = noise_of(pilot)
    out = {"noise": noise, "delta_3": delta, "effect_per_generation": effect_per_generation,
           "horizon": 3, "draws": draws, "by_seeds": {}}
    if noise["sigma_relative"] is None:
        out["reading"] = "no positive generation-0 dose slope: nothing to size"
        return out
    cfg = ReportConfig(v2_p3_delta=delta, v2_p3_seeds=None)
    for label, sigma in (("point", noise["sigma_relative"]),
                         ("upper90", noise["sigma_relative_upper90"])):
        slope_noise = SlopeNoise(sigma, 0.0)
        table = out["by_seeds"].setdefault(label, {})
        for seeds in seed_counts:
            power = p3_rates(1.0, linear(effect_per_generation), flat(1.0), seeds,
                             slope_noise, cfg, draws=draws, seed=seeds)
            margin = p3_rates(1.0, flat(1.0 + delta), flat(1.0), seeds, slope_noise, cfg,
                              draws=draws, seed=seeds + 1)
            table[str(seeds)] = {"power": power["confirmed"],
                                 "signal_missed": power["not applicable"],
                                 "false_confirm_at_margin": margin["confirmed"]}
    for label, table in out["by_seeds"].items():
        enough = [int(k) for k, v in table.items() if v["power"] >= 0.8]
        out[f"seeds_for_80_percent_{label}"] = min(enough) if enough else None
    return out


def finished_or_partial(work: Path, name: str, seed: int) -> dict | None:
    """A seed's summary.json, or, for a run stopped early, the records of its finished
    generations from the checkpoints (`partial`: true); None when it has neither."""
    path = work / name / str(seed) / "summary.json"
    if path.exists():
        return json.loads(path.read_text())
    steps = int(name.split("_")[0][1:])
    checkpoints = work / "checkpoints" / f"pilot_p3v2_d2_{name}_{seed}"
    records = []
    for gen in sorted(checkpoints.glob("gen_*/metrics.json")):
        records += json.loads(gen.read_text())["records"]
    if not records:
        return None
    return {"partial": True, "generations": records, "settings": {"train": {"steps": steps}}}


def dose_figure(pilots: dict, path: Path) -> None:
    """Generation 0's squared distance to the base loop against q, per configuration: each
    seed and batch order (points), their mean (line), the chaos twin (dashed) and the fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pilots), figsize=(5.2 * len(pilots), 4.0), squeeze=False)
    for ax, (_, pilot) in zip(axes[0], sorted(pilots.items())):
        row, qs = pilot["lambdas"]["0"], np.array(pilot["fractions"]) * 100
        for j, seed in enumerate(pilot["seeds"]):
            by_order = np.array(row["sq_dist_by_order_generation_0"][j])  # (q, orders)
            for order in range(by_order.shape[1]):
                ax.plot(qs, by_order[:, order], "o", color=f"C{j}", ms=4, alpha=0.6)
            ax.axhline(row["chaos_per_seed_generation_0"][j], color=f"C{j}", ls="--", lw=1,
                       label=f"seed {seed}: chaos twin")
        ax.plot(qs, row["sq_dist_by_q"][0], "k-", label="mean over seeds and orders")
        fit = row["intercept_mean"][0] + row["chaos_sq_dist"][0] + row["slope_mean"][0] * qs / 100
        ax.plot(qs, fit, "k:", label=f"fit: slope {row['slope_mean'][0]:.2f} per unit q")
        ax.set(xscale="log", xlabel="q, % of S_0 replaced (n = 10,000)",
               ylabel="squared distance to the base loop", ylim=(0, None),
               title=f"{pilot['steps']:,} steps, generation 0")
        ax.set_xticks(qs, [f"{q:g}" for q in qs])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "run":
        return run(args.work, args.steps, args.generations)
    pilots = {}
    for folder in sorted(p for p in args.work.glob("s*_g*") if p.is_dir()):
        summaries = [finished_or_partial(args.work, folder.name, seed) for seed in SEEDS]
        if any(s is None for s in summaries):
            print(f"[pilot] {folder.name}: a seed has no finished generation, skipped")
            continue
        for seed, summary in zip(SEEDS, summaries):
            out = args.results / "runs" / folder.name / str(seed)
            out.mkdir(parents=True, exist_ok=True)
            for name in ("summary.json", "dose_response.json", "timing.json"):
                if (folder / str(seed) / name).exists():
                    shutil.copyfile(folder / str(seed) / name, out / name)
            if summary.get("partial"):  # stopped early: its finished generations' records
                (out / "records.json").write_text(json.dumps(summary, indent=1) + "\n")
        pilot = analyse_pilot(summaries)
        pilot["stopped_after_generation"] = (max(pilot["generations"]) if any(
            s.get("partial") for s in summaries) else None)
        pilot["sizing"] = sizing(pilot, delta=1.0, effect_per_generation=1.0)
        pilots[folder.name] = pilot
        for lam, row in pilot["lambdas"].items():
            print(f"[pilot] {folder.name} λ={lam}: chaos floor "
                  f"{np.round(row['chaos_sq_dist'], 5).tolist()}, dose slope "
                  f"{np.round(row['slope_mean'], 4).tolist()} sd "
                  f"{np.round(row['slope_sd'], 4).tolist()}")
        print(f"[pilot] {folder.name} sizing: {json.dumps(pilot['sizing'])}")
    (args.results / "pilot.json").write_text(json.dumps(pilots, indent=2) + "\n")
    if pilots:
        dose_figure(pilots, args.results / "figures" / "dose_generation_0.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
