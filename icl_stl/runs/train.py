"""One in-context learner trained on S_0 (or fresh prompts) and evaluated against baselines.

This is generation 0 of the loop on its own: the same seed streams give the same S_0, the same
initialisation and the same batches, so `icl-stl-train` and generation 0 of `icl-stl-loop`
agree exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from icl_stl import RESULTS_VERSION
from icl_stl.config import AppConfig
from icl_stl.data.prompts import draw_test_prompts, sample_prompts
from icl_stl.data.seeding import derive_seed, make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.persistence import CheckpointSlot, RunLock, atomic_write_bytes, atomic_write_json
from icl_stl.persistence.identity import train_identity
from icl_stl.runs.evaluate import record_eval_settings
from icl_stl.runs.logger import RunLogger
from icl_stl.runs.plots import calibration_table, plot_calibration, plot_positions
from icl_stl.runs.provenance import code_provenance
from icl_stl.training.baselines import bayes_optimal_ridge_alpha
from icl_stl.training.early_stopping import EarlyStopping, split_held_out
from icl_stl.training.engine import MemberData, RuntimeOptions, train_ensemble
from icl_stl.training.evaluation import (
    baseline_errors,
    bayes_excess,
    bayes_predictions,
    head_calibration,
    model_errors,
    predict_distribution,
    summarise,
)
from icl_stl.training.gate import gap_closed, reached_ridge
from icl_stl.training.losses import squared_error

log = logging.getLogger(__name__)


def resume_identity(app: AppConfig, data_fingerprint: str | None) -> dict:
    """What a checkpoint must have been written with to be resumed: every setting that changes
    the trained model (not logging or checkpoint cadence), the data and the seed."""
    return {"task": dataclasses.asdict(app.task), "model": dataclasses.asdict(app.model),
            "train": train_identity(app.train), "data": data_fingerprint, "seed": app.seed,
            "results_version": RESULTS_VERSION}


def run_training(app: AppConfig, run_dir: Path, checkpoint_dir: Path, runtime: RuntimeOptions,
                 logger: RunLogger | None = None) -> dict:
    """Train, evaluate, write summary.json and positions.png into `run_dir`; return the summary."""
    task, k = make_task(app.task), app.task.k
    s0, split = None, None
    if app.data.n is not None:
        s0 = sample_prompts(task, app.data.n, k, make_generator(app.seed, "S0"))
    if s0 is not None and app.train.held_out_fraction > 0:  # as the loop's generation 0
        split = split_held_out(s0, app.train.held_out_fraction, app.seed)
        s0 = split.train
    model = build_ensemble(app.model, task.d, k, [make_generator(app.seed, "init", 0)])
    member = MemberData(derive_seed(app.seed, "batches", 0), s0)
    identity = resume_identity(app, None if s0 is None else s0.fingerprint())

    def on_log(rec: dict) -> None:
        if logger is not None:
            # global_step is the x axis of train/* (one generation: the same as step)
            logger.log_metrics({"train/step": rec["step"], "train/global_step": rec["step"],
                                "train/loss": rec["loss"][0], "train/lr": rec["lr"]})

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(checkpoint_dir):
        slot = CheckpointSlot(checkpoint_dir, "train")
        if slot.exists() and not app.run.resume:
            from icl_stl.config import ConfigError

            raise ConfigError(f"run.resume is false but checkpoint {slot.latest_path} exists; "
                              f"choose another run.name or delete it")
        stopping = None
        if split is not None:
            stopping = EarlyStopping([split.held_out], app.eval.batch_size, runtime,
                                     checkpoint_dir / "early_stopping.pt",
                                     {"held_out": split.held_out.fingerprint()})
        result = train_ensemble(model, [member], task, k, app.train, runtime, checkpoint=slot,
                                identity=identity, on_log=on_log if stopping is None
                                else stopping.callback(model, on_log), description="train")
        if stopping is not None:
            stopping.restore(model)
        record_eval_settings(checkpoint_dir, app.eval)  # icl-stl-eval's defaults

    test = draw_test_prompts(task, app.eval.n_prompts, k, app.seed)
    mean, var = predict_distribution(model, test.xs[None], test.ys[None], app.eval.batch_size,
                                     runtime)  # one pass: errors and, with a head, calibration
    mean = mean[0].cpu()
    test_errors = squared_error(mean, test.ys.cpu(), task.d)
    calibration = None if var is None else head_calibration(mean, var[0].cpu(), test.ys)
    alpha = (app.eval.ridge_alpha if app.eval.ridge_alpha is not None
             else bayes_optimal_ridge_alpha(app.task.noise_std, app.task.w_scale))
    names = sorted(set(app.eval.baselines) | {"ridge", "zero"})  # the gate needs both
    base = baseline_errors(test, names, ridge_alpha=alpha, knn_neighbours=app.eval.knn_neighbours)
    curves = {"model": summarise(test_errors),
              **{n: summarise(e) for n, e in base.items() if n in app.eval.baselines}}
    train_risk = None
    if s0 is not None:
        train_risk = model_errors(model, s0, app.eval.batch_size, runtime)[0].mean().item()
    test_risk = curves["model"]["risk"]
    ridge_risk = base["ridge"].mean().item()
    zero_risk = base["zero"].mean().item()
    closed = gap_closed(test_risk, ridge_risk, zero_risk)
    bayes = bayes_predictions(app.task, test)
    excess, excess_se = (None, None) if bayes is None else bayes_excess(mean, bayes, task.d)
    summary = {
        "test_risk": test_risk,
        "train_risk": train_risk,
        "gen_gap": None if train_risk is None else test_risk - train_risk,
        "ridge_risk": ridge_risk,
        "excess_risk": test_risk - ridge_risk,
        "bayes_excess": excess,  # the same excess, measured directly (never negative)
        "bayes_excess_se": excess_se,
        "zero_risk": zero_risk,
        "gap_closed": closed,
        "reached_ridge": reached_ridge(test_risk, ridge_risk, zero_risk),
        "final_train_loss": result.final_loss[0],
        "steps": result.steps,
        "bad_steps": result.bad_steps,
        "n": app.data.n,
        **({} if split is None else {**split.record(), **stopping.records()[0]}),
        "ridge_alpha": alpha,
        "per_position": curves,
        "calibration": calibration,
        "checkpoint": str(checkpoint_dir / "train.pt"),
        "code": code_provenance(),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "summary.json", summary)
    if calibration is not None:
        write_calibration(calibration, run_dir, title=f"Gaussian head, n={app.data.n}")
    plot = plot_positions(curves, run_dir / "positions.png", d=task.d, model_keys=("model",),
                          title=f"{app.model.arch} ({app.model.n_layer}L), d={task.d}, "
                                f"n={app.data.n}, {result.steps} steps")
    if logger is not None:
        logger.log_metrics({"eval/test_risk": test_risk, "eval/ridge_risk": ridge_risk,
                            "eval/gen_gap": summary["gen_gap"]})
        logger.update_wandb_summary({k: v for k, v in summary.items() if k != "per_position"})
        logger.log_image("positions", plot)
    log.info("test risk %.4f (ridge %.4f, zero %.4f); written to %s", test_risk, ridge_risk,
             zero_risk, run_dir)
    log_gate(summary, data_n=app.data.n)
    return summary


def write_calibration(calibration: dict, run_dir: Path, title: str = "") -> None:
    """calibration.md (a table per position) and calibration.png in the run directory."""
    text = (f"# Calibration of the Gaussian head on fresh prompts\n\n"
            f"Pooled predicted variance / realised squared error: "
            f"{calibration['head_var_ratio']:.3f}; mean squared error / predicted variance: "
            f"{calibration['head_z2']:.3f} (1 and 1 when calibrated).\n\n"
            + calibration_table(calibration))
    atomic_write_bytes(run_dir / "calibration.md", text.encode())
    plot_calibration({"model": calibration}, run_dir / "calibration.png", title=title)


def log_gate(summary: dict, data_n: int | None) -> None:
    """One line on whether the learner reached ridge; a warning when it is no learner at all."""
    closed, test, zero = summary["gap_closed"], summary["test_risk"], summary["zero_risk"]
    if summary["reached_ridge"]:
        log.info("reached ridge: closed %.1f%% of the zero-to-ridge gap (test %.4f, ridge "
                 "%.4f)", 100 * closed, test, summary["ridge_risk"])
        return
    why = ""
    if data_n is not None and summary["train_risk"] is not None \
            and summary["train_risk"] < summary["ridge_risk"] < test:
        why = (f"; train risk {summary['train_risk']:.4f} is below ridge: it memorised its "
               f"{data_n} prompts (raise data.n, or train on fresh prompts with data.n=null)")
    if test > zero:
        log.warning("the model is WORSE than the zero predictor (test %.4f > zero %.4f): it has "
                    "not learned in context%s", test, zero, why)
    else:
        log.warning("did not reach ridge: closed %.1f%% of the zero-to-ridge gap, 90%% needed "
                    "(test %.4f, ridge %.4f, zero %.4f)%s", 100 * closed, test,
                    summary["ridge_risk"], zero, why)
