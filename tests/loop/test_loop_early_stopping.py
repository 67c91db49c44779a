"""The loop with early stopping (train.held_out_fraction > 0): each member trains on S_0 less
its held-out tenth, stops at its own best held-out step, and records both; a bad setting is
refused with one line and exit 2 before anything runs."""

from __future__ import annotations

import pytest
from conftest import LOOP_CLI, TINY_LOOP, cli_args, compose_loop, run_cli

from icl_stl.cli.loop import loop_from_config
from icl_stl.config import ConfigError, EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.models.model import MODEL_SIZES
from icl_stl.probes.decay import decay_members


def _run(tmp_path, fraction: float, seeds=(3, 4)):
    settings = LoopSettings(TaskConfig(d=2, k=5), ModelConfig(**MODEL_SIZES["tiny"]),
                            TrainConfig(steps=40, batch_size=16, warmup_steps=5, log_every=10,
                                        checkpoint_every=0, held_out_fraction=fraction),
                            EvalConfig(n_prompts=64, batch_size=64), LoopConfig(generations=0),
                            seed=1)
    return LoopRun(settings, decay_members([40], list(seeds), 1.0, 0),
                   tmp_path / f"ck{fraction}").run()["generations"]


def test_each_loop_records_its_split_and_its_stopping_step(tmp_path):
    records = _run(tmp_path, 0.1)
    for r in records:
        assert r["held_out_n"] == 4 and r["train_n"] == 36 and r["train_size"] == 36
        assert r["stopped_step"] in range(10, 41, 10)
        assert r["held_out_risk"] > 0
    alone = _run(tmp_path / "alone", 0.1, seeds=(4,))[0]
    assert alone["stopped_step"] == records[1]["stopped_step"]
    assert alone["held_out_risk"] == records[1]["held_out_risk"]
    assert alone["test_risk"] == pytest.approx(records[1]["test_risk"], rel=1e-6)
    off = _run(tmp_path, 0.0)
    assert all("stopped_step" not in r and r["train_size"] == 40 for r in off)


@pytest.mark.parametrize("override, why", [
    ("train.held_out_fraction=0.01", "n=16"),  # rounds to no held-out prompt at all
    ("train.held_out_fraction=0.9", "0.9"),  # beyond the allowed share
])
def test_bad_held_out_settings_are_refused_before_anything_runs(tmp_path, override, why):
    cfg = compose_loop(tmp_path, override)
    with pytest.raises(ConfigError) as info:
        loop_from_config(cfg, tmp_path / "out")
    message = str(info.value)
    assert "train.held_out_fraction" in message and why in message and "\n" not in message
    assert not (tmp_path / "ck").exists()


def test_a_bad_held_out_setting_exits_2_through_the_cli(tmp_path):
    proc = run_cli(LOOP_CLI, *cli_args(TINY_LOOP, tmp_path, "out",
                                       "train.held_out_fraction=0.01"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if "train.held_out_fraction" in ln]
    assert len(lines) == 1 and "n=16" in lines[0]
    assert not (tmp_path / "ck").exists()
