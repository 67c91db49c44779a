"""Plots written next to every run: error against position, risk against generation.

matplotlib runs headless (Agg); every function writes a PNG and returns its path.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASELINE_STYLE = {"least_squares": ("least squares", "C1"), "ridge": ("ridge (Bayes)", "C2"),
                  "averaging": ("averaging", "C3"), "knn": ("3-NN", "C4"),
                  "zero": ("zero", "0.5")}


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
        label, color = BASELINE_STYLE.get(name, (name, shades.get(name)))
        xs = range(1, len(c["per_position"]) + 1)
        style = "-" if name in model_keys or name not in BASELINE_STYLE else "--"
        lw = 2.2 if style == "-" else 1.2
        ax.plot(xs, c["per_position"], style, label=label, color=color, lw=lw)
        ax.fill_between(xs, c["ci_low"], c["ci_high"], color=color, alpha=0.15, lw=0)
    if d is not None:
        ax.axvline(d, color="0.7", ls=":", lw=1)
    ax.set(xlabel="in-context examples (position j)", ylabel="squared error / d", title=title)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_generations(records: list[dict], path: Path, metric: str = "test_risk",
                     ridge_risk: float | None = None, title: str = "") -> Path:
    """`metric` against generation, one line per lambda (mean over seeds, band = min..max)."""
    by_lambda: dict[float, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get(metric) is not None:
            by_lambda[r["real_fraction"]][r["generation"]].append(r[metric])
    fig, ax = plt.subplots(figsize=(6, 4))
    for lam in sorted(by_lambda):
        gens = sorted(by_lambda[lam])
        vals = [by_lambda[lam][g] for g in gens]
        mean = [sum(v) / len(v) for v in vals]
        line, = ax.plot(gens, mean, "o-", label=f"λ = {lam:g}", ms=3)
        if any(len(v) > 1 for v in vals):
            ax.fill_between(gens, [min(v) for v in vals], [max(v) for v in vals],
                            color=line.get_color(), alpha=0.2, lw=0)
    if ridge_risk is not None:
        ax.axhline(ridge_risk, color="C2", ls="--", lw=1, label="ridge (Bayes-optimal)")
    ax.set(xlabel="generation", ylabel=metric.replace("_", " "), title=title)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
