"""Filters on synthetic data (loop.filter) through whole tiny loops: what the confidence and
verifier filters keep, the closed form of a filtered reference learner, a resumed filtered
generation, and the variances a confidence filter ranks by."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_loop

from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import loop_from_config
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression
from icl_stl.loop.fidelity import implied_weights
from icl_stl.loop.filtering import member_verifier
from icl_stl.loop.filters import pool_size, select, variance_scores
from icl_stl.loop.labelling import label
from icl_stl.loop.mixing import MemberSpec, draw_s0, synthetic_inputs
from icl_stl.loop.oracle import oracle_synthesize
from icl_stl.loop.plan import plan_generation
from icl_stl.loop.verifier import verifier_scores
from icl_stl.models import build_ensemble
from icl_stl.persistence import load_state
from icl_stl.theory.filters import keep_fraction, step_drift

N, K_PAIRS, D = 16, 5, 2  # compose_loop's data.n, task.k, task.d
FAST = ["train.steps=4", "train.warmup_steps=0", "eval.n_prompts=16", "eval.batch_size=16"]


def _checkpoint(tmp_path):
    (ck,) = (tmp_path / "ck").iterdir()
    return ck


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
    F_d(tau) and E||mu_1 - c||^2 is `theory.filters.step_drift` (docs/THEORY.md section 7.2),
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
