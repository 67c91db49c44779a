"""The loop's side of early stopping (`train.held_out_fraction` > 0): each member's S_0 split
into the part every generation trains on and the held-out part every generation stops on.

The held-out prompts are real and never trained on, in any generation: generation i's real part
is drawn from the training part, and its training stops at the step with the lowest risk on the
held-out prompts (`icl_stl.training.early_stopping`). The split is drawn from the member's own
(seed, "held_out") stream and recorded in every generation record (`held_out_n`,
`held_out_s0`, `train_n`, `stopped_step`, `held_out_risk`).
"""

from __future__ import annotations

from icl_stl.config import ConfigError
from icl_stl.data.tasks import Task
from icl_stl.loop.mixing import MemberSpec, draw_s0
from icl_stl.training.early_stopping import HeldOutSplit, check_held_out, split_held_out

STOPPING_FILE = "early_stopping.pt"  # in gen_XXX/, beside train.pt; removed with it


def early_stopping_splits(settings, members: list[MemberSpec], task: Task,
                          k: int) -> list[HeldOutSplit] | None:
    """Per member, S_0 split for early stopping; None when `train.held_out_fraction` is 0.

    `settings` is a `LoopSettings` (typed loosely: the runner imports this module)."""
    fraction = settings.train.held_out_fraction
    if fraction <= 0:
        return None
    if settings.loop.learner != "transformer":
        raise ConfigError(f"train.held_out_fraction must be 0 with loop.learner="
                          f"{settings.loop.learner} (early stopping snapshots a trained "
                          f"transformer), got {fraction}")
    check_held_out([m.n for m in members], fraction)
    return [split_held_out(draw_s0(task, m, k), fraction, m.seed) for m in members]
