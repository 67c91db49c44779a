"""Each generation's synthetic prompts: drawn, labelled (by the learner or the oracle),
filtered, and cached on disk before training.

A mixin of `LoopRun` (icl_stl/loop/runner.py), which holds the members, plans, learner and timers.
"""

from __future__ import annotations

import logging

import torch

from icl_stl.data.prompts import PromptSet
from icl_stl.loop.filtering import filter_members, generator_moments
from icl_stl.loop.mixing import synthetic_inputs
from icl_stl.loop.oracle import oracle_synthesize
from icl_stl.persistence import CorruptCheckpointError, load_state, save_state
from icl_stl.training.engine import DivergenceError

log = logging.getLogger(__name__)


class LoopSynthesis:
    """The synthetic part of a `LoopRun`'s S_i."""

    def _synthetic(self, i: int) -> list[PromptSet]:
        """Generation i's newly labelled synthetic prompts (cached on disk once labelled)."""
        path = self.gen_dir(i) / "synthetic.pt"
        if path.exists():
            try:
                state = load_state(path)
                if "filter" in state:
                    self._filtered[i] = state["filter"]
                return [PromptSet.from_state_dict(s) for s in state["members"]]
            except CorruptCheckpointError as err:
                log.warning("relabelling generation %d: %s", i, err)
        plans = self._plans(i)
        inputs = [synthetic_inputs(self.s.loop, m, plan, self.task, self.k)
                  for m, plan in zip(self.members, plans)]
        with self.clock.phase("labelling"):
            labelled, variances = self._label(i, inputs)
        bad = [m for m, s in enumerate(labelled) if not torch.isfinite(s.ys).all()]
        if bad:
            inspect = self.gen_dir(i) / "synthetic.diverged.pt"
            save_state(inspect, {"members": [s.state_dict() for s in labelled]})
            raise DivergenceError(
                f"generation {i}: generation {i - 1} produced non-finite synthetic labels for "
                f"member(s) {bad} (label step, before training step 0); they are saved in "
                f"{inspect} and no finished generation was touched")
        state = {}
        if self.s.loop.filter != "none":
            with self.clock.phase("labelling"):  # filtering is part of making S_i's labels
                moments = (generator_moments(self.learner, self.members, labelled,
                                             self.s.loop, self.s.task)
                           if self.s.loop.filter == "density_ratio" else None)
                labelled, state["filter"] = filter_members(self.s.loop, self.s.task, self.task,
                                                           self.members, self.s0s, plans,
                                                           self.k, labelled, variances, moments)
            self._filtered[i] = state["filter"]
        with self.clock.phase("checkpoints"):
            save_state(path, {"members": [s.state_dict() for s in labelled], **state})
        return labelled

    def _label(self, i: int, inputs: list) -> tuple[list[PromptSet], list]:
        """Every member's labelled inputs (and the predicted variances a confidence filter
        ranks by): the learner labels its own loops' prompts, the oracle its controls'."""
        labelled, variances = [None] * len(inputs), [None] * len(inputs)
        oracle = [m for m, member in enumerate(self.members) if member.labeller == "oracle"]
        model = [m for m in range(len(inputs)) if m not in oracle]
        if oracle:
            for m, out in zip(oracle, oracle_synthesize(self.task, [inputs[m] for m in oracle])):
                labelled[m] = out
        if model:
            mine = [inputs[m] for m in model]
            subset = {} if len(model) == len(inputs) else {"members": model}  # else: all
            if self.s.loop.filter == "confidence":  # no oracle member then (config.loop)
                out, var = self.learner.synthesize_with_variance(i, mine, **subset)
            else:
                out, var = self.learner.synthesize(i, mine, **subset), [None] * len(model)
            for m, syn, v in zip(model, out, var):
                labelled[m], variances[m] = syn, v
        return labelled, variances
