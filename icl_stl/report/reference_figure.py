"""The reproduction's reference figure: the transformer beside the exactly solvable learner.

Left: the transformer's test risk against generation per lambda (mean and sd over seeds) at
the collapse part's n, with the reference learner's risk at the same n dashed. Right: the
reference learner's drift of its fitted task mean, ||mu_i - mu*||^2, against generation per
lambda at the smallest n (where it is largest), measured (mean and standard error over seeds:
with d degrees of freedom a seed's drift is too skewed for +-sd bars) against the closed form
of icl_stl.theory for the loop's default real source (`mean_drift(..., real_source="reuse")`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from icl_stl.runs.plots import lambda_colours, plt
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


def plot_reference(transformer_summary: Path, reference_summary: Path, path: Path) -> Path:
    transformer = json.loads(Path(transformer_summary).read_text())
    reference = json.loads(Path(reference_summary).read_text())
    t_records, r_records = transformer["generations"], reference["generations"]
    settings = reference["settings"]
    d, w_var = settings["task"]["d"], settings["task"]["w_scale"] ** 2
    n_collapse = max(r["n"] for r in t_records)
    n_small = min(r["n"] for r in r_records)
    lambdas = sorted({r["real_fraction"] for r in t_records + r_records})
    colours = lambda_colours(lambdas)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))

    for lam, (g, m, s) in mean_sd_by(t_records, "test_risk", n_collapse).items():
        left.errorbar(g, m, yerr=s, color=colours[lam], marker="o", ms=3, capsize=2,
                      label=f"transformer, λ={lam:g}")
    for lam, (g, m, _) in mean_sd_by(r_records, "test_risk", n_collapse).items():
        left.plot(g, m, color=colours[lam], ls="--", lw=1)
    ridge = np.mean([r["ridge_risk"] for r in t_records if r["generation"] == 0])
    left.axhline(ridge, color="k", ls="--", lw=1.3, label="ridge (Bayes)")
    left.set(xlabel="generation", ylabel="test risk",
             title=f"test risk, n = {n_collapse:,} (dashed: reference learner, on ridge)")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.legend(fontsize=7)

    seeds = len({r["seed"] for r in r_records})
    for lam, (g, m, s) in mean_sd_by(r_records, "prior_mean_err2", n_small).items():
        right.errorbar(g, m, yerr=s / np.sqrt(seeds), color=colours[lam], marker="o", ms=3, ls="none",
                       capsize=2, label=f"λ={lam:g} measured (± se)")
        closed_form = mean_drift(int(g.max()), d, n_small, lam, w_var, real_source="reuse")
        right.plot(g, closed_form[g], color=colours[lam], lw=1.2)
    right.set(xlabel="generation", ylabel="||mu_i - mu*||^2",
              title=f"reference learner's drift, n = {n_small:,} (lines: closed form)")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
