"""Training K models at once, each on its own finite prompt set or stream of fresh prompts.

One model is an ensemble of one. Each member has its own batch-order generator (and dropout
generator), so a member trained with others sees exactly the batches and masks it would see
alone. The state needed to resume (model, optimizer, generators, step) is checkpointed
atomically every `checkpoint_every` steps, and on SIGINT or SIGTERM between two steps; a run
started again with the same checkpoint slot continues where it stopped and ends with the same
numbers as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from icl_stl.config import ConfigError, TrainConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import derive_seed
from icl_stl.data.tasks import Task
from icl_stl.models.ensemble import Ensemble
from icl_stl.persistence import CheckpointSlot, save_state
from icl_stl.persistence.faults import fault_point, poison
from icl_stl.persistence.identity import describe_differences
from icl_stl.training.batches import BatchSampler
from icl_stl.training.compiled import CompiledClipping, compiled_forward, fusable_forms
from icl_stl.training.losses import member_losses
from icl_stl.training.optim import configure_optimizer, lr_at

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient (more than `train.max_bad_steps` times)."""


@dataclass
class MemberData:
    """What one ensemble member trains on: a finite set, or fresh prompts when `dataset` is None."""

    batch_seed: int  # seeds the member's batch order (or its stream of prompts)
    dataset: PromptSet | None = None
    # Stratified batches (`loop.real_weight`): the first `real_size` prompts of `dataset` are
    # its real part, and a share `real_weight` of every batch is drawn from them in expectation
    # (`stratified_indices`). None: uniform draws over the whole set.
    real_size: int | None = None
    real_weight: float | None = None


@dataclass
class RuntimeOptions:
    """Device-level switches; defaults are exact fp32 (the CPU path)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    fused_adam: bool = False
    compile: bool = False


@dataclass
class TrainResult:
    steps: int
    final_loss: list[float]  # per member, mean over the last logging window
    history: list[dict]  # one record per logging window
    bad_steps: int = 0


def curriculum_at(step: int, cfg: TrainConfig, d: int, k: int) -> tuple[int, int]:
    """(d, k) in force at `step`: Garg et al.'s curriculum grows both every `interval` steps."""
    cur = cfg.curriculum
    if not cur.enabled:
        return d, k
    grown = step // cur.interval
    return min(d, cur.d_start + grown * cur.d_step), min(k, cur.k_start + grown * cur.k_step)


def train_ensemble(
    model: Ensemble,
    members: list[MemberData],
    task: Task,
    k: int,
    cfg: TrainConfig,
    runtime: RuntimeOptions | None = None,
    *,
    checkpoint: CheckpointSlot | None = None,
    identity: dict | None = None,
    on_log: Callable[[dict], None] | None = None,
    description: str = "train",
) -> TrainResult:
    """Train every member for `cfg.steps` steps; resume from `checkpoint` when it holds a state.

    `identity` (plain dict) is stored with the checkpoint and must match on resume, so a state
    written for other data or settings is never silently continued.
    """
    runtime = runtime or RuntimeOptions()
    if len(members) != model.n_members:
        raise ValueError(f"{len(members)} member datasets for an ensemble of {model.n_members}")
    model.to(runtime.device).train()
    optimizer = configure_optimizer(
        model.named_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
        betas=(cfg.beta1, cfg.beta2), kind=cfg.optimizer, fused=runtime.fused_adam,
        member_axis=model.member_axis)
    sampler = BatchSampler(members, task, k, cfg.batch_size, runtime.device)
    step, bad_steps, history = 0, 0, []
    identity = identity or {}
    window_loss = torch.zeros(model.n_members, device=runtime.device)  # losses since last log
    window_steps = 0
    uses_dropout = model.cfg.dropout > 0
    if uses_dropout:  # each member's masks from its own generator, seeded like its batches
        model.member_rng.seed([derive_seed(m.batch_seed, "dropout") for m in members],
                              runtime.device)

    if checkpoint is not None and (loaded := checkpoint.load_latest()) is not None:
        state, path = loaded
        if state.get("identity") != identity:
            raise ConfigError(f"checkpoint {path} was written with other settings or data "
                              f"({describe_differences(state.get('identity'), identity)}); "
                              f"resume with the same settings, or choose another run.name or "
                              f"delete the checkpoint")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state(state["generators"])
        step, bad_steps, history = state["step"], state["bad_steps"], state["history"]
        window_loss.copy_(state["window_loss"].to(runtime.device))
        window_steps = state["window_steps"]
        if uses_dropout:
            model.member_rng.load_state(state["dropout_generators"])
        log.info("%s: resumed at step %d from %s", description, step, path)

    def save(to_slot: CheckpointSlot) -> None:
        if not check_each_step and bool(ever_bad):  # never checkpoint a diverged state
            _stop_diverged(model, losses, norms, f"within the {step} steps", description,
                           checkpoint)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "generators": sampler.state(), "step": step, "bad_steps": bad_steps,
                 "history": history, "identity": identity, "window_loss": window_loss.cpu(),
                 "window_steps": window_steps}
        if uses_dropout:
            state["dropout_generators"] = model.member_rng.state()
        to_slot.save(state)

    forward = compiled_forward(model, runtime.device) if runtime.compile else model
    clip_grads = (CompiledClipping(model, runtime.device) if runtime.compile and model.member_axis
                  else model.clip_grads_)
    autocast = (torch.autocast(runtime.device.type, dtype=torch.bfloat16) if runtime.bf16
                else contextlib.nullcontext())
    # On a GPU a per-step check would synchronise with the host: there a device-side flag is
    # checked at every log and before every save, unless skipping bad steps needs each step.
    check_each_step = runtime.device.type == "cpu" or cfg.max_bad_steps > 0
    ever_bad = torch.zeros((), dtype=torch.bool, device=runtime.device)
    losses = norms = torch.zeros(model.n_members)
    bar = tqdm(total=cfg.steps, initial=step, desc=description, disable=None, leave=False)
    with _stop_on_signal() as stop, fusable_forms(model, runtime.compile):
        while step < cfg.steps:
            if stop["signal"] is not None:
                bar.close()
                where = "nothing was saved (no checkpoint)"
                if checkpoint is not None:
                    save(checkpoint)
                    where = f"saved to {checkpoint.latest_path}; the same command resumes from it"
                raise Interrupted(f"{description}: {stop['signal']} at step {step} of {cfg.steps}; "
                                  f"{where}")
            d_cur, k_cur = curriculum_at(step, cfg, task.d, k)
            xs, ys = sampler.sample(d_cur, k_cur)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            with autocast:
                pred = forward(xs, ys)
            losses = member_losses(pred, ys, task.d, cfg.nll_beta)
            losses = poison("nan_loss", losses)  # fault injection: a NaN loss on demand
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # a sum keeps each member's gradient its own
            norms = clip_grads(cfg.grad_clip)
            finite = torch.isfinite(losses).all() & torch.isfinite(norms).all()
            if not check_each_step:
                ever_bad |= ~finite
            elif not finite:
                bad_steps += 1
                if bad_steps > cfg.max_bad_steps:
                    _stop_diverged(model, losses, norms, f"at step {step + 1}", description,
                                   checkpoint)
                log.warning("%s: non-finite loss or gradient at step %d skipped (%d of %d allowed)",
                            description, step + 1, bad_steps, cfg.max_bad_steps)
                step += 1
                bar.update(1)
                continue
            fault_point("train_step")
            optimizer.step()
            window_loss += losses.detach()
            window_steps += 1
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean = (window_loss / max(window_steps, 1)).tolist()  # the only host sync
                if not check_each_step and (bool(ever_bad) or not all(map(math.isfinite, mean))):
                    _stop_diverged(model, losses, norms, f"within steps 1..{step}", description,
                                   checkpoint)
                record = {"step": step, "lr": lr_at(step - 1, cfg), "loss": mean, "k": k_cur,
                          "d": d_cur}
                history.append(record)
                if on_log is not None:
                    on_log(record)
                log.info("%s step %d/%d loss %s", description, step, cfg.steps, loss_text(mean))
                window_loss.zero_()
                window_steps = 0
            due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if checkpoint is not None and due and step < cfg.steps:
                save(checkpoint)
    bar.close()
    if checkpoint is not None:
        save(checkpoint)
    final = history[-1]["loss"] if history else [float("nan")] * model.n_members
    return TrainResult(steps=step, final_loss=final, history=history, bad_steps=bad_steps)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during training: the state was saved first; the same command resumes.

    A KeyboardInterrupt, so a sweep stops (its jobs' `except Exception` does not swallow it)."""


@contextlib.contextmanager
def _stop_on_signal():
    """SIGINT and SIGTERM set a flag that the training loop reads between steps, so a step is
    never cut in half and the checkpoint it saves is whole (main thread only: elsewhere Python
    cannot install handlers, and the default behaviour stays)."""
    flag: dict[str, str | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        flag["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


MAX_LOSSES_SHOWN = 8  # beyond this many members a step's line summarises their losses


def loss_text(losses: list[float]) -> str:
    """Each member's loss for a few members; median [min, max] over them for many, so a
    200-seed ensemble logs one short line per step rather than 200 numbers."""
    if len(losses) <= MAX_LOSSES_SHOWN:
        return " ".join(f"{v:.4f}" for v in losses)
    finite = sorted(v for v in losses if math.isfinite(v))
    if not finite:
        return f"all {len(losses)} non-finite"
    text = (f"median {statistics.median(finite):.4f} [{finite[0]:.4f}, {finite[-1]:.4f}] "
            f"over {len(losses)} members")
    bad = len(losses) - len(finite)
    return text + (f", {bad} non-finite" if bad else "")


def _stop_diverged(model: Ensemble, losses: Tensor, norms: Tensor, when: str, description: str,
                   checkpoint: CheckpointSlot | None) -> None:
    """Save the diverged state beside (never over) the good checkpoint, then stop."""
    where = ""
    if checkpoint is not None:
        path = checkpoint.directory / "diverged.pt"
        save_state(path, {"model": model.state_dict(), "losses": losses.detach().cpu(),
                          "grad_norms": norms.detach().cpu(), "when": when})
        where = f"; the diverged state is in {path} and the last good checkpoint is untouched"
    raise DivergenceError(
        f"{description}: non-finite loss or gradient {when} (losses "
        f"{losses.detach().cpu().tolist()}, grad norms {norms.detach().cpu().tolist()}){where}. "
        f"Lower train.lr, or allow skipping with train.max_bad_steps")
