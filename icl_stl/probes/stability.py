"""Empirical recursive stability: the loop run from S_0 and from S_0' (one prompt replaced).

The twin loops (base, neighbours, chaos control) and the probe prompts are built in
:mod:`icl_stl.probes.twins`; they train as members of one ensemble, sharing every other draw.
At every generation `StabilityHook` compares each neighbour with its base on a fixed probe set of
fresh real prompts (their own stream, `twins.probe_set`):
    gamma_max  = max over prompts and positions of |f_i(P) - f'_i(P)|
    gamma_mean = the mean of the same differences
and the synthetic labels the two produced for the same x's (mean and max |y - y'|).
`aggregate_stability` turns the per-member records into one record per (n, generation): mean,
std, min and max over pairs (seeds x replaced indices), plus the test-risk difference.
Records carry the chaos control's gamma_chaos (the same statistics against the base loop, the
ceiling gamma is read against) beside gamma and their ratio (`aggregate_stability`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from icl_stl.config import ProbeConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.task_pool import TaskPool
from icl_stl.data.tasks import make_task
from icl_stl.loop.hooks import ExtraMetrics, combine_hooks
from icl_stl.loop.learners import Learner
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.persistence import atomic_write_json
from icl_stl.probes.twins import TwinPair, check_same_pool, probe_set, run_pool, twin_members
from icl_stl.runs.logger import RunLogger


class StabilityHook:
    """LoopRun `extra_metrics`: per-generation twin differences, written on neighbour records."""

    def __init__(self, pairs: Sequence[TwinPair], prompts: PromptSet):
        self.pairs, self.prompts = list(pairs), prompts

    def __call__(self, generation: int, learner: Learner, datasets: list[PromptSet],
                 new_synthetic: list[PromptSet]) -> list[dict]:
        out: list[dict] = [{} for _ in datasets]
        if not self.pairs:
            return out
        preds = learner.predictions(self.prompts).double()  # (K, n_probe, k)
        for pair in self.pairs:
            diff = (preds[pair.base] - preds[pair.neighbour]).abs()
            a, b = new_synthetic[pair.base], new_synthetic[pair.neighbour]
            if pair.shared_draws and not torch.equal(a.xs, b.xs):
                raise RuntimeError(f"twins {pair} labelled different synthetic x's at generation "
                                   f"{generation}: their random streams are not shared")
            label_diff = (a.ys.double() - b.ys.double()).abs() if pair.shared_draws else None
            out[pair.base]["twin"] = "base"
            out[pair.neighbour].update({
                "twin": pair.kind, "twin_of": pair.base,
                "replaced_index": pair.index if pair.kind == "neighbour" else None,
                "gamma_max": diff.max().item(), "gamma_mean": diff.mean().item(),
                "syn_label_diff": label_diff.mean().item()
                if label_diff is not None and label_diff.numel() else None,
                "syn_label_diff_max": label_diff.max().item()
                if label_diff is not None and label_diff.numel() else None,
            })
        return out


def spread(values: Sequence[float], name: str) -> dict:
    """{name: mean, name_std: sample std (0 for one value), name_min, name_max}."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {name: None, f"{name}_std": None, f"{name}_min": None, f"{name}_max": None}
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return {name: mean, f"{name}_std": math.sqrt(var), f"{name}_min": min(vals),
            f"{name}_max": max(vals)}


def aggregate_stability(records: list[dict]) -> list[dict]:
    """One record per (n, generation) over all twin pairs, from the loop's summary records.

    With chaos controls: `chaos_gamma_*` (the same statistics over the controls) and
    `gamma_ratio` = gamma_mean / chaos_gamma_mean, gamma beside its ceiling.
    """
    by_key = {(r["member"], r["generation"]): r for r in records}
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    controls: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in records:
        if r.get("twin") == "neighbour":
            groups[(r["n"], r["generation"])].append(r)
        elif r.get("twin") == "control":
            controls[(r["n"], r["generation"])].append(r)
    out = []
    for (n, generation), group in sorted(groups.items()):
        risk_diffs = [abs(r["test_risk"] - by_key[(r["twin_of"], generation)]["test_risk"])
                      for r in group]
        row = {"generation": generation, "n": n, "n_pairs": len(group),
               **spread([r["gamma_max"] for r in group], "gamma_max"),
               **spread([r["gamma_mean"] for r in group], "gamma_mean"),
               **spread(risk_diffs, "test_risk_diff"),
               **spread([r["syn_label_diff"] for r in group], "syn_label_diff")}
        chaos = controls.get((n, generation), [])
        if chaos:
            row.update(**spread([r["gamma_max"] for r in chaos], "chaos_gamma_max"),
                       **spread([r["gamma_mean"] for r in chaos], "chaos_gamma_mean"))
            row["gamma_ratio"] = (row["gamma_mean"] / row["chaos_gamma_mean"]
                                  if row["chaos_gamma_mean"] else None)
        out.append(row)
    return out


def per_seed_stability(records: list[dict]) -> list[dict]:
    """gamma per (seed, n, generation): the mean over that seed's replaced indices (one
    replicate: they share a base loop), with its chaos control's gamma where there is one."""
    base_seed = {r.get("member"): r["seed"] for r in records}  # a seed control has its own
    cells: dict[tuple[int, int, int], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list))
    for r in records:
        if r.get("twin") in ("neighbour", "control") and r.get("gamma_mean") is not None:
            prefix = "" if r["twin"] == "neighbour" else "chaos_"
            cell = cells[(base_seed.get(r.get("twin_of"), r["seed"]), r["n"], r["generation"])]
            cell[f"{prefix}gamma_mean"].append(float(r["gamma_mean"]))
            cell[f"{prefix}gamma_max"].append(float(r["gamma_max"]))
    out = []
    for (seed, n, generation), cell in sorted(cells.items()):
        if not cell.get("gamma_mean"):
            continue
        row = {"seed": seed, "n": n, "generation": generation,
               "n_indices": len(cell["gamma_mean"])}
        row.update({k: sum(v) / len(v) for k, v in cell.items()})
        out.append(row)
    return out


def plot_stability(per_generation: list[dict], path: Path, title: str = "") -> Path:
    """gamma_max and gamma_mean against generation (one line per n, band = min..max)."""
    from icl_stl.probes.plots import band_plot

    series = defaultdict(list)
    for r in per_generation:
        series[r["n"]].append(r)
    curves = []
    for j, (n, rows) in enumerate(sorted(series.items())):
        for stat, style in (("gamma_max", "o-"), ("gamma_mean", "s--")):
            curves.append({"label": f"{stat}, n = {n}", "style": style, "color": f"C{j % 10}",
                           "x": [r["generation"] for r in rows], "y": [r[stat] for r in rows],
                           "low": [r[f"{stat}_min"] for r in rows],
                           "high": [r[f"{stat}_max"] for r in rows]})
    return band_plot(curves, path, xlabel="generation i",
                     ylabel="gamma_i = |f_i(P) - f'_i(P)| on probe prompts", title=title)


def stability_result(records: list[dict], settings: LoopSettings, probe: ProbeConfig,
                     seeds: Sequence[int], ns: Sequence[int], pool: TaskPool | None) -> dict:
    """stability.json's content: the probe's settings and the aggregates of the loop's records
    (a function of summary.json's records alone, so it can be rebuilt from them)."""
    result = {"kind": "stability", "replacement": probe.replacement, "seeds": list(seeds),
              "ns": list(ns), "replaced_indices": list(probe.replaced_indices),
              "real_fraction": settings.loop.real_fraction, "probe_prompts": probe.probe_prompts,
              "chaos_control": probe.chaos_control,
              **({} if pool is None else {"n_tasks": len(pool)}),
              "generations": aggregate_stability(records),
              "per_seed": per_seed_stability(records)}
    if probe.replacement == "identical":  # the probe's self-check: identical twins, gamma = 0
        result["identical_twins_exact"] = all(
            g["gamma_max_max"] == 0.0 for g in result["generations"])
    return result


def run_stability(settings: LoopSettings, probe: ProbeConfig, seeds: Sequence[int],
                  ns: Sequence[int], checkpoint_dir: Path, run_dir: Path | None = None,
                  logger: RunLogger | None = None,
                  extra_hooks: Sequence[ExtraMetrics] = ()) -> tuple[dict, dict]:
    """Run every twin pair as one ensemble; returns (stability result, loop summary).

    With `run_dir`, writes stability.json and stability.png there (and LoopRun's timing.json).
    """
    task, k = make_task(settings.task), settings.task.k
    if probe.replacement == "identical" and settings.loop.share_generation_0:
        # identical twins would share generation 0 and agree trivially; the self-check is that
        # two members trained side by side compute the same numbers, so train both
        settings = dataclasses.replace(
            settings, loop=dataclasses.replace(settings.loop, share_generation_0=False))
    pool = run_pool(task, settings)
    members, pairs = twin_members(task, k, ns, seeds, probe.replaced_indices,
                                  settings.loop.real_fraction, settings.loop.augment,
                                  probe.replacement, probe.chaos_control, settings.loop, pool)
    hook = StabilityHook(pairs, probe_set(task, k, probe.probe_prompts, settings.seed, pool))
    run = LoopRun(settings, members, checkpoint_dir, run_dir, logger,
                  extra_metrics=combine_hooks(hook, *extra_hooks))
    check_same_pool(pool, run)
    summary = run.run()
    result = stability_result(summary["generations"], settings, probe, seeds, ns, pool)
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "stability.json", result)
        plot_stability(result["generations"], Path(run_dir) / "stability.png",
                       title=f"recursive stability, λ = {settings.loop.real_fraction:g}, "
                             f"{probe.replacement} replacement")
    return result, summary
