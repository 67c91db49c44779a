"""Early stopping on a held-out share of S_0, member by member, without touching the engine.

P4 (error decay in n) is only a statement about n if n is decoupled from the passes over S_0:
with a fixed step budget a small S_0 is memorised and a large one is under-trained. Version 2
therefore holds out `train.held_out_fraction` of each member's S_0 (its own seeded stream, so
the split never depends on anything else), trains on the rest, and keeps, per member, the
parameters of the logging step with the lowest held-out risk. The ensemble trains for the whole
budget; each member is snapshotted on its own, so its stopping point and its parameters never
depend on which companions it trained beside.

The tracker is a `train_ensemble` `on_log` callback. Its state (best step, best held-out risk,
best parameters, every evaluation) is written atomically beside the training checkpoint after
each evaluation and refused on resume when written for other data. A resumed run replays the
steps after its last checkpoint exactly (the engine's guarantee), so an evaluation already
recorded for a replayed step is re-checked, never double-counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from icl_stl.config import ConfigError
from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import make_generator
from icl_stl.models.ensemble import Ensemble
from icl_stl.persistence import load_state, save_state
from icl_stl.persistence.identity import describe_differences
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.evaluation import model_errors

HELD_OUT_STREAM = "held_out"  # the split's own stream: (seed, "held_out")


def held_out_count(n: int, fraction: float) -> int:
    """How many of n prompts are held out: round(fraction n); 0 when the fraction is 0."""
    return int(round(fraction * n)) if fraction > 0 else 0


def check_held_out(ns: list[int], fraction: float, path: str = "train.held_out_fraction") -> None:
    """ConfigError unless every n keeps at least one prompt on each side of the split."""
    if fraction <= 0:
        return
    for n in ns:
        held = held_out_count(n, fraction)
        if held < 1 or held >= n:
            raise ConfigError(f"{path} must leave at least one held-out and one training prompt "
                              f"of n={n}, got {fraction} ({held} held out)")


@dataclass(frozen=True)
class HeldOutSplit:
    """S_0 split into what a member trains on and what it stops on; `index` into S_0."""

    train: PromptSet
    held_out: PromptSet
    held_out_index: Tensor

    def record(self) -> dict:
        return {"held_out_n": len(self.held_out), "held_out_s0": self.held_out.fingerprint(),
                "train_n": len(self.train)}


def split_held_out(s0: PromptSet, fraction: float, seed: int) -> HeldOutSplit:
    """Hold out round(fraction n) prompts of S_0, chosen by the member's own seeded stream.

    The training part keeps S_0's order (so the real part of a later generation is drawn from
    it exactly as from an unsplit S_0)."""
    n = len(s0)
    held = held_out_count(n, fraction)
    order = torch.randperm(n, generator=make_generator(seed, HELD_OUT_STREAM))
    out = order[:held].sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[out] = False
    return HeldOutSplit(s0[keep.nonzero().squeeze(1).to(s0.device)], s0[out.to(s0.device)], out)


def member_parameters(model: Ensemble, i: int) -> dict[str, Tensor]:
    """Copies of member i's trained parameters (a slice of the member axis, or its module)."""
    if model.member_axis:
        return {name: p[i].detach().cpu().clone() for name, p in model.named_parameters()}
    return {name: p.detach().cpu().clone() for name, p in model.models[i].named_parameters()}


@torch.no_grad()
def load_member_parameters(model: Ensemble, i: int, params: dict[str, Tensor]) -> None:
    """Put `params` (from `member_parameters`) back as member i's parameters."""
    named = (dict(model.named_parameters()) if model.member_axis
             else dict(model.models[i].named_parameters()))
    if named.keys() != params.keys():
        raise ValueError("early-stopping snapshot does not match the model's parameters")
    for name, p in named.items():
        target = p[i] if model.member_axis else p
        target.copy_(params[name].to(target.device, target.dtype))


class EarlyStopping:
    """Per-member best held-out step and parameters, updated at every `train_ensemble` log.

    `path` (optional) is where the state lives between kills; `identity` must match on resume.
    """

    def __init__(self, held_outs: list[PromptSet], batch_size: int,
                 runtime: RuntimeOptions | None = None, path: Path | None = None,
                 identity: dict | None = None):
        self.held_outs, self.batch_size = held_outs, batch_size
        self.runtime = runtime or RuntimeOptions()
        self.path, self.identity = path, identity or {}
        k = len(held_outs)
        self.best_step: list[int | None] = [None] * k
        self.best_risk: list[float] = [math.inf] * k
        self.best_params: list[dict[str, Tensor] | None] = [None] * k
        self.history: list[dict] = []  # {"step", "risk": per member}
        if path is not None and Path(path).exists():
            self._load(Path(path))

    def _load(self, path: Path) -> None:
        state = load_state(path)
        if state.get("identity") != self.identity:
            raise ConfigError(f"early-stopping state {path} was written with other settings or "
                              f"data ({describe_differences(state.get('identity'), self.identity)})"
                              f"; resume with the same settings, or delete it")
        self.best_step, self.best_risk = state["best_step"], state["best_risk"]
        self.best_params, self.history = state["best_params"], state["history"]

    def _save(self) -> None:
        if self.path is not None:
            save_state(self.path, {"identity": self.identity, "best_step": self.best_step,
                                   "best_risk": self.best_risk, "best_params": self.best_params,
                                   "history": self.history})

    def held_out_risks(self, model: Ensemble) -> list[float]:
        """Each member's mean error over its own held-out prompts (padding rows excluded)."""
        errors = model_errors(model, self.held_outs, self.batch_size, self.runtime)
        return [errors[i, :len(h)].double().mean().item() for i, h in enumerate(self.held_outs)]

    def observe(self, model: Ensemble, step: int) -> None:
        """Evaluate at `step`; a member whose held-out risk is strictly below its best so far
        (the earliest step wins ties) is snapshotted. A step already recorded (a replay after
        resume) is evaluated again but not appended twice."""
        risks = self.held_out_risks(model)
        if not any(h["step"] == step for h in self.history):
            self.history.append({"step": step, "risk": risks})
        for i, risk in enumerate(risks):
            better = risk < self.best_risk[i] or (
                risk == self.best_risk[i] and self.best_step[i] is not None
                and step < self.best_step[i])
            if math.isfinite(risk) and better:
                self.best_risk[i], self.best_step[i] = risk, step
                self.best_params[i] = member_parameters(model, i)
        self._save()

    def callback(self, model: Ensemble | Callable[[], Ensemble],
                 then: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
        """An `on_log` for `train_ensemble` training `model` (or the model a getter returns
        when called: a learner that builds its ensemble inside `fit`); `then(record)` after."""
        def on_log(record: dict) -> None:
            self.observe(model() if callable(model) and not isinstance(model, Ensemble)
                         else model, int(record["step"]))
            if then is not None:
                then(record)
        return on_log

    def restore(self, model: Ensemble) -> None:
        """Every member back at its best held-out step (members never evaluated stay as they
        are: a run shorter than one logging window)."""
        for i, params in enumerate(self.best_params):
            if params is not None:
                load_member_parameters(model, i, params)

    def records(self) -> list[dict]:
        """Per member: the stopping step, its held-out risk and the number of evaluations."""
        return [{"stopped_step": self.best_step[i],
                 "held_out_risk": None if not math.isfinite(self.best_risk[i])
                 else self.best_risk[i],
                 "held_out_evaluations": len(self.history)}
                for i in range(len(self.held_outs))]
