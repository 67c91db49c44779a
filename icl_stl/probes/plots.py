"""Figures of the probes: gamma against generation, risk against n, loss change against position.

matplotlib runs headless (Agg); every function writes a PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _log_if_positive(ax, values: list[float], axis: str = "y") -> None:
    """Log scale when every plotted value is positive (an exact 0, e.g. identical twins, is not)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if finite and min(finite) > 0:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def band_plot(curves: list[dict], path: Path, *, xlabel: str, ylabel: str,
              title: str = "") -> Path:
    """Lines with shaded bands; each curve: label, style, x, y, and optional low/high."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    plotted: list[float] = []
    for c in curves:
        ys = [np.nan if v is None else v for v in c["y"]]
        line, = ax.plot(c["x"], ys, c.get("style", "o-"), label=c["label"], ms=3,
                        color=c.get("color"))
        plotted += [v for v in c["y"] if v is not None]
        if c.get("low") is not None and c.get("high") is not None:
            low = [np.nan if v is None else v for v in c["low"]]
            high = [np.nan if v is None else v for v in c["high"]]
            ax.fill_between(c["x"], low, high, color=line.get_color(), alpha=0.15, lw=0)
    _log_if_positive(ax, plotted)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_decay(result: dict, path: Path) -> Path:
    """Fitted metric against n on log-log axes: seeds, means, power law, bound, n^-1/4.

    A second panel shows gamma against n when the decay probe also ran twins.
    """
    metric = result["metric"]
    panels = [metric] + (["gamma_mean"] if "gamma_mean" in result["fits"] else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
    for ax, name in zip(axes[0], panels):
        ns = np.array(result["ns"], dtype=float)
        rows = [result["per_n"][str(int(n))][name] for n in ns]
        for n, row in zip(ns, rows):
            seeds = [v for v in row["per_seed"] if v is not None]
            ax.plot([n] * len(seeds), seeds, ".", color="0.6", ms=4)
        mean = np.array([np.nan if r["mean"] is None else r["mean"] for r in rows])
        std = np.array([0.0 if r["std"] is None else r["std"] for r in rows])
        n_seeds = max(len([v for v in r["per_seed"] if v is not None]) for r in rows)
        if n_seeds > 1:
            ax.errorbar(ns, mean, yerr=std, fmt="o", color="C0", capsize=3,
                        label=f"{name} (mean ± sd over {n_seeds} seeds)")
        else:  # one seed has no spread to draw
            ax.plot(ns, mean, "o", color="C0", label=f"{name} (one seed)")
        fit = result["fits"].get(name, {})
        grid = np.geomspace(ns.min(), ns.max(), 100)
        if fit.get("power_law"):
            pl = fit["power_law"]
            line = pl["prefactor"] * grid ** pl["slope"]
            ax.plot(grid, line, "-", color="C1",
                    label=f"power law: slope {pl['slope']:.3f} "
                          f"[{pl['ci_low']:.3f}, {pl['ci_high']:.3f}]")
            # n^-1/4 through the fitted line at the geometric middle of the grid.
            mid = float(np.sqrt(ns.min() * ns.max()))
            anchor = pl["prefactor"] * mid ** pl["slope"]
            ax.plot(grid, anchor * (grid / mid) ** -0.25, ":", color="0.3", label="n^-1/4")
        if fit.get("bound"):
            b = fit["bound"]
            log_n = np.log(grid)
            ax.plot(grid, b["c1"] * log_n**2 / grid + b["c2"] * log_n / np.sqrt(grid)
                    + b["c3"] * grid**-0.25, "--", color="C2",
                    label=f"bound fit c = ({b['c1']:.2g}, {b['c2']:.2g}, {b['c3']:.2g})")
        ax.set_xscale("log")
        _log_if_positive(ax, [v for v in mean if np.isfinite(v)])
        ax.set(xlabel="n (prompts in S_0)", ylabel=f"final-generation {name}")
        ax.legend(fontsize=7)
    verdict = result.get("verdict")
    fig.suptitle(f"error decay: {metric}, verdict {verdict}" if verdict else "error decay",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_in_context(per_generation: list[dict], path: Path, title: str = "") -> Path:
    """Mean |loss change| against position, one line per generation, with fitted lines."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("viridis")
    count = max(1, len(per_generation) - 1)
    for j, r in enumerate(per_generation):
        color = cmap(j / count)
        pos = np.array(r["positions"], dtype=float)
        mean = np.array(r["abs_change"], dtype=float)
        label = f"gen {r['generation']}" + (f", n = {r['n']}" if r.get("n_values", 1) > 1 else "")
        if r.get("linear_fit"):
            label += f": slope {r['linear_fit']['slope']:.3g}"
        if r.get("power_law"):
            label += f", exponent {r['power_law']['slope']:.2f}"
        ax.plot(pos, mean, "o-", color=color, ms=3, label=label)
        if r.get("abs_change_std") is not None:
            std = np.array(r["abs_change_std"], dtype=float)
            ax.fill_between(pos, mean - std, mean + std, color=color, alpha=0.12, lw=0)
        line = r.get("linear_fit")
        if line:
            ax.plot(pos, line["intercept"] + line["slope"] * pos, "--", color=color, lw=0.8)
    ax.set(xlabel="position j (pair 1 replaced by a flipped example)",
           ylabel="mean |loss(P') - loss(P)| at position j", title=title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
