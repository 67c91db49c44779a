"""The exactly solvable reference learner of docs/THEORY.md: a learner that fits the task prior.

`GaussianPriorLearner` replaces the transformer in the same loop code (`loop.learner=
gaussian_prior`): from every training prompt it reads off w by least squares (exact when k >= d
and the labels are noiseless), estimates the prior's mean mu (and, with `loop.prior_covariance`,
its covariance Sigma by maximum likelihood, divisor n; otherwise Sigma = w_scale^2 I is known),
and generates synthetic prompts from N(mu, Sigma). It predicts with the Bayes posterior mean
under its fitted prior, so its test risk is comparable with the transformer's.

This module holds the learner only: its Bayes-posterior predictions (`posterior_mean_weights`,
`bayes_predictions`, torch code on its fitted state) and `prior_drift_metrics`, a LoopRun
`extra_metrics` hook that records the measured ||mu_i - mu*||^2 and tr(Sigma_i) / tr(Sigma*)
for every member. What they should be is derived once, in `icl_stl.theory.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icl_stl.data.prompts import PromptSet, pad_stack
from icl_stl.data.seeding import make_generator
from icl_stl.loop.fidelity import implied_weights
from icl_stl.loop.learners.base import Learner, LearnerContext
from icl_stl.loop.mixing import MemberSpec, SyntheticInputs
from icl_stl.training.losses import squared_error

# Noiseless labels make the posterior a limit (noise -> 0); a tiny variance relative to the
# prior's scale keeps the solves regular while biasing predictions by ~1e-8 relative.
JITTER = 1e-8
# Predictions solve one (d, d) system per member, prompt and position; chunk the prompts so
# the (K, chunk, k, d, d) float64 intermediates stay near this many elements.
CHUNK_ELEMENTS = 1 << 23


def sqrt_psd(sigma: Tensor) -> Tensor:
    """Symmetric square root of PSD matrices (..., d, d); exact for singular ones too."""
    eigval, eigvec = torch.linalg.eigh(sigma)
    return (eigvec * eigval.clamp(min=0).sqrt().unsqueeze(-2)) @ eigvec.mT


def posterior_mean_weights(xs: Tensor, ys: Tensor, mu: Tensor, sigma: Tensor,
                           noise_var: float) -> Tensor:
    """Posterior mean of w at every position from the pairs before it: (K, n, k, d).

    xs (K or 1, n, k, d) and ys (K or 1, n, k) (a leading 1 is shared by all members); prior
    N(mu (K, d), sigma (K, d, d)); y = <w, x> + N(0, noise_var). Uses
    m = mu + S (S X^T X S + s2 I)^-1 S X^T (y - X mu) with S = sigma^(1/2), which needs no
    inverse of sigma and stays exact when sigma is singular.
    """
    xs, ys = xs.double(), ys.double()
    mu, sigma = mu.double(), sigma.double()
    d = xs.shape[-1]
    scale = sigma.diagonal(dim1=-2, dim2=-1).mean(-1).clamp(min=1e-12)  # (K,)
    s2 = torch.clamp(JITTER * scale, min=noise_var)[:, None, None, None, None]
    root = sqrt_psd(sigma)[:, None, None]  # (K, 1, 1, d, d)
    outer = xs.unsqueeze(-1) * xs.unsqueeze(-2)  # (K|1, n, k, d, d)
    xtx = outer.cumsum(2) - outer  # sums over the pairs strictly before each position
    resid = ys - (xs @ mu[:, None, :, None]).squeeze(-1)  # (K, n, k): minus the prior's guess
    xr = xs * resid.unsqueeze(-1)  # (K, n, k, d)
    xtr = xr.cumsum(2) - xr
    eye = torch.eye(d, dtype=xs.dtype, device=xs.device)
    system = root @ xtx @ root + s2 * eye  # (K, n, k, d, d)
    z = torch.linalg.solve(system, (root @ xtr.unsqueeze(-1)))  # (K, n, k, d, 1)
    return mu[:, None, None, :] + (root @ z).squeeze(-1)


def bayes_predictions(xs: Tensor, ys: Tensor, mu: Tensor, sigma: Tensor,
                      noise_var: float) -> Tensor:
    """Posterior-mean prediction of y_j from (x_1, y_1, ..., x_j): (K, n, k), float64.

    Chunked over prompts so memory stays bounded whatever n and K.
    """
    k_members, (n, k, d) = mu.shape[0], xs.shape[1:]
    chunk = max(1, CHUNK_ELEMENTS // max(1, k_members * k * d * d))
    out = []
    for start in range(0, n, chunk):
        bx, by = xs[:, start:start + chunk], ys[:, start:start + chunk]
        w = posterior_mean_weights(bx, by, mu, sigma, noise_var)  # (K, b, k, d)
        out.append((w * bx.double()).sum(-1))
    return torch.cat(out, dim=1) if out else xs.new_zeros(k_members, 0, k).double()


class GaussianPriorLearner(Learner):
    """K prior-fitting learners: state mu (K, d) and sigma (K, d, d), float64."""

    def __init__(self, ctx: LearnerContext, members: list[MemberSpec]):
        super().__init__(ctx, members)
        d, k_members = ctx.task.d, len(members)
        # Before any fit: the true prior N(0, w_scale^2 I).
        self.mu = torch.zeros(k_members, d, dtype=torch.float64)
        self.sigma = self.known_sigma().expand(k_members, d, d).clone()

    def known_sigma(self) -> Tensor:
        """Sigma* = w_scale^2 I (d, d)."""
        task = self.ctx.task
        return task.w_scale ** 2 * torch.eye(task.d, dtype=torch.float64)

    @property
    def noise_var(self) -> float:
        return float(self.ctx.task.noise_std) ** 2

    def fit(self, generation, datasets, checkpoint, on_log=None, real_sizes=None) -> dict:
        """Maximum-likelihood prior from the w's read off each prompt (instant: no checkpoint).

        With `loop.real_weight` = v (`real_sizes` given: each set's real prefix), the fit
        maximises v x (mean log-likelihood over the real w's) + (1 - v) x (that over the
        synthetic w's): what stratified batches with a real share v and an unweighted loss
        optimise in expectation. For a Gaussian that is the weighted mean
        mu = v mean(real w) + (1 - v) mean(synthetic w), and the weighted covariance
        v cov_real + (1 - v) cov_synthetic, each part's second moment taken about mu (divisor
        its own count). Without it every prompt weighs 1 / |S_i| (mu = mean of all w's)."""
        losses = []
        weight = self.ctx.loop.real_weight if real_sizes is not None else None
        for m, data in enumerate(datasets):
            w = implied_weights(data)  # (n_m, d) float64
            parts = ([w] if weight is None else
                     [w[:real_sizes[m]], w[real_sizes[m]:]])
            shares = [1.0] if weight is None else [weight, 1.0 - weight]
            self.mu[m] = sum(share * part.mean(0) for share, part in zip(shares, parts)
                             if share > 0)
            if self.ctx.loop.prior_covariance:
                self.sigma[m] = sum(share * (part - self.mu[m]).T @ (part - self.mu[m])
                                    / part.shape[0]
                                    for share, part in zip(shares, parts) if share > 0)
            else:
                self.sigma[m] = self.known_sigma()
            fitted = torch.einsum("nkd,nd->nk", data.xs.double(), w)
            losses.append(squared_error(fitted, data.ys.double(), data.d).mean().item())
        return {"train_loss": losses, "steps": 0, "bad_steps": 0}

    def synthesize(self, generation, inputs: list[SyntheticInputs],
                   members: list[int] | None = None) -> list[PromptSet]:
        """Label each member's fresh x's with tasks from its fitted prior (see module doc).

        sample: w ~ N(mu, Sigma) per prompt from the member's `prior_w` stream; mean: w = mu;
        context: w = the posterior mean given the c real opening pairs (with noise-free
        self-labels at the posterior mean the posterior never moves, so this equals labelling
        position by position). Label noise is the task's (`task.noise_std` times the loop's
        standard-normal draws); `loop.label_noise_std` is a transformer setting, unused here.
        """
        mode, out = self.ctx.loop.label_mode, []
        for m, inp in zip(range(len(inputs)) if members is None else members, inputs,
                          strict=True):
            member = self.members[m]
            xs = inp.xs.double()  # (n_syn, k, d)
            count, c = xs.shape[0], inp.context_ys.shape[-1]
            if mode == "sample":
                gen = make_generator(member.seed, "prior_w", generation)
                z = torch.randn(count, xs.shape[-1], generator=gen, dtype=torch.float64)
                w = self.mu[m] + z @ sqrt_psd(self.sigma[m])
            elif mode == "mean":
                w = self.mu[m].expand(count, -1)
            else:
                prefix_x = xs[:, :c + 1][None]  # the c pairs and one query position
                prefix_y = torch.cat([inp.context_ys.double(), xs.new_zeros(count, 1)], -1)[None]
                w = posterior_mean_weights(prefix_x, prefix_y, self.mu[m:m + 1],
                                           self.sigma[m:m + 1], self.noise_var)[0, :, c]
            ys = torch.einsum("nkd,nd->nk", xs, w)
            if inp.noise is not None and self.noise_var > 0:
                ys = ys + self.ctx.task.noise_std * inp.noise.double()
            if c:
                ys[:, :c] = inp.context_ys.double()
            out.append(PromptSet(inp.xs, ys.to(inp.xs.dtype)))
        return out

    def _errors(self, xs: Tensor, ys: Tensor) -> Tensor:
        """(K, n, k) squared errors / d for xs (K or 1, n, k, d), ys (K or 1, n, k)."""
        pred = bayes_predictions(xs.cpu(), ys.cpu(), self.mu, self.sigma, self.noise_var)
        return squared_error(pred, ys.cpu().double().expand_as(pred), xs.shape[-1]).float()

    def errors(self, sets) -> Tensor:
        if isinstance(sets, PromptSet):
            return self._errors(sets.xs[None], sets.ys[None])
        return self._errors(pad_stack([s.xs for s in sets]), pad_stack([s.ys for s in sets]))

    def predictions(self, sets: PromptSet) -> Tensor:
        """(K, n, k) in float64: twin differences of this exact learner need the precision."""
        return bayes_predictions(sets.xs[None].cpu(), sets.ys[None].cpu(), self.mu, self.sigma,
                                 self.noise_var)

    def state_dict(self) -> dict:
        return {"mu": self.mu.clone(), "sigma": self.sigma.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.mu = state["mu"].clone().double()
        self.sigma = state["sigma"].clone().double()


def prior_drift_metrics(generation: int, learner: Learner, datasets: list[PromptSet],
                        new_synthetic: list[PromptSet]) -> list[dict]:
    """LoopRun hook: ||mu_i - mu*||^2 and tr(Sigma_i) / tr(Sigma*) per member. mu* is the
    mean of the tasks real prompts draw from: 0 under the Gaussian prior, the pool's mean with a
    task pool (`task.n_tasks`), where the learner fitted on S_0 converges as n grows.

    Members of any other learner get no extra fields.
    """
    if not isinstance(learner, GaussianPriorLearner):
        return [{} for _ in datasets]
    true_trace = learner.known_sigma().trace().item()
    target = torch.stack([  # (K, p)
        m.pool.weights.mean(0).to(learner.mu) if m.pool is not None
        else torch.zeros_like(learner.mu[0]) for m in learner.members])
    err2 = (learner.mu - target).pow(2).sum(-1)  # (K,)
    ratio = learner.sigma.diagonal(dim1=-2, dim2=-1).sum(-1) / true_trace
    return [{"prior_mean_err2": err2[m].item(), "prior_cov_trace_ratio": ratio[m].item()}
            for m in range(len(datasets))]
