"""The report's figures, each written as a PNG from collected records (headless matplotlib).

Figures of single runs are reused where they exist (`report.plots.plot_generations` draws risk
against generation). The decay figure shows the report's own fit (y = E_inf + A n^b with its
seed-bootstrap interval) and the bound's shape as a descriptive envelope, not as a fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from icl_stl.report.position_figure import position_change, positions_figure  # noqa: E402
from icl_stl.report.stats import seed_bootstrap  # noqa: E402
from icl_stl.runs.plots import (  # noqa: E402
    BASELINE_STYLE,
    plot_generations,
    wrapped,
)
from icl_stl.theory import fit_bound  # noqa: E402

# Settings named first when a short name is built: the ones a reader compares groups by.
__all__ = ["augmentation_figure", "bound_envelope", "curves_figure", "decay_figure", "group_title",
           "in_context_figure", "position_change", "positions_figure", "risk_figure",
           "short_name", "short_names", "stability_figure"]

SALIENT = ("loop.learner", "loop.labeller", "loop.filter", "loop.verifier_n_real",
           "loop.real_schedule", "loop.real_schedule_floor", "task.n_tasks", "loop.synthetic")
# Words for a setting's value; any other setting reads "<last part of its key> <value>".
WORDS = {
    "loop.learner": {"transformer": "transformer", "gaussian_prior": "reference learner"},
    "loop.labeller": {"model": "model labels", "oracle": "oracle labels"},
    "loop.filter": {"verifier": "verifier filter", "confidence": "confidence filter",
                    "none": "no filter"},
    "loop.verifier_n_real": "verifier of {} real prompts",
    "loop.real_schedule": "{} schedule of λ",
    "loop.real_schedule_floor": "floor {}",
    "task.n_tasks": "pool of {} tasks",
}
# A config label is "key=value, key=value"; a value may itself hold ", " (a JSON list), so a
# label is split only before the next dotted key.
_SPLIT = re.compile(r", (?=[A-Za-z_][\w]*(?:\.[\w]+)*=)")


def parse_config(config: str) -> dict[str, str]:
    """A `collect.label_configs` label back into its settings, in order."""
    return dict(part.split("=", 1) for part in _SPLIT.split(config) if "=" in part)


def _words(key: str, value: str) -> str:
    word = WORDS.get(key)
    if isinstance(word, dict) and value in word:
        return word[value]
    if isinstance(word, str):
        return word.format(value)
    return f"{key.rsplit('.', 1)[-1].replace('_', ' ')} {value}"


def short_names(configs: Iterable[str]) -> dict[str, str]:
    """Each config label -> a short name in words from the fewest settings that still tell
    the groups apart: settings are tried salient ones first, and one is kept only if it splits
    groups the kept ones do not (loop.init=from_scratch adds nothing beside the reference
    learner). A setting a label lacks is at its default, which is a value too."""
    labels = sorted(set(configs))
    parsed = {c: parse_config(c) for c in labels}
    keys = [k for k in SALIENT if any(k in p for p in parsed.values())]
    keys += sorted({k for p in parsed.values() for k in p} - set(keys))
    kept: list[str] = []

    def partition(ks: list[str]) -> int:
        return len({tuple(parsed[c].get(k) for k in ks) for c in labels})

    for key in keys:
        if partition(kept + [key]) > partition(kept):
            kept.append(key)
    return {c: ", ".join(_words(k, parsed[c][k]) for k in kept if k in parsed[c])
            for c in labels}


def short_name(label: str, among: Iterable[str]) -> str:
    """`label`'s short name among the other config labels of a report (`short_names`)."""
    return short_names([*among, label])[label]


def group_title(name: str, lambdas: Iterable[float] = (), n: int | None = None,
                **fields: object) -> str:
    """"transformer, λ = 0 vs 0.5, n = 10,000": a figure's title in words."""
    lams = sorted(set(lambdas))
    parts = [name] if name else []
    if lams:
        parts.append("λ\u00a0=\u00a0" + (" vs " if len(lams) == 2 else ", ").join(f"{lam:g}"
                                                                       for lam in lams))
    if n is not None:
        parts.append(f"n\u00a0=\u00a0{n:,}")
    parts += [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()]
    return ", ".join(parts)


def risk_figure(records: list[dict], path: Path, title: str) -> Path:
    """Excess test risk over ridge against generation per lambda, and its change since
    generation 0 (runs.plots.plot_generations: mean, band +- sd over seeds)."""
    ridge = float(np.mean([r["ridge_risk"] for r in records]))
    zeros = [r["zero_risk"] for r in records if r.get("zero_risk") is not None]
    return plot_generations(records, path, ridge_risk=ridge, title=title,
                            zero_risk=float(np.mean(zeros)) if zeros else None)


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


def bound_envelope(ns: list[int], values: np.ndarray, weights: np.ndarray, bootstrap_seed: int,
                   replicates: int = 200) -> tuple[np.ndarray, ...]:
    """The bound's shape fitted (c >= 0) to seed-bootstrap resamples of the mean curve:
    (grid of n, 5%, 50% and 95% of the fitted curves), for the decay figure. Descriptive: the
    three columns of the bound are nearly collinear, so no coefficient is read from it."""
    rng = np.random.default_rng(bootstrap_seed + 1)
    idx = seed_bootstrap(values.shape[0], replicates, rng)
    grid = np.geomspace(min(ns), max(ns), 60)
    curves = []
    for row in idx:
        fit = fit_bound(ns, values[row].mean(0), relative=False, weights=weights)
        curves.append(np.asarray(fit.predict(grid), dtype=float))
    low, mid, high = np.quantile(np.array(curves), [0.05, 0.5, 0.95], axis=0)
    return grid, low, mid, high


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
