"""Evaluate a finished model on fresh test prompts, beside the baselines, without training.

`icl-stl-eval` is this module behind a Hydra config: the model and task come from the
checkpoint (`icl_stl.models.stored`), and so, by default, do the evaluation settings and the
test prompts' seed, so that the numbers are the ones the run reported. A model or task setting
given on the command line is taken as a claim about the checkpoint and refused, naming both
values, when the checkpoint says otherwise; an evaluation setting (eval.*, seed) given there is
used, and a line says where it departs from the run's own.

What a checkpoint stores of its evaluation: a train run writes its eval settings beside
train.pt (`EVAL_SETTINGS_FILE`); a loop's loop.json holds its number of test prompts, and its
other evaluation settings are taken as the defaults.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import field
from pathlib import Path

from pydantic import model_validator

from icl_stl.config import ConfigError, EvalConfig, ModelConfig, RuntimeConfig, TaskConfig
from icl_stl.config.fields import Int, Str, from_container, settings
from icl_stl.data.prompts import TEST_STREAM, draw_test_prompts
from icl_stl.data.tasks import make_task
from icl_stl.models.stored import StoredModel
from icl_stl.persistence import PersistenceError, atomic_write_json, read_json
from icl_stl.persistence.identity import describe_differences
from icl_stl.runs.plots import plot_positions
from icl_stl.runs.provenance import code_provenance
from icl_stl.training.baselines import bayes_optimal_ridge_alpha
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.evaluation import (
    baseline_errors,
    bayes_excess,
    bayes_predictions,
    predict,
    stack_sets,
    summarise,
)
from icl_stl.training.gate import gap_closed, reached_ridge
from icl_stl.training.losses import squared_error

log = logging.getLogger(__name__)

RESULT_FILE = "eval.json"
PLOT_FILE = "positions.png"
EVAL_SETTINGS_FILE = "eval_settings.json"  # beside a train run's train.pt
# Settings that change how, not what, is computed: a departure from the run's goes unremarked.
HOW_NOT_WHAT = ("batch_size",)


@settings("")
class EvalRunConfig:
    """What `icl-stl-eval` reads from its Hydra config (`conf/eval.yaml`)."""

    checkpoint: Str | None = None
    member: Int(0) = 0  # which member of a loop's ensemble (a train run holds one model)
    seed: Int(0, (1 << 63) - 1) | None = None  # of the test prompts; null: the run's own seed
    # Claims about the checkpoint's settings: null (the default) takes the checkpoint's value.
    task: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    # Evaluation settings: null (the default) takes the run's own (module doc).
    eval: dict = field(default_factory=dict)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _check(self) -> EvalRunConfig:
        for name, cls in (("task", TaskConfig), ("model", ModelConfig), ("eval", EvalConfig)):
            unknown = sorted(set(getattr(self, name)) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise ConfigError(f"{name} has unknown setting(s) {unknown}; known: "
                                  f"{sorted(f.name for f in dataclasses.fields(cls))}")
        from_container(EvalConfig, self.given_eval(), "eval")  # each value given is checked
        return self

    def given_eval(self) -> dict:
        """The evaluation settings given on the command line (not null)."""
        return {k: v for k, v in self.eval.items() if v is not None}


def record_eval_settings(checkpoint_dir: Path, ev: EvalConfig) -> None:
    """Keep a train run's evaluation settings beside its checkpoint, for `icl-stl-eval`."""
    atomic_write_json(Path(checkpoint_dir) / EVAL_SETTINGS_FILE, dataclasses.asdict(ev))


def stored_eval_settings(stored: StoredModel) -> dict:
    """The evaluation settings stored with the checkpoint (those it holds; module doc)."""
    path = Path(stored.source["path"])
    try:
        if stored.source["kind"] == "loop":
            settings = read_json(path.parents[1] / "loop.json")["settings"]
            return {"n_prompts": settings["eval_prompts"]} if "eval_prompts" in settings else {}
        if (path.parent / EVAL_SETTINGS_FILE).is_file():
            return dict(read_json(path.parent / EVAL_SETTINGS_FILE))
    except (OSError, PersistenceError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"checkpoint {path}: its stored evaluation settings cannot be read "
                          f"({err}); give eval.n_prompts and the other eval settings") from None
    return {}


def eval_settings(cfg: EvalRunConfig, stored: StoredModel) -> tuple[EvalConfig, int, dict]:
    """The evaluation settings and test seed to use (each given one, else the run's own, else
    the default) and, for each given one that departs from the run's, {"run": .., "now": ..}."""
    own = {k: v for k, v in stored_eval_settings(stored).items()
           if k in {f.name for f in dataclasses.fields(EvalConfig)}}
    given = cfg.given_eval()
    ev = from_container(EvalConfig, {**own, **given}, "eval")
    departures = {f"eval.{k}": {"run": own[k], "now": v} for k, v in given.items()
                  if k in own and own[k] != v and k not in HOW_NOT_WHAT}
    seed = stored.run_seed if cfg.seed is None else cfg.seed
    if seed != stored.run_seed:
        departures["seed"] = {"run": stored.run_seed, "now": seed}
    return ev, seed, departures


def refuse_conflicting_settings(cfg: EvalRunConfig, stored: StoredModel) -> None:
    """A model or task setting given on the command line must agree with the checkpoint's."""
    claimed = {name: {k: v for k, v in getattr(cfg, name).items() if v is not None}
               for name in ("task", "model")}
    if stored.task.n_tasks is not None:
        raise ConfigError(f"checkpoint was trained on a finite task pool (task.n_tasks="
                          f"{stored.task.n_tasks}), and icl-stl-eval draws its test prompts from "
                          f"the Gaussian prior only; the loop's summary.json has the pool's risks")
    actual = {"task": dataclasses.asdict(stored.task),
              "model": dataclasses.asdict(stored.model_settings)}
    actual = {name: {k: actual[name].get(k) for k in claimed[name]} for name in claimed}
    if claimed != actual:
        raise ConfigError(f"the model and task are read from the checkpoint, and these settings "
                          f"differ from it: {describe_differences(actual, claimed)}; drop them, "
                          f"or evaluate another checkpoint")


def evaluate_stored_model(stored: StoredModel, cfg: EvalRunConfig, runtime: RuntimeOptions,
                          output_dir: Path) -> dict:
    """Per-position errors of the model and the baselines on fresh test prompts; writes
    eval.json and positions.png into `output_dir` and returns what eval.json holds."""
    task = stored.task
    ev, seed, departures = eval_settings(cfg, stored)
    if departures:
        log.warning("evaluated at settings other than the run's (%s): these are not the "
                    "numbers the run reported", "; ".join(
                        f"{k}={d['now']}, the run's {d['run']}" for k, d in departures.items()))
    test = draw_test_prompts(make_task(task), ev.n_prompts, task.k, seed)
    model = stored.model.to(runtime.device)
    xs, ys = stack_sets(test, 1)
    mean = predict(model, xs, ys, ev.batch_size, runtime)[0].cpu()  # (n_prompts, k)
    errors = squared_error(mean, test.ys.cpu(), task.d)
    bayes = bayes_predictions(task, test)
    excess, excess_se = (None, None) if bayes is None else bayes_excess(mean, bayes, task.d)
    alpha = (ev.ridge_alpha if ev.ridge_alpha is not None
             else bayes_optimal_ridge_alpha(task.noise_std, task.w_scale))
    names = sorted(set(ev.baselines) | {"ridge", "zero"})  # the gap closed needs both
    base = baseline_errors(test, names, ridge_alpha=alpha, knn_neighbours=ev.knn_neighbours)
    curves = {"model": summarise(errors),
              **{name: summarise(base[name]) for name in ev.baselines}}
    test_risk = curves["model"]["risk"]
    ridge_risk, zero_risk = base["ridge"].mean().item(), base["zero"].mean().item()
    result = {
        "checkpoint": stored.source,
        "task": dataclasses.asdict(task),
        "model": dataclasses.asdict(stored.model_settings),
        "test_prompts": {"n_prompts": ev.n_prompts, "seed": seed, "stream": TEST_STREAM,
                         "fingerprint": test.fingerprint()},
        "eval": dataclasses.asdict(ev),
        "departures_from_run": departures,
        "test_risk": test_risk,
        "ridge_risk": ridge_risk,
        "zero_risk": zero_risk,
        "excess_risk": test_risk - ridge_risk,
        "bayes_excess": excess,  # the same excess, measured directly (never negative)
        "bayes_excess_se": excess_se,
        "gap_closed": gap_closed(test_risk, ridge_risk, zero_risk),
        "reached_ridge": reached_ridge(test_risk, ridge_risk, zero_risk),
        "ridge_alpha": alpha,
        "per_position": curves,
        "code": code_provenance(),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / RESULT_FILE, result)
    plot_positions(curves, output_dir / PLOT_FILE, d=task.d, model_keys=("model",),
                   title=_title(stored))
    log.info("test risk %.4f (ridge %.4f, zero %.4f): closed %.1f%% of the zero-to-ridge gap; "
             "written to %s", test_risk, ridge_risk, zero_risk, 100 * result["gap_closed"],
             output_dir)
    return result


def _title(stored: StoredModel) -> str:
    src, ms = stored.source, stored.model_settings
    where = ("train run" if src["kind"] == "train"
             else f"generation {src['generation']}, member {src['member']}")
    return f"{ms.arch} ({ms.n_layer}L), d={stored.task.d}, {where}"
