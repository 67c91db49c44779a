"""A loop's checkpoint directory: where each generation lives, whether it finished, and how a
finished generation is taken back in on resume.

Checkpoint layout (`checkpoint_dir`):
    loop.json               what this loop is (settings and members); checked on resume
    gen_003/synthetic.pt    generation 3's labelled synthetic prompts (written before training)
    gen_003/train.pt        mid-training state (resume point inside a generation)
    gen_003/model.pt        the trained generation
    gen_003/metrics.json    written last: its presence marks generation 3 as finished

A resume takes in generations 0..r, the *resume point* r being the last of the finished ones in
a row whose model loads; training goes on from r + 1. An arm that replaces its synthetic data
needs no earlier model: their records are in metrics.json, and generation r + 1 is labelled by
r alone. So a checkpoint pruned to metrics.json everywhere and the resume point's model.pt
(`prune_to_resume_point`, what a programme carries to a new machine) resumes as the whole one
would. An accumulating arm re-reads every generation's synthetic prompts, relabelling with the
model before where synthetic.pt is gone: there every finished model must load.

A mixin of `LoopRun` (icl_stl/loop/runner.py), which holds the settings, members, S_0s, learner
and loop fields these methods read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from icl_stl.config.loop import ACCUMULATES
from icl_stl.data.prompts import PromptSet
from icl_stl.loop.identity import check_checkpoint_identity, member_records
from icl_stl.persistence import (
    CorruptCheckpointError,
    MissingCheckpointError,
    load_state,
    read_json,
)

log = logging.getLogger(__name__)


class LoopCheckpoints:
    """Checkpoint bookkeeping and resume of a `LoopRun`."""

    def gen_dir(self, i: int) -> Path:
        return self.checkpoint_dir / f"gen_{i:03d}"

    def _members(self) -> list[dict]:
        return member_records(self.members, self.s0s, self.s.loop.labeller)

    def _check_identity(self) -> None:
        check_checkpoint_identity(self.checkpoint_dir,
                                  {"settings": self.s.identity(), "members": self._members()})

    def _model_loads(self, i: int) -> bool:
        try:
            load_state(self.gen_dir(i) / "model.pt")
        except (CorruptCheckpointError, MissingCheckpointError) as err:
            log.warning("generation %d is marked finished but its model is unusable (%s); it "
                        "will be recomputed", i, err)
            return False
        return True

    def _resume_point(self) -> int:
        """The last generation a resume takes in (-1: none; module docstring)."""
        last = min(finished_in_a_row(self.checkpoint_dir), self.s.loop.generations)
        if self.s.loop.synthetic in ACCUMULATES:
            r = -1
            while r < last and self._model_loads(r + 1):
                r += 1
            return r
        while last >= 0 and not self._model_loads(last):
            last -= 1
        return last

    def _resume(self, i: int, history: list[list[PromptSet]], all_records: list[dict]) -> None:
        """Take in finished generation i: its records and, where later generations need them,
        its synthetic prompts (accumulating arms) and its model (the resume point)."""
        log.info("generation %d already finished; loaded from %s", i, self.gen_dir(i))
        done = read_json(self.gen_dir(i) / "metrics.json")
        # Records written before a loop's labeller, regime, S_0 and pair were recorded gain
        # them (its bayes_excess would need the model's predictions: left out).
        loaded = [{"labeller": self.members[r["member"]].labeller,
                   **self.loop_fields[r["member"]], **r} for r in done["records"]]
        all_records += loaded
        self._log_generation(i, loaded)  # if a kill came before it was logged
        if i == self.s.loop.generations:
            return
        accumulates = self.s.loop.synthetic in ACCUMULATES
        if accumulates and i > 0:  # read (or relabel) with generation i-1 still loaded
            for m, syn in enumerate(self._synthetic(i)):
                history[m].append(syn)
        if accumulates or i == self.resume_at:  # it labels (and may warm-start) generation i+1
            self.learner.load_state_dict(load_state(self.gen_dir(i) / "model.pt"))


def finished_in_a_row(checkpoint_dir: Path) -> int:
    """The last generation of the unbroken run 0, 1, ... that has metrics.json (-1: none)."""
    last = -1
    while (Path(checkpoint_dir) / f"gen_{last + 1:03d}" / "metrics.json").exists():
        last += 1
    return last


def prune_to_resume_point(checkpoint_dir: Path) -> list[Path]:
    """The files of a loop's checkpoint that a resume reads (module docstring), relative to
    `checkpoint_dir`: loop.json, every finished generation's metrics.json in a row from 0, and
    the last one's model.pt (every model.pt where loop.json's arm accumulates). Nothing is
    removed: the caller copies these."""
    checkpoint_dir = Path(checkpoint_dir)
    identity = read_json(checkpoint_dir / "loop.json")
    accumulates = identity["settings"]["loop"]["synthetic"] in ACCUMULATES
    finished = [Path(f"gen_{i:03d}") for i in range(finished_in_a_row(checkpoint_dir) + 1)]
    keep = [Path("loop.json")] + [gen / "metrics.json" for gen in finished]
    keep += [gen / "model.pt" for gen in (finished if accumulates else finished[-1:])
             if (checkpoint_dir / gen / "model.pt").exists()]
    return keep
