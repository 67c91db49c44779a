"""Finite task pools (task.n_tasks) through whole tiny loops and probes: S_0, fresh real prompts,
the test sets, the dMMSE baseline and prior distances; entry points that would ignore a pool
refuse it."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import (
    TINY_LOOP,
    compose_cfg,
    compose_loop,
    compose_train,
)

from icl_stl.cli.loop import loop_from_config
from icl_stl.cli.probe import probe_config, probe_from_config
from icl_stl.cli.train import train_from_config
from icl_stl.config import ConfigError, LoopConfig, TaskConfig, parse_app_config
from icl_stl.data.prompts import TEST_STREAM
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import POOL_STREAM, dmmse, draw_pool, sample_pool_prompts
from icl_stl.data.tasks import LinearRegression
from icl_stl.loop.held_out import loop_test_sets
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_counterpart
from icl_stl.loop.plan import plan_generation
from icl_stl.loop.runner import LoopRun
from icl_stl.probes import StabilityHook
from icl_stl.training.baselines import ridge
from icl_stl.training.losses import squared_error

N, K_PAIRS, D = 16, 5, 2  # compose_loop's data.n, task.k, task.d
FAST = ["train.steps=4", "train.warmup_steps=0", "eval.n_prompts=16", "eval.batch_size=16"]


def _rows_in(rows: torch.Tensor, pool: torch.Tensor) -> list[bool]:
    """For each row of rows (m, ...), whether it is one of pool's (M, ...)."""
    return [bool((pool == r).flatten(1).all(1).any()) for r in rows]


def test_task_pool_feeds_s0_fresh_real_prompts_and_the_test_set(tmp_path):
    cfg = compose_loop(tmp_path, *FAST, "task.n_tasks=3", "loop.real_source=fresh",
                       "loop.label_mode=context")
    summary = loop_from_config(cfg, tmp_path / "out")
    task = LinearRegression(d=D)
    pool = draw_pool(task, 3, make_generator(0, POOL_STREAM))
    member = MemberSpec(seed=0, real_fraction=0.5, n=N, pool=pool)
    s0 = draw_s0(task, member, K_PAIRS)
    assert all(_rows_in(s0.params, pool.weights))
    assert summary["members"][0]["s0"] == s0.fingerprint()  # the loop's S_0 is this one
    # real counterparts of the synthetic x's (context mode's opening pairs) come from the pool
    fresh = real_counterpart(member, plan_generation(LoopConfig(), member, 1), task, K_PAIRS)
    assert all(_rows_in(fresh.params, pool.weights))
    # the dmmse baseline is scored on the pool-drawn test set, ridge and dmmse on the prior's
    test = sample_pool_prompts(task, pool, 16, K_PAIRS, make_generator(0, TEST_STREAM))
    errors = squared_error(dmmse(test.xs, test.ys, pool, 0.0), test.ys, D)
    assert summary["baselines"]["dmmse"]["risk"] == pytest.approx(errors.mean().item())
    assert set(summary["baselines_prior"]) == {"ridge", "dmmse"}
    for rec in summary["generations"]:
        assert math.isfinite(rec["test_risk_prior"]) and rec["test_risk_prior"] != rec["test_risk"]
        # the pool's test prompts have dMMSE, not ridge, for their Bayes predictor
        assert rec["bayes_excess"] is None and rec["bayes_excess_se"] is None


def test_prior_distances_place_a_learner_between_ridge_and_dmmse(tmp_path):
    """P8's measure: a learner that predicts dMMSE's means on the prior's test set is at
    distance 0 from dMMSE, at dMMSE's distance from ridge, and has dMMSE's prior risk (the same
    number `pool_baselines` reports); one that predicts ridge's, the other way round."""
    task = LinearRegression(d=D)
    sets = loop_test_sets(task, TaskConfig(d=D, k=K_PAIRS, n_tasks=3), 64, K_PAIRS, seed=1)
    xs, ys = sets.prior.xs, sets.prior.ys
    by_dmmse, by_ridge = dmmse(xs, ys, sets.pool, 0.0), ridge(xs, ys, 0.5)
    both = torch.stack([by_dmmse, by_ridge])  # (K = 2, n, k)
    near_dmmse, near_ridge = sets.prior_distances(both, noise_std=0.0, ridge_alpha=0.5)
    apart = squared_error(by_dmmse, by_ridge, D).mean().item()
    assert apart > 0.05
    assert near_dmmse["prior_distance_dmmse"] == pytest.approx(0.0, abs=1e-12)
    assert near_dmmse["prior_distance_ridge"] == pytest.approx(apart, rel=1e-5)
    assert near_ridge["prior_distance_ridge"] == pytest.approx(0.0, abs=1e-12)
    assert near_ridge["prior_distance_dmmse"] == pytest.approx(apart, rel=1e-5)
    _, prior_baselines = sets.pool_baselines(0.0, 0.5)
    assert near_dmmse["test_risk_prior"] == pytest.approx(prior_baselines["dmmse"].mean().item(),
                                                          rel=1e-5)
    assert near_ridge["test_risk_prior"] == pytest.approx(prior_baselines["ridge"].mean().item(),
                                                          rel=1e-5)
    without_pool = loop_test_sets(task, TaskConfig(d=D, k=K_PAIRS), 64, K_PAIRS, seed=1)
    assert without_pool.prior_distances(both, 0.0, 0.5) == [{}, {}]


def test_a_pooled_loop_records_its_distance_to_ridge_and_dmmse(tmp_path):
    summary = loop_from_config(compose_loop(tmp_path, *FAST, "task.n_tasks=2"), tmp_path / "out")
    for rec in summary["generations"]:
        assert rec["prior_distance_ridge"] > 0 and rec["prior_distance_dmmse"] > 0


def test_a_pool_of_one_task_makes_dmmse_exact_after_one_pair(tmp_path):
    """M = 1, noiseless: dMMSE knows w before any pair (it is the pool's only member), so its
    error is zero at every position; ridge's is not."""
    cfg = compose_loop(tmp_path, *FAST, "task.n_tasks=1", "loop.generations=0")
    base = loop_from_config(cfg, tmp_path / "out")["baselines"]
    assert base["dmmse"]["risk"] < 1e-8
    assert base["ridge"]["per_position"][0] > 0.1


def test_the_reference_learners_drift_is_measured_from_the_pools_mean(tmp_path):
    """With a pool of one task, the Gaussian-prior learner fitted on S_0 (noiseless, k >= d)
    reads that task exactly: its drift from the pool's mean is ~0, not its distance from the
    prior's mean 0 (||w||^2, about d)."""
    cfg = compose_loop(tmp_path, *FAST, "task.n_tasks=1", "loop.learner=gaussian_prior",
                       "loop.generations=0")
    (rec,) = loop_from_config(cfg, tmp_path / "out")["generations"]
    pool = draw_pool(LinearRegression(d=D), 1, make_generator(0, POOL_STREAM))
    assert pool.weights.pow(2).sum().item() > 0.1
    assert rec["prior_mean_err2"] < 1e-6


def test_without_n_tasks_nothing_changes_in_the_summary(tmp_path):
    summary = loop_from_config(compose_loop(tmp_path, *FAST), tmp_path / "out")
    assert "dmmse" not in summary["baselines"] and "baselines_prior" not in summary
    assert "n_tasks" not in summary["settings"]["task"]  # identities of older runs hold
    assert "filter" not in summary["settings"]["loop"]
    assert "filter_kept_fraction" not in summary["generations"][1]


@pytest.mark.parametrize("kind", ["in_context"])
def test_probes_that_draw_from_the_prior_refuse_a_task_pool(kind):
    app = parse_app_config({"task": {"n_tasks": 2}, "probe": {"kind": kind}}, needs_loop=True)
    with pytest.raises(ConfigError, match=f"task.n_tasks must be null for probe.kind={kind}"):
        probe_config(app)
    probe_config(parse_app_config({"probe": {"kind": kind}}, needs_loop=True))
    for pooled in ({"kind": "stability"}, {"kind": "decay", "ns": [4, 8, 16]}):
        # these draw their prompts from the pool
        probe_config(parse_app_config({"task": {"n_tasks": 2}, "probe": pooled},
                                      needs_loop=True))


def test_the_in_context_probe_refuses_a_pool_before_writing(tmp_path):
    cfg = compose_cfg("probe", *TINY_LOOP, f"run.checkpoint_root={tmp_path}/ck",
                      "probe=in_context", "task.n_tasks=3", "logger.mode=disabled")
    with pytest.raises(ConfigError, match="task.n_tasks must be null for probe.kind=in_context"):
        probe_from_config(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind,extra", [
    ("stability", []),  # the transformer twins
    ("decay", ["probe.with_stability=true", "probe.ns=[4,8,16]", "loop.learner=gaussian_prior"]),
])
def test_the_stability_twins_draw_from_the_runs_task_pool(tmp_path, monkeypatch, kind, extra):
    """S_0, every fresh replacement and every probe prompt take their task from the pool the
    loop run draws and trains on; S_0 is what draw_s0 draws with that pool; gamma is finite."""
    runs, probes = [], []
    init_run, init_hook = LoopRun.__init__, StabilityHook.__init__

    def recording_run(self, *args, **kwargs):
        init_run(self, *args, **kwargs)
        runs.append(self)

    def recording_hook(self, pairs, prompts):
        init_hook(self, pairs, prompts)
        probes.append(self)

    monkeypatch.setattr(LoopRun, "__init__", recording_run)
    monkeypatch.setattr(StabilityHook, "__init__", recording_hook)
    cfg = compose_cfg("probe", *TINY_LOOP, *FAST, f"run.checkpoint_root={tmp_path}/ck",
                      f"probe={kind}", "task.n_tasks=3", "probe.seeds=[0,1]",
                      "probe.replaced_indices=[0,3]", "probe.probe_prompts=16",
                      "logger.mode=disabled", *extra)
    result = probe_from_config(cfg, tmp_path / "out")
    (run,), (hook,) = runs, probes
    task = LinearRegression(d=D)
    pool = draw_pool(task, 3, make_generator(0, POOL_STREAM)).weights
    assert torch.equal(run.pool.weights, pool)
    assert all(_rows_in(hook.prompts.params, pool))  # where gamma is measured
    assert hook.prompts.params.unique(dim=0).shape[0] > 1  # drawn, not one task repeated
    members = run.members
    for pair in hook.pairs:
        base, twin = members[pair.base], members[pair.neighbour]
        # S_0 is what the loop itself would draw with the run's pool
        loop_s0 = draw_s0(task, dataclasses.replace(base, s0=None), K_PAIRS)
        assert torch.equal(base.s0.xs, loop_s0.xs) and torch.equal(base.s0.params, loop_s0.params)
        assert all(_rows_in(base.s0.params, pool)) and all(_rows_in(twin.s0.params, pool))
        if pair.kind == "neighbour":  # the fresh replacement: new x's, a task of the pool
            assert not torch.equal(twin.s0.xs[pair.index], base.s0.xs[pair.index])
    records = json.loads((tmp_path / "out" / "summary.json").read_text())["generations"]
    gammas = [r["gamma_max"] for r in records if r.get("twin") == "neighbour"]
    n_grid = 3 if kind == "decay" else 1
    assert len(gammas) == 2 * 2 * n_grid * 2  # seeds x replaced indices x n x generations 0, 1
    assert all(math.isfinite(g) and g > 0 for g in gammas)
    if kind == "stability":
        assert result["n_tasks"] == 3


def test_train_refuses_a_task_pool_it_would_ignore(tmp_path):
    with pytest.raises(ConfigError, match="task.n_tasks must be null for icl-stl-train"):
        train_from_config(compose_train(tmp_path, "task.n_tasks=3"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
