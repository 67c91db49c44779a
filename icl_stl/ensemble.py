"""K in-context learners trained and run together, each on its own data.

The testbed's models are small, so one model leaves a GPU idle and every experiment multiplies
runs (lambdas x seeds x twin loops). An ensemble puts a member axis K in front of everything:
inputs (K, B, k, d) -> predictions (K, B, k). Two implementations share one interface:

- `BatchedGPT2`: the GPT-2 block written natively with stacked (K, ...) parameters, one batched
  matmul per layer for all members, and a KV cache for position-by-position labelling.
- `ModuleEnsemble`: K separate `ICLModel`s run one after another. It is the reference (the
  `transformers` GPT2Model path) and serves any backbone (LSTM, MLP).

Both give each member exactly the computation of a single model (per-member gradient clipping,
element-wise Adam), so a member matches the model trained alone to float tolerance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from icl_stl.config import ModelConfig
from icl_stl.model import ICLModel, Prediction, build_model, check_prompt_length, interleave


class Ensemble(nn.Module):
    """Interface: K members, forward (K, B, k, d), (K, B, k) -> Prediction of (K, B, k)."""

    n_members: int
    cfg: ModelConfig
    member_axis: bool  # whether parameters carry a leading member axis

    def grad_norms(self) -> Tensor:
        """(K,) global gradient norm of each member."""
        raise NotImplementedError

    def scale_grads_(self, coef: Tensor) -> None:
        """Multiply member i's gradients by coef[i]."""
        raise NotImplementedError

    def member(self, i: int) -> ICLModel:
        """Member i as a standalone `ICLModel` (the transformers path), on the CPU."""
        raise NotImplementedError

    def load_member_(self, i: int, model: ICLModel) -> None:
        raise NotImplementedError

    def clip_grads_(self, max_norm: float) -> Tensor:
        """Per-member clipping, exactly as torch.nn.utils.clip_grad_norm_ does for one model."""
        norms = self.grad_norms()
        if max_norm > 0:
            self.scale_grads_(torch.clamp(max_norm / (norms + 1e-6), max=1.0))
        return norms


class ModuleEnsemble(Ensemble):
    member_axis = False

    def __init__(self, models: list[ICLModel]):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.n_members, self.cfg = len(models), models[0].cfg

    def forward(self, xs: Tensor, ys: Tensor) -> Prediction:
        outs = [m(x, y) for m, x, y in zip(self.models, xs, ys)]
        log_var = None if outs[0].log_var is None else torch.stack([o.log_var for o in outs])
        return Prediction(torch.stack([o.mean for o in outs]), log_var)

    def grad_norms(self) -> Tensor:
        norms = []
        for m in self.models:
            grads = [p.grad.detach().pow(2).sum() for p in m.parameters() if p.grad is not None]
            norms.append(torch.stack(grads).sum().sqrt())
        return torch.stack(norms)

    def scale_grads_(self, coef: Tensor) -> None:
        for m, c in zip(self.models, coef):
            for p in m.parameters():
                if p.grad is not None:
                    p.grad.mul_(c)

    def member(self, i: int) -> ICLModel:
        model = ICLModel(self.cfg, self.models[i].d, self.models[i].k)
        model.load_state_dict({k: v.detach().cpu() for k, v in self.models[i].state_dict().items()})
        return model

    def load_member_(self, i: int, model: ICLModel) -> None:
        self.models[i].load_state_dict(model.state_dict())


# ---------------------------------------------------------------------------------------------
# Native batched GPT-2. Parameter names mirror transformers' GPT2Model so members convert both
# ways; Conv1D weights are stored (in, out) there, which is the layout used here too.

_LAYER_PARAMS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                 "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                 "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")


def _key(name: str) -> str:
    return name.replace(".", "__")


class KVCache:
    """Keys and values of every layer, preallocated for the whole prompt: (K*B, heads, T, hd).

    Writing new keys in place (rather than concatenating) keeps each labelling step O(1) in
    memory traffic for the prefix.
    """

    def __init__(self, n_layer: int, max_len: int):
        self.keys: list[Tensor | None] = [None] * n_layer
        self.values: list[Tensor | None] = [None] * n_layer
        self.max_len = max_len
        self.length = 0

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


class BatchedGPT2(Ensemble):
    member_axis = True

    def __init__(self, cfg: ModelConfig, d: int, k: int, n_members: int):
        super().__init__()
        if cfg.arch != "gpt2":
            raise ValueError(f"BatchedGPT2 needs model.arch='gpt2', got {cfg.arch!r}")
        self.cfg, self.d, self.k, self.n_members = cfg, d, k, n_members
        h, out, t = cfg.n_embd, 2 if cfg.gaussian_head else 1, 2 * k
        shapes = {"read_in.weight": (d, h), "read_in.bias": (h,), "wpe.weight": (t, h),
                  "ln_f.weight": (h,), "ln_f.bias": (h,), "read_out.weight": (h, out),
                  "read_out.bias": (out,)}
        layer_shapes = {"ln_1.weight": (h,), "ln_1.bias": (h,), "attn.c_attn.weight": (h, 3 * h),
                        "attn.c_attn.bias": (3 * h,), "attn.c_proj.weight": (h, h),
                        "attn.c_proj.bias": (h,), "ln_2.weight": (h,), "ln_2.bias": (h,),
                        "mlp.c_fc.weight": (h, 4 * h), "mlp.c_fc.bias": (4 * h,),
                        "mlp.c_proj.weight": (4 * h, h), "mlp.c_proj.bias": (h,)}
        for layer in range(cfg.n_layer):
            shapes.update({f"h.{layer}.{n}": s for n, s in layer_shapes.items()})
        self.names = list(shapes)
        self.params = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.zeros(n_members, *s)) for n, s in shapes.items()})

    # -- conversion to and from transformers-backed members ----------------------------------
    def _member_name(self, name: str) -> str:
        """Our name -> the ICLModel state-dict name (read_in/out are nn.Linear: transposed)."""
        if name.startswith(("read_in", "read_out")):
            return name
        return f"backbone.gpt2.{name}"

    def member(self, i: int) -> ICLModel:
        model = ICLModel(self.cfg, self.d, self.k)
        state = model.state_dict()
        state["backbone.gpt2.wte.weight"].zero_()  # unused (inputs_embeds); not from global RNG
        for name in self.names:
            value = self.params[_key(name)][i].detach().cpu()
            if name in ("read_in.weight", "read_out.weight"):
                value = value.T
            state[self._member_name(name)] = value.clone()
        model.load_state_dict(state)
        return model

    def load_member_(self, i: int, model: ICLModel) -> None:
        state = model.state_dict()
        with torch.no_grad():
            for name in self.names:
                value = state[self._member_name(name)]
                if name in ("read_in.weight", "read_out.weight"):
                    value = value.T
                self.params[_key(name)][i].copy_(value)

    # -- gradients -----------------------------------------------------------------------------
    def grad_norms(self) -> Tensor:
        # Accumulate parameter by parameter: a stacked (P, K) reduction rounds differently for
        # different member columns, and identical members must get identical clipping.
        grads = [p.grad.detach() for p in self.params.values() if p.grad is not None]
        # One fused call for every (member, parameter) block; rows of (K, P) then reduce alike.
        norms = torch._foreach_norm([g[i] for i in range(self.n_members) for g in grads])
        return torch.stack(norms).view(self.n_members, len(grads)).pow(2).sum(1).sqrt()

    def scale_grads_(self, coef: Tensor) -> None:
        for p in self.params.values():
            if p.grad is not None:
                p.grad.mul_(coef.view(-1, *([1] * (p.ndim - 1))))

    # -- forward -------------------------------------------------------------------------------
    def _p(self, name: str) -> Tensor:
        return self.params[_key(name)]

    def _linear(self, x: Tensor, name: str) -> Tensor:
        # x (K, B, T, i) @ W (K, i, o) + b (K, o): one batched matmul for all members
        w, b = self._p(f"{name}.weight"), self._p(f"{name}.bias")
        kk, bb, t, i = x.shape
        if kk == 1:  # one member: a plain fused GEMM, no batch dimension to carry
            return torch.addmm(b[0], x.reshape(bb * t, i), w[0]).view(1, bb, t, -1)
        y = torch.baddbmm(b.unsqueeze(1), x.reshape(kk, bb * t, i), w)
        return y.view(kk, bb, t, -1)

    def _norm(self, x: Tensor, name: str) -> Tensor:
        w, b = self._p(f"{name}.weight"), self._p(f"{name}.bias")
        if x.shape[0] == 1:  # one member: the fused affine layer norm
            return F.layer_norm(x, x.shape[-1:], w[0], b[0], eps=1e-5)
        y = F.layer_norm(x, x.shape[-1:], eps=1e-5)
        return torch.addcmul(b[:, None, None], y, w[:, None, None])

    def _attention(self, x: Tensor, layer: int, cache: KVCache | None,
                   queries: slice | None = None) -> Tensor:
        kk, bb, t, _ = x.shape
        qkv = self._linear(x, f"h.{layer}.attn.c_attn")  # (K, B, t, 3H)
        q, k, v = rearrange(qkv, "K b t (three nh hd) -> three (K b) nh t hd", three=3,
                            nh=self.cfg.n_head)
        if queries is not None:  # only some positions' outputs are needed: query those alone
            q = q[:, :, queries]
            positions = torch.arange(t, device=x.device)
            allowed = positions[None, :] <= positions[queries][:, None]  # (t_q, t)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        elif cache is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            past = cache.length
            k, v = cache.extend(layer, k, v)
            # New token i (absolute position past + i) sees keys 0..past + i.
            allowed = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
            # CPU flash attention with 1-2 queries rounds by batch position; the math kernel
            # keeps identical members (stability twins) bit-identical.
            with sdpa_kernel(SDPBackend.MATH):
                att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        att = rearrange(att, "(K b) nh t hd -> K b t (nh hd)", K=kk)
        return self._linear(att, f"h.{layer}.attn.c_proj")

    def hidden(self, tokens: Tensor, cache: KVCache | None = None,
               keep: slice | None = None) -> Tensor:
        """tokens (K, B, t, d) -> final hidden states (K, B, t, H), extending `cache` if given.

        With `keep`, only those positions are returned, and the last layer computes its
        attention output and MLP for them alone (the other positions' outputs are never read).
        """
        past = 0 if cache is None else cache.length
        t = tokens.shape[2]
        if past + t > 2 * self.k:
            check_prompt_length((past + t + 1) // 2, self.k)
        h = self._linear(tokens, "read_in") + self._p("wpe.weight")[:, None, past:past + t]
        for layer in range(self.cfg.n_layer):
            queries = keep if layer == self.cfg.n_layer - 1 and cache is None else None
            att = self._attention(self._norm(h, f"h.{layer}.ln_1"), layer, cache, queries)
            h = (h if queries is None else h[:, :, queries]) + att
            m = self._linear(self._norm(h, f"h.{layer}.ln_2"), f"h.{layer}.mlp.c_fc")
            h = h + self._linear(F.gelu(m, approximate="tanh"), f"h.{layer}.mlp.c_proj")
        if cache is not None:
            cache.length += t
        h = self._norm(h, "ln_f")
        return h if keep is None or cache is None else h[:, :, keep]

    def readout(self, hidden: Tensor) -> Prediction:
        out = self._linear(hidden, "read_out")  # (K, B, t, 1 or 2)
        return Prediction(out[..., 0], out[..., 1] if self.cfg.gaussian_head else None)

    def forward(self, xs: Tensor, ys: Tensor) -> Prediction:
        return self.readout(self.hidden(interleave(xs, ys), keep=slice(0, None, 2)))

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layer, 2 * self.k)


def build_ensemble(cfg: ModelConfig, d: int, k: int, gens: list[torch.Generator],
                   engine: str = "batched") -> Ensemble:
    """K members, member i initialised from gens[i] exactly as `build_model` would."""
    models = [build_model(cfg, d, k, g) for g in gens]
    if engine == "batched" and cfg.arch == "gpt2" and cfg.dropout == 0:
        ensemble = BatchedGPT2(cfg, d, k, len(models))
        for i, m in enumerate(models):
            ensemble.load_member_(i, m)
        return ensemble
    return ModuleEnsemble(models)
