"""icl-stl-probe: probes of the self-consuming loop (stability, decay against n, in-context).

    icl-stl-probe probe=stability probe.seeds=[0,1] probe.replaced_indices=[0,5]
    icl-stl-probe probe=decay probe.ns=[16,32,64,128,256,512] probe.seeds=[0,1,2]
    icl-stl-probe probe=in_context loop.generations=3
    icl-stl-probe probe=stability loop.learner=gaussian_prior loop.real_source=fresh

Every probe writes its JSON and PNG (stability.json/png, decay.json/png, in_context.json/png)
beside the loop's summary.json, plots and timing.json. With `loop.learner=gaussian_prior` the
records also carry prior_mean_err2 and prior_cov_trace_ratio.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig

from icl_stl.cli.common import (
    hydra_app,
    hydra_output_dir,
    load_app_config,
    make_logger,
    run_name,
    runtime_options,
)
from icl_stl.cli.loop import loop_settings, write_loop_outputs
from icl_stl.config import AppConfig, ConfigError, ProbeConfig, from_container
from icl_stl.config.fields import fail
from icl_stl.persistence import RunLock
from icl_stl.probes import RUNNERS, prior_drift_metrics
from icl_stl.training.early_stopping import check_held_out

HEADLINES = {"stability": ("gamma_max", "gamma_mean"), "decay": ("slope", "verdict"),
             "in_context": (), "dose_response": ("sq_dist_slope", "sq_dist_intercept")}
# The probes whose prompts (S_0, twins, probe prompts) draw their tasks from the run's pool.
POOL_KINDS = ("stability", "decay", "dose_response")


def probe_config(app: AppConfig) -> tuple[ProbeConfig, list[int], list[int]]:
    """The validated probe settings, its seeds and its grid of n."""
    probe = from_container(ProbeConfig, app.probe, "probe")
    members = app.members
    for key, instead in (("seeds", "probe.seeds"), ("ns", "probe.ns"),
                         ("real_fractions", "loop.real_fraction or probe.real_fractions"),
                         ("augments", "loop.augment")):
        if getattr(members, key) is not None:
            fail(f"members.{key}", getattr(members, key),
                 f"null for icl-stl-probe (it builds its own members: set {instead})")
    if members.labellers is not None:
        # Each probe pairs its own members (twins, grid over n, doses); a model- and an
        # oracle-labelled copy of each would be paired across labellers. loop.labeller applies.
        fail("members.labellers", members.labellers,
             "null for icl-stl-probe (its probes build and pair their own members; "
             "loop.labeller labels them all: run the probe once per labeller)")
    ns = probe.ns or [app.data.n]
    probe.validate(ns)
    if app.task.n_tasks is not None and probe.kind not in POOL_KINDS:
        # Its perturbed prompts are drawn from the Gaussian prior, not from a pool.
        raise ConfigError(f"task.n_tasks must be null for probe.kind={probe.kind} (it draws "
                          f"its prompts from the prior; probe.kind={' or '.join(POOL_KINDS)} "
                          f"takes a task pool), got {app.task.n_tasks!r}")
    lams = (probe.real_fractions or [app.loop.real_fraction]
            if probe.kind == "dose_response" else [app.loop.real_fraction])
    for n in ns:  # e.g. lambda n must be a whole number of prompts for every n of the grid
        for lam in lams:
            loop = dataclasses.replace(app.loop, real_fraction=lam)
            try:
                loop.validate("loop", n, app.task, app.model)
            except ConfigError as err:
                if probe.ns is None and lam == app.loop.real_fraction:
                    raise
                where = (f"probe.ns has n={n} (the loop calls it data.n)" if probe.ns
                         else f"probe.real_fractions has {lam}")
                raise ConfigError(f"{where}: {err}") from None
    check_held_out(list(ns), app.train.held_out_fraction)  # early stopping: n big enough
    return probe, list(probe.seeds or [app.seed]), list(ns)


def headline(kind: str, result: dict) -> dict:
    """A few scalars for the logger's summary."""
    if kind == "stability":
        last = result["generations"][-1] if result["generations"] else {}
        return {f"final_{k}": last.get(k) for k in HEADLINES[kind]}
    if kind == "decay":
        return {"decay_slope": result["slope"], "decay_verdict": result["verdict"]}
    if kind == "dose_response":
        last = result["rows"][-1] if result["rows"] else {}
        return {f"final_{k}": last.get(k) for k in HEADLINES[kind]}
    last = result["generations"][-1] if result["generations"] else {}
    return {"final_ics_slope": (last.get("linear_fit") or {}).get("slope")}


def probe_from_config(cfg: DictConfig, output_dir) -> dict:
    """Everything `icl-stl-probe` does, with the output directory given (compose-API friendly)."""
    app = load_app_config(cfg, needs_loop=True)
    probe, seeds, ns = probe_config(app)
    runtime = runtime_options(app.runtime)
    name = run_name(app, "probe")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    hooks = [prior_drift_metrics] if app.loop.learner == "gaussian_prior" else []
    checkpoint_dir = Path(app.run.checkpoint_root) / name
    with RunLock(output_dir), make_logger(app, output_dir, name, f"probe-{probe.kind}",
                                          checkpoint_dir) as logger:
        result, summary = RUNNERS[probe.kind](
            loop_settings(app, runtime), probe, seeds, ns, checkpoint_dir, output_dir, logger,
            hooks)
        top = headline(probe.kind, result)
        logger.update_wandb_summary(top)  # summary.json holds the full loop summary below
        write_loop_outputs({**summary, "probe": top}, output_dir,
                           title=f"probe {probe.kind}: {app.loop.label_mode} labels")
        logger.log_image(probe.kind, output_dir / f"{probe.kind}.png")
    return result


def check_settings(cfg: DictConfig) -> None:
    """What `probe_from_config` checks before it writes anything (run by the preflight)."""
    app = load_app_config(cfg, needs_loop=True)
    probe_config(app)
    runtime_options(app.runtime)


@hydra_app("probe", check=check_settings)
def main(cfg: DictConfig) -> None:
    probe_from_config(cfg, hydra_output_dir())


if __name__ == "__main__":
    main()
