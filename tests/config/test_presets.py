"""Every experiment preset composes with its entry point's config and passes validation, alone
and with debug=default.

Presets are `experiment=NAME` (train.yaml, loop.yaml and probe.yaml end their defaults with
`experiment: null`, then `debug: null`), `# @package _global_` files that set only what differs.
NAME is the file's path under conf/experiment (`reproduce/collapse`); a file whose name starts
with `_` is a base other presets build on, not a preset to run.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose_cfg
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from icl_stl.cli.common import CONFIG_DIR, load_app_config
from icl_stl.cli.loop import members_from_config
from icl_stl.cli.probe import probe_config
from icl_stl.config import real_count
from icl_stl.report.report import verdicts_of

PRESET_DIR = Path(CONFIG_DIR) / "experiment"
# preset -> the primary config of the entry point that runs it
PRESETS = {"collapse_vs_lambda": "loop", "augmentation": "loop", "modes": "loop",
           "stability_vs_n": "probe", "decay_vs_n": "probe", "architectures": "probe",
           "quickstart": "train", "generator": "loop",
           "filters_verifier": "loop", "filters_confidence": "loop", "schedules": "loop",
           "task_pools": "loop",
           "demo/collapse": "loop", "demo/reference": "loop", "demo/reference_drift": "loop",
           "reproduce/collapse": "loop", "reproduce/stability": "probe",
           "reproduce/decay": "probe", "reproduce/augmentation": "loop",
           "reproduce/reference": "loop", "reproduce/filters_verifier": "loop",
           "reproduce/filters_weak_verifier": "loop", "reproduce/filters_confidence": "loop",
           "reproduce/schedules_floor": "loop", "reproduce/schedules_zero": "loop",
           "reproduce/pools_below": "loop", "reproduce/pools_above": "loop",
           "pilot/v2_d2": "loop", "pilot/p3v2_d2": "probe", "pilot/p4v2_d2": "probe",
           "pilot/p5_v2_d2": "loop", "pilot/v2_d3": "loop",
           **{f"reproduce_v2/{setting}_{loops}": "loop" for setting in ("d2", "d3", "gpu_d20")
              for loops in ("p1", "p2", "lambda1")},
           "reproduce_v2/d3_p6": "loop",
           **{f"reproduce_v2/{setting}_{arm}": "loop" for setting in ("p9", "gpu_d20_p9")
              for arm in ("p1", "p9")},
           "p6/pilot": "loop", "p6/pilot_residual": "loop", "p6/pilot_density_ratio": "loop",
           "p9/cpu_pilot": "loop", "p9/gpu": "loop",
           "p10/pilot_d2": "loop", "p10/gpu_d20": "loop"}
FULL_SIZE = ("collapse_vs_lambda", "augmentation", "modes", "stability_vs_n", "decay_vs_n",
             "filters_verifier", "filters_confidence", "schedules", "task_pools")


@functools.cache
def parsed(name: str, *overrides: str):
    """(AppConfig, (probe, seeds, ns) for a probe preset or None)."""
    primary = PRESETS[name]
    app = load_app_config(compose_cfg(primary, f"experiment={name}", *overrides),
                          needs_loop=primary != "train")
    probe = probe_config(app) if primary == "probe" else None
    return app, probe


def _files() -> dict[str, str]:
    """Every yaml under conf/experiment: its name (path without .yaml) -> its text."""
    return {p.relative_to(PRESET_DIR).with_suffix("").as_posix(): p.read_text()
            for p in sorted(PRESET_DIR.rglob("*.yaml"))}


def is_base(name: str) -> bool:
    return name.rsplit("/", 1)[-1].startswith("_")


def test_every_preset_file_is_listed_and_global():
    files = _files()
    assert {name for name in files if not is_base(name)} == set(PRESETS)
    for name, text in files.items():
        assert text.startswith("# @package _global_"), name


def test_every_base_is_built_on_and_named_absolutely_when_nested():
    """A base is in some preset's defaults; a preset in a subfolder names its bases by their
    absolute path (a relative one is read from `experiment/`, not from the subfolder)."""
    files = _files()
    used = set()
    for name, text in files.items():
        defaults = (OmegaConf.create(text).get("defaults") or [])
        configs = [d for d in defaults if isinstance(d, str)]
        if "/" in name:
            assert all(d.startswith("/experiment/") for d in configs), (name, configs)
        used |= {d.removeprefix("/experiment/") for d in configs}
    bases = {name for name in files if is_base(name)}
    assert bases and bases <= used, sorted(bases - used)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_composes_and_validates(name):
    app, probe = parsed(name)
    assert app.logger.group, "a preset names its wandb group so a sweep's runs are grouped"
    if PRESETS[name] == "train":
        assert app.loop is None and app.data.n is None  # fresh prompts: nothing to memorise
    elif probe is None:
        for member in members_from_config(app):  # lambda n is a whole number for every member
            real_count(member.real_fraction, member.n, app.loop.rounding)
    else:
        assert app.members.seeds is None  # the probe builds its own members


def test_collapse_preset_trains_every_lambda_and_seed_as_one_ensemble():
    app, _ = parsed("collapse_vs_lambda")
    members = members_from_config(app)
    assert sorted({m.real_fraction for m in members}) == [0, 0.1, 0.25, 0.5, 1]
    assert len(members) == 25 and {m.seed for m in members} == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_presets_use_a_bigger_model_and_the_default_task(name):
    app, _ = parsed(name)
    assert app.model.n_layer >= 6 and app.task.d >= 5 and app.train.steps >= 10_000


def _measured_steps_to_ridge() -> dict[str, dict]:
    """docs/bench/gpu-presets-steps-<model>-*.json: the runs that sized the full-size presets."""
    found = {}
    for path in sorted((REPO / "docs" / "bench").glob("gpu-presets-steps-*.json")):
        data = json.loads(path.read_text())
        model = next(o.split("=", 1)[1] for o in data["overrides"] if o.startswith("model="))
        found[model] = data
    return found


@pytest.mark.parametrize("name", [*FULL_SIZE, "architectures"])
def test_full_size_presets_are_sized_from_measured_steps_to_ridge(name):
    """Each full-size preset trains its model with the recipe that was measured, for at least
    the steps it needed, at a largest n where it reached ridge; verdicts need 5 seeds."""
    app, probe = parsed(name)
    model = "tiny" if name == "architectures" else "small"
    measured = _measured_steps_to_ridge()[model]
    recipe = dict(o.split("=", 1) for o in measured["overrides"])
    assert app.task.d == int(recipe["task.d"]) and app.task.k == int(recipe["task.k"])
    assert app.train.batch_size == int(recipe["train.batch_size"])
    assert app.train.steps == int(recipe["train.steps"])
    assert app.train.warmup_steps == int(recipe["train.warmup_steps"])
    reached = [r for r in measured["runs"] if r["reached"]]
    assert reached and max(r["steps"] for r in reached) <= app.train.steps
    largest = max(probe[2]) if probe else max(m.n for m in members_from_config(app))
    assert largest >= min(r["n"] for r in reached)
    seeds = probe[1] if probe else {m.seed for m in members_from_config(app)}
    swept = _grid(name).get("seed")  # a pool per seed: the seeds are the sweep's jobs
    assert len(set(swept or seeds)) >= 5


def test_probe_presets_pick_their_probe_and_grid():
    _, (stability, _, ns) = parsed("stability_vs_n")
    assert stability.kind == "stability" and len(ns) >= 3
    _, (decay, seeds, ns) = parsed("decay_vs_n")
    assert decay.kind == "decay" and len(ns) >= 5 and max(ns) / min(ns) >= 10 ** 1.5
    assert len(seeds) >= 2


def test_augmentation_preset_varies_m_and_n():
    app, _ = parsed("augmentation")
    assert len(app.members.augments) >= 3 and 0 in app.members.augments
    assert len(app.members.ns) >= 2


@pytest.mark.parametrize("name, keys", [
    ("modes", {"loop.real_source", "loop.synthetic", "loop.init"}),
    ("architectures", {"model", "loop.real_fraction"}),
])
def test_sweep_presets_carry_their_grid(name, keys):
    cfg = compose_cfg(PRESETS[name], f"experiment={name}")
    with_hydra = _with_hydra(PRESETS[name], name)
    params = OmegaConf.to_container(with_hydra.hydra.sweeper.params)
    assert set(params) == keys and all("," in str(v) for v in params.values())
    for combo in ("loop.synthetic=accumulate", "loop.init=warm_start", "loop.real_source=fresh") \
            if name == "modes" else ("model=lstm", "model=mlp"):
        parsed(name, combo)  # every point of the grid validates
    assert cfg.logger.group == name


def _with_hydra(primary: str, name: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(primary, overrides=[f"experiment={name}"], return_hydra_config=True)


@functools.cache
def _grid(name: str) -> dict[str, list[str]]:
    """The preset's sweep grid (hydra.sweeper.params): key -> its values."""
    params = _with_hydra(PRESETS[name], name).hydra.sweeper.get("params") or {}
    return {key: [v.strip() for v in str(values).split(",")] for key, values in params.items()}


GRIDS = [name for name in sorted(PRESETS) if _grid(name)]


@pytest.mark.parametrize("name", GRIDS)
def test_every_point_of_a_sweep_grid_validates(name):
    """Every job `icl-stl-loop -m experiment=NAME` would launch composes and validates, lambda n
    is whole (or rounded) for its members, and the grid has more than one point."""
    points = _points(name)
    assert len(points) > 1
    for point in points:
        app, _ = parsed(name, *point)
        if PRESETS[name] == "loop":
            for member in members_from_config(app):
                real_count(member.real_fraction, member.n, app.loop.rounding)


def test_sweep_presets_of_the_new_predictions_compare_with_the_collapse_preset():
    """P6-P8's full-size presets change only the extension's settings and the members of
    collapse_vs_lambda, so its loops are their comparison (the same generation 0), and the
    comparison each needs is in it: lambda = 0 (P6, P8) and lambda = every floor (P7)."""
    collapse, _ = parsed("collapse_vs_lambda")
    lambdas = set(collapse.members.real_fractions)
    for name in ("filters_verifier", "filters_confidence", "schedules", "task_pools"):
        app, _ = parsed(name, *(f"{k}={v[0]}" for k, v in _grid(name).items()))
        for group in ("task", "model", "train", "data"):
            mine = dataclasses.replace(getattr(app, group), n_tasks=None) if group == "task" \
                else getattr(app, group)
            assert mine == getattr(collapse, group), (name, group)
        assert app.loop.generations == collapse.loop.generations
    assert 0 in lambdas
    floors = {float(v) for v in _grid("schedules")["loop.real_schedule_floor"]}
    assert floors <= lambdas
    d = parsed("task_pools")[0].task.d
    assert min(int(m) for m in _grid("task_pools")["task.n_tasks"]) <= d  # below the threshold


def test_probe_preset_with_the_loop_entry_point_is_a_clear_error():
    with pytest.raises(ConfigCompositionException, match="probe"):
        compose_cfg("loop", "experiment=decay_vs_n")


def test_demo_presets_are_slices_of_the_reproductions_design():
    """The demo's collapse is the reproduction's task and n, from-scratch generations, each loop
    beside its oracle-labelled twin; a smaller, faster learner so that it fits in minutes."""
    demo, _ = parsed("demo/collapse")
    full, _ = parsed("reproduce/collapse")
    assert demo.task == full.task and demo.model.arch == full.model.arch
    assert demo.model.n_embd < full.model.n_embd and demo.train.batch_size == 64
    assert demo.loop.init == "from_scratch" and demo.loop.steps is None
    assert {(m.seed, m.real_fraction, m.n, m.labeller) for m in members_from_config(demo)} == {
        (s, lam, 10_000, lab) for s in (0, 1) for lam in (0, 0.5) for lab in ("model", "oracle")}
    assert demo.loop.generations == 1 and demo.logger.mode == "disabled"
    reference, _ = parsed("demo/reference")
    assert reference.loop.learner == "gaussian_prior"
    assert {m.real_fraction for m in members_from_config(reference)} == {0, 0.5}


def test_demo_script_runs_every_part_and_writes_the_report(tmp_path):
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    tiny = ["train.steps=3", "train.warmup_steps=1", "loop.steps=2", "loop.warmup_steps=1",
            "data.n=40", "members.ns=[40]", "eval.n_prompts=32", "eval.batch_size=32"]
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--figures", str(tmp_path / "figs"),
                      *(arg for o in tiny for arg in ("--set", o))]) == 0
    assert set(verdicts_of(out)) == set(range(1, 11))  # P6-P10 read "not tested" there
    for part in ("collapse", "reference"):
        assert (out / part / "summary.json").exists()
    assert (out / "figures" / "reference.png").exists()
    timing = json.loads((out / "demo_timing.json").read_text())["seconds"]
    assert set(timing) == {"collapse", "reference", "reference_drift", "report", "total"}
    copied = {p.name for p in (tmp_path / "figs").glob("*.png")}
    assert "reference.png" in copied and copied == {p.name for p in (out / "figures").glob("*.png")}


def _points(name: str) -> list[tuple[str, ...]]:
    """The overrides of every job of the preset's sweep grid; [()] without a grid."""
    grid = _grid(name)
    return list(itertools.product(*([f"{k}={v}" for v in vs] for k, vs in grid.items())))


def _at_point(cfg, point: tuple[str, ...], primary: str, *overrides: str):
    """The composed `cfg` with a grid point's overrides: a plain key is set on a copy (as the
    last override it would be), a config group choice (model=lstm) is composed again."""
    groups = {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}
    if any(o.split("=", 1)[0] in groups for o in point):
        return compose_cfg(primary, *overrides, *point)
    cfg = copy.deepcopy(cfg)
    for override in point:
        key, value = override.split("=", 1)
        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    return cfg


DEBUG_CASES = [*((primary, None) for primary in ("train", "loop", "probe")),
               *((PRESETS[name], name) for name in sorted(PRESETS))]


@pytest.mark.parametrize("primary, name", DEBUG_CASES, ids=[f"{p}-{n}" for p, n in DEBUG_CASES])
def test_debug_combines_with_every_experiment_and_keeps_its_design(primary, name):
    """debug=default comes after the experiment: every job of the experiment's grid validates
    at the smallest sizes, a few steps and one later generation, with the experiment's seeds,
    lambdas and probe; its checkpoints never mix with real ones."""
    overrides = [f"experiment={name}", "debug=default"] if name else ["debug=default"]
    needs_loop = primary != "train"
    points = _points(name) if name else [()]
    composed = compose_cfg(primary, *overrides)
    for i, point in enumerate(points):
        app = load_app_config(_at_point(composed, point, primary, *overrides),
                              needs_loop=needs_loop)
        assert (app.task.d, app.model.n_layer, app.train.steps) == (2, 1, 20)
        assert app.logger.mode == "disabled" and app.logger.group == "debug"
        assert app.run.checkpoint_root.startswith("checkpoints/debug/")
        if i:
            continue  # the design is compared on the grid's first job
        plain = parsed(name, *point)[0] if name else load_app_config(
            compose_cfg(primary), needs_loop=needs_loop)
        if primary == "probe":
            (probe, seeds, ns), (want, want_seeds, _) = probe_config(app), probe_config(plain)
            assert probe.kind == want.kind and seeds == want_seeds and max(ns) <= 100
        elif primary == "loop":
            assert app.loop.generations == 1
            members = members_from_config(app)
            assert {m.n for m in members} == {100} and {m.augment for m in members} == {0}
            assert {(m.seed, m.real_fraction) for m in members} == {
                (m.seed, m.real_fraction) for m in members_from_config(plain)}
            assert (app.loop.filter, app.loop.real_schedule) == (
                plain.loop.filter, plain.loop.real_schedule)


def test_debug_writes_its_outputs_apart():
    from hydra import compose, initialize_config_dir

    for primary in ("train", "loop", "probe"):
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            with_hydra = compose(primary, overrides=["debug=default"], return_hydra_config=True)
        for mode in ("run", "sweep"):
            folder = OmegaConf.to_container(with_hydra.hydra[mode], resolve=False)["dir"]
            assert folder.startswith(("outputs/debug/", "multirun/debug/")), (primary, folder)


@pytest.mark.parametrize("script, name", [("icl-stl-train", "quickstart"),
                                          ("icl-stl-loop", "demo/collapse")])
def test_debug_runs_an_experiment_in_seconds(tmp_path, script, name):
    """From a fresh folder: the run writes under outputs/debug/<entry point>/ and its
    checkpoints under checkpoints/debug/<time>/, and a loop runs generation 0 and 1."""
    from conftest import BIN

    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / script), f"experiment={name}", "debug=default"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    kind = script.removeprefix("icl-stl-")
    (summary,) = tmp_path.glob(f"outputs/debug/{kind}/*/*/summary.json")
    assert len(list(tmp_path.glob(f"checkpoints/debug/*/{kind}-*"))) == 1
    if kind == "loop":
        records = json.loads(summary.read_text())["generations"]
        assert {r["generation"] for r in records} == {0, 1}
