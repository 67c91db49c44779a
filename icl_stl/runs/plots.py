"""Plots written next to every run: error against position, risk against generation.

matplotlib runs headless (Agg); every function writes a PNG and returns its path.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator  # noqa: E402

# Baselines: (label, colour, line style, width). Ridge is black, a colour no model or lambda
# line uses; least squares is dotted and drawn above ridge, which it equals once k > d without
# noise, so both stay visible.
BASELINE_STYLE = {"least_squares": ("least squares", "C1", ":", 2.4),
                  "ridge": ("ridge (Bayes)", "k", "--", 1.3),
                  "averaging": ("averaging", "C3", "--", 1.2), "knn": ("3-NN", "C4", "--", 1.2),
                  "zero": ("zero", "0.5", "-.", 1.2)}


def wrapped(title: str, fig, fontsize: float = 12.0) -> str:
    """A long title (a group's full configuration) on as many lines as fit the figure's width
    instead of cut off at its edge (a character is about 0.6 of the font size wide)."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.62 * fontsize)))
    return textwrap.fill(title, chars, break_on_hyphens=False) if title else title


def readable_log_axis(ax, values: list[float], axis: str = "y") -> None:
    """Log scale with every tick labelled in plain numbers: over less than ~1.5 decades the
    default labels only powers of ten, so values near 1.4 could not be read."""
    finite = [v for v in values if v is not None and np.isfinite(v) and v > 0]
    if not finite:
        return
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_formatter(FormatStrFormatter("%g"))
    if np.log10(max(finite) / min(finite)) < 1.5:
        target.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
        target.set_minor_formatter(FormatStrFormatter("%g"))


def lambda_colours(lambdas: list[float]) -> dict[float, tuple]:
    """One viridis shade per lambda, none of them a baseline's colour."""
    ordered = sorted(lambdas)
    return {lam: plt.cm.viridis(0.1 + 0.75 * i / max(1, len(ordered) - 1))
            for i, lam in enumerate(ordered)}


def plot_positions(curves: dict[str, dict], path: Path, title: str = "", d: int | None = None,
                   model_keys: tuple[str, ...] = ()) -> Path:
    """Error against in-context position for models and baselines, with 95% bands (Garg Fig. 2).

    `curves` maps a name to `evaluation.summarise` output (per_position, ci_low, ci_high).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    models = [n for n in curves if n not in BASELINE_STYLE]
    # Models get shades of one colormap so they never share a baseline's colour.
    shades = {n: plt.cm.Blues(0.55 + 0.4 * i / max(1, len(models) - 1)) for i, n in
              enumerate(models)}
    for name, c in curves.items():
        label, color, style, lw = BASELINE_STYLE.get(name, (name, shades.get(name), "-", 2.2))
        xs = range(1, len(c["per_position"]) + 1)
        ax.plot(xs, c["per_position"], style, label=label, color=color, lw=lw,
                zorder=3 if name == "least_squares" else 2)
        ax.fill_between(xs, c["ci_low"], c["ci_high"], color=color, alpha=0.15, lw=0)
    if d is not None:
        ax.axvline(d, color="0.7", ls=":", lw=1)
    ax.set(xlabel="in-context examples (position j)", ylabel="squared error / d",
           title=wrapped(title, ax.figure))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_generations(records: list[dict], path: Path, metric: str = "test_risk",
                     ridge_risk: float | None = None, title: str = "",
                     zero_risk: float | None = None) -> Path:
    """`metric` against generation, one line per lambda (mean over seeds; with several seeds a
    band from min to max), beside ridge and the zero predictor."""
    by_lambda: dict[float, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get(metric) is not None:
            by_lambda[r["real_fraction"]][r["generation"]].append(r[metric])
    colours = lambda_colours(list(by_lambda))
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted: list[float] = []
    for lam in sorted(by_lambda):
        gens = sorted(by_lambda[lam])
        vals = [by_lambda[lam][g] for g in gens]
        mean = [sum(v) / len(v) for v in vals]
        seeds = max(len(v) for v in vals)
        label = f"λ = {lam:g}" + (f" (mean of {seeds} seeds, band min..max)" if seeds > 1 else "")
        ax.plot(gens, mean, "o-", label=label, ms=3, color=colours[lam])
        plotted += [x for v in vals for x in v]
        if seeds > 1:
            ax.fill_between(gens, [min(v) for v in vals], [max(v) for v in vals],
                            color=colours[lam], alpha=0.2, lw=0)
    for value, name, label in ((ridge_risk, "ridge", "ridge (Bayes-optimal)"),
                               (zero_risk, "zero", "zero predictor")):
        if value is not None:
            _, color, style, lw = BASELINE_STYLE[name]
            ax.axhline(value, color=color, ls=style, lw=lw, label=label)
            plotted.append(value)
    ax.set(xlabel="generation", ylabel=metric.replace("_", " "),
           title=wrapped(title, ax.figure))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    readable_log_axis(ax, plotted)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_calibration(curves: dict[str, dict], path: Path, title: str = "") -> Path:
    """The Gaussian head's calibration: predicted variance (solid) and realised squared error
    (dashed) against position, one colour per model. `curves` maps a name to
    `evaluation.head_calibration` output (head_var_per_position, head_sq_error_per_position)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, c) in enumerate(curves.items()):
        xs = range(1, len(c["head_var_per_position"]) + 1)
        color = plt.cm.Blues(0.55 + 0.4 * i / max(1, len(curves) - 1))
        ax.plot(xs, c["head_var_per_position"], "o-", color=color, ms=3,
                label=f"{name}: predicted variance")
        ax.plot(xs, c["head_sq_error_per_position"], "s--", color=color, ms=3,
                label=f"{name}: realised squared error")
    ax.set(xlabel="in-context examples (position j)", ylabel="mean over fresh prompts",
           title=wrapped(title, ax.figure))
    readable_log_axis(ax, [v for c in curves.values() for key in ("head_var_per_position",
                                                                  "head_sq_error_per_position")
                           for v in c[key]])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def calibration_table(calibration: dict) -> str:
    """Markdown table of `evaluation.head_calibration` output, one row per position."""
    rows = ["| position | predicted variance | realised squared error | ratio |",
            "| ---: | ---: | ---: | ---: |"]
    for j, (v, e, r) in enumerate(zip(calibration["head_var_per_position"],
                                      calibration["head_sq_error_per_position"],
                                      calibration["head_var_ratio_per_position"]), start=1):
        rows.append(f"| {j} | {v:.4g} | {e:.4g} | {r:.3f} |")
    return "\n".join(rows) + "\n"
