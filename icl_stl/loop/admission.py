"""The admission test of a filter (P6): on oracle-labelled prompts, does it keep the task spread?

Oracle-labelled prompts are distributed as real ones, so whatever a filter keeps of them should
look real too, unless the filter selects on the task. The test labels a pool of prompts by the
oracle (tasks from the prior N(0, w_scale^2 I), labels with the task's noise), filters it with
the loop's own code (`filters.select`, the verifier, `spread_filters`), and compares the kept
prompts with the whole pool, itself a real sample (comparing with the pool they were drawn
from removes the pool's own sampling noise from the comparison):

- `w_cov_ratio`: tr Cov(w_hat) kept over pool, w_hat the least-squares task of each prompt;
- `w_norm_ratio`: mean ||w_hat|| kept over pool (`fidelity.task_spread`).

A filter is admitted when both lie within +-`TOLERANCE` (2%) of 1. Resolution: with a pool of
N prompts and a kept fraction q, a label-blind subset's ratio has a relative standard error of
about sqrt(2 (1 - q) / (d q N)) (Gaussian tasks; label noise adds a little): 0.4% at the default
N = 40,000, q = 0.5, d = 3, so +-2% is five standard errors, and a filter that removes 2% of the
spread fails with certainty. The verifier is fitted on `n_real` = 10,000 other real prompts, as
on S_0 in the P6 presets (its w_var read off them: 0.8% relative error at d = 3).

`best_of_k` is no loop filter: it labels each x K times and keeps the labelling the verifier
scores best (the documented negative example with `verifier`, ranking or threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from icl_stl.data.prompts import PromptSet
from icl_stl.data.seeding import make_generator
from icl_stl.loop.fidelity import task_spread
from icl_stl.loop.filters import pool_size, select
from icl_stl.loop.spread_filters import acceptance, log_density_ratio, residual_scores
from icl_stl.loop.verifier import RidgeVerifier, fit_verifier, predictive_moments, verifier_scores

__all__ = ["ADMITTED_FILTERS", "Admission", "TOLERANCE", "admission_test", "admit",
           "oracle_prompts"]

TOLERANCE = 0.02
POOL = 40_000
N_REAL = 10_000
# The loop filters that pass the test at the P6 setting (tests/loop/test_admission.py).
ADMITTED_FILTERS = ("residual", "density_ratio")
CANDIDATES = ("verifier", "residual", "density_ratio", "best_of_k", "random")


@dataclass(frozen=True)
class Admission:
    """The kept prompts' spread against the pool's, and whether the filter is admitted."""

    filter: str
    w_cov_ratio: float
    w_norm_ratio: float
    kept: int
    pool: int
    tolerance: float = TOLERANCE

    @property
    def admitted(self) -> bool:
        return all(math.isfinite(r) and abs(r - 1.0) <= self.tolerance
                   for r in (self.w_cov_ratio, self.w_norm_ratio))

    def describe(self) -> str:
        return (f"{self.filter}: covariance-trace ratio {self.w_cov_ratio:.3f}, mean ||w|| "
                f"ratio {self.w_norm_ratio:.3f} ({self.kept} of {self.pool} kept): "
                + ("admitted" if self.admitted else f"not admitted (outside 1 +- "
                                                    f"{self.tolerance:g})"))


def admit(name: str, kept: PromptSet, reference: PromptSet,
          tolerance: float = TOLERANCE) -> Admission:
    """The admission of a filter that kept `kept` from the oracle-labelled `reference`."""
    spread = task_spread(kept, reference)
    return Admission(name, spread["w_cov_ratio"], spread["w_norm_ratio"], len(kept),
                     len(reference), tolerance)


def oracle_prompts(size: int, d: int, k: int, noise_std: float, w_scale: float,
                   gen: torch.Generator, xs: torch.Tensor | None = None) -> PromptSet:
    """`size` prompts labelled as the oracle labels them (in distribution: a task from the prior,
    then y = <w, x> + noise), float64; `xs` (size, k, d) reuses given inputs."""
    if xs is None:
        xs = torch.randn(size, k, d, generator=gen, dtype=torch.float64)
    w = w_scale * torch.randn(size, d, generator=gen, dtype=torch.float64)
    ys = (xs @ w.unsqueeze(-1)).squeeze(-1)
    ys = ys + noise_std * torch.randn(size, k, generator=gen, dtype=torch.float64)
    return PromptSet(xs, ys)


def admission_test(name: str, *, d: int = 3, k: int = 8, noise_std: float = 0.25,
                   w_scale: float = 1.0, keep: float = 0.5, threshold: float | None = None,
                   pool: int = POOL, n_real: int = N_REAL, seed: int = 0,
                   tolerance: float = TOLERANCE) -> Admission:
    """Filter an oracle-labelled pool of `pool` prompts with `name` and admit it or not.

    name: verifier (best fraction `keep`, or `threshold` on its score), residual (the same),
    density_ratio (accepts about `keep` of the pool), best_of_k (K = round(1 / keep) labellings
    of each of pool / K inputs, the best kept), random (a label-blind subset: the null, whose
    ratios show the test's resolution)."""
    if name not in CANDIDATES:
        raise ValueError(f"filter must be one of {CANDIDATES}, got {name!r}")
    gen = make_generator(seed, "admission", name)
    real = oracle_prompts(n_real, d, k, noise_std, w_scale, gen)  # the verifier's S_0
    verifier = fit_verifier(real, noise_std ** 2, w_var=None)
    if name == "best_of_k":
        labellings = max(2, round(1.0 / keep))
        xs = torch.randn(pool // labellings, k, d, generator=gen, dtype=torch.float64)
        sets = [oracle_prompts(len(xs), d, k, noise_std, w_scale, gen, xs)
                for _ in range(labellings)]
        scores = torch.stack([verifier_scores(verifier, s) for s in sets])  # (K, m)
        best = scores.argmin(0)  # (m,)
        ys = torch.stack([s.ys for s in sets])[best, torch.arange(len(xs))]
        reference = PromptSet(torch.cat([s.xs for s in sets]), torch.cat([s.ys for s in sets]))
        return admit(name, PromptSet(xs, ys), reference, tolerance)
    labelled = oracle_prompts(pool, d, k, noise_std, w_scale, gen)
    wanted = min(pool, max(1, round(pool * keep)))
    if pool_size(wanted, keep) > pool:
        wanted = math.floor(pool * keep)
    if name == "verifier":
        chosen = select(verifier_scores(verifier, labelled), wanted, threshold)
    elif name == "residual":
        chosen = select(residual_scores(labelled, noise_std ** 2), wanted, threshold)
    elif name == "density_ratio":
        oracle = RidgeVerifier(torch.zeros(d, dtype=torch.float64), w_scale ** 2,
                               noise_std ** 2, 1)
        log_ratio = log_density_ratio(verifier, labelled, *predictive_moments(oracle, labelled))
        scores, bound = acceptance(log_ratio, wanted, gen)
        chosen = select(scores, wanted, bound)
    else:
        chosen = select(torch.rand(pool, generator=gen, dtype=torch.float64), wanted)
    return admit(name, labelled[chosen.index], labelled, tolerance)
