"""The loop's hook for probes: extra metrics per member after each generation, and one hook
made of several (a probe that measures two things passes both)."""

from __future__ import annotations

from collections.abc import Callable

from icl_stl.data.prompts import PromptSet
from icl_stl.loop.learners import Learner

# Hook for probes: (generation, learner, datasets, synthetic) -> extra metrics per member.
ExtraMetrics = Callable[[int, Learner, list[PromptSet], list[PromptSet]], list[dict]]


def combine_hooks(*hooks: ExtraMetrics | None) -> ExtraMetrics | None:
    """One `extra_metrics` hook merging the per-member dicts of several (None entries skipped)."""
    active = [h for h in hooks if h is not None]
    if not active:
        return None

    def combined(generation, learner, datasets, new_synthetic):
        merged: list[dict] = [{} for _ in datasets]
        for hook in active:
            for record, extra in zip(merged, hook(generation, learner, datasets, new_synthetic)):
                record.update(extra)
        return merged

    return combined
