"""The oracle generator: labels drawn from the true posterior predictive under the true prior.

`loop.labeller=oracle` replaces the model as the loop's generator. Position by position it draws
y_j ~ N(x_j^T m_j, x_j^T S_j x_j + sigma^2), where N(m_j, S_j) is the posterior over w given the
pairs before j under the task's own prior N(0, w_scale^2 I), and feeds each draw back (a Kalman
update) before the next position. Drawing labels this way is drawing w from the prior and then
y = <w, x> + noise, so its prompts are distributed exactly like real ones: a loop fed by it
measures only the learner's estimation error, the zero line for the model generator's drift.

It uses the same standard-normal stream as the model's predictive sampling (the loop's
`label_noise` draws), so twins of the stability probe share it too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icl_stl.data.prompts import PromptSet
from icl_stl.data.tasks import LinearRegression, SparseLinearRegression, Task
from icl_stl.loop.mixing import SyntheticInputs

# Below this predictive variance (relative to the prior's w_scale^2) a position carries no new
# information: with noiseless labels the posterior is a point once d pairs are seen.
RELATIVE_FLOOR = 1e-12


def supports_oracle(task: Task) -> bool:
    """The oracle needs the task's prior to be the Gaussian N(0, w_scale^2 I)."""
    return isinstance(task, LinearRegression) and not isinstance(task, SparseLinearRegression)


@torch.no_grad()
def posterior_predictive_labels(xs: Tensor, context_ys: Tensor, noise: Tensor, w_scale: float,
                                noise_std: float) -> Tensor:
    """Labels (m, k) for xs (m, k, d): the c = context_ys.shape[-1] given ones, then draws.

    noise (m, k) standard normals; position j's draw is mean_j + sqrt(var_j) * noise[:, j].
    Computed in float64 and returned in xs's dtype.
    """
    m, k, d = xs.shape
    c = context_ys.shape[-1]
    x64, noise64 = xs.double(), noise.double()
    noise_var, floor = noise_std ** 2, RELATIVE_FLOOR * w_scale ** 2
    mean_w = x64.new_zeros(m, d)
    cov_w = (w_scale ** 2 * torch.eye(d, dtype=torch.float64)).expand(m, d, d).clone()
    ys = x64.new_zeros(m, k)
    for j in range(k):
        x = x64[:, j]  # (m, d)
        cov_x = (cov_w @ x.unsqueeze(-1)).squeeze(-1)  # (m, d)
        var = (x * cov_x).sum(-1).clamp(min=0.0) + noise_var  # predictive variance of y_j
        mean = (x * mean_w).sum(-1)
        y = (context_ys[:, j].double() if j < c else mean + var.sqrt() * noise64[:, j])
        ys[:, j] = y
        informative = var > floor
        gain = torch.where(informative[:, None], cov_x / var.clamp(min=floor)[:, None], 0.0)
        mean_w = mean_w + gain * (y - mean)[:, None]
        cov_w = cov_w - gain.unsqueeze(-1) * cov_x.unsqueeze(-2)
    return ys.to(xs.dtype)


def oracle_synthesize(task: Task, inputs: list[SyntheticInputs]) -> list[PromptSet]:
    """Label every member's synthetic inputs with the oracle (see module doc)."""
    if not supports_oracle(task):
        raise ValueError(f"the oracle labeller needs a Gaussian-prior linear task, not "
                         f"{type(task).__name__}")
    out = []
    for inp in inputs:
        if inp.noise is None:
            raise ValueError("the oracle labeller samples: its inputs need noise draws")
        ys = posterior_predictive_labels(inp.xs, inp.context_ys, inp.noise, task.w_scale,
                                         task.noise_std)
        out.append(PromptSet(inp.xs, ys))
    return out
