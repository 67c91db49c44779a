"""The report's generator-fidelity table and its warning for unfaithful generators."""

from __future__ import annotations

from pathlib import Path

from icl_stl.report.collect import RunResult
from icl_stl.report.fidelity_section import fidelity_rows, generator_name, unfaithful


def _records(run: str, ratio: float, reached: bool) -> list[dict]:
    out = []
    for seed in (0, 1):
        base = {"run": run, "config": "", "seed": seed, "n": 100, "real_fraction": 0.0,
                "augment": 0}
        out.append({**base, "generation": 0, "reached_ridge": reached,
                    "syn_label_var_ratio": None})
        out.append({**base, "generation": 1, "syn_label_var_ratio": ratio + 0.01 * seed,
                    "syn_w_norm": 0.3, "real_w_norm": 1.25, "syn_label_w1": 0.5,
                    "head_var_ratio": None})
    return out


def test_generator_names_say_what_labelled():
    assert generator_name({"loop.labeller": "oracle"}).startswith("oracle")
    assert "predictive" in generator_name({"loop.label_mode": "sample",
                                           "loop.label_noise_std": None})
    assert "fixed scale 0.1" in generator_name({"loop.label_mode": "sample",
                                                "loop.label_noise_std": 0.1})
    assert generator_name({"loop.label_mode": "mean"}).startswith("mean")


def test_a_shrunken_generator_behind_a_learner_at_ridge_is_named():
    runs = [RunResult(Path("a"), flat_settings={"loop.label_mode": "sample",
                                                "loop.label_noise_std": 0.1}),
            RunResult(Path("b"), flat_settings={"loop.labeller": "oracle"})]
    records = _records("a", 0.07, True) + _records("b", 1.0, True)
    rows = fidelity_rows(runs, records)
    assert [(r["generation"], r["seeds"]) for r in rows] == [(1, 2), (1, 2)]
    by_run = {r["generator"].split(",")[0]: r for r in rows}
    assert abs(by_run["sample"]["syn_label_var_ratio"] - 0.075) < 1e-9
    warnings = unfaithful(rows)
    assert len(warnings) == 1 and "fixed scale 0.1" in warnings[0]


def test_no_warning_when_generation_0_missed_the_gate():
    runs = [RunResult(Path("a"), flat_settings={"loop.label_mode": "mean"})]
    rows = fidelity_rows(runs, _records("a", 0.01, False))
    assert rows and not rows[0]["generation_0_reached"] and unfaithful(rows) == []
