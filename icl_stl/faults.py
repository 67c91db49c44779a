"""Named fault points for the fault-injection tests.

`fault_point("train_step")` does nothing unless the environment variable ICL_STL_FAULT names that
point, e.g. ICL_STL_FAULT="train_step:37" kills the process (SIGKILL, no cleanup, like a
preempted job) the 37th time the point is reached. Points: train_step, label_position,
evaluate, checkpoint_write, generation_end. Reading one environment variable per call costs
nothing next to a training step.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get("ICL_STL_FAULT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
