"""The rules' settings: every margin, level, seed count and bootstrap size a verdict uses.

`ReportConfig` is fixed before the data are read (`icl-stl-report PATH KEY=VALUE` changes it)
and printed in REPORT.md and verdicts.json. What a verdict is and how group verdicts combine is
in `verdict`; each prediction's rule text and the code that applies it in `predictions/`; the
statistics in `stats`. docs/THEORY.md states each prediction with its test, margin and possible
verdicts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from icl_stl.report.stats import Levels
from icl_stl.training.gate import RIDGE_TOLERANCE

__all__ = ["RIDGE_TOLERANCE", "ReportConfig"]


@dataclass
class ReportConfig:
    """Every threshold of the verdicts, fixed before the data are read (`icl-stl-report KEY=V`).

    Margins are relative (to the generation-0 risk, the plateau, or gamma) so one default fits
    every scale; docs/THEORY.md explains each default.
    """

    # Which rules judge P1 and P2: "v2" (excess risk against the matched oracle-labelled loop,
    # docs/THEORY.md section 8) or "v1" (the exploratory rules of docs/results/cpu).
    rules: str = "v2"
    alpha: float = 0.05  # one-sided level of every test (intervals shown are 1 - 2 alpha)
    power: float = 0.80  # power the minimum detectable effect (MDE) is computed for
    min_seeds: int = 5  # fewer seeds than this: underpowered, never confirmed or refuted
    p1_margin: float = 0.10  # collapse: rise (final - gen 0) / gen-0 risk must exceed this
    p2_margin: float = 0.02  # bounded: |slope per generation| / plateau inside +-this
    order_margin: float = 0.05  # larger lambda, lower plateau: fall across the lambda range
    p3_shrink_margin: float = 0.10  # gamma against n: log-log slope below -this
    p3_bounded_margin: float = 0.05  # gamma bounded in i: |slope| / mean gamma inside +-this
    chaos_ratio: float = 0.5  # gamma must be significantly below this x the chaos ceiling
    p4_metric: str = "gen_gap"  # primary decay metric; excess_risk is shown beside it
    p4_tolerance: float = 0.0  # consistent: decay exponent significantly below -1/4 + this
    p4_margin: float = 0.10  # resolution: underpowered when the exponent's MDE exceeds it
    p4_min_ns: int = 6  # decay fit needs at least this many n ...
    p4_min_decades: float = 2.0  # ... spanning at least this many decades
    p4_fit_min_n: int | None = None  # fit range, fixed in advance (null: the probe's fit_ns)
    p4_fit_max_n: int | None = None
    p4_floor: float | None = None  # E_inf of y = E_inf + A n^b (null: fitted)
    p5_margin: float = 0.02  # interior optimum: risk gain over the better endpoint / risk
    p6_margin: float = 0.02  # filtered loop bounded: |slope per generation| / plateau inside
    p6_order_margin: float = 0.05  # better verifier, lower plateau: fall across quality range
    p7_margin: float = 0.10  # decaying lambda like constant at its floor: risk ratio 1 +- this
    p7_collapse_margin: float = 0.02  # floor 0: risk grows by more than this per generation
    p8_margin: float = math.log(2)  # pool below threshold: log(dist to ridge / dist to dMMSE)
    p8_drift_margin: float = 0.10  # drift below vs above: log rise differs by log(1 + this)
    # Version 2 (docs/THEORY.md, "Rules, version 2"): the margins on the log contrast
    # log(excess risk / the oracle-labelled loop's), fixed from the pilot before any
    # confirmatory run.
    v2_delta1: float = 0.48  # P1: mean log contrast over generations 1..G must exceed this
    v2_delta2: float = 0.06  # P2: per-seed slope of the log contrast inside +-this per gen.
    v2_horizon: int = 8  # P1, P2: judged only with at least this many generations after 0
    v2_transient: float = 0.05  # P2: window starts at the first i with (1-lambda)^(i+1) <= this
    # Seeds enter in a fixed order: the first this many readable loops of a group are read.
    v2_p1_seeds: int | None = 10
    v2_p2_seeds: int | None = 20
    v2_regime: str = "from_scratch"  # the primary regime (warm_start groups are secondary)
    # P3, version 2 (docs/THEORY.md section 8.4; not testable on this CPU, so provisional
    # until a larger pilot measures later generations): the paired recursion ratio rho must
    # exceed delta_3 (in units of generation 0's per-prompt effect), over generations 1..G
    v2_p3_delta: float = 1.0
    v2_p3_horizon: int = 3
    v2_p3_seeds: int | None = 10
    # P5, version 2 (docs/THEORY.md section 8.6): a quadratic in m / n per seed, compute
    # growing with m. depth: the smallest dip (each end above the interior's mean, log excess
    # risk) the test must resolve, 82% power at 20 seeds with the retrain noise of
    # docs/results/pilot-p5-v2/sizing.json; curvature: what the curvature's MDE is read
    # against; trend: the resolution of the slope of log(vertex) against log n.
    v2_p5_seeds: int | None = 20
    v2_p5_depth: float = 0.20
    v2_p5_curvature: float = 0.05
    v2_p5_trend_margin: float = 0.5
    v2_p5_grid_max: float = 3.0  # the grid must reach this m / n
    # P6, version 2 (docs/THEORY.md section 8.9, fixed from its pilot, docs/results/pilot-p6):
    # per seed, the filter x labeller interaction on log excess risk, mean over generations
    # 1..G, must fall below -delta_6 (halfway between "the filter does nothing" and "the filter
    # removes the pilot's collapse"); and on the co-primary scales, the same interaction of the
    # head's log z^2 must stay below +calibration and that of the kept tasks' log covariance-
    # trace ratio above -spread (a filter may not move the collapse to another scale).
    v2_p6_delta: float = 0.57
    v2_p6_calibration: float = 0.22  # log 1.25: a quarter more z^2 than the unfiltered pair
    v2_p6_spread: float = 0.22  # log 1.25: the kept covariance trace at least 0.8 of it
    v2_p6_seeds: int | None = 10
    v2_p6_primary_filter: str = "residual"  # the primary group's filter (the largest n first)
    # P9, version 2 (docs/THEORY.md section 8.10, fixed from its pilot): P2's joint test on
    # log(E_acc / E_oracle-replace), the window from where the reference learner's drift with
    # S_0 kept rises by at most window_share x delta_2 per generation (i_0 = 6), at least
    # min_window generations long, to the horizon 12. At the pilot's noise 20 seeds confirm the
    # reference learner's bounded drift in 99% of draws (docs/results/pilot-p9/sizing.json).
    v2_p9_seeds: int | None = 20
    v2_p9_horizon: int = 12
    v2_p9_window_share: float = 0.2
    v2_p9_min_window: int = 3
    # P10, version 2 (docs/THEORY.md section 8.8): log excess risk at the last generation
    # against the real weight v (loop.real_weight), P5's quadratic and end contrasts per seed;
    # direction: the resolution of the change, fresh against reused real data, of the w = 1
    # end's contrast (how far w* moves). Provisional until the pilot sizes them.
    v2_p10_seeds: int | None = 20
    v2_p10_depth: float = 0.20
    v2_p10_curvature: float = 0.05
    v2_p10_direction: float = 0.20
    failure_gap: float = 0.5  # a later generation closing less of the gap failed to train
    failure_train_ratio: float = 3.0  # ... or whose own training risk is this x the oracle's
    bootstrap: int = 2000  # seed-bootstrap replicates (P4, P5)
    bootstrap_seed: int = 0
    gate_tolerance: float = RIDGE_TOLERANCE  # the training gate (icl_stl.training.gate)
    primary: dict[str, str] = field(default_factory=dict)  # prediction -> group name

    @property
    def levels(self) -> Levels:
        return Levels(self.alpha, self.power, self.min_seeds)

    def validate(self) -> None:
        for name in ("alpha", "power"):
            v = getattr(self, name)
            if not (0.0 < v < 1.0):
                raise ValueError(f"report setting {name} must be in (0, 1), got {v!r}")
        if self.alpha >= 0.5:
            raise ValueError(f"report setting alpha must be below 0.5, got {self.alpha!r}")
        if int(self.min_seeds) != self.min_seeds or self.min_seeds < 2:
            raise ValueError(f"report setting min_seeds must be an integer >= 2, "
                             f"got {self.min_seeds!r}")
        for name in ("p1_margin", "p2_margin", "order_margin", "p3_shrink_margin",
                     "p3_bounded_margin", "p4_margin", "p5_margin", "p4_min_decades",
                     "gate_tolerance", "p6_margin", "p6_order_margin", "p7_margin",
                     "p7_collapse_margin", "p8_margin", "p8_drift_margin"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"report setting {name} must be a finite number >= 0, got {v!r}")
        if not (0.0 < self.chaos_ratio <= 1.0):
            raise ValueError(f"report setting chaos_ratio must be in (0, 1], "
                             f"got {self.chaos_ratio!r}")
        if self.p4_metric not in ("gen_gap", "excess_risk", "test_risk", "real_gen_gap"):
            raise ValueError(f"report setting p4_metric must be gen_gap, excess_risk, test_risk "
                             f"or real_gen_gap, got {self.p4_metric!r}")
        if self.rules not in ("v1", "v2"):
            raise ValueError(f"report setting rules must be v1 or v2, got {self.rules!r}")
        for name in ("v2_delta1", "v2_delta2", "v2_p6_delta", "v2_p6_calibration",
                     "v2_p6_spread", "v2_p5_depth", "v2_p5_curvature", "v2_p5_trend_margin",
                     "v2_p5_grid_max", "v2_p10_depth", "v2_p10_curvature", "v2_p10_direction"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"report setting {name} must be a number > 0, got {v!r}")
        if not (0.0 < self.v2_transient < 1.0):
            raise ValueError(f"report setting v2_transient must be in (0, 1), "
                             f"got {self.v2_transient!r}")
        if not (math.isfinite(self.v2_p3_delta) and self.v2_p3_delta >= 0):
            raise ValueError(f"report setting v2_p3_delta must be a finite number >= 0, "
                             f"got {self.v2_p3_delta!r}")
        if self.v2_p3_horizon < 1:
            raise ValueError(f"report setting v2_p3_horizon must be >= 1, "
                             f"got {self.v2_p3_horizon!r}")
        if not (0.0 < self.v2_p9_window_share <= 1.0):
            raise ValueError(f"report setting v2_p9_window_share must be in (0, 1], "
                             f"got {self.v2_p9_window_share!r}")
        if self.v2_p9_min_window < 2 or self.v2_p9_horizon < 1:
            raise ValueError(f"report settings v2_p9_min_window must be >= 2 and "
                             f"v2_p9_horizon >= 1, got {self.v2_p9_min_window!r} and "
                             f"{self.v2_p9_horizon!r}")
        for name in ("v2_p1_seeds", "v2_p2_seeds", "v2_p3_seeds", "v2_p5_seeds",
                     "v2_p6_seeds", "v2_p9_seeds",
                     "v2_p10_seeds"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                raise ValueError(f"report setting {name} must be null or >= 2, "
                                 f"got {getattr(self, name)!r}")
        from icl_stl.loop.admission import ADMITTED_FILTERS

        if self.v2_p6_primary_filter not in ADMITTED_FILTERS:
            raise ValueError(f"report setting v2_p6_primary_filter must be an admitted filter "
                             f"({', '.join(sorted(ADMITTED_FILTERS))}), got "
                             f"{self.v2_p6_primary_filter!r}")
        if self.v2_horizon < 3:
            raise ValueError(f"report setting v2_horizon must be >= 3, got {self.v2_horizon!r}")
        if self.v2_regime not in ("from_scratch", "warm_start"):
            raise ValueError(f"report setting v2_regime must be from_scratch or warm_start, "
                             f"got {self.v2_regime!r}")
        if not (0.0 <= self.failure_gap < 1.0 and self.failure_train_ratio > 1.0):
            raise ValueError(f"report settings failure_gap must be in [0, 1) and "
                             f"failure_train_ratio > 1, got {self.failure_gap!r} and "
                             f"{self.failure_train_ratio!r}")
        if self.bootstrap < 100:
            raise ValueError(f"report setting bootstrap must be >= 100, got {self.bootstrap!r}")
        if self.p4_min_ns < 3:
            raise ValueError(f"report setting p4_min_ns must be >= 3, got {self.p4_min_ns!r}")

    @classmethod
    def from_overrides(cls, overrides: Iterable[str]) -> ReportConfig:
        """Settings from "key=value" strings (`primary.3=NAME` names a primary group)."""
        cfg = cls()
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in overrides:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"report setting must be KEY=VALUE, got {item!r}")
            if key.startswith("primary."):
                cfg.primary[key.removeprefix("primary.")] = value
                continue
            if key not in types or key == "primary":
                known = ", ".join(sorted(k for k in types if k != "primary"))
                raise ValueError(f"unknown report setting {key!r} (known: {known}, primary.N)")
            setattr(cfg, key, _parse(key, value, str(types[key])))
        cfg.validate()
        return cfg

    @classmethod
    def from_settings(cls, stored: dict) -> ReportConfig:
        """The settings a written report recorded (verdicts.json "settings"), so that it can be
        regenerated as it was written; one written before the rules had versions is "v1"."""
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in stored.items() if k in known})
        if "rules" not in stored:
            cfg.rules = "v1"
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _parse(key: str, value: str, kind: str):
    text = value.strip()
    if "None" in kind and text.lower() in ("null", "none", ""):
        return None
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"report setting {key} must be a number, got {value!r}") from None
    return text

