"""Which code produced a result: package version, results version and git commit.

Written into every summary.json (`code`), so a number can be traced to the commit that made it.
The commit is read from the source tree when there is one (an editable install); a wheel
install has none and records null.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from icl_stl import RESULTS_VERSION

SOURCE = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def code_provenance() -> dict:
    """{"package_version", "results_version", "git_commit", "git_dirty"} (git fields null
    outside a git checkout)."""
    try:
        version = metadata.version("icl-stl")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD") if (SOURCE / ".git").exists() else None
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"package_version": version, "results_version": RESULTS_VERSION, "git_commit": commit,
            "git_dirty": None if status is None else bool(status)}


def _first_cpu() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if not key.strip():
            break
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_label() -> str:
    """The CPU, told apart where the model name is not enough: two machines both named
    "AMD EPYC" ran the same 10-member generation in 1,050-1,340 s and in 1,900 s. The model
    name, family, model and bogomips, and the cores (what a timing table keys its machine by).
    """
    import os
    import platform

    cpu = _first_cpu()
    return (f"{cpu.get('model name', platform.processor() or 'unknown CPU')} (family "
            f"{cpu.get('cpu family', '?')}, model {cpu.get('model', '?')}, "
            f"{cpu.get('bogomips', '?')} bogomips), {os.cpu_count()} cores")


def machine() -> dict:
    """Where a result was computed: {"host", "cpu" (the model name), "cores", "platform",
    "python", "torch"}, for the machine line of a results folder's README."""
    import os
    import platform

    model = _first_cpu().get("model name")
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {"host": platform.node(), "cpu": model or platform.processor(),
            "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch_version}
