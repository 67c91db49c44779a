"""The native model's forms for the compiled CPU path: the same maths, written so inductor fuses it.

`torch.compile` on the CPU gains nothing on the reference forms (BENCHMARKS.md, engine speed):
their non-matmul time sits in kernels it cannot fuse or speed up: the per-member fused
layer-norm calls, the CPU flash-attention kernel (slow on 2,048 heads of 12 tokens) and ATen's
tanh-GELU. Written out as elementwise maths and plain matmuls, the same functions fuse into a
few loops. Each form equals its reference up to rounding (tests/models/test_fusable_forms.py):

- layer norm as mean, variance and rsqrt, each member with its own scale and shift;
- GELU's tanh approximation as x * sigmoid(2z), z = sqrt(2/pi) (x + 0.044715 x^3): the identity
  0.5 (1 + tanh z) = sigmoid(2z); inductor's vectorised sigmoid is several times faster than
  its tanh here;
- a linear layer as a batched matmul plus its bias (baddbmm first copies the broadcast bias
  into its output, which took half of its time);
- causal attention as softmax(q k^T / sqrt(hd), masked) v with two batched matmuls.

A module uses these forms only while `fusable` is set, which the training engine does around a
compiled training run (`runtime.compile`); evaluation, labelling and every uncompiled run keep
the reference forms, so every committed result keeps its exact path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

GELU_C0 = math.sqrt(2.0 / math.pi)
GELU_C1 = 0.044715
LAYER_NORM_EPS = 1e-5


class FusableForms:
    """Mixin: `fusable` (default off) switches a module to the forms in this file."""

    fusable: bool = False


def set_fusable(model: nn.Module, on: bool) -> None:
    """Switch every module of `model` that has fusable forms."""
    for module in model.modules():
        if isinstance(module, FusableForms):
            module.fusable = on


def fusable_layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(K, ..., H) normalised over H, then member i scaled by weight[i] (K, H), shifted by bias[i]."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    centred = x - x.mean(-1, keepdim=True)
    variance = (centred * centred).mean(-1, keepdim=True)  # biased, as F.layer_norm
    return centred * torch.rsqrt(variance + LAYER_NORM_EPS) * weight.view(shape) + bias.view(shape)


def gelu_tanh_as_sigmoid(x: Tensor) -> Tensor:
    """GELU with the tanh approximation (GPT-2's gelu_new), as x * sigmoid(2z)."""
    return x * torch.sigmoid((2.0 * GELU_C0) * (x + GELU_C1 * x * x * x))


def matmul_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """q (N, nh, t_q, hd), k and v (N, nh, t_k, hd), allowed (t_q, t_k) -> (N, nh, t_q, hd)."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v
