"""Reliability at the run level: damaged checkpoints, a full disk, divergence, two runs on one
directory, W&B failures, and exact resumes in-process (reliability issue, parts 2, 3, 5, 6).

Runs use the tiny settings and helpers of tests/system/test_faults.py; a "kill" in-process is an
exception raised at a fault point, which leaves the files exactly as a SIGKILL there would.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_faults import (
    BIN,
    COUNTS,
    TIMEOUT_S,
    TINY,
    check_killed,
    check_ok,
    check_same_result,
    clean_env,
    cli,
    comparable,
    emit_counts,  # noqa: F401  (autouse: writes this module's counts)
    output,
    reference,
    run_in_process,
    stored_records,
)

from icl_stl.persistence import (
    CheckpointSlot,
    PersistenceError,
    RunLock,
    RunLockedError,
    faults,
    load_state,
)
from icl_stl.persistence import files as persistence_files
from icl_stl.training.engine import DivergenceError

FRESH_PROCESS_SEED = 67280421310721  # torch's default seed of a new process


@pytest.fixture(autouse=True)
def _fresh_fault_counts():
    """Fault points count per process: each in-process test starts from zero."""
    faults.reset()
    yield
    faults.reset()


class SimulatedKill(BaseException):
    """Raised at a fault point: like SIGKILL, nothing after it runs (no `except Exception`)."""


def kill_at(monkeypatch, module, point: str, nth: int) -> None:
    """Make `module`'s fault_point raise SimulatedKill the `nth` time `point` is reached."""
    seen = {"n": 0}

    def fault_point(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == nth:
                raise SimulatedKill(f"{point}:{nth}")

    monkeypatch.setattr(module, "fault_point", fault_point)


def damage(path: Path, how: str) -> None:
    """Flip bytes in the middle of `path`, or cut it in half."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        middle = len(data) // 2
        data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
        path.write_bytes(bytes(data))
    COUNTS["corruptions_injected"] += 1


def run_dir_of(ck_root: Path) -> Path:
    """The one run's checkpoint directory under a checkpoint root (named by a settings hash)."""
    (name,) = [p for p in ck_root.iterdir() if p.is_dir()]
    return name


def one_clear_line(proc: subprocess.CompletedProcess) -> str:
    """The user-facing error of a failed CLI run: exit code 2, one line, no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in output(proc), proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 2. Checkpoints never half-written


@pytest.fixture(scope="module")
def killed_train(tmp_path_factory) -> Path:
    """A checkpoint root of a training run SIGKILLed at step 35: train.pt holds step 30 and
    train.prev.pt step 20."""
    tmp = tmp_path_factory.mktemp("killed-train")
    check_killed(cli("train", tmp, fault="train_step:35"), "train_step:35")
    return tmp / "ck"


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, tmp_path_factory,
                                                          killed_train):
    ref = reference("train", tmp_path_factory).summary
    shutil.copytree(killed_train, tmp_path / "ck")
    latest = run_dir_of(tmp_path / "ck") / "train.pt"
    damage(latest, "flip")
    proc = cli("train", tmp_path)
    check_ok(proc)
    assert f"checkpoint {latest} fails its checksum" in output(proc)  # reported with its path
    assert "resumed at step 20" in output(proc)
    COUNTS["corruptions_detected"] += 1
    check_same_result("train", tmp_path / "out", tmp_path / "ck", ref)


def test_all_checkpoints_corrupt_stops_with_clear_error(tmp_path, killed_train):
    shutil.copytree(killed_train, tmp_path / "ck")
    directory = run_dir_of(tmp_path / "ck")
    damage(directory / "train.pt", "truncate")
    damage(directory / "train.prev.pt", "flip")
    before = {p.name: p.read_bytes() for p in directory.glob("*.pt")}
    line = one_clear_line(cli("train", tmp_path))
    assert str(directory / "train.pt") in line and "truncated" in line
    assert str(directory / "train.prev.pt") in line and "checksum" in line
    COUNTS["corruptions_detected"] += 2
    # Nothing was overwritten: the damaged files stay for inspection, and no run started over.
    assert {p.name: p.read_bytes() for p in directory.glob("*.pt")} == before
    assert not (tmp_path / "out" / "summary.json").exists()


def _finished_loop(tmp_path: Path, factory, *extra: str) -> tuple[dict, Path]:
    """A copy of the finished reference loop's checkpoints: (reference summary, gen dir root)."""
    ref = reference("loop", factory, *extra)
    shutil.copytree(ref.root / "ck", tmp_path / "ck")
    return ref.summary, run_dir_of(tmp_path / "ck")


def test_corrupt_finished_generation_model_is_recomputed(tmp_path, tmp_path_factory, caplog):
    """The resume point's model (the last finished generation's) is read and, damaged,
    recomputed; an earlier one a replacing loop never needs again is not read."""
    ref, directory = _finished_loop(tmp_path, tmp_path_factory)
    last = max(directory.glob("gen_*/model.pt")).parent.name
    damage(directory / last / "model.pt", "flip")
    damage(directory / "gen_000" / "model.pt", "flip")
    untouched = (directory / "gen_000" / "model.pt").read_bytes()
    with caplog.at_level(logging.WARNING):
        summary = run_in_process("loop", tmp_path / "out", tmp_path / "ck")
    assert f"generation {int(last[4:])} is marked finished but its model is unusable" in caplog.text
    assert str(directory / last / "model.pt") in caplog.text
    COUNTS["corruptions_detected"] += 1
    assert comparable(summary) == comparable(ref)
    assert stored_records(tmp_path / "ck", ref) == ref["generations"]
    assert (directory / "gen_000" / "model.pt").read_bytes() == untouched
    COUNTS["identical_after_fault"] += 1


def test_corrupt_synthetic_prompts_of_finished_generation_are_restored(tmp_path,
                                                                       tmp_path_factory):
    # An accumulating loop re-reads every generation's synthetic prompts on resume. Generation
    # 1's were labelled by generation 0; relabelled after damage they must come out the same:
    # labelled by generation 0 again, not by the generation-1 model.
    ref, directory = _finished_loop(tmp_path, tmp_path_factory, "loop.synthetic=accumulate")
    path = directory / "gen_001" / "synthetic.pt"
    original = load_state(path)
    damage(path, "flip")
    summary = run_in_process("loop", tmp_path / "out", tmp_path / "ck",
                             "loop.synthetic=accumulate")
    COUNTS["corruptions_detected"] += 1
    assert comparable(summary) == comparable(ref)
    restored = load_state(path)
    for before, after in zip(original["members"], restored["members"], strict=True):
        assert torch.equal(before["ys"], after["ys"]), f"{path} was relabelled by another model"


def test_corrupt_generation_metrics_is_recomputed_or_reported(tmp_path, tmp_path_factory):
    ref, directory = _finished_loop(tmp_path, tmp_path_factory)
    metrics = directory / "gen_000" / "metrics.json"
    metrics.write_text('{"records": [')  # cannot happen through atomic writes: outside damage
    COUNTS["corruptions_injected"] += 1
    try:
        summary = run_in_process("loop", tmp_path / "out", tmp_path / "ck")
    except PersistenceError as err:  # stopping with the path named is also a safe outcome
        assert str(metrics) in str(err)
    else:
        assert comparable(summary) == comparable(ref)
    COUNTS["corruptions_detected"] += 1


def test_full_disk_during_checkpoint_stops_and_keeps_previous(tmp_path, tmp_path_factory,
                                                              monkeypatch):
    ref = reference("train", tmp_path_factory).summary
    real_write, chunks = persistence_files._write_all, {"n": 0}

    def write_until_full(fd: int, data) -> None:
        if ".train.pt." in os.readlink(f"/proc/self/fd/{fd}"):  # the temp file of train.pt
            chunks["n"] += 1
            if chunks["n"] > 2:  # a checkpoint is two chunks (header, payload): 2nd save fails
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    monkeypatch.setattr(persistence_files, "_write_all", write_until_full)
    with pytest.raises(PersistenceError) as err:
        run_in_process("train", tmp_path / "out", tmp_path / "ck")
    directory = run_dir_of(tmp_path / "ck")
    assert f"could not write {directory / 'train.pt'}: No space left on device" in str(err.value)
    COUNTS["disk_full_detected"] += 1
    state, path = CheckpointSlot(directory, "train").load_latest()
    assert state["step"] == 10 and path == directory / "train.prev.pt"
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(persistence_files, "_write_all", real_write)  # space freed: the same run resumes
    summary = run_in_process("train", tmp_path / "out", tmp_path / "ck")
    assert comparable(summary) == comparable(ref)
    COUNTS["identical_after_fault"] += 1


# ---------------------------------------------------------------------------------------------
# 3. Divergence


def test_nan_loss_stops_with_step_and_keeps_good_checkpoint(tmp_path):
    line = one_clear_line(cli("train", tmp_path, fault="nan_loss:15"))
    assert "non-finite loss or gradient at step 15" in line
    directory = run_dir_of(tmp_path / "ck")
    assert str(directory / "diverged.pt") in line
    assert load_state(directory / "diverged.pt")["when"] == "at step 15"  # saved to inspect
    assert load_state(directory / "train.pt")["step"] == 10  # the good state is untouched
    COUNTS["divergences_stopped"] += 1


def test_nan_loss_in_loop_names_generation_and_step(tmp_path, monkeypatch):
    monkeypatch.setenv("ICL_STL_FAULT", "nan_loss:35")  # generation 0 has 30 steps
    with pytest.raises(DivergenceError, match=r"generation 1: non-finite loss .* at step 5"):
        run_in_process("loop", tmp_path / "out", tmp_path / "ck")
    directory = run_dir_of(tmp_path / "ck")
    assert load_state(directory / "gen_001" / "diverged.pt")["when"] == "at step 5"
    assert (directory / "gen_000" / "metrics.json").exists()  # the finished generation stays
    load_state(directory / "gen_000" / "model.pt")
    COUNTS["divergences_stopped"] += 1


def test_max_bad_steps_skips_a_bounded_number(tmp_path, monkeypatch):
    monkeypatch.setenv("ICL_STL_FAULT", "nan_loss:15-16")
    summary = run_in_process("train", tmp_path / "a" / "out", tmp_path / "a" / "ck",
                             "train.max_bad_steps=2")
    assert summary["bad_steps"] == 2 and summary["steps"] == 40
    assert all(v == v for v in (summary["test_risk"], summary["final_train_loss"]))  # not NaN
    COUNTS["bad_steps_skipped"] += 2
    faults.reset()
    monkeypatch.setenv("ICL_STL_FAULT", "nan_loss:15-17")
    with pytest.raises(DivergenceError, match="at step 17"):
        run_in_process("train", tmp_path / "b" / "out", tmp_path / "b" / "ck",
                       "train.max_bad_steps=2")
    COUNTS["divergences_stopped"] += 1


def test_non_finite_synthetic_labels_stop_the_loop(tmp_path, monkeypatch):
    from icl_stl.loop.learners import TransformerLearner

    real = TransformerLearner.synthesize

    def nan_label(self, generation, inputs):
        labelled = real(self, generation, inputs)
        labelled[0].ys[0, -1] = float("nan")  # one label of one prompt of member 0
        return labelled

    monkeypatch.setattr(TransformerLearner, "synthesize", nan_label)
    with pytest.raises(DivergenceError) as err:
        run_in_process("loop", tmp_path / "out", tmp_path / "ck")
    message = str(err.value)
    assert "generation 1" in message and "label" in message, message
    COUNTS["divergences_stopped"] += 1


# ---------------------------------------------------------------------------------------------
# 5. Two runs, one directory


def _wait_until_stopped(proc: subprocess.Popen, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the first run ended (exit {proc.returncode}) before stopping"
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.1)
    raise AssertionError("the first run did not reach its stop point")


def test_two_runs_on_one_directory_do_not_corrupt_each_other(tmp_path, tmp_path_factory):
    ref = reference("train", tmp_path_factory).summary
    args = [str(BIN / "icl-stl-train"), *TINY["train"], f"run.checkpoint_root={tmp_path / 'ck'}",
            f"hydra.run.dir={tmp_path / 'out'}"]
    # The first run freezes at step 5, holding its lock, until it is sent SIGCONT.
    first = subprocess.Popen(args, cwd=tmp_path, env=clean_env(ICL_STL_FAULT="train_step:5:stop"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_stopped(first)
        same_name = cli("train", tmp_path)  # same checkpoint name and run directory
        same_dir = cli("train", tmp_path, "seed=1", ck="ck-other")  # same run directory only
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, first_err = first.communicate(timeout=TIMEOUT_S)
    assert first.returncode == 0, first_err[-3000:]
    line = one_clear_line(same_name)
    assert f"is locked by pid {first.pid}" in line
    COUNTS["concurrent_runs_refused"] += 1
    check_same_result("train", tmp_path / "out", tmp_path / "ck", ref)
    # A run with other settings in the same run directory would mix its metrics.jsonl and
    # summary.json with the first run's: it must be refused as well.
    line = one_clear_line(same_dir)
    assert "locked" in line
    COUNTS["concurrent_runs_refused"] += 1


def test_loop_refuses_a_checkpoint_directory_in_use(tmp_path, tmp_path_factory):
    ref = reference("loop", tmp_path_factory)
    shutil.copytree(ref.root / "ck", tmp_path / "ck")
    directory = run_dir_of(tmp_path / "ck")
    with RunLock(directory), pytest.raises(RunLockedError, match=f"is locked by pid {os.getpid()}"):
        run_in_process("loop", tmp_path / "out", tmp_path / "ck")
    COUNTS["concurrent_runs_refused"] += 1


# ---------------------------------------------------------------------------------------------
# 6. Logging never kills a run


def _wandb_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No W&B credentials or settings from this machine; W&B's files under tmp_path."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("WANDB_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), WANDB_CONFIG_DIR=str(home),
               WANDB_CACHE_DIR=str(home), WANDB_DATA_DIR=str(home), **extra)
    return env


@pytest.mark.parametrize("case", ["unreachable", "unwritable"])
def test_wandb_failure_degrades_to_local_files(tmp_path, tmp_path_factory, case):
    ref = reference("train", tmp_path_factory).summary
    if case == "unreachable":  # online, a key, and a server that does not resolve
        env = _wandb_env(tmp_path, WANDB_API_KEY="a" * 40, WANDB_BASE_URL="http://wandb.invalid")
        mode = "online"
    else:  # offline, and W&B's directory cannot be created (a file is in its place)
        env = _wandb_env(tmp_path)
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "wandb").write_text("not a directory")
        mode = "offline"
    start = time.monotonic()
    proc = cli("train", tmp_path, f"logger.mode={mode}", "logger.init_timeout_s=5", env=env)
    elapsed = time.monotonic() - start
    check_ok(proc)
    assert "wandb unavailable" in output(proc)
    assert elapsed < 120, f"a W&B failure held the run for {elapsed:.0f} s"
    assert (tmp_path / "out" / "metrics.jsonl").stat().st_size > 0
    check_same_result("train", tmp_path / "out", tmp_path / "ck", ref)
    COUNTS["logging_failures_survived"] += 1


# ---------------------------------------------------------------------------------------------
# Nothing lost, nothing different: exact resumes checked in-process


def test_summary_json_holds_the_whole_summary(tmp_path, tmp_path_factory):
    # What a run returns is what it leaves on disk: no later writer may replace summary.json.
    for kind in ("train", "loop"):
        ref = reference(kind, tmp_path_factory)
        on_disk = json.loads((ref.root / "out" / "summary.json").read_text())
        assert sorted(on_disk) == sorted(ref.summary), f"{kind}: summary.json was replaced"
        assert comparable(on_disk) == comparable(ref.summary)


@pytest.mark.parametrize("extra", [["train.log_every=20"], ["model.dropout=0.1"]],
                         ids=["log_window_across_checkpoint", "dropout"])
def test_in_process_kill_resumes_exactly(tmp_path, monkeypatch, extra):
    # Settings whose state lives outside model, optimizer and batch generators: a logging
    # window that spans a checkpoint, and dropout (the members' dropout generators). A fresh
    # process starts torch's global generator from the same seed, as emulated here before each
    # run, though nothing should draw from it.
    import icl_stl.training.engine as training

    def fresh_process_run(root: Path) -> dict:
        torch.manual_seed(FRESH_PROCESS_SEED)
        return run_in_process("train", root / "out", root / "ck", *extra)

    ref = fresh_process_run(tmp_path / "ref")
    kill_at(monkeypatch, training, "train_step", 35)  # resumes at 30, inside the last window
    with pytest.raises(SimulatedKill):
        fresh_process_run(tmp_path / "run")
    COUNTS["simulated_kills"] += 1
    monkeypatch.undo()
    resumed = fresh_process_run(tmp_path / "run")
    assert comparable(resumed) == comparable(ref)
    COUNTS["identical_after_fault"] += 1
