"""Crash-safety of icl_stl.persistence: atomic writes, JSONL logs, checksummed checkpoints, run locks."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from icl_stl.persistence import (
    CheckpointSlot,
    CorruptCheckpointError,
    CorruptFileError,
    MissingCheckpointError,
    PersistenceError,
    RunLock,
    RunLockedError,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    load_state,
    read_json,
    read_jsonl,
    save_state,
)
from icl_stl.persistence import files as persistence_files

REPO = Path(__file__).resolve().parents[2]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic_write_bytes(target, [b"head|", memoryview(b"payload")])  # chunks, written in order
    assert target.read_bytes() == b"head|payload"
    assert _files(target.parent) == ["f.bin"]


@pytest.mark.parametrize("fail_in", ["write", "fsync"])
def test_atomic_write_disk_full_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    target = tmp_path / "state.pt"
    target.write_bytes(b"good old content")
    monkeypatch.setattr(persistence_files.os, fail_in, _enospc)
    with pytest.raises(PersistenceError) as info:
        atomic_write_bytes(target, b"new content that does not fit")
    monkeypatch.undo()
    message = str(info.value)
    assert str(target) in message
    assert "No space left on device" in message
    assert "previous version is intact" in message
    assert isinstance(info.value.__cause__, OSError)
    assert target.read_bytes() == b"good old content"
    assert _files(tmp_path) == ["state.pt"], "temp file left behind"


def test_atomic_write_failure_without_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "new.json"
    monkeypatch.setattr(persistence_files.os, "write", _enospc)
    with pytest.raises(PersistenceError, match="no file was written"):
        atomic_write_json(target, {"a": 1})
    monkeypatch.undo()
    assert _files(tmp_path) == []


def test_atomic_write_interrupt_cleans_up_and_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(persistence_files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _files(tmp_path) == ["f"]


def test_json_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    obj = {"b": 1, "a": [1.5, None, "x"], "nan": float("nan")}
    atomic_write_json(path, obj)
    text = path.read_text()
    assert text.index('"b"') < text.index('"a"'), "key order must be preserved"
    back = read_json(path)
    assert back["a"] == [1.5, None, "x"] and back["nan"] != back["nan"]
    with pytest.raises(TypeError, match="summary.json"):
        atomic_write_json(path, {"x": object()})
    assert read_json(path)["b"] == 1, "failed serialisation must not touch the file"
    path.write_text("{broken")
    with pytest.raises(CorruptFileError, match="summary.json"):
        read_json(path)


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m" / "metrics.jsonl"
    for i in range(3):
        append_jsonl(path, {"step": i, "text": "a\nb"})
    assert read_jsonl(path) == [{"step": i, "text": "a\nb"} for i in range(3)]
    assert path.read_text().count("\n") == 3


def test_jsonl_tolerates_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 0})
    append_jsonl(path, {"step": 1})
    with open(path, "ab") as f:
        f.write(b'{"step": 2, "lo')  # a writer killed mid-append
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]


def test_jsonl_append_after_torn_tail_repairs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 0})
    with open(path, "ab") as f:
        f.write(b'{"step": 1, "lo')
    with caplog.at_level(logging.WARNING, logger="icl_stl.persistence"):
        append_jsonl(path, {"step": 1})  # the resumed run logs it again
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]
    assert "partial line" in caplog.text
    # A complete last record merely missing its newline is kept, not dropped.
    with open(path, "ab") as f:
        f.write(b'{"step": 2}')
    append_jsonl(path, {"step": 3})
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2, 3]


def test_jsonl_raises_on_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1, bad\n{"step": 2}\n')
    with pytest.raises(CorruptFileError) as info:
        read_jsonl(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)
    path.write_text('{"step": 0}\n[1, 2]\n{"step": 2}\n')
    with pytest.raises(CorruptFileError, match="not a JSON object"):
        read_jsonl(path)


def test_jsonl_rejects_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with pytest.raises(TypeError, match="metrics.jsonl"):
        append_jsonl(path, {"x": object()})
    with pytest.raises(TypeError, match="must be dicts"):
        append_jsonl(path, [1, 2])  # type: ignore[arg-type]
    assert not path.exists()


def test_jsonl_disk_full_names_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 0})
    monkeypatch.setattr(persistence_files.os, "write", _enospc)
    with pytest.raises(PersistenceError, match=r"metrics\.jsonl.*No space left"):
        append_jsonl(path, {"step": 1})
    monkeypatch.undo()
    assert read_jsonl(path) == [{"step": 0}]


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _state() -> dict:
    gen = torch.Generator().manual_seed(1234)
    torch.rand(5, generator=gen)
    return {
        "model": {"w": torch.randn(4, 3), "b": torch.arange(3, dtype=torch.int64)},
        "rng": {"torch": gen.get_state(), "python_like": [1, 2, 3]},
        "step": 17,
        "lr": 3e-4,
        "name": "run",
        "history": [{"gen": 0, "err": 0.5}, {"gen": 1, "err": 0.25}],
    }


def test_state_round_trip(tmp_path: Path) -> None:
    state = _state()
    path = tmp_path / "ckpt" / "state.pt"
    save_state(path, state)
    back = load_state(path)
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert torch.equal(back["model"]["b"], state["model"]["b"])
    assert back["step"] == 17 and back["lr"] == 3e-4 and back["name"] == "run"
    assert back["history"] == state["history"]
    assert back["rng"]["python_like"] == [1, 2, 3]
    # The restored generator continues the same stream.
    g1 = torch.Generator()
    g1.set_state(state["rng"]["torch"])
    g2 = torch.Generator()
    g2.set_state(back["rng"]["torch"])
    assert torch.equal(torch.rand(8, generator=g1), torch.rand(8, generator=g2))
    assert _files(path.parent) == ["state.pt"]


def test_corrupt_byte_detected(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_state(path, _state())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError) as info:
        load_state(path)
    assert str(path) in str(info.value) and "checksum" in str(info.value)


@pytest.mark.parametrize("keep", [0, 3, 20, 90, -10])
def test_truncation_detected(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "state.pt"
    save_state(path, _state())
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CorruptCheckpointError) as info:
        load_state(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_bad_header_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save({"x": 1}, path)  # a plain torch file, not ours
    with pytest.raises(CorruptCheckpointError, match="bad header"):
        load_state(path)
    missing = tmp_path / "nope.pt"
    with pytest.raises(MissingCheckpointError) as info:
        load_state(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value)


class _Picklable:
    """Picklable, but not allowed by weights_only loading."""


def test_save_state_rejects_unloadable_state(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_state(path, {"step": 1})

    class Local:  # not even picklable
        pass

    with pytest.raises(ValueError, match="weights_only") as info:
        save_state(path, {"step": 2, "obj": _Picklable()})
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="cannot serialise"):
        save_state(path, {"step": 2, "obj": Local()})
    assert load_state(path) == {"step": 1}, "good checkpoint must survive a bad save"
    assert _files(tmp_path) == ["state.pt"]


def test_save_state_disk_full_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.pt"
    save_state(path, {"step": 1})
    monkeypatch.setattr(persistence_files.os, "write", _enospc)
    with pytest.raises(PersistenceError, match="state.pt: No space left on device"):
        save_state(path, {"step": 2})
    monkeypatch.undo()
    assert load_state(path) == {"step": 1}
    assert _files(tmp_path) == ["state.pt"]


# ---------------------------------------------------------------------------------------------
# CheckpointSlot


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def test_slot_empty(tmp_path: Path) -> None:
    slot = CheckpointSlot(tmp_path / "ckpt")
    assert not slot.exists()
    assert slot.load_latest() is None


def test_slot_keeps_previous(tmp_path: Path) -> None:
    slot = CheckpointSlot(tmp_path, name="train")
    slot.save({"step": 1})
    assert slot.exists() and not slot.prev_path.exists()
    slot.save({"step": 2})
    assert load_state(slot.prev_path) == {"step": 1}
    state, path = slot.load_latest()
    assert state == {"step": 2} and path == tmp_path / "train.pt"
    slot.save({"step": 3})
    assert load_state(slot.prev_path) == {"step": 2}
    assert _files(tmp_path) == ["train.prev.pt", "train.pt"]


def test_slot_falls_back_to_prev(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    slot = CheckpointSlot(tmp_path)
    slot.save({"step": 1})
    slot.save({"step": 2})
    _corrupt(slot.latest_path)
    with caplog.at_level(logging.WARNING, logger="icl_stl.persistence"):
        state, path = slot.load_latest()
    assert state == {"step": 1} and path == slot.prev_path
    assert str(slot.latest_path) in caplog.text


def test_slot_save_over_corrupt_latest_keeps_good_prev(tmp_path: Path) -> None:
    slot = CheckpointSlot(tmp_path)
    slot.save({"step": 1})
    slot.save({"step": 2})
    _corrupt(slot.latest_path)
    slot.save({"step": 3})
    # The damaged step-2 file was not rotated over the good step-1 one.
    assert load_state(slot.prev_path) == {"step": 1}
    assert slot.load_latest()[0] == {"step": 3}


def test_slot_interrupted_between_rotate_and_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = CheckpointSlot(tmp_path)
    slot.save({"step": 1})
    slot.save({"step": 2})
    monkeypatch.setattr(persistence_files.os, "write", _enospc)
    with pytest.raises(PersistenceError):
        slot.save({"step": 3})
    monkeypatch.undo()
    # The rotation happened, the new write did not: the rotated step-2 copy is still there.
    assert not slot.latest_path.exists()
    assert slot.load_latest() == ({"step": 2}, slot.prev_path)


def test_slot_all_corrupt_raises(tmp_path: Path) -> None:
    slot = CheckpointSlot(tmp_path)
    slot.save({"step": 1})
    slot.save({"step": 2})
    _corrupt(slot.latest_path)
    _corrupt(slot.prev_path)
    with pytest.raises(CorruptCheckpointError) as info:
        slot.load_latest()
    assert str(slot.latest_path) in str(info.value)
    assert str(slot.prev_path) in str(info.value)


def test_slot_removes_temp_files_of_dead_writers(tmp_path: Path) -> None:
    slot = CheckpointSlot(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".state.pt.{pid}.0123abcd.tmp"
    stale.write_bytes(b"partial")
    unrelated = tmp_path / f".other.pt.{pid}.0123abcd.tmp"
    unrelated.write_bytes(b"not ours")
    slot.save({"step": 1})
    assert not stale.exists()
    assert unrelated.exists()


# ---------------------------------------------------------------------------------------------
# RunLock


def test_lock_excludes_second_holder_in_process(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock:
        assert lock.held
        with pytest.raises(RunLockedError) as info:
            RunLock(tmp_path).acquire()
        assert str(tmp_path) in str(info.value)
        assert f"pid {os.getpid()}" in str(info.value)
    assert not lock.held
    with RunLock(tmp_path):  # released: can be taken again
        pass


def test_lock_waits_for_release(tmp_path: Path) -> None:
    holder = RunLock(tmp_path).acquire()
    timer = threading.Timer(0.2, holder.release)
    timer.start()
    try:
        start = time.monotonic()
        with RunLock(tmp_path, timeout_s=5.0, poll_s=0.02):
            waited = time.monotonic() - start
    finally:
        timer.cancel()
    assert 0.1 < waited < 4.0


def test_lock_timeout_expires(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        start = time.monotonic()
        with pytest.raises(RunLockedError, match="after waiting"):
            RunLock(tmp_path, timeout_s=0.3, poll_s=0.05).acquire()
        assert time.monotonic() - start >= 0.3


def test_lock_acquire_twice_same_object(tmp_path: Path) -> None:
    lock = RunLock(tmp_path).acquire()
    try:
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
    finally:
        lock.release()
    lock.release()  # idempotent


_CHILD = """
import sys, time
from icl_stl.persistence import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_of_killed_process_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as info:
            RunLock(tmp_path).acquire()
        assert f"pid {child.pid}" in str(info.value)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == child.pid  # left behind
    with caplog.at_level(logging.WARNING, logger="icl_stl.persistence"):
        with RunLock(tmp_path):
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and "no longer running" in caplog.text


def test_lock_survives_a_forked_child_exiting(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        pid = os.fork()
        if pid == 0:  # a worker that finishes: closing its copy must not unlock the parent
            os._exit(0)
        os.waitpid(pid, 0)
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()


# The worker says it is running before the run is killed: fork's handlers (filelock closes the
# child's copy of the lock's descriptor in one) run in the child before fork() returns there,
# but a busy machine may not schedule the child until after the parent has died, and until
# then the child's copy still holds the flock (seen in CI on 2 loaded cores).
_CHILD_WITH_WORKER = """
import os, signal, sys, time
from icl_stl.persistence import RunLock
RunLock(sys.argv[1]).acquire()
ready_r, ready_w = os.pipe()
worker = os.fork()
if worker == 0:
    os.write(ready_w, b"1")
    time.sleep(60)
    os._exit(0)
os.read(ready_r, 1)
print(worker, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_worker_outliving_a_killed_run_does_not_keep_its_lock(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-c", _CHILD_WITH_WORKER, str(tmp_path)],
                           stdout=subprocess.PIPE, text=True, env=env)
    assert run.stdout is not None
    worker = int(run.stdout.readline())
    try:
        assert run.wait(timeout=30) == -signal.SIGKILL
        os.kill(worker, 0)  # the worker is still alive
        with RunLock(tmp_path) as lock:
            assert lock.held
    finally:
        os.kill(worker, signal.SIGKILL)
