"""Arms of one pilot side by side, each beside its oracle twin: P6's filters, P9's data regimes.

One colour per arm (P6: unfiltered and each admitted filter; P9: replace, accumulate_s0,
accumulate, volume_matched). Left: excess risk over the Bayes predictor against generation, the
mean over the arm's seeds (solid: labelled by their own model; dashed: the same seeds' oracle
twins), log scale. Middle: the log contrast log(E / E_oracle) per generation, the mean of the
seeds' contrasts with its 90% t-interval (from 3 seeds on; with 2 its t-quantile of 6.3 would
hide the curves): where an arm's line stays at 0, its own labels cost nothing over the oracle's.
Then, when given: calibration against generation (P6: the head's z², 1 when calibrated), the
mean over the same seeds, solid and dashed as on the left; and the statistic a rule reads when
it is not an arm against its own twin (`RulePanel`; P9: the accumulating loop against the
replace loop's oracle twin), with the reference learner's curve and the rule's level margin.
An arm's colour is its own (ARM_COLOURS), whichever other arms a figure has.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from icl_stl.report.matched import MatchedLoop
from icl_stl.report.matched_figure import mean_band
from icl_stl.runs.plots import plt, readable_log_axis

LABELLER_STYLES = {"model": ("-", "model labels"), "oracle": ("--", "oracle twin")}
# A known arm keeps its colour whichever other arms a figure has. P6's and P9's arms never share
# a figure, so each set starts at C0 (the colours of the pilots' figures drawn before this).
ARM_COLOURS = {"unfiltered": "C0", "residual": "C1", "density_ratio": "C2",
               "replace": "C0", "accumulate_s0": "C1", "accumulate": "C2", "volume_matched": "C3"}
SPARE_COLOURS = [f"C{i}" for i in range(10) if f"C{i}" not in ARM_COLOURS.values()]
# {arm: {labeller: {seed: {generation: value or None}}}}
Calibration = dict[str, dict[str, dict[int, dict[int, float | None]]]]


@dataclass
class ArmCurves:
    """One arm's loops on the generations they all have: (seeds, generations) arrays."""

    seeds: list[int]
    generations: list[int]
    excess: np.ndarray  # model-labelled
    control: np.ndarray  # the oracle twins
    calibration: dict[str, np.ndarray]  # labeller -> values (NaN where a record lacks it)

    @property
    def contrast(self) -> np.ndarray:
        return np.log(self.excess / self.control)


@dataclass
class RulePanel:
    """A rule's per-seed statistic by generation, drawn in a panel of its own."""

    title: str
    ylabel: str
    arm: str  # whose colour the statistic takes
    generations: list[int]
    per_seed: np.ndarray  # (seeds, generations)
    reference: np.ndarray | None = None  # the reference learner's curve on `generations`
    reference_label: str = "reference learner"
    margin: float | None = None  # a level margin, drawn as a dotted line
    margin_label: str = "margin"


def arm_curves(arm: str, loops: list[MatchedLoop], calibration: Calibration | None = None
               ) -> ArmCurves:
    """The arm's curves; loops that cannot be averaged (none, a seed twice, two settings, no
    shared generation, calibration missing a seed or generation) are refused by name."""
    if not loops:
        raise ValueError(f"arm {arm}: no loops to draw")
    seeds = [lp.seed for lp in loops]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"arm {arm}: a seed appears twice ({sorted(seeds)})")
    settings = {(lp.config, lp.regime, lp.n, lp.augment, lp.real_fraction) for lp in loops}
    if len(settings) > 1:
        raise ValueError(f"arm {arm}: loops of {len(settings)} settings, one expected "
                         f"({sorted(map(str, settings))})")
    gens = sorted(set.intersection(*(set(lp.generations) for lp in loops)))
    if not gens:
        raise ValueError(f"arm {arm}: the loops share no generation")

    def table(values) -> np.ndarray:
        return np.array([[values(lp)[lp.generations.index(g)] for g in gens] for lp in loops],
                        dtype=float)

    curves = {}
    if calibration is not None:
        if arm not in calibration:
            raise ValueError(f"calibration: no arm {arm}")
        for labeller, by_seed in calibration[arm].items():
            rows = []
            for seed in seeds:
                row = by_seed.get(seed, {})
                if any(g not in row for g in gens):
                    raise ValueError(f"calibration of arm {arm}, {labeller} labels: seed "
                                     f"{seed} lacks generations {[g for g in gens if g not in row]}")
                rows.append([np.nan if row[g] is None else row[g] for g in gens])
            curves[labeller] = np.array(rows, dtype=float)
    return ArmCurves(seeds, gens, table(lambda lp: lp.excess), table(lambda lp: lp.control),
                     curves)


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """Each arm's colour: a known arm's own; the others, in the given order, the colours no
    known arm has (cycling when there are more of them than colours)."""
    spare = itertools.cycle(SPARE_COLOURS)
    return {arm: ARM_COLOURS[arm] if arm in ARM_COLOURS else next(spare) for arm in arms}


def _nan_mean(values: np.ndarray) -> np.ndarray:
    """Mean over seeds of the values present; NaN (a gap in the line) where none is."""
    present = np.isfinite(values).sum(0)
    total = np.where(np.isfinite(values), values, 0.0).sum(0)
    return np.divide(total, present, out=np.full(total.shape, np.nan), where=present > 0)


def _rule_panel(axis, panel: RulePanel, colour: str) -> None:
    mean, half = mean_band(list(panel.per_seed))
    seeds = len(panel.per_seed)
    axis.plot(panel.generations, mean, "-", color=colour, marker="o", ms=3,
              label=f"{panel.arm} ({seeds} seeds)")
    if seeds >= 3:
        axis.fill_between(panel.generations, mean - half, mean + half, color=colour, alpha=0.15)
    if panel.reference is not None:
        axis.plot(panel.generations, panel.reference, ":", color="black", lw=1.2,
                  label=panel.reference_label)
    if panel.margin is not None:
        axis.axhline(panel.margin, color="grey", ls="--", lw=0.8, label=panel.margin_label)
    axis.axhline(0.0, color="grey", lw=0.8)
    axis.set(xlabel="generation", ylabel=panel.ylabel, title=panel.title)
    axis.legend(fontsize=7, loc="lower right")


def draw(arms: dict[str, list[MatchedLoop]], path: Path, title: str,
         calibration: Calibration | None = None, calibration_label: str = "head z²",
         rule_panel: RulePanel | None = None) -> Path:
    """Draw the figure of these arms (in the given order) to `path`; a calibration panel when
    `calibration` is given, and a panel of the rule's statistic when `rule_panel` is."""
    curves = {arm: arm_curves(arm, loops, calibration) for arm, loops in arms.items()}
    if not curves:
        raise ValueError("no arm to draw")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    panels = 2 + (calibration is not None) + (rule_panel is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    left, middle = axes[0], axes[1]
    colours = arm_colours(list(curves))
    if rule_panel is not None:
        _rule_panel(axes[-1], rule_panel, colours.get(rule_panel.arm)
                    or arm_colours([rule_panel.arm])[rule_panel.arm])
    for arm, c in curves.items():
        colour = colours[arm]
        left.plot(c.generations, c.excess.mean(0), "-", color=colour, marker="o", ms=3,
                  label=f"{arm} ({len(c.seeds)} seeds)")
        left.plot(c.generations, c.control.mean(0), "--", color=colour, marker="o", ms=3,
                  mfc="none")
        mean, half = mean_band(list(c.contrast))
        middle.plot(c.generations, mean, "-", color=colour, marker="o", ms=3, label=arm)
        if len(c.seeds) >= 3:
            middle.fill_between(c.generations, mean - half, mean + half, color=colour,
                                alpha=0.15)
        for labeller, values in c.calibration.items():
            style, _ = LABELLER_STYLES.get(labeller, (":", labeller))
            axes[2].plot(c.generations, _nan_mean(values), style, color=colour,
                         marker="o", ms=3, mfc="none" if labeller == "oracle" else colour)
    styles = [Line2D([], [], color="black", ls=style, label=label)
              for style, label in LABELLER_STYLES.values()]
    left.set(xlabel="generation", ylabel="excess risk over the Bayes predictor", yscale="log",
             title="each arm beside its oracle twin (mean over seeds)")
    readable_log_axis(left, [v for line in left.lines for v in line.get_ydata()])
    left.legend(handles=[*left.get_legend_handles_labels()[0], *styles], fontsize=7)
    middle.axhline(0.0, color="grey", lw=0.8)
    middle.set(xlabel="generation", ylabel="log(E / E_oracle)",
               title="log contrast against the twin (90% interval)")
    middle.legend(fontsize=7)
    if calibration is not None:
        axes[2].axhline(1.0, color="grey", lw=0.8)
        axes[2].set(xlabel="generation", ylabel=calibration_label, yscale="log",
                    title=f"calibration: {calibration_label} (1: calibrated)")
        readable_log_axis(axes[2], [1.0, *(v for line in axes[2].lines for v in line.get_ydata())])
        axes[2].legend(handles=styles, fontsize=7)
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
