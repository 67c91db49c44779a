"""The version-2 figure: each loop's excess risk beside its matched oracle-labelled control.

Left: excess risk over the Bayes predictor against generation, per lambda, mean over the loops
read (solid: labelled by their own model; dashed: the same seeds' oracle-labelled loops), band:
the 90% t-interval of the mean over seeds. Right: the log contrast log(E / E_oracle) per
generation with its interval: the statistic P1 and P2 (version 2) are judged on.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator
from scipy import stats

from icl_stl.report.matched import MatchedLoop
from icl_stl.runs.plots import lambda_colours, plt


def mean_band(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds and the half-width of its 90% t-interval (0 with one seed)."""
    mat = np.array(rows, dtype=float)
    mean = mat.mean(0)
    if len(rows) < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.t.ppf(0.95, len(rows) - 1) * mat.std(0, ddof=1) / np.sqrt(len(rows))


def draw(loops: list[MatchedLoop], path: Path, title: str) -> Path:
    """Draw the figure of these loops (one setting, any lambdas) to `path`."""
    by_lambda: dict[float, list[MatchedLoop]] = defaultdict(list)
    for loop in loops:
        by_lambda[loop.real_fraction].append(loop)
    colours = lambda_colours(sorted(by_lambda))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for lam in sorted(by_lambda):
        group = by_lambda[lam]
        gens = sorted(set.intersection(*(set(lp.generations) for lp in group)))

        def pick(lp: MatchedLoop, values: np.ndarray, gens: list[int] = gens) -> list[float]:
            return [values[lp.generations.index(g)] for g in gens]

        colour = colours[lam]
        for values, style, label in (
                ([pick(lp, lp.excess) for lp in group], "-", f"λ = {lam:g}, model labels"),
                ([pick(lp, lp.control) for lp in group], "--", f"λ = {lam:g}, oracle labels")):
            mean, half = mean_band(values)
            left.plot(gens, mean, style, color=colour, marker="o", ms=3,
                      label=f"{label} ({len(group)} seeds)")
            left.fill_between(gens, mean - half, mean + half, color=colour, alpha=0.15)
        mean, half = mean_band([pick(lp, lp.contrast) for lp in group])
        right.plot(gens, mean, "-", color=colour, marker="o", ms=3, label=f"λ = {lam:g}")
        right.fill_between(gens, mean - half, mean + half, color=colour, alpha=0.15)
    left.set(xlabel="generation", ylabel="excess risk over the Bayes predictor",
             title="each loop beside its oracle-labelled control", yscale="log")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.axhline(0.0, color="grey", lw=0.8)
    right.set(xlabel="generation", ylabel="log(E / E_oracle)",
              title="log contrast against the matched control")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
