"""Bad input fails early and clearly: the error names the setting (or path) and its value, and
nothing is trained or written first."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import BIN, TINY_TRAIN, TRAIN_CLI, check_ok, compose_cfg, compose_train, run_cli
from hydra.errors import MissingConfigException

from icl_stl import config as C
from icl_stl.cli.train import train_from_config
from icl_stl.config import ConfigError, ModelConfig, parse_app_config
from icl_stl.models import build_ensemble
from icl_stl.models.model import build_model
from icl_stl.persistence import CorruptCheckpointError


def _expect_config_error(tmp_path: Path, override: str, *fragments: str) -> None:
    """train_from_config with `override` raises ConfigError naming `fragments`, writing nothing."""
    cfg = compose_train(tmp_path, override)
    with pytest.raises(ConfigError) as info:
        train_from_config(cfg, tmp_path / "out")
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert not (tmp_path / "ck").exists(), "a checkpoint directory was created"
    assert not (tmp_path / "out").exists(), "an output directory was created"


@pytest.mark.parametrize("override,field,value", [
    ("task.d=0", "task.d", "0"),
    ("task.d=-1", "task.d", "-1"),
    ("task.k=0", "task.k", "0"),
    ("task.k=-4", "task.k", "-4"),
    ("data.n=0", "data.n", "0"),
    ("data.n=-3", "data.n", "-3"),
    ("train.batch_size=0", "train.batch_size", "0"),
    ("train.batch_size=-8", "train.batch_size", "-8"),
    ("train.steps=0", "train.steps", "0"),
    ("train.steps=-1", "train.steps", "-1"),
    ("task.noise_std=-0.1", "task.noise_std", "-0.1"),
    ("task.w_scale=0", "task.w_scale", "0"),
    ("train.lr=-1e-3", "train.lr", "-0.001"),
    ("task.name=quadratic_regression", "task.name", "quadratic_regression"),
    ("model.arch=transformer_xl", "model.arch", "transformer_xl"),
    ("task.d=five", "task.d", "five"),
    ("+task.dimension=3", "task", "dimension"),
])
def test_bad_value_is_refused_before_anything_is_written(tmp_path, override, field, value):
    _expect_config_error(tmp_path, override, field, value)


@pytest.mark.parametrize("group", ["task", "model"])
def test_unknown_config_option_names_group_and_option(group):
    with pytest.raises(MissingConfigException) as info:
        compose_cfg("train", f"{group}=no_such_option")
    assert group in str(info.value) and "no_such_option" in str(info.value)


def test_cli_bad_value_exits_2_with_one_clear_line(tmp_path):
    proc = run_cli(TRAIN_CLI, *TINY_TRAIN, "task.d=-1", f"run.checkpoint_root={tmp_path}/ck",
                   f"hydra.run.dir={tmp_path}/out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "task.d" in proc.stderr and "-1" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("script,args,line", [
    ("train", ["task.d=-1"], "task.d must be an integer in [1, 4096], got -1"),
    ("loop", ["loop.real_fraction=1.5"], "loop.real_fraction must be a number <= 1.0, got 1.5"),
    ("loop", ["loop.synthetic=accumulate_s0", "loop.real_fraction=0.5"],
     "loop.real_fraction must be 0 with loop.synthetic=accumulate_s0 (its real data is all of "
     "S_0), got 0.5"),
    ("loop", ["loop.real_fraction=0", "loop.real_weight=0.5"],
     "loop.real_weight must be 0 or null when a generation has no real prompt"),
    ("probe", ["probe=stability", "probe.replaced_indices=[0,999]"], "probe.replaced_indices"),
    ("probe", ["probe=stability", "members.labellers=[model,oracle]"],
     "members.labellers must be null for icl-stl-probe"),
    ("eval", ["checkpoint=/no/such/run"], "checkpoint must be an existing file or directory"),
])
def test_cli_bad_value_is_refused_before_hydra_writes_anything(tmp_path, script, args, line):
    """The preflight runs the app's own settings check, so no run directory or train.log is
    left behind by a value the task would refuse."""
    base = ["seed=0"] if script == "eval" else [*TINY_TRAIN, f"run.checkpoint_root={tmp_path}/ck"]
    proc = run_cli(str(BIN / f"icl-stl-{script}"), *base, *args, f"hydra.run.dir={tmp_path}/out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    stderr = proc.stderr.strip()
    assert "\n" not in stderr and line in stderr, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script,args,named", [
    ("train", ["train.stepz=10"], "train.stepz=10: there is no setting train.stepz; did you "
                                  "mean train.steps?"),
    ("loop", ["-m", "seed=0,1", "loop.real_fractoin=0,0.5"],
     "loop.real_fractoin=0,0.5: there is no setting loop.real_fractoin; did you mean "
     "loop.real_fraction?"),
    ("probe", ["probe=stabilty"], "probe=stabilty: probe has no option 'stabilty'; did you mean "
                                  "stability? (options: decay, dose_response, in_context, stability)"),
    ("eval", ["checkpont=x.pt"], "checkpont=x.pt: there is no setting checkpont; did you mean "
                                 "checkpoint?"),
])
def test_cli_mistyped_key_is_one_line_exit_2_before_anything_is_written(tmp_path, script, args,
                                                                        named):
    """Checked before Hydra starts (icl_stl.cli.preflight): no run directory, log or
    checkpoint, and one line instead of Hydra's six."""
    base = ["seed=0"] if script == "eval" else [*TINY_TRAIN, f"run.checkpoint_root={tmp_path}/ck"]
    proc = run_cli(str(BIN / f"icl-stl-{script}"), *args, *base, f"hydra.run.dir={tmp_path}/out",
                   f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == f"error: {named}", proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting,under_file,multirun", [
    ("run.checkpoint_root", False, False),
    ("run.checkpoint_root", True, False),
    ("hydra.run.dir", False, False),
    ("hydra.run.dir", True, False),
    ("hydra.sweep.dir", True, True),
])
def test_cli_directory_that_cannot_be_made_is_one_line_exit_2(tmp_path, setting, under_file,
                                                              multirun):
    """/proc/nope, or a path under a file: refused naming the setting and the path before
    anything (run directory, train.log, wandb, checkpoints) is created."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad = f"{blocker}/sub" if under_file else "/proc/nope"
    places = {"run.checkpoint_root": f"{tmp_path}/ck", "hydra.run.dir": f"{tmp_path}/out",
              "hydra.sweep.dir": f"{tmp_path}/sweep", setting: bad}
    proc = run_cli(TRAIN_CLI, *(["-m", "seed=0,1"] if multirun else []), *TINY_TRAIN,
                   *(f"{k}={v}" for k, v in places.items()))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip()
    assert line.startswith(f"error: {setting}={bad}: ") and "\n" not in line, line
    assert (f"{blocker} is a file, not a directory" if under_file else
            "cannot create a directory in /proc") in line, line
    assert list(tmp_path.iterdir()) == [blocker]


def _corrupt_checkpoint(tmp_path: Path) -> Path:
    """Train once in process, then write garbage over both checkpoint files; return the dir."""
    train_from_config(compose_train(tmp_path, "train.steps=10"), tmp_path / "first")
    (run_dir,) = (tmp_path / "ck").iterdir()
    for name in ("train.pt", "train.prev.pt"):
        (run_dir / name).write_bytes(b"this is not a checkpoint" * 10)
    return run_dir


def test_corrupt_checkpoint_is_refused_naming_its_path(tmp_path):
    run_dir = _corrupt_checkpoint(tmp_path)
    with pytest.raises(CorruptCheckpointError) as info:
        train_from_config(compose_train(tmp_path, "train.steps=10"), tmp_path / "second")
    assert str(run_dir / "train.pt") in str(info.value)
    assert not (tmp_path / "second" / "summary.json").exists()


def test_cli_corrupt_checkpoint_exits_2_naming_the_path(tmp_path):
    run_dir = _corrupt_checkpoint(tmp_path)
    proc = run_cli(TRAIN_CLI, *TINY_TRAIN, "train.steps=10", f"run.checkpoint_root={tmp_path}/ck",
                   f"hydra.run.dir={tmp_path}/second")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(run_dir / "train.pt") in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("change,named", [
    ("seed=3", ["data: ", "seed: 0 in the checkpoint, 3 now"]),  # the seed draws S_0 too
    ("train.lr=0.01", ["train.lr: 0.001 in the checkpoint, 0.01 now"]),
    ("model.n_embd=24", ["model.n_embd: 64 in the checkpoint, 24 now"])])
def test_checkpoint_of_other_settings_is_refused_naming_the_key(tmp_path, change, named):
    """An interrupted run started again with another setting is refused before anything loads
    (a changed width would otherwise fail deep inside load_state_dict)."""
    train_from_config(compose_train(tmp_path, "train.steps=10", "run.name=fixed"),
                      tmp_path / "first")
    with pytest.raises(ConfigError) as info:
        train_from_config(compose_train(tmp_path, "train.steps=10", "run.name=fixed", change),
                          tmp_path / "second")
    for text in named:
        assert text in str(info.value), str(info.value)


def test_cli_resume_with_another_setting_exits_2_naming_it(tmp_path):
    args = [*TINY_TRAIN, "train.steps=10", "run.name=fixed", f"run.checkpoint_root={tmp_path}/ck"]
    check_ok(run_cli(TRAIN_CLI, *args, f"hydra.run.dir={tmp_path}/first"))
    proc = run_cli(TRAIN_CLI, *args, "train.lr=0.01", f"hydra.run.dir={tmp_path}/second")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "train.lr: 0.001 in the checkpoint, 0.01 now" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_resume_false_refuses_an_existing_checkpoint(tmp_path):
    train_from_config(compose_train(tmp_path, "train.steps=10"), tmp_path / "first")
    with pytest.raises(ConfigError, match="run.resume"):
        train_from_config(compose_train(tmp_path, "train.steps=10", "run.resume=false"),
                          tmp_path / "second")


# ---------------------------------------------------------------------------------------------
# Prompts longer than the model was built for


@pytest.mark.parametrize("arch", ["gpt2", "lstm", "mlp"])
def test_prompt_longer_than_model_positions_is_a_clear_error(arch):
    cfg = ModelConfig(arch=arch, n_layer=2, n_head=2, n_embd=16,
                      engine="native" if arch == "gpt2" else "reference")
    model = build_model(cfg, 3, 5, torch.Generator().manual_seed(0))
    xs, ys = torch.randn(2, 8, 3), torch.randn(2, 8)
    with pytest.raises(ValueError) as info:  # not a deep IndexError, nor silent truncation
        model(xs, ys)
    assert "8" in str(info.value) and "5" in str(info.value), str(info.value)


def test_native_ensemble_prompt_longer_than_positions_is_a_clear_error():
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=16)
    ens = build_ensemble(cfg, 3, 5, [torch.Generator().manual_seed(0)])
    with pytest.raises(ValueError) as info:
        ens(torch.randn(1, 2, 8, 3), torch.randn(1, 2, 8))
    assert "8" in str(info.value) and "5" in str(info.value), str(info.value)


# ---------------------------------------------------------------------------------------------
# parse_app_config on plain dicts


@pytest.mark.parametrize("data,field", [
    ({"task": {"d": 0}}, "task.d"),
    ({"task": {"k": True}}, "task.k"),
    ({"task": {"dd": 3}}, "task"),
    ({"tsak": {"d": 3}}, "tsak"),
    ({"task": "linear"}, "task"),
    ({"task": {"name": "sparse_linear_regression", "d": 2, "sparsity": 3}}, "task.sparsity"),
    ({"task": {"name": "noisy_linear_regression", "noise_std": 0.0}}, "task.noise_std"),
    ({"model": {"n_embd": 30, "n_head": 4}}, "model.n_embd"),
    ({"model": {"attn_implementation": "flash"}}, "model.attn_implementation"),
    ({"model": {"dropout": 1.5}}, "model.dropout"),
    ({"train": {"optimizer": "sgd"}}, "train.optimizer"),
    ({"train": {"lr": float("nan")}}, "train.lr"),
    ({"train": {"curriculum": {"enabled": True, "k_start": 50}}}, "train.curriculum.k_start"),
    ({"eval": {"baselines": ["ridge", "oracle"]}}, "eval.baselines[1]"),
    ({"model": {"engine": "jax"}}, "model.engine"),
    ({"model": {"arch": "lstm"}}, "model.engine"),  # native is GPT-2 only: no silent fallback
    ({"model": {"arch": "mlp", "engine": "native"}}, "model.engine"),
    ({"model": {"init": "xavier"}}, "model.init"),
    ({"runtime": {"engine": "native"}}, "runtime"),  # moved to model.engine
    ({"run": {"name": "a/b"}}, "run.name"),
    ({"members": {"seeds": []}}, "members.seeds"),
    ({"members": {"real_fractions": [0.5, 1.5]}}, "members.real_fractions[1]"),
    ({"seed": -1}, "seed"),
])
def test_parse_app_config_names_the_bad_field(data, field):
    with pytest.raises(ConfigError) as info:
        parse_app_config(data)
    assert field in str(info.value), str(info.value)


def test_parse_app_config_accepts_defaults_and_ints_for_floats():
    app = parse_app_config({"task": {"d": 3, "noise_std": 0}, "train": {"lr": 1}})
    assert app.task.d == 3 and isinstance(app.task.noise_std, float) and app.train.lr == 1.0
    assert app.loop is None and parse_app_config({}, needs_loop=True).loop is not None
    assert dataclasses.asdict(parse_app_config({}))["model"]["arch"] == "gpt2"


def test_a_whole_float_is_accepted_where_an_integer_is_expected():
    """`train.steps=1e3` is what a user writes for 1000 (YAML and Hydra read it as a float)."""
    app = parse_app_config({"train": {"steps": 1e3, "warmup_steps": 10}})
    assert app.train.steps == 1000 and isinstance(app.train.steps, int)
    with pytest.raises(ConfigError, match=r"train\.steps must be of type int, got 1000\.5"):
        parse_app_config({"train": {"steps": 1000.5}})


def test_warmup_longer_than_training_is_said_not_silently_accepted(caplog):
    parse_app_config({"train": {"steps": 50, "warmup_steps": 100}})
    assert "train.warmup_steps=100 exceeds train.steps=50" in caplog.text


def test_a_sweep_preset_without_multirun_is_refused(tmp_path):
    """experiment=modes defines an 8-point grid: without -m Hydra would run one point silently."""
    from conftest import LOOP_CLI

    proc = run_cli(LOOP_CLI, "experiment=modes", f"hydra.run.dir={tmp_path}/out",
                   f"run.checkpoint_root={tmp_path}/ck")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "run it with -m" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "ck").exists()


def test_the_reference_learner_needs_k_at_least_d():
    with pytest.raises(ConfigError, match=r"task\.k must be >= task\.d=5"):
        parse_app_config({"task": {"d": 5, "k": 3}, "data": {"n": 8},
                          "loop": {"learner": "gaussian_prior"}}, needs_loop=True)


# ---------------------------------------------------------------------------------------------
# The Python API checks as the command line does: on construction, in the same words


@pytest.mark.parametrize("build, message", [
    (lambda: C.TaskConfig(d=-1), "task.d must be an integer in [1, 4096], got -1"),
    (lambda: C.TaskConfig(d="5"), "task.d must be of type int, got '5'"),
    (lambda: C.TaskConfig(k=True), "task.k must be of type int, got True"),
    (lambda: C.TaskConfig(name="sparse_linear_regression", d=2, sparsity=3),
     "task.sparsity must be an integer in [1, 2], got 3"),
    (lambda: C.TaskConfig(dd=3), "task has unknown setting(s) ['dd']; known: ['d', 'hidden', "
                                 "'k', 'n_tasks', 'name', 'noise_std', 'sparsity', 'w_scale']"),
    (lambda: C.ModelConfig(n_embd=30), "model.n_embd must be a multiple of model.n_head=4, got 30"),
    (lambda: C.ModelConfig(arch="transformer_xl"),
     "model.arch must be one of ['gpt2', 'lstm', 'mlp'], got 'transformer_xl'"),
    (lambda: C.TrainConfig(lr=0), "train.lr must be a number > 0.0, got 0"),
    (lambda: C.TrainConfig(lr=float("nan")), "train.lr must be a finite number, got nan"),
    (lambda: C.TrainConfig(steps=1000.5), "train.steps must be of type int, got 1000.5"),
    (lambda: C.CurriculumConfig(k_step=0), "train.curriculum.k_step must be an integer >= 1, got 0"),
    (lambda: C.DataConfig(n=0), "data.n must be an integer in [1, 67108864], got 0"),
    (lambda: C.EvalConfig(baselines=["ridge", "oracle"]), "eval.baselines[1] must be one of "
     "['least_squares', 'ridge', 'averaging', 'knn', 'zero'], got 'oracle'"),
    (lambda: C.RuntimeConfig(bf16="yes"), "runtime.bf16 must be of type bool or null, got 'yes'"),
    (lambda: C.LoggerConfig(project=""), "logger.project must be a non-empty string, got ''"),
    (lambda: C.LoopConfig(real_fraction=1.5), "loop.real_fraction must be a number <= 1.0, got 1.5"),
    (lambda: C.RunConfig(name="a/b"), "run.name must be a plain non-empty name without '/', "
                                      "got 'a/b'"),
    (lambda: C.MembersConfig(seeds=[]), "members.seeds must be a non-empty list or null, got []"),
    (lambda: C.ProbeConfig(seeds=[1, 1]),
     "probe.seeds must be a list without repeated values, got [1, 1]"),
    (lambda: C.AppConfig(seed=-1), "seed must be an integer in [0, 9223372036854775807], got -1"),
    (lambda: C.AppConfig(task={"d": 0}), "task.d must be an integer in [1, 4096], got 0"),
    (lambda: C.AppConfig(task=C.TaskConfig(k=6), loop=C.LoopConfig(label_mode="context",
                                                                   context_pairs=6)),
     "loop.context_pairs must be < task.k=6, got 6"),
    (lambda: dataclasses.replace(C.TrainConfig(), steps=0),
     "train.steps must be an integer >= 1, got 0"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_python_api_refuses_bad_settings_on_construction(build, message):
    """`TaskConfig(d=-1)` is refused as `task.d=-1` is on the command line: one line, the full
    dotted path and the value (not pydantic's multi-line ValidationError)."""
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value) == message


def test_python_api_reads_numbers_as_the_parser_does():
    task = C.TaskConfig(d=3.0, w_scale=2)  # a whole float is that integer; an int is a number
    assert task.d == 3 and type(task.d) is int and task.w_scale == 2.0 and type(task.w_scale) is float
    assert parse_app_config({"task": {"d": 3.0, "w_scale": 2}}).task == task
    # members.real_fractions stays as written: run names hash it ([0, 0.5, 1] names results)
    assert C.MembersConfig(real_fractions=[0, 0.5, 1]).real_fractions == [0, 0.5, 1]


def _interrupt_after(args: list[str], log: Path, marker: str) -> tuple[int, list[str]]:
    """Start a console script, send SIGINT once `marker` shows in its log; (exit, stderr)."""
    import os
    import signal
    import subprocess
    import time

    from conftest import REPO

    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and marker in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr.strip().splitlines()


def test_ctrl_c_saves_a_checkpoint_says_one_line_and_the_same_command_resumes(tmp_path):
    """SIGINT mid-training: the step in flight finishes, the state is saved, one line says
    where, exit 130; the same command started again resumes from that step."""
    from icl_stl.persistence import CheckpointSlot

    def command(out: str) -> list[str]:
        return [TRAIN_CLI, *TINY_TRAIN, "train.steps=100000", "train.log_every=10",
                "run.name=interrupted", f"run.checkpoint_root={tmp_path}/ck",
                f"hydra.run.dir={tmp_path}/{out}"]

    code, lines = _interrupt_after(command("first"), tmp_path / "first" / "train.log",
                                   "step 20/")
    assert code == 130 and len(lines) == 1, lines
    assert lines[0].startswith("interrupted: train: SIGINT at step ") and "saved to" in lines[0]
    step = int(lines[0].split("at step ")[1].split()[0])
    state, _ = CheckpointSlot(tmp_path / "ck" / "interrupted", "train").load_latest()
    assert state["step"] == step >= 20
    code, lines = _interrupt_after(command("second"), tmp_path / "second" / "train.log",
                                   f"resumed at step {step}")
    assert code == 130 and f"resumed at step {step}" in (tmp_path / "second" /
                                                         "train.log").read_text()
