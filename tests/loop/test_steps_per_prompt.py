"""Compute that grows with the augmentation m (loop.steps_scale=per_prompt, P5 version 2): a
generation trains round(budget x |S_i| / n) steps, members whose counts differ train as one
ensemble per count and each is the loop it would be alone, the oracle arm is augmented by the
same m prompts, and bad settings are refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LOOP_CLI, TINY_LOOP, cli_args, run_cli

from icl_stl.config import ConfigError, EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.config.app import parse_app_config
from icl_stl.loop.plan import MemberSpec, generation_steps, plan_generations, train_sizes
from icl_stl.loop.runner import LoopRun, LoopSettings

D, K, N = 2, 5, 16
STEPS = 6


def settings(**loop) -> LoopSettings:
    return LoopSettings(
        TaskConfig(d=D, k=K), ModelConfig(n_layer=1, n_head=2, n_embd=16),
        TrainConfig(steps=STEPS, batch_size=16, warmup_steps=2, log_every=3,
                    checkpoint_every=2),
        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
        LoopConfig(generations=1, real_fraction=0.5, steps_scale="per_prompt", **loop))


def member(m: int, labeller: str = "model", seed: int = 0) -> MemberSpec:
    return MemberSpec(seed, 0.5, N, augment=m, labeller=labeller)


def run(root: Path, members: list[MemberSpec], **loop) -> dict:
    return LoopRun(settings(**loop), members, root / "ck").run()


def records_of(summary: dict, m: int) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "member"} for r in summary["generations"]
            if r["member"] == m]


def same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("scale, m, synthetic, expected", [
    ("fixed", 32, "replace", [100, 50, 50]),
    ("per_prompt", 0, "replace", [100, 50, 50]),
    ("per_prompt", 8, "replace", [100, 75, 75]),  # |S_i| = 16 + 8 = 1.5 n
    ("per_prompt", 32, "replace", [100, 150, 150]),  # m / n = 2: three times the budget
    ("per_prompt", 0, "accumulate", [100, 50, 75]),  # 8 real + 8, then 8 real + 16 synthetic
])
def test_steps_scale_with_the_size_of_s_i(scale, m, synthetic, expected):
    loop = LoopConfig(generations=2, real_fraction=0.5, steps=50, steps_scale=scale,
                      synthetic=synthetic)
    train = TrainConfig(steps=100)
    sizes = train_sizes(loop, plan_generations(loop, member(m)))
    steps = [generation_steps(loop, train, g, N, size) for g, size in enumerate(sizes)]
    assert steps == expected
    # passes over S_i (steps per prompt) are the same in every later generation and m
    if scale == "per_prompt":
        assert len({s / size for s, size in zip(steps[1:], sizes[1:])}) == 1


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> dict:
    """m / n in {0, 1, 2}, each beside its oracle-augmented twin, in one ensemble."""
    members = [member(m, arm) for m in (0, N, 2 * N) for arm in ("model", "oracle")]
    return run(tmp_path_factory.mktemp("grid"), members)


def test_each_member_trains_for_its_own_step_count(grid_run):
    last = {(r["augment"], r["labeller"]): r for r in grid_run["generations"]
            if r["generation"] == 1}
    for (m, _), r in last.items():
        assert r["train_size"] == N + m
        assert r["steps"] == STEPS * (N + m) // N
    first = [r["steps"] for r in grid_run["generations"] if r["generation"] == 0]
    assert set(first) == {STEPS}  # generation 0: n prompts, the budget itself


def test_a_member_of_the_grid_is_the_loop_it_would_be_alone(tmp_path, grid_run):
    alone = run(tmp_path / "alone", [member(2 * N, "oracle")])
    assert same(records_of(grid_run, 5), records_of(alone, 0))
    alone = run(tmp_path / "alone_m", [member(N, "model")])
    assert same(records_of(grid_run, 2), records_of(alone, 0))


def test_the_oracle_arm_is_augmented_by_the_same_m_prompts(grid_run):
    last = [r for r in grid_run["generations"] if r["generation"] == 1]
    by = {(r["augment"], r["labeller"]): r for r in last}
    for m in (0, N, 2 * N):
        model, oracle = by[m, "model"], by[m, "oracle"]
        assert model["n_synthetic_new"] == oracle["n_synthetic_new"] == N // 2 + m
        assert model["pair"] == oracle["pair"] and model["steps"] == oracle["steps"]
    # the arms differ where the labels do (a test that can fail)
    assert by[2 * N, "model"]["test_risk"] != by[2 * N, "oracle"]["test_risk"]


def test_a_killed_grouped_generation_resumes_to_the_same_numbers(tmp_path, grid_run,
                                                                 monkeypatch):
    import icl_stl.loop.learners.transformer as learners_module

    members = [member(m, arm) for m in (0, N, 2 * N) for arm in ("model", "oracle")]
    real, calls = learners_module.train_ensemble, []

    def dies_in_the_second_group(model, data, *args, **kwargs):
        calls.append(kwargs["identity"]["generation"])
        if kwargs["identity"]["generation"] == 1 and len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(learners_module, "train_ensemble", dies_in_the_second_group)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, members)
    assert list((tmp_path / "ck" / "gen_001").glob(f"train-{STEPS}steps*.pt"))
    monkeypatch.setattr(learners_module, "train_ensemble", real)
    again = run(tmp_path, members)
    assert same(again["generations"], grid_run["generations"])
    assert not list((tmp_path / "ck" / "gen_001").glob("train*.pt"))


@pytest.mark.parametrize("overrides, key", [
    (["loop.steps_scale=per_prompt", "loop.augment=4", "loop.learner=gaussian_prior"],
     "loop.steps_scale"),  # no step budget to scale
    (["loop.steps_scale=per_pass"], "loop.steps_scale"),
])
def test_bad_steps_scales_are_refused(overrides, key):
    data = {"data": {"n": N}, "loop": {"label_noise_std": 0.1}}
    for item in overrides:
        path, value = item.split("=")
        section, name = path.split(".")
        data[section][name] = int(value) if value.isdigit() else value
    with pytest.raises(ConfigError, match=key):
        parse_app_config(data, needs_loop=True)


def test_cli_refuses_a_scale_without_steps_with_one_line_and_exit_2(tmp_path):
    proc = run_cli(LOOP_CLI, *cli_args(TINY_LOOP, tmp_path, "out", "loop.augment=8",
                                       "loop.steps_scale=per_prompt",
                                       "loop.learner=gaussian_prior"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "loop.steps_scale" in proc.stderr and "per_prompt" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "ck").exists()
