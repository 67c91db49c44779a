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
