"""Hydra configs and the console scripts: every config composes and validates, the CLIs write
their outputs, a sweep writes one directory per job, a killed run resumes to the same numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import (
    TINY_TRAIN,
    TRAIN_CLI,
    TRAIN_CLI_OVERRIDES,
    check_ok,
    cli_args,
    compose_cfg,
    read_summary,
    run_cli,
    without_paths,
)
from omegaconf import OmegaConf

from icl_stl.cli.common import CONFIG_DIR, load_app_config
from icl_stl.config import ConfigError

CONF = Path(CONFIG_DIR)
PRIMARIES = ("train", "loop")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Presets that are valid only together with another setting, as their own files document:
# Garg's curriculum grows d, which needs fresh prompts (data.n=null), and the loop needs a
# finite S_0, so there it may only grow k.
NEEDS = {("train", "train/garg"): ["data.n=null"],
         ("loop", "train/garg"): ["train.curriculum.d_start=${task.d}"]}


def _options() -> list[tuple[str, str]]:
    """(group, option) for every yaml of every config group, in subfolders too (an option
    `reproduce/collapse` of `experiment`); the launcher group is Hydra's."""
    found = []
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"):
        found += [(group.name, f.relative_to(group).with_suffix("").as_posix())
                  for f in sorted(group.rglob("*.yaml"))]
    return found


def _default_groups(primary: str) -> set[str]:
    entries = OmegaConf.to_container(OmegaConf.load(CONF / f"{primary}.yaml"))["defaults"]
    return {key for e in entries if isinstance(e, dict) for key in e}


def _primaries(group: str, option: str) -> tuple[str, ...]:
    """Primary configs an option belongs to: a preset that overrides /probe is the probe CLI's
    (only conf/probe.yaml has a probe default to override), one marked "(icl-stl-train only)"
    trains on fresh prompts, which a loop cannot; everything else serves both."""
    text = (CONF / group / f"{option}.yaml").read_text()
    if group == "experiment" and "override /probe" in text:
        return ("probe",)
    if group == "experiment" and "(icl-stl-train only)" in text:
        return ("train",)
    return PRIMARIES


CASES = [(p, g, o) for g, o in _options() for p in _primaries(g, o)]


def test_every_group_is_found():
    groups = {g for g, _ in _options()}
    assert {"task", "model", "train", "eval", "logger", "runtime", "data", "loop",
            "experiment", "debug"} <= groups
    assert ("model", "tiny") in _options() and ("task", "relu_2nn_regression") in _options()
    assert ("experiment", "reproduce/collapse") in _options()
    assert ("debug", "default") in _options()


@pytest.mark.parametrize("primary,group,option", CASES)
def test_every_config_composes_and_validates(primary, group, option):
    prefix = "" if group in _default_groups(primary) else "+"  # train has no loop default
    overrides = [f"{prefix}{group}={option}", *NEEDS.get((primary, f"{group}/{option}"), [])]
    cfg = compose_cfg(primary, *overrides)
    app = load_app_config(cfg, needs_loop=primary != "train" or "loop" in cfg)
    if group == "model":
        assert app.model.arch == cfg.model.arch  # the option is what was composed
    if group == "task":
        assert app.task.name == option
    if primary != "train":
        assert app.loop is not None and app.loop.generations >= 0


def test_garg_preset_on_a_finite_set_is_refused_clearly():
    with pytest.raises(ConfigError, match="train.curriculum.d_start"):
        load_app_config(compose_cfg("train", "train=garg"))


def test_primary_configs_have_tiny_defaults_that_validate():
    for primary in PRIMARIES:
        app = load_app_config(compose_cfg(primary), needs_loop=primary == "loop")
        assert app.model.arch == "gpt2" and app.task.name == "linear_regression"


# ---------------------------------------------------------------------------------------------
# Console scripts in a subprocess


def test_train_cli_writes_summary_and_plot(train_cli_run):
    summary = read_summary(train_cli_run)
    assert math.isfinite(summary["test_risk"]) and summary["test_risk"] > 0
    assert summary["steps"] == 30 and summary["n"] == 32
    assert math.isfinite(summary["train_risk"]) and math.isfinite(summary["ridge_risk"])
    assert summary["gen_gap"] == pytest.approx(summary["test_risk"] - summary["train_risk"])
    assert summary["per_position"]["model"]["risk"] == pytest.approx(summary["test_risk"])
    assert (train_cli_run / "positions.png").read_bytes()[:8] == PNG_MAGIC


def test_loop_cli_writes_generation_records_and_plot(loop_cli_run):
    summary = read_summary(loop_cli_run)
    records = summary["generations"]
    assert [r["generation"] for r in records] == [0, 1, 2]
    for rec in records:
        for key in ("test_risk", "train_risk", "gen_gap", "real_train_risk", "ridge_risk"):
            assert math.isfinite(rec[key]), (key, rec[key])
        assert rec["gen_gap"] == pytest.approx(rec["test_risk"] - rec["train_risk"])
        assert len(rec["test_risk_per_position"]) == 5
    assert records[0]["n_synthetic_new"] == 0 and records[1]["n_synthetic_new"] == 8
    assert (loop_cli_run / "risk_vs_generation.png").read_bytes()[:8] == PNG_MAGIC
    assert (loop_cli_run / "positions.png").exists()


def test_multirun_sweep_writes_one_directory_per_job(tmp_path):
    proc = run_cli(TRAIN_CLI, "-m", "seed=0,1", *TINY_TRAIN, "train.steps=10",
                   f"run.checkpoint_root={tmp_path}/ck", f"hydra.sweep.dir={tmp_path}/sweep")
    check_ok(proc)
    risks = []
    for job in ("0", "1"):
        summary = read_summary(tmp_path / "sweep" / job)
        assert math.isfinite(summary["test_risk"])
        risks.append(summary["test_risk"])
    assert risks[0] != risks[1]  # the two seeds really ran as two different jobs
    assert len(list((tmp_path / "ck").iterdir())) == 2  # and kept separate checkpoints


def test_killed_train_run_resumes_to_identical_numbers(tmp_path, train_cli_run):
    args = cli_args(TRAIN_CLI_OVERRIDES, tmp_path, "out")
    killed = run_cli(TRAIN_CLI, *args, fault="train_step:25")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "out" / "summary.json").exists()
    checkpoints = list((tmp_path / "ck").glob("*/train.pt"))
    assert len(checkpoints) == 1  # written at step 20, the last multiple of 10 before the kill
    resumed = run_cli(TRAIN_CLI, *args)
    check_ok(resumed)
    assert "resumed at step 20" in resumed.stderr + resumed.stdout
    assert without_paths(read_summary(tmp_path / "out")) == \
        without_paths(read_summary(train_cli_run))
