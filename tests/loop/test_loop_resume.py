"""A loop killed at any moment and started again ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import (
    LOOP_CLI,
    LOOP_CLI_OVERRIDES,
    check_ok,
    cli_args,
    compose_loop,
    read_summary,
    run_cli,
)

from icl_stl.cli.loop import loop_from_config
from icl_stl.config import ConfigError

# LOOP_CLI_OVERRIDES: generation 0 trains 20 steps, so the 28th train step is step 8 of
# generation 1 (after its checkpoint at step 5); with k = 5 and no context pairs, labelling
# reaches position 3 of generation 1's synthetic prompts at the 3rd label_position.
FAULTS = {"train_step:28": "train", "label_position:3": "label"}


def _killed_then_resumed(root: Path, fault: str) -> tuple[Path, str]:
    """Run the CLI loop killed at `fault`, check what it left, resume it; (run dir, log)."""
    args = cli_args(LOOP_CLI_OVERRIDES, root, "out")
    killed = run_cli(LOOP_CLI, *args, fault=fault)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (ck,) = (root / "ck").iterdir()
    assert (ck / "gen_000" / "metrics.json").exists()  # generation 0 finished ...
    assert not (ck / "gen_001" / "metrics.json").exists()  # ... generation 1 did not
    if FAULTS[fault] == "train":
        assert (ck / "gen_001" / "synthetic.pt").exists()  # labelled before training
        assert (ck / "gen_001" / "train.pt").exists()  # the mid-generation resume point
    else:
        assert not (ck / "gen_001" / "synthetic.pt").exists()  # killed while labelling
    resumed = run_cli(LOOP_CLI, *args)
    check_ok(resumed)
    return root / "out", resumed.stderr + resumed.stdout


def test_loop_killed_while_training_resumes_identically(tmp_path, loop_cli_run):
    out, log = _killed_then_resumed(tmp_path, "train_step:28")
    assert "generation 0 already finished" in log
    assert "resumed at step 5" in log
    assert read_summary(out)["generations"] == read_summary(loop_cli_run)["generations"]


@pytest.mark.slow
def test_loop_killed_while_labelling_resumes_identically(tmp_path, loop_cli_run):
    out, log = _killed_then_resumed(tmp_path, "label_position:3")
    assert "generation 0 already finished" in log
    assert read_summary(out)["generations"] == read_summary(loop_cli_run)["generations"]


# ---------------------------------------------------------------------------------------------
# In process: resuming finished generations, growing the loop, refusing other settings

FAST = ["train.steps=6", "eval.n_prompts=16", "eval.batch_size=16", "run.name=resumable"]


def test_more_generations_continue_the_same_loop(tmp_path):
    short = loop_from_config(compose_loop(tmp_path, *FAST), tmp_path / "a")
    (ck,) = (tmp_path / "ck").iterdir()
    gen0_model = (ck / "gen_000" / "model.pt").stat().st_mtime_ns
    longer = loop_from_config(compose_loop(tmp_path, *FAST, "loop.generations=2"),
                              tmp_path / "b")
    assert (ck / "gen_000" / "model.pt").stat().st_mtime_ns == gen0_model  # not retrained
    assert longer["generations"][:2] == short["generations"]
    fresh = loop_from_config(compose_loop(tmp_path / "fresh", *FAST, "loop.generations=2"),
                             tmp_path / "c")
    assert longer["generations"] == fresh["generations"]


def test_an_unusable_resume_point_is_recomputed_identically(tmp_path):
    first = loop_from_config(compose_loop(tmp_path, *FAST, "loop.generations=2"), tmp_path / "a")
    (ck,) = (tmp_path / "ck").iterdir()
    (ck / "gen_002" / "model.pt").write_bytes(b"garbage")  # the last model: the resume point
    again = loop_from_config(compose_loop(tmp_path, *FAST, "loop.generations=2"), tmp_path / "b")
    assert again["generations"] == first["generations"]
    assert (ck / "gen_002" / "model.pt").read_bytes() != b"garbage"


@pytest.mark.parametrize("arm", ["replace", "accumulate"])
def test_a_checkpoint_pruned_to_its_resume_point_continues_identically(tmp_path, arm):
    """What a programme carries to a new machine (`prune_to_resume_point`): metrics.json of every
    finished generation and the last one's model (every model where the arm accumulates). The
    loop grown by a generation from it ends with the numbers of one never interrupted."""
    from icl_stl.loop.checkpoints import prune_to_resume_point

    arm_set = f"loop.synthetic={arm}"
    loop_from_config(compose_loop(tmp_path, *FAST, arm_set, "loop.generations=2"), tmp_path / "a")
    (ck,) = (tmp_path / "ck").iterdir()
    keep = prune_to_resume_point(ck)
    models = ["gen_000/model.pt", "gen_001/model.pt", "gen_002/model.pt"]
    assert {str(p) for p in keep if p.name == "model.pt"} == set(
        models if arm == "accumulate" else models[-1:])
    assert {str(p) for p in keep if p.name == "metrics.json"} == {
        f"gen_00{i}/metrics.json" for i in range(3)}
    pruned = tmp_path / "pruned"
    for rel in keep:
        (pruned / ck.name / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ck / rel, pruned / ck.name / rel)
    grown = loop_from_config(compose_loop(tmp_path / "pruned_root", *FAST, arm_set,
                                          "loop.generations=3", f"run.checkpoint_root={pruned}"),
                             tmp_path / "b")
    fresh = loop_from_config(compose_loop(tmp_path / "fresh", *FAST, arm_set,
                                          "loop.generations=3"), tmp_path / "c")
    assert grown["generations"] == fresh["generations"]
    assert not (pruned / ck.name / "gen_000" / "model.pt").exists() or arm == "accumulate"


def test_generation_lost_before_labelling_is_recomputed_identically(tmp_path):
    """The state a kill during labelling leaves: generation 0 finished, nothing of generation 1."""
    first = loop_from_config(compose_loop(tmp_path, *FAST), tmp_path / "a")
    (ck,) = (tmp_path / "ck").iterdir()
    shutil.rmtree(ck / "gen_001")
    again = loop_from_config(compose_loop(tmp_path, *FAST), tmp_path / "b")
    assert again["generations"] == first["generations"]
    assert (ck / "gen_001" / "synthetic.pt").exists()


def test_checkpoint_of_other_loop_settings_is_refused(tmp_path):
    loop_from_config(compose_loop(tmp_path, *FAST), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"other settings \(loop\.real_fraction: 0\.5 in the "
                                          r"checkpoint, 0\.25 now\)"):
        loop_from_config(compose_loop(tmp_path, *FAST, "loop.real_fraction=0.25"),
                         tmp_path / "b")
    with pytest.raises(ConfigError, match=r"\(train\.lr: 0\.001 in the checkpoint, 0\.01 now\)"):
        loop_from_config(compose_loop(tmp_path, *FAST, "train.lr=0.01"), tmp_path / "c")


def test_checkpoints_of_another_results_version_are_refused_naming_it(tmp_path, monkeypatch):
    """After a change that alters results the same command must not reload old generations."""
    import icl_stl.persistence.identity as identity

    loop_from_config(compose_loop(tmp_path, *FAST, "run.name=fixed"), tmp_path / "a")
    monkeypatch.setattr(identity, "RESULTS_VERSION", identity.RESULTS_VERSION + 1)
    with pytest.raises(ConfigError, match=r"\(results_version: \d+ in the checkpoint, \d+ now\)"):
        loop_from_config(compose_loop(tmp_path, *FAST, "run.name=fixed"), tmp_path / "b")


def test_logging_cadence_does_not_change_the_run_name(tmp_path):
    from icl_stl.cli.common import load_app_config, settings_hash

    def name(*extra: str) -> str:  # the default run name is loop-<this hash>
        return settings_hash(load_app_config(compose_loop(tmp_path, *FAST, *extra),
                                             needs_loop=True), "loop")

    assert name() == name("train.log_every=7", "train.checkpoint_every=3")
    assert name() != name("train.lr=0.01")
