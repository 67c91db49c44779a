"""How faithful a generator is: its synthetic prompts against real prompts with the same x's.

The loop labels fresh x's; the same x's carry real labels too (`mixing.real_counterpart`), so
every comparison here differs only in the labels. A generator that samples the true predictive
distribution gives ratios near 1 and W1 near 0; one that returns the predicted mean shrinks the
label variance and the implied ||w|| towards 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icl_stl.data.prompts import PromptSet

# The report warns when the mean label-variance ratio leaves this band while the gate is reached.
FAITHFUL_VAR_RATIO = (0.5, 2.0)


def implied_weights(prompts: PromptSet) -> Tensor:
    """Minimum-norm least-squares w of every whole prompt: (m, d). Float64 for stability."""
    xs, ys = prompts.xs.double(), prompts.ys.double()
    return (torch.linalg.pinv(xs) @ ys.unsqueeze(-1)).squeeze(-1)


def wasserstein_1d(a: Tensor, b: Tensor, quantiles: int = 512) -> float:
    """W1 distance between two 1-D empirical distributions, on a common quantile grid."""
    q = (torch.arange(quantiles, dtype=torch.float64) + 0.5) / quantiles
    return (torch.quantile(a.double().flatten(), q) - torch.quantile(b.double().flatten(), q)
            ).abs().mean().item()


def label_var_ratio_per_position(synthetic: PromptSet, real: PromptSet) -> list[float]:
    """Var over prompts of y_j, synthetic over real, at every position j."""
    syn_var = synthetic.ys.double().var(0)
    real_var = real.ys.double().var(0).clamp(min=1e-12)
    return (syn_var / real_var).tolist()


def task_spread(synthetic: PromptSet, real: PromptSet) -> dict[str, float]:
    """How widely the tasks of `synthetic` spread against those of `real` (the same x's).

    `w_cov_ratio`: tr Cov(w_hat) over tr Cov(w_hat) of real, w_hat the least-squares task of
    each whole prompt (`implied_weights`); `w_norm_ratio`: mean ||w_hat|| over real's. Both are
    computed from the prompts alone, and both are 1 up to O(1 / m) sampling error for an
    unfiltered oracle-labelled set (its prompts are distributed as real ones; label noise enters
    w_hat the same way on both sides). A filter that selects on the task pulls them below 1.
    """
    syn, ref = implied_weights(synthetic), implied_weights(real)  # (m, d) each
    trace = ref.var(0).sum().clamp(min=1e-30)
    return {"w_cov_ratio": (syn.var(0).sum() / trace).item(),
            "w_norm_ratio": (syn.norm(dim=-1).mean()
                             / ref.norm(dim=-1).mean().clamp(min=1e-30)).item()}


NO_SYNTHETIC = {"syn_label_var": None, "real_label_var": None, "syn_label_var_ratio": None,
                "syn_label_var_ratio_per_position": None, "syn_w_norm": None,
                "real_w_norm": None, "syn_label_w1": None, "syn_w_cov_ratio": None}


def generator_fidelity(synthetic: PromptSet, real: PromptSet) -> dict:
    """Synthetic prompts against the real prompts with the same x's (see module doc).

    `syn_label_var_ratio` is the mean over positions of the per-position ratio; `syn_w_norm` and
    `real_w_norm` are the mean norms of the w least squares reads off whole prompts (real:
    about w_scale sqrt(d)); `syn_label_w1` is the W1 distance of the label marginals;
    `syn_w_cov_ratio` the tasks' covariance-trace ratio (`task_spread`).
    """
    if len(synthetic) < 2:
        return dict(NO_SYNTHETIC)
    if synthetic.xs.shape != real.xs.shape or not torch.equal(synthetic.xs, real.xs):
        raise ValueError("fidelity compares labels of the same x's")
    per_position = label_var_ratio_per_position(synthetic, real)
    return {
        "syn_label_var": synthetic.ys.double().var().item(),
        "real_label_var": real.ys.double().var().item(),
        "syn_label_var_ratio": sum(per_position) / len(per_position),
        "syn_label_var_ratio_per_position": per_position,
        "syn_w_norm": implied_weights(synthetic).norm(dim=-1).mean().item(),
        "real_w_norm": implied_weights(real).norm(dim=-1).mean().item(),
        "syn_label_w1": wasserstein_1d(synthetic.ys, real.ys),
        "syn_w_cov_ratio": task_spread(synthetic, real)["w_cov_ratio"],
    }

