"""The loop's extensions of issue 15: real-data schedules, finite task pools and filters on
synthetic data, wired through whole (tiny) loops; bad settings refused in one line."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import (
    LOOP_CLI,
    TINY_LOOP,
    check_ok,
    cli_args,
    compose_cfg,
    compose_loop,
    compose_train,
    run_cli,
)

from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import loop_from_config
from icl_stl.cli.probe import probe_config, probe_from_config
from icl_stl.cli.train import train_from_config
from icl_stl.config import ConfigError, LoopConfig, TaskConfig, parse_app_config
from icl_stl.config.schedules import RealSchedule
from icl_stl.data.prompts import TEST_STREAM
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import POOL_STREAM, dmmse, draw_pool, sample_pool_prompts
from icl_stl.data.tasks import LinearRegression
from icl_stl.loop.fidelity import implied_weights
from icl_stl.loop.filtering import member_verifier
from icl_stl.loop.filters import pool_size, select, variance_scores
from icl_stl.loop.held_out import loop_test_sets
from icl_stl.loop.labelling import label
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_counterpart, synthetic_inputs
from icl_stl.loop.oracle import oracle_synthesize
from icl_stl.loop.plan import plan_generation
from icl_stl.loop.runner import LoopRun
from icl_stl.loop.verifier import verifier_scores
from icl_stl.models import build_ensemble
from icl_stl.persistence import load_state
from icl_stl.probes import StabilityHook
from icl_stl.report.collect import RunResult, flatten
from icl_stl.theory.filters import keep_fraction, step_drift
from icl_stl.training.baselines import ridge
from icl_stl.training.losses import squared_error

N, K_PAIRS, D = 16, 5, 2  # compose_loop's data.n, task.k, task.d
FAST = ["train.steps=4", "train.warmup_steps=0", "eval.n_prompts=16", "eval.batch_size=16"]


def _rows_in(rows: torch.Tensor, pool: torch.Tensor) -> list[bool]:
    """For each row of rows (m, ...), whether it is one of pool's (M, ...)."""
    return [bool((pool == r).flatten(1).all(1).any()) for r in rows]


def _checkpoint(tmp_path):
    (ck,) = (tmp_path / "ck").iterdir()
    return ck


# ---------------------------------------------------------------------------------------------
# Real-data schedules


@pytest.mark.parametrize("schedule,rate", [("linear", 0.25), ("exponential", 0.7)])
def test_schedule_sets_each_generations_real_count_and_records_lambda(tmp_path, schedule, rate):
    cfg = compose_loop(tmp_path, *FAST, "loop.generations=3", "loop.rounding=floor",
                       f"loop.real_schedule={schedule}", f"loop.real_schedule_rate={rate}",
                       "loop.real_schedule_floor=0.125", "loop.real_source=fresh")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    expected = RealSchedule(schedule, 0.5, rate, 0.125).fractions(3)
    assert [r["real_fraction_i"] for r in records] == pytest.approx(expected)
    assert expected[1] == 0.5 and expected[3] < 0.5  # it does decay
    ck = _checkpoint(tmp_path)
    for rec, lam in zip(records[1:], expected[1:]):
        n_real = math.floor(lam * N)
        assert (rec["n_real"], rec["n_synthetic_new"]) == (n_real, N - n_real), rec
        stored = load_state(ck / f"gen_{rec['generation']:03d}" / "synthetic.pt")["members"][0]
        assert stored["xs"].shape[0] == N - n_real


def test_constant_schedule_records_the_constant_lambda(tmp_path):
    records = loop_from_config(compose_loop(tmp_path, *FAST, "loop.generations=2"),
                               tmp_path / "out")["generations"]
    assert [r["real_fraction_i"] for r in records] == [1.0, 0.5, 0.5]
    assert [r["n_real"] for r in records] == [N, N // 2, N // 2]


# ---------------------------------------------------------------------------------------------
# Finite task pools


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


# ---------------------------------------------------------------------------------------------
# Filters


def test_confidence_filter_keeps_the_lowest_predicted_variance(tmp_path):
    cfg = compose_loop(tmp_path, *FAST, "train.steps=10", "loop.filter=confidence",
                       "loop.filter_keep=0.4")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    app = load_app_config(cfg, needs_loop=True)
    m, pool = N // 2, pool_size(N // 2, 0.4)
    assert pool == 20
    gen1 = records[1]
    assert (gen1["n_synthetic_new"], gen1["filter_pool"]) == (m, pool)
    assert gen1["filter_kept_fraction"] == pytest.approx(m / pool)
    assert all(math.isfinite(gen1[f"filter_{k}_{w}"]) for k in ("label_w1", "w_shift2")
               for w in ("before", "after"))
    assert records[0]["filter_kept_fraction"] is None
    # relabel the whole pool with generation 0's model and rank it by predicted variance
    ck = _checkpoint(tmp_path)
    ens = build_ensemble(app.model, D, K_PAIRS, [make_generator(0, "x")])
    ens.load_state_dict(load_state(ck / "gen_000" / "model.pt"))
    member = MemberSpec(seed=0, real_fraction=0.5, n=N)
    inputs = synthetic_inputs(app.loop, member, plan_generation(app.loop, member, 1),
                              LinearRegression(d=D), K_PAIRS)
    assert inputs.xs.shape[0] == pool
    ys, var = label(ens, inputs.xs[None], inputs.context_ys[None], inputs.noise[None], None,
                    return_variance=True)
    best = select(variance_scores(var[0]), m).index
    stored = load_state(ck / "gen_001" / "synthetic.pt")
    assert torch.equal(stored["members"][0]["xs"], inputs.xs[best])
    torch.testing.assert_close(stored["members"][0]["ys"], ys[0, best])
    kept = var[0, best].mean(1)
    dropped = var[0, [i for i in range(pool) if i not in set(best.tolist())]].mean(1)
    assert kept.max() <= dropped.min()


def test_filters_with_nothing_to_label(tmp_path):
    """lambda = 1 next to lambda = 0.5: one member labels no prompt at all."""
    for kind in ("confidence", "verifier"):
        cfg = compose_loop(tmp_path / kind, *FAST, "members.real_fractions=[0.5,1.0]",
                           f"loop.filter={kind}", "loop.filter_keep=0.5")
        gen1 = [r for r in loop_from_config(cfg, tmp_path / kind / "out")["generations"]
                if r["generation"] == 1]
        assert [r["filter_pool"] for r in gen1] == [N, 0]
        assert [r["n_synthetic_new"] for r in gen1] == [N // 2, 0]
        assert gen1[1]["filter_kept_fraction"] == 1.0 and gen1[1]["filter_w_shift2_after"] is None


@pytest.mark.parametrize("threshold", [None, 1.0])
def test_verifier_filter_keeps_what_the_verifier_ranks_best(tmp_path, threshold):
    """The oracle labels deterministically from its inputs: the whole pool can be rebuilt,
    scored with the member's verifier (fitted on S_0, degraded) and selected again."""
    cfg = compose_loop(tmp_path, *FAST, "loop.labeller=oracle", "loop.real_fraction=0",
                       "loop.filter=verifier", "loop.filter_keep=0.5",
                       f"loop.filter_threshold={'null' if threshold is None else threshold}",
                       "loop.verifier_n_real=8", "loop.verifier_centre_noise_std=0.3")
    gen1 = loop_from_config(cfg, tmp_path / "out")["generations"][1]
    app = load_app_config(cfg, needs_loop=True)
    task, member = LinearRegression(d=D), MemberSpec(seed=0, real_fraction=0.0, n=N)
    plan = plan_generation(app.loop, member, 1)
    inputs = synthetic_inputs(app.loop, member, plan, task, K_PAIRS)
    labelled = oracle_synthesize(task, [inputs])[0]
    verifier = member_verifier(app.loop, app.task, task, member, draw_s0(task, member, K_PAIRS),
                               plan, K_PAIRS)
    assert verifier.n_real == 8
    scores = verifier_scores(verifier, labelled)
    selection = select(scores, N, threshold)
    stored = load_state(_checkpoint(tmp_path) / "gen_001" / "synthetic.pt")["members"][0]
    assert torch.equal(stored["xs"], labelled.xs[selection.index])
    assert gen1["filter_kept_fraction"] == pytest.approx(selection.kept_fraction)
    assert gen1["filter_shortfall"] == selection.shortfall
    assert gen1["n_synthetic_new"] == N and gen1["filter_pool"] == 2 * N


def test_reference_learner_with_a_verifier_matches_the_closed_form(tmp_path):
    """The Gaussian-prior learner at lambda = 0, verifier fitted on S_0 (so its centre c is
    mu_0, shift 0), threshold tau on ||w - c||^2 / w_var = k * score: the kept fraction is
    F_d(tau) and E||mu_1 - c||^2 is `filter_theory.step_drift` (docs/THEORY.md section 7.2),
    measured over 300 loops; without the filter E||mu_1 - c||^2 would be d / n."""
    seeds, tau = 300, 2 * math.log(2)  # the median of chi-square with 2 degrees of freedom
    cfg = compose_loop(tmp_path, *FAST, "loop.learner=gaussian_prior", "loop.real_fraction=0",
                       "loop.filter=verifier", "loop.filter_keep=0.25",
                       f"loop.filter_threshold={tau / K_PAIRS}",
                       f"members.seeds=[{','.join(map(str, range(seeds)))}]")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    gen1 = [r for r in records if r["generation"] == 1]
    assert len(gen1) == seeds and all(r["filter_shortfall"] == 0 for r in gen1)
    pool = pool_size(N, 0.25)
    kept = torch.tensor([r["filter_kept_fraction"] for r in gen1]).double()
    p = keep_fraction(tau, D)
    assert abs(kept.mean().item() - p) < 4 * math.sqrt(p * (1 - p) / (pool * seeds))
    mu1 = load_state(_checkpoint(tmp_path) / "gen_001" / "model.pt")["mu"]  # (seeds, d)
    task = LinearRegression(d=D)
    centres = torch.stack([implied_weights(draw_s0(task, MemberSpec(s, 0.0, N), K_PAIRS)).mean(0)
                           for s in range(seeds)])
    drift = (mu1 - centres).pow(2).sum(-1)
    expected = step_drift(0.0, tau, D, N)
    se = drift.std().item() / math.sqrt(seeds)
    assert abs(drift.mean().item() - expected) < 4 * se, (drift.mean().item(), expected)
    assert D / N - expected > 10 * se  # the unfiltered loop would be far off


# ---------------------------------------------------------------------------------------------
# The command line, and bad settings


@pytest.mark.parametrize("schedule, lambdas, filter_", [
    ("exponential", [1.0, 0.5, 0.5 * math.exp(-0.7)], "verifier"),
    ("linear", [1.0, 0.5, 0.0], "confidence"),
])
def test_cli_writes_schedule_pool_and_filter_fields(tmp_path, schedule, lambdas, filter_):
    """Each schedule's lambda_i, each filter's kept fraction and the pool's dmmse baseline and
    prior distances, from the command line into summary.json."""
    proc = run_cli(LOOP_CLI, *cli_args(TINY_LOOP, tmp_path, "out", *FAST, "loop.generations=2",
                                       f"loop.real_schedule={schedule}",
                                       "loop.real_schedule_rate=0.7", "loop.rounding=floor",
                                       "task.n_tasks=4", f"loop.filter={filter_}",
                                       "loop.filter_keep=0.5"))
    check_ok(proc)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    records = summary["generations"]
    assert [r["real_fraction_i"] for r in records] == pytest.approx(lambdas)
    assert [r["filter_kept_fraction"] for r in records][1:] == [0.5, 0.5]
    assert "dmmse" in summary["baselines"] and "dmmse" in summary["baselines_prior"]
    assert all(r["prior_distance_dmmse"] > 0 for r in records)
    assert summary["settings"]["task"]["n_tasks"] == 4
    assert summary["settings"]["loop"]["filter"] == filter_


@pytest.mark.parametrize("override,field", [
    ("loop.real_schedule=cubic", "loop.real_schedule"),
    ("loop.real_schedule_rate=-1", "loop.real_schedule_rate"),
    ("loop.real_schedule_rate=0.5", "loop.real_schedule_rate"),  # constant: would do nothing
    ("loop.real_schedule=linear", "loop.real_schedule_rate"),  # no rate: never decays
    ("loop.real_schedule=linear loop.real_schedule_rate=0.1 loop.real_schedule_floor=0.7",
     "loop.real_schedule_floor"),  # above real_fraction
    ("loop.real_schedule=linear loop.real_schedule_rate=0.1 loop.generations=2",
     "loop.rounding"),  # lambda_2 n = 0.4 * 16
    ("loop.filter=sieve", "loop.filter"),
    ("loop.filter=verifier loop.filter_keep=0", "loop.filter_keep"),
    ("loop.filter=verifier loop.filter_keep=1.5", "loop.filter_keep"),
    ("loop.filter_keep=0.5", "loop.filter_keep"),  # with filter none: would do nothing
    ("loop.filter=verifier loop.filter_threshold=-1", "loop.filter_threshold"),
    ("loop.filter=confidence model.gaussian_head=false loop.label_noise_std=0.1",
     "loop.filter"),
    ("loop.filter=confidence loop.learner=gaussian_prior", "loop.filter"),
    ("loop.filter=verifier loop.verifier_source=real loop.real_fraction=0",
     "loop.verifier_source"),
    ("loop.filter=verifier loop.verifier_n_real=17", "loop.verifier_n_real"),
    ("loop.filter=verifier loop.verifier_source=lake", "loop.verifier_source"),
    ("loop.filter=verifier loop.verifier_centre_noise_std=-0.1",
     "loop.verifier_centre_noise_std"),
    ("task.n_tasks=0", "task.n_tasks"),
    ("task.n_tasks=2 loop.labeller=oracle", "loop.labeller"),
    ("task.n_tasks=2 task=relu_2nn_regression", "task.n_tasks"),
])
def test_bad_extension_settings_are_refused_before_anything_runs(tmp_path, override, field):
    cfg = compose_loop(tmp_path, *override.split())
    with pytest.raises(ConfigError) as info:
        loop_from_config(cfg, tmp_path / "out")
    message = str(info.value)
    assert field in message and "\n" not in message, message
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


def test_bad_extension_setting_exits_2_through_the_cli(tmp_path):
    proc = run_cli(LOOP_CLI, *cli_args(TINY_LOOP, tmp_path, "out", "loop.filter=verifier",
                                       "loop.filter_keep=1.5"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "loop.filter_keep" in proc.stderr and "1.5" in proc.stderr
    assert not (tmp_path / "ck").exists()


def test_filtered_generation_resumed_from_its_stored_synthetic_prompts(tmp_path):
    """A generation restarted after its labels were stored reads the filter's record and kept
    positions back from synthetic.pt: the same records as the uninterrupted run."""
    settings = [*FAST, "loop.filter=confidence", "loop.filter_keep=0.5"]
    first = loop_from_config(compose_loop(tmp_path, *settings), tmp_path / "out")["generations"]
    gen1 = _checkpoint(tmp_path) / "gen_001"
    assert "filter" in load_state(gen1 / "synthetic.pt")
    (gen1 / "metrics.json").unlink()
    (gen1 / "model.pt").unlink()
    again = loop_from_config(compose_loop(tmp_path, *settings), tmp_path / "out2")["generations"]
    assert again == first


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


@pytest.mark.parametrize("extra,counted", [
    ({}, True),  # a summary written before the extensions, or at their defaults
    ({"loop": {"real_schedule": "linear", "real_schedule_rate": 0.1}}, False),
    ({"loop": {"filter": "verifier", "filter_keep": 0.5}}, False),
    ({"task": {"n_tasks": 4}}, False),
])
def test_extension_runs_are_shown_not_counted_for_p1_to_p5(extra, counted):
    settings = {"task": {"name": "linear_regression"}, "model": {"arch": "gpt2"},
                "loop": {"learner": "transformer", "synthetic": "replace", "labeller": "model"}}
    for section, values in extra.items():
        settings[section] = {**settings[section], **values}
    run = RunResult(path=Path("run"), flat_settings=flatten(settings))
    assert run.in_theorem_setting is counted


@pytest.mark.parametrize("c", [0, 2])
def test_predicted_variances_of_cached_and_uncached_labelling_agree(c, tiny_model):
    """The variance a confidence filter ranks by is the head's at each labelled position, the
    same with and without the key/value cache, and 0 at the c real opening positions."""
    ens = build_ensemble(tiny_model, D, K_PAIRS, [make_generator(s, "x") for s in (1, 2)]).eval()
    gen = make_generator(0, "label_inputs")
    xs = torch.randn(2, 6, K_PAIRS, D, generator=gen)
    context = torch.randn(2, 6, c, generator=gen)
    noise = torch.randn(2, 6, K_PAIRS, generator=gen)
    out = []
    for cache in (True, False):
        out.append(label(ens, xs, context, noise, None, use_cache=cache, batch_size=4,
                         return_variance=True))
    (ys_c, var_c), (ys_u, var_u) = out
    torch.testing.assert_close(ys_c, ys_u, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var_c, var_u, rtol=1e-5, atol=1e-6)
    assert (var_c[..., :c] == 0).all() and (var_c[..., c:] > 0).all()
    with torch.no_grad():  # the head's variance on the labelled prompts, one causal pass
        direct = ens(xs, ys_u).log_var.exp()
    torch.testing.assert_close(var_u[..., c:], direct[..., c:], rtol=1e-5, atol=1e-6)
