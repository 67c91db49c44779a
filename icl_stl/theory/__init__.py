"""The theory's formulas and the helpers that fit measurements against them.

Pure numpy/scipy, so they can be used (and tested) without torch. One module per concern:

- `bound`: the shape of the generalization bound for transformers in a self-consuming
  training loop (Fu et al., ICLR 2025), ``c1 n^-1 log^2 n + c2 n^-1/2 log n + c3 n^-1/4``;
- `fits`: straight-line, power-law and geometric-rate fits with confidence intervals, and the
  non-negative fit of the bound's shape;
- `decay`: the decay fit ``y = E_inf + A n^b`` and the verdict on prediction 4;
- `reference`: closed forms of the exactly solvable reference learner of docs/THEORY.md
  (the drift of its fitted task mean, the shrinkage of its fitted covariance);
- `filters`: the same learner with a verifier filter on its synthetic data;
- `accumulation`: the same learner under each way S_i holds synthetic data (replace,
  accumulate with or without S_0, volume-matched) and P9's window.

Every public name is re-exported here, so callers import from `icl_stl.theory`.
"""

from icl_stl.theory.accumulation import (
    accumulation_drift,
    oracle_twin_drift,
    reference_contrast,
    window_start,
)
from icl_stl.theory.bound import as_sample_sizes, bound_basis, bound_shape
from icl_stl.theory.decay import DECAY_EXPONENT_RANGE, decay_verdict, fit_decay
from icl_stl.theory.filters import (
    best_fraction_threshold,
    contraction,
    keep_fraction,
    kept_second_moment,
    linear_plateau,
    residual_keep_fraction,
    simulate_drift,
    step_drift,
)
from icl_stl.theory.fits import (
    BoundFit,
    LineFit,
    PowerLawFit,
    fit_bound,
    fit_linear_slope,
    fit_power_law,
    geometric_rate,
)
from icl_stl.theory.reference import (
    covariance_shrinkage,
    mean_drift,
    mean_drift_fresh,
    mean_drift_plateau,
    mean_drift_reuse,
    mean_drift_scheduled,
)

__all__ = [
    "DECAY_EXPONENT_RANGE",
    "BoundFit",
    "LineFit",
    "PowerLawFit",
    "accumulation_drift",
    "as_sample_sizes",
    "best_fraction_threshold",
    "bound_basis",
    "bound_shape",
    "contraction",
    "covariance_shrinkage",
    "decay_verdict",
    "fit_bound",
    "fit_decay",
    "fit_linear_slope",
    "fit_power_law",
    "geometric_rate",
    "keep_fraction",
    "kept_second_moment",
    "linear_plateau",
    "mean_drift",
    "mean_drift_fresh",
    "mean_drift_plateau",
    "mean_drift_reuse",
    "mean_drift_scheduled",
    "oracle_twin_drift",
    "reference_contrast",
    "residual_keep_fraction",
    "simulate_drift",
    "step_drift",
    "window_start",
]
