"""Error against in-context position: how each lambda's per-position error changed from the
first generation to the last (the report's position figure; `figures.positions_figure`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from icl_stl.report.groups import last_shared  # noqa: E402
from icl_stl.runs.plots import BASELINE_STYLE, lambda_colours, wrapped  # noqa: E402


def position_change(records: list[dict]) -> dict[float, tuple[np.ndarray, np.ndarray, int,
                                                                tuple[int, int]]]:
    """lambda -> (mean, sd, seeds, (first, last)) over seeds of the last generation's error per
    position minus the same loop's first-generation error (paired on the same test prompts).

    Per lambda, `last` is the last generation every loop of that lambda reached: a lambda that
    stopped early, or a seed that ran further, changes that lambda's span (shown in the
    legend), never which loops are drawn."""
    out = {}
    for lam in sorted({r["real_fraction"] for r in records}):
        mine = [r for r in records if r["real_fraction"] == lam
                and r.get("test_risk_per_position") is not None]
        if not mine:
            continue
        loop = lambda r: (r.get("seed"), r.get("run"))  # noqa: E731
        first, last = min(r["generation"] for r in mine), last_shared(mine, loop)
        ends: dict[tuple, dict[int, np.ndarray]] = {}
        for r in mine:
            if r["generation"] in (first, last):
                ends.setdefault(loop(r), {})[r["generation"]] = np.asarray(
                    r["test_risk_per_position"], dtype=float)
        diffs = [v[last] - v[first] for _, v in sorted(ends.items(), key=lambda kv: str(kv[0]))
                 if first in v and last in v and np.shape(v[last]) == np.shape(v[first])]
        widths = {np.shape(d) for d in diffs}
        if last <= first or not diffs or len(widths) != 1 or np.ndim(diffs[0]) != 1:
            continue  # nothing to difference, or per-position curves of different lengths
        diffs_arr = np.array(diffs)
        sd = diffs_arr.std(0, ddof=1) if len(diffs_arr) > 1 else np.zeros(diffs_arr.shape[1])
        out[lam] = (diffs_arr.mean(0), sd, len(diffs_arr), (first, last))
    return out


def positions_figure(records: list[dict], baselines: dict, path: Path, title: str) -> Path:
    """Change of the error at each position from generation 0 to the last, per lambda.

    Drawn as a difference because the absolute curves of all generations lie within a line's
    width of each other (and of ridge) beside the averaging and 3-NN baselines; the dashed
    line is ridge minus generation 0, the most any generation could gain at that position.
    Groups of uneven generations draw each lambda over the generations all its loops reached.
    """
    change = position_change(records)
    spans = {c[3] for c in change.values()}
    first = min((s[0] for s in spans), default=min(r["generation"] for r in records))
    colours = lambda_colours(list(change))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    seeds = max((c[2] for c in change.values()), default=0)
    for lam, (mean, sd, _, span) in change.items():
        xs = np.arange(1, len(mean) + 1)
        label = f"λ = {lam:g}" + (f" (generation {span[1]} − {span[0]})" if len(spans) > 1
                                  else "")
        ax.plot(xs, mean, "o-", ms=3, color=colours[lam], label=label)
        if seeds > 1:
            ax.fill_between(xs, mean - sd, mean + sd, color=colours[lam], alpha=0.18, lw=0)
    gen0 = [np.asarray(r["test_risk_per_position"], dtype=float) for r in records
            if r["generation"] == first and r.get("test_risk_per_position") is not None]
    ridge = baselines.get("ridge", {}).get("per_position")
    if ridge is not None and gen0 and len({np.shape(g) for g in gen0}) == 1 \
            and np.shape(gen0[0]) == np.shape(ridge):
        _, color, style, lw = BASELINE_STYLE["ridge"]
        ax.plot(np.arange(1, len(ridge) + 1), np.asarray(ridge) - np.mean(gen0, axis=0),
                color=color, ls=style, lw=lw, label="ridge − generation 0")
    ax.axhline(0.0, color="0.5", lw=0.8)
    (span,) = spans if len(spans) == 1 else ((None, None),)
    ax.set(xlabel="in-context examples (position j)",
           ylabel=(f"error at j: generation {span[1]} − generation {span[0]}" if span[0]
                   is not None else "error at j: last generation − first (per λ)"),
           title=wrapped(title, fig))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, title=f"mean ± sd over {seeds} seeds" if seeds > 1 else "1 seed",
              title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
