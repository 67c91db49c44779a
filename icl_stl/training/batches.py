"""Training batches: member i's (B, k, d) prompts from its own set or stream, with its own
generator, and the stratified draws of `loop.real_weight` (a share of each batch from the real
part of the member's set)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from icl_stl.data.prompts import sample_prompts
from icl_stl.data.tasks import Task

if TYPE_CHECKING:
    from icl_stl.training.engine import MemberData

__all__ = ["BatchSampler", "stratified_indices"]


def stratified_indices(real_size: int, total: int, real_weight: float, batch_size: int,
                       gen: torch.Generator) -> Tensor:
    """One batch of indices into a set whose first `real_size` of `total` prompts are real:
    r of them real (uniform with replacement over the real part), the other B - r synthetic.

    r = floor(w B) + Bernoulli(frac(w B)), the Bernoulli from the member's own batch stream:
    stochastic rounding, so E[r] = w B exactly whatever B (a fixed round(w B) would give a
    share of 40/64 = 0.625 at w = 0.618), with the least spread (r takes the two whole numbers
    around w B). The loss stays the unweighted mean over the batch, so the real part's expected
    share of each step's loss and gradient is w. Its draws: one uniform, then r real and
    B - r synthetic indices, all from `gen`."""
    exact = real_weight * batch_size
    whole = math.floor(exact)
    extra = int(torch.rand((), generator=gen).item() < exact - whole)
    n_real = min(batch_size, whole + extra)
    real = torch.randint(real_size, (n_real,), generator=gen) if n_real else None
    rest = batch_size - n_real
    synthetic = (real_size + torch.randint(total - real_size, (rest,), generator=gen)
                 if rest else None)
    return torch.cat([part for part in (real, synthetic) if part is not None])


class BatchSampler:
    """Draws (K, B, k, d) batches: member i from its own set or stream, with its own generator
    (stratified between its real and synthetic parts when it has a `real_weight`)."""

    def __init__(self, members: list[MemberData], task: Task, k: int, batch_size: int,
                 device: torch.device):
        self.task, self.k, self.batch_size, self.device = task, k, batch_size, device
        self.datasets = [None if m.dataset is None else m.dataset.to(device) for m in members]
        self.strata = [None if m.real_weight is None or m.dataset is None
                       else (int(m.real_size), float(m.real_weight)) for m in members]
        for strata, data in zip(self.strata, self.datasets):
            if strata is not None and not (0.0 <= strata[1] <= 1.0 and (
                    strata[1] == 0 or strata[0] > 0) and (strata[1] == 1 or strata[0] < len(data))):
                raise ValueError(f"real_weight {strata[1]} needs a real part (real_size "
                                 f"{strata[0]}) and, below 1, a synthetic part (of {len(data)})")
        # Index draws happen on the CPU so batch order is the same on every device.
        self.gens = []
        for m in members:
            on = "cpu" if m.dataset is not None else device
            g = torch.Generator(device=on)
            g.manual_seed(m.batch_seed)
            self.gens.append(g)

    def sample(self, d_cur: int, k_cur: int) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for data, gen, strata in zip(self.datasets, self.gens, self.strata):
            if data is None:
                batch = sample_prompts(self.task, self.batch_size, self.k, gen)
                bx = batch.xs
                if d_cur < self.task.d:  # the curriculum hides the last coordinates of x
                    bx = torch.cat([bx[..., :d_cur], torch.zeros_like(bx[..., d_cur:])], -1)
                    by = self.task.add_noise(self.task.f(batch.params, bx), gen)
                else:
                    by = batch.ys
            else:
                idx = (torch.randint(len(data), (self.batch_size,), generator=gen)
                       if strata is None
                       else stratified_indices(strata[0], len(data), strata[1],
                                               self.batch_size, gen))
                idx = idx.to(self.device, non_blocking=True)
                bx, by = data.xs[idx], data.ys[idx]
            xs.append(bx[:, :k_cur])
            ys.append(by[:, :k_cur])
        return torch.stack(xs), torch.stack(ys)

    def state(self) -> list[Tensor]:
        return [g.get_state() for g in self.gens]

    def load_state(self, states: list[Tensor]) -> None:
        for g, s in zip(self.gens, states):
            g.set_state(s)
