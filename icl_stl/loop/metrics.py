"""Per-generation measurements: risks, the excess risk over the Bayes predictor, the
generalization gap and the training gate; and what a record says about its loop.

The generator's fidelity (drift of synthetic data) is measured in `icl_stl.loop.fidelity`.
"""

from __future__ import annotations

import logging

from torch import Tensor

from icl_stl.loop.plan import MemberSpec
from icl_stl.loop.progress import gate_lines
from icl_stl.training.evaluation import bayes_excess, summarise
from icl_stl.training.gate import gap_closed, reached_ridge

log = logging.getLogger(__name__)


def pair_key(member: MemberSpec, s0: str, regime: str) -> str:
    """A string equal for a loop and its matched controls (the same loop labelled otherwise),
    in this run or another: what fixes its S_0, initialisation, batches and synthetic x's."""
    key = (f"seed={member.seed} n={member.n} m={member.augment} "
           f"lambda={float(member.real_fraction):g} s0={s0[:12]} regime={regime}")
    return f"{key} tag={member.tag}" if member.tag else key


def loop_fields(member: MemberSpec, s0: str, regime: str) -> dict:
    """What every record of a loop says about it beside `MemberSpec.describe`: its regime
    (loop.init), its S_0's fingerprint and the key it shares with its matched controls."""
    return {"regime": regime, "s0": s0, "pair": pair_key(member, s0, regime)}


def generation_record(test_errors: Tensor, train_risk: float, real_train_risk: float,
                      ridge_risk: float, zero_risk: float,
                      bayes: tuple[float, float] | None = None) -> dict:
    """Risks of one member at one generation (test errors (n, k) on fresh real prompts), and
    whether it passes the training gate (`icl_stl.training.gate`). bayes: its excess risk over
    the Bayes predictor on the same prompts and the standard error (`member_bayes_excess`);
    None for a task without a Gaussian prior."""
    test = summarise(test_errors)
    excess, excess_se = (None, None) if bayes is None else bayes
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
        "bayes_excess": excess,
        "bayes_excess_se": excess_se,
        "zero_risk": zero_risk,
        "gap_closed": gap_closed(test["risk"], ridge_risk, zero_risk),
        "reached_ridge": reached_ridge(test["risk"], ridge_risk, zero_risk),
    }


def member_bayes_excess(predictions: Tensor, bayes: Tensor | None, d: int
                        ) -> list[tuple[float, float] | None]:
    """Per member, (bayes_excess, its standard error) from predictions (K, n, k) and the Bayes
    predictor's (n, k) on the same prompts; None for every member without a Bayes predictor."""
    if bayes is None:
        return [None] * predictions.shape[0]
    return [bayes_excess(predictions[m], bayes, d) for m in range(predictions.shape[0])]


def log_gate(records: list[dict], groups: list[str] | None = None,
             lines_per_loop: int = 8) -> None:
    """Generation 0's gate, one line per loop up to `lines_per_loop` loops, one per group of
    `groups` beyond (200 seeds: not 200 lines): no claim about the theory holds without it."""
    if groups is not None and len(records) > lines_per_loop:
        passed = all(r["reached_ridge"] for r in records)
        for line in gate_lines(records, groups):
            log.log(logging.INFO if passed else logging.WARNING, "generation 0 gate: %s%s",
                    line, "" if passed else "; no verdict about the theory can rest on the "
                                            "loops that did not")
        return
    for rec in records:
        what = " ".join(f"{key}={rec[key]}" for key in ("seed", "n", "real_fraction", "augment")
                        if key in rec)
        if rec.get("labeller") == "oracle":
            what += " oracle-labelled"
        if rec["reached_ridge"]:
            log.info("generation 0 (%s) reached ridge: closed %.1f%% of the zero-to-ridge gap",
                     what, 100 * rec["gap_closed"])
        else:
            log.warning("generation 0 (%s) did NOT reach ridge: closed %.1f%% of the zero-to-ridge "
                        "gap (test %.4f, ridge %.4f, zero %.4f); no verdict about the theory "
                        "can rest on this loop", what, 100 * rec["gap_closed"],
                        rec["test_risk"], rec["ridge_risk"], rec["zero_risk"])
