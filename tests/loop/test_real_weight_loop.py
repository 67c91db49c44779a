"""`loop.real_weight` (P10): stratified batches, the reference learner's weighted fit in the
loop code against its closed forms, records, identities and resumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icl_stl.config import ConfigError, EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.loop.learners.reference import prior_drift_metrics
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.theory.real_weight import weighted_drift
from icl_stl.theory.reference import mean_drift_fresh
from icl_stl.training.batches import BatchSampler, stratified_indices
from icl_stl.training.engine import MemberData

D, K_PAIRS, N, GENERATIONS, SEEDS = 2, 4, 20, 4, 300
Z_TOL = 4.0


# ---------------------------------------------------------------------------------------------
# Stratified batches


@pytest.mark.parametrize("weight", [0.0, 0.25, 0.618, 1.0])
def test_a_batch_draws_the_real_share_exactly_in_expectation(weight):
    gen = torch.Generator().manual_seed(0)
    real_size, total, batch = 30, 100, 64
    counts = np.array([int((stratified_indices(real_size, total, weight, batch, gen)
                            < real_size).sum()) for _ in range(4000)])
    whole = math.floor(weight * batch)
    assert set(counts) <= {whole, whole + 1}  # the two whole numbers around w B
    se = max(counts.std(ddof=1), 1e-12) / math.sqrt(counts.size)
    assert abs(counts.mean() - weight * batch) < 4 * se + 1e-12
    idx = stratified_indices(real_size, total, weight, batch, gen)
    assert idx.shape == (batch,) and int(idx.min()) >= 0 and int(idx.max()) < total


def test_the_uniform_sampler_would_give_the_real_fraction_not_the_weight():
    """Without a weight the real share is |R| / |S_i| (here 0.3): the weight is what changes."""
    gen = torch.Generator().manual_seed(1)
    share = np.mean([float((torch.randint(100, (64,), generator=gen) < 30).float().mean())
                     for _ in range(2000)])
    assert share == pytest.approx(0.3, abs=0.01)
    gen = torch.Generator().manual_seed(1)
    weighted = np.mean([float((stratified_indices(30, 100, 0.8, 64, gen) < 30).float().mean())
                        for _ in range(2000)])
    assert weighted == pytest.approx(0.8, abs=0.01)


def test_a_members_batches_do_not_depend_on_its_ensemble():
    task = make_task(TaskConfig(d=D, k=K_PAIRS))
    sets = [sample_prompts(task, 50, K_PAIRS, make_generator(s, "set")) for s in range(3)]
    members = [MemberData(11, sets[0], 20, 0.618), MemberData(12, sets[1]),
               MemberData(13, sets[2], 10, 0.3)]
    alone = BatchSampler([members[2]], task, K_PAIRS, 16, torch.device("cpu"))
    together = BatchSampler(members, task, K_PAIRS, 16, torch.device("cpu"))
    for _ in range(5):
        xs_alone, _ = alone.sample(D, K_PAIRS)
        xs_together, _ = together.sample(D, K_PAIRS)
        torch.testing.assert_close(xs_alone[0], xs_together[2], rtol=0, atol=0)


def test_a_weight_without_the_part_it_weighs_is_refused():
    task = make_task(TaskConfig(d=D, k=K_PAIRS))
    data = sample_prompts(task, 10, K_PAIRS, make_generator(0, "set"))
    for real_size, weight in ((0, 0.5), (10, 0.5)):
        with pytest.raises(ValueError, match="real_weight"):
            BatchSampler([MemberData(0, data, real_size, weight)], task, K_PAIRS, 4,
                         torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("lam, weight, fragment", [
    (0.0, 0.5, "no real prompt"),
    (1.0, 0.5, "no synthetic prompt"),
])
def test_a_weight_with_nothing_to_weigh_is_one_clear_error(lam, weight, fragment):
    loop = LoopConfig(real_fraction=lam, real_weight=weight)
    with pytest.raises(ConfigError) as info:
        loop.validate("loop", 100, TaskConfig(), ModelConfig(gaussian_head=True))
    message = str(info.value)
    assert "loop.real_weight" in message and str(weight) in message and fragment in message


def test_edge_weights_that_weigh_nothing_missing_are_accepted():
    for lam, weight in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.0), (0.5, 1.0)):
        LoopConfig(real_fraction=lam, real_weight=weight).validate(
            "loop", 100, TaskConfig(), ModelConfig(gaussian_head=True))
    with pytest.raises(ConfigError, match="loop.real_weight"):
        LoopConfig(real_weight=1.5)


def settings(lam: float, weight: float | None, source: str = "fresh", **loop) -> LoopSettings:
    loop_cfg = LoopConfig(**{"generations": GENERATIONS, "real_fraction": lam,
                             "real_source": source, "learner": "gaussian_prior",
                             "real_weight": weight, **loop})
    return LoopSettings(TaskConfig(d=D, k=K_PAIRS), ModelConfig(), TrainConfig(steps=1),
                        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]), loop_cfg)


def test_a_null_weight_leaves_the_identity_as_it_was():
    plain, null = settings(0.5, None).identity(), settings(0.5, None).identity()
    assert plain == null and "real_weight" not in plain["loop"]
    assert settings(0.5, 0.6).identity()["loop"]["real_weight"] == 0.6


# ---------------------------------------------------------------------------------------------
# The reference learner in the loop code, against the closed forms


def drift(tmp_path, name: str, s: LoopSettings) -> tuple[np.ndarray, list[dict]]:
    members = [MemberSpec(seed, s.loop.real_fraction, N) for seed in range(SEEDS)]
    records = LoopRun(s, members, tmp_path / name,
                      extra_metrics=prior_drift_metrics).run()["generations"]
    err2 = np.array([[r["prior_mean_err2"] for r in records if r["generation"] == g]
                     for g in range(GENERATIONS + 1)])
    return err2, records


def z_scores(measured: np.ndarray, theory: np.ndarray) -> np.ndarray:
    se = measured.std(1, ddof=1) / math.sqrt(measured.shape[1])
    return (measured.mean(1) - theory) / se


@pytest.mark.parametrize("source", ["fresh", "reuse"])
def test_weighted_reference_loop_matches_its_closed_form(tmp_path, source):
    err2, records = drift(tmp_path, source, settings(0.5, 0.2, source))
    theory = weighted_drift(GENERATIONS, D, N, 0.5, 0.2, 1.0, source)
    assert np.all(np.abs(z_scores(err2, theory)) < Z_TOL), (err2.mean(1), theory)
    # sharp: the unweighted loop's form (v = lambda) is far away
    wrong = weighted_drift(GENERATIONS, D, N, 0.5, 0.5, 1.0, source)
    assert np.max(np.abs(z_scores(err2, wrong))) > 2 * Z_TOL
    assert all(r["real_weight"] == 0.2 and r["real_source"] == source for r in records)


def test_weight_equal_to_lambda_is_the_unweighted_loop(tmp_path):
    weighted, _ = drift(tmp_path, "weighted", settings(0.5, 0.5))
    plain, records = drift(tmp_path, "plain", settings(0.5, None))
    np.testing.assert_allclose(weighted, plain, rtol=1e-9)
    assert "real_weight" not in records[0]
    assert np.all(np.abs(z_scores(plain, mean_drift_fresh(GENERATIONS, D, N, 0.5))) < Z_TOL)


def test_a_resume_with_another_weight_is_refused_naming_it(tmp_path):
    members = [MemberSpec(0, 0.5, N)]
    LoopRun(settings(0.5, 0.6), members, tmp_path / "ck").run()
    with pytest.raises(ConfigError, match="real_weight"):
        LoopRun(settings(0.5, 0.7), members, tmp_path / "ck").run()


# ---------------------------------------------------------------------------------------------
# The transformer loop, through the entry point's settings


FAST = ["train.steps=4", "train.log_every=2", "loop.label_noise_std=0.1"]


def test_a_transformer_loop_trains_with_a_weight_and_records_it(tmp_path):
    from conftest import compose_loop

    from icl_stl.cli.loop import loop_from_config

    cfg = compose_loop(tmp_path, *FAST, "loop.real_weight=0.75", "loop.real_source=fresh",
                       "members.labellers=[model,oracle]")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    assert {(r["generation"], r["labeller"]) for r in records} == {
        (g, a) for g in (0, 1) for a in ("model", "oracle")}
    assert all(r["real_weight"] == 0.75 and r["real_source"] == "fresh" for r in records)
    again = loop_from_config(compose_loop(tmp_path / "b", *FAST, "loop.real_weight=0.75",
                                          "loop.real_source=fresh",
                                          "members.labellers=[model,oracle]"),
                             tmp_path / "b" / "out")["generations"]
    assert [r["test_risk"] for r in again] == [r["test_risk"] for r in records]


@pytest.mark.parametrize("overrides, fragment", [
    (["loop.real_weight=0.5", "members.real_fractions=[0,0.5]"], "no real prompt"),
    (["loop.real_weight=0.5", "loop.real_fraction=1"], "no synthetic prompt"),
    (["loop.real_weight=0.5", "loop.real_fraction=1", "loop.augment=8",
      "members.augments=[8,0]"], "augment=0"),  # the member without augmentation
    (["loop.real_weight=1", "loop.real_fraction=1", "members.augments=[0,8]"], None),
])
def test_entry_point_refuses_a_weight_with_nothing_to_weigh(tmp_path, overrides, fragment):
    from conftest import compose_loop

    from icl_stl.cli.common import load_app_config

    cfg = compose_loop(tmp_path, *overrides)
    if fragment is None:
        load_app_config(cfg, needs_loop=True)
        return
    with pytest.raises(ConfigError) as info:
        load_app_config(cfg, needs_loop=True)
    assert "loop.real_weight" in str(info.value) and fragment in str(info.value)
