"""The report's verdicts are computed from the data: planted results flip each verdict.

Every test writes run directories the way the CLIs do (summary.json with per-member records,
stability.json, decay.json), plants numbers for which a prediction holds or fails, and checks
the verdict REPORT.md and verdicts.json state. No model is trained here. The rules' error rates
are checked separately, on simulated draws (tests/report/test_calibration.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from icl_stl.cli.report import main as report_main
from icl_stl.persistence import atomic_write_json
from icl_stl.report.report import verdicts_of, write_report
from icl_stl.report.rules import ReportConfig

K = 5  # prompt length of the planted records
SEEDS = tuple(range(6))  # above the default min_seeds = 5
SETTINGS = {"task": {"d": 2, "k": K}, "model": {"arch": "gpt2"},
            "train": {"steps": 100, "batch_size": 64},
            "loop": {"learner": "transformer", "synthetic": "replace", "real_source": "reuse"},
            "seed": 0}
RIDGE, ZERO = 0.1, 1.0  # the gate: generation-0 risk <= 0.1 + 0.1 x 0.9 = 0.19


def record(seed: int, lam: float, n: int, generation: int, risk: float, augment: int = 0,
           **extra) -> dict:
    """One member's generation record with the fields loop summaries carry."""
    return {"member": extra.pop("member", 0), "seed": seed, "real_fraction": lam, "n": n,
            "augment": augment, "tag": "", "generation": generation, "test_risk": risk,
            "test_risk_per_position": [risk] * K, "test_ci_low": [0.9 * risk] * K,
            "test_ci_high": [1.1 * risk] * K, "ridge_risk": RIDGE, "excess_risk": risk - RIDGE,
            "gen_gap": extra.pop("gen_gap", 0.5 * (risk - RIDGE)), **extra}


def write_loop(run_dir: Path, records: list[dict], settings: dict = SETTINGS) -> Path:
    baseline = {"per_position": [0.5] * K, "ci_low": [0.4] * K, "ci_high": [0.6] * K}
    atomic_write_json(run_dir / "summary.json", {
        "members": [], "generations": records, "settings": settings, "ridge_alpha": 0.0,
        "baselines": {"ridge": {**baseline, "risk": RIDGE}, "zero": {**baseline, "risk": ZERO}}})
    return run_dir


def loops(risk, lams=(0.0, 0.5, 1.0), seeds=SEEDS, n=40, generations=6, augment=0):
    """Records of risk(lam, seed, generation) for every lambda, seed and generation."""
    return [record(s, lam, n, g, risk(lam, s, g), augment) for lam in lams for s in seeds
            for g in range(generations + 1)]


def noise(seed: int, g: int, scale: float = 0.004) -> float:
    return scale * math.sin(7 * seed + 3 * g + 1)


def healthy(lam: float, seed: int, g: int) -> float:
    """Collapse at lambda = 0 (linear growth), plateaus at lambda > 0 ordered by lambda."""
    if lam == 0:
        return 0.15 + 0.05 * g + noise(seed, g)
    return 0.15 + 0.05 * (1 - lam) * min(g, 2) + noise(seed, g)


def report(tmp_path: Path, cfg: ReportConfig | None = None) -> dict[int, str]:
    """Verdicts of the runs under tmp_path/runs; P1 and P2 by the version-1 rules these planted
    records are written for (tests/report/test_rules_v2.py plants matched controls)."""
    write_report([tmp_path / "runs"], tmp_path / "report", cfg or ReportConfig(rules="v1"))
    return verdicts_of(tmp_path / "report")


def verdicts_json(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report" / "verdicts.json").read_text())


# ---------------------------------------------------------------------------------------------
# Predictions 1 and 2


def test_collapse_and_plateau_confirmed_from_healthy_data(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy))
    verdicts = report(tmp_path)
    assert verdicts[1] == "confirmed" and verdicts[2] == "confirmed"
    assert verdicts[3] == verdicts[4] == verdicts[5] == "not tested"
    data = verdicts_json(tmp_path)
    assert data["verdicts"]["2"]["ordering"]["verdict"] == "confirmed"
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| 1 |" in text and "**confirmed**" in text and "![risk against generation" in text
    assert "min_seeds" in text and "Holm" in text  # the rules and settings are printed
    figures = list((tmp_path / "report" / "figures").glob("*.png"))
    assert len(figures) >= 2 and all(f.stat().st_size > 1000 for f in figures)


def test_verdicts_json_holds_numbers(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy))
    report(tmp_path)
    data = verdicts_json(tmp_path)
    p1 = data["verdicts"]["1"]
    for key in ("verdict", "estimate", "interval", "margin", "n_seeds", "min_detectable_effect",
                "groups"):
        assert key in p1, key
    assert p1["n_seeds"] == len(SEEDS) and p1["margin"] == pytest.approx(math.log(1.1))
    lo, hi = p1["interval"]
    assert lo < p1["estimate"] < hi and p1["min_detectable_effect"] > 0
    group = p1["groups"][0]
    assert {k: group[k] for k in ("verdict", "n_seeds")} == {"verdict": "confirmed",
                                                            "n_seeds": len(SEEDS)}
    assert isinstance(group["estimate"], float) and len(group["interval"]) == 2
    assert data["ridge_gate"]["groups"] == 1 and data["ridge_gate"]["reached"] == 1
    assert data["settings"]["min_seeds"] == 5


@pytest.mark.parametrize("start, reached", [(0.15, 1), (0.3, 0)])
def test_training_gate_decides_applicability(tmp_path, start, reached):
    # ridge 0.1 and zero 1.0: generation 0 must be within 0.1 x 0.9 of ridge
    write_loop(tmp_path / "runs" / "a", loops(lambda lam, s, g: start + 0.05 * g
                                              + noise(s, g)))
    verdicts = report(tmp_path)
    data = verdicts_json(tmp_path)
    assert data["ridge_gate"] == {**data["ridge_gate"], "groups": 1, "reached": reached}
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert f"in {reached} of 1 loop groups" in text
    if not reached:
        assert verdicts[1] == verdicts[2] == "not applicable"
        gate = data["verdicts"]["1"]["groups"][0]["gate"]
        assert gate["gap_closed"] == pytest.approx((ZERO - start) / (ZERO - RIDGE), abs=0.01)
        assert "training gate failed: generation 0 closed 0.777" in text


def test_no_collapse_at_lambda_zero_refutes_p1(tmp_path):
    def falling(lam, seed, g):
        return 0.18 - 0.01 * g + noise(seed, g) if lam == 0 else healthy(lam, seed, g)

    write_loop(tmp_path / "runs" / "a", loops(falling))
    assert report(tmp_path)[1] == "refuted"


def test_growth_at_positive_lambda_refutes_p2(tmp_path):
    def growing(lam, seed, g):
        return 0.15 + 0.04 * g + noise(seed, g) if lam == 0.5 else healthy(lam, seed, g)

    write_loop(tmp_path / "runs" / "a", loops(growing))
    verdicts = report(tmp_path)
    assert verdicts[1] == "confirmed" and verdicts[2] == "refuted"
    refuting = [g for g in verdicts_json(tmp_path)["verdicts"]["2"]["groups"]
                if g["verdict"] == "refuted"]
    assert [g["group"] for g in refuting] == ["n=40, λ=0.5"]
    assert refuting[0]["p_refute_holm"] < 0.05


def test_plateau_rising_with_lambda_refutes_the_ordering_heuristic_only(tmp_path):
    def disordered(lam, seed, g):
        return 0.15 + 0.05 * lam * min(g, 2) + noise(seed, g) if lam > 0 else \
            healthy(lam, seed, g)

    write_loop(tmp_path / "runs" / "a", loops(disordered))
    verdicts = report(tmp_path)
    assert verdicts[2] == "confirmed"  # bounded at every lambda > 0
    assert verdicts_json(tmp_path)["verdicts"]["2"]["ordering"]["verdict"] == "refuted"


def test_ordering_is_not_tested_with_one_positive_lambda(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy, lams=(0.0, 0.5)))
    verdicts = report(tmp_path)
    assert verdicts[2] == "confirmed"
    assert verdicts_json(tmp_path)["verdicts"]["2"]["ordering"]["verdict"] == "not tested"


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_one_or_two_seeds_are_underpowered_whatever_the_data(tmp_path, seeds):
    """Seeds are the replicates, not the generations of one loop: with fewer than min_seeds
    seeds nothing is decided, whatever a regression over generations would say."""
    for slope in (0.05, -0.01):
        write_loop(tmp_path / "runs" / "a", loops(lambda lam, s, g, b=slope: 0.15 + b * g
                                                  + noise(s, g), lams=(0.0, 0.5), seeds=seeds))
        verdicts = report(tmp_path)
        assert verdicts[1] == verdicts[2] == "underpowered"
        p1 = verdicts_json(tmp_path)["verdicts"]["1"]
        assert p1["n_seeds"] == len(seeds)
        assert (p1["min_detectable_effect"] is None) == (len(seeds) == 1)  # no spread from 1


def test_too_few_generations_for_a_plateau_is_not_tested(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy, generations=2))
    verdicts = report(tmp_path)
    assert verdicts[2] == "not tested" and verdicts[1] == "confirmed"


def test_groups_outside_the_theorems_setting_are_shown_but_not_counted(tmp_path):
    def falling(lam, seed, g):
        return 0.18 - 0.01 * g + noise(seed, g)

    write_loop(tmp_path / "runs" / "gpt2", loops(healthy))
    lstm = {**SETTINGS, "model": {"arch": "lstm"}}
    write_loop(tmp_path / "runs" / "lstm", loops(falling), settings=lstm)
    assert report(tmp_path)[1] == "confirmed"
    groups = verdicts_json(tmp_path)["verdicts"]["1"]
    by_count = {g["counted"]: g for g in groups["groups"]}
    assert by_count[False]["verdict"] == "refuted" and "model.arch=lstm" in by_count[False]["group"]
    assert groups["primary_group"] == by_count[True]["group"]


def test_a_refutation_in_any_counted_group_survives_holm_and_refutes(tmp_path):
    def falling_at_small_n(lam, seed, g):
        return 0.18 - 0.01 * g + noise(seed, g)

    write_loop(tmp_path / "runs" / "big", loops(healthy, n=400))
    write_loop(tmp_path / "runs" / "small", loops(falling_at_small_n, n=20))
    verdicts = report(tmp_path)
    p1 = verdicts_json(tmp_path)["verdicts"]["1"]
    assert p1["primary_group"] == "n=400"  # the rule fixed in advance: the largest n
    assert verdicts[1] == "refuted" and "refuted in n=20" in p1["numbers"]
    # naming another primary group changes which numbers are reported, not the refutation
    report(tmp_path, ReportConfig(rules="v1", primary={"1": "n=20"}))
    assert verdicts_json(tmp_path)["verdicts"]["1"]["primary_group"] == "n=20"


def test_a_loop_in_two_runs_with_different_run_seeds_is_one_replicate(tmp_path):
    """The same member seed (so S_0 and training) measured on two test sets is averaged, not
    counted twice; runs with different member seeds pool as replicates."""
    half = SEEDS[:3]
    for run_seed in (0, 1):
        settings = {**SETTINGS, "seed": run_seed}
        write_loop(tmp_path / "runs" / f"same{run_seed}", loops(healthy, seeds=half),
                   settings=settings)
    assert verdicts_json_after(tmp_path)["verdicts"]["1"]["n_seeds"] == 3
    write_loop(tmp_path / "runs" / "other", loops(healthy, seeds=tuple(s + 10 for s in half)),
               settings={**SETTINGS, "seed": 2})
    assert verdicts_json_after(tmp_path)["verdicts"]["1"]["n_seeds"] == 6


def verdicts_json_after(tmp_path: Path) -> dict:
    report(tmp_path)
    return verdicts_json(tmp_path)


# ---------------------------------------------------------------------------------------------
# Prediction 3


def write_stability(run_dir: Path, gamma, chaos=lambda n, g, s: 5.0, ns=(16, 64, 256),
                    generations=5, lam=0.5, seeds=SEEDS, indices=(0, 1), gate_risk=0.15,
                    with_control=True) -> None:
    """A stability probe's outputs: base, neighbour (one per replaced index) and chaos-control
    records per (n, seed, generation) in summary.json, and stability.json."""
    records, member = [], 0
    for n in ns:
        for s in seeds:
            base = member
            for g in range(generations + 1):
                records.append(record(s, lam, n, g, gate_risk, twin="base", member=base))
            member += 1
            for i in indices:
                for g in range(generations + 1):
                    value = gamma(n, g, s) * (1 + 0.01 * i)
                    records.append(record(s, lam, n, g, gate_risk, twin="neighbour",
                                          twin_of=base, replaced_index=i, member=member,
                                          gamma_mean=value, gamma_max=3 * value))
                member += 1
            if with_control:
                for g in range(generations + 1):
                    value = chaos(n, g, s)
                    records.append(record(s, lam, n, g, gate_risk, twin="control", twin_of=base,
                                          member=member, gamma_mean=value, gamma_max=3 * value))
                member += 1
    write_loop(run_dir, records)
    atomic_write_json(run_dir / "stability.json", {
        "kind": "stability", "replacement": "fresh", "seeds": list(seeds), "ns": list(ns),
        "replaced_indices": list(indices), "real_fraction": lam,
        "chaos_control": "batch_order" if with_control else "none", "generations": []})


def wiggle(n: int, g: int, s: int) -> float:
    return 1 + 0.05 * math.sin(3 * s + 5 * g + n)


@pytest.mark.parametrize("gamma, expected", [
    (lambda n, g, s: n ** -0.5 * wiggle(n, g, s), "confirmed"),
    (lambda n, g, s: 0.05 * n ** 0.3 * wiggle(n, g, s), "refuted"),  # grows with n
    (lambda n, g, s: n ** -0.5 * (1 + 0.5 * g) * wiggle(n, g, s), "refuted"),  # grows with i
])
def test_stability_verdict_follows_gamma(tmp_path, gamma, expected):
    write_stability(tmp_path / "runs" / "s", gamma)
    assert report(tmp_path)[3] == expected
    assert list((tmp_path / "report" / "figures").glob("stability_*.png"))
    p3 = verdicts_json(tmp_path)["verdicts"]["3"]
    ceiling = p3["groups"][0]["parts"]["ceiling"]
    assert set(ceiling) == {"n=16", "n=64", "n=256"} and all(c["below"] for c in ceiling.values())


def test_gamma_at_the_chaos_ceiling_is_not_applicable(tmp_path):
    """One prompt in n moving the model as far as another batch order measures chaos."""
    write_stability(tmp_path / "runs" / "s", lambda n, g, s: n ** -0.5 * wiggle(n, g, s),
                    chaos=lambda n, g, s: 1.2 * n ** -0.5)
    assert report(tmp_path)[3] == "not applicable"
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "it measures chaos, not one prompt" in text and "gamma / ceiling" in text


def test_stability_without_a_chaos_control_is_not_applicable(tmp_path):
    write_stability(tmp_path / "runs" / "s", lambda n, g, s: n ** -0.5 * wiggle(n, g, s),
                    with_control=False)
    assert report(tmp_path)[3] == "not applicable"


def test_stability_pooled_over_a_sweep_of_n_and_every_record_counts(tmp_path):
    for n in (16, 64, 256):  # one probe run per n, as `-m data.n=16,64,256` writes them
        write_stability(tmp_path / "runs" / str(n), lambda n, g, s: n ** -0.5 * wiggle(n, g, s),
                        ns=(n,))
    assert report(tmp_path)[3] == "confirmed"
    p3 = verdicts_json(tmp_path)["verdicts"]["3"]
    assert len(p3["groups"]) == 1 and p3["n_seeds"] == len(SEEDS)
    assert "n=16" in p3["numbers"] and "n=256" in p3["numbers"]


def test_stability_of_uneven_generations_reads_the_generations_every_seed_reached(tmp_path):
    """Three of six seeds miss generation 4: part (b) is judged on the generations every seed
    reached (2, 3, 5), on all six seeds, and the groups are named as uneven. (Dropping the
    short seeds instead left (b) three seeds: too few to refute a gamma that grows with i.)"""
    write_stability(tmp_path / "runs" / "s", lambda n, g, s: n ** -0.5 * (1 + 0.5 * g)
                    * wiggle(n, g, s))
    path = tmp_path / "runs" / "s" / "summary.json"
    summary = json.loads(path.read_text())
    summary["generations"] = [r for r in summary["generations"]
                              if not (r["seed"] >= 3 and r["generation"] == 4)]
    atomic_write_json(path, summary)
    assert report(tmp_path)[3] == "refuted"
    data = verdicts_json(tmp_path)
    parts = data["verdicts"]["3"]["groups"][0]["parts"]
    assert parts["a"]["verdict"] == "confirmed" and parts["b"]["n=16"]["verdict"] == "refuted"
    assert data["verdicts"]["3"]["n_seeds"] == len(SEEDS)
    uneven = {g["group"]: g for g in data["uneven_groups"]}
    assert set(uneven) == {"n=16, m=0", "n=64, m=0", "n=256, m=0"}
    assert uneven["n=16, m=0"]["shared"] == "0, 1, 2, 3, 5"


def test_stability_with_one_seed_is_underpowered(tmp_path):
    write_stability(tmp_path / "runs" / "s", lambda n, g, s: n ** -0.5, seeds=(0,))
    assert report(tmp_path)[3] == "underpowered"


def test_stability_reports_that_epochs_differ_across_n(tmp_path):
    write_stability(tmp_path / "runs" / "s", lambda n, g, s: n ** -0.5 * wiggle(n, g, s))
    report(tmp_path)
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "epochs at generation 0 differ across n (n=16: 400, n=64: 100, n=256: 25)" in text


# ---------------------------------------------------------------------------------------------
# Prediction 4


DECAY_NS = (16, 40, 100, 251, 631, 1600)  # 6 n over 2 decades


def write_decay(run_dir: Path, value, ns=DECAY_NS, seeds=SEEDS, gate_risk=0.15) -> None:
    records = []
    for n in ns:
        for s in seeds:
            records.append(record(s, 0.5, n, 0, gate_risk))
            records.append(record(s, 0.5, n, 3, 0.3, gen_gap=value(n, s)))
    write_loop(run_dir, records)
    atomic_write_json(run_dir / "decay.json", {
        "kind": "decay", "metric": "excess_risk", "generation": 3, "ns": list(ns),
        "fit_ns": list(ns), "seeds": list(seeds), "real_fraction": 0.5})


def rel_noise(n: int, s: int) -> float:
    return 1 + 0.05 * math.sin(11 * s + n)


def test_decay_consistent_with_the_bound(tmp_path):
    write_decay(tmp_path / "runs" / "d", lambda n, s: (0.01 + 2 * n ** -0.6) * rel_noise(n, s))
    assert report(tmp_path)[4] == "confirmed"
    p4 = verdicts_json(tmp_path)["verdicts"]["4"]
    assert p4["estimate"] == pytest.approx(-0.6, abs=0.1)
    assert p4["reading"].startswith("consistent with the bound")
    assert list((tmp_path / "report" / "figures").glob("decay_*.png"))


def test_slow_decay_is_read_as_slower_never_refuted(tmp_path):
    write_decay(tmp_path / "runs" / "d", lambda n, s: (2 * n ** -0.05) * rel_noise(n, s))
    # with E_inf fitted, a slow decay trades off against the floor: too wide to tell
    assert report(tmp_path)[4] == "underpowered"
    # with E_inf known (an infinite-data run), the exponent is pinned down
    assert report(tmp_path, ReportConfig(rules="v1", p4_floor=0.0))[4] == "inconclusive"
    p4 = verdicts_json(tmp_path)["verdicts"]["4"]
    assert p4["reading"] == "decays slower than n^-1/4 on [16, 1600]"
    assert "refuted" not in p4["can_get"]


def test_decay_keeps_non_positive_values(tmp_path):
    """The generalization gap crosses zero at large n: those rows stay in the fit."""
    write_decay(tmp_path / "runs" / "d",
                lambda n, s: -0.02 + 1.5 * n ** -0.5 * rel_noise(n, s))
    assert report(tmp_path)[4] == "confirmed"
    p4 = verdicts_json(tmp_path)["verdicts"]["4"]
    assert p4["groups"][0]["parts"]["range"]["ns"] == list(DECAY_NS)
    assert p4["estimate"] == pytest.approx(-0.5, abs=0.1)


def test_the_bounds_own_shape_on_a_small_grid_is_underpowered(tmp_path):
    """c = (1, 1, 1) over n = 4..64 decays like n^-0.18 there; with 5 n over 1.2 decades the
    design is too small to judge, and it is never refuted."""
    from icl_stl.theory import bound_shape

    write_decay(tmp_path / "runs" / "d",
                lambda n, s: bound_shape(n, 1, 1, 1) * rel_noise(n, s), ns=(4, 8, 16, 32, 64))
    assert report(tmp_path)[4] == "underpowered"
    p4 = verdicts_json(tmp_path)["verdicts"]["4"]
    assert "needs >= 6 n over >= 2 decades" in p4["numbers"]
    # too small a design states no reading ("decays slower than ..." would be a claim)
    assert p4["reading"] == "" and "too small a design to read" in p4["numbers"]


# ---------------------------------------------------------------------------------------------
# Prediction 5


def augmented(risk_of_m, ms=(0, 20, 40, 60, 80), ns=(20, 80), seeds=SEEDS) -> list[dict]:
    """Final-generation risk risk_of_m(m, n) (plus a seed's offset); generation 0 at 0.15."""
    return [record(s, 0.5, n, g, 0.15 if g == 0 else risk_of_m(m, n) + noise(s, g, 0.002),
                   augment=m)
            for m in ms for n in ns for s in seeds for g in range(4)]


@pytest.mark.parametrize("risk_of_m, expected", [
    (lambda m, n: 0.3 + 1e-4 * (m - 1200 / n) ** 2, "confirmed"),  # m* 60 at n=20, 20 at n=80
    (lambda m, n: 0.3 + 1e-4 * (m - 40) ** 2 if n == 20 else 0.3 - 1e-3 * m, "refuted"),
    (lambda m, n: 0.3 + 1e-4 * (m - 0.6 * n - 10) ** 2, "refuted"),  # m* 20 -> 60: grows with n
])
def test_augmentation_verdict_follows_the_argmin(tmp_path, risk_of_m, expected):
    write_loop(tmp_path / "runs" / "m", augmented(risk_of_m))
    assert report(tmp_path)[5] == expected


# ---------------------------------------------------------------------------------------------
# A one-seed run of everything: no confirmed, no refuted


def test_a_one_seed_report_confirms_and_refutes_nothing(tmp_path):
    one = (0,)
    write_loop(tmp_path / "runs" / "loop", loops(healthy, seeds=one))
    write_stability(tmp_path / "runs" / "stab", lambda n, g, s: n ** -0.5, seeds=one)
    write_decay(tmp_path / "runs" / "decay", lambda n, s: 2 * n ** -0.6, seeds=one)
    write_loop(tmp_path / "runs" / "aug", augmented(lambda m, n: 0.3 + 1e-4 * (m - 1200 / n) ** 2,
                                                    seeds=one))
    verdicts = report(tmp_path)
    assert {verdicts[k] for k in range(1, 6)} == {"underpowered"}, verdicts
    assert verdicts[6] == verdicts[7] == verdicts[8] == "not tested"  # no extension runs
    data = verdicts_json(tmp_path)
    found = {g["verdict"] for p in data["verdicts"].values() for g in p["groups"]}
    assert not found & {"confirmed", "refuted"}, found
    text = (tmp_path / "report" / "REPORT.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows and not [r for r in rows if "confirmed |" in r or "refuted |" in r]
    assert "fewer than min_seeds = 5 seeds: no prediction can be confirmed or refuted" in text


# ---------------------------------------------------------------------------------------------
# In-context stability, the CLI


def test_in_context_results_get_their_section_and_figure(tmp_path):
    from icl_stl.probes.in_context import aggregate_in_context

    records = [{"n": 40, "generation": g, "seed": s,
                "ics_abs_change": [0.5 / j + 0.01 * s for j in range(2, K + 1)],
                "ics_signed_change": [0.4 / j for j in range(2, K + 1)]}
               for g in (0, 1) for s in (0, 1)]
    run_dir = write_loop(tmp_path / "runs" / "ic", [])
    atomic_write_json(run_dir / "in_context.json", {
        "kind": "in_context", "seeds": [0, 1], "ns": [40],
        "generations": aggregate_in_context(records)})
    report(tmp_path)
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## In-context stability" in text and "figures/in_context_" in text
    slopes = [line for line in text.splitlines() if line.startswith("| 40 |")]
    assert len(slopes) == 2 and all(float(line.split("|")[3]) < 0 for line in slopes)


def test_cli_reads_several_paths_lists_failed_jobs_and_writes_where_told(tmp_path, capsys):
    write_loop(tmp_path / "sweep" / "0", loops(healthy))
    atomic_write_json(tmp_path / "sweep" / "1" / "error.json", {"error": "ConfigError: boom"})
    write_stability(tmp_path / "probe", lambda n, g, s: n ** -0.5 * wiggle(n, g, s))
    out = tmp_path / "out"
    assert report_main([str(tmp_path / "sweep"), str(tmp_path / "probe"), "--out", str(out),
                        "--set", "rules=v1"]) == 0
    assert "prediction 1: confirmed" in capsys.readouterr().out
    text = (out / "REPORT.md").read_text()
    assert "ConfigError: boom" in text and "1 failed job(s)" in text
    for line in text.splitlines():  # every figure the report references exists
        if line.startswith("!["):
            assert (out / line.split("](")[1].rstrip(")")).exists()
    assert verdicts_of(out)[3] == "confirmed"


def test_cli_settings_change_the_verdicts_and_bad_ones_fail(tmp_path, capsys):
    write_loop(tmp_path / "run", loops(healthy, seeds=(0, 1, 2)))
    assert report_main([str(tmp_path / "run"), "rules=v1"]) == 0
    assert verdicts_of(tmp_path / "run")[1] == "underpowered"
    assert report_main([str(tmp_path / "run"), "rules=v1", "min_seeds=3", "--set",
                        "p1_margin=0.2"]) == 0
    data = json.loads((tmp_path / "run" / "verdicts.json").read_text())
    assert data["verdicts"]["1"]["verdict"] == "confirmed"
    assert data["settings"]["min_seeds"] == 3 and data["settings"]["p1_margin"] == 0.2
    capsys.readouterr()
    assert report_main([str(tmp_path / "run"), "min_seed=3"]) == 2
    assert "unknown report setting 'min_seed'" in capsys.readouterr().err
    assert report_main([str(tmp_path / "run"), "alpha=2"]) == 2
    assert report_main(["--settings"]) == 0
    assert "min_seeds = 5" in capsys.readouterr().out


def test_cli_default_output_is_the_first_path_and_missing_paths_fail(tmp_path, capsys):
    write_loop(tmp_path / "run", loops(healthy, generations=2))
    assert report_main([str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "REPORT.md").exists()
    assert report_main([str(tmp_path / "nowhere")]) == 2
    assert "no such run" in capsys.readouterr().err


def test_report_config_validates_and_parses():
    cfg = ReportConfig.from_overrides(["p4_floor=0.01", "p4_fit_min_n=null", "primary.3=x"])
    assert cfg.p4_floor == 0.01 and cfg.p4_fit_min_n is None and cfg.primary == {"3": "x"}
    for bad in ("min_seeds=1", "chaos_ratio=0", "p2_margin=-1", "p4_metric=loss", "bootstrap=5",
                "alpha=abc"):
        with pytest.raises(ValueError, match=bad.split("=")[0]):
            ReportConfig.from_overrides([bad])
    assert np.isfinite(ReportConfig().alpha)


# ---------------------------------------------------------------------------------------------
# The demo's design (issue 11): its report must confirm and refute nothing


def write_demo_like(root: Path, gate_passes: bool) -> None:
    """The three demo parts with the demo's design and levels: collapse (n = 2000, lambda 0 and
    0.5, 2 seeds, generations 0-3: 0.43 -> 1.00 at lambda 0, a plateau near 0.74 growing 3% per
    generation at 0.5), stability (n = 64 and 1024, 1 seed, one replaced prompt, gamma 0.74 and
    0.30 against a chaos ceiling of 0.44 at 1024) and decay (n = 64, 256, 1024, 1 seed),
    noise sd 0.03; generation 0 closes 76% of the zero-to-ridge gap unless `gate_passes`."""
    rng = np.random.default_rng(0)
    ridge = 0.40 if gate_passes else 0.25  # zero 1.0: the gap closed is 0.95, or 0.76

    def rec(seed, lam, n, g, risk, **extra):
        return record(seed, lam, n, g, risk + rng.normal(0, 0.03), ridge_risk=ridge,
                      zero_risk=ZERO, **extra)

    curves = {0.0: [0.43, 0.82, 0.95, 1.0], 0.5: [0.43, 0.73, 0.75, 0.77]}
    write_loop(root / "collapse", [rec(s, lam, 2000, g, curves[lam][g]) for lam in curves
                                   for s in (0, 1) for g in range(4)])
    gamma = {64: 0.74, 1024: 0.30}
    records, member = [], 0
    for n in gamma:
        for g in range(4):
            records.append(rec(0, 0.5, n, g, 0.43, twin="base", member=member))
            value = gamma[n] * math.exp(rng.normal(0, 0.1))
            records.append(rec(0, 0.5, n, g, 0.43, twin="neighbour", twin_of=member,
                               member=member + 1, gamma_mean=value, gamma_max=3 * value))
            chaos = 0.44 * math.exp(rng.normal(0, 0.1))
            records.append(rec(0, 0.5, n, g, 0.43, twin="control", twin_of=member,
                               member=member + 2, gamma_mean=chaos, gamma_max=3 * chaos))
        member += 3
    write_loop(root / "stability", records)
    atomic_write_json(root / "stability" / "stability.json", {
        "kind": "stability", "replacement": "fresh", "real_fraction": 0.5,
        "chaos_control": "batch_order", "generations": []})
    write_loop(root / "decay", [rec(0, 0.5, n, g, 0.43 + 0.3 * n ** -0.25, gen_gap=n ** -0.3)
                                for n in (64, 256, 1024) for g in (0, 1)])
    atomic_write_json(root / "decay" / "decay.json", {"kind": "decay", "real_fraction": 0.5,
                                                      "fit_ns": [64, 256, 1024]})


@pytest.mark.parametrize("gate_passes", [False, True])
def test_demo_like_runs_confirm_and_refute_nothing(tmp_path, gate_passes):
    write_demo_like(tmp_path / "runs", gate_passes)
    verdicts = report(tmp_path)
    assert not set(verdicts.values()) & {"confirmed", "refuted"}, verdicts
    data = verdicts_json(tmp_path)
    found = {g["verdict"] for p in data["verdicts"].values() for g in p["groups"]}
    assert not found & {"confirmed", "refuted"}, found
    if gate_passes:
        assert verdicts[1] == verdicts[2] == verdicts[3] == "underpowered"
    else:  # as in the demo: generation 0 missed ridge in every group
        assert data["ridge_gate"]["reached"] == 0 and data["ridge_gate"]["groups"] >= 4
        assert verdicts[1] == verdicts[2] == verdicts[3] == "not applicable"


DEMO_FIXTURE = Path(__file__).parents[1] / "fixtures" / "demo_results.json"


def write_demo_fixture(root: Path) -> None:
    """The demo's own results (tests/fixtures/demo_results.json) as run directories."""
    runs = json.loads(DEMO_FIXTURE.read_text())["runs"]
    for part, files in runs.items():
        for name, content in files.items():
            atomic_write_json(root / part / name, content)


@pytest.mark.parametrize("gate_tolerance", [0.1, 1.0])
def test_the_demos_own_results_confirm_and_refute_nothing(tmp_path, gate_tolerance):
    """Issue 11's demo (2 seeds at n = 2000, 1 seed for stability and decay): P1, P2 and P3
    are neither confirmed nor refuted, with the gate (it fails everywhere: generation 0 closes
    at most a third of the zero-to-ridge gap, read from the zero baseline as these records
    predate `zero_risk`) and with the gate waived (tolerance 1: too few seeds decide)."""
    write_demo_fixture(tmp_path / "runs")
    verdicts = report(tmp_path, ReportConfig(rules="v1", gate_tolerance=gate_tolerance))
    assert not set(verdicts.values()) & {"confirmed", "refuted"}, verdicts
    data = verdicts_json(tmp_path)
    found = {g["verdict"] for p in data["verdicts"].values() for g in p["groups"]}
    assert not found & {"confirmed", "refuted"}, found
    gate = data["ridge_gate"]
    if gate_tolerance == 0.1:
        assert gate["groups"] == 4 and gate["reached"] == 0
        assert verdicts[1] == verdicts[2] == verdicts[3] == "not applicable"
        assert all(row["gap_closed"] < 0.5 for row in gate["rows"])
    else:  # P1-P3 pass the waived gate at their n (2000 and 1024)
        assert verdicts[1] == verdicts[2] == verdicts[3] == "underpowered"


def test_every_loop_record_lands_in_the_tidy_table(tmp_path):
    import csv

    records = loops(healthy)
    write_loop(tmp_path / "runs" / "a", records)
    report(tmp_path)
    with open(tmp_path / "report" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    assert list(rows[0])[:8] == ["run", "config", "labeller", "seed", "n", "real_fraction",
                                 "augment", "generation"]
    key = {(float(r["real_fraction"]), int(r["seed"]), int(r["generation"])): float(r["test_risk"])
           for r in rows}
    for r in records:
        assert key[(r["real_fraction"], r["seed"], r["generation"])] == pytest.approx(
            r["test_risk"])
    assert {r["labeller"] for r in rows} == {"model"}
