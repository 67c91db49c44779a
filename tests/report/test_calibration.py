"""Calibration of the verdict rules: simulate data from a known truth, count verdicts.

Every rule is run through the very `*_core` function the report uses, vectorised over many
simulated draws (leading axis). For each rule:

- under the null (the truth exactly at the margin, the least favourable case) the false
  "confirmed" rate is at most the nominal 5% plus Monte-Carlo error (3 standard errors);
- at the documented effect size (docs/THEORY.md, "Power") with the default 5 seeds the power is
  at least 80%;
- with 1 or 2 seeds the verdict is "underpowered", never "confirmed" or "refuted";
- data of the demo's design (1-2 seeds, generations 0-3, noise sd 0.03) are never confirmed.

Rates are printed (`pytest -s`) and are part of every assertion message. The `slow` versions
repeat the null checks with ten times the draws (`make test-all`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from icl_stl.report.predictions.p1_collapse import p1_core
from icl_stl.report.predictions.p2_bounded import order_core, p2_core
from icl_stl.report.predictions.p3_stability import chaos_core, p3a_core
from icl_stl.report.predictions.p4_decay import decay_table, p4_core
from icl_stl.report.predictions.p5_augmentation import p5_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import (
    CODES,
    Levels,
    directional_test,
    equivalence_test,
    holm,
    rates,
)
from icl_stl.report.verdict import GroupResult, Prediction, finalise

CFG = ReportConfig()
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
NOMINAL = CFG.alpha
DRAWS = 4000  # t-test rules (one numpy call each)
BOOT_DRAWS = 300  # bootstrap rules (P4, P5): draws x replicates fits


def limit(draws: int, nominal: float = NOMINAL) -> float:
    """The nominal rate plus 3 Monte-Carlo standard errors."""
    return nominal + 3 * math.sqrt(nominal * (1 - nominal) / draws)


def report(name: str, codes: np.ndarray) -> dict[str, float]:
    r = rates(codes)
    text = ", ".join(f"{k} {v:.1%}" for k, v in r.items())
    print(f"\n[calibration] {name} ({np.size(codes)} draws): {text}")
    return {**r, "text": f"{name}: {text}"}


def loops(rng, draws: int, seeds: int, generations: int, level: float, growth: float,
          sd: float) -> np.ndarray:
    """(draws, seeds, generations + 1) risks: level x (1 + growth)^g + N(0, sd)."""
    g = np.arange(generations + 1)
    return level * (1 + growth) ** g + rng.normal(0, sd, (draws, seeds, generations + 1))


# ---------------------------------------------------------------------------------------------
# The t-tests themselves: exact level at every number of seeds, Student-t with s - 1 df


def within(rate: float, draws: int, nominal: float = NOMINAL) -> bool:
    """The rate lies within 3.5 Monte-Carlo standard errors of the nominal one, either side:
    a test that is too lenient (t with s df, a normal quantile) or too strict (the two-sided
    1 - alpha interval, t with s - 2 df) is caught, not only a lenient one."""
    return abs(rate - nominal) <= 3.5 * math.sqrt(nominal * (1 - nominal) / draws)


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_t_tests_hold_their_exact_level_at_every_number_of_seeds(seeds):
    """Gaussian per-seed summaries exactly at the margin: each one-sided test confirms exactly
    alpha of the time. With 2-3 seeds a wrong df moves the rate far (t_{0.95,1} = 6.3 against
    t_{0.95,2} = 2.9: 10.5% instead of 5%)."""
    rng = np.random.default_rng(40 + seeds)
    draws, margin = 20000, 0.1
    levels = Levels(CFG.alpha, CFG.power, min_seeds=2)
    x = margin + rng.normal(0, 1.0, (draws, seeds))
    for direction in (+1, -1):
        out = directional_test(x, margin, direction, levels)
        for name, p in (("confirm", out["p_confirm"]), ("refute", out["p_refute"])):
            rate = float(np.mean(p < CFG.alpha))
            print(f"\n[calibration] t-test at the margin, {seeds} seeds, direction "
                  f"{direction:+d}, {name}: {rate:.2%}")
            assert within(rate, draws), f"{name} {rate:.2%} with {seeds} seeds"
    # TOST at +margin (a tight spread, so the lower one-sided test always rejects)
    tost = equivalence_test(margin + rng.normal(0, margin / 100, (draws, seeds)), margin, levels)
    rate = float(np.mean(tost["code"] == 0))
    print(f"\n[calibration] TOST at +margin, {seeds} seeds: confirmed {rate:.2%}")
    assert within(rate, draws), f"TOST confirmed {rate:.2%} with {seeds} seeds"


def test_t_tests_match_scipy_and_show_the_one_sided_bounds():
    """p-values are scipy's one-sample t-tests; the interval's ends are the two one-sided
    1 - alpha bounds (the 1 - 2 alpha interval), with s - 1 degrees of freedom."""
    x = np.array([0.31, 0.12, 0.45, 0.27, 0.08, 0.36])
    levels = Levels(CFG.alpha, CFG.power, min_seeds=2)
    out = directional_test(x, 0.1, +1, levels)
    assert out["p_confirm"] == pytest.approx(
        stats.ttest_1samp(x, 0.1, alternative="greater").pvalue, rel=1e-12)
    assert out["p_refute"] == pytest.approx(
        stats.ttest_1samp(x, 0.1, alternative="less").pvalue, rel=1e-12)
    se = x.std(ddof=1) / math.sqrt(x.size)
    half = stats.t.ppf(1 - CFG.alpha, x.size - 1) * se
    assert [out["low"], out["high"]] == pytest.approx([x.mean() - half, x.mean() + half])
    assert out["mde"] == pytest.approx(
        (stats.t.ppf(1 - CFG.alpha, x.size - 1) + stats.t.ppf(CFG.power, x.size - 1)) * se)
    tost = equivalence_test(x - x.mean(), 0.2, levels)  # mean 0: both one-sided tests
    assert tost["p_confirm"] == pytest.approx(max(
        stats.ttest_1samp(x - x.mean(), -0.2, alternative="greater").pvalue,
        stats.ttest_1samp(x - x.mean(), 0.2, alternative="less").pvalue), rel=1e-12)
    assert [tost["low"], tost["high"]] == pytest.approx([-half, half])


def test_holm_is_step_down_and_monotone():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # step-down keeps the larger earlier value: 0.011 x 1 < 0.01 x 2
    np.testing.assert_allclose(holm([0.01, 0.011]), [0.02, 0.02])
    # capped at 1; nan (no test) is left out of the family and stays nan
    out = holm([np.nan, 0.02, 0.7])
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.7])
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])
    assert holm([]).shape == (0,)


# ---------------------------------------------------------------------------------------------
# P1: collapse, one-sided test of the log rise against log(1 + margin)


def p1_null(rng, draws: int, seeds: int = 5) -> np.ndarray:
    """The final risk exactly (1 + margin) x generation 0's (in the median), noise 6% of it."""
    growth = (1 + CFG.p1_margin) ** (1 / 3) - 1
    g = np.arange(4)
    mean = 0.5 * (1 + growth) ** g
    return mean * np.exp(rng.normal(0, 0.06, (draws, seeds, 4)))


def test_p1_false_confirmations_stay_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    null = report("P1 null (rise = margin)", p1_core(p1_null(rng, DRAWS), CFG)["code"])
    assert null["confirmed"] <= limit(DRAWS), null["text"]
    flat = report("P1 flat risk", p1_core(loops(rng, DRAWS, 5, 3, 0.5, 0.0, 0.03), CFG)["code"])
    assert flat["confirmed"] <= 0.001, flat["text"]


def test_p1_power_at_the_documented_effect():
    """Documented: log(final / gen 0) beyond log(1 + margin) by 1.5 per-seed sd."""
    rng = np.random.default_rng(2)
    sd = 0.06  # of log risk per generation: the log rise has sd 0.06 sqrt(2)
    effect = math.log1p(CFG.p1_margin) + 1.5 * sd * math.sqrt(2)
    g = np.arange(4)
    risk = 0.5 * np.exp(effect * g / 3 + rng.normal(0, sd, (DRAWS, 5, 4)))
    power = report("P1 power (1.5 sd beyond the margin)", p1_core(risk, CFG)["code"])
    assert power["confirmed"] >= 0.80, power["text"]


# ---------------------------------------------------------------------------------------------
# P2: bounded, TOST of slope / plateau inside +-margin


def test_p2_false_confirmations_stay_at_the_nominal_rate():
    """Risk that grows by exactly the margin x plateau per generation is not bounded."""
    rng = np.random.default_rng(3)
    window = [7, 8, 9, 10]
    slope = CFG.p2_margin * 0.5
    risk = 0.5 + slope * (np.array(window) - 8.5) + rng.normal(0, 0.011, (DRAWS, 5, 4))
    null = report("P2 null (slope = margin)", p2_core(risk, window, CFG)["code"])
    assert null["confirmed"] <= limit(DRAWS), null["text"]
    # the case: a risk truly growing 10% per generation is never "bounded", at any
    # number of seeds, even with min_seeds lowered to 2 (the TOST itself, not the seed rule)
    loose = dataclasses.replace(CFG, min_seeds=2)
    for seeds in (1, 2, 5):
        g = np.array([1, 2, 3])
        grow = 0.74 * 1.1 ** g + rng.normal(0, 0.03, (DRAWS, seeds, 3))
        r = report(f"P2 10%/generation growth, {seeds} seed(s)", p2_core(grow, list(g),
                                                                        loose)["code"])
        assert r["confirmed"] == 0.0, r["text"]


def test_p2_power_at_the_documented_effect():
    """Documented: a flat plateau whose per-seed slope / plateau has sd at most margin / 2."""
    rng = np.random.default_rng(4)
    window = [7, 8, 9, 10]
    sd_slope = CFG.p2_margin / 2
    noise = sd_slope * math.sqrt(5) * 0.5  # per-point sd giving that slope sd (Sxx = 5)
    risk = 0.5 + rng.normal(0, noise, (DRAWS, 5, 4))
    power = report("P2 power (flat, slope sd = margin / 2)", p2_core(risk, window, CFG)["code"])
    assert power["confirmed"] >= 0.80, power["text"]


# ---------------------------------------------------------------------------------------------
# P2 heuristic: larger lambda, lower plateau (trend with seeds as blocks)


def order_data(rng, change: float, draws: int = DRAWS, seeds: int = 5, sd: float = 0.03):
    lams = np.array([0.25, 0.5, 1.0])
    base = 0.5 * (1 + change * (lams - lams.mean()) / (lams.max() - lams.min()))
    seed_effect = rng.normal(0, 0.05, (draws, seeds, 1))  # blocks: a seed shifts every lambda
    return base + seed_effect + rng.normal(0, sd, (draws, seeds, 3)), list(lams)


def test_ordering_calibration_and_power():
    rng = np.random.default_rng(5)
    null = report("ordering null (change = -margin)",
                  order_core(*order_data(rng, -CFG.order_margin), CFG)["code"])
    assert null["confirmed"] <= limit(DRAWS), null["text"]
    # documented: the plateau falls by the margin plus 1.5 per-seed sd of the relative change
    lams = np.array([0.25, 0.5, 1.0])
    sxx = float(((lams - lams.mean()) ** 2).sum())
    sd_change = 0.03 / math.sqrt(sxx) * (lams.max() - lams.min()) / 0.5
    power = report("ordering power (1.5 sd beyond the margin)", order_core(
        *order_data(rng, -CFG.order_margin - 1.5 * sd_change), CFG)["code"])
    assert power["confirmed"] >= 0.80, power["text"]


# ---------------------------------------------------------------------------------------------
# P3: gamma against the chaos ceiling, shrinking with n, bounded in i


NS = [64, 256, 1024, 4096]


def gamma_data(rng, slope: float, draws: int = DRAWS, seeds: int = 5, sd: float = 0.3):
    """(draws, seeds, len(NS)) gamma = 0.3 n^slope x lognormal(sd), a seed effect shared."""
    n = np.array(NS, dtype=float)
    seed_effect = rng.normal(0, 0.2, (draws, seeds, 1))
    return 0.3 * n**slope * np.exp(seed_effect + rng.normal(0, sd, (draws, seeds, len(NS))))


def test_p3_shrink_calibration_and_power():
    rng = np.random.default_rng(6)
    null = report("P3(a) null (slope = -margin)",
                  p3a_core(gamma_data(rng, -CFG.p3_shrink_margin), NS, CFG)["code"])
    assert null["confirmed"] <= limit(DRAWS), null["text"]
    # documented: the margin plus 1.5 per-seed sd of the slope (0.3 / sqrt(Sxx of log n))
    logn = np.log(NS)
    sd_slope = 0.3 / math.sqrt(float(((logn - logn.mean()) ** 2).sum()))
    slope = -CFG.p3_shrink_margin - 1.5 * sd_slope
    power = report(f"P3(a) power (slope {slope:.3f}, 1.5 sd beyond the margin)",
                   p3a_core(gamma_data(rng, slope), NS, CFG)["code"])
    assert power["confirmed"] >= 0.80, power["text"]


def test_p3_chaos_ceiling_is_not_read_as_below():
    rng = np.random.default_rng(7)
    chaos = 0.4 * np.exp(rng.normal(0, 0.2, (DRAWS, 5)))
    at_margin = CFG.chaos_ratio * chaos * np.exp(rng.normal(0, 0.3, (DRAWS, 5)))
    below = np.mean(chaos_core(at_margin, chaos, CFG)["p_confirm"] < CFG.alpha)
    print(f"\n[calibration] gamma at chaos_ratio x the ceiling read as below: {below:.1%}")
    assert below <= limit(DRAWS), f"ratio at the margin read as below in {below:.1%}"
    at_ceiling = chaos * np.exp(rng.normal(0, 0.3, (DRAWS, 5)))
    assert np.mean(chaos_core(at_ceiling, chaos, CFG)["p_confirm"] < CFG.alpha) == 0.0
    clear = 0.1 * chaos * np.exp(rng.normal(0, 0.3, (DRAWS, 5)))
    assert np.mean(chaos_core(clear, chaos, CFG)["p_confirm"] < CFG.alpha) >= 0.95


def test_p3_bounded_in_generation_calibration():
    rng = np.random.default_rng(8)
    window = [6, 7, 8]
    g = np.array(window) - 7
    grows = 0.2 * (1 + CFG.p3_bounded_margin * g) * np.exp(rng.normal(0, 0.03, (DRAWS, 5, 3)))
    null = report("P3(b) null (slope = margin)",
                  p2_core(grows, window, CFG, margin=CFG.p3_bounded_margin)["code"])
    assert null["confirmed"] <= limit(DRAWS), null["text"]


# ---------------------------------------------------------------------------------------------
# P4: decay exponent of y = E_inf + A n^b, seed bootstrap


P4_NS = [16, 40, 100, 251, 631, 1600]  # 6 n over 2 decades


def decay_data(rng, slope: float, draws: int, seeds: int = 5, floor: float = 0.02,
               rel: float = 0.1) -> np.ndarray:
    mean = floor + np.asarray(P4_NS, float) ** slope
    return mean * (1 + rel * rng.normal(size=(draws, seeds, len(P4_NS))))


def p4_rates(slope: float, draws: int, seed: int, boot: int = 200, **kw) -> dict:
    cfg = dataclasses.replace(CFG, bootstrap=boot)
    rng = np.random.default_rng(seed)
    out = p4_core(decay_data(rng, slope, draws, **kw), P4_NS, cfg, rng)
    return report(f"P4 slope {slope} ({kw or 'defaults'})", out["code"])


def test_p4_a_slope_of_exactly_minus_a_quarter_is_rarely_consistent():
    draws = 1000  # ~3 s: enough to tell 5% from a normal quantile's ~9%
    null = p4_rates(-0.25, draws, 9)
    assert null["confirmed"] <= limit(draws), null["text"]
    assert null["refuted"] == 0.0  # P4 is never refuted


def test_p4_power_at_the_documented_effect():
    """Documented: exponent -0.5 (the bound's middle term), 10% noise, 6 n over 2 decades."""
    power = p4_rates(-0.5, BOOT_DRAWS, 10)
    assert power["confirmed"] >= 0.80, power["text"]


def reproduction_decay() -> tuple[list[int], np.ndarray]:
    """(ns, values (seeds, ns)) of P4's metric in the committed CPU reproduction's decay run."""
    summary = json.loads((RESULTS / "cpu" / "runs" / "decay" / "summary.json").read_text())
    ns, _, values, _ = decay_table(summary["generations"], CFG.p4_metric)
    return ns, values


def clopper_pearson(k: int, draws: int) -> tuple[float, float]:
    """The exact 95% interval of a rate seen k times in `draws`."""
    low = stats.beta.ppf(0.025, k, draws - k + 1) if k else 0.0
    high = stats.beta.ppf(0.975, k + 1, draws - k) if k < draws else 1.0
    return float(low), float(high)


def flat_truth_rates(draws: int, boot: int, seed: int) -> tuple[int, int]:
    """(confirmed, confirmed without the edge rule) over `draws` simulated reports of a flat
    truth: no decay at all, each n's value the reproduction's mean plus normal noise with its
    spread over seeds at that n, 5 seeds."""
    ns, values = reproduction_decay()
    rng = np.random.default_rng(seed)
    sim = values.mean() + values.std(0, ddof=1) * rng.normal(size=(draws, 5, len(ns)))
    out = p4_core(sim, ns, dataclasses.replace(CFG, bootstrap=boot), rng)
    k = int(np.sum(out["code"] == 0))
    without_edge = int(np.sum(out["p_confirm"] < CFG.alpha))
    low, high = clopper_pearson(k, draws)
    old_low, old_high = clopper_pearson(without_edge, draws)
    print(f"\n[calibration] P4 flat truth, reproduction's noise ({draws} Monte Carlo reports, "
          f"{boot} bootstrap replicates): confirmed {k}/{draws} = {k / draws:.1%} "
          f"(95% interval {low:.1%}-{high:.1%}); the same tests without the edge rule "
          f"{without_edge / draws:.1%} ({old_low:.1%}-{old_high:.1%})")
    return k, without_edge


def test_p4_a_flat_truth_is_rarely_consistent_with_the_bound():
    """No decay, noise as in the committed reproduction's decay records: a chance high value at
    the smallest n fits as n^-3 at the edge of the exponent's range, and the bootstrap piles up
    there too; such a fit is never evidence, so a flat truth is confirmed at most 5% of the
    time (about 7% without the edge rule)."""
    draws = 200
    k, _ = flat_truth_rates(draws, boot=500, seed=2024)
    assert k <= 0.05 * draws, f"flat truth confirmed {k}/{draws}"


# ---------------------------------------------------------------------------------------------
# P5: interior optimum and its trend, seed bootstrap


P5_MS, P5_NS = [0, 250, 500, 1000, 2000], [500, 1000, 2000]


def augment_data(rng, optimum_index: list[int], curvature: float, draws: int,
                 seeds: int = 5, sd: float = 0.02) -> np.ndarray:
    j = np.arange(len(P5_MS))
    mean = 0.5 + curvature * (j[None, :] - np.array(optimum_index)[:, None]) ** 2
    return mean[None, :, :, None] + rng.normal(0, sd, (draws, len(P5_NS), len(P5_MS), seeds))


def p5_rates(name, optimum, curvature, draws, seed, seeds=5):
    cfg = dataclasses.replace(CFG, bootstrap=300)
    rng = np.random.default_rng(seed)
    out = p5_core(augment_data(rng, optimum, curvature, draws, seeds), P5_MS, P5_NS, cfg, rng)
    return report(name, out["code"])


def test_p5_flat_risk_is_not_an_interior_optimum():
    null = p5_rates("P5 flat in m", [2, 2, 2], 0.0, BOOT_DRAWS, 11)
    assert null["confirmed"] <= limit(BOOT_DRAWS), null["text"]
    fixed = p5_rates("P5 interior but m* constant in n", [2, 2, 2], 0.04, BOOT_DRAWS, 12)
    assert fixed["confirmed"] <= limit(BOOT_DRAWS), fixed["text"]


def test_p5_power_at_the_documented_effect():
    """Documented: neighbours of m* worse by 2 noise sd, m* one grid step lower per doubling."""
    power = p5_rates("P5 power", [3, 2, 1], 0.04, BOOT_DRAWS, 13)
    assert power["confirmed"] >= 0.80, power["text"]


# ---------------------------------------------------------------------------------------------
# Few seeds: underpowered, whatever the data say


@pytest.mark.parametrize("seeds", [1, 2, CFG.min_seeds - 1])
def test_fewer_than_min_seeds_are_underpowered_never_confirmed_or_refuted(seeds):
    rng = np.random.default_rng(14 + seeds)
    cfg = dataclasses.replace(CFG, bootstrap=200)
    huge = {
        "P1 strong collapse": p1_core(loops(rng, 500, seeds, 3, 0.5, 0.3, 0.01), cfg),
        "P1 falling": p1_core(loops(rng, 500, seeds, 3, 0.5, -0.2, 0.01), cfg),
        "P2 flat": p2_core(0.5 + rng.normal(0, 0.001, (500, seeds, 3)), [1, 2, 3], cfg),
        "P2 growing": p2_core(loops(rng, 500, seeds, 3, 0.5, 0.3, 0.01)[..., 1:], [1, 2, 3], cfg),
        "ordering": order_core(*order_data(rng, -0.5, 500, seeds, 0.001), cfg),
        "P3(a)": p3a_core(gamma_data(rng, -1.0, 500, seeds, 0.01), NS, cfg),
        "P4": p4_core(decay_data(rng, -1.0, 100, seeds, rel=0.01), P4_NS, cfg, rng),
        "P5": p5_core(augment_data(rng, [3, 2, 1], 0.1, 100, seeds, 0.001), P5_MS, P5_NS, cfg,
                      rng),
    }
    for name, out in huge.items():
        r = report(f"{name}, {seeds} seed(s)", out["code"])
        assert r["underpowered"] == 1.0, r["text"]
    chaos = chaos_core(np.full((10, seeds), 0.01), np.full((10, seeds), 1.0), cfg)
    assert np.all(chaos["code"] == 3) and not np.any(chaos["p_confirm"] < -1)


# ---------------------------------------------------------------------------------------------
# The demo's design: never confirmed


def test_demo_design_is_never_confirmed_for_p1_p2_p3():
    """1-2 seeds, generations 0-3, noise sd 0.03, with the demo's levels (issue 11): collapse
    0.82 -> 1.00 at lambda = 0, a plateau near 0.74 at lambda = 0.5 that truly grows 10% per
    generation, gamma 0.74 at n = 64 and 0.36 at n = 1024 against a chaos ceiling of 0.44."""
    rng = np.random.default_rng(20)
    g = np.arange(4)
    for seeds in (1, 2):
        collapse = np.array([0.82, 0.92, 0.98, 1.0]) + rng.normal(0, 0.03, (DRAWS, seeds, 4))
        grow = 0.74 * 1.1 ** g + rng.normal(0, 0.03, (DRAWS, seeds, 4))
        flat = 0.74 + rng.normal(0, 0.03, (DRAWS, seeds, 4))
        gamma = np.array([0.74, 0.36]) * np.exp(rng.normal(0, 0.1, (DRAWS, seeds, 2)))
        chaos = np.array([0.8, 0.44]) * np.exp(rng.normal(0, 0.1, (DRAWS, seeds, 2)))
        outs = {"P1": p1_core(collapse, CFG), "P2 growing": p2_core(grow[..., 1:], [1, 2, 3], CFG),
                "P2 flat": p2_core(flat[..., 1:], [1, 2, 3], CFG),
                "P3(a)": p3a_core(gamma, [64, 1024], CFG),
                "P3 ceiling": chaos_core(np.moveaxis(gamma, -1, 0), np.moveaxis(chaos, -1, 0),
                                         CFG)}
        for name, out in outs.items():
            r = report(f"demo design {name}, {seeds} seed(s)", out["code"])
            assert r["confirmed"] == 0.0 and r["refuted"] == 0.0, r["text"]


# ---------------------------------------------------------------------------------------------
# Holm's correction: refutations across groups


def test_holm_keeps_the_family_wise_false_refutation_rate():
    """Six groups whose truth is exactly at P1's margin (each refutes 5% of the time alone): a
    prediction refuted when any group refutes would be refuted ~26% of the time."""
    rng = np.random.default_rng(21)
    draws, groups = 2000, 6
    out = p1_core(p1_null(rng, draws * groups), CFG)
    p = np.asarray(out["p_refute"]).reshape(draws, groups)
    code = np.asarray(out["code"]).reshape(draws, groups)
    refuted = 0
    for d in range(draws):
        pred = Prediction(1, "", "", ("confirmed", "refuted", "inconclusive", "underpowered"))
        pred.groups = [GroupResult(f"g{i}", CODES[int(code[d, i])], n_seeds=5,
                                   p_refute=float(p[d, i]), key={"n": i})
                       for i in range(groups)]
        finalise(pred, CFG, lambda gs: gs[0])
        refuted += pred.verdict == "refuted"
    any_group = float(np.mean((p < CFG.alpha).any(1)))
    rate = refuted / draws
    print(f"\n[calibration] Holm over {groups} groups: refuted {rate:.1%} (any group alone "
          f"{any_group:.1%})")
    assert rate <= limit(draws), f"refuted {rate:.1%}, uncorrected {any_group:.1%}"
    assert any_group > 0.15


# ---------------------------------------------------------------------------------------------
# Slow: the null checks with ten times the draws


@pytest.mark.slow
def test_null_rates_with_many_draws():
    rng = np.random.default_rng(30)
    big = 10 * DRAWS
    checks = {
        "P1": p1_core(p1_null(rng, big), CFG),
        "ordering": order_core(*order_data(rng, -CFG.order_margin, big), CFG),
        "P3(a)": p3a_core(gamma_data(rng, -CFG.p3_shrink_margin, big), NS, CFG),
    }
    for name, out in checks.items():
        r = report(f"{name} null, many draws", out["code"])
        assert r["confirmed"] <= limit(big), r["text"]
    for floor in (0.02, 0.0):
        r = p4_rates(-0.25, 3000, 31, boot=300, floor=floor)
        assert r["confirmed"] <= limit(3000), r["text"]
    k, _ = flat_truth_rates(1000, boot=CFG.bootstrap, seed=2024)
    assert k <= 0.05 * 1000, f"flat truth confirmed {k}/1000"
    r = p5_rates("P5 flat, many draws", [2, 2, 2], 0.0, 3000, 32)
    assert r["confirmed"] <= limit(3000), r["text"]


# ---------------------------------------------------------------------------------------------
# Predictions 6-8 (docs/THEORY.md section 7): every statistic at its margin, 20,000 draws

EXT_DRAWS = 20000


def _at_margin_window(rng, slope: float, draws: int, seeds: int = 5, sd: float = 0.005):
    """(draws, seeds, 3) window risks around a plateau of 1 with a true relative slope."""
    window = [4, 5, 6]
    per_seed = rng.normal(0, sd / 2, (draws, seeds, 1))  # seed-level offsets
    risk = 1 + slope * (np.array(window) - 5) + per_seed + rng.normal(0, sd, (draws, seeds, 3))
    return risk, window


def test_p6_parts_and_their_combination_at_the_margins():
    from icl_stl.report.predictions.p6_filters import p6_combine, p6a_core
    from icl_stl.report.verifier_quality import p6b_core

    rng = np.random.default_rng(60)
    risk, window = _at_margin_window(rng, CFG.p6_margin, EXT_DRAWS)
    a = p6a_core(risk, window, CFG)
    ra = report("P6(a) slope exactly +p6_margin", a["code"])
    assert ra["confirmed"] <= limit(EXT_DRAWS), ra["text"]
    quality = [math.log(4), math.log(100), math.log(10000)]  # log verifier_n_real
    span = quality[-1] - quality[0]
    slope = -CFG.p6_order_margin / span  # a fall of exactly the margin across the range
    plateaus = 1 + slope * (np.array(quality) - np.mean(quality)) \
        + rng.normal(0, 0.03, (EXT_DRAWS, 5, 3))
    b = p6b_core(plateaus, quality, CFG)
    rb = report("P6(b) fall exactly -p6_order_margin", b["code"])
    assert rb["confirmed"] <= limit(EXT_DRAWS), rb["text"]
    both, _ = p6_combine(a, b, CFG)
    rc = report("P6 (a) and (b) both at their margins", both)
    assert rc["confirmed"] <= limit(EXT_DRAWS), rc["text"]
    # the claim exactly true at the margin of each part: Bonferroni keeps false refutations
    risk_in, _ = _at_margin_window(rng, CFG.p6_margin, EXT_DRAWS)
    a_in = p6a_core(risk_in, window, CFG)
    plateaus_in = 1 - CFG.p6_order_margin / span * (np.array(quality) - np.mean(quality)) \
        + rng.normal(0, 0.03, (EXT_DRAWS, 5, 3))
    _, p_refute = p6_combine(a_in, p6b_core(plateaus_in, quality, CFG), CFG)
    refuted = float(np.mean(p_refute < CFG.alpha))
    print(f"\n[calibration] P6 combination, both parts at the margin: refuted {refuted:.2%}")
    assert refuted <= limit(EXT_DRAWS), f"P6 combination refuted {refuted:.2%}"


def test_p7_equivalence_refutes_at_alpha_over_two_per_side_and_collapse_part():
    from icl_stl.report.predictions.p7_schedules import p7a_core, p7b_core

    rng = np.random.default_rng(70)
    margin = math.log1p(CFG.p7_margin)
    const = np.exp(rng.normal(0, 0.02, (EXT_DRAWS, 5, 3)))
    for side in (+1, -1):  # the decaying loop exactly at the margin on one side
        noise = rng.normal(0, 0.03, (EXT_DRAWS, 5, 1))
        decay = const.mean(-1, keepdims=True) * np.exp(side * margin + noise)
        out = p7a_core(decay, const, CFG)
        r = report(f"P7(a) log ratio exactly {side:+d} x log(1 + p7_margin)", out["code"])
        assert r["confirmed"] <= limit(EXT_DRAWS), r["text"]
        assert r["refuted"] <= limit(EXT_DRAWS, CFG.alpha / 2), r["text"]
        assert r["refuted"] >= CFG.alpha / 2 - 0.01, r["text"]  # not far stricter than stated
    risk, window = _at_margin_window(rng, CFG.p7_collapse_margin, EXT_DRAWS)
    rb = report("P7(b) slope exactly +p7_collapse_margin", p7b_core(risk, window, CFG)["code"])
    assert rb["confirmed"] <= limit(EXT_DRAWS), rb["text"]


def test_p8_parts_and_their_combination_at_the_margins():
    from icl_stl.report.predictions.p8_pools import p8_combine, p8a_core, p8b_core

    rng = np.random.default_rng(80)
    dmmse = np.full((EXT_DRAWS, 5), 0.01)
    at_plus = dmmse * np.exp(CFG.p8_margin + rng.normal(0, 0.3, (EXT_DRAWS, 5)))
    a = p8a_core(at_plus, dmmse, CFG)
    ra = report("P8(a) log ratio exactly +p8_margin", a["code"])
    assert ra["confirmed"] <= limit(EXT_DRAWS), ra["text"]
    at_minus = dmmse * np.exp(-CFG.p8_margin + rng.normal(0, 0.3, (EXT_DRAWS, 5)))
    rm = report("P8(a) log ratio exactly -p8_margin", p8a_core(at_minus, dmmse, CFG)["code"])
    assert rm["refuted"] <= limit(EXT_DRAWS), rm["text"]
    margin = math.log1p(CFG.p8_drift_margin)
    null = rng.normal(0.3, 0.05, (EXT_DRAWS, 5))
    for side in (+1, -1):
        b = p8b_core(null + side * margin + rng.normal(0, 0.05, (EXT_DRAWS, 5)), null, CFG)
        rb = report(f"P8(b) difference exactly {side:+d} x margin", b["code"])
        assert rb["confirmed"] <= limit(EXT_DRAWS), rb["text"]  # alpha / 2 expected
        assert rb["refuted"] <= limit(EXT_DRAWS), rb["text"]  # TOST at its boundary
    b = p8b_core(null + margin + rng.normal(0, 0.05, (EXT_DRAWS, 5)), null, CFG)
    both, _ = p8_combine(a, b, CFG)
    rc = report("P8 (a) and (b) both at their margins", both)
    assert rc["confirmed"] <= limit(EXT_DRAWS), rc["text"]
    # both parts exactly at their refutation boundary: Bonferroni keeps false refutations
    a_edge = p8a_core(at_minus, dmmse, CFG)
    _, p_refute = p8_combine(a_edge, b, CFG)
    refuted = float(np.mean(p_refute < CFG.alpha))
    print(f"\n[calibration] P8 combination, both parts at the margin: refuted {refuted:.2%}")
    assert refuted <= limit(EXT_DRAWS), f"P8 combination refuted {refuted:.2%}"


@pytest.mark.parametrize("seeds", [1, 2, CFG.min_seeds - 1])
def test_extension_rules_are_underpowered_with_fewer_than_min_seeds(seeds):
    """Strong effects on too few seeds: never confirmed or refuted."""
    from icl_stl.report.predictions.p6_filters import p6a_core
    from icl_stl.report.predictions.p7_schedules import p7a_core
    from icl_stl.report.predictions.p8_pools import p8a_core, p8b_core

    rng = np.random.default_rng(90 + seeds)
    window = [4, 5, 6]
    flat_risk = 1 + rng.normal(0, 1e-4, (200, seeds, 3))
    outs = [p6a_core(flat_risk, window, CFG)["code"],
            p7a_core(flat_risk, flat_risk, CFG)["code"],
            p8a_core(np.full((200, seeds), 1.0), np.full((200, seeds), 0.01), CFG)["code"],
            p8b_core(rng.normal(5, 0.01, (200, seeds)), np.zeros((200, seeds)), CFG)["code"]]
    for code in outs:
        assert set(np.unique(code)) == {3}, code  # C_UNDERPOWERED
