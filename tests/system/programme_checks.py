"""Checks the confirmatory programme's system tests share (test_reproduce_v2.py,
test_gate_first.py, test_p6_arm.py, test_p9_setting.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "reproduce_v2.py"


# A toy loop of any setting's presets: a few steps on a few prompts, uncompiled. The presets'
# compiled engine costs each loop process seconds of inductor compile for 24 steps (3x the toy
# programme's wall time, measured); it is checked against the uncompiled path where it is built
# (tests/training/test_compiled_engine.py), and the programme's machinery does not depend on it.
TOY_LOOP = ["train.steps=24", "train.warmup_steps=4", "train.log_every=8",
            "train.checkpoint_every=8", "data.n=64", "eval.n_prompts=64",
            "loop.label_batch_size=64", "runtime.compile=false", "runtime.fused_adam=false"]
# A toy d2 programme: P1 and P2 read 2 seeds each, in blocks of 2, through generation 3.
TOY = [*TOY_LOOP, "loop.generations=3", "members.seeds=[1,2,3]"]
# Gate and failure checks all but off (the toy loops are far from ridge); a loop whose later
# generation is still worse than the zero predictor fails to train, and a spare takes its place.
TOY_REPORT = ["gate_tolerance=100", "failure_gap=0.0", "failure_train_ratio=1e9"]


def toy_command(out: Path, *extra: str) -> list[str]:
    """The toy programme's command with --out `out`, then `extra`."""
    return [sys.executable, str(SCRIPT), "--out", str(out), "--seed-counts", "2", "2",
            "--block-seeds", "2", "--part-minutes", "600", "--progress-every", "1",
            *(a for o in TOY for a in ("--set", o)),
            *(a for o in TOY_REPORT for a in ("--report-set", o)), "--no-figures", *extra]


def programme_modules() -> tuple:
    """The programme's scripts the plan tests read, imported with scripts/ on sys.path: v2_arms,
    v2_schedule, v2_programme, v2_parts, v2_gate, v2_report."""
    import importlib

    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))
    return tuple(importlib.import_module(f"v2_{name}") for name in
                 ("arms", "schedule", "programme", "parts", "gate", "report"))


def load_script():
    """scripts/reproduce_v2.py as a module (its main() runs in the test's process)."""
    spec = importlib.util.spec_from_file_location("reproduce_v2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_only_over_a_copy(out: Path, work: Path) -> dict:
    """`--report-only` over a copy of `out`'s runs/: its verdicts.json, after asserting that it
    regenerates `out`'s own without a difference."""
    sys.path.insert(0, str(REPO / "tests" / "report"))
    from test_regenerated_results import differences

    shutil.copytree(out / "runs", work / "copy" / "runs")
    again = subprocess.run([sys.executable, str(SCRIPT), "--report-only", "--runs",
                            str(work / "copy" / "runs"), "--out", str(work / "again"),
                            "--no-figures"], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    regenerated = json.loads((work / "again" / "verdicts.json").read_text())
    assert differences(json.loads((out / "verdicts.json").read_text()), regenerated) == []
    return regenerated


def kill_once_written(command: list[str], root: Path, pattern: str, within_s: float) -> str:
    """Start the programme, send it SIGTERM once a file matching the glob `pattern` exists
    under `root`, and return its output after asserting it stopped as interrupted (130)."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + within_s
    while not list(root.glob(pattern)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, text
    return text
