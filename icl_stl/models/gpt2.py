"""GPT-2 with a member axis: K independent in-context learners computed as one.

Written like nanoGPT's model.py, except that every module holds the parameters of K members
stacked on a leading axis and every activation carries that axis first: (K, B, T, H). One
`torch.baddbmm` computes a linear layer for all members. Nothing mixes members, and every
ensemble size takes the same path, so a member computes the same numbers alone or with
companions (tests/models/test_native_model.py checks whole training runs bit for bit).

Parameter names and (in, out) weight layouts mirror `transformers`' GPT2Model, which stays the
reference: `member(i)` turns member i into an `ICLModel` by renaming, and a parity test checks
that the two forward passes agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from icl_stl.config import ModelConfig
from icl_stl.models.ensemble import Ensemble, MemberRNG
from icl_stl.models.fusable import (
    FusableForms,
    fusable_layer_norm,
    gelu_tanh_as_sigmoid,
    matmul_attention,
)
from icl_stl.models.initialisation import INIT_STD, gpt2_std, normal, read_map
from icl_stl.models.model import ICLModel, Prediction, check_prompt_length, interleave


class MemberLinear(FusableForms, nn.Module):
    """K linear maps in -> out: weight (K, in, out), as transformers' Conv1D; bias (K, out)."""

    def __init__(self, n_members: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_members, n_out))

    def forward(self, x: Tensor) -> Tensor:
        # (K, ..., in) -> (K, ..., out): one batched matmul, member i with its own weight
        n_members, *lead, n_in = x.shape
        x = x.reshape(n_members, -1, n_in)
        if self.weight.shape[-1] == 1:
            # With one output column and one member, bmm becomes a gemv that rounds otherwise
            # than the batched kernel: a member alone would differ from itself with companions.
            y = (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias.unsqueeze(1)
        elif self.fusable:  # the bias joins the next fused loop; baddbmm first copies it out
            y = torch.bmm(x, self.weight) + self.bias.unsqueeze(1)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)
        return y.view(n_members, *lead, -1)


class MemberLayerNorm(FusableForms, nn.Module):
    def __init__(self, n_members: int, n_embd: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_members, n_embd))
        self.bias = nn.Parameter(torch.zeros(n_members, n_embd))

    def forward(self, x: Tensor) -> Tensor:
        # (K, ..., H) -> (K, ..., H), each member with its own scale and shift
        if self.fusable:
            return fusable_layer_norm(x, self.weight, self.bias)
        if x.is_cuda:  # one launch for all members: normalise, then scale and shift
            shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
            y = F.layer_norm(x, x.shape[-1:], eps=1e-5)
            return torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))
        # On the CPU the fused affine kernel, member by member, is twice as fast (and its
        # backward much faster) than the two-step form, whose reductions dominate.
        return torch.stack([F.layer_norm(xi, xi.shape[-1:], wi, bi, eps=1e-5) for xi, wi, bi
                            in zip(x.unbind(0), self.weight.unbind(0), self.bias.unbind(0))])


class MemberDropout(nn.Module):
    """Dropout whose masks for member i come from member i's generator (see `MemberRNG`)."""

    def __init__(self, p: float, rng: MemberRNG):
        super().__init__()
        self.p, self.rng = p, rng

    def forward(self, x: Tensor) -> Tensor:
        # (K, ...): torch's own dropout draws from the global generator, shared by all members
        if not self.training or self.p == 0:
            return x
        keep = torch.empty_like(x)
        for i, gen in enumerate(self.rng.generators()):
            keep[i].bernoulli_(1 - self.p, generator=gen)
        return x * keep / (1 - self.p)


class KVCache:
    """Keys and values of every layer, preallocated for the whole prompt: (K*B, heads, T, hd).

    Writing new keys in place (rather than concatenating) keeps each labelling step O(1) in
    memory traffic for the prefix.
    """

    def __init__(self, n_layer: int, max_len: int):
        self.keys: list[Tensor | None] = [None] * n_layer
        self.values: list[Tensor | None] = [None] * n_layer
        self.max_len = max_len
        self.length = 0  # tokens cached so far; advanced once all layers have seen new ones

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys/values after the prefix; return keys/values of prefix + new."""
        if self.keys[layer] is None:
            shape = (*k.shape[:2], self.max_len, k.shape[3])
            self.keys[layer] = k.new_empty(shape)
            self.values[layer] = v.new_empty(shape)
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens, asked for {end}")
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class CausalSelfAttention(FusableForms, nn.Module):
    def __init__(self, cfg: ModelConfig, n_members: int, rng: MemberRNG, layer: int):
        super().__init__()
        h = cfg.n_embd
        self.c_attn = MemberLinear(n_members, h, 3 * h)  # queries, keys, values of all heads
        self.c_proj = MemberLinear(n_members, h, h)
        self.attn_dropout = MemberDropout(cfg.dropout, rng)
        self.resid_dropout = MemberDropout(cfg.dropout, rng)
        self.n_head, self.layer = cfg.n_head, layer
        self.eager = cfg.attn_implementation == "eager"

    def forward(self, x: Tensor, cache: KVCache | None = None,
                queries: slice | None = None) -> Tensor:
        """x (K, B, t, H) -> (K, B, t_q, H): every position, or those `queries` selects."""
        n_members, _, t, _ = x.shape
        q, k, v = rearrange(self.c_attn(x), "K b t (three nh hd) -> three (K b) nh t hd",
                            three=3, nh=self.n_head)  # each (K*B, nh, t, hd)
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.extend(self.layer, k, v)  # (K*B, nh, past + t, hd)
        if queries is not None:
            q = q[:, :, queries]
        if self.fusable and cache is None and not (self.training and self.attn_dropout.p > 0):
            allowed = self._allowed(past, t, queries, x.device)
            y = matmul_attention(q, k, v, allowed)
        elif self.eager or (self.training and self.attn_dropout.p > 0):
            # SDPA's dropout draws from the global generator: masks must be the member's own
            y = self._eager(q, k, v, self._allowed(past, t, queries, x.device), n_members)
        elif cache is None and queries is None:
            # Contiguous heads: the CPU flash kernel is ~20% slower per training step on the
            # strided views the split leaves (BENCHMARKS.md, speed).
            y = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                               is_causal=True)
        elif cache is None:
            allowed = self._allowed(past, t, queries, x.device)
            y = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                               attn_mask=allowed)
        else:
            # CPU flash attention with 1-2 queries rounds by batch position; the math kernel
            # keeps identical members (stability twins) bit-identical.
            with sdpa_kernel(SDPBackend.MATH):
                allowed = self._allowed(past, t, queries, x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        y = rearrange(y, "(K b) nh t hd -> K b t (nh hd)", K=n_members)
        return self.resid_dropout(self.c_proj(y))

    @staticmethod
    def _allowed(past: int, t: int, queries: slice | None, device) -> Tensor:
        """(t_q, past + t) mask: the query at absolute position i sees keys 0..i."""
        positions = torch.arange(past + t, device=device)
        q_positions = positions[past:] if queries is None else positions[past:][queries]
        return positions[None, :] <= q_positions[:, None]

    def _eager(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, n_members: int) -> Tensor:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))  # (K*B, nh, t_q, t_k)
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        att = self.attn_dropout(att.view(n_members, -1, *att.shape[1:])).flatten(0, 1)
        return att @ v  # (K*B, nh, t_q, hd)


class MLP(FusableForms, nn.Module):
    def __init__(self, cfg: ModelConfig, n_members: int, rng: MemberRNG):
        super().__init__()
        self.c_fc = MemberLinear(n_members, cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = MemberLinear(n_members, 4 * cfg.n_embd, cfg.n_embd)
        self.dropout = MemberDropout(cfg.dropout, rng)

    def forward(self, x: Tensor) -> Tensor:
        h = self.c_fc(x)
        h = gelu_tanh_as_sigmoid(h) if self.fusable else F.gelu(h, approximate="tanh")
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, n_members: int, rng: MemberRNG, layer: int):
        super().__init__()
        self.ln_1 = MemberLayerNorm(n_members, cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, n_members, rng, layer)
        self.ln_2 = MemberLayerNorm(n_members, cfg.n_embd)
        self.mlp = MLP(cfg, n_members, rng)

    def forward(self, x: Tensor, cache: KVCache | None = None,
                queries: slice | None = None) -> Tensor:
        # (K, B, t, H) -> (K, B, t_q, H); positions no query reads are dropped here
        x = (x if queries is None else x[:, :, queries]) + self.attn(self.ln_1(x), cache, queries)
        return x + self.mlp(self.ln_2(x))


class NativeGPT2(Ensemble):
    """The whole learner for K members: read-in -> GPT-2 -> read-out, prompts (K, B, k, d)."""

    def __init__(self, cfg: ModelConfig, d: int, k: int, n_members: int):
        super().__init__()
        if cfg.arch != "gpt2":
            raise ValueError(f"NativeGPT2 needs model.arch='gpt2', got {cfg.arch!r}")
        self.cfg, self.d, self.k, self.n_members = cfg, d, k, n_members
        h, rng = cfg.n_embd, self.member_rng
        self.read_in = MemberLinear(n_members, d, h)
        self.wpe = nn.Parameter(torch.zeros(n_members, 2 * k, h))  # one row per token position
        self.drop = MemberDropout(cfg.dropout, rng)
        self.h = nn.ModuleList(Block(cfg, n_members, rng, i) for i in range(cfg.n_layer))
        self.ln_f = MemberLayerNorm(n_members, h)
        self.read_out = MemberLinear(n_members, h, 2 if cfg.gaussian_head else 1)

    @torch.no_grad()
    def init_weights_(self, gens: list[torch.Generator]) -> NativeGPT2:
        """Member i from gens[i]: what `ICLModel.init_weights_` draws, in the same order."""
        if len(gens) != self.n_members:
            raise ValueError(f"{len(gens)} generators for {self.n_members} members")
        for m in self.modules():  # what is not drawn: biases 0, layer-norm scales 1
            if isinstance(m, (MemberLinear, MemberLayerNorm)):
                m.bias.zero_()
            if isinstance(m, MemberLayerNorm):
                m.weight.fill_(1.0)
        for i, gen in enumerate(gens):
            for lin in (self.read_in, self.read_out):
                lin.weight[i], lin.bias[i] = read_map(*lin.weight.shape[1:], self.cfg.init, gen)
            self.wpe[i] = normal(self.wpe.shape[1:], INIT_STD, gen)
            for block in self.h:  # c_attn, attn.c_proj, c_fc, mlp.c_proj: transformers' order
                for name, p in block.named_parameters():
                    if p.ndim == 3:
                        p[i] = normal(p.shape[1:], gpt2_std(name, self.cfg.n_layer), gen)
        return self

    # -- forward -------------------------------------------------------------------------------
    def hidden(self, tokens: Tensor, cache: KVCache | None = None,
               keep: slice | None = None) -> Tensor:
        """tokens (K, B, t, d) -> final hidden states (K, B, t_keep, H), extending `cache`.

        With `keep`, only those positions come out, and the last layer computes its attention
        output and MLP for them alone (the other positions' outputs are never read).
        """
        past = 0 if cache is None else cache.length
        t = tokens.shape[2]
        if past + t > 2 * self.k:
            check_prompt_length((past + t + 1) // 2, self.k)
        x = self.drop(self.read_in(tokens) + self.wpe[:, None, past:past + t])  # (K, B, t, H)
        for block in self.h:
            x = block(x, cache, keep if block is self.h[-1] else None)
        if cache is not None:
            cache.length += t
        return self.ln_f(x)

    def readout(self, hidden: Tensor) -> Prediction:
        out = self.read_out(hidden)  # (K, B, t, 1 or 2)
        return Prediction(out[..., 0], out[..., 1] if self.cfg.gaussian_head else None)

    def forward(self, xs: Tensor, ys: Tensor) -> Prediction:
        # xs (K, B, k', d), ys (K, B, k') -> predictions (K, B, k') read at the x tokens
        return self.readout(self.hidden(interleave(xs, ys), keep=slice(0, None, 2)))

    def step(self, tokens: Tensor, cache: KVCache) -> Prediction:
        """Append tokens (K, B, t, d) to `cache`; the prediction at the last of them, (K, B, 1)."""
        return self.readout(self.hidden(tokens, cache, keep=slice(-1, None)))

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layer, 2 * self.k)

    @torch.no_grad()
    def select(self, index: list[int]) -> NativeGPT2:
        device = self.wpe.device
        out = NativeGPT2(self.cfg, self.d, self.k, len(index)).to(device)
        at = torch.as_tensor(index, dtype=torch.long, device=device)
        out.load_state_dict({name: value.index_select(0, at)
                             for name, value in self.state_dict().items()})
        out.member_rng.select_(self.member_rng, index)
        return out.train(self.training)

    # -- conversion to and from the transformers-backed ICLModel -------------------------------
    @staticmethod
    def reference_name(name: str) -> str:
        """Our state-dict name -> the ICLModel's (read_in/read_out are nn.Linear there)."""
        if name.startswith(("read_in.", "read_out.")):
            return name
        return "backbone.gpt2." + ("wpe.weight" if name == "wpe" else name)

    @staticmethod
    def _transposed(name: str) -> bool:
        return name in ("read_in.weight", "read_out.weight")  # nn.Linear stores (out, in)

    def member(self, i: int) -> ICLModel:
        model = ICLModel(self.cfg, self.d, self.k)
        state = model.state_dict()
        state["backbone.gpt2.wte.weight"].zero_()  # never read (inputs_embeds)
        for name, value in self.state_dict().items():
            value = value[i].detach().cpu()
            state[self.reference_name(name)] = (value.T if self._transposed(name) else value).clone()
        model.load_state_dict(state)
        return model

    @torch.no_grad()
    def load_member_(self, i: int, model: ICLModel) -> None:
        state = model.state_dict()
        for name, p in self.named_parameters():
            value = state[self.reference_name(name)]
            p[i] = value.T if self._transposed(name) else value
