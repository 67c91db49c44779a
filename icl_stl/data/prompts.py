"""Prompts and finite prompt datasets.

A prompt is (x_1, y_1, ..., x_k, y_k) for one task. `PromptSet` holds n of them as tensors:
the theorem's finite training set S_0 is a `PromptSet`, so is every generation's S_i and every
batch. It is indexable, concatenable, savable, and can replace one prompt by another (the
neighbouring dataset S_0' of the stability probe).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import Task

# The stream every entry point draws a run's test prompts from (train runs, loops, icl-stl-eval):
# under a run's seed, icl-stl-eval sees exactly the prompts the run reported on.
TEST_STREAM = "test"


@dataclass(frozen=True)
class PromptSet:
    xs: Tensor  # (n, k, d)
    ys: Tensor  # (n, k)
    params: Tensor | None = None  # (n, p) true task parameters; None where unknown (synthetic)

    def __post_init__(self) -> None:
        if self.xs.ndim != 3 or self.ys.shape != self.xs.shape[:2]:
            raise ValueError(f"PromptSet needs xs (n, k, d) and ys (n, k), got "
                             f"{tuple(self.xs.shape)} and {tuple(self.ys.shape)}")
        if self.params is not None and self.params.shape[0] != self.xs.shape[0]:
            raise ValueError("PromptSet params must have one row per prompt")

    # -- shape -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.xs.shape[0]

    @property
    def k(self) -> int:
        return self.xs.shape[1]

    @property
    def d(self) -> int:
        return self.xs.shape[2]

    @property
    def device(self) -> torch.device:
        return self.xs.device

    # -- selection ---------------------------------------------------------------------------
    def __getitem__(self, index: int | slice | Tensor) -> PromptSet:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        params = None if self.params is None else self.params[index]
        return PromptSet(self.xs[index], self.ys[index], params)

    def replace(self, index: int, prompt: PromptSet) -> PromptSet:
        """A copy with prompt `index` replaced by the single prompt `prompt` (S_0 -> S_0')."""
        if len(prompt) != 1 or prompt.xs.shape[1:] != self.xs.shape[1:]:
            raise ValueError(f"replace needs one prompt of shape (1, {self.k}, {self.d}), "
                             f"got {tuple(prompt.xs.shape)}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"prompt index {index} out of range for {len(self)} prompts")
        xs, ys = self.xs.clone(), self.ys.clone()
        xs[index], ys[index] = prompt.xs[0].to(xs), prompt.ys[0].to(ys)
        params = None
        if self.params is not None and prompt.params is not None:
            params = self.params.clone()
            params[index] = prompt.params[0].to(params)
        return PromptSet(xs, ys, params)

    @staticmethod
    def concat(sets: list[PromptSet]) -> PromptSet:
        sets = [s for s in sets if len(s) > 0] or sets[:1]
        params = None
        if all(s.params is not None for s in sets):
            params = torch.cat([s.params for s in sets])
        return PromptSet(torch.cat([s.xs for s in sets]), torch.cat([s.ys for s in sets]), params)

    def to(self, device: torch.device | str) -> PromptSet:
        params = None if self.params is None else self.params.to(device)
        return PromptSet(self.xs.to(device), self.ys.to(device), params)

    def truncate(self, k: int, d: int | None = None) -> PromptSet:
        """The first k pairs of every prompt (and the first d input coordinates)."""
        d = self.d if d is None else d
        return PromptSet(self.xs[:, :k, :d], self.ys[:, :k], self.params)

    # -- identity and persistence ------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of the contents: two sets with the same fingerprint hold the same data."""
        h = hashlib.sha256()
        for t in (self.xs, self.ys):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def state_dict(self) -> dict:
        return {"xs": self.xs.cpu(), "ys": self.ys.cpu(), "params": None if self.params is None
                else self.params.cpu()}

    @staticmethod
    def from_state_dict(state: dict) -> PromptSet:
        return PromptSet(state["xs"], state["ys"], state.get("params"))

    def save(self, path: str | Path) -> None:
        from icl_stl.persistence import save_state

        save_state(Path(path), self.state_dict())

    @staticmethod
    def load(path: str | Path) -> PromptSet:
        from icl_stl.persistence import load_state

        return PromptSet.from_state_dict(load_state(Path(path)))


def sample_prompts(task: Task, n: int, k: int, gen: torch.Generator) -> PromptSet:
    """n fresh prompts of k pairs, all drawn from `gen` (vectorised, no loop over prompts)."""
    params = task.sample_params(n, gen)
    xs = task.sample_xs(n, k, gen)
    ys = task.add_noise(task.f(params, xs), gen)
    return PromptSet(xs, ys, params)


def pad_stack(tensors: list[Tensor]) -> Tensor:
    """Stack per-member tensors of different lengths (dim 0), zero-padded to the longest."""
    longest = max(t.shape[0] for t in tensors)
    out = tensors[0].new_zeros(len(tensors), longest, *tensors[0].shape[1:])
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def draw_test_prompts(task: Task, n_prompts: int, k: int, seed: int) -> PromptSet:
    """The test set of a run with this seed: fresh prompts from the test stream."""
    return sample_prompts(task, n_prompts, k, make_generator(seed, TEST_STREAM))
