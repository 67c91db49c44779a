"""Error decay against n: the loop on a grid of n and seeds, as ONE ensemble, fitted in log-log.

Every (n, seed) loop is one member of a single `LoopRun` (members may differ in n). From the
final generation's records `aggregate_decay` fits, over seeds, the log-log slope of

    excess_risk = test risk - ridge (Bayes-optimal) risk   (the default `probe.fit_metric`)
    test_risk, gen_gap (where positive) and, with twins, gamma_mean / gamma_max

with `theory.fit_power_law` (interval over seeds), the bound's shape with non-negative
coefficients (`theory.fit_bound`), and the verdict of `theory.decay_verdict` on prediction 4
(decay at least as fast as n^-1/4) for the fit metric. The excess risk is the default because
with label noise the test risk tends to the Bayes risk, not to 0, which flattens its slope;
without noise the two differ only by the ridge (least-squares) risk of the first d positions.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icl_stl.config import ProbeConfig
from icl_stl.data.tasks import make_task
from icl_stl.loop.hooks import ExtraMetrics, combine_hooks
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.persistence import atomic_write_json
from icl_stl.probes.plots import plot_decay
from icl_stl.probes.stability import StabilityHook
from icl_stl.probes.twins import check_same_pool, probe_set, run_pool, twin_members
from icl_stl.runs.logger import RunLogger
from icl_stl.theory import decay_verdict, fit_bound, fit_power_law

log = logging.getLogger(__name__)

RISKS = ("excess_risk", "test_risk", "gen_gap")
GAMMAS = ("gamma_mean", "gamma_max")


def _table(records: list[dict], quantity: str, generation: int, ns: list[int],
           seeds: list[int]) -> np.ndarray:
    """(len(ns), len(seeds)) values at `generation`; gamma is averaged over replaced indices."""
    cells: dict[tuple[int, int], list[float]] = defaultdict(list)
    gamma = quantity in GAMMAS
    for r in records:
        if r["generation"] != generation or r.get(quantity) is None:
            continue
        if (r.get("twin") == "neighbour") != gamma:  # risks: base loops; gamma: neighbours
            continue
        cells[(r["n"], r["seed"])].append(float(r[quantity]))
    table = np.full((len(ns), len(seeds)), np.nan)
    for i, n in enumerate(ns):
        for j, s in enumerate(seeds):
            if cells.get((n, s)):
                table[i, j] = float(np.mean(cells[(n, s)]))
    return table


def fit_quantity(ns: Sequence[int], table: np.ndarray, level: float) -> dict:
    """Power law and bound fitted to a (len(ns), seeds) table, using only positive rows.

    Rows with every seed positive are fitted with an interval over seeds; if fewer than 2 such
    rows exist (or there is one seed), the per-n means that are positive are fitted by
    regression (3 points or more). Otherwise nothing is fitted and `note` says why.
    """
    ns_arr = np.asarray(ns, dtype=float)
    positive = np.all(np.isfinite(table) & (table > 0), axis=1)
    out: dict = {"power_law": None, "bound": None, "ns_used": [], "note": "", "fit": None}
    if table.shape[1] >= 2 and positive.sum() >= 2:
        x, y, how = ns_arr[positive], table[positive], "per-seed fits on rows with every seed > 0"
    else:
        finite = np.isfinite(table)
        counts = finite.sum(axis=1)
        means = np.where(counts > 0, np.where(finite, table, 0.0).sum(axis=1)
                         / np.maximum(counts, 1), np.nan)
        keep = np.isfinite(means) & (means > 0)
        if keep.sum() < 3:
            out["note"] = "too few n with positive values to fit a power law"
            return out
        x, y, how = ns_arr[keep], means[keep], "regression on the positive per-n means"
    fit = fit_power_law(x, y, level=level)
    out.update(power_law=fit.to_dict(), bound=fit_bound(x, y).to_dict(),
               ns_used=[int(v) for v in x], note=how, fit=fit)
    return out


def _spread(values: np.ndarray) -> dict:
    vals = [float(v) for v in values if np.isfinite(v)]
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else (0.0 if vals else None)
    return {"mean": float(np.mean(vals)) if vals else None, "std": std,
            "per_seed": [None if not np.isfinite(v) else float(v) for v in values]}


def aggregate_decay(records: list[dict], metric: str = "excess_risk", fit_min_n: int = 1,
                    level: float = 0.95) -> dict:
    """decay.json's content from a loop's per-member records (see the module docstring)."""
    base = [r for r in records if r.get("twin") != "neighbour"]
    ns = sorted({r["n"] for r in base})
    seeds = sorted({r["seed"] for r in base})
    generations = sorted({r["generation"] for r in base})
    final = generations[-1]
    quantities = [q for q in RISKS + GAMMAS if any(r.get(q) is not None for r in records)]
    fit_rows = [i for i, n in enumerate(ns) if n >= fit_min_n]
    fit_ns = [ns[i] for i in fit_rows]

    per_n = {str(n): {} for n in ns}
    fits: dict[str, dict] = {}
    for q in quantities:
        table = _table(records, q, final, ns, seeds)
        for i, n in enumerate(ns):
            per_n[str(n)][q] = _spread(table[i])
        fits[q] = fit_quantity(fit_ns, table[fit_rows], level)
    primary = fits.get(metric, {})
    verdict = decay_verdict(primary["fit"]) if primary.get("fit") is not None else None
    for f in fits.values():
        f.pop("fit", None)  # the object; its plain copy is `power_law`

    per_generation = []
    for g in generations:
        entry: dict = {"generation": g, "per_n": {}}
        for q in quantities:
            table = _table(records, q, g, ns, seeds)
            for i, n in enumerate(ns):
                vals = table[i][np.isfinite(table[i])]
                entry["per_n"].setdefault(str(n), {})[q] = float(vals.mean()) if vals.size else None
            if q == metric:
                entry["slope"] = (fit_quantity(fit_ns, table[fit_rows], level)["power_law"]
                                  or {}).get("slope")
        per_generation.append(entry)

    decades = math.log10(max(ns) / min(ns)) if ns else 0.0
    return {
        "kind": "decay", "metric": metric, "generation": final, "ns": ns, "fit_ns": fit_ns,
        "seeds": seeds,
        "slope": verdict["slope"] if verdict else None,
        "ci": verdict["ci"] if verdict else None,
        "level": level,
        "verdict": verdict["verdict"] if verdict else None,
        "at_least_as_fast": verdict["at_least_as_fast"] if verdict else None,
        "verdict_detail": verdict,
        "bound": primary.get("bound"),
        "fits": fits, "per_n": per_n, "per_generation": per_generation,
        "grid": {"n_values": len(ns), "decades": decades,
                 "meets_guideline": len(ns) >= 5 and decades >= 1.5},
        "note": f"the verdict is drawn from {metric} at the final generation (n >= "
                f"{fit_min_n}); excess_risk = test_risk - ridge_risk",
    }


def decay_members(ns: Sequence[int], seeds: Sequence[int], real_fraction: float,
                  augment: int) -> list[MemberSpec]:
    """One loop per (n, seed); S_0 comes from the seed's own stream."""
    return [MemberSpec(seed, real_fraction, n, augment, tag=f"n{n}/seed{seed}")
            for n in ns for seed in seeds]


def decay_result(records: list[dict], settings: LoopSettings, probe: ProbeConfig) -> dict:
    """decay.json's content: `aggregate_decay` of the loop's records under the probe's fit
    settings, with the run's lambda (so it can be rebuilt from summary.json's records)."""
    result = aggregate_decay(records, probe.fit_metric, probe.fit_min_n, probe.level)
    result["real_fraction"] = settings.loop.real_fraction
    return result


def run_decay(settings: LoopSettings, probe: ProbeConfig, seeds: Sequence[int],
              ns: Sequence[int], checkpoint_dir: Path, run_dir: Path | None = None,
              logger: RunLogger | None = None,
              extra_hooks: Sequence[ExtraMetrics] = ()) -> tuple[dict, dict]:
    """All (n, seed) loops (and twins with `probe.with_stability`) as one ensemble.

    Returns (decay result, loop summary); with `run_dir`, writes decay.json and decay.png.
    """
    lam, augment = settings.loop.real_fraction, settings.loop.augment
    hook, pool = None, None
    if probe.with_stability:  # twins and probe prompts from the run's pool, if it has one
        task, k = make_task(settings.task), settings.task.k
        pool = run_pool(task, settings)
        members, pairs = twin_members(task, k, ns, seeds, probe.replaced_indices, lam, augment,
                                      probe.replacement, pool=pool)
        hook = StabilityHook(pairs, probe_set(task, k, probe.probe_prompts, settings.seed, pool))
    else:
        members = decay_members(ns, seeds, lam, augment)
    run = LoopRun(settings, members, checkpoint_dir, run_dir, logger,
                  extra_metrics=combine_hooks(hook, *extra_hooks))
    if probe.with_stability:
        check_same_pool(pool, run)
    summary = run.run()
    result = decay_result(summary["generations"], settings, probe)
    if not result["grid"]["meets_guideline"]:
        log.warning("decay probe: %d values of n spanning %.2f decades; a slope is only "
                    "meaningful with >= 5 values over >= 1.5 decades", len(result["ns"]),
                    result["grid"]["decades"])
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "decay.json", result)
        plot_decay(result, Path(run_dir) / "decay.png")
    return result, summary
