"""The dose-response probe (P3, version 2): replaced-fraction loops, chaos twins, distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.cli.probe import probe_from_config
from icl_stl.config import (
    ConfigError,
    EvalConfig,
    LoopConfig,
    ModelConfig,
    ProbeConfig,
    TaskConfig,
    TrainConfig,
)
from icl_stl.data.tasks import make_task
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.probes.dose_fit import dose_rows, dose_slope
from icl_stl.probes.dose_response import (
    DoseHook,
    dose_members,
    gaussian_w2_sq,
    replaced_set,
    run_dose_response,
)
from icl_stl.probes.twins import probe_set

D, K, N = 2, 5, 100
FRACTIONS = [0.02, 0.05, 0.1]
TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", f"task.d={D}", f"task.k={K}",
        f"data.n={N}", "train.steps=6", "train.batch_size=16", "train.warmup_steps=2",
        "train.log_every=3", "eval.n_prompts=32", "eval.batch_size=32", "eval.baselines=[ridge]",
        "probe=dose_response", "probe.probe_prompts=32", "probe.fractions=[0.05,0.1]",
        "logger.mode=disabled",
        "loop.generations=1"]


def tiny_settings(**loop) -> LoopSettings:
    return LoopSettings(
        TaskConfig(d=D, k=K), ModelConfig(n_layer=1, n_head=2, n_embd=16),
        TrainConfig(steps=6, batch_size=16, warmup_steps=2, log_every=3, checkpoint_every=0),
        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
        LoopConfig(generations=1, real_fraction=0.5, init="from_scratch", **loop))


def test_replaced_sets_are_nested_in_q_and_replace_q_n_prompts():
    task = make_task(TaskConfig(d=D, k=K))
    members, _ = dose_members(task, K, [N], [3], [0.5], FRACTIONS, 2)
    s0 = members[0].s0
    changed = []
    for q in FRACTIONS:
        s = replaced_set(task, s0, q, 3, K)
        rows = (s.xs != s0.xs).flatten(1).any(1).nonzero().flatten().tolist()
        assert len(rows) == round(q * N)
        changed.append(set(rows))
    assert changed[0] < changed[1] < changed[2]
    # the same q n prompts and replacements whatever else the run holds (member invariance)
    alone, _ = dose_members(task, K, [N], [3], [0.0], [0.05], 3)
    twin = next(m for m in members if m.tag.endswith("order1/q0.05"))
    again = next(m for m in alone if m.tag.endswith("order1/q0.05"))
    assert torch.equal(twin.s0.xs, again.s0.xs) and torch.equal(twin.s0.ys, again.s0.ys)
    assert twin.batch_order == again.batch_order == 1


def test_w2_of_two_gaussians_is_its_closed_form():
    gen = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(50, generator=gen), torch.randn(50, generator=gen)
    var_a, var_b = torch.rand(50, generator=gen) + 0.1, torch.rand(50, generator=gen) + 0.1
    w2 = gaussian_w2_sq(mu_a, var_a, mu_b, var_b)
    # W2 between 1-d distributions: the L2 distance of their quantile functions
    u = torch.linspace(0.0005, 0.9995, 20001, dtype=torch.float64)
    z = torch.distributions.Normal(0.0, 1.0).icdf(u)
    for i in range(3):
        qa = mu_a[i].double() + var_a[i].double().sqrt() * z
        qb = mu_b[i].double() + var_b[i].double().sqrt() * z
        assert w2[i].item() == pytest.approx(((qa - qb) ** 2).mean().item(), rel=2e-3)
    assert torch.allclose(gaussian_w2_sq(mu_a, var_a, mu_a, var_a),
                          torch.zeros(50, dtype=torch.float64))


def test_dose_slope_is_recovered_from_a_planted_response_after_chaos_subtraction():
    rng = np.random.default_rng(1)
    qs = [0.003, 0.01, 0.03]
    records = []
    slope, chaos, floor_gap = 2.0, 0.05, 0.0
    for seed in range(200):
        c = chaos * (1 + 0.1 * rng.standard_normal())
        records.append({"seed": seed, "n": 1000, "real_fraction": 0.0, "generation": 0,
                        "dose_role": "chaos", "sq_dist": c, "w2_sq": 2 * c, "abs_dist": 0.1,
                        "batch_order": 1})
        for order in range(2):
            for q in qs:  # each replaced loop: its own chaos floor plus the dose effect
                floor = chaos * (1 + 0.1 * rng.standard_normal()) + floor_gap
                records.append({"seed": seed, "n": 1000, "real_fraction": 0.0,
                                "generation": 0, "dose_role": "dose", "fraction": q,
                                "sq_dist": floor + slope * q, "w2_sq": 2 * floor + 3 * q,
                                "abs_dist": 0.1, "batch_order": order})
    rows = dose_rows(records)
    assert len(rows) == 200 and rows[0]["orders"] == 2 and rows[0]["replaced"] == [3, 10, 30]
    est = np.array([r["sq_dist_slope"] for r in rows])
    assert abs(est.mean() - slope) < 4 * est.std() / math.sqrt(len(est))
    assert abs(np.mean([r["w2_sq_slope"] for r in rows]) - 3.0) < 0.5
    assert np.mean([r["sq_dist_intercept"] for r in rows]) == pytest.approx(0.0, abs=0.01)
    # the chaos twin's distance is what is subtracted: the excess at q is slope x q
    r = rows[0]
    assert r["sq_dist_excess"][0] == pytest.approx(r["sq_dist"][0] - r["chaos_sq_dist"])


def test_intercept_absorbs_a_floor_that_a_fit_through_the_origin_reads_as_slope():
    qs = np.array([0.003, 0.01, 0.03])
    excess = 1.5 * qs - 0.02  # a replaced loop less decorrelated than the chaos twin
    slope, icpt = dose_slope(qs, excess)
    origin, _ = dose_slope(qs, excess, intercept=False)
    assert slope == pytest.approx(1.5) and icpt == pytest.approx(-0.02)
    assert origin < 1.0


@pytest.fixture(scope="module")
def dose_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dose")
    s = tiny_settings()
    probe = ProbeConfig(kind="dose_response", fractions=[0.05, 0.1], orders=2,
                        real_fractions=[0, 0.5], probe_prompts=32)
    result, summary = run_dose_response(s, probe, [0], [N], tmp / "ck", tmp / "run")
    return {"settings": s, "result": result, "summary": summary, "tmp": tmp}


def test_probe_records_every_pair_and_shares_generation_0_across_lambda(dose_run):
    recs = dose_run["summary"]["generations"]
    roles = [r.get("dose_role") for r in recs if r["generation"] == 1]
    assert roles.count("base") == 2 and roles.count("dose") == 8 and roles.count("chaos") == 2
    gen0 = {(r["real_fraction"], r["tag"].split("/", 3)[-1]): r for r in recs
            if r["generation"] == 0}
    for (lam, rest), r in gen0.items():
        if lam == 0.5:
            assert r["test_risk"] == gen0[(0, rest)]["test_risk"]  # shared generation 0
    for r in recs:
        if r.get("dose_role") in ("dose", "chaos"):
            assert r["sq_dist"] > 0 and r["w2_sq"] >= r["sq_dist"] - 1e-12
    rows = dose_run["result"]["rows"]
    assert len(rows) == 2 * 2 and all("sq_dist_slope" in r for r in rows)


def test_a_replaced_loop_matches_itself_trained_alone(dose_run):
    task = make_task(dose_run["settings"].task)
    members, _ = dose_members(task, K, [N], [0], [0, 0.5], [0.05, 0.1], 2)
    index = next(i for i, m in enumerate(members) if m.tag.endswith("lambda0.5/order1/q0.1"))
    alone = LoopRun(dose_run["settings"], [members[index]],
                    dose_run["tmp"] / "alone").run()["generations"]
    together = [r for r in dose_run["summary"]["generations"] if r["member"] == index]
    for a, b in zip(alone, together, strict=True):
        assert a["test_risk"] == pytest.approx(b["test_risk"], rel=1e-4, abs=1e-6)


def test_the_hook_reads_a_chaos_twin_at_distance_zero_when_orders_agree(dose_run):
    task = make_task(dose_run["settings"].task)
    members, pairs = dose_members(task, K, [N], [0], [0.5], [0.05, 0.1], 2)

    class Same:  # every member predicts the same: distances are exactly 0
        def predictive_distribution(self, sets):
            mean = torch.ones(len(members), len(sets), K)
            return mean, mean * 0.5

    out = DoseHook(pairs, probe_set(task, K, 8, 0))(0, Same(), [None] * len(members), [])
    assert all(o.get("sq_dist", 0.0) == 0.0 and o.get("w2_sq", 0.0) == 0.0 for o in out)


def compose_probe(tmp_path, overrides):
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("probe", [*overrides, f"run.checkpoint_root={tmp_path / 'ck'}"])


@pytest.mark.parametrize("override, field", [
    ("probe.fractions=[0.05]", "probe.fractions"),
    ("probe.fractions=[0.05,0.015]", r"probe.fractions\[1\]"),
    ("probe.fractions=[0.05,1.0]", r"probe.fractions\[1\]"),
    ("probe.orders=1", "probe.orders"),
    ("probe.chaos_control=seed", "probe.chaos_control"),
    ("probe.real_fractions=[0,0.333]", "probe.real_fractions"),
])
def test_bad_dose_settings_are_refused_naming_the_setting(tmp_path, override, field):
    cfg = compose_probe(tmp_path, [*TINY, override])
    with pytest.raises(ConfigError, match=field):
        probe_from_config(cfg, tmp_path / "out")
    assert not (tmp_path / "ck").exists()


def test_bad_pilot_steps_exit_2_with_one_line(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts/pilot_p3_v2.py"
    spec = importlib.util.spec_from_file_location("pilot_p3_v2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as err:
        module.parse_args(["run", "--steps", "0"])
    assert err.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
