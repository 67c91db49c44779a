"""The arms figure (icl_stl/report/arms_figure.py): each arm's loops averaged on their shared
generations, the lines drawn are those means, and loops that cannot be averaged are refused."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from icl_stl.report import arms_figure
from icl_stl.report.arms_figure import arm_curves, draw
from icl_stl.report.matched import MatchedLoop

RNG = np.random.default_rng(7)


def loop(seed: int, gens: list[int], drift: float, config: str = "c", n: int = 100
         ) -> MatchedLoop:
    control = 0.03 * np.exp(RNG.normal(0, 0.2, len(gens)))
    excess = control * np.exp(drift * np.asarray(gens) + RNG.normal(0, 0.1, len(gens)))
    return MatchedLoop(config, "from_scratch", n, 0, 0.0, seed, list(gens), excess, control,
                       {"reached": True}, [])


def z2(loops: list[MatchedLoop], scale: float) -> dict:
    return {"model": {lp.seed: {g: scale * (1 + g) for g in lp.generations} for lp in loops},
            "oracle": {lp.seed: {g: None if g == 0 else 1.0 for g in lp.generations}
                       for lp in loops}}


def test_an_arm_is_read_on_the_generations_all_its_loops_have():
    loops = [loop(1, [0, 1, 2, 3], 0.3), loop(2, [0, 1, 2], 0.3), loop(5, [0, 1, 2, 3], 0.3)]
    c = arm_curves("replace", loops, {"replace": z2(loops, 2.0)})
    assert c.seeds == [1, 2, 5] and c.generations == [0, 1, 2]
    assert c.excess[1] == pytest.approx(loops[1].excess[:3])
    assert c.control[2] == pytest.approx(loops[2].control[:3])
    planted = np.mean([np.log(lp.excess[:3] / lp.control[:3]) for lp in loops], 0)
    assert c.contrast.mean(0) == pytest.approx(planted)
    assert c.calibration["model"][0] == pytest.approx([2.0, 4.0, 6.0])
    assert np.isnan(c.calibration["oracle"][:, 0]).all()  # a record without the field


def test_the_lines_drawn_are_each_arms_means(tmp_path, kept):
    arms = {"replace": [loop(s, [0, 1, 2, 3], 0.4) for s in (1, 2, 3)],
            "accumulate_s0": [loop(s, [0, 1, 2], 0.05) for s in (1, 2)]}
    calibration = {arm: z2(loops, 1.5) for arm, loops in arms.items()}
    path = draw(arms, tmp_path / "figures" / "arms.png", "toy", calibration)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    (fig,) = kept
    left, middle, right = fig.axes
    for i, (arm, loops) in enumerate(arms.items()):
        gens = loops[0].generations if arm == "accumulate_s0" else [0, 1, 2, 3]
        solid, dashed = left.lines[2 * i], left.lines[2 * i + 1]
        assert list(solid.get_xdata()) == gens
        assert solid.get_ydata() == pytest.approx(np.mean([lp.excess for lp in loops], 0))
        assert dashed.get_ydata() == pytest.approx(np.mean([lp.control for lp in loops], 0))
        assert middle.lines[i].get_ydata() == pytest.approx(
            np.mean([lp.contrast for lp in loops], 0))
        assert right.lines[2 * i].get_ydata() == pytest.approx(1.5 * (1 + np.array(gens)))
    assert len(middle.collections) == 1  # a band for replace's 3 seeds, none for 2


def drawn_colours(tmp_path, monkeypatch, kept, arms: list[str]) -> dict[str, str]:
    """Each arm's colour as drawn: its solid and dashed lines and its contrast share it."""
    monkeypatch.setattr(Figure, "savefig", lambda *args, **kwargs: None)  # colours only
    drawn = len(kept)
    draw({arm: [loop(s, [0, 1], 0.1) for s in (1, 2)] for arm in arms},
         tmp_path / "arms.png", "toy")
    assert len(kept) == drawn + 1
    left, middle = kept[-1].axes
    colours = {}
    for i, arm in enumerate(arms):
        solid, dashed, contrast = left.lines[2 * i], left.lines[2 * i + 1], middle.lines[i]
        assert solid.get_label().startswith(f"{arm} (") and contrast.get_label() == arm
        shown = {to_hex(line.get_color()) for line in (solid, dashed, contrast)}
        assert len(shown) == 1, (arm, shown)
        colours[arm] = shown.pop()
    return colours


@pytest.mark.parametrize("every", [["unfiltered", "residual", "density_ratio"],
                                   ["replace", "accumulate_s0", "accumulate", "volume_matched"]])
def test_an_arms_colour_does_not_depend_on_the_other_arms_drawn(tmp_path, monkeypatch, kept,
                                                                 every):
    full = drawn_colours(tmp_path, monkeypatch, kept, every)
    assert len(set(full.values())) == len(every)
    # each arm alone, and the others without it in reverse order
    for order in [*([arm] for arm in every), *([a for a in every if a != arm][::-1]
                                               for arm in every)]:
        assert drawn_colours(tmp_path, monkeypatch, kept, order) == {
            arm: full[arm] for arm in order}


def test_an_unknown_arm_takes_a_colour_no_known_arm_has(tmp_path, monkeypatch, kept):
    colours = drawn_colours(tmp_path, monkeypatch, kept, ["verifier", "density_ratio", "best_of_k"])
    known = {to_hex(c) for c in arms_figure.ARM_COLOURS.values()}
    assert colours["density_ratio"] == to_hex(arms_figure.ARM_COLOURS["density_ratio"])
    assert colours["verifier"] not in known and colours["best_of_k"] not in known
    assert colours["verifier"] != colours["best_of_k"]
    assert drawn_colours(tmp_path, monkeypatch, kept, ["verifier", "residual", "best_of_k"]) == {
        "verifier": colours["verifier"], "residual": to_hex(arms_figure.ARM_COLOURS["residual"]),
        "best_of_k": colours["best_of_k"]}


def test_a_figure_without_calibration_has_two_panels(tmp_path, kept):
    draw({"unfiltered": [loop(1, [0, 1], 0.2)]}, tmp_path / "a.png", "toy")
    (fig,) = kept
    assert len(fig.axes) == 2


def test_a_rule_panel_draws_the_rules_statistic_in_the_arms_colour(tmp_path, kept):
    """P9's third panel: the per-seed statistic's mean (with a band from 3 seeds), the
    reference learner's curve and the level margin, in the arm's own colour."""
    per_seed = RNG.normal(0.3, 0.1, (3, 4))
    panel = arms_figure.RulePanel("P9", "log(E_acc / E_oracle-replace)", "accumulate_s0",
                                  [0, 1, 2, 3], per_seed, reference=np.array([0, .2, .3, .35]),
                                  margin=0.48)
    draw({"replace": [loop(1, [0, 1], 0.4)], "accumulate_s0": [loop(1, [0, 1], 0.0)]},
         tmp_path / "a.png", "toy", rule_panel=panel)
    (fig,) = kept
    assert len(fig.axes) == 3
    statistic, reference = fig.axes[2].lines[:2]
    assert statistic.get_ydata() == pytest.approx(per_seed.mean(0))
    assert to_hex(statistic.get_color()) == to_hex(arms_figure.ARM_COLOURS["accumulate_s0"])
    assert reference.get_ydata() == pytest.approx([0, .2, .3, .35])
    assert 0.48 in [line.get_ydata()[0] for line in fig.axes[2].lines[2:]]
    assert len(fig.axes[2].collections) == 1


@pytest.mark.parametrize("arms, calibration, says", [
    ({"replace": []}, None, "arm replace: no loops to draw"),
    ({"replace": [loop(1, [0, 1], 0.1), loop(1, [0, 1], 0.1)]}, None, "seed appears twice"),
    ({"replace": [loop(1, [0, 1], 0.1), loop(2, [0, 1], 0.1, n=200)]}, None, "2 settings"),
    ({"replace": [loop(1, [0, 1], 0.1), loop(2, [2, 3], 0.1)]}, None, "share no generation"),
    ({"replace": [loop(1, [0, 1], 0.1)]}, {"other": {}}, "calibration: no arm replace"),
    ({"replace": [loop(1, [0, 1], 0.1)]}, {"replace": {"model": {1: {0: 1.0}}}},
     r"seed 1 lacks generations \[1\]"),
    ({}, None, "no arm to draw"),
])
def test_loops_that_cannot_be_averaged_are_refused(tmp_path, arms, calibration, says):
    with pytest.raises(ValueError, match=says):
        draw(arms, tmp_path / "x.png", "toy", calibration)
    assert not (tmp_path / "x.png").exists()
