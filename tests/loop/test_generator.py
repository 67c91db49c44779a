"""The generator: the oracle labeller's prompts are distributed like real ones, the fidelity
metrics see a shrunken generator, and the head's calibration is measured as documented."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_loop

from icl_stl.cli.loop import loop_from_config
from icl_stl.config import ConfigError, ModelConfig, TrainConfig
from icl_stl.data.prompts import PromptSet, sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression, NoisyLinearRegression, SparseLinearRegression
from icl_stl.loop.fidelity import (
    generator_fidelity,
    implied_weights,
    label_var_ratio_per_position,
)
from icl_stl.loop.mixing import SyntheticInputs
from icl_stl.loop.oracle import oracle_synthesize, posterior_predictive_labels
from icl_stl.models import build_ensemble
from icl_stl.models.model import MODEL_SIZES
from icl_stl.training.engine import MemberData, train_ensemble
from icl_stl.training.evaluation import head_calibration, predict_distribution


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    grid = torch.cat([a, b]).sort().values
    f_a = torch.searchsorted(a.sort().values, grid, right=True) / len(a)
    f_b = torch.searchsorted(b.sort().values, grid, right=True) / len(b)
    return (f_a - f_b).abs().max().item()


def oracle_and_real(task, m: int, k: int, seed: int = 0, context: int = 0):
    """Oracle prompts on the x's of m real prompts, and an independent real sample."""
    real = sample_prompts(task, m, k, torch.Generator().manual_seed(seed))
    noise = torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1))
    inputs = SyntheticInputs(real.xs, real.ys[:, :context], noise)
    oracle = oracle_synthesize(task, [inputs])[0]
    other = sample_prompts(task, m, k, torch.Generator().manual_seed(seed + 2))
    return oracle, real, other


@pytest.mark.parametrize("task", [LinearRegression(d=2), LinearRegression(d=3, w_scale=0.5),
                                  NoisyLinearRegression(d=2, noise_std=0.5)],
                         ids=["d2", "d3-scale0.5", "noisy"])
def test_oracle_prompts_are_distributed_like_real_ones(task):
    m, k = 20_000, 6
    oracle, real, other = oracle_and_real(task, m, k)
    # Label variance per position: the ratio of two variances of heavy-tailed y = <w, x> has a
    # standard error below 0.025 at m = 20,000; 0.1 is four of them.
    ratios = label_var_ratio_per_position(oracle, real)
    assert all(abs(r - 1) < 0.1 for r in ratios), ratios
    # Implied w: noiseless prompts give back the w each was drawn with, so its law is the
    # prior's; the mean norm has a standard error near 0.005 here.
    if task.noise_std == 0:
        w = implied_weights(oracle)
        cov = w.T @ w / m
        eye = task.w_scale ** 2 * torch.eye(task.d, dtype=torch.float64)
        assert torch.allclose(cov, eye, atol=0.05 * task.w_scale ** 2), cov
        assert abs(w.norm(dim=-1).mean() - implied_weights(real).norm(dim=-1).mean()) < 0.03
    # Two-sample KS test at every position, Bonferroni over k at the 1% level.
    critical = 1.73 * math.sqrt(2 / m)  # c(0.01 / 6) ~ 1.73
    for j in range(k):
        assert ks_statistic(oracle.ys[:, j], other.ys[:, j]) < critical, j


def test_the_distribution_test_rejects_a_shrunken_generator():
    """The same test must fail for a degenerate generator: mean plus noise of scale 0.1."""
    task, m, k = LinearRegression(d=2), 20_000, 6
    _, real, other = oracle_and_real(task, m, k)
    shrunk = PromptSet(real.xs, 0.3 * real.ys)
    ratios = label_var_ratio_per_position(shrunk, real)
    assert all(abs(r - 0.09) < 1e-6 for r in ratios)
    assert ks_statistic(shrunk.ys[:, 3], other.ys[:, 3]) > 1.73 * math.sqrt(2 / m)


def test_oracle_labels_follow_the_first_labels_exactly_once_w_is_determined():
    """d = 1, noiseless: y_1 fixes w, so every later label is y_1 x_j / x_1."""
    task = LinearRegression(d=1)
    oracle, _, _ = oracle_and_real(task, 500, 5)
    w = oracle.ys[:, 0] / oracle.xs[:, 0, 0]
    assert torch.allclose(oracle.ys[:, 1:], w[:, None] * oracle.xs[:, 1:, 0], rtol=1e-4,
                          atol=1e-5)


def test_oracle_keeps_the_real_context_pairs_and_conditions_on_them():
    task = LinearRegression(d=2)
    oracle, real, _ = oracle_and_real(task, 200, 6, context=2)
    assert torch.equal(oracle.ys[:, :2], real.ys[:, :2])
    # Two real pairs determine w in d = 2: the oracle then labels with the real task.
    assert torch.allclose(oracle.ys, real.ys, rtol=1e-3, atol=1e-3)


def test_oracle_uses_the_given_noise_stream():
    task = LinearRegression(d=2)
    xs = torch.randn(8, 5, 2)
    noise = torch.randn(8, 5)
    a = posterior_predictive_labels(xs, xs.new_zeros(8, 0), noise, 1.0, 0.0)
    b = posterior_predictive_labels(xs, xs.new_zeros(8, 0), noise.clone(), 1.0, 0.0)
    c = posterior_predictive_labels(xs, xs.new_zeros(8, 0), -noise, 1.0, 0.0)
    assert torch.equal(a, b) and torch.allclose(c, -a)  # the labels are odd in the noise
    with pytest.raises(ValueError, match="Gaussian-prior"):
        oracle_synthesize(SparseLinearRegression(d=4), [SyntheticInputs(xs, xs[..., :0], noise)])
    assert task.d == 2


def test_fidelity_sees_a_shrunken_generator_and_passes_a_faithful_one():
    task = LinearRegression(d=2)
    real = sample_prompts(task, 4000, 6, torch.Generator().manual_seed(0))
    faithful = generator_fidelity(real, real)
    assert faithful["syn_label_var_ratio"] == pytest.approx(1.0)
    assert faithful["syn_label_w1"] == pytest.approx(0.0, abs=1e-9)
    shrunk = generator_fidelity(PromptSet(real.xs, 0.5 * real.ys), real)
    assert shrunk["syn_label_var_ratio"] == pytest.approx(0.25)
    assert shrunk["syn_w_norm"] == pytest.approx(0.5 * shrunk["real_w_norm"])
    assert shrunk["syn_label_w1"] > 0.3
    with pytest.raises(ValueError, match="same x"):
        generator_fidelity(PromptSet(real.xs + 1, real.ys), real)


def test_head_calibration_is_one_for_a_calibrated_gaussian_and_shows_overconfidence():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(50_000, 4, generator=gen)
    var = torch.rand(50_000, 4, generator=gen) + 0.1
    ys = mean + var.sqrt() * torch.randn(50_000, 4, generator=gen)
    calibrated = head_calibration(mean, var, ys)
    assert all(abs(r - 1) < 0.03 for r in calibrated["head_var_ratio_per_position"])
    assert calibrated["head_z2"] == pytest.approx(1.0, abs=0.03)
    over = head_calibration(mean, var / 4, ys)
    assert over["head_var_ratio"] == pytest.approx(0.25, abs=0.01)
    assert over["head_z2"] == pytest.approx(4.0, abs=0.1)


# ---------------------------------------------------------------------------------------------
# In the loop

FAST = ["train.steps=4", "eval.n_prompts=16", "eval.batch_size=16"]


def test_loop_records_carry_fidelity_and_calibration(tmp_path):
    records = loop_from_config(compose_loop(tmp_path, *FAST), tmp_path / "out")["generations"]
    gen0, gen1 = records[0], records[1]
    assert gen0["syn_label_var_ratio"] is None
    assert len(gen1["syn_label_var_ratio_per_position"]) == 5
    assert gen1["syn_label_var_ratio"] > 0 and gen1["real_w_norm"] > 0
    assert len(gen0["head_var_ratio_per_position"]) == 5 and gen0["head_z2"] > 0


def test_oracle_labeller_in_the_loop_gives_real_like_prompts(tmp_path):
    cfg = compose_loop(tmp_path, *FAST, "loop.labeller=oracle", "data.n=400",
                       "loop.real_fraction=0.0", "loop.generations=1")
    gen1 = loop_from_config(cfg, tmp_path / "out")["generations"][1]
    # 400 prompts: the pooled ratio's standard error is near 0.07
    assert 0.7 < gen1["syn_label_var_ratio"] < 1.4, gen1["syn_label_var_ratio"]


@pytest.mark.parametrize("override,setting", [
    (["loop.labeller=oracle", "task=sparse_linear_regression", "task.sparsity=1"],
     "loop.labeller"),
    (["loop.labeller=oracle", "loop.label_mode=mean"], "loop.label_mode"),
    (["loop.labeller=teacher"], "loop.labeller"),
    (["model.gaussian_head=false"], "loop.label_noise_std"),  # no scale and no head
])
def test_generator_settings_that_cannot_work_are_refused(tmp_path, override, setting):
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
        loop_from_config(compose_loop(tmp_path, *FAST, *override), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# A trained head is calibrated

# Stated tolerance (README): at the demo setting, a head trained to ridge predicts a variance
# within 20% of its realised squared error pooled over positions, and within a factor 1.6 at
# every position.
POOLED_TOLERANCE, POSITION_FACTOR = 1.2, 1.6


def test_a_trained_head_is_calibrated_at_the_demo_setting():
    """tiny GPT-2 at d = 2, k = 6 on fresh prompts with the default recipe and head (beta-NLL),
    1,500 steps: past the step the time-to-ridge benchmark passed the gate at (1,300)."""
    task, k = LinearRegression(d=2), 6
    cfg = ModelConfig(**MODEL_SIZES["tiny"])
    assert cfg.gaussian_head and TrainConfig().nll_beta == 0.5  # the defaults under test
    model = build_ensemble(cfg, task.d, k, [make_generator(0, "init", 0)])
    train_ensemble(model, [MemberData(1, None)], task, k,
                   TrainConfig(steps=1500, log_every=500, checkpoint_every=0))
    test = sample_prompts(task, 4000, k, make_generator(0, "test"))
    mean, var = predict_distribution(model, test.xs[None], test.ys[None], 4000)
    calibration = head_calibration(mean[0], var[0], test.ys)
    pooled = calibration["head_var_ratio"]
    assert 1 / POOLED_TOLERANCE < pooled < POOLED_TOLERANCE, calibration
    for j, ratio in enumerate(calibration["head_var_ratio_per_position"]):
        assert 1 / POSITION_FACTOR < ratio < POSITION_FACTOR, (j, calibration)
