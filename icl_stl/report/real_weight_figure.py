"""P10's figure: error against the weight of real data, fresh and reused, with the reference
learner's curves.

One panel per real source. Per arm (solid: the loops labelled by their own model; dashed: the
same seeds' oracle-labelled twins) the mean over seeds of the log excess risk at the last
generation against the real weight w, thin lines: the seeds, band (from 3 seeds on; with 2 its
t-quantile of 6.3 would hide the curves): the 90% t-interval of that mean. Dotted: the reference learner's log error at the same generation, which has no common
unit with the transformer's, so its shape is drawn through the model arm's mean at the
reference's minimum: where that curve dips, P10 predicts the transformer's should.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from icl_stl.report.matched_figure import mean_band
from icl_stl.runs.plots import plt

SOURCE_TITLES = {"fresh": "fresh real data every generation",
                 "reuse": "real data reused from S_0"}
ARM_STYLES = {"model": ("-", "tab:red", "model labels"),
              "oracle": ("--", "tab:blue", "oracle labels (the twin)")}


def anchored_reference(reference: np.ndarray, model_mean: np.ndarray) -> np.ndarray:
    """The reference learner's log curve moved to pass through the model arm's mean where the
    reference is smallest (shape only)."""
    lowest = int(np.argmin(reference))
    return reference - reference[lowest] + model_mean[lowest]


def draw(grid: np.ndarray, log_excess: dict[str, dict[str, np.ndarray]],
         reference: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Draw the figure to `path`.

    grid: the real weights (ascending); log_excess[source][arm]: (seeds, len(grid)) log excess
    risk at the last generation; reference[source]: the reference learner's log error on grid.
    """
    grid = np.asarray(grid, dtype=float)
    sources = list(log_excess)
    fig, axes = plt.subplots(1, len(sources), figsize=(5.4 * len(sources), 4.2), sharey=True,
                             squeeze=False)
    for axis, source in zip(axes[0], sources):
        model_mean = None
        for arm, values in log_excess[source].items():
            style, colour, label = ARM_STYLES[arm]
            rows = np.asarray(values, dtype=float)
            if rows.shape[1] != len(grid):
                raise ValueError(f"{source} {arm}: {rows.shape[1]} weights, grid has {len(grid)}")
            mean, half = mean_band(list(rows))
            model_mean = mean if arm == "model" else model_mean
            for row in rows:
                axis.plot(grid, row, style, color=colour, lw=0.6, alpha=0.35)
            axis.plot(grid, mean, style, color=colour, marker="o", ms=4,
                      label=f"{label} ({len(rows)} seeds)")
            if len(rows) >= 3:
                axis.fill_between(grid, mean - half, mean + half, color=colour, alpha=0.12)
        if model_mean is not None and source in reference:
            ref = np.asarray(reference[source], dtype=float)
            best = grid[int(np.argmin(ref))]
            axis.plot(grid, anchored_reference(ref, model_mean), ":", color="black", marker="s",
                      ms=3, label=f"reference learner (shape; w* = {best:g} on the grid)")
        axis.set(xlabel="real weight w (share of each batch)",
                 title=SOURCE_TITLES.get(source, source))
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("log excess risk, last generation")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
