"""RunLogger: local files always, W&B when it works, never a dead or hung run because of W&B."""

from __future__ import annotations

import ast
import logging
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fake_wandb import FakeRun, FakeWandb, install

from icl_stl.persistence import read_json, read_jsonl
from icl_stl.runs.logger import RunLogger

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep W&B's user-level files (settings, cache, artifacts) out of the real home."""
    home = tmp_path / "wandb_home"
    home.mkdir()
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return home


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (4, 4), color=(200, 30, 30)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# With a fake wandb module (tests/fake_wandb.py)


def _fake_wandb(monkeypatch: pytest.MonkeyPatch, run: FakeRun, **kwargs: Any) -> FakeWandb:
    return install(monkeypatch, FakeWandb(run, **kwargs))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "icl_stl.runs.logger" and r.levelno == logging.WARNING]


def test_fake_wandb_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = FakeRun()
    fake = _fake_wandb(monkeypatch, run)
    with RunLogger(
        tmp_path,
        mode="offline",
        project="p",
        config={"a": 1},
        name="n",
        group="g",
        tags=["t1"],
        init_timeout_s=7.0,
        resume_id="abc",
    ) as log:
        assert log.wandb_active and log.run_id == "fake123"
        log.log_metrics({"train/step": 0, "train/loss": 1.5})
        log.log_metrics({"generation": 2, "gen/err": 0.25})
        log.log_image("gen/plot", _png(tmp_path / "p.png"), extra={"generation": 2})
        log.write_summary({"final_err": 0.25})
    init = fake.calls["init"]
    assert init["project"] == "p" and init["mode"] == "offline" and init["dir"] == str(tmp_path)
    assert init["name"] == "n" and init["group"] == "g" and init["tags"] == ["t1"]
    assert init["id"] == "abc" and init["resume"] == "allow" and init["config"] == {"a": 1}
    assert init["settings"].kwargs["init_timeout"] == 7.0
    assert init["settings"].kwargs["silent"] is True
    assert run.metrics == [
        (("train/global_step",), {}),
        (("train/*",), {"step_metric": "train/global_step"}),
        (("generation",), {}),
        (("gen/*",), {"step_metric": "generation"}),
    ]
    assert all(kwargs == {} for _, kwargs in run.logged), "must not pass step= (two axes)"
    assert run.logged[0][0] == {"train/step": 0, "train/loss": 1.5}
    assert run.logged[2][0] == {"generation": 2, "gen/plot": ("image", str(tmp_path / "p.png"))}
    assert run.summary == {"final_err": 0.25}
    assert run.finished == [0]


def test_exception_in_context_marks_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = FakeRun()
    _fake_wandb(monkeypatch, run)
    with pytest.raises(ZeroDivisionError):
        with RunLogger(tmp_path, mode="online", project="p", config={}):
            1 / 0  # noqa: B018
    assert run.finished == [1]


def test_resume_id_absent_means_no_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_wandb(monkeypatch, FakeRun())
    RunLogger(tmp_path, mode="offline", project="p", config={}).close()
    assert fake.calls["init"]["id"] is None and fake.calls["init"]["resume"] is None


# ---------------------------------------------------------------------------------------------
# Degradation: W&B failures become one warning; local files carry on.


def test_init_failure_degrades_to_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wandb_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import wandb

    def broken_init(**kwargs: Any) -> None:
        raise wandb.errors.CommError("network is unreachable")

    monkeypatch.setattr(wandb, "init", broken_init)
    # Under `pytest -s` in a terminal the credentials pre-check would run first; skip it.
    monkeypatch.setattr(wandb, "login", lambda **kwargs: True)
    log = RunLogger(tmp_path, mode="online", project="p", config={"a": 1})  # offline fails too
    assert not log.wandb_active and log.run_id is None
    log.log_metrics({"train/step": 1, "train/loss": 0.5})
    log.write_summary({"ok": True})
    log.close()
    (message,) = _warnings(caplog)
    assert "wandb unavailable (init failed: CommError: network is unreachable)" in message
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"train/step": 1, "train/loss": 0.5}]
    assert read_json(tmp_path / "summary.json") == {"ok": True}


def test_online_that_cannot_start_falls_back_to_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = install(monkeypatch, FakeWandb(fail_modes=("online",)))
    with RunLogger(tmp_path, mode="online", project="p", config={}, name="job") as log:
        assert log.wandb_active and log.wandb_mode == "offline"
        log.open_member_runs(["a", "b"], [{"seed": 0}, {"seed": 1}])
        log.log_metrics({"train/global_step": 1}, members=[{"train/loss": 1.0}] * 2)
    assert [i["mode"] for i in fake.inits] == ["online", "offline", "offline", "offline"], \
        "one online attempt; the job and its members then run offline"
    (message,) = _warnings(caplog)
    assert "wandb unavailable online (init failed: ConnectionError: cannot start online)" in message
    assert f"wandb sync {tmp_path / 'wandb' / 'offline-run-*'}" in message
    assert all(run.finished == [0] for run in fake.runs)


def test_log_failure_mid_run_degrades_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = FakeRun(fail_log_after=2)
    _fake_wandb(monkeypatch, run)
    log = RunLogger(tmp_path, mode="online", project="p", config={})
    for step in range(5):
        log.log_metrics({"train/step": step, "train/loss": 1.0 / (step + 1)})
    (message,) = _warnings(caplog)
    assert "log failed: ConnectionError" in message
    assert not log.wandb_active
    assert run.finished == [1], "the broken run is finished as failed"
    log.close()
    assert [r["train/step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert len(run.logged) == 2


def test_finish_failure_is_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = FakeRun()

    def bad_finish(exit_code: int | None = None) -> None:
        raise TimeoutError("upload stuck")

    run.finish = bad_finish  # type: ignore[method-assign]
    _fake_wandb(monkeypatch, run)
    log = RunLogger(tmp_path, mode="online", project="p", config={})
    log.close()
    log.close()  # idempotent
    (message,) = _warnings(caplog)
    assert "finish failed" in message


def test_wandb_import_failure_degrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    log = RunLogger(tmp_path, mode="offline", project="p", config={})
    log.log_metrics({"x": 1})
    assert read_jsonl(log.metrics_path) == [{"x": 1}]
    (message,) = _warnings(caplog)
    assert "import of wandb" in message


def test_a_warning_is_printed_once(tmp_path: Path) -> None:
    # A W&B failure is both logged and raised as a Python warning: it must print once.
    code = ("import sys; from icl_stl.runs.logger import RunLogger; sys.modules['wandb'] = None; "
            f"RunLogger({str(tmp_path)!r}, mode='offline', project='p', config={{}}).close()")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True,
                          text=True, env=_isolated_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout + proc.stderr).count("wandb unavailable") == 1, proc.stderr


# ---------------------------------------------------------------------------------------------
# One W&B run per loop (member)


def _member_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int, **kwargs: Any
                   ) -> tuple[RunLogger, FakeWandb, bool]:
    fake = install(monkeypatch, FakeWandb(fail_from_call=kwargs.pop("fail_from_call", None)))
    log = RunLogger(tmp_path, mode="offline", project="p", name="job", group="preset",
                    job_type="loop", tags=["loop"], **kwargs,
                    config={"seed": 7, "loop": {"real_fraction": 0.5, "steps": 3}})
    lams = [0.0, 0.5, 0.0][:k]
    names = [f"lam{lam}-seed{i}" for i, lam in enumerate(lams)]
    opened = log.open_member_runs(
        names, [{"seed": i, "real_fraction": lam} for i, lam in enumerate(lams)],
        [{"seed": i, "loop.real_fraction": lam} for i, lam in enumerate(lams)])
    for step, losses in ((10, [1.0, 2.0, 3.0][:k]), (20, [0.5, 1.5, 2.5][:k])):
        log.log_metrics({"train/step": step, "train/global_step": step},
                        members=[{"train/loss": v, "train/x": None} for v in losses])
    return log, fake, opened


def test_each_member_gets_its_own_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, fake, opened = _member_logger(tmp_path, monkeypatch, 3)
    assert opened and log.member_runs_active
    job, *members = fake.runs
    assert [r.init["name"] for r in members] == ["lam0.0-seed0", "lam0.5-seed1", "lam0.0-seed2"]
    assert all(r.init["group"] == "preset" and r.init["job_type"] == "loop"
               and r.init["tags"] == ["loop", "member"] for r in members)
    assert job.init["group"] == "preset" and job.init["job_type"] == "loop"
    # The loop's own settings at the top level; the job's values it replaced under `job`.
    assert members[0].init["config"] == {
        "seed": 0, "loop": {"real_fraction": 0.0, "steps": 3},
        "member": {"seed": 0, "real_fraction": 0.0},
        "job": {"name": "job", "seed": 7, "loop": {"real_fraction": 0.5}}}
    assert job.init["config"] == {"seed": 7, "loop": {"real_fraction": 0.5, "steps": 3}}
    assert all(r.metrics == job.metrics for r in members), "the same step axes"
    assert [d for d, _ in members[2].logged] == [
        {"train/step": 10, "train/global_step": 10, "train/loss": 3.0},
        {"train/step": 20, "train/global_step": 20, "train/loss": 2.5}]
    assert job.logged == [], "per-member values go to the members' runs only"
    log.close(failed=True)
    assert all(r.finished == [1] for r in fake.runs)
    line = read_jsonl(log.metrics_path)[1]
    assert line == {"train/step": 20, "train/global_step": 20, "members": [
        {"train/loss": v, "train/x": None} for v in (0.5, 1.5, 2.5)]}


@pytest.mark.parametrize("case", ["over_the_cap", "member_init_fails"])
def test_members_in_the_job_run_with_suffixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    kwargs = {"member_runs": 2} if case == "over_the_cap" else {"fail_from_call": 2}
    log, fake, opened = _member_logger(tmp_path, monkeypatch, 3, **kwargs)
    assert not opened and not log.member_runs_active
    job = fake.runs[0]
    assert job.logged[1][0] == {"train/step": 20, "train/global_step": 20,
                                "train/loss/member0": 0.5, "train/loss/member1": 1.5,
                                "train/loss/member2": 2.5}, "one loss per loop, none averaged"
    if case == "member_init_fails":
        assert fake.runs[1].finished == [1], "the member run opened before the failure is closed"
        (message,) = _warnings(caplog)
        assert "member init failed" in message
    else:
        assert len(fake.runs) == 1 and _warnings(caplog) == []
    log.close()


def test_a_single_member_logs_to_the_job_run(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    log, fake, opened = _member_logger(tmp_path, monkeypatch, 1)
    assert not opened and len(fake.runs) == 1
    assert fake.runs[0].config == {"seed": 0, "loop": {"real_fraction": 0.0, "steps": 3},
                                   "member": {"seed": 0, "real_fraction": 0.0},
                                   "job": {"name": "job", "seed": 7,
                                           "loop": {"real_fraction": 0.5}}}, "the loop's own"
    assert fake.runs[0].logged[0][0] == {"train/step": 10, "train/global_step": 10,
                                         "train/loss": 1.0}
    log.close()


def test_member_runs_with_real_wandb_offline(tmp_path: Path, wandb_home: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    # Several runs open at once in one process (reinit="create_new"), each its own files.
    with RunLogger(tmp_path, mode="offline", project="icl-stl-test", config={"a": 1},
                   name="job") as log:
        assert log.open_member_runs(["m0", "m1", "m2"], [{"seed": s} for s in range(3)])
        for step in range(3):
            log.log_metrics({"train/global_step": step},
                            members=[{"train/loss": step + m} for m in range(3)])
        log.log_metrics({"generation": 0}, members=[{"gen/test_risk": m} for m in range(3)])
    assert _warnings(caplog) == []
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 4 and all(list(r.glob("run-*.wandb")) for r in runs)


# ---------------------------------------------------------------------------------------------
# Real W&B


def test_disabled_writes_local_files_only(
    tmp_path: Path, wandb_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # W&B's fallback directory would be ./wandb
    run_dir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RunLogger(run_dir, mode="disabled", project="p", config={"lr": 1e-3}) as log:
            log.log_metrics({"train/step": 0, "train/loss": float("nan")})
            log.log_metrics({"generation": 0, "gen/err": 0.1})
            log.log_image("gen/plot", _png(tmp_path / "p.png"))
            log.write_summary({"err": 0.1})
            assert not log.wandb_active and log.run_id is None
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "run", "wandb_home"]
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert records[0]["train/loss"] != records[0]["train/loss"]  # NaN kept
    assert records[1] == {"generation": 0, "gen/err": 0.1}
    assert read_json(run_dir / "summary.json") == {"err": 0.1}
    assert not (run_dir / "wandb").exists()
    assert list(wandb_home.iterdir()) == []


def test_offline_run(tmp_path: Path, wandb_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "run"
    log = RunLogger(
        run_dir,
        mode="offline",
        project="icl-stl-test",
        config={"lr": 1e-3},
        name="t",
        tags=["test"],
        init_timeout_s=30,
    )
    assert log.wandb_active
    run_id = log.run_id
    for step in range(3):
        log.log_metrics({"train/step": step, "train/loss": 1.0 / (step + 1)})
    log.log_metrics({"generation": 0, "gen/err": 0.5})
    log.log_image("gen/plot", _png(tmp_path / "p.png"), extra={"generation": 0})
    log.write_summary({"final_err": 0.5})
    log.close()
    assert _warnings(caplog) == []
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1 and list(offline[0].glob("run-*.wandb"))
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 4
    assert read_json(run_dir / "summary.json") == {"final_err": 0.5}

    # A resumed process continues the same W&B run id and appends to the same local log.
    with RunLogger(
        run_dir, mode="offline", project="icl-stl-test", config={"lr": 1e-3}, resume_id=run_id
    ) as log2:
        assert log2.run_id == run_id
        log2.log_metrics({"train/step": 3, "train/loss": 0.2})
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 5


def test_config_with_non_json_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_wandb(monkeypatch, FakeRun())

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    config = {
        "path": Path("/data/x"),
        "shape": (3, 4),
        "lr": np.float32(0.5),
        "n": torch.tensor(7),
        "nested": {1: {"s": {"b", "a"}}},
        "obj": Opaque(),
    }
    log = RunLogger(tmp_path, mode="offline", project="p", config=config)
    expected = {
        "path": "/data/x",
        "shape": [3, 4],
        "lr": 0.5,
        "n": 7,
        "nested": {"1": {"s": ["a", "b"]}},
        "obj": "<opaque>",
    }
    assert log.config == expected
    assert fake.calls["init"]["config"] == expected
    log.close()


def test_metric_values_converted_or_rejected(tmp_path: Path) -> None:
    log = RunLogger(tmp_path, mode="disabled", project="p", config={})
    log.log_metrics({"train/step": np.int64(3), "train/loss": torch.tensor(0.25)})
    assert read_jsonl(log.metrics_path) == [{"train/step": 3, "train/loss": 0.25}]
    with pytest.raises(TypeError, match=r"metrics\.train/w"):
        log.log_metrics({"train/w": torch.zeros(3)})
    with pytest.raises(TypeError):
        log.log_metrics([1, 2])  # type: ignore[arg-type]
    assert len(read_jsonl(log.metrics_path)) == 1
    with pytest.raises(FileNotFoundError, match="missing.png"):
        log.log_image("gen/plot", tmp_path / "missing.png")
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.log_metrics({"x": 1})


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        RunLogger(tmp_path, mode="loud", project="p", config={})
    with pytest.raises(ValueError, match="init_timeout_s"):
        RunLogger(tmp_path, mode="disabled", project="p", config={}, init_timeout_s=0)
    with pytest.raises(ValueError, match="member_runs"):
        RunLogger(tmp_path, mode="disabled", project="p", config={}, member_runs=True)


# ---------------------------------------------------------------------------------------------
# Online without network: bounded, in a fresh process so W&B's process-wide state and the
# environment used here (fake key, unresolvable server) cannot leak into other tests.

_ONLINE = """
import sys, time, warnings
from icl_stl.runs.logger import RunLogger
warnings.simplefilter("always")
t0 = time.monotonic()
log = RunLogger(sys.argv[1], mode="online", project="p", config={{}}, init_timeout_s={timeout})
print("INIT_S", time.monotonic() - t0, "ACTIVE", log.wandb_active, "MODE", log.wandb_mode,
      flush=True)
log.log_metrics({{"train/step": 0, "train/loss": 1.0}})
print("MEMBERS", log.open_member_runs(["a", "b"], [{{}}, {{}}]), flush=True)
log.close()
"""


def _isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        NETRC=str(home / ".netrc"),
        WANDB_CONFIG_DIR=str(home),
        WANDB_CACHE_DIR=str(home),
        WANDB_DATA_DIR=str(home),
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def test_online_without_network_falls_back_to_offline_within_timeout(tmp_path: Path) -> None:
    timeout = 3.0
    env = _isolated_env(tmp_path, WANDB_API_KEY="a" * 40, WANDB_BASE_URL="http://wandb.invalid")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _ONLINE.format(timeout=timeout), str(tmp_path / "run")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert "ACTIVE True MODE offline" in proc.stdout and "MEMBERS True" in proc.stdout
    init_s = float(proc.stdout.split("INIT_S")[1].split()[0])
    assert init_s < timeout + 10, f"wandb.init took {init_s:.1f} s with init_timeout={timeout}"
    assert elapsed < 60
    assert proc.stderr.count("wandb unavailable") == 1, proc.stderr
    sync_dir = tmp_path / "run" / "wandb"
    assert f"wandb sync {sync_dir / 'offline-run-*'}" in proc.stderr
    assert len(list(sync_dir.glob("offline-run-*/run-*.wandb"))) == 3, "job and two members"
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl") == [{"train/step": 0, "train/loss": 1.0}]


def test_online_on_terminal_without_credentials_does_not_prompt(tmp_path: Path) -> None:
    # With stdin and stderr on a terminal, wandb.init would ask for an API key and wait forever.
    import pty

    leader, follower = pty.openpty()
    chunks: list[bytes] = []
    stop = threading.Event()

    def drain() -> None:  # keep the terminal's buffer from filling up and blocking the child
        while not stop.is_set():
            if select.select([leader], [], [], 0.05)[0]:
                try:
                    chunks.append(os.read(leader, 4096))
                except OSError:
                    return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _ONLINE.format(timeout=30.0), str(tmp_path / "run")],
            env=_isolated_env(tmp_path),
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("RunLogger hung on W&B's login prompt")
    finally:
        stop.set()
        reader.join(timeout=5)
        os.close(follower)
        os.close(leader)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err
    assert "ACTIVE True MODE offline" in out
    assert "no W&B API key configured" in err and "wandb sync" in err
    assert float(out.split("INIT_S")[1].split()[0]) < 10
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl") == [{"train/step": 0, "train/loss": 1.0}]


def test_subprocess_script_is_valid() -> None:
    """The template above doubles its literal braces: formatted, it must be Python that passes
    the timeout to RunLogger and builds real (empty) dicts, with no brace left doubled."""
    script = textwrap.dedent(_ONLINE.format(timeout=7.25))
    tree = compile(script, "<online>", "exec", ast.PyCF_ONLY_AST)
    assert "{{" not in script and "}}" not in script, script
    calls = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr: node
             for node in ast.walk(tree) if isinstance(node, ast.Call)}
    keywords = {k.arg: k.value for k in calls["RunLogger"].keywords}
    assert ast.literal_eval(keywords["init_timeout_s"]) == 7.25
    assert ast.literal_eval(keywords["config"]) == {}
    assert ast.literal_eval(calls["open_member_runs"].args[1]) == [{}, {}]


# ---------------------------------------------------------------------------------------------
# A resumed loop: its runs continued, each finished generation logged once


def _loop_logger(run_dir: Path, resume_file: Path, mode: str = "offline") -> RunLogger:
    log = RunLogger(run_dir, mode=mode, project="icl-stl-test", config={"seed": 0}, name="job",
                    group="g", job_type="loop", resume_file=resume_file)
    log.open_member_runs(["a", "b"], [{"index": 0}, {"index": 1}])
    return log


def _generations(log: RunLogger, generations: range) -> None:
    for g in generations:
        log.log_generation(g, [{"gen/risk": g + 0.5}, {"gen/risk": g + 0.25}],
                           job={"gen/risk_median": g})


def test_a_resumed_loop_logs_each_generation_once_offline(tmp_path: Path,
                                                           wandb_home: Path) -> None:
    from wandb_readback import offline_runs

    resume = tmp_path / "ck" / "wandb.json"
    resume.parent.mkdir()
    with _loop_logger(tmp_path / "first", resume) as log:
        _generations(log, range(2))
        ids = {log.run_id, *(str(r.id) for r in log._members)}
    # The same command again, in a new directory: every finished generation is handed over
    # again, as the loop does with the generations it loads.
    with _loop_logger(tmp_path / "second", resume) as log:
        assert {log.run_id, *(str(r.id) for r in log._members)} == ids, "runs continued"
        _generations(log, range(4))
    runs = offline_runs(tmp_path / "first", tmp_path / "second")
    assert set(runs) == ids
    for run in runs.values():
        assert run.generations() == [0, 1, 2, 3] and len(run.segments) == 2
    assert [r["generation"] for r in read_jsonl(tmp_path / "second" / "metrics.jsonl")] == \
        [2, 2, 3, 3], "metrics.jsonl gets the generations past logged_through"
    assert read_json(resume)["logged_through"] == 3


def test_a_resumed_online_loop_trusts_logged_through(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeWandb())
    resume = tmp_path / "wandb.json"
    with _loop_logger(tmp_path / "first", resume, "online") as log:
        _generations(log, range(2))
    first = fake.runs[:]
    with _loop_logger(tmp_path / "second", resume, "online") as log:
        _generations(log, range(4))
    again = fake.runs[len(first):]
    assert [r.init["id"] for r in again] == [r.id for r in first]
    assert all(r.init["resume"] == "allow" for r in again)
    for run in again:
        assert [d["generation"] for d, _ in run.logged] == [2, 3]


def test_a_truncated_run_file_reads_up_to_the_cut(tmp_path: Path, wandb_home: Path) -> None:
    import wandb

    from icl_stl.runs.wandb_files import logged_generations, run_files

    with RunLogger(tmp_path, mode="offline", project="icl-stl-test", config={}) as log:
        for g in range(200):  # more than one 32 KiB block
            log.log_generation(g, [{"gen/risk": float(g), "gen/note": "x" * 200}])
        run_id = log.run_id
    wandb.teardown()  # W&B's service finishes writing the file (tests/wandb_readback.py)
    (path,) = run_files([tmp_path / "wandb"], run_id)
    assert logged_generations([tmp_path / "wandb"], run_id) == set(range(200))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])  # a SIGKILL mid-write
    held = logged_generations([tmp_path / "wandb"], run_id)
    assert 50 < len(held) < 200 and held == set(range(len(held)))
