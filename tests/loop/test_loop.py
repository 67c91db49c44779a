"""The self-consuming loop: the mix of real and synthetic prompts, self-labelling, determinism,
bad loop settings, and the documented degenerate mean-mode labels."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import compose_loop

from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import loop_from_config
from icl_stl.config import ConfigError, LoopConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_part, synthetic_inputs
from icl_stl.loop.plan import plan_generation
from icl_stl.models import build_ensemble
from icl_stl.persistence import load_state

N, K_PAIRS, D = 16, 5, 2  # compose_loop's data.n, task.k, task.d
FAST = ["train.steps=4", "eval.n_prompts=16", "eval.batch_size=16"]


def _rows_in(rows: torch.Tensor, pool: torch.Tensor) -> list[bool]:
    """For each prompt in rows (m, k, d), whether it is one of pool's (n, k, d)."""
    return [bool((pool == r).flatten(1).all(1).any()) for r in rows]


# ---------------------------------------------------------------------------------------------
# Mixing, directly


@pytest.mark.parametrize("lam,m,expected", [(0.25, 0, (4, 12)), (0.25, 3, (4, 15)),
                                            (0.0, 2, (0, 18)), (1.0, 0, (16, 0)),
                                            (1.0, 5, (16, 5))])
def test_counts_are_lambda_n_real_and_the_rest_synthetic(lam, m, expected):
    member = MemberSpec(seed=0, real_fraction=lam, n=N, augment=m)
    plan = plan_generation(LoopConfig(), member, 1)
    assert (plan.n_real, plan.n_synthetic) == expected


def _counts(loop: LoopConfig, member: MemberSpec) -> tuple[int, int]:
    plan = plan_generation(loop, member, 1)
    return plan.n_real, plan.n_synthetic


def test_counts_follow_the_rounding_rule():
    member = MemberSpec(seed=0, real_fraction=0.3, n=N)  # 4.8 prompts
    assert _counts(LoopConfig(rounding="floor"), member) == (4, 12)
    assert _counts(LoopConfig(rounding="ceil"), member) == (5, 11)
    assert _counts(LoopConfig(rounding="round"), member) == (5, 11)
    with pytest.raises(ConfigError, match="real_fraction"):
        _counts(LoopConfig(rounding="exact"), member)


def test_reuse_takes_the_same_subset_of_s0_unless_redrawn():
    task, member = LinearRegression(d=D), MemberSpec(seed=1, real_fraction=0.25, n=N)
    s0 = draw_s0(task, member, K_PAIRS)
    loop = LoopConfig(real_fraction=0.25)
    parts = [real_part(loop, member, s0, plan_generation(loop, member, g), task, K_PAIRS)
             for g in (1, 2, 3)]
    for real, idx in parts:
        assert len(real) == 4 and len(set(idx.tolist())) == 4
        assert torch.equal(real.xs, s0.xs[idx]) and torch.equal(real.ys, s0.ys[idx])
    assert all(torch.equal(parts[0][1], idx) for _, idx in parts)
    redraw = dataclasses.replace(loop, redraw_real=True)
    subsets = {tuple(real_part(redraw, member, s0, plan_generation(redraw, member, g), task,
                               K_PAIRS)[1].tolist())
               for g in range(1, 6)}
    assert len(subsets) > 1  # 1820 possible subsets: five draws do not all coincide


def test_fresh_real_prompts_are_new_every_generation():
    task, member = LinearRegression(d=D), MemberSpec(seed=1, real_fraction=0.5, n=N)
    s0 = draw_s0(task, member, K_PAIRS)
    loop = LoopConfig(real_fraction=0.5, real_source="fresh")
    (a, none), (b, _) = (real_part(loop, member, s0, plan_generation(loop, member, g), task,
                                   K_PAIRS) for g in (1, 2))
    assert none is None and len(a) == len(b) == 8
    assert not any(_rows_in(a.xs, s0.xs)) and not any(_rows_in(a.xs, b.xs))
    again, _ = real_part(loop, member, s0, plan_generation(loop, member, 1), task, K_PAIRS)
    assert torch.equal(again.xs, a.xs)  # a named stream: the same generation draws the same


@pytest.mark.parametrize("mode,c,noisy", [("sample", 0, True), ("mean", 0, False),
                                          ("context", 2, False)])
def test_synthetic_inputs_shapes_and_streams(mode, c, noisy):
    task, member = LinearRegression(d=D), MemberSpec(seed=2, real_fraction=0.25, n=N, augment=1)
    loop = LoopConfig(real_fraction=0.25, label_mode=mode, context_pairs=2)
    inputs = synthetic_inputs(loop, member, plan_generation(loop, member, 1), task, K_PAIRS)
    assert inputs.xs.shape == (13, K_PAIRS, D) and inputs.context_ys.shape == (13, c)
    assert (inputs.noise is not None) == noisy
    fresh = sample_prompts(task, 13, K_PAIRS, make_generator(2, "synthetic_x", 1))
    assert torch.equal(inputs.xs, fresh.xs) and torch.equal(inputs.context_ys, fresh.ys[:, :c])
    if noisy:
        expected = torch.randn(13, K_PAIRS, generator=make_generator(2, "label_noise", 1))
        assert torch.equal(inputs.noise, expected)
    other = synthetic_inputs(loop, member, plan_generation(loop, member, 2), task, K_PAIRS)
    assert not torch.equal(other.xs, inputs.xs)


# ---------------------------------------------------------------------------------------------
# Mixing, as recorded by whole loops

MIX_MEMBERS = ["members.real_fractions=[0.25,1.0]", "members.augments=[0,3]"]


@pytest.mark.parametrize("source", ["reuse", "fresh"])
@pytest.mark.parametrize("synthetic", ["replace", "accumulate"])
def test_records_hold_the_configured_mix(tmp_path, source, synthetic):
    cfg = compose_loop(tmp_path, *FAST, *MIX_MEMBERS, "loop.generations=2",
                       f"loop.real_source={source}", f"loop.synthetic={synthetic}")
    summary = loop_from_config(cfg, tmp_path / "out")
    records = summary["generations"]
    assert len(records) == 4 * 3
    (ck,) = (tmp_path / "ck").iterdir()
    for rec in records:
        lam, m, i = rec["real_fraction"], rec["augment"], rec["generation"]
        n_real, n_syn = int(lam * N), N - int(lam * N) + m
        if i == 0:
            assert (rec["n_real"], rec["n_synthetic_new"], rec["train_size"]) == (N, 0, N)
            continue
        assert (rec["n_real"], rec["n_synthetic_new"]) == (n_real, n_syn), rec
        grown = n_syn * (i if synthetic == "accumulate" else 1)
        assert rec["train_size"] == n_real + grown, rec
        stored = load_state(ck / f"gen_{i:03d}" / "synthetic.pt")["members"][rec["member"]]
        assert stored["xs"].shape == (n_syn, K_PAIRS, D)
        if lam == 1.0 and m == 0:  # lambda = 1: no synthetic prompt at all
            assert rec["n_synthetic_new"] == 0 and rec["syn_label_var"] is None
    members = {(r["real_fraction"], r["augment"]) for r in records}
    assert members == {(0.25, 0), (0.25, 3), (1.0, 0), (1.0, 3)}


def test_lambda_one_trains_on_s0_itself(tmp_path):
    """With lambda = 1 and reuse, S_i is S_0 every generation: the real risk is the train risk."""
    cfg = compose_loop(tmp_path, *FAST, "loop.real_fraction=1.0")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    gen1 = records[1]
    assert gen1["n_synthetic_new"] == 0 and gen1["train_size"] == N
    assert gen1["real_train_risk"] == gen1["train_risk"]


# ---------------------------------------------------------------------------------------------
# Self-labelling


def _model_of_generation(app, ck, i: int):
    """Generation i's trained ensemble, rebuilt from its checkpoint (one member)."""
    ens = build_ensemble(app.model, app.task.d, app.task.k, [make_generator(0, "x")])
    ens.load_state_dict(load_state(ck / f"gen_{i:03d}" / "model.pt"))
    return ens.eval()


@pytest.mark.parametrize("mode", ["sample", "mean", "context"])
def test_labels_are_the_previous_generation_model_on_the_same_prefixes(tmp_path, mode):
    cfg = compose_loop(tmp_path, *FAST, "train.steps=20", f"loop.label_mode={mode}",
                       "loop.label_noise_std=0.3", "loop.context_pairs=2")
    loop_from_config(cfg, tmp_path / "out")
    app = load_app_config(cfg, needs_loop=True)
    (ck,) = (tmp_path / "ck").iterdir()
    synthetic = load_state(ck / "gen_001" / "synthetic.pt")["members"][0]
    xs, ys = synthetic["xs"], synthetic["ys"]  # (m, k, d), (m, k)
    m = N // 2
    assert xs.shape == (m, K_PAIRS, D)
    # the inputs are the member's synthetic_x stream of generation 1
    fresh = sample_prompts(LinearRegression(d=D), m, K_PAIRS, make_generator(0, "synthetic_x", 1))
    assert torch.equal(xs, fresh.xs)
    with torch.no_grad():  # causal: one pass over the stored labels gives every prefix's mean
        means = _model_of_generation(app, ck, 0)(xs[None], ys[None]).mean[0]
    c = 2 if mode == "context" else 0
    expected = means.clone()
    if mode == "sample":
        noise = torch.randn(m, K_PAIRS, generator=make_generator(0, "label_noise", 1))
        expected = means + 0.3 * noise
    if mode == "context":
        expected[:, :c] = fresh.ys[:, :c]  # real opening pairs of a fresh task
    torch.testing.assert_close(ys, expected, rtol=1e-5, atol=1e-5)
    if mode != "sample":  # and the noise really is absent there
        assert (ys[:, c:] - means[:, c:]).abs().max() < 1e-5


def test_loop_is_deterministic(tmp_path):
    runs = [loop_from_config(compose_loop(tmp_path / str(r), *FAST, "loop.generations=2"),
                             tmp_path / str(r) / "out")
            for r in range(2)]
    assert runs[0]["generations"] == runs[1]["generations"]
    assert runs[0]["members"] == runs[1]["members"]
    assert runs[0]["checkpoint_dir"] != runs[1]["checkpoint_dir"]  # two separate runs


# ---------------------------------------------------------------------------------------------
# Bad loop settings


@pytest.mark.parametrize("override,field", [
    ("loop.real_fraction=-0.1", "loop.real_fraction"),
    ("loop.real_fraction=1.5", "loop.real_fraction"),
    ("loop.augment=-1", "loop.augment"),
    ("loop.generations=-1", "loop.generations"),
    ("loop.real_fraction=0.3", "loop.real_fraction"),  # 0.3 * 16 = 4.8 prompts
    ("loop.label_mode=context", "loop.context_pairs"),  # with context_pairs=5 = k below
    ("model.gaussian_head=false", "loop.label_noise_std"),  # sample mode, no scale, no head
    ("data.n=null", "data.n"),
    ("members.real_fractions=[0.5,0.3]", "loop.real_fraction"),
    ("loop.rounding=nearest", "loop.rounding"),
])
def test_bad_loop_settings_are_refused_before_anything_runs(tmp_path, override, field):
    cfg = compose_loop(tmp_path, override, "loop.context_pairs=5")
    with pytest.raises(ConfigError) as info:
        loop_from_config(cfg, tmp_path / "out")
    assert field in str(info.value), str(info.value)
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


def test_inexact_lambda_n_works_with_floor_rounding(tmp_path):
    cfg = compose_loop(tmp_path, *FAST, "loop.real_fraction=0.3", "loop.rounding=floor")
    gen1 = loop_from_config(cfg, tmp_path / "out")["generations"][1]
    assert (gen1["n_real"], gen1["n_synthetic_new"], gen1["train_size"]) == (4, 12, 16)


def test_sample_mode_without_noise_scale_uses_the_gaussian_head(tmp_path):
    cfg = compose_loop(tmp_path, *FAST, "loop.label_noise_std=null", "model.gaussian_head=true")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    assert records[1]["n_synthetic_new"] == 8 and records[1]["syn_label_var"] > 0


def test_mean_mode_without_context_collapses_labels(tmp_path):
    """Documented degenerate case: with no real pair to start from, a model that predicts the
    mean labels every synthetic prompt near zero, so the synthetic label variance is far below
    the real one. (n = 64: on a smaller S_0 the model overfits within 20 steps and its labels
    spread again, which is not the regime the documentation describes.)"""
    settings = [*FAST, "train.steps=20", "data.n=64"]
    mean = loop_from_config(compose_loop(tmp_path, *settings, "loop.label_mode=mean"),
                            tmp_path / "out")["generations"][1]
    real_var = 1.0 * D  # Var <w, x> = w_scale^2 d for x, w standard normal
    assert mean["syn_label_var"] < 0.1 * real_var, mean["syn_label_var"]
    sample = loop_from_config(
        compose_loop(tmp_path / "s", *settings, "loop.label_noise_std=0.5"),
        tmp_path / "s" / "out")["generations"][1]
    assert sample["syn_label_var"] > mean["syn_label_var"] + 0.1  # noise 0.5 adds ~0.25
