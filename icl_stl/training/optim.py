"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from icl_stl.config import TrainConfig


def decay_mask(name: str, p: Tensor, member_axis: bool = False) -> bool:
    """Weight decay applies to matrices only (not biases, norms), as in nanoGPT."""
    return (p.ndim - int(member_axis)) >= 2 and not name.endswith("wte.weight")


def configure_optimizer(named_params, *, lr: float, weight_decay: float, betas: tuple[float, float],
                        kind: str = "adamw", fused: bool = False, member_axis: bool = False):
    """Adam(W) with decay on matrices only; `member_axis` marks stacked ensemble parameters.

    With `kind="adam"` the decay is Adam's L2 term in the gradient (torch.optim.Adam).
    """
    decay, no_decay = [], []
    for name, p in named_params:
        if p.requires_grad:
            (decay if decay_mask(name, p, member_axis) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    # foreach batches the update over parameters (the CPU default is a Python loop per tensor)
    extra = {"fused": True} if fused else {"foreach": True}
    return cls(groups, lr=lr, betas=betas, **extra)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Warm-up then constant, cosine or linear decay to `min_lr_ratio * lr`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)
