"""Empirical recursive stability: the loop run from S_0 and from S_0' (one prompt replaced).

Both twins are members of ONE ensemble, with the same seed, so every other draw is shared by
construction (initialisation, batch order, synthetic x's, label noise, fresh real prompts: all
are streams keyed by the member's seed). A base loop per (n, seed) is shared by all its
neighbours (one per replaced index), so r indices cost r + 1 loops, not 2r.

At every generation `StabilityHook` compares each neighbour with its base on a fixed probe set of
fresh real prompts (their own stream, `probe_set`):
    gamma_max  = max over prompts and positions of |f_i(P) - f'_i(P)|
    gamma_mean = the mean of the same differences
and the synthetic labels the two produced for the same x's (mean and max |y - y'|).
`aggregate_stability` turns the per-member records into one record per (n, generation): mean,
std, min and max over pairs (seeds x replaced indices), plus the test-risk difference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from icl_stl.config import ProbeConfig
from icl_stl.io import atomic_write_json
from icl_stl.loop.learners import Learner
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import ExtraMetrics, LoopRun, LoopSettings
from icl_stl.prompts import PromptSet, sample_prompts
from icl_stl.run_logger import RunLogger
from icl_stl.seeding import make_generator
from icl_stl.tasks import Task, make_task


@dataclass(frozen=True)
class TwinPair:
    """Member `neighbour` is member `base` with prompt `index` of S_0 replaced."""

    base: int
    neighbour: int
    index: int


def neighbour_set(task: Task, s0: PromptSet, index: int, replacement: str, seed: int,
                  k: int) -> PromptSet:
    """S_0' = S_0 with prompt `index` replaced.

    fresh: a new prompt from the task distribution (stream `replacement/<index>`); flip: the same
    x's with labels (and task parameters) negated; identical: the same prompt (gamma must be 0).
    """
    old = s0[index]
    if replacement == "fresh":
        new = sample_prompts(task, 1, k, make_generator(seed, "replacement", index))
    elif replacement == "flip":
        new = PromptSet(old.xs, -old.ys, None if old.params is None else -old.params)
    elif replacement == "identical":
        new = old
    else:
        raise ValueError(f"replacement must be fresh, flip or identical, got {replacement!r}")
    return s0.replace(index, new)


def twin_members(task: Task, k: int, ns: Sequence[int], seeds: Sequence[int],
                 indices: Sequence[int], real_fraction: float, augment: int,
                 replacement: str) -> tuple[list[MemberSpec], list[TwinPair]]:
    """For every (n, seed): the base loop on S_0, then one neighbour per replaced index."""
    members: list[MemberSpec] = []
    pairs: list[TwinPair] = []
    for n in ns:
        for seed in seeds:
            s0 = sample_prompts(task, n, k, make_generator(seed, "S0"))  # what draw_s0 draws
            base = len(members)
            members.append(MemberSpec(seed, real_fraction, n, augment, s0=s0,
                                      tag=f"n{n}/seed{seed}/base"))
            for index in indices:
                pairs.append(TwinPair(base, len(members), index))
                members.append(MemberSpec(
                    seed, real_fraction, n, augment,
                    s0=neighbour_set(task, s0, index, replacement, seed, k),
                    tag=f"n{n}/seed{seed}/replace{index}"))
    return members, pairs


def probe_set(task: Task, k: int, n_prompts: int, seed: int) -> PromptSet:
    """The fixed real prompts gamma is measured on (own stream, distinct from the test set)."""
    return sample_prompts(task, n_prompts, k, make_generator(seed, "probe_set"))


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
            if not torch.equal(a.xs, b.xs):
                raise RuntimeError(f"twins {pair} labelled different synthetic x's at generation "
                                   f"{generation}: their random streams are not shared")
            label_diff = (a.ys.double() - b.ys.double()).abs()
            out[pair.base]["twin"] = "base"
            out[pair.neighbour].update({
                "twin": "neighbour", "twin_of": pair.base, "replaced_index": pair.index,
                "gamma_max": diff.max().item(), "gamma_mean": diff.mean().item(),
                "syn_label_diff": label_diff.mean().item() if label_diff.numel() else None,
                "syn_label_diff_max": label_diff.max().item() if label_diff.numel() else None,
            })
        return out


def combine_hooks(*hooks: ExtraMetrics | None) -> ExtraMetrics | None:
    """One `extra_metrics` hook merging the per-member dicts of several (None entries skipped)."""
    active = [h for h in hooks if h is not None]
    if not active:
        return None

    def combined(generation, learner, datasets, new_synthetic):
        merged: list[dict] = [{} for _ in datasets]
        for hook in active:
            for record, extra in zip(merged, hook(generation, learner, datasets, new_synthetic)):
                record.update(extra)
        return merged

    return combined


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
    """One record per (n, generation) over all twin pairs, from the loop's summary records."""
    by_key = {(r["member"], r["generation"]): r for r in records}
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in records:
        if r.get("twin") == "neighbour":
            groups[(r["n"], r["generation"])].append(r)
    out = []
    for (n, generation), group in sorted(groups.items()):
        risk_diffs = [abs(r["test_risk"] - by_key[(r["twin_of"], generation)]["test_risk"])
                      for r in group]
        out.append({"generation": generation, "n": n, "n_pairs": len(group),
                    **spread([r["gamma_max"] for r in group], "gamma_max"),
                    **spread([r["gamma_mean"] for r in group], "gamma_mean"),
                    **spread(risk_diffs, "test_risk_diff"),
                    **spread([r["syn_label_diff"] for r in group], "syn_label_diff")})
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


def run_stability(settings: LoopSettings, probe: ProbeConfig, seeds: Sequence[int],
                  ns: Sequence[int], checkpoint_dir: Path, run_dir: Path | None = None,
                  logger: RunLogger | None = None,
                  extra_hooks: Sequence[ExtraMetrics] = ()) -> tuple[dict, dict]:
    """Run every twin pair as one ensemble; returns (stability result, loop summary).

    With `run_dir`, writes stability.json and stability.png there (and LoopRun's timing.json).
    """
    task, k = make_task(settings.task), settings.task.k
    members, pairs = twin_members(task, k, ns, seeds, probe.replaced_indices,
                                  settings.loop.real_fraction, settings.loop.augment,
                                  probe.replacement)
    hook = StabilityHook(pairs, probe_set(task, k, probe.probe_prompts, settings.seed))
    run = LoopRun(settings, members, checkpoint_dir, run_dir, logger,
                  extra_metrics=combine_hooks(hook, *extra_hooks))
    summary = run.run()
    result = {"kind": "stability", "replacement": probe.replacement, "seeds": list(seeds),
              "ns": list(ns), "replaced_indices": list(probe.replaced_indices),
              "real_fraction": settings.loop.real_fraction, "probe_prompts": probe.probe_prompts,
              "generations": aggregate_stability(summary["generations"])}
    if probe.replacement == "identical":  # the probe's self-check: identical twins, gamma = 0
        result["identical_twins_exact"] = all(
            g["gamma_max_max"] == 0.0 for g in result["generations"])
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "stability.json", result)
        plot_stability(result["generations"], Path(run_dir) / "stability.png",
                       title=f"recursive stability, λ = {settings.loop.real_fraction:g}, "
                             f"{probe.replacement} replacement")
    return result, summary
