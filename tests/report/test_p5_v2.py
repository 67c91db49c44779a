"""Prediction 5, version 2: a quadratic in m / n per seed, on log excess risk, with compute
growing with m and the oracle-augmented arm beside it. The rule on planted curves (direct and
through `icl-stl-report`), its Fieller vertex interval, and the version-2 fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_rules_v2 import judge, record, wobble, write

from icl_stl.report.predictions.p5_augmentation_v2 import p5v2_core, p5v2_trend
from icl_stl.report.quadratic import end_contrasts, fieller_vertex, fit_quadratics
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p5 import dip, edge, flat, saturating
from icl_stl.report.stats import C_CONFIRMED, C_REFUTED, Levels

GRID = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
CFG = ReportConfig()
N = 1000


def noisy(truth, seeds: int, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return truth(GRID) + rng.normal(0, 0.3, (seeds, 1)) + rng.normal(0, sigma, (seeds, GRID.size))


# ---------------------------------------------------------------------------------------------
# The pieces


def test_the_quadratic_fit_recovers_planted_coefficients():
    y = np.array([[1.0 + 2.0 * r - 0.5 * r * r for r in GRID], [3.0 - r * r for r in GRID]])
    assert fit_quadratics(y, GRID) == pytest.approx(np.array([[1, 2, -0.5], [3, 0, -1]]))


def test_the_fieller_interval_holds_the_vertex_and_is_bounded_only_with_curvature():
    y = noisy(dip(0.3, 1.2, GRID), 20, 0.05)
    v = fieller_vertex(fit_quadratics(y, GRID), Levels())
    assert bool(v["bounded"]) and v["low"] < v["vertex"] < v["high"]
    assert v["low"] < 1.2 < v["high"] and v["high"] - v["low"] < 0.5
    v = fieller_vertex(fit_quadratics(noisy(flat(), 20, 0.05), GRID), Levels())
    assert not bool(v["bounded"]) and v["low"] == -np.inf and v["high"] == np.inf


def test_end_contrasts_are_each_end_above_the_interior_mean():
    low, high = end_contrasts(np.array([[1.0, 0.0, 0.2, 0.4, 2.0]]))
    assert low == pytest.approx([1.0 - 0.2]) and high == pytest.approx([2.0 - 0.2])


# ---------------------------------------------------------------------------------------------
# The rule on planted curves


@pytest.mark.parametrize("truth, expected", [
    (dip(0.3, 1.5, GRID), C_CONFIRMED),  # a clear dip mid-grid
    (dip(0.3, 0.9, GRID), C_CONFIRMED),  # off-centre, still inside
    (edge(3.0, 0.1), C_REFUTED),  # optimum at the grid's end: the end lies below the interior
    (edge(0.0, 0.1), C_REFUTED),  # augmentation hurts from the start
    (saturating(0.5), C_REFUTED),  # falls and flattens: no optimum
])
def test_planted_curves_get_their_verdict(truth, expected):
    out = p5v2_core(noisy(truth, 20, 0.05), GRID, CFG)
    assert int(out["code"]) == expected


def test_a_saturating_curve_fools_the_quadratic_but_not_the_rule():
    """The quadratic alone (curvature and vertex interval) would call this monotone curve an
    interior optimum; the model-free end contrast refuses it."""
    out = p5v2_core(noisy(saturating(0.5), 40, 0.02), GRID, CFG)
    v = out["vertex"]
    assert float(out["curvature"]["p_confirm"]) < 0.05
    assert bool(v["bounded"]) and 0 < v["low"] and v["high"] < 3  # the quadratic's "optimum"
    assert float(out["high_end"]["estimate"]) < 0 and not bool(out["interior"])


def test_few_seeds_are_underpowered_whatever_the_curve():
    out = p5v2_core(noisy(dip(0.5, 1.5, GRID), 3, 0.01), GRID, CFG)
    assert int(out["code"]) == 3  # underpowered


def test_the_trend_reads_the_vertex_on_the_m_over_n_scale():
    """A constant m* (vertex / n halving per doubling of n) has slope -1 on log(m / n): not
    'grows as n shrinks'; m* falling with n (vertex dropping faster) is."""
    ns = [1000, 4000]
    for vertices, expected in (((2.0, 0.25), C_CONFIRMED), ((1.6, 1.6), C_REFUTED)):
        y = np.stack([noisy(edge(v, 0.2), 20, 0.02, seed=i) for i, v in enumerate(vertices)])
        out = p5v2_trend(y, GRID, ns, CFG)
        assert int(out["code"]) == expected
    # exactly constant m*: the slope sits at -1
    y = np.stack([noisy(edge(v, 0.2), 20, 0.0) for v in (2.0, 0.5)])
    assert float(p5v2_trend(y, GRID, ns, CFG)["estimate"]) == pytest.approx(-1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Through icl-stl-report


def augmented(model_truth, oracle_truth, seeds=range(8), ms=(0, 500, 1000, 2000, 3000), n=N,
              scaled=True, sigma=0.03, gen0=0.03) -> list[dict]:
    out = []
    for s in seeds:
        for m in ms:
            for g in (0, 1):
                size = n if g == 0 else n + m
                steps = 100 if g == 0 else (round(100 * size / n) if scaled else 100)
                base = {"augment": m, "steps": steps, "train_size": size}
                for arm, truth in (("model", model_truth), ("oracle", oracle_truth)):
                    excess = gen0 if g == 0 else gen0 * math.exp(
                        truth(m / n) + wobble(s + 10 * ms.index(m), 3 if arm == "model" else 5,
                                              sigma))
                    rec = record(s, 0.5, g, arm, excess, n=n, **base)
                    rec["pair"] = rec["pair"].replace(" m=0 ", f" m={m} ")
                    out.append(rec)
    return out


def p5(verdicts: dict) -> dict:
    return verdicts["verdicts"]["5"]


def test_a_planted_dip_is_confirmed_with_the_version_2_fields(tmp_path):
    write(tmp_path, augmented(dip(0.3, 1.5, GRID), saturating(0.4)))
    out = p5(judge(tmp_path, ReportConfig(v2_p5_seeds=8)))
    assert out["verdict"] == "confirmed" and out["rules_version"] == "v2-provisional"
    group = out["groups"][0]
    assert group["scale"] == "excess_risk" and "oracle-augmented" in group["control"]
    assert group["seeds"] == 8 and group["margins"]["depth"] == CFG.v2_p5_depth
    assert group["left_out"]["missed_gate"] == 0
    part = group["parts"][f"n={N}"]
    assert part["vertex"] == pytest.approx(1.5, abs=0.2)
    assert part["vertex_interval"][0] > 0 and part["vertex_interval"][1] < 3
    assert part["oracle_arm"]["interior"] is False  # the oracle's curve only falls
    assert "one n" in out["numbers"]


def test_a_seed_whose_generation_0_missed_is_left_out_and_counted(tmp_path):
    records = augmented(dip(0.3, 1.5, GRID), flat())
    for r in records:
        if r["seed"] == 3 and r["generation"] == 0:
            r["test_risk"] = 0.5  # closes 0.56 of the gap
    write(tmp_path, records)
    out = p5(judge(tmp_path, ReportConfig(v2_p5_seeds=8)))
    group = out["groups"][0]
    assert group["left_out"]["missed_gate"] == 5 and group["left_out"]["seeds_left_out"] == [3]
    assert group["seeds"] == 7
    assert "5 loop(s) left out, their seeds unread" in out["numbers"]
    assert "uneven generations" not in out["numbers"]


def test_fixed_compute_across_m_is_not_read(tmp_path):
    write(tmp_path, augmented(dip(0.3, 1.5, GRID), flat(), scaled=False))
    out = p5(judge(tmp_path))
    assert out["verdict"] == "not tested" and "compute does not grow" in out["numbers"]


def test_a_grid_short_of_3_n_is_not_tested(tmp_path):
    write(tmp_path, augmented(dip(0.3, 1.0, GRID), flat(), ms=(0, 500, 1000, 1500, 2000)))
    out = p5(judge(tmp_path, ReportConfig(v2_p5_seeds=8)))
    assert out["verdict"] == "not tested" and "from 0 to 3" in out["numbers"]


def test_the_order_of_the_records_does_not_change_the_verdict(tmp_path):
    records = augmented(dip(0.3, 1.5, GRID), flat())
    write(tmp_path / "a", records)
    write(tmp_path / "b", records[::-1])
    cfg = ReportConfig(v2_p5_seeds=8)
    assert p5(judge(tmp_path / "a", cfg)) == p5(judge(tmp_path / "b", cfg))
