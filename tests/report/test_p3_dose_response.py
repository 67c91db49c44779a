"""P3, version 2: the paired recursion ratio, its signal gate, its calibration by simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icl_stl.report.collect import RunResult
from icl_stl.report.evidence import Evidence
from icl_stl.report.predictions import REGISTRY, REGISTRY_V1, p3_dose_response, p3_stability
from icl_stl.report.predictions.p3_dose_response import recursion_pseudo, verdict
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p3 import SlopeNoise, flat, linear, p3_rates, reused_reference
from icl_stl.report.stats import rates
from icl_stl.report.verdict import CONFIRMED, NOT_APPLICABLE, REFUTED

QS = [0.003, 0.01, 0.03]
N = 10_000
DRAWS = 4000


def test_v2_registry_judges_p3_as_a_dose_response_and_v1_keeps_the_stability_probe():
    assert REGISTRY[2] is p3_dose_response and REGISTRY_V1[2] is p3_stability


def test_paired_ratio_is_the_ratio_of_means_and_its_pseudo_values_average_to_it():
    rng = np.random.default_rng(0)
    b0 = rng.uniform(0.5, 1.5, size=7)
    bz, bh = rng.normal(2.0, 0.3, size=(7, 3)), rng.normal(1.0, 0.3, size=(7, 3))
    pseudo = recursion_pseudo(b0, bz, bh)
    rho = (bz - bh).mean(1).mean() / b0.mean()
    assert pseudo.mean() == pytest.approx(rho)
    # exact when every seed has the same ratio: no spread, whatever b0's spread
    exact = recursion_pseudo(b0, 3 * b0[:, None] * np.ones(3), b0[:, None] * np.ones(3))
    assert np.allclose(exact, 2.0)


def _record(seed, lam, generation, role, member, **extra):
    return {"member": member, "seed": seed, "real_fraction": lam, "n": N, "augment": 0,
            "generation": generation, "dose_role": role, "tag": f"{role}{member}",
            "test_risk": 0.30, "ridge_risk": 0.29, "zero_risk": 1.0, **extra}


def planted_run(slopes, seeds=range(10), generations=4, chaos=0.01, missed=(),
                noise=0.0, rng=None) -> RunResult:
    """A dose-response run whose chaos-subtracted slope at (lambda, generation) is
    slopes(lambda, generation); seeds in `missed` have one replaced loop off the gate."""
    records, member = [], 0
    for seed in seeds:
        for lam in (0.0, 0.5):
            for g in range(generations):
                b = slopes(lam, g) + (noise * rng.standard_normal() if noise else 0.0)
                records.append(_record(seed, lam, g, "base", member))
                records.append(_record(seed, lam, g, "chaos", member + 1, sq_dist=chaos,
                                       w2_sq=chaos, abs_dist=0.1, batch_order=1))
                for j, q in enumerate(QS):
                    for order in (0, 1):
                        bad = seed in missed and g == 0 and j == 0 and order == 0
                        records.append(_record(
                            seed, lam, g, "dose", member + 2 + 2 * j + order,
                            sq_dist=chaos + b * q, w2_sq=chaos + b * q, abs_dist=0.1,
                            fraction=q, batch_order=order,
                            **({"test_risk": 0.9} if bad else {})))
        member += 8
    return RunResult(Path("planted"), summary={"generations": records},
                     dose_response={"kind": "dose_response", "regime": "from_scratch"},
                     flat_settings={"loop.init": "from_scratch"})


def judge(run: RunResult, **cfg) -> tuple:
    evidence = Evidence.from_records([], {}, runs=[run])
    pred = verdict(evidence, ReportConfig(**cfg))
    return pred, pred.groups[0]


def test_planted_recursion_is_confirmed_and_its_absence_refuted():
    pred, group = judge(planted_run(lambda lam, g: 1.0 + (g if lam == 0 else 0.0),
                                    noise=0.1, rng=np.random.default_rng(1)))
    assert pred.verdict == CONFIRMED and group.estimate == pytest.approx(2.0, abs=0.15)
    assert group.scale == "dose_slope" and "chaos twin" in group.control
    assert group.margins["delta_3"] == ReportConfig().v2_p3_delta and group.n_seeds == 10
    assert group.parts["signal"]["estimate"] == pytest.approx(1.0, abs=0.1)
    flat_pred, flat_group = judge(planted_run(lambda lam, g: 1.0, noise=0.1,
                                              rng=np.random.default_rng(2)))
    assert flat_group.verdict == REFUTED and abs(flat_group.estimate) < 0.15
    json = pred.to_json()
    assert json["scale"] == "dose_slope" and json["seeds"] == 10 and "margins" in json


def test_no_dose_signal_above_the_chaos_floor_is_not_applicable():
    pred, group = judge(planted_run(lambda lam, g: 0.0, noise=0.5,
                                    rng=np.random.default_rng(3)))
    assert group.verdict == NOT_APPLICABLE and "chaos floor" in group.numbers


def test_a_seed_whose_loop_missed_the_gate_is_left_out_and_counted():
    pred, group = judge(planted_run(lambda lam, g: 1.0 + (g if lam == 0 else 0.0),
                                    seeds=range(12), missed=(3,)))
    assert group.left_out["missed_gate"] == 1 and group.left_out["loops"] == ["seed 3"]
    assert group.n_seeds == 10 and group.left_out["beyond_count"] == 1
    assert "left out" in group.numbers


def test_too_short_a_horizon_is_not_tested():
    _, group = judge(planted_run(lambda lam, g: 1.0, generations=2))
    assert group.verdict == "not tested" and "horizon" in group.numbers


# -- calibration by simulation (the report's own functions) ---------------------------------

NOISE = SlopeNoise(sigma=0.6, tau=0.2)  # per-seed slope noise in units of gamma_0^2


@pytest.mark.parametrize("seeds", [5, 10])
def test_false_confirm_at_the_margin_is_at_most_five_percent(seeds):
    cfg = ReportConfig()
    at_margin = p3_rates(1.0, flat(1.0 + cfg.v2_p3_delta), flat(1.0), seeds, NOISE, cfg,
                         draws=DRAWS, seed=seeds)
    assert at_margin["confirmed"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / DRAWS)


def test_flat_truth_and_no_signal_are_never_confirmed():
    cfg = ReportConfig()
    assert p3_rates(1.0, flat(1.0), flat(1.0), 10, NOISE, cfg, draws=DRAWS)["confirmed"] < 0.01
    no_signal = p3_rates(0.0, flat(1.0), flat(1.0), 10, NOISE, cfg, draws=DRAWS, seed=1)
    assert no_signal["confirmed"] < 0.01 and no_signal["not applicable"] > 0.9
    # the reference learner with reused real data: lambda = 0.5's ratio rises, not lambda 0's
    reference = p3_rates(1.0, reused_reference(0.0), reused_reference(0.5), 10, NOISE, cfg,
                         draws=DRAWS, seed=2)
    assert reference["confirmed"] < 0.01


def test_power_at_the_stated_effect():
    cfg = ReportConfig()
    power = p3_rates(1.0, linear(1.0), flat(1.0), 10, NOISE, cfg, draws=DRAWS, seed=3)
    assert power["confirmed"] >= 0.8


def test_reference_learner_ratio_matches_its_closed_form_at_the_first_generations():
    ratio = reused_reference(0.5)(np.arange(1.0, 4.0))
    assert ratio == pytest.approx([1.25, 1.5625, 1.765625])
    assert rates(np.array([0, 0, 1, 2]))["confirmed"] == 0.5
