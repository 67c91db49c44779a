"""What a loop job logs: a monotonic training axis, one W&B run per loop (or per-loop suffixes,
never an average over lambdas), readable names, and one short console line per generation.
W&B runs offline and its own files are read back (tests/wandb_readback.py)."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
from conftest import compose_loop, compose_train
from wandb_readback import OfflineRun, by_name, offline_runs

from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import loop_from_config
from icl_stl.cli.train import train_from_config
from icl_stl.config import ConfigError
from icl_stl.loop.progress import gate_lines, group_labels, member_names, risk_line
from icl_stl.persistence import read_jsonl

GRID = ["logger.mode=offline", "members.real_fractions=[0,0.5]", "members.seeds=[0,1]",
        "loop.generations=2", "train.steps=20", "train.log_every=10", "loop.steps=10",
        "eval.n_prompts=16", "eval.batch_size=16"]
LAMBDAS = [0.0, 0.5, 0.0, 0.5]  # members_from_config: seeds outer, lambdas inner


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
         ) -> tuple[dict, dict[str, OfflineRun]]:
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))  # not the real home
    summary = loop_from_config(compose_loop(tmp_path, *GRID, *extra), tmp_path / "out")
    return summary, by_name(offline_runs(tmp_path / "out"))


def _train_lines(tmp_path: Path) -> list[dict]:
    return [r for r in read_jsonl(tmp_path / "out" / "metrics.jsonl") if "train/step" in r]


def test_each_loop_has_its_own_run_and_a_monotonic_step(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="icl_stl.loop.runner")
    summary, runs = _run(tmp_path, monkeypatch)
    job = runs.pop("loop-lam0,0.5-n16-g2-seed0,1")  # the job, by what it runs
    names = ["lam0-n16-seed0", "lam0.5-n16-seed0", "lam0-n16-seed1", "lam0.5-n16-seed1"]
    assert sorted(runs) == sorted(names)
    members = [runs[name] for name in names]

    # train/step restarts each generation; train/global_step counts on (20, then 10 per gen).
    lines = _train_lines(tmp_path)
    assert [(r["generation"], r["train/step"], r["train/global_step"]) for r in lines] == [
        (0, 10, 10), (0, 20, 20), (1, 10, 30), (2, 10, 40)]

    # Readable names (the settings hash is in the config); one group (no preset: the job's
    # name); each loop's own settings at the top level of its config.
    assert job.config["checkpoint_name"].startswith("loop-")
    assert {r.group for r in [job, *members]} == {job.name}
    assert {r.job_type for r in [job, *members]} == {"loop"}
    assert [r.config["loop"]["real_fraction"] for r in members] == LAMBDAS
    assert [r.config["seed"] for r in members] == [0, 0, 1, 1]
    assert [r.config["member"]["real_fraction"] for r in members] == LAMBDAS

    # Each member run: its own loss (not an average over lambdas) and unsuffixed gen/* metrics.
    for m, run in enumerate(members):
        logged = run.rows
        assert [d["train/loss"] for d in logged if "train/loss" in d] == \
            [line["members"][m]["train/loss"] for line in lines]
        risks = [d["gen/test_risk"] for d in logged if "gen/test_risk" in d]
        assert risks == [r["test_risk"] for r in summary["generations"] if r["member"] == m]
        assert not any("/member" in key for d in logged for key in d)
    assert lines[-1]["members"][0]["train/loss"] != lines[-1]["members"][1]["train/loss"]

    # The job's run: per-lambda median [min, max] over seeds, nothing per member.
    job_keys = {key for d in job.rows for key in d}
    assert {"gen/test_risk_median/lam0", "gen/test_risk_max/lam0.5"} <= job_keys
    assert not any(k.startswith("train/") or "/member" in k for k in job_keys)

    # Console: one short line per generation, summarised per lambda.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("generation 2/2")]
    assert len(lines) == 1 and "lam0 " in lines[0] and "lam0.5 " in lines[0]
    assert lines[0].count("(2)") == 2 and len(lines[0]) < 160


def test_without_member_runs_each_loop_keeps_its_own_keys(tmp_path, monkeypatch):
    summary, runs = _run(tmp_path, monkeypatch, "logger.member_runs=0")
    (job,) = runs.values()
    logged = job.rows
    losses = [d for d in logged if "train/global_step" in d]
    assert all("train/loss" not in d for d in losses), "no loss averaged over the loops"
    lines = _train_lines(tmp_path)
    assert [d["train/loss/member3"] for d in losses] == \
        [line["members"][3]["train/loss"] for line in lines]
    last = [d for d in logged if "gen/test_risk/member1" in d][-1]
    assert last["gen/test_risk/member1"] == summary["generations"][-3]["test_risk"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_shows_generations_and_phases(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    loop_from_config(compose_loop(tmp_path, "train.steps=4", "eval.n_prompts=16",
                                  "eval.batch_size=16"), tmp_path / "out")
    shown = sys.stderr.getvalue()
    assert "generations: " in shown and "2/2" in shown
    for phase in ("generation 0: training", "generation 1: labelling",
                  "generation 1: evaluating"):
        assert phase in shown


def test_a_train_run_logs_global_step_as_its_step(tmp_path):
    train_from_config(compose_train(tmp_path), tmp_path / "out")
    lines = _train_lines(tmp_path)
    assert [(r["train/step"], r["train/global_step"]) for r in lines] == [(10, 10), (20, 20),
                                                                          (30, 30)]


# ---------------------------------------------------------------------------------------------
# Names and summaries, directly


def test_member_names_are_readable_and_unique():
    specs = [{"seed": 3, "real_fraction": 0.5, "n": 1000, "augment": 0, "tag": ""},
             {"seed": 3, "real_fraction": 0.5, "n": 1000, "augment": 64, "tag": ""},
             {"seed": 0, "real_fraction": 0.0, "n": 16, "augment": 0,
              "tag": "n16/seed0/replace5"},
             {"seed": 3, "real_fraction": 0.5, "n": 1000, "augment": 0, "tag": ""}]
    assert member_names(specs) == ["lam0.5-n1000-seed3-member0", "lam0.5-n1000-m64-seed3",
                                   "lam0-n16-seed0-replace5", "lam0.5-n1000-seed3-member3"]


def test_risk_line_summarises_many_seeds_per_group():
    specs = [{"seed": s, "real_fraction": lam, "n": 100, "augment": 0}
             for lam in (0.0, 0.5) for s in range(200)]
    risks = [1.0 + s for s in range(200)] + [0.1] * 199 + [float("nan")]
    line = risk_line(risks, group_labels(specs))
    assert line == ("test risk, median [min, max] (loops): lam0 100.5 [1, 200] (200), "
                    "lam0.5 0.1 [0.1, 0.1] 1 non-finite (200)")
    assert risk_line([0.25], [""]) == "test risk 0.25"
    one_group = risk_line([1.0, 3.0, 2.0], group_labels(specs[:3]))
    assert one_group == "test risk, median [min, max] (loops): 2 [1, 3] (3)"


def test_gate_is_summarised_per_group():
    specs = [{"seed": s, "real_fraction": lam, "n": 100, "augment": 0}
             for lam in (0.0, 0.5) for s in range(3)]
    records = [{"gap_closed": g, "reached_ridge": g >= 0.9}
               for g in (0.95, 0.5, 0.99, 0.91, 0.92, 0.895)]
    assert gate_lines(records, group_labels(specs)) == [  # one decimal: 89.5% reads as no 90%
        "lam0: 2/3 loops reached ridge (gap closed: median 95.0%, min 50.0%)",
        "lam0.5: 2/3 loops reached ridge (gap closed: median 91.0%, min 89.5%)"]


def test_risk_line_is_capped_for_large_grids():
    specs = [{"seed": 0, "real_fraction": 0.5, "n": n, "augment": 0} for n in range(10, 30)]
    line = risk_line([1.0] * 20, group_labels(specs))
    assert line.endswith("... 14 more groups") and len(line) < 200


@pytest.mark.parametrize("value", ["-1", "true", "2.5"])
def test_bad_member_runs_is_one_clear_error(tmp_path, value):
    with pytest.raises(ConfigError, match=f"(?i)logger.member_runs must be .*, got {value}$"):
        load_app_config(compose_loop(tmp_path, f"logger.member_runs={value}"), needs_loop=True)


@pytest.mark.parametrize(("overrides", "mode", "group"), [
    (["experiment=collapse_vs_lambda"], "RUN", "collapse_vs_lambda"),  # the preset's
    (["experiment=collapse_vs_lambda", "logger.group=mine"], "RUN", "mine"),  # the override
    (["logger.group=null", "hydra.sweep.dir=multirun/x"], "MULTIRUN", "multirun/x"),  # a sweep
    (["logger.group=null", "data.n=16"], "RUN", "loop-lam0.5-n16-g5-seed0"),  # the run's name
])
def test_every_run_has_a_group(overrides, mode, group):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from icl_stl.cli.common import CONFIG_DIR, default_group

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        full = compose("loop", overrides=overrides, return_hydra_config=True)
        cfg = compose("loop", overrides=overrides)
    full.hydra.mode = RunMode[mode]
    HydraConfig.instance().set_config(full)
    try:
        assert default_group(load_app_config(cfg, needs_loop=True), "loop") == group
    finally:
        HydraConfig.instance().cfg = None
