"""Each entry point's --help opens with what it does and the command to start from; the Hydra
apps list their user presets, each for the app that takes it, and no internal base."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from conftest import BIN, check_ok, compose_cfg, run_cli

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.cli.help import APPS, app_help, presets
from icl_stl.cli.preflight import refused_value

APPS_ALL = ("train", "eval", "loop", "probe", "report", "bench")
# Internal bases: any file or folder under conf/experiment/ whose name starts with "_".
INTERNAL = sorted({part.removesuffix(".yaml")
                   for p in (Path(CONFIG_DIR) / "experiment").rglob("*.yaml")
                   for part in p.relative_to(Path(CONFIG_DIR) / "experiment").parts
                   if part.startswith("_")})


def test_there_are_internal_bases_to_hide():
    assert {"_base", "_full_size"} <= set(INTERNAL)


@pytest.mark.parametrize("app", APPS_ALL)
def test_help_opens_with_what_the_app_does(app):
    proc = run_cli(str(BIN / f"icl-stl-{app}"), "--help")
    check_ok(proc)
    opening = proc.stdout.split("\n\n")[0]
    assert opening.startswith(f"icl-stl-{app} "), proc.stdout[:300]
    assert len(opening.split()) >= 15, opening  # a sentence or two, not a usage line
    assert "powered by Hydra" not in proc.stdout
    assert "Start here" in proc.stdout[:1500]


def test_loop_help_lists_its_presets_and_no_internal_base():
    proc = run_cli(str(BIN / "icl-stl-loop"), "--help")
    check_ok(proc)
    listing = proc.stdout.split("== Config ==")[0]
    assert "Start here: icl-stl-loop experiment=demo/collapse" in listing
    presets_shown = re.findall(r"^  (\S+)  ", listing.split("Presets (experiment=NAME):")[1]
                               .split("\n\n")[0], flags=re.M)
    assert {"demo/collapse", "reproduce/collapse", "collapse_vs_lambda"} <= set(presets_shown)
    for name in INTERNAL:  # as an option or a folder: "_base", "reproduce/_base", "_x/..."
        assert not re.search(rf"(^|[\s/,]){name}\b", listing, flags=re.M), name
    assert all(not part.startswith("_") for p in presets_shown for part in p.split("/"))
    assert "quickstart" not in presets_shown  # icl-stl-train's, listed by its help


def test_internal_bases_are_left_out_and_each_preset_has_its_app(tmp_path):
    experiment = tmp_path / "experiment"
    files = {
        "_base.yaml": "loop:\n  generations: 2\n",
        "mine.yaml": "# @package _global_\n# A loop on the base. More words.\ndefaults:\n"
                     "  - _base\ndata:\n  n: 10\n",
        "plain.yaml": "# Just training; nothing else\ntrain:\n  steps: 5\n",
        "sub/_inner.yaml": "members:\n  seeds: [0, 1]\n",
        "sub/uses_inner.yaml": "defaults:\n  - /experiment/sub/_inner\n",
        "sub/probe_one.yaml": "defaults:\n  - override /probe: decay\n",
        "_hidden/shown_nowhere.yaml": "train:\n  steps: 1\n",
    }
    for name, text in files.items():
        (experiment / name).parent.mkdir(parents=True, exist_ok=True)
        (experiment / name).write_text(text)
    found = {p.name: (p.app, p.summary) for p in presets(tmp_path)}
    assert found == {"mine": ("loop", "A loop on the base"),
                     "plain": ("train", "Just training"),
                     "sub/probe_one": ("probe", ""), "sub/uses_inner": ("loop", "")}


@pytest.mark.parametrize("app", ["train", "loop", "probe"])
def test_every_listed_preset_is_taken_by_its_app(app):
    """The listing is only useful if `icl-stl-APP experiment=NAME` composes and is accepted."""
    check = importlib.import_module(f"icl_stl.cli.{app}").check_settings
    mine = [p.name for p in presets(CONFIG_DIR) if p.app == app]
    assert mine
    for name in mine:
        cfg = compose_cfg(app, f"experiment={name}")
        assert refused_value(cfg, check) is None, name
    start = APPS[app].start.split()[1:]
    assert refused_value(compose_cfg(app, *start), check) is None
    assert f"  {start[0].removeprefix('experiment=')} " in app_help(CONFIG_DIR, app)
