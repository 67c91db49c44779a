"""Probes of the self-consuming loop, callable from Python and from `icl-stl-probe`.

- `stability`: empirical recursive stability gamma_i of twin loops (S_0 vs S_0').
- `twins`: stability's twin loops (S_0, S_0', chaos control), and the probe prompts and task
  pool the probes share.
- `decay`: final-generation risk (and gap, gamma) against n, fitted against n^-1/4 and the bound.
- `dose_response`: a fraction q of S_0 replaced, read against a chaos twin (P3, version 2).
- `in_context`: change of later losses when the first in-context example is flipped.
- `reference`: the exactly solvable Gaussian-prior learner (`loop.learner=gaussian_prior`).

Each probe is a LoopRun `extra_metrics` hook plus an aggregation of the loop's records; each
`run_*` function runs the loop as one ensemble and writes its JSON and PNG.
"""

from icl_stl.loop.learners.reference import (
    GaussianPriorLearner,
    bayes_predictions,
    prior_drift_metrics,
)
from icl_stl.probes.decay import aggregate_decay, decay_members, fit_quantity, run_decay
from icl_stl.probes.dose_response import run_dose_response
from icl_stl.probes.in_context import (
    InContextHook,
    aggregate_in_context,
    in_context_prompts,
    perturb_first_pair,
    run_in_context,
)
from icl_stl.probes.stability import (
    StabilityHook,
    aggregate_stability,
    run_stability,
)
from icl_stl.probes.twins import TwinPair, neighbour_set, probe_set, twin_members

RUNNERS = {"stability": run_stability, "decay": run_decay, "in_context": run_in_context,
           "dose_response": run_dose_response}

__all__ = [
    "RUNNERS",
    "GaussianPriorLearner",
    "InContextHook",
    "StabilityHook",
    "TwinPair",
    "aggregate_decay",
    "aggregate_in_context",
    "aggregate_stability",
    "bayes_predictions",
    "decay_members",
    "fit_quantity",
    "in_context_prompts",
    "neighbour_set",
    "perturb_first_pair",
    "prior_drift_metrics",
    "probe_set",
    "run_decay",
    "run_dose_response",
    "run_in_context",
    "run_stability",
    "twin_members",
]
