"""The report's verdicts are computed from the data: planted results flip each verdict.

Every test writes run directories the way the CLIs do (summary.json, stability.json,
decay.json), plants numbers for which a prediction holds or fails, and checks the verdict
REPORT.md and verdicts.json state. No model is trained here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from icl_stl.cli.report import main as report_main
from icl_stl.io import atomic_write_json
from icl_stl.probes.decay import aggregate_decay
from icl_stl.probes.in_context import aggregate_in_context
from icl_stl.report.report import verdicts_of, write_report

K = 5  # prompt length of the planted records
SETTINGS = {"task": {"d": 2, "k": K}, "model": {"arch": "gpt2"},
            "loop": {"learner": "transformer", "synthetic": "replace", "real_source": "reuse"},
            "seed": 0}


def record(seed: int, lam: float, n: int, generation: int, risk: float, augment: int = 0,
           **extra) -> dict:
    """One member's generation record with the fields loop summaries carry."""
    per_pos = [risk] * K
    return {"member": 0, "seed": seed, "real_fraction": lam, "n": n, "augment": augment,
            "tag": "", "generation": generation, "test_risk": risk,
            "test_risk_per_position": per_pos, "test_ci_low": [0.9 * risk] * K,
            "test_ci_high": [1.1 * risk] * K, "ridge_risk": 0.1, "excess_risk": risk - 0.1,
            **extra}


def write_loop(run_dir: Path, records: list[dict], settings: dict = SETTINGS) -> Path:
    baseline = {"per_position": [0.5] * K, "ci_low": [0.4] * K, "ci_high": [0.6] * K}
    atomic_write_json(run_dir / "summary.json", {
        "members": [], "generations": records, "settings": settings, "ridge_alpha": 0.0,
        "baselines": {"ridge": {**baseline, "risk": 0.1}, "zero": {**baseline, "risk": 1.0}}})
    return run_dir


def loops(risk, lams=(0.0, 0.5, 1.0), seeds=(0, 1, 2), n=40, generations=6, augment=0):
    """Records of risk(lam, seed, generation) for every lambda, seed and generation."""
    return [record(s, lam, n, g, risk(lam, s, g), augment) for lam in lams for s in seeds
            for g in range(generations + 1)]


def noise(seed: int, g: int) -> float:
    return 0.004 * math.sin(7 * seed + 3 * g + 1)


def healthy(lam: float, seed: int, g: int) -> float:
    """Collapse at lambda = 0 (linear growth), plateaus at lambda > 0 ordered by lambda."""
    if lam == 0:
        return 0.2 + 0.05 * g + noise(seed, g)
    return 0.2 + 0.05 * (1 - lam) * min(g, 2) + noise(seed, g)


def report(tmp_path: Path) -> dict[int, str]:
    write_report([tmp_path / "runs"], tmp_path / "report")
    return verdicts_of(tmp_path / "report")


def test_collapse_and_plateau_confirmed_from_healthy_data(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy))
    verdicts = report(tmp_path)
    assert verdicts[1] == "confirmed" and verdicts[2] == "confirmed"
    assert verdicts[3] == verdicts[4] == verdicts[5] == "no data"
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| 1 |" in text and "**confirmed**" in text and "![risk against generation" in text
    figures = list((tmp_path / "report" / "figures").glob("*.png"))
    assert len(figures) >= 2 and all(f.stat().st_size > 1000 for f in figures)


@pytest.mark.parametrize("start, reached", [(0.15, 1), (0.3, 0)])
def test_report_says_whether_generation_0_reached_ridge(tmp_path, start, reached):
    # ridge 0.1 and zero 1.0: generation 0 must be within 0.1 x 0.9 of ridge
    write_loop(tmp_path / "runs" / "a", loops(lambda lam, s, g: start + 0.05 * g))
    report(tmp_path)
    assert f"in {reached} of 1 loop groups" in (tmp_path / "report" / "REPORT.md").read_text()


def test_no_collapse_at_lambda_zero_refutes_p1(tmp_path):
    def falling(lam, seed, g):
        return 0.4 - 0.03 * g + noise(seed, g) if lam == 0 else healthy(lam, seed, g)

    write_loop(tmp_path / "runs" / "a", loops(falling))
    assert report(tmp_path)[1] == "refuted"


def test_growth_at_positive_lambda_refutes_p2(tmp_path):
    def growing(lam, seed, g):
        return 0.2 + 0.04 * g + noise(seed, g) if lam == 0.5 else healthy(lam, seed, g)

    write_loop(tmp_path / "runs" / "a", loops(growing))
    verdicts = report(tmp_path)
    assert verdicts[1] == "confirmed" and verdicts[2] == "refuted"


def test_plateau_rising_with_lambda_refutes_p2(tmp_path):
    def disordered(lam, seed, g):
        return 0.2 + 0.05 * lam * min(g, 2) + noise(seed, g) if lam > 0 else healthy(lam, seed, g)

    write_loop(tmp_path / "runs" / "a", loops(disordered))
    assert report(tmp_path)[2] == "refuted"


@pytest.mark.parametrize("slope, expected", [(0.05, "confirmed"), (-0.03, "refuted")])
def test_one_seed_is_judged_by_the_regression_interval(tmp_path, slope, expected):
    write_loop(tmp_path / "runs" / "a",
               loops(lambda lam, s, g: 0.3 + slope * g + noise(s, g), lams=(0.0,), seeds=(0,)))
    assert report(tmp_path)[1] == expected


def test_too_few_generations_for_a_plateau_is_no_data(tmp_path):
    write_loop(tmp_path / "runs" / "a", loops(healthy, generations=2))
    verdicts = report(tmp_path)
    assert verdicts[2] == "no data" and verdicts[1] == "confirmed"


def test_groups_outside_the_theorems_setting_are_shown_but_not_counted(tmp_path):
    def falling(lam, seed, g):
        return 0.4 - 0.03 * g + noise(seed, g)

    write_loop(tmp_path / "runs" / "gpt2", loops(healthy))
    lstm = {**SETTINGS, "model": {"arch": "lstm"}}
    write_loop(tmp_path / "runs" / "lstm", loops(falling), settings=lstm)
    assert report(tmp_path)[1] == "confirmed"
    groups = json.loads((tmp_path / "report" / "verdicts.json").read_text())["verdicts"]["1"]
    by_count = {g["counted"]: g for g in groups["groups"]}
    assert by_count[False]["verdict"] == "refuted" and "model.arch=lstm" in by_count[False]["group"]


def write_stability(run_dir: Path, gamma, ns=(16, 64, 256), generations=5, lam=0.5) -> None:
    recs = [{"generation": g, "n": n, "n_pairs": 4, "gamma_mean": gamma(n, g),
             "gamma_mean_std": 0.01 * gamma(n, g), "gamma_max": 3 * gamma(n, g),
             "gamma_max_std": 0.03 * gamma(n, g)} for n in ns for g in range(generations + 1)]
    atomic_write_json(run_dir / "stability.json", {
        "kind": "stability", "replacement": "fresh", "seeds": [0, 1], "ns": list(ns),
        "replaced_indices": [0, 1], "real_fraction": lam, "generations": recs})
    write_loop(run_dir, [])


@pytest.mark.parametrize("gamma, expected", [
    (lambda n, g: n ** -0.5 * (1 + 0.02 * math.sin(g)), "confirmed"),
    (lambda n, g: n ** 0.3 * (1 + 0.02 * math.sin(g)), "refuted"),  # grows with n
    (lambda n, g: n ** -0.5 * (1 + 0.5 * g), "refuted"),  # grows with generation at lambda > 0
    # not monotone in n: the log-log interval straddles 0
    (lambda n, g: n ** -0.5 * (1 + 0.02 * math.sin(g)) if n < 256 else 0.3, "inconclusive"),
])
def test_stability_verdict_follows_gamma(tmp_path, gamma, expected):
    write_stability(tmp_path / "runs" / "s", gamma)
    assert report(tmp_path)[3] == expected
    assert list((tmp_path / "report" / "figures").glob("stability_*.png"))


def test_stability_pooled_over_a_sweep_of_n(tmp_path):
    for n in (16, 64, 256):  # one probe run per n, as `-m data.n=16,64,256` writes them
        write_stability(tmp_path / "runs" / str(n), lambda n, g: n ** -0.5, ns=(n,))
    assert report(tmp_path)[3] == "confirmed"


@pytest.mark.parametrize("exponent, expected", [(-0.6, "confirmed"), (-0.02, "refuted")])
def test_decay_verdict_is_computed_from_the_decay_fit(tmp_path, exponent, expected):
    ns, rng = (16, 32, 64, 128, 256, 512), np.random.default_rng(0)
    records = [record(s, 0.5, n, 3, 0.1 + 2 * n ** exponent * math.exp(0.02 * rng.normal()))
               for n in ns for s in (0, 1, 2)]
    run_dir = write_loop(tmp_path / "runs" / "d", records)
    atomic_write_json(run_dir / "decay.json", {**aggregate_decay(records), "real_fraction": 0.5})
    assert report(tmp_path)[4] == expected
    assert list((tmp_path / "report" / "figures").glob("decay_*.png"))


def test_in_context_results_get_their_section_and_figure(tmp_path):
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


def augmented(risk_of_m, ms=(0, 20, 40, 60, 80), ns=(20, 80)) -> list[dict]:
    return [record(s, 0.5, n, g, risk_of_m(m, n) + noise(s, g) * (g == 3), augment=m)
            for m in ms for n in ns for s in (0, 1) for g in range(4)]


@pytest.mark.parametrize("risk_of_m, expected", [
    (lambda m, n: 0.3 + 1e-4 * (m - 1200 / n) ** 2, "confirmed"),  # m* 60 at n=20, 20 at n=80
    (lambda m, n: 0.3 + 1e-4 * (m - 40) ** 2 if n == 20 else 0.3 - 1e-3 * m, "refuted"),
    (lambda m, n: 0.3 + 1e-4 * (m - 0.6 * n - 10) ** 2, "refuted"),  # m* 20 -> 60: grows with n
])
def test_augmentation_verdict_follows_the_argmin(tmp_path, risk_of_m, expected):
    write_loop(tmp_path / "runs" / "m", augmented(risk_of_m))
    assert report(tmp_path)[5] == expected


def test_cli_reads_several_paths_lists_failed_jobs_and_writes_where_told(tmp_path, capsys):
    write_loop(tmp_path / "sweep" / "0", loops(healthy))
    atomic_write_json(tmp_path / "sweep" / "1" / "error.json", {"error": "ConfigError: boom"})
    write_stability(tmp_path / "probe", lambda n, g: n ** -0.5)
    out = tmp_path / "out"
    assert report_main([str(tmp_path / "sweep"), str(tmp_path / "probe"), "--out", str(out)]) == 0
    assert "prediction 1: confirmed" in capsys.readouterr().out
    text = (out / "REPORT.md").read_text()
    assert "ConfigError: boom" in text and "1 failed job(s)" in text
    for line in text.splitlines():  # every figure the report references exists
        if line.startswith("!["):
            assert (out / line.split("](")[1].rstrip(")")).exists()
    assert verdicts_of(out)[3] == "confirmed"


def test_cli_default_output_is_the_first_path_and_missing_paths_fail(tmp_path, capsys):
    write_loop(tmp_path / "run", loops(healthy, generations=2))
    assert report_main([str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "REPORT.md").exists()
    assert report_main([str(tmp_path / "nowhere")]) == 2
    assert "no such run" in capsys.readouterr().err
