"""In-context stability (Li et al. 2023): how much a changed first example moves later losses.

For a fixed set of fresh real prompts P, the perturbed copy P' replaces pair 1 by (x', -y'):
x' fresh and y' = f_w(x') its noiseless true label under the prompt's own task, flipped. At every
generation of the loop `InContextHook` records, per member and position j = 2..k,

    abs_change[j]    = mean over prompts of |loss_j(P') - loss_j(P)|   (the reported quantity)
    signed_change[j] = mean over prompts of  loss_j(P') - loss_j(P)    (its direction)

with loss_j the squared error / d at position j. Position 1 is left out: there the target itself
changed. An algorithm stable in context lets the change fade as later examples accumulate;
`aggregate_in_context` fits its slope against position (a line, and a power law when positive)
with intervals over the loops (seeds).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from icl_stl.config import ProbeConfig
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import Task, make_task
from icl_stl.loop.hooks import ExtraMetrics, combine_hooks
from icl_stl.loop.learners import Learner
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.persistence import atomic_write_json
from icl_stl.probes.decay import decay_members
from icl_stl.probes.plots import plot_in_context
from icl_stl.runs.logger import RunLogger
from icl_stl.theory import fit_linear_slope, fit_power_law


def perturb_first_pair(prompts: PromptSet, task: Task, gen: torch.Generator) -> PromptSet:
    """P' from P: pair 1 becomes (x', -f_w(x')) with x' fresh from `gen` (needs true params)."""
    if prompts.params is None:
        raise ValueError("perturb_first_pair needs real prompts with their task parameters")
    x_new = task.sample_xs(len(prompts), 1, gen)  # (n, 1, d)
    y_new = task.f(prompts.params, x_new)  # (n, 1)
    xs, ys = prompts.xs.clone(), prompts.ys.clone()
    xs[:, 0], ys[:, 0] = x_new[:, 0], -y_new[:, 0]
    return PromptSet(xs, ys, prompts.params)


def in_context_prompts(task: Task, k: int, n_prompts: int,
                       seed: int) -> tuple[PromptSet, PromptSet]:
    """(P, P'): fresh real prompts from their own stream and their perturbed copies."""
    prompts = sample_prompts(task, n_prompts, k, make_generator(seed, "ics_prompts"))
    return prompts, perturb_first_pair(prompts, task, make_generator(seed, "ics_flip"))


class InContextHook:
    """LoopRun `extra_metrics`: per-position loss change of every member at every generation."""

    def __init__(self, prompts: PromptSet, perturbed: PromptSet):
        self.prompts, self.perturbed = prompts, perturbed

    def __call__(self, generation: int, learner: Learner, datasets: list[PromptSet],
                 new_synthetic: list[PromptSet]) -> list[dict]:
        change = (learner.errors(self.perturbed) - learner.errors(self.prompts)).double()
        change = change[:, :, 1:]  # (K, n, k - 1): positions 2..k
        abs_change, signed = change.abs().mean(1), change.mean(1)  # (K, k - 1)
        positions = np.arange(2, change.shape[-1] + 2)
        out = []
        for m in range(change.shape[0]):
            slope = None
            if len(positions) >= 3:  # a one-column line fit needs 3 points for its interval
                slope = fit_linear_slope(positions, abs_change[m].numpy()).slope
            out.append({"ics_abs_change": abs_change[m].tolist(),
                        "ics_signed_change": signed[m].tolist(), "ics_slope": slope})
        return out


def aggregate_in_context(records: list[dict], level: float = 0.95) -> list[dict]:
    """One record per (n, generation): mean and sd over loops per position, fitted slopes."""
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in records:
        if r.get("ics_abs_change") is not None:
            groups[(r["n"], r["generation"])].append(r)
    n_values = len({n for n, _ in groups})
    out = []
    for (n, generation), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        table = np.array([r["ics_abs_change"] for r in group]).T  # (k - 1, loops)
        signed = np.array([r["ics_signed_change"] for r in group]).T
        positions = np.arange(2, table.shape[0] + 2)
        rec = {"generation": generation, "n": n, "n_values": n_values, "loops": len(group),
               "positions": positions.tolist(), "abs_change": table.mean(1).tolist(),
               "abs_change_std": (table.std(1, ddof=1) if table.shape[1] > 1
                                  else np.zeros(table.shape[0])).tolist(),
               "signed_change": signed.mean(1).tolist(), "linear_fit": None, "power_law": None}
        enough = table.shape[1] >= 2 or len(positions) >= 3
        if len(positions) >= 2 and enough:
            rec["linear_fit"] = fit_linear_slope(positions, table, level=level).to_dict()
            if np.all(table > 0):
                rec["power_law"] = fit_power_law(positions, table, level=level).to_dict()
        out.append(rec)
    return out


def run_in_context(settings: LoopSettings, probe: ProbeConfig, seeds: Sequence[int],
                   ns: Sequence[int], checkpoint_dir: Path, run_dir: Path | None = None,
                   logger: RunLogger | None = None,
                   extra_hooks: Sequence[ExtraMetrics] = ()) -> tuple[dict, dict]:
    """One loop per (n, seed), probed at every generation; returns (result, loop summary).

    With `run_dir`, writes in_context.json and in_context.png there.
    """
    task, k = make_task(settings.task), settings.task.k
    prompts, perturbed = in_context_prompts(task, k, probe.probe_prompts, settings.seed)
    members = decay_members(ns, seeds, settings.loop.real_fraction, settings.loop.augment)
    run = LoopRun(settings, members, checkpoint_dir, run_dir, logger,
                  extra_metrics=combine_hooks(InContextHook(prompts, perturbed), *extra_hooks))
    summary = run.run()
    result = {"kind": "in_context", "seeds": list(seeds), "ns": list(ns),
              "probe_prompts": probe.probe_prompts, "quantity": "mean |loss(P') - loss(P)|",
              "generations": aggregate_in_context(summary["generations"], probe.level)}
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "in_context.json", result)
        plot_in_context(result["generations"], Path(run_dir) / "in_context.png",
                        title=f"in-context stability, λ = {settings.loop.real_fraction:g}")
    return result, summary
