"""The command-line check before Hydra starts (icl_stl.cli.preflight), in process: which command
lines it refuses, in what words, and which it leaves to Hydra. The console scripts' exit code
and the absence of any written file are checked in test_bad_input.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.cli.preflight import find_problem, unmakeable_dir


def problem(config: str, *argv: str) -> str | None:
    return find_problem(CONFIG_DIR, config, list(argv))


@pytest.mark.parametrize("config,argv,expected", [
    ("train", ["train.stepz=10"],
     "train.stepz=10: there is no setting train.stepz; did you mean train.steps?"),
    ("train", ["task.dd=3"], "task.dd=3: there is no setting task.dd; did you mean task.d?"),
    ("train", ["modle=tiny"], "modle=tiny: there is no setting modle; did you mean model?"),
    ("train", ["hydra.run.dirr=x"],
     "hydra.run.dirr=x: there is no setting hydra.run.dirr; did you mean hydra.run.dir?"),
    ("loop", ["loop.real_fractoin=0.5"], "did you mean loop.real_fraction?"),
    ("probe", ["probe.seedz=[0]"], "did you mean probe.seeds?"),
    ("eval", ["checkpont=a.pt"], "did you mean checkpoint?"),
    # under -m a sweep is checked by its key and reported as written
    ("loop", ["-m", "data.n=16,32", "train.stepz=1,2"],
     "train.stepz=1,2: there is no setting train.stepz"),
    ("loop", ["-m", "seed=range(0,3)", "sead=range(0,3)"], "sead=range(0,3): there is no"),
    ("train", ["model=tny"], "model=tny: model has no option 'tny'; did you mean tiny? "
                             "(options: lstm, mlp, small, standard, tiny)"),
    ("train", ["hydra/launcher=paralel"], "did you mean parallel?"),
    # a preset in a subfolder: named as typed, internal bases (_base) not offered
    ("loop", ["experiment=reproduce/colapse"],
     "experiment=reproduce/colapse: experiment has no option 'reproduce/colapse'; did you mean "
     "reproduce/collapse?"),
])
def test_a_mistyped_key_or_option_is_named_with_the_closest_valid_one(config, argv, expected):
    found = problem(config, *argv)
    assert found is not None and expected in found, found
    assert "\n" not in found


@pytest.mark.parametrize("config,argv", [
    ("train", ["train.steps=10", "debug=default", "hydra/launcher=parallel"]),
    ("loop", ["-m", "data.n=16,32", "loop.real_fraction=0,0.5", "seed=range(0,2)"]),
    ("loop", ["-m", "seed=choice(0,1)", "model=tiny,small"]),
    ("loop", ["-m", "experiment=modes"]),  # the grid lives in hydra.sweeper.params
    ("train", ["data.n=16,32"]),  # no -m: Hydra's own message says to add it
    ("train", ["+task.dimension=3"]),  # Hydra adds it; the settings parser refuses it
    ("train", ["+seed=3"]),  # Hydra's own error (already there)
    ("train", ["~task.nosuch"]),  # Hydra's own error (nothing to delete)
    ("train", ["train.steps=[1"]),  # Hydra's own syntax error
    ("train", ["--cfg", "job", "train.stepz=1"]),  # prints, writes nothing
    ("train", ["--bogus-flag"]),  # Hydra's usage error
    ("train", ["--config-dir", "/nowhere", "train.stepz=1"]),  # another config tree
])
def test_what_is_valid_or_hydras_own_business_is_left_to_hydra(config, argv):
    assert problem(config, *argv) is None


def test_a_sweep_over_a_group_checks_the_first_option_only_its_key_for_the_rest():
    assert "model has no option 'tny'" in problem("loop", "-m", "model=tny,tiny")
    assert problem("loop", "-m", "model=tiny,tny") is None  # that job fails alone, summarised


def test_directories_that_cannot_be_made_are_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert unmakeable_dir(tmp_path / "a" / "b") is None
    assert unmakeable_dir(blocker / "sub") == f"{blocker} is a file, not a directory"
    assert unmakeable_dir(blocker) == f"{blocker} is a file, not a directory"
    assert "cannot create a directory in /proc" in unmakeable_dir(Path("/proc/nope/x"))
    assert list(tmp_path.iterdir()) == [blocker]  # the write check leaves nothing behind
    assert problem("train", f"run.checkpoint_root={blocker}/ck") == \
        f"run.checkpoint_root={blocker}/ck: {blocker} is a file, not a directory"
    assert problem("train", "-m", "seed=0,1", f"hydra.sweep.dir={blocker}/s") == \
        f"hydra.sweep.dir={blocker}/s: {blocker} is a file, not a directory"
    # a multirun does not use hydra.run.dir, a single run not hydra.sweep.dir
    assert problem("train", "-m", "seed=0,1", f"hydra.run.dir={blocker}/r") is None
    assert problem("train", f"hydra.sweep.dir={blocker}/r") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert problem("train", f"hydra.run.dir={locked}/out").startswith(
            f"hydra.run.dir={locked}/out: cannot create a directory in {locked} (")
    finally:
        locked.chmod(0o700)


def test_a_second_wrong_override_does_not_hide_the_suggestion():
    found = problem("eval", "checkpont=x.pt", "train.steps=10")  # eval has no train.*
    assert found == "checkpont=x.pt: there is no setting checkpont; did you mean checkpoint?"
