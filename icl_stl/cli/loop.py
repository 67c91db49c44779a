"""icl-stl-loop: the self-consuming training loop.

    icl-stl-loop model=tiny loop.generations=10 loop.real_fraction=0.25
    icl-stl-loop members.real_fractions=[0,0.25,1] members.seeds=[0,1]   # 6 loops, one ensemble
"""

from __future__ import annotations

import itertools
import time
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
from icl_stl.config import AppConfig
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.loop.timing import add_entry_timing, process_age_s
from icl_stl.persistence import RunLock, atomic_write_json
from icl_stl.runs.plots import plot_calibration, plot_generations, plot_positions


def members_from_config(app: AppConfig) -> list[MemberSpec]:
    """The product of members.* lists (each defaulting to the single configured value); the
    labellers vary fastest, so a loop sits beside its matched oracle control."""
    m, loop = app.members, app.loop
    return [MemberSpec(seed=s, real_fraction=lam, n=n, augment=a, labeller=lab)
            for s, lam, n, a, lab in itertools.product(
                m.seeds or [app.seed], m.real_fractions or [loop.real_fraction],
                m.ns or [app.data.n], m.augments or [loop.augment],
                m.labellers or [loop.labeller])]


def loop_settings(app: AppConfig, runtime) -> LoopSettings:
    return LoopSettings(task=app.task, model=app.model, train=app.train, eval=app.eval,
                        loop=app.loop, seed=app.seed, runtime=runtime)


def write_loop_outputs(summary: dict, output_dir: Path, title: str = "") -> None:
    """summary.json, risk against generation, and error against position (first and last)."""
    atomic_write_json(output_dir / "summary.json", summary)
    records = summary["generations"]
    ridge = records[0]["ridge_risk"] if records else None
    zero = records[0].get("zero_risk") if records else None
    plot_generations(records, output_dir / "risk_vs_generation.png", ridge_risk=ridge,
                     zero_risk=zero, title=title)
    last = max(r["generation"] for r in records)
    curves = {}
    for gen in sorted({0, last}):
        r = next(r for r in records if r["generation"] == gen)
        curves[f"generation {gen}"] = {"per_position": r["test_risk_per_position"],
                                       "ci_low": r["test_ci_low"], "ci_high": r["test_ci_high"]}
    curves.update(summary["baselines"])
    plot_positions(curves, output_dir / "positions.png",
                   model_keys=tuple(k for k in curves if k.startswith("generation")),
                   title=f"member 0, generations 0 and {last}")
    calibration = {f"generation {gen}": r for gen in sorted({0, last}) for r in records
                   if r["generation"] == gen and r["member"] == 0
                   and r.get("head_var_per_position") is not None}
    if calibration:
        plot_calibration(calibration, output_dir / "calibration.png",
                         title="Gaussian head of member 0 on fresh prompts")


def loop_from_config(cfg: DictConfig, output_dir, startup_s: float | None = None) -> dict:
    """Everything `icl-stl-loop` does, with the output directory given (compose-API friendly).
    Its seconds, and those of its outputs, go into the run's timing.json ("entry"), with
    `startup_s` (the process's age when it was called) where the caller measured it."""
    start = time.perf_counter()
    app = load_app_config(cfg, needs_loop=True)
    runtime = runtime_options(app.runtime)
    name = run_name(app, "loop")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    members = members_from_config(app)
    checkpoint_dir = Path(app.run.checkpoint_root) / name
    with RunLock(output_dir), make_logger(app, output_dir, name, "loop", checkpoint_dir) as logger:
        extra = None
        if app.loop.learner == "gaussian_prior":
            from icl_stl.loop.learners.reference import prior_drift_metrics

            extra = prior_drift_metrics
        run = LoopRun(loop_settings(app, runtime), members, checkpoint_dir, output_dir, logger,
                      extra)
        summary = run.run()
        outputs_start = time.perf_counter()
        labellers = set(app.members.labellers or [app.loop.labeller])
        labels = ("oracle" if labellers == {"oracle"} else app.loop.label_mode
                  + (" and oracle" if "oracle" in labellers else ""))
        write_loop_outputs(summary, output_dir,
                           title=f"{labels} labels, {app.loop.real_source} real data")
        final = [r for r in summary["generations"]
                 if r["generation"] == max(g["generation"] for g in summary["generations"])]
        logger.update_wandb_summary({f"final_test_risk/member{r['member']}": r["test_risk"]
                                     for r in final})
        logger.log_image("risk_vs_generation", output_dir / "risk_vs_generation.png")
        outputs = time.perf_counter() - outputs_start
    add_entry_timing(output_dir, {"seconds": time.perf_counter() - start, "outputs": outputs,
                                  **({} if startup_s is None else {"startup": startup_s})})
    return summary


def check_settings(cfg: DictConfig) -> None:
    """What `loop_from_config` checks before it writes anything (run by the preflight)."""
    app = load_app_config(cfg, needs_loop=True)
    runtime_options(app.runtime)
    members_from_config(app)


@hydra_app("loop", check=check_settings)
def main(cfg: DictConfig) -> None:
    loop_from_config(cfg, hydra_output_dir(), startup_s=process_age_s())


if __name__ == "__main__":
    main()
