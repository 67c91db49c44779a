"""Per-generation measurements: risks, the generalization gap and the training gate.

The generator's fidelity (drift of synthetic data) is measured in `icl_stl.loop.fidelity`.
"""

from __future__ import annotations

import logging

from torch import Tensor

from icl_stl.training.evaluation import summarise
from icl_stl.training.gate import gap_closed, reached_ridge

log = logging.getLogger(__name__)


def generation_record(test_errors: Tensor, train_risk: float, real_train_risk: float,
                      ridge_risk: float, zero_risk: float) -> dict:
    """Risks of one member at one generation (test errors (n, k) on fresh real prompts), and
    whether it passes the training gate (`icl_stl.training.gate`)."""
    test = summarise(test_errors)
    return {
        "test_risk": test["risk"],
        "test_risk_per_position": test["per_position"],
        "test_ci_low": test["ci_low"],
        "test_ci_high": test["ci_high"],
        "train_risk": train_risk,
        "real_train_risk": real_train_risk,
        "gen_gap": test["risk"] - train_risk,
        "real_gen_gap": test["risk"] - real_train_risk,
        "ridge_risk": ridge_risk,
        "excess_risk": test["risk"] - ridge_risk,
        "zero_risk": zero_risk,
        "gap_closed": gap_closed(test["risk"], ridge_risk, zero_risk),
        "reached_ridge": reached_ridge(test["risk"], ridge_risk, zero_risk),
    }


def log_gate(records: list[dict]) -> None:
    """Generation 0's gate, one line per loop: no claim about the theory holds without it."""
    for rec in records:
        what = " ".join(f"{key}={rec[key]}" for key in ("seed", "n", "real_fraction", "augment")
                        if key in rec)
        if rec["reached_ridge"]:
            log.info("generation 0 (%s) reached ridge: closed %.1f%% of the zero-to-ridge gap",
                     what, 100 * rec["gap_closed"])
        else:
            log.warning("generation 0 (%s) did NOT reach ridge: closed %.1f%% of the zero-to-ridge "
                        "gap (test %.4f, ridge %.4f, zero %.4f); no verdict about the theory "
                        "can rest on this loop", what, 100 * rec["gap_closed"],
                        rec["test_risk"], rec["ridge_risk"], rec["zero_risk"])
