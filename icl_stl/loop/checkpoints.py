"""A loop's checkpoint directory: where each generation lives, whether it finished, and how a
finished generation is taken back in on resume.

Checkpoint layout (`checkpoint_dir`):
    loop.json               what this loop is (settings and members); checked on resume
    gen_003/synthetic.pt    generation 3's labelled synthetic prompts (written before training)
    gen_003/train.pt        mid-training state (resume point inside a generation)
    gen_003/model.pt        the trained generation
    gen_003/metrics.json    written last: its presence marks generation 3 as finished

A mixin of `LoopRun` (icl_stl/loop/runner.py), which holds the settings, members, S_0s, learner
and loop fields these methods read.
"""

from __future__ import annotations

import logging
from pathlib import Path

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

    def _finished(self, i: int) -> dict | None:
        """Generation i's stored metrics if it finished and its model loads, else None."""
        metrics = self.gen_dir(i) / "metrics.json"
        if not metrics.exists():
            return None
        try:
            load_state(self.gen_dir(i) / "model.pt")
        except (CorruptCheckpointError, MissingCheckpointError) as err:
            log.warning("generation %d is marked finished but its model is unusable (%s); it "
                        "will be recomputed", i, err)
            return None
        return read_json(metrics)

    def _resume(self, i: int, done: dict, history: list[list[PromptSet]],
                all_records: list[dict]) -> None:
        """Take in finished generation i: its records, its synthetic prompts, its model."""
        log.info("generation %d already finished; loaded from %s", i, self.gen_dir(i))
        # Records written before a loop's labeller, regime, S_0 and pair were recorded gain
        # them (its bayes_excess would need the model's predictions: left out).
        loaded = [{"labeller": self.members[r["member"]].labeller,
                   **self.loop_fields[r["member"]], **r} for r in done["records"]]
        all_records += loaded
        self._log_generation(i, loaded)  # if a kill came before it was logged
        if i < self.s.loop.generations:  # later generations need it to label and warm-start
            if i > 0:  # read (or relabel) with generation i-1 still loaded
                for m, syn in enumerate(self._synthetic(i)):
                    history[m].append(syn)
            self.learner.load_state_dict(load_state(self.gen_dir(i) / "model.pt"))
