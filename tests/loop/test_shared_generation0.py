"""Generation 0 trained once per distinct (seed, S_0) (`loop.share_generation_0`): the same
numbers as one training per member, less work, resumable; and `Ensemble.select`."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

import icl_stl.loop.learners.transformer as learners_module
import icl_stl.training.engine as training_module
from icl_stl.config import ConfigError, EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.loop.learners import LearnerContext, TransformerLearner
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_part
from icl_stl.loop.plan import plan_generation
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.models import build_ensemble
from icl_stl.persistence import load_state
from icl_stl.probes.twins import twin_members
from icl_stl.training.engine import RuntimeOptions

D, K, N = 2, 5, 16
STEPS, CHECKPOINT_EVERY = 8, 4
# seeds [0, 1] x lambda [0, 0.5]: 4 loops, 2 distinct generation-0 trainings
MEMBERS = [MemberSpec(seed, lam, N, tag=f"seed{seed}/lam{lam}")
           for seed in (0, 1) for lam in (0.0, 0.5)]


def settings(share: bool, **loop) -> LoopSettings:
    return LoopSettings(
        TaskConfig(d=D, k=K), ModelConfig(n_layer=1, n_head=2, n_embd=16),
        TrainConfig(steps=STEPS, batch_size=16, warmup_steps=2, log_every=4,
                    checkpoint_every=CHECKPOINT_EVERY),
        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
        LoopConfig(generations=1, real_fraction=0.5, share_generation_0=share, **loop))


class ListLogger:
    """What LoopRun hands a RunLogger: the per-step and per-generation metrics."""

    def __init__(self):
        self.metrics: list[dict] = []

    def open_member_runs(self, names: list[str], configs: list[dict], settings=None) -> bool:
        return False

    def log_metrics(self, metrics: dict, members: list[dict] | None = None) -> None:
        self.metrics.append(metrics if members is None else {**metrics, "members": members})

    def log_generation(self, generation: int, members: list[dict], job=None) -> None:
        self.log_metrics({"generation": generation}, members)


def count_trainings(monkeypatch) -> list[tuple[int, int]]:
    """(generation, ensemble size) of every train_ensemble call the learner makes."""
    calls: list[tuple[int, int]] = []
    real = learners_module.train_ensemble

    def counting(model, members, *args, **kwargs):
        calls.append((kwargs["identity"]["generation"], model.n_members))
        return real(model, members, *args, **kwargs)

    monkeypatch.setattr(learners_module, "train_ensemble", counting)
    return calls


def run_loop(root: Path, share: bool, logger=None) -> dict:
    return LoopRun(settings(share), MEMBERS, root / "ck", logger=logger).run()


def models(root: Path) -> list[dict]:
    return [load_state(root / "ck" / f"gen_{g:03d}" / "model.pt") for g in (0, 1)]


def same(a, b) -> bool:
    """Equal, NaN included (a lambda = 0 loop has no real prompts: its real risks are NaN);
    repr round-trips floats, so this is bit for bit."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def assert_same_models(a: list[dict], b: list[dict]) -> None:
    for gen_a, gen_b in zip(a, b, strict=True):
        assert gen_a.keys() == gen_b.keys()
        for name in gen_a:
            assert torch.equal(gen_a[name], gen_b[name]), name


@pytest.fixture(scope="module")
def unshared(tmp_path_factory):
    root = tmp_path_factory.mktemp("unshared")
    logger = ListLogger()
    summary = run_loop(root, share=False, logger=logger)
    return summary, models(root), logger.metrics


def test_sharing_gives_the_same_numbers_with_half_the_generation_0_training(
        tmp_path, monkeypatch, unshared):
    calls = count_trainings(monkeypatch)
    logger = ListLogger()
    summary = run_loop(tmp_path, share=True, logger=logger)
    assert calls == [(0, 2), (1, 4)]  # generation 0: one member per seed; then every loop
    ref_summary, ref_models, ref_metrics = unshared
    assert same(summary["generations"], ref_summary["generations"])  # records, bit for bit
    assert summary["settings"] == ref_summary["settings"]
    assert_same_models(models(tmp_path), ref_models)
    assert same(logger.metrics, ref_metrics)  # each loop's train/loss, shared or not
    gen0 = [r for r in summary["generations"] if r["generation"] == 0]
    assert gen0[0]["train_loss"] == gen0[1]["train_loss"] != gen0[2]["train_loss"]


def test_real_risk_is_the_real_prefix_of_the_one_evaluation_pass(unshared):
    """S_i puts its real part first, so the loop reads the real risk off the training set's
    pass (`Learner.member_risks` with prefixes); it must equal a separate pass over the real
    part, and at generation 0 (S_0 is all real) the training risk itself."""
    summary, gen_models, _ = unshared
    s = settings(share=False)
    learner = TransformerLearner(context(s), MEMBERS)
    learner.load_state_dict(gen_models[1])
    task = make_task(s.task)
    reals = [real_part(s.loop, m, draw_s0(task, m, K), plan_generation(s.loop, m, 1), task,
                       K)[0] for m in MEMBERS]
    separate, _ = learner.member_risks(reals)
    gen1 = [r for r in summary["generations"] if r["generation"] == 1]
    for record, risk in zip(gen1, separate, strict=True):
        if record["real_fraction"] == 0:
            assert math.isnan(risk) and math.isnan(record["real_train_risk"])
        else:
            assert record["real_train_risk"] == pytest.approx(risk, rel=1e-5)
            assert record["real_train_risk"] != pytest.approx(record["train_risk"], rel=1e-3)
    gen0 = [r for r in summary["generations"] if r["generation"] == 0]
    assert all(r["real_train_risk"] == r["train_risk"] for r in gen0)


def test_unshared_run_trains_every_member(tmp_path, monkeypatch):
    calls = count_trainings(monkeypatch)
    learner = TransformerLearner(context(settings(share=False)), MEMBERS)
    task = make_task(TaskConfig(d=D, k=K))
    learner.fit(0, [draw_s0(task, m, K) for m in MEMBERS], None)
    assert calls == [(0, 4)]


class Killed(Exception):
    pass


def kill_at_train_step(monkeypatch, n: int) -> None:
    """The in-process stand-in for ICL_STL_FAULT=train_step:n (no SIGKILL in pytest)."""
    seen = {"steps": 0}

    def fault_point(name: str) -> None:
        if name == "train_step":
            seen["steps"] += 1
            if seen["steps"] == n:
                raise Killed(f"{name}:{n}")

    monkeypatch.setattr(training_module, "fault_point", fault_point)


@pytest.mark.parametrize("resume_shared", [True, False])
def test_killed_in_shared_generation_0_resumes_identically(tmp_path, monkeypatch, caplog,
                                                           unshared, resume_shared):
    kill_at_train_step(monkeypatch, CHECKPOINT_EVERY + 2)  # after the step-4 checkpoint
    with pytest.raises(Killed):
        run_loop(tmp_path, share=True)
    state = load_state(tmp_path / "ck" / "gen_000" / "train.pt")
    assert state["step"] == CHECKPOINT_EVERY
    assert state["identity"]["shared"] == {"members": [0, 2], "of": 4}  # it says so
    assert state["model"]["wpe"].shape[0] == 2  # the distinct members only
    monkeypatch.undo()
    # resumed with sharing on, or switched off: the checkpoint is continued as it was written
    calls = count_trainings(monkeypatch)
    caplog.set_level(logging.INFO, logger="icl_stl.training.engine")
    summary = run_loop(tmp_path, share=resume_shared)
    assert f"generation 0: resumed at step {CHECKPOINT_EVERY}" in caplog.text
    assert calls == [(0, 2), (1, 4)]
    assert same(summary["generations"], unshared[0]["generations"])
    assert_same_models(models(tmp_path), unshared[1])


def test_unshared_checkpoint_resumes_with_sharing_switched_on(tmp_path, monkeypatch, unshared):
    kill_at_train_step(monkeypatch, CHECKPOINT_EVERY + 2)
    with pytest.raises(Killed):
        run_loop(tmp_path, share=False)
    monkeypatch.undo()
    calls = count_trainings(monkeypatch)
    summary = run_loop(tmp_path, share=True)
    assert calls == [(0, 4), (1, 4)]
    assert same(summary["generations"], unshared[0]["generations"])


# ---------------------------------------------------------------------------------------------
# Which members are merged


def context(s: LoopSettings) -> LearnerContext:
    return LearnerContext(make_task(s.task), s.task.k, s.model, s.train, s.loop, s.eval,
                          RuntimeOptions())


def distinct(members: list[MemberSpec]) -> tuple[list[int], list[int]]:
    learner = TransformerLearner(context(settings(share=True)), members)
    task = make_task(TaskConfig(d=D, k=K))
    return learner.distinct(0, [draw_s0(task, m, K) for m in members])


def test_members_merge_only_when_seed_and_s0_agree():
    assert distinct(MEMBERS) == ([0, 2], [0, 0, 1, 1])
    task = make_task(TaskConfig(d=D, k=K))
    s0 = draw_s0(task, MEMBERS[0], K)
    other_seed = MemberSpec(7, 0.5, N, s0=s0)  # same S_0, other initialisation and batches
    other_n = MemberSpec(0, 0.5, N // 2)  # same seed, another S_0
    assert distinct([MEMBERS[0], other_seed, other_n, MEMBERS[1]]) == ([0, 1, 2], [0, 1, 2, 0])


@pytest.mark.parametrize("control", ["batch_order", "seed"])
def test_stability_twins_and_chaos_controls_are_never_merged(control):
    task = make_task(TaskConfig(d=D, k=K))
    loop = settings(share=True).loop
    members, _ = twin_members(task, K, [N], [0, 1], [3], 0.5, 0, "fresh", control, loop)
    unique, _ = distinct(members)
    assert unique == list(range(len(members)))  # base, neighbour and control: all trained


def test_identical_twins_share_generation_0():
    task = make_task(TaskConfig(d=D, k=K))
    members, _ = twin_members(task, K, [N], [0], [3], 0.5, 0, "identical")
    assert distinct(members) == ([0], [0, 0])


# ---------------------------------------------------------------------------------------------
# Ensemble.select


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_select_copies_members_with_their_dropout_streams(engine):
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.1, engine=engine)
    ens = build_ensemble(cfg, D, K, [make_generator(s, "init", 0) for s in (0, 1)])
    ens.member_rng.seed([10, 11], torch.device("cpu"))
    ens.member_rng.generators()[1].manual_seed(99)
    picked = ens.select([1, 0, 1])
    assert picked.n_members == 3 and picked.training == ens.training
    for j, i in enumerate([1, 0, 1]):
        a, b = picked.member(j).state_dict(), ens.member(i).state_dict()
        assert all(torch.equal(a[name], b[name]) for name in a)
        assert torch.equal(picked.member_rng.generators()[j].get_state(),
                           ens.member_rng.generators()[i].get_state())
    before = {name: v.clone() for name, v in ens.state_dict().items()}
    with torch.no_grad():  # copies, not views: changing them leaves the source as it was
        for p in picked.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[name], v) for name, v in ens.state_dict().items())


def test_config_rejects_a_non_bool_share_setting():
    with pytest.raises(ConfigError, match="share_generation_0"):
        LoopConfig(share_generation_0="yes").validate("loop", N, TaskConfig(d=D, k=K),
                                                      ModelConfig())


# ---------------------------------------------------------------------------------------------
# The budget of later (warm-started) generations


def test_later_generations_have_their_own_budget_and_warmup(monkeypatch):
    seen: list[tuple[int, int, int]] = []
    real = learners_module.train_ensemble

    def spy(model, members, task, k, cfg, *args, **kwargs):
        seen.append((kwargs["identity"]["generation"], cfg.steps, cfg.warmup_steps))
        return real(model, members, task, k, cfg, *args, **kwargs)

    monkeypatch.setattr(learners_module, "train_ensemble", spy)
    s = settings(share=True, init="warm_start", steps=3, warmup_steps=0)
    learner = TransformerLearner(context(s), MEMBERS[:1])
    s0 = [draw_s0(make_task(s.task), MEMBERS[0], K)]
    learner.fit(0, s0, None)
    learner.fit(1, s0, None)
    assert seen == [(0, STEPS, 2), (1, 3, 0)]  # generation 0 keeps train.steps, train.warmup


def test_loop_warmup_enters_the_identity_only_when_set():
    assert "warmup_steps" not in settings(share=True).identity()["loop"]  # older loops resume
    assert settings(share=True, warmup_steps=0).identity()["loop"]["warmup_steps"] == 0
    assert settings(share=True).identity() == settings(share=False).identity()
    with pytest.raises(ConfigError, match="warmup_steps"):
        LoopConfig(warmup_steps=-1).validate("loop", N, TaskConfig(d=D, k=K), ModelConfig())


def test_share_setting_does_not_rename_the_run(tmp_path):
    from conftest import compose_loop

    from icl_stl.cli.common import load_app_config, settings_hash

    def hashed(*overrides: str) -> str:
        return settings_hash(load_app_config(compose_loop(tmp_path, *overrides),
                                             needs_loop=True), "loop")

    assert hashed() == hashed("loop.share_generation_0=false")
    assert hashed() != hashed("loop.warmup_steps=0")
