"""The training gate: did a learner reach ridge?

Every claim the testbed makes about the theory is about the learner that produced it. The
theorem assumes an in-context learner close to the Bayes-optimal ridge estimator, so a result is
only read when generation 0 passed this gate: its test risk closes at least 90% of the gap
between the zero predictor and ridge, on fresh prompts,

    test - ridge <= RIDGE_TOLERANCE * (zero - ridge).
"""

from __future__ import annotations

import math

RIDGE_TOLERANCE = 0.1  # share of the zero-to-ridge gap a learner may leave open


def gap_closed(test_risk: float, ridge_risk: float, zero_risk: float) -> float:
    """(zero - test) / (zero - ridge): 1 at ridge, 0 at the zero predictor, < 0 if worse."""
    span = zero_risk - ridge_risk
    if not (math.isfinite(test_risk) and span > 0):
        return float("nan")
    return (zero_risk - test_risk) / span


def reached_ridge(test_risk: float, ridge_risk: float, zero_risk: float,
                  tolerance: float = RIDGE_TOLERANCE) -> bool:
    """Whether test risk lies within `tolerance` of the zero-to-ridge gap above ridge."""
    closed = gap_closed(test_risk, ridge_risk, zero_risk)
    return bool(math.isfinite(closed) and closed >= 1.0 - tolerance)
