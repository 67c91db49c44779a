"""The in-context learner: read-in linear layer -> causal backbone -> read-out linear layer.

A prompt (x_1, y_1, ..., x_k, y_k) becomes 2k tokens of width d (y zero-padded to d). The model
reads its prediction for y_j at the token of x_j, so it sees exactly (x_1, y_1, ..., x_j).

`ICLModel` is one such model, the reference learner: its backbone (`icl_stl.models.backbones`) is the
`transformers` GPT2Model, an LSTM, or an MLP over the flattened prefix. The native GPT-2 that
trains many members as one (`icl_stl.models.gpt2`) converts to and from it member by member.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from icl_stl.config import ModelConfig
from icl_stl.models.backbones import BACKBONES
from icl_stl.models.initialisation import read_map

MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=3, n_head=4, n_embd=64),  # 4 heads: reaches ridge ~2x sooner than 2
    "small": dict(n_layer=6, n_head=4, n_embd=128),
    "standard": dict(n_layer=12, n_head=8, n_embd=256),  # Garg et al. 2022
}


def interleave(xs: Tensor, ys: Tensor) -> Tensor:
    """(..., k, d) inputs and (..., k) labels -> (..., 2k, d) tokens x_1, y_1, x_2, y_2, ..."""
    y_tokens = F.pad(ys.unsqueeze(-1), (0, xs.shape[-1] - 1))  # y in coordinate 0, zeros after
    return rearrange(torch.stack([xs, y_tokens], dim=-2), "... k two d -> ... (k two) d")


def deinterleave(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of `interleave`: (..., 2k, d) -> xs (..., k, d), ys (..., k)."""
    pairs = rearrange(tokens, "... (k two) d -> ... k two d", two=2)
    return pairs[..., 0, :], pairs[..., 1, 0]


def check_prompt_length(pairs: int, k: int) -> None:
    """A clear error instead of an index error deep inside the backbone."""
    if pairs > k:
        raise ValueError(f"prompt has {pairs} pairs but the model was built for k={k} "
                         f"({2 * k} positions); set task.k <= {k} or build a model for k={pairs}")


@dataclass
class Prediction:
    mean: Tensor  # (..., k): predicted y_j at every position
    log_var: Tensor | None = None  # (..., k): Gaussian head's log-variance, when present


class ICLModel(nn.Module):
    """Predicts every y_j of a batch of prompts from its prefix."""

    def __init__(self, cfg: ModelConfig, d: int, k: int):
        super().__init__()
        self.cfg, self.d, self.k = cfg, d, k
        self.read_in = nn.Linear(d, cfg.n_embd)
        self.backbone = BACKBONES[cfg.arch](cfg, n_positions=2 * k)
        self.read_out = nn.Linear(cfg.n_embd, 2 if cfg.gaussian_head else 1)

    def forward(self, xs: Tensor, ys: Tensor) -> Prediction:
        # xs (B, k', d), ys (B, k') with k' <= k
        check_prompt_length(xs.shape[-2], self.k)
        hidden = self.backbone(self.read_in(interleave(xs, ys)))  # (B, 2k', H)
        out = self.read_out(hidden[:, 0::2])  # (B, k', 1 or 2), read at the x tokens
        return Prediction(out[..., 0], out[..., 1] if self.cfg.gaussian_head else None)

    def init_weights_(self, gen: torch.Generator) -> None:
        """Initialise every parameter from `gen`: one seed, one model, on any device."""
        with torch.no_grad():
            for lin in (self.read_in, self.read_out):  # drawn (in, out): see initialisation.py
                weight, bias = read_map(lin.in_features, lin.out_features, self.cfg.init, gen)
                lin.weight.copy_(weight.T)
                lin.bias.copy_(bias)
        self.backbone.init_weights_(gen)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameters that do work per token (nanoGPT's count excludes position embeddings)."""
        skip = ("wpe.weight", "wte.weight") if non_embedding else ()
        return sum(p.numel() for n, p in self.named_parameters() if not n.endswith(skip))


def build_model(cfg: ModelConfig, d: int, k: int, gen: torch.Generator) -> ICLModel:
    """An ICLModel initialised from `gen` (a CPU generator; move the model afterwards)."""
    model = ICLModel(cfg, d, k)
    model.init_weights_(gen)
    return model
