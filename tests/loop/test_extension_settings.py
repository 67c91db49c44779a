"""The loop extensions from the command line: schedule, pool and filter fields in summary.json,
bad settings refused in one line, and extension runs kept out of P1-P5."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import (
    LOOP_CLI,
    TINY_LOOP,
    check_ok,
    cli_args,
    compose_loop,
    run_cli,
)

from icl_stl.cli.loop import loop_from_config
from icl_stl.config import ConfigError
from icl_stl.report.collect import RunResult, flatten

FAST = ["train.steps=4", "train.warmup_steps=0", "eval.n_prompts=16", "eval.batch_size=16"]


@pytest.mark.parametrize("schedule, lambdas, filter_", [
    ("exponential", [1.0, 0.5, 0.5 * math.exp(-0.7)], "verifier"),
    ("linear", [1.0, 0.5, 0.0], "confidence"),
])
def test_cli_writes_schedule_pool_and_filter_fields(tmp_path, schedule, lambdas, filter_):
    """Each schedule's lambda_i, each filter's kept fraction and the pool's dmmse baseline and
    prior distances, from the command line into summary.json."""
    proc = run_cli(LOOP_CLI, *cli_args(TINY_LOOP, tmp_path, "out", *FAST, "loop.generations=2",
                                       f"loop.real_schedule={schedule}",
                                       "loop.real_schedule_rate=0.7", "loop.rounding=floor",
                                       "task.n_tasks=4", f"loop.filter={filter_}",
                                       "loop.filter_keep=0.5"))
    check_ok(proc)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    records = summary["generations"]
    assert [r["real_fraction_i"] for r in records] == pytest.approx(lambdas)
    assert [r["filter_kept_fraction"] for r in records][1:] == [0.5, 0.5]
    assert "dmmse" in summary["baselines"] and "dmmse" in summary["baselines_prior"]
    assert all(r["prior_distance_dmmse"] > 0 for r in records)
    assert summary["settings"]["task"]["n_tasks"] == 4
    assert summary["settings"]["loop"]["filter"] == filter_


@pytest.mark.parametrize("override,field", [
    ("loop.real_schedule=cubic", "loop.real_schedule"),
    ("loop.real_schedule_rate=-1", "loop.real_schedule_rate"),
    ("loop.real_schedule_rate=0.5", "loop.real_schedule_rate"),  # constant: would do nothing
    ("loop.real_schedule=linear", "loop.real_schedule_rate"),  # no rate: never decays
    ("loop.real_schedule=linear loop.real_schedule_rate=0.1 loop.real_schedule_floor=0.7",
     "loop.real_schedule_floor"),  # above real_fraction
    ("loop.real_schedule=linear loop.real_schedule_rate=0.1 loop.generations=2",
     "loop.rounding"),  # lambda_2 n = 0.4 * 16
    ("loop.filter=sieve", "loop.filter"),
    ("loop.filter=verifier loop.filter_keep=0", "loop.filter_keep"),
    ("loop.filter=verifier loop.filter_keep=1.5", "loop.filter_keep"),
    ("loop.filter_keep=0.5", "loop.filter_keep"),  # with filter none: would do nothing
    ("loop.filter=verifier loop.filter_threshold=-1", "loop.filter_threshold"),
    ("loop.filter=confidence model.gaussian_head=false loop.label_noise_std=0.1",
     "loop.filter"),
    ("loop.filter=confidence loop.learner=gaussian_prior", "loop.filter"),
    ("loop.filter=verifier loop.verifier_source=real loop.real_fraction=0",
     "loop.verifier_source"),
    ("loop.filter=verifier loop.verifier_n_real=17", "loop.verifier_n_real"),
    ("loop.filter=verifier loop.verifier_source=lake", "loop.verifier_source"),
    ("loop.filter=verifier loop.verifier_centre_noise_std=-0.1",
     "loop.verifier_centre_noise_std"),
    ("task.n_tasks=0", "task.n_tasks"),
    ("task.n_tasks=2 loop.labeller=oracle", "loop.labeller"),
    ("task.n_tasks=2 task=relu_2nn_regression", "task.n_tasks"),
])
def test_bad_extension_settings_are_refused_before_anything_runs(tmp_path, override, field):
    cfg = compose_loop(tmp_path, *override.split())
    with pytest.raises(ConfigError) as info:
        loop_from_config(cfg, tmp_path / "out")
    message = str(info.value)
    assert field in message and "\n" not in message, message
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


def test_bad_extension_setting_exits_2_through_the_cli(tmp_path):
    proc = run_cli(LOOP_CLI, *cli_args(TINY_LOOP, tmp_path, "out", "loop.filter=verifier",
                                       "loop.filter_keep=1.5"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "loop.filter_keep" in proc.stderr and "1.5" in proc.stderr
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("extra,counted", [
    ({}, True),  # a summary written before the extensions, or at their defaults
    ({"loop": {"real_schedule": "linear", "real_schedule_rate": 0.1}}, False),
    ({"loop": {"filter": "verifier", "filter_keep": 0.5}}, False),
    ({"task": {"n_tasks": 4}}, False),
])
def test_extension_runs_are_shown_not_counted_for_p1_to_p5(extra, counted):
    settings = {"task": {"name": "linear_regression"}, "model": {"arch": "gpt2"},
                "loop": {"learner": "transformer", "synthetic": "replace", "labeller": "model"}}
    for section, values in extra.items():
        settings[section] = {**settings[section], **values}
    run = RunResult(path=Path("run"), flat_settings=flatten(settings))
    assert run.in_theorem_setting is counted
