"""Configuration validated up front (reliability issue, part 4), by property-based testing.

Random values of random types are thrown at every field of the config, directly through
`parse_app_config` and through Hydra's compose API into `train_from_config` / `loop_from_config`
with tiny sizes. Each configuration must either run (or parse) or stop before any training with
a `ConfigError` that names a field and its value; any other exception, e.g. a traceback from
inside torch or transformers, is a failure. Counts go to RELIABILITY.md (see test_faults.py).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
import tempfile
import types
import typing
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from test_faults import COUNTS, TINY, emit_counts  # noqa: F401  (autouse: writes the counts)

from icl_stl import config as C
from icl_stl.cli.common import CONFIG_DIR
from icl_stl.config import AppConfig, ConfigError, parse_app_config

# make test: the same examples every run (derandomize); make test-all: new ones every run.
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)
FAST_RUNS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=3000, deadline=None)
SLOW_RUNS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHOICES = sorted({*C.TASK_NAMES, *C.ARCHS, *C.ATTN_IMPLS, *C.OPTIMIZERS, *C.SCHEDULES,
                  *C.DEVICES, *C.ENGINES, *C.MODEL_INITS, *C.LOGGER_MODES, *C.BASELINES,
                  *C.REAL_SOURCES, *C.SYNTHETIC_MODES, *C.INIT_MODES, *C.LABEL_MODES, *C.ROUNDINGS, *C.LEARNERS})
# Fields a run in this process must not take from the fuzzer: where files go, W&B, and
# compilation (valid, but minutes of inductor work). They are fuzzed through parse_app_config.
NOT_RUN = ("run.checkpoint_root", "logger.", "runtime.compile", "runtime.threads", "probe")


def _types(hint) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(hint) for t in _types(a))
    return (typing.get_origin(hint) or hint,)


def catalogue(cls=AppConfig, prefix: str = "") -> dict[str, tuple]:
    """Every field path of the config and the types it admits (sections included)."""
    out = {}
    for f in dataclasses.fields(cls):
        admitted = _types(typing.get_type_hints(cls)[f.name])
        out[prefix + f.name] = admitted
        for t in admitted:
            if dataclasses.is_dataclass(t):
                out.update(catalogue(t, f"{prefix}{f.name}."))
    return out


FIELDS = catalogue()
LEAVES = sorted(p for p, ts in FIELDS.items() if not any(dataclasses.is_dataclass(t) for t in ts))
SECTIONS = sorted(set(FIELDS) - set(LEAVES))

WORDS = st.text("abcdefghijklmnopqrstuvwxyz_0123456789 .-", max_size=10)
SCALARS = st.one_of(
    st.integers(-3, 40),  # sizes near their lower bounds: valid ones stay tiny
    st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.5, 1.5),
    st.booleans(),
    st.none(),
    WORDS,
    st.sampled_from(CHOICES),
)
KEYS = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(KEYS, SCALARS, max_size=2))


NAMED_CHOICES = {"name": C.TASK_NAMES, "arch": C.ARCHS, "attn_implementation": C.ATTN_IMPLS,
                 "optimizer": C.OPTIMIZERS, "schedule": C.SCHEDULES, "device": C.DEVICES,
                 "engine": C.ENGINES, "mode": C.LOGGER_MODES, "rounding": C.ROUNDINGS,
                 "real_source": C.REAL_SOURCES, "synthetic": C.SYNTHETIC_MODES,
                 "init": C.INIT_MODES, "label_mode": C.LABEL_MODES, "learner": C.LEARNERS,
                 "model.init": C.MODEL_INITS}  # a full path where two fields share a name


def plausible(path: str) -> st.SearchStrategy:
    """Values of the field's own type and usual range, so that many configs are valid."""
    admitted, leaf = FIELDS.get(path, ()), path.rsplit(".", 1)[-1]
    options = [st.none()] if type(None) in admitted else []
    if bool in admitted:
        options.append(st.booleans())
    if int in admitted:
        options.append(st.integers(1, 12))
    if float in admitted:
        options.append(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1e-3, 0.1]))
    if str in admitted:
        options.append(st.sampled_from(NAMED_CHOICES.get(path, NAMED_CHOICES.get(leaf, CHOICES))))
    if list in admitted:
        item = (st.sampled_from(C.BASELINES) if leaf == "baselines" else
                st.sampled_from([0.25, 0.5]) if leaf == "real_fractions" else st.integers(0, 8))
        options.append(st.lists(item, min_size=1, max_size=2))
    return st.one_of(options) if options else VALUES


# ---------------------------------------------------------------------------------------------
# Applying mutations and judging the outcome


# Tinier than the fault tests' settings: dozens of these run in make test.
FUZZ_TINY = {kind: [*TINY[kind], "train.steps=8", "train.warmup_steps=2", "train.log_every=4",
                    "train.checkpoint_every=4", "eval.n_prompts=16", "eval.batch_size=16",
                    *(["loop.generations=1"] if kind == "loop" else [])]
             for kind in TINY}


def base_config(kind: str) -> dict:
    """The tiny composed config of `kind` as a plain dict (what an entry point parses)."""
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(kind, overrides=FUZZ_TINY[kind])
    return OmegaConf.to_container(cfg, resolve=True)


BASES = {kind: base_config(kind) for kind in ("train", "loop")}


def set_path(data: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[leaf] = value


def flatten(data, prefix: str = "") -> dict[str, object]:
    """{dotted path (list items as path[i]): value} of every node of a plain config."""
    out = {prefix.rstrip("."): data} if prefix else {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out[f"{prefix.rstrip('.')}[{i}]"] = v
    return out


def shown(value) -> set[str]:
    """Ways a message may print `value` (an int read into a float field prints as 3.0)."""
    forms = {repr(value), str(value)}
    if isinstance(value, float) and value.is_integer():
        forms.add(str(int(value)))
    return forms


def names_unknown_keys(msg: str, data: dict) -> bool:
    """Whether `msg` reports keys that `data` really has and the config does not know."""
    found = re.search(r"^(?:(\S+)|the config) has unknown setting\(s\) (\[[^]]*\])", msg)
    if not found:
        return False
    section, keys = found.group(1), ast.literal_eval(found.group(2))
    where = flatten(data).get(section) if section else data
    return bool(keys) and isinstance(where, dict) and all(
        k in where and f"{section + '.' if section else ''}{k}" not in FIELDS for k in keys)


def check_names_field_and_value(err: ConfigError, data: dict) -> None:
    """The message names a field of `data` (its dotted path) and that field's value, or keys
    of `data` that are not settings."""
    msg = str(err)
    if names_unknown_keys(msg, data):
        return
    for path, value in flatten(data).items():
        named = re.search(rf"(?<![\w.]){re.escape(path)}(?![\w])", msg)
        if named and any(form in msg for form in shown(value)):
            return
    raise AssertionError(f"ConfigError does not name a field and its value: {msg}")


def judge(fn, data: dict):
    """Run `fn`; a ConfigError must be specific. Returns the result, or None if rejected."""
    try:
        return fn()
    except ConfigError as err:
        check_names_field_and_value(err, data)
        COUNTS["configs_rejected"] += 1
        return None


@st.composite
def mutations(draw, kind: str, leaves_only: bool = False, allowed=lambda p: True,
              wild: float = 0.5, unknown: float = 0.1):
    """1-3 (path, value) changes: a share `wild` of values of any type, a share `unknown` of
    new keys that the config does not know."""
    paths = [p for p in (LEAVES if leaves_only else LEAVES + SECTIONS) if allowed(p)]
    if kind == "train":
        paths = [p for p in paths if not p.startswith(("loop", "members"))]
    out = []
    for _ in range(draw(st.integers(1, 3))):
        # Percentiles counted from the top: Hypothesis favours 0, which thus means "ordinary".
        if draw(st.integers(0, 99)) >= 100 - 100 * unknown:  # a new key, in a section or on top
            section = draw(st.sampled_from(["", *SECTIONS]))
            out.append(((f"{section}." if section else "") + "zz" + draw(KEYS), draw(SCALARS)))
        else:
            path = draw(st.sampled_from(paths))
            is_wild = draw(st.integers(0, 99)) >= 100 - 100 * wild
            out.append((path, draw(VALUES if is_wild else plausible(path))))
    return out


# ---------------------------------------------------------------------------------------------
# parse_app_config directly


def _parse_property(kind: str, changes) -> None:
    COUNTS["configs_tried"] += 1
    data = OmegaConf.to_container(OmegaConf.create(BASES[kind]))  # a deep copy
    for path, value in changes:
        set_path(data, path, value)
    if judge(lambda: parse_app_config(data, needs_loop=kind == "loop"), data) is not None:
        COUNTS["configs_accepted"] += 1


@FAST
@given(st.sampled_from(["train", "loop"]).flatmap(lambda k: st.tuples(st.just(k), mutations(k))))
def test_parse_rejects_bad_values_by_name(case):
    _parse_property(*case)


@pytest.mark.slow
@SLOW
@given(st.sampled_from(["train", "loop"]).flatmap(lambda k: st.tuples(st.just(k), mutations(k))))
def test_parse_rejects_bad_values_by_name_many(case):
    _parse_property(*case)


# ---------------------------------------------------------------------------------------------
# The Python API: a settings class built directly checks its fields as the parser does


def section_class(section: str) -> type:
    return AppConfig if not section else next(
        t for t in FIELDS[section] if dataclasses.is_dataclass(t))


@FAST
@given(st.sampled_from(LEAVES).flatmap(
    lambda p: st.tuples(st.just(p), st.one_of(VALUES, plausible(p)))))
def test_python_api_refuses_what_the_parser_refuses_in_the_same_words(case):
    """`TaskConfig(d=v)` and `task.d=v` on the command line: the same one-line ConfigError.
    The parser may refuse more (settings that clash with another section's defaults)."""
    path, value = case
    section, _, leaf = path.rpartition(".")
    data: dict = {}
    set_path(data, path, value)
    try:
        section_class(section)(**{leaf: value})
        direct = None
    except ConfigError as err:
        direct = str(err)
    try:
        parse_app_config(data, needs_loop=section == "loop")
        parsed = None
    except ConfigError as err:
        parsed = str(err)
    if direct is not None:
        assert parsed == direct
        check_names_field_and_value(ConfigError(direct), data)


# ---------------------------------------------------------------------------------------------
# Through Hydra's compose API into the entry points, running what is accepted


def override(path: str, value, new: bool) -> str:
    """`value` as a Hydra command-line override (strings quoted so they stay strings)."""
    def render(v) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return "'" + v + "'"
        if isinstance(v, list):
            return "[" + ",".join(render(x) for x in v) + "]"
        return "{" + ",".join(f"{k}:{render(x)}" for k, x in v.items()) + "}"

    return f"{'+' if new else ''}{path}={render(value)}"


def small_enough(app: AppConfig) -> bool:
    """Whether an accepted config is cheap to run here (the fuzzer also draws huge sizes)."""
    m, loop = app.members, app.loop
    members = math.prod(len(v or [0]) for v in (m.seeds, m.real_fractions, m.ns, m.augments))
    return (app.train.steps <= 60 and app.train.batch_size <= 64 and app.task.d <= 8
            and app.task.k <= 16 and app.task.hidden <= 128 and app.model.n_layer <= 3
            and app.model.n_embd <= 64 and app.model.n_head <= 16 and (app.data.n or 0) <= 64
            and max(m.ns or [0]) <= 64 and app.eval.n_prompts <= 256 and members <= 4
            and (loop is None or (loop.generations <= 2 and loop.augment <= 64
                                  and max(m.augments or [0]) <= 64
                                  and (loop.steps or 0) <= 60)))


def _run_property(kind: str, changes) -> None:
    from icl_stl.cli.loop import loop_from_config
    from icl_stl.cli.train import train_from_config

    COUNTS["configs_tried"] += 1
    known = set(FIELDS)
    overrides = [override(p, v, p not in known or (kind == "train" and p.startswith("loop")))
                 for p, v in changes]
    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose(kind, overrides=[*FUZZ_TINY[kind], *overrides])
    except Exception as err:  # Hydra's own grammar and merge errors, before our code runs
        assert type(err).__module__.startswith(("hydra", "omegaconf")), repr(err)
        COUNTS["configs_rejected_by_hydra"] += 1
        return
    data = OmegaConf.to_container(cfg, resolve=True)
    app = judge(lambda: parse_app_config(data, needs_loop=kind == "loop"), data)
    if app is None:
        return
    if not small_enough(app):
        COUNTS["configs_accepted_too_big_to_run"] += 1
        return
    run = train_from_config if kind == "train" else loop_from_config
    threads, cwd = torch.get_num_threads(), os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            os.chdir(tmp)  # a relative path in the config lands here, not in the repository
            cfg.run.checkpoint_root = f"{tmp}/ck"
            judge(lambda: run(cfg, Path(tmp) / "out"), data)
            if (Path(tmp) / "out" / "summary.json").exists():
                COUNTS["configs_run"] += 1
            else:  # rejected by the entry point: it must not have trained anything
                assert not list(Path(tmp).rglob("*.pt")), "a rejected config trained first"
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)


def _runnable(path: str) -> bool:
    return not path.startswith(NOT_RUN)


RUN_CASES = st.sampled_from(["train", "loop"]).flatmap(
    lambda k: st.tuples(st.just(k), mutations(k, leaves_only=True, allowed=_runnable, wild=0.1,
                                           unknown=0.02)))


@FAST_RUNS
@given(RUN_CASES)
def test_entry_points_run_or_reject_before_training(case):
    _run_property(*case)


@pytest.mark.slow
@SLOW_RUNS
@given(RUN_CASES)
def test_entry_points_run_or_reject_before_training_many(case):
    _run_property(*case)


# ---------------------------------------------------------------------------------------------
# Valid settings must not be rejected


@pytest.mark.parametrize("kind, changes", [
    ("loop", {"task": {"k": 2}}),  # fewer pairs than the (disabled) curriculum's k_start
    ("loop", {"task": {"d": 1}}),
    ("train", {"data": {"n": None}}),  # training on fresh prompts
    ("loop", {"model": {"arch": "lstm", "engine": "reference"}}),  # as model=lstm sets
    ("loop", {"loop": {"label_mode": "context", "context_pairs": 1}}),
], ids=["k2", "d1", "fresh", "lstm", "context"])
def test_valid_edge_settings_are_accepted(kind, changes):
    data = OmegaConf.to_container(OmegaConf.merge(BASES[kind], changes))
    assert isinstance(parse_app_config(data, needs_loop=kind == "loop"), AppConfig)
