"""Losses: per-position squared error (Garg et al.'s metric) and each member's training loss."""

from __future__ import annotations

import torch
from torch import Tensor

from icl_stl.model import Prediction


def squared_error(pred: Tensor, ys: Tensor, d: int) -> Tensor:
    """Per-position squared error normalised by d (Garg et al.): (..., k)."""
    return (pred - ys).pow(2) / d


def member_losses(pred: Prediction, ys: Tensor, d: int) -> Tensor:
    """(K,) training loss of each member: mean squared error / d, or Gaussian NLL with a head."""
    if pred.log_var is None:
        return squared_error(pred.mean.float(), ys, d).flatten(1).mean(1)
    log_var = pred.log_var.float().clamp(-12.0, 12.0)  # keeps exp() finite early in training
    nll = 0.5 * (log_var + (pred.mean.float() - ys).pow(2) * torch.exp(-log_var))
    return nll.flatten(1).mean(1)
