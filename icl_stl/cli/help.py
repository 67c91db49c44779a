"""What each Hydra app's `--help` opens with: what it does, the preset to start from, the user
presets it takes and its other config groups.

Hydra's own listing (`$APP_CONFIG_GROUPS`) names every file of every group, internal bases
(`_base`, `_full_size`) included, and cannot leave any out, nor say what a preset is for; so
conf/hydra/help/icl_stl.yaml puts this text in its place through the `icl_stl.help` resolver
(registered by `cli.common`). Internal bases are any file or folder whose name starts with `_`.
A preset belongs to the app whose settings it sets: `probe` makes it icl-stl-probe's, `loop` or
`members` icl-stl-loop's, neither icl-stl-train's (its bases' keys count too).
"""

from __future__ import annotations

import argparse
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import OmegaConf

PRESET_GROUP = "experiment"
WIDTH = 100


@dataclass(frozen=True)
class AppHelp:
    what: str  # what the app does, a sentence or two
    start: str  # the command to start from
    start_why: str  # what that command does


APPS = {
    "train": AppHelp(
        "icl-stl-train trains one in-context learner (a tiny GPT-2 by default) on fresh prompts "
        "or a finite S_0 of data.n prompts, then evaluates it on fresh prompts against ridge and "
        "the other baselines: summary.json, positions.png and a checkpoint.",
        "icl-stl-train experiment=quickstart",
        "reaches ridge at d = 2 in about a minute on a CPU"),
    "loop": AppHelp(
        "icl-stl-loop runs self-consuming training loops: generation 0 learns linear regression "
        "in context from n real prompts, and each later generation is retrained on prompts the "
        "previous one labelled, mixed with a share loop.real_fraction of real ones. Many loops "
        "(members.*) train together as one ensemble; icl-stl-report reads what they write.",
        "icl-stl-loop experiment=demo/collapse",
        "the demo's collapse slice: lambda 0 and 0.5, 2 seeds, 3 generations, minutes on a CPU"),
    "probe": AppHelp(
        "icl-stl-probe runs a loop with a probe: recursive stability (probe=stability: twins "
        "of S_0 with one prompt replaced), the decay of the error in n (probe=decay) or "
        "in-context stability (probe=in_context).",
        "icl-stl-probe experiment=reproduce/stability debug=default",
        "the reproduction's stability part as a smoke run in seconds; without debug=default it "
        "is the real part, about 50 minutes on a 2-core CPU"),
    "eval": AppHelp(
        "icl-stl-eval evaluates a finished model on fresh test prompts beside the baselines, "
        "training nothing. The model, the task and the evaluation settings (number of prompts, "
        "their seed, baselines) are the run's own, read from its checkpoint; a setting given "
        "here overrides an evaluation setting and must agree with a model or task one.",
        "icl-stl-eval checkpoint=checkpoints/RUN/train.pt",
        "a train run's model; a loop's is checkpoints/RUN/gen_XXX/model.pt member=M"),
}


@dataclass(frozen=True)
class Preset:
    name: str  # as typed: experiment=<name>
    app: str  # train, loop or probe
    summary: str  # the first phrase of its header comment


def is_internal(relative: Path) -> bool:
    return any(part.startswith("_") for part in relative.parts)


def group_options(folder: Path) -> list[str]:
    """A config group's options as typed on the command line (`reproduce/collapse` for a file
    in a subfolder), sorted, internal bases (a name or folder starting with `_`) left out."""
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")
                  if not is_internal(p.relative_to(folder)))


def presets(config_dir: str | Path) -> list[Preset]:
    """The user presets under conf/experiment/, sorted by name (internal bases left out)."""
    folder = Path(config_dir) / PRESET_GROUP
    out = []
    for path in sorted(folder.rglob("*.yaml")):
        relative = path.relative_to(folder)
        if is_internal(relative):
            continue
        name = relative.with_suffix("").as_posix()
        keys = _keys(folder, name, set())
        app = "probe" if "probe" in keys else "loop" if keys & {"loop", "members"} else "train"
        out.append(Preset(name, app, _summary(path.read_text())))
    return out


def _keys(folder: Path, name: str, seen: set[str]) -> set[str]:
    """The top-level keys preset `name` sets, with its bases' and its group overrides."""
    if name in seen:
        return set()
    seen.add(name)
    path = folder / f"{name}.yaml"
    data = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    keys = {k for k in data if k != "defaults"}
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):  # {"override /probe": "stability"}
            keys |= {str(k).split()[-1].strip("/").split("/")[0] for k in entry}
        elif entry != "_self_":  # a base: /experiment/x, or x beside this preset
            base = (entry.removeprefix(f"/{PRESET_GROUP}/") if entry.startswith("/")
                    else (Path(name).parent / entry).as_posix().removeprefix("./"))
            keys |= _keys(folder, base, seen)
    return keys


def _summary(text: str) -> str:
    """The first sentence of a preset's header comment."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if body.startswith("@package"):
            continue
        if not body and lines:
            break
        lines.append(body)
    return re.split(r"\. |; ", " ".join(lines), maxsplit=1)[0].rstrip(".")


def other_groups(config_dir: str | Path, app: str) -> list[tuple[str, list[str]]]:
    """The config groups of the app's defaults list but the presets: (group, its options)."""
    defaults = yaml.safe_load((Path(config_dir) / f"{app}.yaml").read_text()).get("defaults")
    groups = []
    for entry in defaults or []:
        if not isinstance(entry, dict):
            continue
        group = str(next(iter(entry)))
        if group.startswith(("override", "hydra")) or group == PRESET_GROUP:
            continue
        options = group_options(Path(config_dir) / group)
        if options:
            groups.append((group, options))
    return groups


def app_help(config_dir: str | Path, app: str) -> str:
    """The text --help opens with (no `$`: Hydra's template substitution would read it)."""
    about = APPS.get(app)
    if about is None:
        return f"icl-stl-{app}"
    out = [textwrap.fill(about.what, WIDTH), "",
           f"Start here: {about.start}", textwrap.fill(
               about.start_why, WIDTH, initial_indent="  (", subsequent_indent="   ") + ")"]
    if app != "eval" and "debug=default" not in about.start:
        out.append("Add debug=default to any command for a smoke run in seconds.")
    out.append("")
    mine = [p for p in presets(config_dir) if p.app == app]
    if mine:
        out.append(f"Presets ({PRESET_GROUP}=NAME):")
        width = max(len(p.name) for p in mine) + 2
        out += [f"  {p.name:<{width}}{textwrap.shorten(p.summary, WIDTH - width - 2, placeholder=' ...')}"
                for p in mine]
        out.append("")
    groups = other_groups(config_dir, app)
    if groups:
        out.append("Config groups (GROUP=OPTION):")
        out += [f"  {group}: {', '.join(options)}" for group, options in groups]
        out.append("")
    return "\n".join(out).replace("$", "")


class DescribedParser(argparse.ArgumentParser):
    """argparse's --help with the description (what the app does) first, then the usage: the
    order of the Hydra apps' help. The sections are argparse's own format_help's."""

    def format_help(self) -> str:
        formatter = self._get_formatter()
        formatter.add_text(self.description)
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        for group in self._action_groups:
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


def register(config_dir: str) -> None:
    """`${icl_stl.help:APP}` in the help template (conf/hydra/help/icl_stl.yaml)."""
    OmegaConf.register_new_resolver("icl_stl.help", lambda app: app_help(config_dir, str(app)),
                                    replace=True)
