"""The reference learner under accumulation (P9; docs/accumulation.md): closed forms of its drift
for each way S_i holds synthetic data (`loop.synthetic`), and the window P9 is judged on.

Setting (docs/THEORY.md, section 6): the learner estimates the task mean as the average of the
w's of the prompts of S_i (w read off exactly: k >= d, no label noise; known covariance
w_var I; lambda = 0), and draws each synthetic prompt's w from N(mu_{i-1}, w_var I). Each
generation draws n synthetic prompts (volume_matched: i n). In units of d w_var / n, with
delta_i = mu_i - mu* and D_i = n E||delta_i||^2 / (d w_var):

- replace (S_i: the n prompts of generation i-1): delta_i = delta_{i-1} + eps_i, D_i = i + 1;
- accumulate_s0 (S_0 kept, every generation's prompts added; Gerstgrasser et al., 2024): mu_i
  averages i + 1 sets of n, the newest centred on mu_{i-1}, so delta_i = delta_{i-1} +
  eps_i / (i + 1) and D_i = sum_{j <= i + 1} j^-2, bounded by pi^2 / 6;
- accumulate (S_0 dropped: this loop's accumulate at lambda = 0): delta_i = delta_{i-1} +
  eps_i / i for i >= 1, D_i = 1 + sum_{j <= i} j^-2, bounded by 1 + pi^2 / 6;
- volume_matched (S_0 plus i n prompts, all from generation i-1): delta_i = (delta_0 +
  i delta_{i-1} + sqrt(i) eps_i) / (i + 1), with eps_i of unit variance. Writing delta_i =
  delta_0 + eta_i, the coefficient of delta_0 stays 1 and v_i = E||eta_i||^2 (units as above)
  obeys v_i = (i^2 v_{i-1} + i) / (i + 1)^2, v_0 = 0, solved by v_i = i / (2 (i + 1)): so
  D_i = 1 + i / (2 (i + 1)), bounded by 3/2. At generation 7 it is 1.44 against
  accumulate_s0's 1.53 (the issue's numbers): the same data volume drifts less when nothing is
  older than one generation, because S_0's weight is the same and the synthetic part's noise
  averages over more prompts.

Each arm's oracle-labelled twin trains on real-like prompts only, so its D is the inverse of
the number of real-like sets it averages: 1 (replace), 1/(i + 1) (accumulate_s0 and
volume_matched), 1/i (accumulate, i >= 1). The reference learner's excess risk is proportional
to ||delta_i||^2 (a Bayes predictor under a shifted prior mean), so its contrast against the
twin is log(D_i / D_i^oracle): log(i + 1) when replacing and log((i + 1) D_i) with S_0 kept.
That contrast is NOT bounded in the reference learner: the twin keeps gaining from the volume
while the loop's own drift settles. Whether the transformer's twin gains (at a fixed step
budget its passes over the data fall) is for the pilot to show; P9's report states the twin's
own trend beside the contrast.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["ARMS", "accumulation_drift", "oracle_twin_drift", "reference_contrast",
           "window_start"]

FloatArray = npt.NDArray[np.float64]

ARMS = ("replace", "accumulate", "accumulate_s0", "volume_matched")  # `loop.synthetic`


def _generations(generations: int) -> np.ndarray:
    if isinstance(generations, bool) or int(generations) != generations or generations < 0:
        raise ValueError(f"generations must be an integer >= 0, got {generations!r}")
    return np.arange(int(generations) + 1, dtype=np.float64)


def _arm(arm: str) -> str:
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {list(ARMS)}, got {arm!r}")
    return arm


def accumulation_drift(generations: int, arm: str) -> FloatArray:
    """D_i = n E||mu_i - mu*||^2 / (d w_var) for i = 0..generations under `arm` (module doc):
    i + 1 (replace), 1 + sum_{j<=i} j^-2 (accumulate), sum_{j<=i+1} j^-2 (accumulate_s0),
    1 + i / (2 (i + 1)) (volume_matched). Multiply by d w_var / n for E||delta_i||^2."""
    i = _generations(generations)
    arm = _arm(arm)
    inverse_squares = np.cumsum(1.0 / np.arange(1, i.size + 1, dtype=np.float64) ** 2)
    if arm == "replace":
        return i + 1.0
    if arm == "accumulate_s0":
        return inverse_squares  # sum_{j <= i + 1}
    if arm == "accumulate":
        return 1.0 + np.concatenate([[0.0], inverse_squares[:-1]])  # 1 + sum_{j <= i}
    return 1.0 + i / (2.0 * (i + 1.0))


def oracle_twin_drift(generations: int, arm: str) -> FloatArray:
    """The same D_i for the arm's oracle-labelled twin, whose synthetic prompts are distributed
    like real ones: 1 / (the number of sets of n real-like prompts it averages)."""
    i = _generations(generations)
    arm = _arm(arm)
    if arm == "replace":
        return np.ones_like(i)
    if arm == "accumulate":
        return 1.0 / np.maximum(i, 1.0)  # generation 0 is S_0 itself
    return 1.0 / (i + 1.0)


def reference_contrast(generations: int, arm: str) -> FloatArray:
    """log(D_i / D_i^oracle): the reference learner's log contrast against its oracle twin."""
    return np.log(accumulation_drift(generations, arm) / oracle_twin_drift(generations, arm))


def window_start(delta_2: float, share: float = 0.2, arm: str = "accumulate_s0",
                 limit: int = 10_000) -> int:
    """The first generation i_0 >= 1 from which the reference learner's drift rises by at most
    `share` x `delta_2` per generation on the log scale: log(D_{i+1} / D_i) <= share delta_2
    for i = i_0 (and, the rise falling with i, for every later i). P9's window starts there.

    With S_0 kept and delta_2 = 0.06 the bound is 0.012 and i_0 = 6 (the rise from 5 to 6 is
    0.0136, from 6 to 7 0.0103). `arm` must settle (not replace, whose rise log((i+2)/(i+1))
    crosses any bound only late and never stops rising in total)."""
    bound = float(share) * float(delta_2)
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"share x delta_2 must be a positive number, got {share!r} x "
                         f"{delta_2!r}")
    if _arm(arm) == "replace":
        raise ValueError("arm 'replace' does not settle: its drift grows as i + 1")
    drift = accumulation_drift(limit + 1, arm)
    rise = np.diff(np.log(drift))  # rise[i]: from generation i to i + 1
    below = np.nonzero(rise[1:] <= bound)[0]
    if below.size == 0:
        raise ValueError(f"no generation up to {limit} rises by at most {bound:g}")
    return int(below[0]) + 1
