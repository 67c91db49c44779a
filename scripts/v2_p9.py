"""The P9 setting of the confirmatory reproduction (`--setting p9`, and `gpu_d20_p9` on a GPU;
used by scripts/v2_settings.py, v2_programme.py and v2_report.py).

P9 (icl_stl/report/predictions/p9_accumulation.py) judges accumulation with S_0 kept
(`loop.synthetic=accumulate_s0`, lambda = 0) against the same seed's *oracle-labelled replace*
loop: the oracle twin of a P1-style loop. So the setting has two matched arms (scripts/
v2_arms.py): `p1`, replace at lambda = 0 beside its oracle twin (the control's arm), and `p9`,
accumulate_s0 at lambda = 0 beside its own oracle twin, paired with p1 as d3's p6 is: P9 reads a
seed only when both its p9 pair and its p1 pair are readable.

- No `p2` arm: P2 is judged by the d = 2 and d = 3 programmes.
- No `lambda1` arm: the secondary lambda = 1 loop is P1's and P2's shown control; P9's control
  is the oracle-labelled replace loop, against which a lambda = 1 loop (all real data, no
  synthetic prompt to accumulate) adds nothing.
- P1's verdict over the p1 arm's loops (replace at G = 12, at most v2_p1_seeds of them) is a
  by-product of the control's runs, not the confirmatory P1 (the d = 2 programme's): the report
  says so beside it (`BY_PRODUCT`).
- P9's planned minimum detectable effect (`p9_design`) uses the noise of P9's own pilot for
  this very statistic (`P9_SIZING`'s controls.replace_twin.noise); until that file exists the
  programme records a note instead.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("p9", "gpu_d20_p9")
P9_SIZING = "docs/results/pilot-p9/sizing.json"  # the noise behind P9's planned MDE
CONTROL = "replace_twin"  # sizing.json's control that is P9's statistic
# The members' training rate per one-thread worker beside a second, for the plan until the
# programme has timed a generation of its own: the d = 2 programme's generations of 10
# members (docs/results/cpu-v2/runs/p1/*/timing.json; the slowest block's median, 1,480 s for
# 6,000 steps, 40.5 member steps/s, on the first machine; the second ran at 57; tests/system/
# test_p9_setting.py ties the number to those files), so that a part fits its hour on either.
# The CPU pilot's table (v2_programme.PRIOR_STEP_SECONDS) says 56 at that size, which made the
# first machine's estimates a third too short.
CPU_MEMBER_STEPS_PER_S = 41.0
BY_PRODUCT = ("a by-product of the P9 setting: the replace loops (lambda = 0, G = 12) that "
              "hold P9's control; not the confirmatory P1, which is the d = 2 programme's")
NOT_RUN_HERE = {"2": ("P2", "P2 is judged by the d = 2 and d = 3 programmes; the P9 setting "
                            "runs lambda = 0 only")}


def p9_noise() -> tuple[dict | None, str]:
    """(the pilot's noise of P9's statistic, or None; where it comes from, or why it is
    missing)."""
    path = REPO / P9_SIZING
    if not path.exists():
        return None, (f"{P9_SIZING} does not exist yet (P9's pilot sizes the rule): no planned "
                      "minimum detectable effect")
    control = json.loads(path.read_text()).get("controls", {}).get(CONTROL, {})
    noise = control.get("noise")
    if not noise or noise.get("sigma") is None or noise.get("tau") is None:
        return None, (f"{P9_SIZING} holds no noise for controls.{CONTROL} "
                      f"({control.get('not_sized', 'not sized')}): no planned minimum "
                      "detectable effect")
    return noise, P9_SIZING


def p9_design(cfg, seeds: int, noise: dict, source: str, draws: int = 4000,
              seed: int = 0) -> dict:
    """P9's minimum detectable effects at its seed count, before any data, as P2's
    (`simulate_v2.planned_mde`) but over P9's horizon and window: the smallest slope margin
    that the slope's TOST certifies at a flat truth (the rule's margin is delta_2), and how far
    below delta_1 the mean log contrast must lie for the joint test's second part; simulated
    through the report's own `p2_matched_core` with the pilot's noise."""
    import numpy as np

    from icl_stl.report.predictions.p2_matched_bounded import p2_matched_core
    from icl_stl.report.predictions.p9_accumulation import p9_window
    from icl_stl.report.simulate_v2 import Noise, _smallest, constant, draw
    from icl_stl.report.stats import rates

    gens = np.arange(1, cfg.v2_p9_horizon + 1)
    window = p9_window(cfg, [int(g) for g in gens])
    if window is None:
        return {"seeds": seeds, "not_planned": f"P9's window is shorter than "
                f"{cfg.v2_p9_min_window} generations at horizon {cfg.v2_p9_horizon}"}
    base = draw(constant(0.0), gens, seeds, Noise(noise["sigma"], noise["tau"]), draws,
                np.random.default_rng(seed))
    inside = gens >= window[0]

    def slope_certified(margin: float) -> float:
        wide = replace(cfg, v2_delta2=max(margin, 1e-12))
        return rates(p2_matched_core(base[..., inside], window, base, wide)["slope"]["code"])[
            "confirmed"]

    def below(effect: float) -> float:
        level = base + cfg.v2_delta1 - effect
        return rates(p2_matched_core(level[..., inside], window, level, cfg)["below"]["code"])[
            "confirmed"]

    return {"seeds": seeds, "window": window, "horizon": cfg.v2_p9_horizon,
            "margin": cfg.v2_delta2,
            "min_detectable_effect": _smallest(slope_certified, cfg.power, 5.0),
            "noise": {"sigma": noise["sigma"], "tau": noise["tau"]}, "noise_source": source,
            "meaning": "the smallest slope margin (per generation) of log(E_acc / "
                       "E_oracle-replace) over P9's window that the slope's TOST certifies at "
                       "a flat truth; the rule's margin is delta_2",
            "below_delta_1": {"margin": cfg.v2_delta1,
                              "min_detectable_effect": _smallest(below, cfg.power, 5.0)}}


def planned(cfg, seeds: int) -> dict:
    """programme.json's design entry for P9: `p9_design` at the pilot's noise, or the note."""
    noise, source = p9_noise()
    if noise is None or seeds < 2:
        return {"seeds": seeds, "not_planned": source if noise is None else
                "fewer than 2 seeds"}
    return p9_design(cfg, seeds, noise, source)


def untested_verdicts(prog: dict) -> dict[str, dict]:
    """The P9 setting's verdicts of the rules it does not run beside the arms' own: P2."""
    return {number: {"verdict": "not run", "statement": f"{name} is not run in the P9 "
                     f"setting: {why}", "why": f"not run in this setting: {why}",
                     "pilot": None}
            for number, (name, why) in NOT_RUN_HERE.items()
            if name.lower() not in prog["arms"]}
