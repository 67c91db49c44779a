"""Backbones of the single-model reference learner (`ICLModel`): causal maps (B, T, H) -> (B, T, H).

- `GPT2Backbone`: the `transformers` GPT2Model, the reference the native GPT-2 is checked
  against (`icl_stl.models.gpt2`).
- `LSTMBackbone` and `MLPBackbone`: other architectures behind the same read-in / read-out.

Adding one is one small class with `forward` and `init_weights_(gen)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from icl_stl.config import ModelConfig
from icl_stl.models.initialisation import gpt2_std, normal


class Backbone(nn.Module):
    """Causal sequence map (B, T, H) -> (B, T, H): output t depends on inputs 0..t only."""

    hidden_size: int

    def init_weights_(self, gen: torch.Generator) -> None:
        raise NotImplementedError


def gpt2_config(cfg: ModelConfig, n_positions: int):
    """A GPT2Config for embeddings in, hidden states out: no token vocabulary."""
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
        # GPT-2's scheme from an explicit generator, in parameter order: wpe, then per block
        # c_attn, attn.c_proj, c_fc, mlp.c_proj. NativeGPT2.init_weights_ draws in this order.
        n_layer = self.gpt2.config.n_layer
        with torch.no_grad():
            for name, p in self.gpt2.named_parameters():
                if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                    p.fill_(1.0)
                elif name.endswith("bias") or name == "wte.weight":  # wte: never read
                    p.zero_()
                else:
                    p.copy_(normal(p.shape, gpt2_std(name, n_layer), gen))


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
        # The first layer on the zero-padded prefix of t is sum_{s <= t} W_s e_s + b, with W_s
        # the block of columns that reads position s: a cumulative sum of per-position
        # projections, O(T) instead of materialising every prefix, (B, T, T, H).
        b, t, h = embeds.shape
        first = self.mlp[0]
        blocks = first.weight.view(h, self.n_positions, h)[:, :t]  # (H_out, t, H_in)
        per_position = torch.einsum("bsi,osi->bso", embeds, blocks)  # W_s e_s: (B, t, H)
        return self.mlp[1:](per_position.cumsum(1) + first.bias)

    def init_weights_(self, gen: torch.Generator) -> None:
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(m.in_features))
                    m.bias.zero_()


BACKBONES: dict[str, type[Backbone]] = {
    "gpt2": GPT2Backbone, "lstm": LSTMBackbone, "mlp": MLPBackbone,
}
