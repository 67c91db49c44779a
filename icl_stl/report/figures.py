"""The report's figures, each written as a PNG from collected records (headless matplotlib).

Figures of single runs are reused where they exist: `report.plots.plot_generations` draws risk
against generation, `probes.plots.plot_decay` the decay fit with the bound.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icl_stl.report.plots import BASELINE_STYLE, plot_generations, plot_positions  # noqa: E402
from icl_stl.theory import fit_power_law  # noqa: E402


def risk_figure(records: list[dict], path: Path, title: str) -> Path:
    """Test risk against generation, one line per lambda, band = min..max over seeds."""
    ridge = float(np.mean([r["ridge_risk"] for r in records]))
    return plot_generations(records, path, ridge_risk=ridge, title=title)


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
    """gamma against generation (one line per n) and gamma against n at the last generation."""
    ns = sorted({n for n, _ in table})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for n in ns:
        gens = sorted(g for m, g in table if m == n)
        for stat, style in (("gamma_mean", "o-"), ("gamma_max", "s:")):
            ys = [table[(n, g)][stat] for g in gens]
            lo = [table[(n, g)].get(f"{stat}_min", y) for g, y in zip(gens, ys)]
            hi = [table[(n, g)].get(f"{stat}_max", y) for g, y in zip(gens, ys)]
            line, = left.plot(gens, ys, style, ms=3, label=f"{stat}, n = {n}")
            left.fill_between(gens, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
    left.set(xlabel="generation i", ylabel="gamma_i", title="gamma against generation")
    last = min(max(g for m, g in table if m == n) for n in ns)
    for stat, color in (("gamma_mean", "C0"), ("gamma_max", "C1")):
        ys = np.array([table[(n, last)][stat] for n in ns], dtype=float)
        sd = np.array([table[(n, last)].get(f"{stat}_std") or 0.0 for n in ns], dtype=float)
        right.errorbar(ns, ys, yerr=sd, fmt="o", color=color, capsize=3, label=f"{stat} ± sd")
        if len(ns) >= 3 and np.all(ys > 0):
            fit = fit_power_law(ns, ys)
            grid = np.geomspace(min(ns), max(ns), 50)
            right.plot(grid, fit.predict(grid), "-", color=color, lw=1,
                       label=f"slope {fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]")
    right.set(xlabel="n (prompts in S_0)", ylabel=f"gamma at generation {last}",
              title="gamma against n")
    right.set_xscale("log")
    for ax in (left, right):
        values = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
        if values and min(values) > 0:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def decay_figure(decay: dict, path: Path) -> Path:
    """The decay probe's own figure: metric against n, power-law fit, bound fit, n^-1/4."""
    from icl_stl.probes.plots import plot_decay

    return plot_decay(decay, path)


def in_context_figure(result: dict, path: Path, title: str) -> Path:
    from icl_stl.probes.plots import plot_in_context

    return plot_in_context(result["generations"], path, title=title)
