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

    `curves` maps a name to `evaluation.summarise` output (per_position, ci_low, ci_high). A
    curve without a per-position list (e.g. a mean over no records, a bare float) is left out
    rather than failing the whole figure.
    """
    curves = {name: c for name, c in curves.items() if _is_curve(c)}
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


def _is_curve(c) -> bool:
    """Whether `c` holds a per-position curve with its band, all of one length >= 1."""
    if not isinstance(c, dict):
        return False
    try:
        lengths = {np.ndim(c[k]) == 1 and len(c[k]) for k in ("per_position", "ci_low", "ci_high")}
    except (KeyError, TypeError):
        return False
    return len(lengths) == 1 and bool(lengths.pop())


def seed_band(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (0 for one seed)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def zoom_to(ax, values: list[float], reference: float | None = 0.0) -> None:
    """Limits around the plotted values so their changes fill the axis: a log axis when they
    are positive and span a decade or more, else a linear one that reaches down to `reference`
    (ridge, an excess of 0) only when that is at most one data range away (the data would
    otherwise be squashed into a sliver above it)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    if lo > 0 and hi / lo >= 10:
        readable_log_axis(ax, finite)
        return
    span = hi - lo
    if reference is not None and lo - span <= reference <= hi + span:
        lo, hi = min(lo, reference), max(hi, reference)
        span = hi - lo
    pad = 0.08 * span if span > 0 else 0.05 * max(abs(hi), 1e-3)
    ax.set_ylim(lo - pad, hi + pad)


def _reference_lines(ax, lines: list[tuple[float, str, str]]) -> None:
    """Draw each (value, style key, label) inside the axis; one outside it is named in the
    legend with its value and side instead (a proxy entry, nothing drawn on the axis)."""
    low, high = ax.get_ylim()
    for value, name, label in lines:
        _, color, style, lw = BASELINE_STYLE[name]
        if low <= value <= high:
            ax.axhline(value, color=color, ls=style, lw=lw, label=label)
        else:
            side = "below" if value < low else "above"
            ax.plot([], [], color=color, ls=style, lw=lw,
                    label=f"{label} at {value:.3g}, {side} the axis")


def _by_loop(records: list[dict], metric: str) -> dict[tuple, dict[int, float]]:
    """(lambda, seed, n, augment, member) -> generation -> metric: one entry per loop."""
    loops: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.get(metric) is not None:
            key = (r["real_fraction"], r.get("seed"), r.get("n"), r.get("augment", 0),
                   r.get("run"))
            loops[key][r["generation"]] = float(r[metric])
    return loops


def plot_generations(records: list[dict], path: Path, metric: str = "test_risk",
                     ridge_risk: float | None = None, title: str = "",
                     zero_risk: float | None = None) -> Path:
    """`metric` against generation, one line per lambda: mean over seeds, band +- one standard
    deviation over seeds (none with one seed). Left: the level, as the excess over ridge when
    the metric is the test risk and ridge is known (each record's own `ridge_risk`, measured on
    the same test prompts, else `ridge_risk`), on an axis zoomed to the lines; ridge (0) and the
    zero predictor are drawn when inside it and named with their value otherwise. Right: the
    change since each loop's first generation, paired per loop, so seed-to-seed offsets that
    generation 0 already had cancel and the drift shows alone."""
    excess = metric == "test_risk" and (ridge_risk is not None or
                                        any(r.get("ridge_risk") is not None for r in records))
    rows = [dict(r, _y=float(r[metric]) - (r.get("ridge_risk", ridge_risk) if excess else 0.0))
            for r in records if r.get(metric) is not None]
    loops = _by_loop(rows, "_y")
    lambdas = sorted({key[0] for key in loops})
    colours = lambda_colours(lambdas)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    level: list[float] = []
    seeds = max((sum(1 for key in loops if key[0] == lam) for lam in lambdas), default=0)
    for lam in lambdas:
        mine = [v for key, v in loops.items() if key[0] == lam]
        gens = sorted({g for v in mine for g in v})
        for ax, shift in ((left, False), (right, True)):
            stats = [seed_band([v[g] - (v[min(v)] if shift else 0.0) for v in mine if g in v])
                     for g in gens]
            mean = np.array([m for m, _ in stats])
            sd = np.array([s for _, s in stats])
            ax.plot(gens, mean, "o-", ms=3, color=colours[lam], label=f"λ = {lam:g}")
            if seeds > 1:
                ax.fill_between(gens, mean - sd, mean + sd, color=colours[lam], alpha=0.18,
                                lw=0)
            if not shift:
                level += list(mean - sd) + list(mean + sd)
    name = metric.replace("_", " ")
    band = (f"mean ± sd over {seeds} seeds" if seeds > 1 else "1 seed")
    if excess:
        zoom_to(left, level)
        ref = ridge_risk if ridge_risk is not None else float(np.mean(
            [r["ridge_risk"] for r in records if r.get("ridge_risk") is not None]))
        lines = [(0.0, "ridge", "ridge (Bayes-optimal)")]
        if zero_risk is not None:
            lines.append((zero_risk - ref, "zero", "zero predictor"))
        _reference_lines(left, lines)
        left.set(ylabel=f"excess {name} (test − ridge)", title="excess risk over ridge")
    else:
        zoom_to(left, level, reference=None)
        left.set(ylabel=name, title=name)
    right.axhline(0.0, color="0.5", lw=0.8)
    right.set(ylabel=f"change in {name} since generation 0",
              title="drift: change since generation 0 (same loop)")
    for ax in (left, right):
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # The lambdas' key once, on the right (its lines start together at 0, leaving a corner
    # free); the left names only its reference lines, so neither legend covers the bands.
    right.legend(fontsize=8, title=band, title_fontsize=8, loc="upper left")
    refs = [h for h in left.get_lines() if not h.get_label().startswith(("λ", "_"))]
    if refs:
        left.legend(handles=refs, fontsize=8, loc="best")
    if title:
        fig.suptitle(wrapped(title, fig), fontsize=12)
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
