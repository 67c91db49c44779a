"""Plots a researcher can read: whole generations, the excess over ridge on an axis that shows
its drift, ridge and zero lines that no lambda shares a colour with (or named when off the
axis), least squares visible over ridge, no claim of bands not drawn, the seed count said."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np

from icl_stl.runs import plots


def _records(seeds, lambdas=(0.0, 0.5, 1.0), generations=6, ridge=0.24):
    return [{"seed": s, "real_fraction": lam, "generation": g, "ridge_risk": ridge,
             "test_risk": 0.3 + 0.2 * g * (1 - lam) + 0.01 * s}
            for s in seeds for lam in lambdas for g in range(generations + 1)]


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_risk_against_generation_is_readable(tmp_path, kept):
    plots.plot_generations(_records([0]), tmp_path / "r.png", ridge_risk=0.24, zero_risk=1.0)
    (fig,) = kept
    left, right = fig.axes
    fig.canvas.draw()
    for ax in (left, right):
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert "excess" in left.get_ylabel()
    legend = _legend(left)
    assert any("ridge" in t for t in legend) and any("zero" in t for t in legend)
    assert right.get_legend().get_title().get_text() == "1 seed"  # no band drawn, none claimed
    assert not left.collections and not right.collections
    colours = {line.get_label(): mcolors.to_hex(line.get_color()) for line in left.get_lines()}
    ridge = next(c for label, c in colours.items() if "ridge" in label)
    lambda_colours = [c for label, c in colours.items() if label.startswith("λ")]
    assert len(lambda_colours) == 3 and ridge not in lambda_colours


def test_a_small_drift_fills_the_axis(tmp_path, kept):
    """The demo's λ = 0 drift, 0.309 -> 0.326 beside ridge 0.24 and the zero predictor at 1.0,
    must span a good part of the axis, not a sliver between ridge and zero."""
    risks = [0.309, 0.315, 0.320, 0.326]
    records = [{"seed": s, "real_fraction": 0.0, "generation": g, "ridge_risk": 0.24,
                "test_risk": r + 0.002 * s} for s in (0, 1) for g, r in enumerate(risks)]
    plots.plot_generations(records, tmp_path / "r.png", ridge_risk=0.24, zero_risk=1.0)
    left, right = kept[0].axes
    low, high = left.get_ylim()
    means = [r + 0.001 - 0.24 for r in risks]
    assert low <= min(means) and max(means) <= high
    assert (max(means) - min(means)) / (high - low) > 0.25
    assert any("zero predictor at 0.76" in t and "above the axis" in t for t in _legend(left))
    low, high = right.get_ylim()
    assert (risks[-1] - risks[0]) / (high - low) > 0.5  # the change since generation 0


def test_the_drift_panel_pairs_each_loop_with_its_own_generation_0(tmp_path, kept):
    """Seeds offset by a constant at generation 0 drift alike: their change has no spread."""
    plots.plot_generations(_records([0, 1, 2]), tmp_path / "r.png", ridge_risk=0.24)
    left, right = kept[0].axes
    assert left.collections  # the +-sd bands of the level (offsets differ by seed)
    assert right.collections
    for band in right.collections:
        xs, ys = np.concatenate([p.vertices for p in band.get_paths()]).T
        assert all(np.ptp(ys[xs == x]) < 1e-12 for x in np.unique(xs))
    assert right.get_legend().get_title().get_text() == "mean ± sd over 3 seeds"


def test_least_squares_is_drawn_over_ridge(tmp_path, kept):
    same = {"per_position": [1.0, 0.4, 0.0, 0.0], "ci_low": [0.9, 0.3, 0.0, 0.0],
            "ci_high": [1.1, 0.5, 0.0, 0.0]}
    plots.plot_positions({"model": same, "ridge": same, "least_squares": same},
                         tmp_path / "p.png", model_keys=("model",))
    lines = {line.get_label(): line for line in kept[0].axes[0].get_lines()}
    ls, ridge = lines["least squares"], lines["ridge (Bayes)"]
    assert ls.get_zorder() > ridge.get_zorder() and ls.get_linestyle() != ridge.get_linestyle()


def test_a_long_title_is_wrapped_not_cut_off(tmp_path, kept):
    title = ("transformer, verifier filter, verifier of 4 real prompts, batch size 128, "
             "λ = 0, 0.1, 0.25, 0.5, 1, n = 10,000, and more words than fit one line")
    plots.plot_generations(_records([0]), tmp_path / "r.png", title=title)
    (fig,) = kept
    fig.canvas.draw()
    shown = fig._suptitle
    assert shown.get_text().replace("\n", " ") == title
    box, figure_box = shown.get_window_extent(), fig.bbox
    assert box.x0 >= figure_box.x0 and box.x1 <= figure_box.x1
