"""P4 version 2: early-stopped decay runs, every fitted n learning in context, the fits listed
in advance and their agreement, the edge rule, "no decay on [a, b]", and its calibration."""

from __future__ import annotations

import math

import numpy as np
from test_report import RIDGE, ZERO, record, verdicts_json, write_loop

from icl_stl.persistence import atomic_write_json
from icl_stl.report.decay_v2 import OUTCOMES, p4v2_core
from icl_stl.report.predictions import REGISTRY, REGISTRY_V1, p4_decay, p4_decay_v2
from icl_stl.report.report import verdicts_of, write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p4_v2 import rate_with_interval, simulate

NS = [200, 430, 1000, 2150, 4640, 10000, 20000]  # the pilot's grid: 7 n over 2 decades
SEEDS = tuple(range(10))


def outcome(values, ns=NS, seed=0) -> str:
    out = p4v2_core(np.asarray(values, float), ns, np.random.default_rng(seed), bootstrap=500)
    return OUTCOMES[int(out["outcome"])]


def table(curve, sd, seeds=10, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(curve, float) + sd * rng.standard_normal((seeds, len(NS)))


N = np.asarray(NS, float)


def test_v2_is_registered_and_v1_kept_for_rules_v1():
    assert p4_decay_v2 in REGISTRY and p4_decay not in REGISTRY
    assert p4_decay in REGISTRY_V1 and p4_decay_v2 not in REGISTRY_V1


def test_a_decay_faster_than_the_bound_is_consistent_in_every_fit():
    assert outcome(table(0.05 * (N / 200) ** -0.5, 0.002)) == "consistent"


def test_a_flat_gap_reads_no_decay():
    assert outcome(table(np.full(len(NS), 0.05), 0.002)) == "no_decay"


def test_a_fit_at_the_edge_is_never_evidence():
    """A flat gap with one high value at the smallest n fits as A n^-3, the search range's edge:
    read as not identified, never as consistent (nor as no decay)."""
    curve = np.full(len(NS), 0.05)
    curve[0] = 0.3
    values = table(curve, 0.001)
    out = p4v2_core(values, NS, np.random.default_rng(0), bootstrap=500)
    assert any(bool(f["at_edge"]) for f in out["fits"].values())
    assert OUTCOMES[int(out["outcome"])] == "not_identified"


def test_too_few_seeds_is_underpowered():
    assert outcome(table(0.05 * (N / 200) ** -0.5, 0.002, seeds=3)) == "underpowered"


def test_a_flat_truth_is_read_consistent_in_at_most_5_percent_of_draws():
    """Calibration (2,000 draws): a flat gap, noise 20% of its level at every n, 10 seeds."""
    rates = simulate(np.full(len(NS), 0.05), 0.01, NS, 10, 2000, seed=5, bootstrap=300)
    low, high = rate_with_interval(rates["consistent"], 2000)
    assert high <= 0.05, (rates, low, high)
    assert rates["no_decay"] > 0.5  # the negative outcome is what a flat truth gets


def test_a_truth_at_the_bound_is_rarely_consistent_and_a_faster_one_mostly_is():
    at_bound = simulate(0.05 * (N / 200) ** -0.25, 0.005, NS, 10, 1000, seed=6, bootstrap=300)
    assert at_bound["consistent"] <= 0.05
    faster = simulate(0.05 * (N / 200) ** -0.5, 0.01, NS, 10, 1000, seed=7, bootstrap=300)
    assert faster["consistent"] >= 0.8 and faster["no_decay"] == 0.0


# ---------------------------------------------------------------------------------------------
# Through the report


def write_decay_v2(run_dir, gap, closed=lambda n: 0.97, stopped=True, seeds=SEEDS, ns=NS,
                   generations=0):
    """A decay run's records: generation 0 closes closed(n) of the zero-to-ridge gap, the final
    generation has generalization gap gap(n, s)."""
    records = []
    for n in ns:
        for s in seeds:
            risk = ZERO - closed(n) * (ZERO - RIDGE)
            extra = {"stopped_step": 1000, "held_out_n": n // 10} if stopped else {}
            for g in range(generations + 1):
                records.append(record(s, 0.5, n, g, risk, gen_gap=gap(n, s) * (1 + 0.1 * g),
                                      zero_risk=ZERO, **extra))
    write_loop(run_dir, records)
    atomic_write_json(run_dir / "decay.json", {
        "kind": "decay", "metric": "excess_risk", "generation": generations, "ns": list(ns),
        "fit_ns": list(ns), "seeds": list(seeds), "real_fraction": 0.5})


def wiggle(n: int, s: int) -> float:
    return 1 + 0.05 * math.sin(11 * s + n)


def v2_report(tmp_path) -> dict:
    write_report([tmp_path / "runs"], tmp_path / "report", ReportConfig(), figures=False)
    assert verdicts_of(tmp_path / "report")
    return verdicts_json(tmp_path)["verdicts"]["4"]


def test_report_confirms_a_fast_decay_and_reports_the_gap_closed(tmp_path):
    write_decay_v2(tmp_path / "runs" / "d", lambda n, s: 2 * n ** -0.6 * wiggle(n, s),
                   generations=2)
    p4 = v2_report(tmp_path)
    assert p4["verdict"] == "confirmed" and p4["rules_version"] == "v2-provisional"
    assert p4["reading"] == "consistent with n^-1/4 or faster on [200, 20000]"
    group = p4["groups"][0]
    assert set(group["parts"]["gap_closed"]) == {str(n) for n in NS}
    assert group["parts"]["fits"].keys() == {"floor0_weighted", "free_floor_weighted",
                                             "floor0_unweighted"}
    ratio = group["parts"]["final_over_generation_0"]
    assert ratio["generation"] == 2 and abs(ratio["log_log_slope"]) < 1e-6  # bounded in n


def test_report_reads_no_decay_on_the_range(tmp_path):
    write_decay_v2(tmp_path / "runs" / "d", lambda n, s: 0.05 * wiggle(n, s))
    p4 = v2_report(tmp_path)
    assert p4["verdict"] == "inconclusive" and p4["reading"] == "no decay on [200, 20000]"
    assert p4["groups"][0]["parts"]["outcome"] == "no_decay"


def test_an_n_that_does_not_learn_in_context_is_left_out_and_named(tmp_path):
    write_decay_v2(tmp_path / "runs" / "d", lambda n, s: 2 * n ** -0.6 * wiggle(n, s),
                   closed=lambda n: 0.3 if n == 200 else 0.97)
    p4 = v2_report(tmp_path)
    group = p4["groups"][0]
    assert group["parts"]["range"]["left_out_ns"] == [200]
    assert group["parts"]["range"]["ns"] == NS[1:]
    # 6 n remain, but over less than 2 decades: too small a design to read
    assert p4["verdict"] == "underpowered" and "n left out" in group["numbers"]


def test_a_run_without_early_stopping_is_not_applicable(tmp_path):
    write_decay_v2(tmp_path / "runs" / "d", lambda n, s: 2 * n ** -0.6 * wiggle(n, s),
                   stopped=False)
    p4 = v2_report(tmp_path)
    assert p4["verdict"] == "not applicable"
    assert "without early stopping" in p4["groups"][0]["numbers"]


def test_the_pilot_readme_quotes_its_committed_timing():
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "docs" / "results" / "pilot-p4-v2"
    timing = json.loads((folder / "step_timing.json").read_text())
    readme = (folder / "README.md").read_text()
    per_step = (timing["user_cpu_s"] + timing["system_cpu_s"]) / timing["steps"]
    assert f"{timing['user_cpu_s']:.2f} s user" in readme
    assert f"{timing['system_cpu_s']:.2f} s system" in readme
    assert f"{per_step:.3f} s of CPU per ensemble step" in readme
    assert f"{timing['wall_s']:.0f} s of wall time" in readme
    assert round(per_step * timing["step_cap"] / 60) == 30 and "4,000 steps" in readme
