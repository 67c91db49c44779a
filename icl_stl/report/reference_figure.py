"""The reproduction's reference figure: the transformer beside the exactly solvable learner.

Left: the transformer's excess test risk over ridge against generation per lambda (mean, band
+- sd over seeds) at the collapse part's n, with the reference learner's at the same n dashed.
Right: the reference learner's drift of its fitted task mean, ||mu_i - mu*||^2, against
generation per lambda at the smallest n (where it is largest), measured (mean with its 95%
t-interval over seeds, their count in the legend: with d degrees of freedom a seed's drift is
too skewed for +-sd bars, and a few seeds scatter far from the mean) against the closed form of
icl_stl.theory for the loop's default real source (`mean_drift(..., real_source="reuse")`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from icl_stl.runs.plots import lambda_colours, plt, zoom_to
from icl_stl.theory import mean_drift


def mean_sd_by(records: list[dict], metric: str, n: int) -> dict[float, tuple]:
    """lambda -> (generations, means, sds) of `metric` over seeds, for records at this n."""
    values: dict[float, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("n") == n and r.get("augment", 0) == 0 and r.get(metric) is not None:
            values[r["real_fraction"]][r["generation"]].append(r[metric])
    out = {}
    for lam, by_gen in sorted(values.items()):
        gens = sorted(by_gen)
        out[lam] = (np.array(gens), np.array([np.mean(by_gen[g]) for g in gens]),
                    np.array([np.std(by_gen[g], ddof=1) if len(by_gen[g]) > 1 else 0.0
                              for g in gens]))
    return out


def mean_interval_by(records: list[dict], metric: str, n: int) -> dict[float, tuple]:
    """lambda -> (generations, means, half-widths of the 95% t-interval of the mean, seeds)."""
    out = {}
    for lam, (g, m, s) in mean_sd_by(records, metric, n).items():
        count = len({r["seed"] for r in records if r.get("n") == n
                     and r["real_fraction"] == lam and r.get(metric) is not None})
        half = (stats.t.ppf(0.975, count - 1) * s / np.sqrt(count) if count > 1
                else np.zeros_like(s))
        out[lam] = (g, m, half, count)
    return out


def plot_reference(transformer_summary: Path, reference_summary: Path, path: Path,
                   drift_summary: Path | None = None) -> Path:
    """The figure from the parts' summary.json files; the drift panel reads `drift_summary`
    (more seeds of the reference learner at its smallest n) when given, else
    `reference_summary`."""
    transformer = json.loads(Path(transformer_summary).read_text())
    reference = json.loads(Path(reference_summary).read_text())
    t_records, r_records = transformer["generations"], reference["generations"]
    d_records = (json.loads(Path(drift_summary).read_text())["generations"]
                 if drift_summary is not None else r_records)
    settings = reference["settings"]
    d, w_var = settings["task"]["d"], settings["task"]["w_scale"] ** 2
    n_collapse = max(r["n"] for r in t_records)
    n_small = min(r["n"] for r in d_records)
    lambdas = sorted({r["real_fraction"] for r in t_records + r_records + d_records})
    colours = lambda_colours(lambdas)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))

    # Left: the excess over ridge of the same test prompts, so the transformer's drift is not
    # flattened by an axis that must also hold ridge's level.
    for r in t_records + r_records:
        if r.get("excess_risk") is None and r.get("test_risk") is not None:
            r["excess_risk"] = r["test_risk"] - r["ridge_risk"]
    level = []
    t_seeds = len({r["seed"] for r in t_records})
    for lam, (g, m, s) in mean_sd_by(t_records, "excess_risk", n_collapse).items():
        left.plot(g, m, color=colours[lam], marker="o", ms=3)
        left.fill_between(g, m - s, m + s, color=colours[lam], alpha=0.18, lw=0)
        level += list(m - s) + list(m + s)
    for lam, (g, m, _) in mean_sd_by(r_records, "excess_risk", n_collapse).items():
        left.plot(g, m, color=colours[lam], ls="--", lw=1)
        level += list(m)
    zoom_to(left, level)
    left.axhline(0.0, color="k", ls="--", lw=1.3, label="ridge (Bayes)")
    left.plot([], [], color="0.4", marker="o", ms=3, label="transformer: mean, band ± sd")
    left.plot([], [], color="0.4", ls="--", lw=1, label="reference learner: mean (on ridge)")
    band = f"{t_seeds} seeds" if t_seeds != 1 else "1 seed"
    left.set(xlabel="generation", ylabel="excess test risk (test − ridge)",
             title=f"excess risk, n\u00a0=\u00a0{n_collapse:,}, transformer over {band}")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.legend(fontsize=7, loc="upper left")

    seeds = 0
    for lam, (g, m, half, count) in mean_interval_by(d_records, "prior_mean_err2",
                                                     n_small).items():
        seeds = max(seeds, count)
        right.errorbar(g, m, yerr=half, color=colours[lam], marker="o", ms=3, ls="none",
                       capsize=2)
        closed_form = mean_drift(int(g.max()), d, n_small, lam, w_var, real_source="reuse")
        right.plot(g, closed_form[g], color=colours[lam], lw=1.2, label=f"λ = {lam:g}")
    right.errorbar([], [], yerr=[], color="0.4", marker="o", ms=3, ls="none", capsize=2,
                   label=f"measured: mean of {seeds} seeds, 95% t-interval")
    right.plot([], [], color="0.4", lw=1.2, label="closed form (icl_stl.theory)")
    right.set(xlabel="generation", ylabel="||mu_i - mu*||^2",
              title=f"reference learner's drift, n\u00a0=\u00a0{n_small:,}, {seeds} seeds")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
