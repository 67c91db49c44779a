"""What every entry point shares: config parsing, run names, runtime switches, error handling,
the command-line check before Hydra starts (`hydra_app`).

Entry points are the only code that sees a Hydra DictConfig; they turn it into typed settings
here and hand those to the core functions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from icl_stl.cli import help as app_help
from icl_stl.cli.preflight import preflight
from icl_stl.cli.sweeps import ERROR_FILE, sweep_threads
from icl_stl.config import (
    AppConfig,
    ConfigError,
    RuntimeConfig,
    parse_app_config,
)
from icl_stl.data.seeding import resolve_device
from icl_stl.persistence import PersistenceError, RunLockedError, atomic_write_json
from icl_stl.persistence.identity import run_identity
from icl_stl.runs.logger import RunLogger
from icl_stl.runs.wandb_files import RESUME_FILE
from icl_stl.training.engine import DivergenceError, RuntimeOptions

log = logging.getLogger("icl_stl")

# Errors a user can act on: reported as one clear line, never as a traceback.
USER_ERRORS = (ConfigError, PersistenceError, RunLockedError, DivergenceError)


def load_app_config(cfg: DictConfig, *, needs_loop: bool = False) -> AppConfig:
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation or a value OmegaConf cannot resolve
        raise ConfigError(f"the config cannot be resolved: {err}") from None
    return parse_app_config(container, needs_loop=needs_loop)


def runtime_options(rc: RuntimeConfig) -> RuntimeOptions:
    """Resolve per-device defaults and apply process-wide switches (threads, TF32)."""
    device = resolve_device(rc.device)
    cuda = device.type == "cuda"
    if rc.threads is not None:
        torch.set_num_threads(rc.threads)
    tf32 = cuda if rc.tf32 is None else rc.tf32
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    bf16 = cuda if rc.bf16 is None else rc.bf16
    if bf16 and not cuda:
        raise ConfigError("runtime.bf16 must be false or null on the CPU (the CPU path is exact "
                          "fp32), got True")
    fused = cuda if rc.fused_adam is None else rc.fused_adam
    return RuntimeOptions(device=device, bf16=bf16, fused_adam=fused, compile=rc.compile)


def settings_hash(app: AppConfig, kind: str) -> str:
    """A short hash of what determines a run's results (`persistence.identity.run_identity`)."""
    text = json.dumps({"kind": kind, **run_identity(app)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_name(app: AppConfig, kind: str) -> str:
    return app.run.name or f"{kind}-{settings_hash(app, kind)}"


def hydra_output_dir() -> Path:
    """The Hydra run (or sweep job) directory; the compose API has none, so tests pass theirs."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _values(values: list) -> str:
    """`[0, 1, 2, 3]` as ``0-3``, a few values as ``0,0.5``, many as ``16..512``."""
    text = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    if len(values) > 2 and all(isinstance(v, int) for v in values) \
            and list(values) == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}-{values[-1]}"
    if len(values) <= 4 or not all(isinstance(v, (int, float)) for v in values):
        return ",".join(text)
    return f"{min(values):g}..{max(values):g}"


def display_name(app: AppConfig, job_type: str) -> str:
    """The W&B name of a run: run.name, else what it runs, e.g. ``loop-lam0,0.5-n1000-g10-seed0-199``
    (the settings hash names its checkpoints and is in the W&B config as checkpoint_name)."""
    if app.run.name:
        return app.run.name
    probe = app.probe or {}
    seeds = app.members.seeds or probe.get("seeds") or [app.seed]
    ns = app.members.ns or probe.get("ns") or [app.data.n if app.data.n is not None else "fresh"]
    seed = f"seed{_values(list(seeds))}"
    if app.loop is None:
        return f"{job_type}-{app.model.arch}-{app.model.n_layer}L-d{app.task.d}-n{_values(ns)}-{seed}"
    lams = app.members.real_fractions or [app.loop.real_fraction]
    augments = app.members.augments or [app.loop.augment]
    parts = [job_type, f"lam{_values(list(lams))}", f"n{_values(list(ns))}"]
    if any(augments):
        parts.append(f"m{_values(list(augments))}")
    return "-".join([*parts, f"g{app.loop.generations}", seed])


def default_group(app: AppConfig, job_type: str) -> str:
    """The W&B group of a run: logger.group, else the preset (``experiment=reproduce/collapse``:
    ``reproduce/collapse``), else in a sweep its directory, else the run's display name."""
    if app.logger.group:
        return app.logger.group
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        preset = hydra.runtime.choices.get("experiment")
        if preset:
            return str(preset)
        if is_multirun():
            return str(hydra.sweep.dir)
    return display_name(app, job_type)


def make_logger(app: AppConfig, run_dir: Path, name: str, job_type: str,
                resume_dir: Path | None = None) -> RunLogger:
    """The run's logger; `name` (the checkpoint name, a hash unless run.name is set) goes into
    the W&B config, the W&B run is named by `display_name` and grouped by `default_group`.
    `job_type` is train, loop, probe or report, with a suffix after '-' for the tag and name
    (``probe-stability``). A loop passes its checkpoint directory as `resume_dir`: its W&B runs
    are continued from there after a kill."""
    config = {**dataclasses.asdict(app), "checkpoint_name": name}
    return RunLogger(run_dir, mode=app.logger.mode, project=app.logger.project, config=config,
                     name=display_name(app, job_type), group=default_group(app, job_type),
                     job_type=job_type.split("-")[0], tags=[job_type, *app.logger.tags],
                     init_timeout_s=app.logger.init_timeout_s,
                     resume_file=None if resume_dir is None else resume_dir / RESUME_FILE,
                     member_runs=app.logger.member_runs)


def refuse_unswept_grid() -> None:
    """A preset that defines a sweep grid (hydra.sweeper.params, e.g. experiment=modes) run
    without -m would run one grid point and say nothing: refuse it instead."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or is_multirun():
        return
    params = HydraConfig.get().sweeper.get("params") or {}
    if params:
        raise ConfigError(f"hydra.sweeper.params defines a sweep over {sorted(params)}: run it "
                          f"with -m (multirun); to run one point, add 'hydra.sweeper.params=null' "
                          f"and set those keys yourself")


def share_cores_between_jobs(cfg: DictConfig) -> None:
    """In a job of the joblib launcher, n_jobs jobs share the machine: each gets its share of
    the cores as torch threads, unless runtime.threads says otherwise."""
    from hydra.core.hydra_config import HydraConfig

    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return
    if OmegaConf.select(cfg, "runtime.threads", default=None) is not None:
        return  # applied by runtime_options
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n_jobs = launcher.get("n_jobs")
    threads = sweep_threads(cores or 1, n_jobs, torch.get_num_threads())
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%d cores shared by joblib n_jobs=%s)", threads, cores, n_jobs)


def entry_point(fn: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Wrap a Hydra task: user errors become one clear line (exit 2); in a sweep a failing job
    records its error in its directory and the sweep goes on."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig):
        try:
            refuse_unswept_grid()
            if is_multirun():
                # an error.json of an earlier run of this sweep is not this run's failure
                (hydra_output_dir() / ERROR_FILE).unlink(missing_ok=True)
                share_cores_between_jobs(cfg)
            return fn(cfg)
        except Exception as err:
            if is_multirun():
                out = hydra_output_dir()
                atomic_write_json(out / ERROR_FILE, {
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc()})
                log.error("job failed (%s: %s); the sweep continues", type(err).__name__, err)
                return None
            if isinstance(err, USER_ERRORS):
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
            raise
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: one line, the conventional 130
            detail = str(err) or ("finished generations and the last checkpoint are kept; the "
                                  "same command resumes")
            print(f"interrupted: {detail}", file=sys.stderr)
            sys.exit(130)

    return wrapper


def hydra_app(config_name: str, check: Callable[[DictConfig], object] | None = None
              ) -> Callable[[Callable[[DictConfig], object]], Callable[..., None]]:
    """`@hydra.main` on conf/<config_name>.yaml around `entry_point(fn)`, with the command line
    checked first (`preflight`: a mistyped key, an output directory that cannot be made or a
    value `check` refuses is one line and exit 2, before Hydra writes anything). `check` parses
    the app's settings as its task does. The result is the console script's main."""
    import hydra

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[..., None]:
        task = hydra.main(version_base="1.3", config_path=CONFIG_DIR,
                          config_name=config_name)(entry_point(fn))

        @functools.wraps(fn)
        def main(cfg: DictConfig | None = None) -> None:
            if cfg is not None:  # Hydra's pass-through: main(cfg) runs the task on cfg
                task(cfg)
                return
            preflight(CONFIG_DIR, config_name, sys.argv[1:], check)
            task()

        return main

    return decorate


def find_config_dir() -> str:
    """conf/: inside the installed package (icl_stl/conf, a wheel), else the source tree's."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file() and (candidate / "loop.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no conf/ with train.yaml and loop.yaml in {package} or its parent; "
                            f"reinstall icl-stl")


CONFIG_DIR = find_config_dir()
app_help.register(CONFIG_DIR)  # --help's text (conf/hydra/help/icl_stl.yaml)
