"""Learners the loop retrains every generation, behind one interface (`base.Learner`).

`TransformerLearner` trains an ensemble of in-context learners (one member per loop) and labels
synthetic prompts with it. The exactly solvable reference learner of docs/THEORY.md
(`reference.GaussianPriorLearner`) plugs in through the same interface, so the loop code never
branches on it.
"""

from __future__ import annotations

from icl_stl.loop.learners.base import Learner, LearnerContext
from icl_stl.loop.learners.reference import GaussianPriorLearner
from icl_stl.loop.learners.transformer import TransformerLearner
from icl_stl.loop.mixing import MemberSpec

__all__ = ["GaussianPriorLearner", "Learner", "LearnerContext", "TransformerLearner",
           "make_learner"]

LEARNERS: dict[str, type[Learner]] = {"transformer": TransformerLearner,
                                      "gaussian_prior": GaussianPriorLearner}


def make_learner(ctx: LearnerContext, members: list[MemberSpec]) -> Learner:
    return LEARNERS[ctx.loop.learner](ctx, members)
