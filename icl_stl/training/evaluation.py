"""Per-position test error of models and baselines, empirical risk, generalization gap.

Errors are squared errors normalised by d at every position (Garg et al.'s metric); a risk is
their mean over prompts and positions. Evaluation runs in large batches without gradients.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from icl_stl.config import GAUSSIAN_PRIOR_TASKS, TaskConfig
from icl_stl.data.prompts import PromptSet, pad_stack
from icl_stl.models.ensemble import Ensemble
from icl_stl.persistence.faults import fault_point
from icl_stl.training import baselines
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.losses import squared_error


@torch.no_grad()
def predict_distribution(model: Ensemble, xs: Tensor, ys: Tensor, batch_size: int,
                         runtime: RuntimeOptions | None = None) -> tuple[Tensor, Tensor | None]:
    """Predicted means (K, n, k) and, with a Gaussian head, variances (K, n, k; else None) for
    inputs (K, n, k, d), (K, n, k), in batches of prompts."""
    runtime = runtime or RuntimeOptions()
    was_training = model.training
    model.eval()
    autocast = (torch.autocast(runtime.device.type, dtype=torch.bfloat16) if runtime.bf16
                else contextlib.nullcontext())
    means, variances = [], []
    for start in range(0, xs.shape[1], batch_size):
        fault_point("evaluate")
        bx = xs[:, start:start + batch_size].to(runtime.device)
        by = ys[:, start:start + batch_size].to(runtime.device)
        with autocast:
            pred = model(bx, by)
        means.append(pred.mean.float())
        if pred.log_var is not None:
            variances.append(pred.log_var.float().clamp(-12.0, 12.0).exp())  # as sampled
    model.train(was_training)
    return torch.cat(means, dim=1), torch.cat(variances, dim=1) if variances else None


def predict(model: Ensemble, xs: Tensor, ys: Tensor, batch_size: int,
            runtime: RuntimeOptions | None = None) -> Tensor:
    """Mean predictions (K, n, k) for inputs (K, n, k, d), (K, n, k), in batches of prompts."""
    return predict_distribution(model, xs, ys, batch_size, runtime)[0]


def stack_sets(sets: list[PromptSet] | PromptSet, n_members: int) -> tuple[Tensor, Tensor]:
    """(K, n, k, d), (K, n, k): one set per member (zero-padded to the largest), or one shared
    set broadcast (no copy)."""
    if isinstance(sets, PromptSet):
        return (sets.xs.expand(n_members, *sets.xs.shape),
                sets.ys.expand(n_members, *sets.ys.shape))
    if len(sets) != n_members:
        raise ValueError(f"{len(sets)} prompt sets for {n_members} members")
    return pad_stack([s.xs for s in sets]), pad_stack([s.ys for s in sets])


def model_errors(model: Ensemble, sets: list[PromptSet] | PromptSet, batch_size: int,
                 runtime: RuntimeOptions | None = None) -> Tensor:
    """Per-position squared errors / d of every member: (K, n, k), on the CPU."""
    xs, ys = stack_sets(sets, model.n_members)
    pred = predict(model, xs, ys, batch_size, runtime).cpu()
    return squared_error(pred, ys.cpu(), xs.shape[-1])


def baseline_errors(prompts: PromptSet, names: list[str], *, ridge_alpha: float,
                    knn_neighbours: int) -> dict[str, Tensor]:
    """Per-position squared errors / d of each named baseline: name -> (n, k)."""
    xs, ys = prompts.xs.cpu(), prompts.ys.cpu()
    return {name: squared_error(baselines.predict(name, xs, ys, ridge_alpha=ridge_alpha,
                                                  knn_neighbours=knn_neighbours), ys, prompts.d)
            for name in names}


def bayes_predictions(task: TaskConfig, prompts: PromptSet) -> Tensor | None:
    """f_Bayes (n, k): the posterior mean of y_j at every position, i.e. ridge at the
    Bayes-optimal alpha (`baselines.bayes_optimal_ridge_alpha`, whatever eval.ridge_alpha says)
    under the prior N(0, w_scale^2 I) that `prompts` were drawn from; None for a task without
    that Gaussian prior. float64, on the CPU."""
    if task.name not in GAUSSIAN_PRIOR_TASKS:
        return None
    alpha = baselines.bayes_optimal_ridge_alpha(task.noise_std, task.w_scale)
    return baselines.ridge(prompts.xs.cpu().double(), prompts.ys.cpu().double(), alpha)


def bayes_excess(predictions: Tensor, bayes: Tensor, d: int) -> tuple[float, float]:
    """(excess risk over the Bayes predictor, its standard error over prompts).

    The mean over prompts and positions of (f - f_Bayes)^2 / d, the normalisation of the test
    risk (`losses.squared_error`), so that its expectation is E[test risk] - E[Bayes risk]
    exactly (f_Bayes is E[y_j | prefix], so the cross term vanishes); unlike that difference it
    is never negative and carries no label noise. predictions, bayes (n, k); the error is the
    sd of the per-prompt means / sqrt(n).
    """
    per_prompt = squared_error(predictions.double(), bayes.double(), d).mean(-1)  # (n,)
    n = per_prompt.shape[0]
    se = per_prompt.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return per_prompt.mean().item(), se


def summarise(errors: Tensor, z: float = 1.96) -> dict:
    """Mean error per position with a normal 95% band over prompts, and the overall risk."""
    n = errors.shape[0]
    mean = errors.mean(0)
    sem = errors.std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    return {"per_position": mean.tolist(), "ci_low": (mean - z * sem).tolist(),
            "ci_high": (mean + z * sem).tolist(), "risk": errors.mean().item()}


def head_calibration(mean: Tensor, var: Tensor, ys: Tensor) -> dict:
    """Predicted variance against realised squared error, per position, on fresh prompts.

    mean, var, ys (n, k). `head_var_ratio_per_position` is mean(var) / mean((y - mean)^2) at
    each position (1: calibrated; below 1: over-confident); `head_var_ratio` pools all
    positions; `head_z2` is mean((y - mean)^2 / var), 1 for a calibrated Gaussian.
    """
    sq = (ys.double() - mean.double()).pow(2)
    var = var.double()
    return {
        "head_var_per_position": var.mean(0).tolist(),
        "head_sq_error_per_position": sq.mean(0).tolist(),
        "head_var_ratio_per_position": (var.mean(0) / sq.mean(0).clamp(min=1e-30)).tolist(),
        "head_var_ratio": (var.mean() / sq.mean().clamp(min=1e-30)).item(),
        "head_z2": (sq / var.clamp(min=1e-30)).mean().item(),
    }
