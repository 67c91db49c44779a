"""The report's figures, each written as a PNG from collected records (headless matplotlib).

Figures of single runs are reused where they exist (`report.plots.plot_generations` draws risk
against generation). The decay figure shows the report's own fit (y = E_inf + A n^b with its
seed-bootstrap interval) and the bound's shape as a descriptive envelope, not as a fit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from icl_stl.runs.plots import (  # noqa: E402
    BASELINE_STYLE,
    plot_generations,
    plot_positions,
    wrapped,
)


def risk_figure(records: list[dict], path: Path, title: str) -> Path:
    """Test risk against generation, one line per lambda, band = min..max over seeds."""
    ridge = float(np.mean([r["ridge_risk"] for r in records]))
    zeros = [r["zero_risk"] for r in records if r.get("zero_risk") is not None]
    return plot_generations(records, path, ridge_risk=ridge, title=title,
                            zero_risk=float(np.mean(zeros)) if zeros else None)


def _mean_curve(records: list[dict]) -> dict:
    """Per-position error and band averaged over records (seeds), as plot_positions wants it."""
    return {key: np.mean([r[src] for r in records], axis=0).tolist()
            for key, src in (("per_position", "test_risk_per_position"),
                             ("ci_low", "test_ci_low"), ("ci_high", "test_ci_high"))}


def positions_figure(records: list[dict], baselines: dict, path: Path, title: str) -> Path:
    """Error against position for generation 0 and the last generation of every lambda.

    Generation 0 does not depend on lambda (it trains on S_0 alone), so it is averaged over all
    loops; the last generation is averaged over seeds per lambda.
    """
    first, last = (f(r["generation"] for r in records) for f in (min, max))
    curves = {f"generation {first}": _mean_curve([r for r in records
                                                  if r["generation"] == first])}
    for lam in sorted({r["real_fraction"] for r in records}):
        group = [r for r in records if r["generation"] == last and r["real_fraction"] == lam]
        if last > first:
            curves[f"generation {last}, λ = {lam:g}"] = _mean_curve(group)
    curves.update({k: v for k, v in baselines.items() if k in BASELINE_STYLE})
    return plot_positions(curves, path, title=title,
                          model_keys=tuple(k for k in curves if k.startswith("generation")))


def stability_figure(table: dict[tuple[int, int], dict], path: Path, title: str) -> Path:
    """gamma against generation (one line per n, band = min..max over seeds, dashed: the chaos
    ceiling of the same n) and gamma against n at the last generation, beside the ceiling."""
    ns = sorted({n for n, _ in table})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for j, n in enumerate(ns):
        gens = sorted(g for m, g in table if m == n)
        color = f"C{j % 10}"
        ys = [table[(n, g)]["gamma_mean"] for g in gens]
        lo = [table[(n, g)].get("gamma_mean_min", y) for g, y in zip(gens, ys)]
        hi = [table[(n, g)].get("gamma_mean_max", y) for g, y in zip(gens, ys)]
        left.plot(gens, ys, "o-", ms=3, color=color, label=f"gamma_mean, n = {n}")
        left.fill_between(gens, lo, hi, color=color, alpha=0.12, lw=0)
        chaos = [table[(n, g)].get("chaos_gamma_mean") for g in gens]
        if all(c is not None for c in chaos):
            left.plot(gens, chaos, "x--", ms=4, color=color, lw=1,
                      label=f"chaos ceiling, n = {n}")
    left.set(xlabel="generation i", ylabel="gamma_i (mean over seeds)",
             title="gamma against generation")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    last = min(max(g for m, g in table if m == n) for n in ns)
    for stat, color, label in (("gamma_mean", "C0", "gamma_mean"),
                               ("chaos_gamma_mean", "C3", "chaos ceiling")):
        rows = [table[(n, last)] for n in ns]
        if not all(stat in r for r in rows):
            continue
        ys = np.array([r[stat] for r in rows], dtype=float)
        lo = ys - np.array([r.get(f"{stat}_min", y) for r, y in zip(rows, ys)])
        hi = np.array([r.get(f"{stat}_max", y) for r, y in zip(rows, ys)]) - ys
        right.errorbar(ns, ys, yerr=[lo, hi], fmt="o-", color=color, capsize=3,
                       label=f"{label} (min..max over seeds)")
    right.set(xlabel="n (prompts in S_0)", ylabel=f"gamma at generation {last}",
              title="gamma against n")
    right.set_xscale("log")
    for ax in (left, right):
        values = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
        if values and min(values) > 0:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(wrapped(title, fig, 10), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def augmentation_figure(curves: dict[int, dict], path: Path, title: str) -> Path:
    """Final risk against augmentation size m per n (with m* marked), and m* against n."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for n, c in sorted(curves.items()):
        ms = c["ms"]
        line, = left.plot(ms, [c["risk"][m] for m in ms], "o-", ms=3, label=f"n = {n}")
        left.plot([c["m_star"]], [c["risk"][c["m_star"]]], "*", ms=12, color=line.get_color())
    left.set(xlabel="augmentation size m (extra synthetic prompts)",
             ylabel="final-generation test risk", title="risk against m (★ = m*)")
    left.legend(fontsize=7)
    ns = sorted(curves)
    right.plot(ns, [curves[n]["m_star"] for n in ns], "o-")
    right.set(xlabel="n (prompts in S_0)", ylabel="m* (argmin of risk over m)",
              title="m* against n")
    right.set_xscale("log")
    fig.suptitle(wrapped(title, fig, 10), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def decay_figure(ns: list[int], values: np.ndarray, fit: dict, path: Path, title: str,
                 metric: str, envelope: tuple[np.ndarray, ...] | None = None) -> Path:
    """The decay metric against n: seeds (grey), their mean, the fit E_inf + A n^b (its
    exponent's seed-bootstrap interval in the legend), the bound's shape as a descriptive
    envelope, and n^-1/4.

    values (seeds, len(ns)); fit: p4_core's output (floor, amplitude, estimate, boot data);
    envelope: (grid, low, median, high) of the bound's shape fitted to bootstrap resamples.
    """
    ns_arr = np.asarray(ns, dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in values:
        ax.plot(ns_arr, row, "o", color="0.7", ms=3)
    mean = values.mean(0)
    ax.plot(ns_arr, mean, "o", color="C0", ms=5, label=f"{metric}, mean over seeds")
    grid = np.geomspace(ns_arr.min(), ns_arr.max(), 60)
    floor, amp, slope = float(fit["floor"]), float(fit["amplitude"]), float(fit["estimate"])
    low, high = float(fit["low"]), float(fit["high"])
    interval = f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) and np.isfinite(high) else ""
    ax.plot(grid, floor + amp * grid ** slope, "-", color="C0",
            label=f"E_inf + A n^b, b = {slope:.2f}{interval}")
    if envelope is not None:
        egrid, lo, mid, hi = envelope
        ax.plot(egrid, mid, "--", color="C2", lw=1,
                label="bound's shape (c >= 0) over seed resamples: median, 5-95% (descriptive)")
        ax.fill_between(egrid, lo, hi, color="C2", alpha=0.2, lw=0)
    ref = floor + amp * grid[0] ** slope - floor
    ax.plot(grid, floor + ref * (grid / grid[0]) ** -0.25, ":", color="0.3",
            label="n^-1/4 through the fit's first point")
    ax.set_xscale("log")
    if np.all(values > 0):
        ax.set_yscale("log")
    else:
        ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set(xlabel="n (prompts in S_0)", ylabel=metric, title=wrapped(title, ax.figure))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def in_context_figure(result: dict, path: Path, title: str) -> Path:
    from icl_stl.probes.plots import plot_in_context

    return plot_in_context(result["generations"], path, title=title)


def curves_figure(curves: dict[str, list[dict]], path: Path, title: str,
                  ridge_risk: float | None = None) -> Path:
    """Test risk against generation, one line per labelled set of records (mean over seeds,
    band = min..max over seeds): a filtered or scheduled loop beside its comparison loop."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for j, (label, records) in enumerate(curves.items()):
        by_gen: dict[int, list[float]] = {}
        for r in records:
            by_gen.setdefault(r["generation"], []).append(float(r["test_risk"]))
        gens = sorted(by_gen)
        color = f"C{j % 10}"
        ax.plot(gens, [np.mean(by_gen[g]) for g in gens], marker="o", ms=3, color=color,
                label=label, ls="--" if label.startswith("comparison") else "-")
        if max(len(v) for v in by_gen.values()) > 1:
            ax.fill_between(gens, [min(by_gen[g]) for g in gens],
                            [max(by_gen[g]) for g in gens], color=color, alpha=0.15, lw=0)
    if ridge_risk is not None:
        _, color, style, lw = BASELINE_STYLE["ridge"]
        ax.axhline(ridge_risk, color=color, ls=style, lw=lw, label="ridge (Bayes-optimal)")
    ax.set(xlabel="generation", ylabel="test risk", title=wrapped(title, ax.figure))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
