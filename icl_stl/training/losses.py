"""Losses: per-position squared error (Garg et al.'s metric) and each member's training loss."""

from __future__ import annotations

import torch
from torch import Tensor

from icl_stl.models.model import Prediction


def squared_error(pred: Tensor, ys: Tensor, d: int) -> Tensor:
    """Per-position squared error normalised by d (Garg et al.): (..., k)."""
    return (pred - ys).pow(2) / d


def member_losses(pred: Prediction, ys: Tensor, d: int, nll_beta: float = 0.5) -> Tensor:
    """(K,) training loss of each member: mean squared error / d, or with a Gaussian head the
    beta-NLL of Seitzer et al. (ICLR 2022): the Gaussian NLL weighted by a stopped sigma^(2 beta).

    Plain NLL (beta = 0) divides the mean's gradient by the predicted variance, so positions the
    head finds hard are learnt slowly; beta = 1 gives the mean the squared error's gradient
    while the variance still converges to the realised squared error. The default, 0.5 (the
    paper's recommendation), reached ridge soonest of 0, 0.5 and 1 (BENCHMARKS.md).
    """
    if pred.log_var is None:
        return squared_error(pred.mean.float(), ys, d).flatten(1).mean(1)
    log_var = pred.log_var.float().clamp(-12.0, 12.0)  # keeps exp() finite early in training
    nll = 0.5 * (log_var + (pred.mean.float() - ys).pow(2) * torch.exp(-log_var))
    if nll_beta:
        nll = nll * torch.exp(nll_beta * log_var).detach()
    return nll.flatten(1).mean(1)
