"""icl-stl-eval: a finished checkpoint evaluated on fresh prompts gives the numbers
icl_stl.training.evaluation gives for the same model and prompts, and bad input stops with one line."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import (
    BIN,
    REPO,
    check_ok,
    compose_cfg,
    compose_loop,
    compose_train,
    read_summary,
    run_cli,
)

from icl_stl.cli.common import load_app_config
from icl_stl.cli.eval import eval_from_config
from icl_stl.cli.loop import loop_from_config
from icl_stl.cli.train import train_from_config
from icl_stl.config import ConfigError, EvalConfig, ModelConfig, TaskConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.models import build_ensemble
from icl_stl.persistence import load_state, save_state
from icl_stl.runs.evaluate import EVAL_SETTINGS_FILE
from icl_stl.training.baselines import bayes_optimal_ridge_alpha
from icl_stl.training.evaluation import baseline_errors, model_errors, summarise
from icl_stl.training.gate import gap_closed

EVAL_CLI = str(BIN / "icl-stl-eval")


@pytest.fixture(scope="module")
def train_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny trained model: (its run directory, its checkpoint)."""
    root = tmp_path_factory.mktemp("eval_train")
    train_from_config(compose_train(root, "run.name=tiny"), root / "run")
    return root / "run", root / "ck" / "tiny" / "train.pt"


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-generation loop of two members (lambda 0 and 1): (run directory, checkpoint dir)."""
    root = tmp_path_factory.mktemp("eval_loop")
    loop_from_config(compose_loop(root, "run.name=tinyloop", "members.real_fractions=[0,1]"),
                     root / "run")
    return root / "run", root / "ck" / "tinyloop"


def evaluate(out: Path, *overrides: str) -> dict:
    """eval_from_config with `overrides`; returns eval.json as written."""
    eval_from_config(compose_cfg("eval", *overrides), out)
    return json.loads((out / "eval.json").read_text())


def test_eval_gives_what_icl_stl_evaluation_gives_on_the_same_prompts(train_run, tmp_path):
    _, checkpoint = train_run
    result = evaluate(tmp_path / "out", f"checkpoint={checkpoint}", "seed=7",
                      "eval.n_prompts=96", "eval.batch_size=32", "model.n_layer=3")
    # The same model and prompts, built here from the train config rather than the checkpoint.
    app = load_app_config(compose_train(tmp_path))
    model = build_ensemble(app.model, app.task.d, app.task.k, [make_generator(0, "x")])
    model.load_state_dict(load_state(checkpoint)["model"])
    prompts = sample_prompts(make_task(app.task), 96, app.task.k, make_generator(7, "test"))
    expected = summarise(model_errors(model, prompts, 32)[0])
    assert result["per_position"]["model"] == expected
    assert len(expected["per_position"]) == app.task.k
    alpha = bayes_optimal_ridge_alpha(app.task.noise_std, app.task.w_scale)
    baselines = baseline_errors(prompts, app.eval.baselines, ridge_alpha=alpha,
                                knn_neighbours=app.eval.knn_neighbours)
    assert sorted(result["per_position"]) == sorted(["model", *app.eval.baselines])
    for name, errors in baselines.items():
        assert result["per_position"][name] == summarise(errors), name
    ridge, zero = baselines["ridge"].mean().item(), baselines["zero"].mean().item()
    assert result["ridge_risk"] == ridge and result["zero_risk"] == zero
    assert result["gap_closed"] == gap_closed(expected["risk"], ridge, zero)
    assert result["test_prompts"] == {"n_prompts": 96, "seed": 7, "stream": "test",
                                      "fingerprint": prompts.fingerprint()}
    assert result["checkpoint"]["kind"] == "train"
    assert (tmp_path / "out" / "positions.png").read_bytes()[:4] == b"\x89PNG"


def test_the_run_own_settings_reproduce_the_numbers_the_train_run_reported(train_run, tmp_path,
                                                                          caplog):
    """Nothing but the checkpoint is given: its run's seed and eval settings (64 test prompts,
    not the default 1,280) give the numbers its summary holds, and the log says so to a tenth."""
    run_dir, checkpoint = train_run
    summary = read_summary(run_dir)
    with caplog.at_level(logging.INFO, logger="icl_stl"):
        result = evaluate(tmp_path / "out", f"checkpoint={checkpoint.parent}")  # a directory too
    assert result["test_prompts"]["seed"] == 0 and result["test_prompts"]["n_prompts"] == 64
    assert result["eval"]["batch_size"] == 64 and result["departures_from_run"] == {}
    closed = f"closed {100 * result['gap_closed']:.1f}% of the zero-to-ridge gap"
    assert closed in caplog.text and "settings other than the run's" not in caplog.text
    assert result["per_position"]["model"]["per_position"] == pytest.approx(
        summary["per_position"]["model"]["per_position"], rel=1e-6)
    assert result["test_risk"] == pytest.approx(summary["test_risk"], rel=1e-6)
    assert result["ridge_risk"] == summary["ridge_risk"]
    assert result["gap_closed"] == pytest.approx(summary["gap_closed"], rel=1e-5)
    assert result["bayes_excess"] == pytest.approx(summary["bayes_excess"], rel=1e-5)
    assert result["bayes_excess_se"] == pytest.approx(summary["bayes_excess_se"], rel=1e-5)
    assert 0 < result["bayes_excess"] and 0 < result["bayes_excess_se"]


def test_a_loop_member_is_evaluated_as_the_loop_recorded_it(loop_run, tmp_path):
    run_dir, checkpoint_dir = loop_run
    records = {(r["generation"], r["member"]): r for r in read_summary(run_dir)["generations"]}
    # The two members differ at generation 1, so picking the wrong one would be seen.
    assert (records[1, 0]["test_risk_per_position"]
            != records[1, 1]["test_risk_per_position"])
    for member in (0, 1):
        result = evaluate(tmp_path / f"m{member}", f"checkpoint={checkpoint_dir}/gen_001/model.pt",
                          f"member={member}")  # the loop's 64 test prompts: from loop.json
        assert result["per_position"]["model"]["per_position"] == pytest.approx(
            records[1, member]["test_risk_per_position"], rel=1e-6)
        assert result["checkpoint"]["generation"] == 1
        assert result["bayes_excess"] == pytest.approx(records[1, member]["bayes_excess"],
                                                       rel=1e-5)
        assert result["checkpoint"]["member_record"]["real_fraction"] == member


def test_a_setting_given_departs_from_the_run_and_says_so(train_run, loop_run, tmp_path, caplog):
    _, checkpoint = train_run
    with caplog.at_level(logging.WARNING, logger="icl_stl"):
        result = evaluate(tmp_path / "out", f"checkpoint={checkpoint}", "eval.n_prompts=96",
                          "seed=7", "eval.batch_size=32")
    assert result["test_prompts"]["n_prompts"] == 96 and result["eval"]["batch_size"] == 32
    assert result["departures_from_run"] == {"eval.n_prompts": {"run": 64, "now": 96},
                                             "seed": {"run": 0, "now": 7}}  # batch: how, not what
    assert "eval.n_prompts=96, the run's 64; seed=7, the run's 0" in caplog.text
    loop = evaluate(tmp_path / "loop", f"checkpoint={loop_run[1]}/gen_000/model.pt",
                    "eval.n_prompts=32")
    assert loop["departures_from_run"] == {"eval.n_prompts": {"run": 64, "now": 32}}


def test_a_train_run_that_kept_no_eval_settings_takes_the_defaults(train_run, tmp_path):
    """A checkpoint written before its run kept them: conf/eval/default.yaml's settings."""
    (tmp_path / "old").mkdir()
    shutil.copy(train_run[1], tmp_path / "old" / "train.pt")
    result = evaluate(tmp_path / "out", f"checkpoint={tmp_path / 'old'}")
    assert result["test_prompts"]["n_prompts"] == EvalConfig().n_prompts == 1280
    assert result["departures_from_run"] == {}


def _unfinished_copy(checkpoint: Path, where: Path) -> Path:
    """A copy of a train run's state rewound to look stopped at step 5."""
    state = load_state(checkpoint)
    state["step"] = 5
    save_state(where / "train.pt", state)
    return where / "train.pt"


@pytest.mark.parametrize("overrides,fragments", [
    (["checkpoint=/no/such/dir/train.pt"], ["checkpoint", "'/no/such/dir/train.pt'"]),
    ([], ["checkpoint", "got None"]),
    (["CK", "member=1"], ["member must be an integer in [0, 0]", "got 1"]),
    (["CK", "member=-1"], ["member", "got -1"]),
    (["CK", "model.n_layer=5"], ["model.n_layer: 3 in the checkpoint, 5 now"]),
    (["CK", "task.d=3", "model.n_embd=64"], ["task.d: 2 in the checkpoint, 3 now"]),
    (["CK", "model=small"], ["model.n_layer: 3 in the checkpoint, 6 now",
                             "model.n_embd: 64 in the checkpoint, 128 now"]),
    (["CK", "+model.width=3"], ["model has unknown setting(s) ['width']"]),
    (["CK", "eval.n_prompts=0"], ["eval.n_prompts must be", "got 0"]),
    (["CK", "+eval.prompts=3"], ["eval has unknown setting(s) ['prompts']"]),
    (["UNFINISHED"], ["step 5 of train.steps=30"]),
    (["CORRUPT"], ["stored evaluation settings cannot be read", "eval_settings.json"]),
    (["LOOP_DIR"], ["choose one", "gen_000/model.pt"]),
    (["LOOP_OUT"], ["choose one", "tinyloop/gen_000/model.pt"]),
    (["TRAIN_OUT"], ["train run's output", "tiny/train.pt"]),
    (["LOOP_GEN", "member=2"], ["member must be an integer in [0, 1]", "got 2"]),
])
def test_bad_input_is_refused_naming_it_before_anything_is_written(train_run, loop_run, tmp_path,
                                                                   overrides, fragments):
    places = {"CK": f"checkpoint={train_run[1]}",
              "LOOP_DIR": f"checkpoint={loop_run[1]}",
              "LOOP_GEN": f"checkpoint={loop_run[1]}/gen_001/model.pt",
              "LOOP_OUT": f"checkpoint={loop_run[0]}", "TRAIN_OUT": f"checkpoint={train_run[0]}"}
    if "UNFINISHED" in overrides:
        places["UNFINISHED"] = f"checkpoint={_unfinished_copy(train_run[1], tmp_path)}"
    if "CORRUPT" in overrides:
        (tmp_path / "ck").mkdir()
        shutil.copy(train_run[1], tmp_path / "ck" / "train.pt")
        (tmp_path / "ck" / EVAL_SETTINGS_FILE).write_text("{")
        places["CORRUPT"] = f"checkpoint={tmp_path / 'ck'}"
    overrides = [places.get(o, o) for o in overrides]
    with pytest.raises(ConfigError) as info:
        eval_from_config(compose_cfg("eval", *overrides), tmp_path / "out")
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists(), "an output directory was created"


def test_the_config_lists_every_task_model_and_eval_setting_as_null():
    """Every model and task setting can be claimed on the command line (and so checked), and
    every eval setting is the run's own unless given."""
    cfg = yaml.safe_load((REPO / "conf" / "eval.yaml").read_text())
    for name, cls in (("task", TaskConfig), ("model", ModelConfig), ("eval", EvalConfig)):
        assert list(cfg[name]) == [f.name for f in dataclasses.fields(cls)], name
        assert set(cfg[name].values()) == {None}, name


def test_cli_writes_eval_json_and_the_plot(train_run, tmp_path):
    run_dir, checkpoint = train_run
    check_ok(run_cli(EVAL_CLI, f"checkpoint={checkpoint}", f"hydra.run.dir={tmp_path}/out"))
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert result["test_risk"] == pytest.approx(read_summary(run_dir)["test_risk"], rel=1e-6)
    assert (tmp_path / "out" / "positions.png").exists()


@pytest.mark.parametrize("args,fragments", [
    (["checkpoint=/no/such/train.pt"], ["checkpoint", "/no/such/train.pt"]),
    (["CK", "member=3"], ["member", "got 3"]),
])
def test_cli_bad_input_exits_2_with_one_line(train_run, tmp_path, args, fragments):
    args = [f"checkpoint={train_run[1]}" if a == "CK" else a for a in args]
    proc = run_cli(EVAL_CLI, *args, f"hydra.run.dir={tmp_path}/out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out" / "eval.json").exists()


def test_a_checkpoint_trained_on_a_task_pool_is_refused_not_evaluated_on_the_prior():
    """Its test prompts would come from the Gaussian prior, not from the pool it learned."""
    from types import SimpleNamespace

    from icl_stl.runs.evaluate import EvalRunConfig, refuse_conflicting_settings

    pooled = SimpleNamespace(task=TaskConfig(d=2, k=6, n_tasks=8),
                             model_settings=ModelConfig())
    with pytest.raises(ConfigError, match=r"finite task pool \(task.n_tasks=8\)"):
        refuse_conflicting_settings(EvalRunConfig(), pooled)
    refuse_conflicting_settings(EvalRunConfig(), SimpleNamespace(
        task=TaskConfig(d=2, k=6), model_settings=ModelConfig()))  # the prior: accepted
