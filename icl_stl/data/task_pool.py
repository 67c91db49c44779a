"""Finite task pools (Raventós et al., NeurIPS 2023) and their Bayes predictor, dMMSE.

With `task.n_tasks = M`, S_0's prompts do not draw a fresh w each from the prior: they draw it
uniformly from a pool of M weight vectors fixed once (themselves drawn from the prior). A
learner trained on such data can be Bayes-optimal for two different priors: the pool's (uniform
on M points; the estimator is dMMSE, the posterior mean over the pool) or the Gaussian the pool
came from (ridge). Raventós et al. find transformers track dMMSE below a task-diversity
threshold and ridge above it; the theorem's n counts prompts, M counts tasks, and this module is
what lets the two be varied separately.

`dmmse` is shaped like the baselines of `icl_stl.training.baselines`: xs (..., k, d), ys (..., k) ->
per-position predictions (..., k), where position j sees only the pairs before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icl_stl.config import ConfigError
from icl_stl.data.prompts import PromptSet
from icl_stl.data.tasks import Task

__all__ = ["MIN_NOISE_VAR_RELATIVE", "POOL_STREAM", "TaskPool", "check_n_tasks", "dmmse",
           "dmmse_reference", "draw_pool", "sample_pool_prompts"]

# The stream a loop should draw its pool from (`make_generator(seed, POOL_STREAM)`): a stream of
# its own, so that changing M never shifts any other draw of the seed.
POOL_STREAM = "task_pool"
# noise_std = 0 makes the pool posterior a limit: all its mass on the members that fit the pairs
# exactly. A noise variance of this much times the pool's mean label variance E||w||^2 keeps the
# log-weights finite; it is ~1e4 times the squared rounding error of float32 labels, so rounding
# cannot move the weights, and far below any real misfit, so the limit is what is computed.
MIN_NOISE_VAR_RELATIVE = 1e-10
# Bounds the (chunk, k, M) float64 intermediates of `dmmse` to about this many elements each.
CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class TaskPool:
    """M task parameter vectors fixed for a whole loop."""

    weights: Tensor  # (M, p)

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.weights.shape[0] < 1:
            raise ValueError(f"a task pool needs weights of shape (M >= 1, p), got "
                             f"{tuple(self.weights.shape)}")

    def __len__(self) -> int:
        return self.weights.shape[0]


def check_n_tasks(value: object, path: str = "task.n_tasks") -> int | None:
    """None (every prompt draws its own task, the default) or an integer M >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path} must be null or an integer >= 1, got {value!r}")
    return value


def draw_pool(task: Task, n_tasks: int, gen: torch.Generator) -> TaskPool:
    """M parameter vectors from the task's prior, all from `gen`: (M, p)."""
    check_n_tasks(n_tasks, "n_tasks")
    return TaskPool(task.sample_params(n_tasks, gen))


def sample_pool_prompts(task: Task, pool: TaskPool, n: int, k: int,
                        gen: torch.Generator) -> PromptSet:
    """n prompts of k pairs whose tasks are drawn uniformly (with replacement) from the pool.

    Draw order on `gen`: the n pool indices, then the x's, then the label noise (as
    `prompts.sample_prompts` draws params, x's, noise). `params` holds each prompt's w.
    """
    index = torch.randint(len(pool), (n,), generator=gen, device=gen.device)  # (n,)
    params = pool.weights.to(gen.device)[index]  # (n, p)
    xs = task.sample_xs(n, k, gen)  # (n, k, d)
    ys = task.add_noise(task.f(params, xs), gen)  # (n, k)
    return PromptSet(xs, ys, params)


def _noise_var(weights: Tensor, noise_std: float) -> float:
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    scale = weights.pow(2).sum(-1).mean().item()  # E||w||^2 = E y^2 over the pool (x ~ N(0, I))
    return max(noise_std ** 2, MIN_NOISE_VAR_RELATIVE * scale, 1e-300)


def _check_shapes(xs: Tensor, ys: Tensor, weights: Tensor) -> None:
    if xs.ndim < 2 or ys.shape != xs.shape[:-1]:
        raise ValueError(f"dmmse needs xs (..., k, d) and ys (..., k), got {tuple(xs.shape)} "
                         f"and {tuple(ys.shape)}")
    if weights.ndim != 2 or weights.shape[1] != xs.shape[-1]:
        raise ValueError(f"dmmse needs pool weights (M, d={xs.shape[-1]}), got "
                         f"{tuple(weights.shape)}")


def dmmse(xs: Tensor, ys: Tensor, pool: TaskPool | Tensor, noise_std: float) -> Tensor:
    """Posterior mean over the pool of <w, x_j>, from the pairs before position j.

    xs (..., k, d), ys (..., k), pool weights (M, d) -> (..., k) in the inputs' dtype. The prior
    is uniform on the pool and the likelihood Gaussian, y_i = <w, x_i> + N(0, noise_std^2), so
    the weight of member m at position j is softmax_m(-sum_{i<j} (y_i - <w_m, x_i>)^2 / (2 s2));
    position 0 predicts with the pool's mean. noise_std = 0 uses the floor of
    `MIN_NOISE_VAR_RELATIVE` (see there). All prompts and positions in one batched pass (chunked
    over prompts to bound memory), float64 throughout.
    """
    weights = pool.weights if isinstance(pool, TaskPool) else pool
    _check_shapes(xs, ys, weights)
    shape, out_dtype = ys.shape, torch.promote_types(xs.dtype, ys.dtype)
    k, d = xs.shape[-2], xs.shape[-1]
    X = xs.reshape(-1, k, d).to(torch.float64)  # (N, k, d)
    Y = ys.reshape(-1, k).to(torch.float64)  # (N, k)
    W = weights.to(device=X.device, dtype=torch.float64)  # (M, d)
    s2 = _noise_var(W, noise_std)
    chunk = max(1, CHUNK_ELEMENTS // max(1, k * W.shape[0]))
    out = []
    for start in range(0, X.shape[0], chunk):
        bx, by = X[start:start + chunk], Y[start:start + chunk]
        fits = bx @ W.T  # (b, k, M): <w_m, x_i>
        sq = (by.unsqueeze(-1) - fits).pow(2)  # (b, k, M)
        # Shifted, not cumsum - sq: sums over the pairs strictly before each position, without
        # the cancellation a subtraction would suffer after one large misfit.
        before = torch.cat([torch.zeros_like(sq[:, :1]), sq.cumsum(1)[:, :-1]], 1)
        post = torch.softmax(-before / (2.0 * s2), dim=-1)  # (b, k, M): the pool posterior
        out.append((post * fits).sum(-1))  # (b, k)
    pred = torch.cat(out) if out else X.new_zeros(0, k)
    return pred.to(out_dtype).reshape(shape)


def dmmse_reference(xs: Tensor, ys: Tensor, pool: TaskPool | Tensor, noise_std: float) -> Tensor:
    """Loop-based `dmmse`: one explicit Bayes update per prompt and position (checks only)."""
    weights = pool.weights if isinstance(pool, TaskPool) else pool
    _check_shapes(xs, ys, weights)
    k, d = xs.shape[-2], xs.shape[-1]
    X, Y = xs.reshape(-1, k, d).double().cpu(), ys.reshape(-1, k).double().cpu()
    W = weights.double().cpu()
    s2 = _noise_var(W, noise_std)
    pred = torch.zeros(X.shape[0], k, dtype=torch.float64)
    for n in range(X.shape[0]):
        for j in range(k):
            log_w = [-sum((Y[n, i] - W[m] @ X[n, i]).item() ** 2 for i in range(j)) / (2 * s2)
                     for m in range(W.shape[0])]
            top = max(log_w)
            unnorm = [math.exp(v - top) for v in log_w]
            total = sum(unnorm)
            pred[n, j] = sum(u / total * (W[m] @ X[n, j]).item() for m, u in enumerate(unnorm))
    return pred.to(torch.promote_types(xs.dtype, ys.dtype)).reshape(ys.shape)
