"""Function classes that prompts are drawn from.

A task draws one set of parameters per prompt (e.g. a weight vector w) and labels inputs with
f_params(x) + noise. Adding a function class is one small subclass: `sample_params` and `f`.
Everything is batched over prompts and driven by an explicit `torch.Generator`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from icl_stl.config import ConfigError, TaskConfig


@dataclass(frozen=True)
class Task(ABC):
    d: int
    w_scale: float = 1.0
    noise_std: float = 0.0

    name = "task"

    @abstractmethod
    def sample_params(self, n: int, gen: torch.Generator) -> Tensor:
        """Parameters of n functions, shape (n, p). Drawn on the generator's device."""

    @abstractmethod
    def f(self, params: Tensor, xs: Tensor) -> Tensor:
        """Noiseless labels: params (n, p), xs (n, k, d) -> (n, k)."""

    @property
    def is_linear(self) -> bool:
        """Whether params are a weight vector w with y = <w, x> + noise (baselines are exact)."""
        return False

    def sample_xs(self, n: int, k: int, gen: torch.Generator) -> Tensor:
        return torch.randn(n, k, self.d, generator=gen, device=gen.device)

    def add_noise(self, ys: Tensor, gen: torch.Generator) -> Tensor:
        if self.noise_std == 0:
            return ys
        noise = torch.randn(ys.shape, generator=gen, device=gen.device)
        return ys + self.noise_std * noise


@dataclass(frozen=True)
class LinearRegression(Task):
    """y = <w, x> + noise, x ~ N(0, I_d), w ~ N(0, w_scale^2 I_d)."""

    name = "linear_regression"

    def sample_params(self, n: int, gen: torch.Generator) -> Tensor:
        return self.w_scale * torch.randn(n, self.d, generator=gen, device=gen.device)

    def f(self, params: Tensor, xs: Tensor) -> Tensor:
        return torch.einsum("nkd,nd->nk", xs, params)

    @property
    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True)
class NoisyLinearRegression(LinearRegression):
    """Linear regression whose labels always carry Gaussian noise (noise_std > 0)."""

    name = "noisy_linear_regression"


@dataclass(frozen=True)
class SparseLinearRegression(LinearRegression):
    """Linear regression with only `sparsity` nonzero coordinates of w per prompt."""

    sparsity: int = 3
    name = "sparse_linear_regression"

    def sample_params(self, n: int, gen: torch.Generator) -> Tensor:
        w = super().sample_params(n, gen)
        # A random subset per prompt, vectorised: rank random keys and keep the smallest.
        keys = torch.rand(n, self.d, generator=gen, device=gen.device)
        keep = keys.argsort(dim=1).argsort(dim=1) < self.sparsity
        return w * keep


@dataclass(frozen=True)
class ReluNetworkRegression(Task):
    """y = sum_h a_h relu(<u_h, x>) for a random two-layer network (Garg et al. 2022)."""

    hidden: int = 100
    name = "relu_2nn_regression"

    def sample_params(self, n: int, gen: torch.Generator) -> Tensor:
        u = torch.randn(n, self.hidden * self.d, generator=gen, device=gen.device)
        # Output weights scaled so that Var(y) stays O(w_scale^2) whatever the width.
        a = torch.randn(n, self.hidden, generator=gen, device=gen.device)
        a = a * self.w_scale * (2.0 / self.hidden) ** 0.5
        return torch.cat([u, a], dim=1)

    def f(self, params: Tensor, xs: Tensor) -> Tensor:
        n = params.shape[0]
        u = params[:, : self.hidden * self.d].reshape(n, self.hidden, self.d)
        a = params[:, self.hidden * self.d :]
        return torch.einsum("nkh,nh->nk", torch.relu(torch.einsum("nkd,nhd->nkh", xs, u)), a)


TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (LinearRegression, NoisyLinearRegression, SparseLinearRegression,
                ReluNetworkRegression)
}


def make_task(cfg: TaskConfig) -> Task:
    if cfg.name not in TASKS:
        raise ConfigError(f"task.name must be one of {sorted(TASKS)}, got {cfg.name!r}")
    common = dict(d=cfg.d, w_scale=cfg.w_scale, noise_std=cfg.noise_std)
    if cfg.name == "sparse_linear_regression":
        return SparseLinearRegression(**common, sparsity=cfg.sparsity)
    if cfg.name == "relu_2nn_regression":
        return ReluNetworkRegression(**common, hidden=cfg.hidden)
    return TASKS[cfg.name](**common)
