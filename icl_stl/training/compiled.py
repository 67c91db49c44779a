"""The compiled training forward (`runtime.compile`): inductor on the native model's fusable forms.

On the 2-core CPU this is the faster engine (BENCHMARKS.md, engine speed): the model's
layer norms, GELUs, softmaxes and residual adds fuse into a few loops, attention becomes two
batched matmuls, and inductor's C++ wrapper calls the kernels without Python in between.

What stays exact, and what does not:
- A member's numbers do not depend on its companions at a fixed thread count: the kernels are
  specialised to each ensemble size (`dynamic=False`), and every size >= 2 rounds the same way.
  Inductor treats a size of 1 specially, and an ensemble of one would round otherwise (some
  reductions, e.g. the position embedding's gradient, take another order); it is run as an
  ensemble of two, its member beside a gradient-free copy of itself
  (tests/training/test_compiled_engine.py checks K = 1, 2, 3 bit for bit on 1 and 2 threads).
- The numbers depend on the thread count (a compiled reduction splits by threads), and they
  differ from the uncompiled path in the last bits (other forms, other rounding), so runs that
  are compared fix `runtime.threads` and `runtime.compile`, and the committed results that were
  made without compile keep their exact path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.func import functional_call

from icl_stl.models.ensemble import Ensemble
from icl_stl.models.fusable import set_fusable
from icl_stl.models.model import Prediction

# Inductor's C++ wrapper calls each step's ~100 kernels from C++: 4% faster per step on the
# 2-core CPU (measured), at a longer first compile.
CPU_OPTIONS = {"cpp_wrapper": True}

Forward = Callable[[Tensor, Tensor], Prediction]


@contextlib.contextmanager
def fusable_forms(model: Ensemble, on: bool) -> Iterator[None]:
    """The native model's fusable forms while training runs compiled; the reference forms again
    afterwards (evaluation and labelling), whatever happens in between."""
    if not (on and model.member_axis):
        yield
        return
    set_fusable(model, True)
    try:
        yield
    finally:
        set_fusable(model, False)


def compiled_forward(model: Ensemble, device: torch.device) -> Forward:
    """model(xs, ys) compiled for training (inside `fusable_forms`, for the native model)."""
    options = CPU_OPTIONS if device.type == "cpu" else None
    compiled = torch.compile(model, dynamic=False, options=options)
    if not (model.member_axis and model.n_members == 1 and model.cfg.dropout == 0):
        return compiled
    return torch.compile(_as_pair_forward(model), dynamic=False, options=options)


def _as_pair_forward(model: Ensemble) -> Forward:
    """An ensemble of one computed as an ensemble of two: itself and a detached copy."""

    def forward(xs: Tensor, ys: Tensor) -> Prediction:
        params = {name: torch.cat([p, p.detach()]) for name, p in model.named_parameters()}
        pred = functional_call(model, params, (xs.expand(2, *xs.shape[1:]),
                                               ys.expand(2, *ys.shape[1:])))
        log_var = None if pred.log_var is None else pred.log_var[:1]
        return Prediction(pred.mean[:1], log_var)

    return forward


def _squared_norms(grads: list[Tensor]) -> Tensor:
    # each (K, ...) -> (K,); one fused reduction per parameter instead of one call per member
    return torch.stack([g.reshape(g.shape[0], -1).square().sum(1) for g in grads]).sum(0)


class CompiledClipping:
    """Per-member gradient clipping for the compiled path: the norms in one compiled function.

    The uncompiled path computes the norms with one `_foreach_norm` over every (member,
    parameter) block, ~350 small calls per step at K = 8: 1-1.3 ms of a 55 ms compiled step
    (measured). An ensemble of one is reduced as a pair of copies, for the reason given at
    the top of this module.
    """

    def __init__(self, model: Ensemble, device: torch.device):
        self.model = model
        options = CPU_OPTIONS if device.type == "cpu" else None
        self.squared_norms = torch.compile(_squared_norms, dynamic=False, options=options)
        self.pad = model.n_members == 1

    def __call__(self, max_norm: float) -> Tensor:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if self.pad:
            norms = self.squared_norms([torch.cat([g, g]) for g in grads])[:1].sqrt()
        else:
            norms = self.squared_norms(grads).sqrt()
        if max_norm > 0:
            self.model.scale_grads_(torch.clamp(max_norm / (norms + 1e-6), max=1.0))
        return norms
