"""Named fault points for the fault-injection tests.

`fault_point("train_step")` does nothing unless the environment variable ICL_STL_FAULT names that
point. Points: train_step, label_position, evaluate, checkpoint_write, generation_end; and
nan_loss, reached through `poison("nan_loss", losses)`.

    ICL_STL_FAULT="point:N[-M][:action][,...]"  act the N-th (to M-th) time `point` is reached
        kill     SIGKILL, no cleanup, like a preempted job that is not warned (the default)
        preempt  SIGUSR2, what SLURM sends before a preemption or time-out; submitit then
                 requeues the job (calls the launcher's `checkpoint()`)
        stop     SIGSTOP: the process freezes where it is (e.g. holding its run lock) until
                 it is sent SIGCONT
        (for `poison` the action is ignored: the tensor becomes NaN)
    ICL_STL_FAULT_ONCE=<path>   act in one process only: the first to act creates <path>,
                                so a requeued job that re-reads the same environment runs on
    ICL_STL_FAULT_TRACE=<path>  at exit, write {point: times reached} to <path> as JSON, so a
                                test can draw kill counts that an uninterrupted run reaches

Reading one environment variable per call costs nothing next to a training step.
"""

from __future__ import annotations

import atexit
import json
import os
import signal

from torch import Tensor

_counts: dict[str, int] = {}
_claimed = False  # this process took the ICL_STL_FAULT_ONCE marker
_trace_registered = False

_SIGNALS = {"kill": signal.SIGKILL, "preempt": signal.SIGUSR2, "stop": signal.SIGSTOP}


def reset() -> None:
    """Forget how often each point was reached (in-process tests start from zero)."""
    global _claimed
    _counts.clear()
    _claimed = False


def _parse(spec: str) -> list[tuple[str, int, int, str]]:
    """(point, first, last, action) for each comma-separated item of ICL_STL_FAULT."""
    items = []
    for item in filter(None, spec.split(",")):
        point, _, rest = item.strip().partition(":")
        span, _, action = rest.partition(":")
        first, _, last = (span or "1").partition("-")
        action = action or "kill"
        if not point or not first.isdigit() or (last and not last.isdigit()) \
                or action not in _SIGNALS:
            raise ValueError(f"ICL_STL_FAULT item {item!r} is not point:N[-M][:action] with "
                             f"action one of {sorted(_SIGNALS)}")
        items.append((point, int(first), int(last or first), action))
    return items


def _write_trace(path: str) -> None:
    with open(path, "w") as f:
        json.dump(_counts, f)


def _due(name: str) -> str | None:
    """Count this visit to `name`; the action to take now, or None."""
    global _claimed, _trace_registered
    spec = os.environ.get("ICL_STL_FAULT")
    trace = os.environ.get("ICL_STL_FAULT_TRACE")
    if not spec and not trace:
        return None
    _counts[name] = _counts.get(name, 0) + 1
    if trace and not _trace_registered:
        _trace_registered = True
        atexit.register(_write_trace, trace)
    for point, first, last, action in _parse(spec or ""):  # parsed per call: specs are tiny
        if point == name and first <= _counts[name] <= last:
            once = os.environ.get("ICL_STL_FAULT_ONCE")
            if once and not _claimed:
                try:  # O_EXCL: of several processes (or requeued runs) exactly one acts
                    os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return None
                _claimed = True
            return action
    return None


def fault_point(name: str) -> None:
    """Send this process the configured signal if ICL_STL_FAULT says so (see module doc)."""
    action = _due(name)
    if action is not None:
        os.kill(os.getpid(), _SIGNALS[action])


def poison(name: str, tensor: Tensor) -> Tensor:
    """`tensor` times NaN when ICL_STL_FAULT selects this visit to `name`, else `tensor`."""
    return tensor * float("nan") if _due(name) is not None else tensor
