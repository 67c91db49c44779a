"""The command line checked before Hydra starts.

Hydra creates the run directory and its log before the task runs, and reports a mistyped key in
six lines. This composes the same config with Hydra's compose API first and refuses, in one line
with exit code 2 and before anything is written, a key or config option that does not exist and
an output or checkpoint directory that cannot be created, and, in a single run, a value the
app's own check refuses (`task.d=-1`: the same ConfigError line the task would give, but before
Hydra has made the run directory and its log). Sweep values (`a=1,2`, `range(...)`,
`choice(...)`) are composed with their first value, so only their keys are checked here; `+key`,
`++key` and `~key` keep Hydra's meaning. Whatever this cannot decide is left to Hydra.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from icl_stl.cli.help import group_options

log = logging.getLogger("icl_stl")


# The app's check of its settings (e.g. parse them and return nothing): raises ConfigError.
SettingsCheck = Callable[[DictConfig], object]


def preflight(config_dir: str, config_name: str, argv: list[str],
              check: SettingsCheck | None = None) -> None:
    """Exit 2 with one line when `argv` names a setting that does not exist, a directory that
    cannot be made or (single runs) a value `check` refuses; return (Hydra proceeds) when all is
    well or when this cannot tell."""
    try:
        problem = find_problem(config_dir, config_name, argv, check)
    except Exception as err:  # never the reason a command Hydra would accept is refused
        log.debug("preflight skipped: %s: %s", type(err).__name__, err)
        return
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)


def find_problem(config_dir: str, config_name: str, argv: list[str],
                 check: SettingsCheck | None = None) -> str | None:
    """The one-line description of what is wrong with the command line, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, OverrideParseException

    args = _hydra_args(argv)
    if args is None or args.config_path is not None or args.config_dir is not None:
        return None  # a usage error (Hydra prints it) or another config tree
    modes = [flag for flag, on in (("--multirun", args.multirun), ("--cfg", args.cfg),
                                   ("--info", args.info), ("--run", args.run),
                                   ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1:  # Hydra raises a ValueError with a stack trace
        return f"{' and '.join(modes)} cannot be combined: give one of them"
    if (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
            or args.experimental_rerun):
        return None  # nothing is run or written
    config_name = args.config_name or config_name
    try:
        overrides = OverridesParser.create().parse_overrides(overrides=list(args.overrides))
    except OverrideParseException:
        return None  # Hydra shows where the syntax breaks
    lines = {}  # what is composed -> what the user wrote
    for override in overrides:
        if not override.is_sweep_override():
            lines[override.input_line] = override.input_line
        elif not args.multirun:
            return None  # Hydra explains: a list needs [...], a sweep needs -m
        elif (first := _first_value(override)) is not None:
            lines[f"{override.get_key_element()}={first}"] = override.input_line
    try:
        cfg = _compose(config_dir, config_name, list(lines))
    except ConfigCompositionException as err:
        return _explain(err, config_dir, config_name, lines)
    multirun = args.multirun or str(OmegaConf.select(cfg, "hydra.mode")) == "RunMode.MULTIRUN"
    settings = ["hydra.sweep.dir" if multirun else "hydra.run.dir"]
    if not OmegaConf.select(cfg, "hydra.job.chdir"):  # else relative paths follow the job
        settings.append("run.checkpoint_root")
    for setting in settings:
        try:
            value = OmegaConf.select(cfg, setting)
        except Exception:  # e.g. ${hydra:...}, known only inside the job
            continue
        if value is not None and (reason := unmakeable_dir(Path(str(value)))) is not None:
            return f"{setting}={value}: {reason}"
    if check is not None and not multirun:  # in a sweep each job checks its own values
        return refused_value(cfg, check)
    return None


def refused_value(cfg: DictConfig, check: SettingsCheck) -> str | None:
    """The ConfigError line `check` gives for the composed job config, or None when it passes
    or cannot be judged here (values known only inside the job, e.g. ``${hydra:...}``)."""
    from icl_stl.config import ConfigError

    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        OmegaConf.to_container(job, resolve=True)
    except Exception:
        return None
    try:
        check(job)
    except ConfigError as err:
        return str(err)
    return None


def unmakeable_dir(path: Path) -> str | None:
    """Why `path` cannot be made (or written to) as a directory, or None when it can."""
    existing = Path(os.path.abspath(path))
    while True:
        try:
            os.stat(existing)
            break
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR) or existing.parent == existing:
                return f"cannot access {existing} ({err.strerror})"
            existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    # Try it: permission bits do not tell for root, read-only mounts or /proc.
    try:
        probe = tempfile.mkdtemp(prefix=".icl-stl-write-check-", dir=existing)
    except OSError as err:
        return f"cannot create a directory in {existing} ({err.strerror or err})"
    os.rmdir(probe)
    return None


def _hydra_args(argv: list[str]):
    """Hydra's own reading of the command line, or None when Hydra would refuse it."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra prints its own usage error
            return get_args_parser().parse_args(argv)
    except SystemExit:
        return None


def _first_value(override) -> str | None:
    try:
        return next(iter(override.sweep_string_iterator()), None)
    except Exception:  # a glob over options, an interval (only for optimising sweepers)
        return None


def _compose(config_dir: str, config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


def _explain(err, config_dir: str, config_name: str, lines: dict[str, str]) -> str | None:
    """One line for a key or config option that does not exist; None for anything else."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, option = err.missing_cfg_file.rpartition("/")
        # an option in a subfolder (experiment=reproduce/colapse) is missing from the subgroup
        # experiment/reproduce, but was typed as an option of its top group
        top, prefix = group, ""
        if not any(_key_of(line) == group for line in lines) and "/" in group:
            top, _, folder = group.partition("/")
            prefix = f"{folder}/"
        named = [line for line in lines if _key_of(line) == top]
        if not named:
            return None  # named by a config file, not by the command line
        options = group_options(Path(config_dir) / top) or list(err.options)
        return (f"{lines[named[-1]]}: {top} has no option {prefix + option!r}"
                f"{_did_you_mean(prefix + option, options)} (options: {', '.join(sorted(options))})")
    match = re.match(r"Could not override '([^']+)'", str(err))
    if not match or not isinstance(err.__cause__, (ConfigAttributeError, ConfigKeyError)):
        return None
    key = match.group(1)
    named = [line for line in lines if _key_of(line) == key]
    if not named:
        return None
    candidates: list[str] = []
    # What could have been meant: the keys and config groups of the config without it (or of the
    # bare config, when another override is wrong too).
    for rest in ([line for line in lines if line not in named], []):
        try:
            cfg = _compose(config_dir, config_name, rest)
        except Exception:
            continue
        candidates = [k for k in _keys(cfg) if k.startswith("hydra.") == key.startswith("hydra.")]
        candidates += list(cfg.hydra.runtime.choices.keys())
        break
    return f"{lines[named[-1]]}: there is no setting {key}{_did_you_mean(key, candidates)}"


def _key_of(line: str) -> str:
    return line.split("=", 1)[0].lstrip("~+").split("@", 1)[0]


def _keys(cfg, prefix: str = "") -> list[str]:
    """Every key path in `cfg` (dotted), without resolving interpolations."""
    out = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        out.append(path)
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            out += _keys(node, f"{path}.")
    return out


def _did_you_mean(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
