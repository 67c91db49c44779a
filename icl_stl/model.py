"""The in-context learner: read-in linear layer -> causal backbone -> read-out linear layer.

A prompt (x_1, y_1, ..., x_k, y_k) becomes 2k tokens of width d (y zero-padded to d). The model
reads its prediction for y_j at the token of x_j, so it sees exactly (x_1, y_1, ..., x_j).

The backbone is anything causal that maps (B, T, H) -> (B, T, H): the `transformers` GPT2Model
(the reference), an LSTM, or an MLP over the flattened prefix. Adding one is one small class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from icl_stl.config import ModelConfig

MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=3, n_head=2, n_embd=64),
    "small": dict(n_layer=6, n_head=4, n_embd=128),
    "standard": dict(n_layer=12, n_head=8, n_embd=256),  # Garg et al. 2022
}
INIT_STD = 0.02  # GPT-2's initialiser range, used for every linear map


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


# ---------------------------------------------------------------------------------------------
# Backbones


class Backbone(nn.Module):
    """Causal sequence map (B, T, H) -> (B, T, H): output t depends on inputs 0..t only."""

    hidden_size: int

    def init_weights_(self, gen: torch.Generator) -> None:
        raise NotImplementedError


def gpt2_config(cfg: ModelConfig, n_positions: int):
    """A GPT2Config for embeddings in, hidden states out: no token vocabulary, no dropout."""
    from transformers import GPT2Config

    # transformers 5 validates types strictly: plain ints/floats only.
    return GPT2Config(
        vocab_size=1, n_positions=int(n_positions), n_embd=int(cfg.n_embd),
        n_layer=int(cfg.n_layer), n_head=int(cfg.n_head),
        resid_pdrop=float(cfg.dropout), embd_pdrop=float(cfg.dropout),
        attn_pdrop=float(cfg.dropout), bos_token_id=None, eos_token_id=None, use_cache=False,
        attn_implementation=str(cfg.attn_implementation),
    )


class GPT2Backbone(Backbone):
    """`transformers` GPT2Model fed through `inputs_embeds` (its 1-row token table is unused)."""

    def __init__(self, cfg: ModelConfig, n_positions: int):
        super().__init__()
        from transformers import GPT2Model

        self.gpt2 = GPT2Model(gpt2_config(cfg, n_positions))
        self.hidden_size = cfg.n_embd

    def forward(self, embeds: Tensor) -> Tensor:
        return self.gpt2(inputs_embeds=embeds).last_hidden_state

    def init_weights_(self, gen: torch.Generator) -> None:
        # GPT-2's scheme, drawn from an explicit generator instead of the global RNG.
        n_layer = self.gpt2.config.n_layer
        for name, p in self.gpt2.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                nn.init.ones_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                std = INIT_STD / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else INIT_STD
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * std)


class LSTMBackbone(Backbone):
    def __init__(self, cfg: ModelConfig, n_positions: int):
        super().__init__()
        self.lstm = nn.LSTM(cfg.n_embd, cfg.n_embd, num_layers=cfg.n_layer, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.hidden_size = cfg.n_embd

    def forward(self, embeds: Tensor) -> Tensor:
        return self.lstm(embeds)[0]

    def init_weights_(self, gen: torch.Generator) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # PyTorch's default LSTM range
        for p in self.lstm.parameters():
            with torch.no_grad():
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)


class MLPBackbone(Backbone):
    """An MLP over the flattened prefix: output t sees tokens 0..t, zero-padded to T tokens."""

    def __init__(self, cfg: ModelConfig, n_positions: int):
        super().__init__()
        h = cfg.n_embd
        layers: list[nn.Module] = [nn.Linear(n_positions * h, h), nn.GELU()]
        for _ in range(cfg.n_layer - 1):
            layers += [nn.Dropout(cfg.dropout), nn.Linear(h, h), nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        self.n_positions, self.hidden_size = n_positions, h

    def forward(self, embeds: Tensor) -> Tensor:
        b, t, h = embeds.shape
        padded = F.pad(embeds, (0, 0, 0, self.n_positions - t))  # (B, T_max, H)
        causal = torch.ones(t, self.n_positions, device=embeds.device).tril()  # (t, T_max)
        prefixes = padded.unsqueeze(1) * causal[None, :, :, None]  # (B, t, T_max, H)
        return self.mlp(rearrange(prefixes, "b t s h -> b t (s h)"))

    def init_weights_(self, gen: torch.Generator) -> None:
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(m.in_features))
                    m.bias.zero_()


BACKBONES: dict[str, type[Backbone]] = {
    "gpt2": GPT2Backbone, "lstm": LSTMBackbone, "mlp": MLPBackbone,
}


# ---------------------------------------------------------------------------------------------


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
        for lin in (self.read_in, self.read_out):
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * INIT_STD)
                lin.bias.zero_()
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


def decay_mask(name: str, p: Tensor, member_axis: bool = False) -> bool:
    """Weight decay applies to matrices only (not biases, norms), as in nanoGPT."""
    return (p.ndim - int(member_axis)) >= 2 and not name.endswith("wte.weight")


def configure_optimizer(named_params, *, lr: float, weight_decay: float, betas: tuple[float, float],
                        kind: str = "adamw", fused: bool = False, member_axis: bool = False):
    """Adam(W) with decay on matrices only; `member_axis` marks stacked ensemble parameters."""
    decay, no_decay = [], []
    for name, p in named_params:
        if p.requires_grad:
            (decay if decay_mask(name, p, member_axis) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    if kind == "adam":  # Adam's weight decay is L2 in the gradient; keep it only if asked
        groups[0]["weight_decay"] = weight_decay
    # foreach batches the update over parameters (the CPU default is a Python loop per tensor)
    extra = {"fused": True} if fused else {"foreach": True}
    return cls(groups, lr=lr, betas=betas, **extra)
