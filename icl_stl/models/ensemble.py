"""K in-context learners trained and run together, each on its own data.

The testbed's models are small, so one model leaves a GPU idle and every experiment multiplies
runs (lambdas x seeds x twin loops). An ensemble puts a member axis K in front of everything:
inputs (K, B, k, d) -> predictions (K, B, k). `model.engine` picks the implementation:

- `native`: `icl_stl.models.gpt2.NativeGPT2`, GPT-2 written with stacked (K, ...) parameters: one
  batched matmul per layer for all members, and a KV cache for labelling.
- `reference`: `ModuleEnsemble`, K separate `ICLModel`s run one after another: the
  `transformers` GPT2Model, or the LSTM and MLP backbones.

A member's computation never depends on the other members: per-member gradient clipping,
element-wise Adam, and dropout masks from the member's own generator.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import Tensor, nn

from icl_stl.config import ModelConfig
from icl_stl.models.model import ICLModel, Prediction


class MemberRNG:
    """One dropout generator per member, shared by every dropout site of an ensemble.

    Seeded by training from each member's batch seed, so twins with identical data draw
    identical masks, and checkpointed with the training state so a resume continues them.
    """

    def __init__(self) -> None:
        self.gens: list[torch.Generator] | None = None

    def seed(self, seeds: list[int], device: torch.device) -> None:
        self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def state(self) -> list[Tensor]:
        return [g.get_state() for g in self.generators()]

    def load_state(self, states: list[Tensor]) -> None:
        for g, s in zip(self.generators(), states, strict=True):
            g.set_state(s)

    def select_(self, source: MemberRNG, index: list[int]) -> None:
        """Become copies of `source`'s generators index[0], index[1], ... (unseeded stays so)."""
        if source.gens is None:
            self.gens = None
            return
        self.gens = []
        for i in index:
            gen = torch.Generator(device=source.gens[i].device)
            gen.set_state(source.gens[i].get_state())
            self.gens.append(gen)

    def generators(self) -> list[torch.Generator]:
        if self.gens is None:
            raise RuntimeError("dropout in training mode needs per-member generators: "
                               "call ensemble.member_rng.seed(seeds, device) first")
        return self.gens


class Ensemble(nn.Module):
    """Interface: K members, forward (K, B, k, d), (K, B, k) -> Prediction of (K, B, k).

    The defaults serve parameters with a leading member axis (`member_axis`).
    """

    n_members: int
    cfg: ModelConfig
    member_axis: bool = True  # whether parameters carry a leading member axis

    def __init__(self) -> None:
        super().__init__()
        self.member_rng = MemberRNG()

    def grad_norms(self) -> Tensor:
        """(K,) global gradient norm of each member."""
        grads = [p.grad.detach() for p in self.parameters() if p.grad is not None]
        # One fused call over every (member, parameter) block, so a member's norm is computed
        # from its own blocks alone, the same way in an ensemble of any size.
        norms = torch._foreach_norm([g[i] for i in range(self.n_members) for g in grads])
        return torch.stack(norms).view(self.n_members, len(grads)).pow(2).sum(1).sqrt()

    def scale_grads_(self, coef: Tensor) -> None:
        """Multiply member i's gradients by coef[i]."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, [coef.view(-1, *([1] * (g.ndim - 1))) for g in grads])

    def member(self, i: int) -> ICLModel:
        """Member i as a standalone `ICLModel` (the transformers path), on the CPU."""
        raise NotImplementedError

    def load_member_(self, i: int, model: ICLModel) -> None:
        raise NotImplementedError

    def select(self, index: list[int]) -> Ensemble:
        """A new ensemble whose member j is a copy of member index[j] (parameters, dropout
        generators, device and train/eval mode); members may repeat. Generation 0 trains each
        distinct member once and expands the result to every loop with this."""
        raise NotImplementedError

    def clip_grads_(self, max_norm: float) -> Tensor:
        """Per-member clipping, exactly as torch.nn.utils.clip_grad_norm_ does for one model."""
        norms = self.grad_norms()
        if max_norm > 0:
            self.scale_grads_(torch.clamp(max_norm / (norms + 1e-6), max=1.0))
        return norms


@contextlib.contextmanager
def global_rng_from(gen: torch.Generator):
    """Run code that draws from torch's global generator (transformers', nn.LSTM's dropout)
    from `gen` instead, and advance `gen` by what it drew."""
    cuda = gen.device.type == "cuda"
    with torch.random.fork_rng(devices=[gen.device] if cuda else []):
        if cuda:
            torch.cuda.set_rng_state(gen.get_state(), gen.device)
        else:
            torch.set_rng_state(gen.get_state())
        yield
        gen.set_state(torch.cuda.get_rng_state(gen.device) if cuda else torch.get_rng_state())


class ModuleEnsemble(Ensemble):
    """K `ICLModel`s, one after another: the reference engine, and the one for LSTM and MLP."""

    member_axis = False

    def __init__(self, models: list[ICLModel]):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.n_members, self.cfg = len(models), models[0].cfg

    def forward(self, xs: Tensor, ys: Tensor) -> Prediction:
        outs = []
        for i, (m, x, y) in enumerate(zip(self.models, xs, ys)):
            if self.training and self.cfg.dropout > 0:
                with global_rng_from(self.member_rng.generators()[i]):
                    outs.append(m(x, y))
            else:
                outs.append(m(x, y))
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

    def select(self, index: list[int]) -> ModuleEnsemble:
        out = ModuleEnsemble([copy.deepcopy(self.models[i]) for i in index])
        out.member_rng.select_(self.member_rng, index)
        return out.train(self.training)

