"""Initial weights, drawn from an explicit generator by every implementation alike.

The native GPT-2 (a member axis, `icl_stl.models.gpt2`) and the `transformers` reference draw through
these functions in the same order, so member i of a native ensemble and
`build_model(cfg, d, k, gens[i])` start from identical weights. Matrices are drawn in the
(in, out) layout of transformers' Conv1D and of the native model; `nn.Linear` stores the
transpose.

`model.init` picks the read-in/read-out scheme: `gpt2` (N(0, 0.02), zero bias, as GPT-2 does
for every linear map) or `torch_default` (what `nn.Linear` does when left alone, as in Garg et
al.'s code). The backbone always follows its own scheme.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

INIT_STD = 0.02  # GPT-2's initialiser range


def normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=gen) * std


def gpt2_std(name: str, n_layer: int) -> float:
    """GPT-2 scales the projections into the residual stream down by sqrt(2 * n_layer)."""
    return INIT_STD / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else INIT_STD


def read_map(n_in: int, n_out: int, scheme: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Weight (n_in, n_out) and bias (n_out,) of the read-in or read-out map."""
    if scheme == "gpt2":
        return normal((n_in, n_out), INIT_STD, gen), torch.zeros(n_out)
    if scheme == "torch_default":
        # kaiming_uniform_(a=sqrt(5)) reduces to a bound of 1/sqrt(fan_in); the bias uses it too.
        bound = 1.0 / math.sqrt(n_in)
        weight = (torch.rand(n_in, n_out, generator=gen) * 2 - 1) * bound
        return weight, (torch.rand(n_out, generator=gen) * 2 - 1) * bound
    raise ValueError(f"unknown model.init {scheme!r}")
