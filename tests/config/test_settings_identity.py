"""Run names and checkpoint identities are hashes of the parsed settings: the committed results
under docs/results name their checkpoints by them (loop-28cc699237), so the same settings must
keep giving the same identity however the config classes are built."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR, load_app_config, run_name, settings_hash
from icl_stl.cli.loop import loop_settings
from icl_stl.config import AppConfig, LoopConfig, TaskConfig, TrainConfig
from icl_stl.persistence.identity import LOOP_KEYS_NOT_IN_IDENTITY, run_identity

# (committed summary, entry point, the preset it was run with). The generator-cpu and
# cpu/reference results predate later changes to their presets, so they name other settings.
COMMITTED = [
    ("cpu/runs/collapse", "loop", "reproduce/collapse"),
    ("cpu/runs/augmentation", "loop", "reproduce/augmentation"),
    ("cpu/runs/stability", "probe", "reproduce/stability"),
    ("cpu/runs/decay", "probe", "reproduce/decay"),
]


@pytest.mark.parametrize("where, kind, preset", COMMITTED, ids=[c[0] for c in COMMITTED])
def test_committed_results_keep_their_run_names(where, kind, preset):
    summary = json.loads((REPO / "docs" / "results" / where / "summary.json").read_text())
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        app = load_app_config(compose(kind, overrides=[f"experiment={preset}"]), needs_loop=True)
    assert run_name(app, kind) == summary["checkpoint_dir"].rsplit("/", 1)[-1]
    if kind == "loop":  # loop.json: what a checkpoint must match to be resumed
        assert loop_settings(app, runtime=None).identity() == summary["settings"]


def test_python_api_settings_keep_their_hashes():
    """Values computed before the config classes moved to pydantic (commit 957716e)."""
    assert settings_hash(AppConfig(), "train") == "2d100e78c2"
    assert settings_hash(AppConfig(loop=LoopConfig()), "loop") == "4de4bc2e6f"
    app = AppConfig(task=TaskConfig(name="noisy_linear_regression", d=3, noise_std=0.25),
                    train=TrainConfig(lr=3e-4, steps=700),
                    loop=LoopConfig(real_fraction=0.25, steps=50))
    assert settings_hash(app, "loop") == "dc6fdfc648"


LOOPS = [LoopConfig(), LoopConfig(warmup_steps=0, steps=20),
         LoopConfig(real_schedule="linear", real_schedule_rate=0.25, rounding="floor",
                    filter="verifier", filter_keep=0.5)]


@pytest.mark.parametrize("loop", LOOPS)
def test_run_name_and_checkpoint_share_one_loop_identity(loop):
    """One rule for both: a setting left out of the run name is left out of loop.json."""
    app = AppConfig(loop=loop)
    checkpoint = loop_settings(app, runtime=None).identity()
    assert run_identity(app)["loop"] == checkpoint["loop"]
    assert ("warmup_steps" in checkpoint["loop"]) == (loop.warmup_steps is not None)
    for key, value in (("generations", 9), ("label_batch_size", 7),
                       ("share_generation_0", False)):
        other = dataclasses.replace(app, loop=dataclasses.replace(loop, **{key: value}))
        assert settings_hash(other, "loop") == settings_hash(app, "loop")
        assert loop_settings(other, runtime=None).identity() == checkpoint
    assert set(LOOP_KEYS_NOT_IN_IDENTITY) == {"generations", "label_batch_size",
                                              "share_generation_0"}
    other = dataclasses.replace(app, loop=dataclasses.replace(loop, augment=2))
    assert settings_hash(other, "loop") != settings_hash(app, "loop")
    assert loop_settings(other, runtime=None).identity() != checkpoint
