"""Recursive stability as a dose-response (P3, version 2): replace a fraction q of S_0 and
measure how far the loop moves, against a chaos twin that only changes the batch order.

Per (n, seed, lambda) the probe trains, as members of ONE ensemble:

- for every batch order r = 0..R-1 (`probe.orders`): a base loop on S_0 and, for every q of
  `probe.fractions`, the loop on S_0 with q n of its prompts replaced by fresh ones;
- order r > 0 is the same loop with another batch stream at every generation
  (`MemberSpec.batch_order`): same S_0, initialisation, synthetic x's and reused real subset.

The replaced prompts are nested across q: the first q n of one permutation of S_0's indices
(stream `dose_indices`), replaced by the first q n of n fresh prompts (stream
`dose_replacement`), both keyed by (seed, n) alone, so a member's S_0 never depends on which
other q, lambda or order the run holds.

At every generation `DoseHook` reads each loop's predictive distribution on fixed probe prompts
(`twins.probe_set`) and writes, on every non-base member's record, its distance to its
base (the same order's base loop for a replaced loop; order 0's base for a chaos twin):
    sq_dist = mean over prompts and positions of (mu - mu')^2
    abs_dist = mean |mu - mu'|  (version 1's gamma_mean)
    w2_sq   = mean of W2^2 between the Gaussian heads, (mu - mu')^2 + (sigma - sigma')^2
The aggregation (`dose_rows`) subtracts the chaos twin's value and fits the dose slope
(`icl_stl/probes/dose_fit.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from icl_stl.config import ProbeConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import TaskPool
from icl_stl.data.tasks import Task, make_task
from icl_stl.loop.hooks import ExtraMetrics, combine_hooks
from icl_stl.loop.learners import Learner
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_prompts
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.persistence import atomic_write_json
from icl_stl.probes.dose_fit import dose_rows
from icl_stl.probes.twins import check_same_pool, probe_set, run_pool
from icl_stl.runs.logger import RunLogger

ROLES = ("base", "dose", "chaos")


@dataclass(frozen=True)
class DosePair:
    """Member `other` against member `base`: a replaced loop (kind "dose", fraction q, both of
    batch order `order`) or a chaos twin (kind "chaos": order 0's base in batch order `order`)."""

    base: int
    other: int
    kind: str
    fraction: float
    order: int


def replaced_count(fraction: float, n: int) -> int:
    """q n, the number of prompts replaced; `ProbeConfig.validate` checks it is whole."""
    return int(round(fraction * n))


def replaced_set(task: Task, s0: PromptSet, fraction: float, seed: int, k: int,
                 pool: TaskPool | None = None) -> PromptSet:
    """S_0 with q n prompts replaced by fresh ones: nested in q (module doc)."""
    n, count = len(s0), replaced_count(fraction, len(s0))
    if not 1 <= count < n:
        raise ValueError(f"fraction {fraction} of n={n} replaces {count} prompts (needs 1..n-1)")
    where = torch.randperm(n, generator=make_generator(seed, "dose_indices", n))[:count]
    fresh = real_prompts(task, n, k, make_generator(seed, "dose_replacement", n), pool)
    xs, ys = s0.xs.clone(), s0.ys.clone()
    xs[where], ys[where] = fresh.xs[:count].to(xs), fresh.ys[:count].to(ys)
    params = None
    if s0.params is not None and fresh.params is not None:
        params = s0.params.clone()
        params[where] = fresh.params[:count].to(params)
    return PromptSet(xs, ys, params)


def dose_members(task: Task, k: int, ns: Sequence[int], seeds: Sequence[int],
                 real_fractions: Sequence[float], fractions: Sequence[float], orders: int,
                 augment: int = 0, pool: TaskPool | None = None
                 ) -> tuple[list[MemberSpec], list[DosePair]]:
    """Every (n, seed, lambda): per batch order a base loop and one replaced loop per q, and
    the pairs the hook compares (module doc). Members of the same seed share generation 0 across
    lambda (`loop.share_generation_0`)."""
    members: list[MemberSpec] = []
    pairs: list[DosePair] = []
    for n in ns:
        for seed in seeds:
            s0 = draw_s0(task, MemberSpec(seed, 0.0, n, augment, pool=pool), k)
            replaced = {q: replaced_set(task, s0, q, seed, k, pool) for q in fractions}
            for lam in real_fractions:
                first_base = None
                for order in range(orders):
                    base = len(members)
                    tag = f"n{n}/seed{seed}/lambda{lam:g}/order{order}"
                    members.append(MemberSpec(seed, lam, n, augment, s0=s0, tag=f"{tag}/base",
                                              pool=pool, batch_order=order))
                    if first_base is None:
                        first_base = base
                    else:
                        pairs.append(DosePair(first_base, base, "chaos", 0.0, order))
                    for q in fractions:
                        pairs.append(DosePair(base, len(members), "dose", float(q), order))
                        members.append(MemberSpec(seed, lam, n, augment, s0=replaced[q],
                                                  tag=f"{tag}/q{q:g}", pool=pool,
                                                  batch_order=order))
    return members, pairs


def head_distances(mean: torch.Tensor, var: torch.Tensor | None, a: int, b: int) -> dict:
    """Distances between members a and b's predictive distributions on the probe prompts:
    sq_dist, abs_dist and, with variances, w2_sq (the squared 2-Wasserstein distance between
    the two Gaussian heads, averaged over prompts and positions) and w2 (its root, averaged)."""
    delta = mean[a].double() - mean[b].double()
    out = {"sq_dist": (delta ** 2).mean().item(), "abs_dist": delta.abs().mean().item(),
           "w2_sq": None, "w2": None}
    if var is not None:
        w2_sq = gaussian_w2_sq(mean[a], var[a], mean[b], var[b])
        out.update(w2_sq=w2_sq.mean().item(), w2=w2_sq.sqrt().mean().item())
    return out


def gaussian_w2_sq(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor,
                   var_b: torch.Tensor) -> torch.Tensor:
    """W2^2 between N(mu_a, var_a) and N(mu_b, var_b), elementwise: the closed form for two
    one-dimensional Gaussians, (mu_a - mu_b)^2 + (sd_a - sd_b)^2."""
    mu_a, mu_b, var_a, var_b = (t.double() for t in (mu_a, mu_b, var_a, var_b))
    return (mu_a - mu_b) ** 2 + (var_a.sqrt() - var_b.sqrt()) ** 2


class DoseHook:
    """LoopRun `extra_metrics`: every pair's distances, written on the non-base member's record
    (with its role, fraction and base); base loops are marked `dose_role` "base"."""

    def __init__(self, pairs: Sequence[DosePair], prompts: PromptSet):
        self.pairs, self.prompts = list(pairs), prompts

    def __call__(self, generation: int, learner: Learner, datasets: list[PromptSet],
                 new_synthetic: list[PromptSet]) -> list[dict]:
        out: list[dict] = [{} for _ in datasets]
        if not self.pairs:
            return out
        mean, var = learner.predictive_distribution(self.prompts)
        for pair in self.pairs:
            out[pair.base].setdefault("dose_role", "base")
            out[pair.other].update({"dose_role": pair.kind, "dose_of": pair.base,
                                    "fraction": pair.fraction if pair.kind == "dose" else 0.0,
                                    "batch_order": pair.order,
                                    **head_distances(mean, var, pair.base, pair.other)})
        return out


def dose_result(records: list[dict], settings: LoopSettings, probe: ProbeConfig,
                seeds: Sequence[int], ns: Sequence[int], real_fractions: Sequence[float]) -> dict:
    """dose_response.json: the settings and the per-(seed, n, lambda, generation) rows, a
    function of summary.json's records alone (so it can be rebuilt from them)."""
    return {"kind": "dose_response", "seeds": list(seeds), "ns": list(ns),
            "real_fractions": list(real_fractions), "fractions": list(probe.fractions),
            "orders": probe.orders, "probe_prompts": probe.probe_prompts,
            "regime": settings.loop.init, "rows": dose_rows(records)}


def plot_dose(rows: list[dict], path: Path, title: str = "") -> Path:
    """Squared distance to the base loop against generation, mean over seeds (band: min-max):
    per lambda, each fraction q (solid) beside the chaos twin (dashed), the floor it is read
    against."""
    from icl_stl.probes.plots import band_plot

    curves = []
    lams = sorted({r["real_fraction"] for r in rows})
    for j, lam in enumerate(lams):
        mine = [r for r in rows if r["real_fraction"] == lam]
        gens = sorted({r["generation"] for r in mine})
        qs = mine[0]["fractions"] if mine else []

        def series(pick, gens=gens, mine=mine):
            vals = [[pick(r) for r in mine if r["generation"] == g] for g in gens]
            return ([sum(v) / len(v) for v in vals], [min(v) for v in vals],
                    [max(v) for v in vals])

        y, low, high = series(lambda r: r["chaos_sq_dist"])
        curves.append({"label": f"λ = {lam:g}, chaos twin", "style": "s--",
                       "color": f"C{j}", "x": gens, "y": y, "low": low, "high": high})
        for i, q in enumerate(qs):
            y, _, _ = series(lambda r, i=i: r["sq_dist"][i])
            curves.append({"label": f"λ = {lam:g}, q = {q:g}", "style": "o-",
                           "color": f"C{j}", "x": gens, "y": y})
    return band_plot(curves, path, xlabel="generation i",
                     ylabel="squared distance to the base loop (probe prompts)", title=title)


def probe_real_fractions(settings: LoopSettings, probe: ProbeConfig) -> list[float]:
    return list(probe.real_fractions or [settings.loop.real_fraction])


def run_dose_response(settings: LoopSettings, probe: ProbeConfig, seeds: Sequence[int],
                      ns: Sequence[int], checkpoint_dir: Path, run_dir: Path | None = None,
                      logger: RunLogger | None = None,
                      extra_hooks: Sequence[ExtraMetrics] = ()) -> tuple[dict, dict]:
    """Run every loop of the dose-response as one ensemble; returns (result, loop summary).
    With `run_dir`, writes dose_response.json (and LoopRun's outputs) there."""
    task, k = make_task(settings.task), settings.task.k
    lams = probe_real_fractions(settings, probe)
    pool = run_pool(task, settings)
    members, pairs = dose_members(task, k, ns, seeds, lams, probe.fractions, probe.orders,
                                  settings.loop.augment, pool)
    hook = DoseHook(pairs, probe_set(task, k, probe.probe_prompts, settings.seed, pool))
    run = LoopRun(settings, members, checkpoint_dir, run_dir, logger,
                  extra_metrics=combine_hooks(hook, *extra_hooks))
    check_same_pool(pool, run)
    summary = run.run()
    result = dose_result(summary["generations"], settings, probe, seeds, ns, lams)
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "dose_response.json", result)
        plot_dose(result["rows"], Path(run_dir) / "dose_response.png",
                  title="recursive stability as a dose-response")
    return result, summary


__all__ = ["DoseHook", "DosePair", "ROLES", "dose_members", "dose_result", "gaussian_w2_sq",
           "head_distances", "plot_dose", "replaced_count", "replaced_set", "run_dose_response"]
