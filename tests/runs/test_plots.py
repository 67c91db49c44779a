"""Plots a researcher can read: whole generations, labelled log axes, ridge and zero lines that
no lambda shares a colour with, least squares visible over ridge, no claim of bands not drawn."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest

from icl_stl.runs import plots


@pytest.fixture
def kept(monkeypatch):
    """Figures the plot functions would close, kept for inspection."""
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    return figures


def _records(seeds, lambdas=(0.0, 0.5, 1.0), generations=6):
    return [{"seed": s, "real_fraction": lam, "generation": g, "test_risk": 0.3 + 0.2 * g * (1 - lam)
             + 0.01 * s} for s in seeds for lam in lambdas for g in range(generations)]


def test_risk_against_generation_is_readable(tmp_path, kept):
    plots.plot_generations(_records([0]), tmp_path / "r.png", ridge_risk=0.24, zero_risk=1.0)
    (fig,) = kept
    ax = fig.axes[0]
    ax.figure.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    labels = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
    assert any(label in labels for label in ("0.3", "0.5", "2")), labels  # not only 10^0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("ridge" in t for t in legend) and any("zero" in t for t in legend)
    assert not any("band" in t for t in legend)  # one seed: no band is drawn, none is claimed
    colours = {line.get_label(): mcolors.to_hex(line.get_color()) for line in ax.get_lines()}
    ridge = next(c for label, c in colours.items() if "ridge" in label)
    lambda_colours = [c for label, c in colours.items() if label.startswith("λ")]
    assert len(lambda_colours) == 3 and ridge not in lambda_colours


def test_several_seeds_get_a_band_and_say_so(tmp_path, kept):
    plots.plot_generations(_records([0, 1, 2]), tmp_path / "r.png", ridge_risk=0.24)
    ax = kept[0].axes[0]
    assert ax.collections  # the min..max bands
    assert all("3 seeds" in t.get_text() for t in ax.get_legend().get_texts()
               if t.get_text().startswith("λ"))


def test_least_squares_is_drawn_over_ridge(tmp_path, kept):
    same = {"per_position": [1.0, 0.4, 0.0, 0.0], "ci_low": [0.9, 0.3, 0.0, 0.0],
            "ci_high": [1.1, 0.5, 0.0, 0.0]}
    plots.plot_positions({"model": same, "ridge": same, "least_squares": same},
                         tmp_path / "p.png", model_keys=("model",))
    lines = {line.get_label(): line for line in kept[0].axes[0].get_lines()}
    ls, ridge = lines["least squares"], lines["ridge (Bayes)"]
    assert ls.get_zorder() > ridge.get_zorder() and ls.get_linestyle() != ridge.get_linestyle()


def test_a_long_group_title_is_wrapped_not_cut_off(tmp_path, kept):
    """A report titles figures with a group's whole configuration; it must fit the figure."""
    title = ("decay, loop.init=warm_start, loop.learner=transformer, loop.steps=200, "
             "loop.warmup_steps=20, train.batch_size=64, λ=0.5")
    plots.plot_generations(_records([0]), tmp_path / "r.png", title=title)
    (fig,) = kept
    fig.canvas.draw()
    shown = fig.axes[0].title
    assert shown.get_text().replace("\n", " ") == title
    box, figure_box = shown.get_window_extent(), fig.bbox
    assert box.x0 >= figure_box.x0 and box.x1 <= figure_box.x1
