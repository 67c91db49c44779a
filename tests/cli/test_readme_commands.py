"""README.md's commands run as written: the two `make` commands on its first screen, and every
entry point shown in a form a fresh shell runs after `make install` (by its path in .venv/bin)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, CLI_TIMEOUT_S, REPO

from icl_stl.cli.common import CONFIG_DIR

README = REPO / "README.md"
FIRST_SCREEN = 40  # lines
ENTRY_POINTS = {f"icl-stl-{app}" for app in ("train", "eval", "loop", "probe", "report", "bench")}
ARGPARSE_APPS = {"icl-stl-report", "icl-stl-bench"}  # --help; the Hydra apps: --cfg job


def readme_commands(text: str) -> list[str]:
    """Every line of a code block and every inline code span, comments dropped, in order."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose)
    lines = [line for block in blocks for line in block.splitlines()] + spans
    commands = [line.split(" #")[0].strip() for line in lines]
    return list(dict.fromkeys(c for c in commands if c))


def entry_point_commands() -> list[str]:
    return [c for c in readme_commands(README.read_text()) if c.startswith(".venv/bin/icl-stl-")]


def test_the_first_screen_holds_both_commands():
    first = README.read_text().splitlines()[:FIRST_SCREEN]
    for command in ("make demo", "make test"):
        assert any(line.startswith(command + " ") for line in first), command


def test_commands_are_found_in_blocks_and_spans():
    text = "a `x --y` b\n```bash\nmake demo   # c\n```\n`z`\n"
    assert readme_commands(text) == ["make demo", "x --y", "z"]


def test_every_entry_point_is_shown_by_its_path_and_none_bare():
    commands = readme_commands(README.read_text())
    bare = [c for c in commands if c.split()[0] in ENTRY_POINTS and " " in c]
    assert not bare, f"a fresh shell has no {bare[0].split()[0]} on its PATH: use .venv/bin/"
    shown = {shlex.split(c)[0].removeprefix(".venv/bin/") for c in entry_point_commands()}
    assert shown == ENTRY_POINTS


@pytest.mark.parametrize("command", entry_point_commands())
def test_each_entry_point_command_runs_as_written(command, tmp_path):
    """In the repository, with nothing but the system's PATH; `--cfg job` (Hydra) or `--help`
    makes it cheap and writes nothing. Without a .venv here (another environment runs the
    tests) the same command runs from that environment's bin."""
    argv = shlex.split(command)
    script = REPO / argv[0]
    if not (REPO / ".venv" / "bin").is_dir():
        script = BIN / script.name
    cheap = ["--help"] if script.name in ARGPARSE_APPS else ["--cfg", "job"]
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    before = sorted(p.name for p in REPO.iterdir())
    proc = subprocess.run([str(script), *argv[1:], *cheap], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
    assert sorted(p.name for p in REPO.iterdir()) == before  # nothing written
    if script.name not in ARGPARSE_APPS:  # the overrides as written are in the job's config
        for override in argv[1:]:
            key, value = override.split("=", 1)
            if not (Path(CONFIG_DIR) / key).is_dir():  # a setting, not a group's option
                assert re.search(rf"\b{re.escape(key.split('.')[-1])}: {re.escape(value)}\b",
                                 proc.stdout), override
