"""The arms of each setting of the confirmatory reproduction, and how a paired arm's rule reads
two of them (used by scripts/v2_settings.py, v2_programme.py, v2_gate.py and v2_report.py).

An *arm* is a kind of loop (scripts/v2_schedule.py). Every setting runs `p1` (lambda = 0) and
`p2` (lambda = 0.5), each loop beside its oracle-labelled twin, and `lambda1`, the secondary
control. The second setting (d3) adds `p6`: P1's loops under the residual filter (keep 0.5),
each beside its oracle twin under the same filter (docs/THEORY.md section 8.9). d2 and its GPU
preset keep exactly their three arms, so their programmes plan, run and report as before.

A *paired* arm's rule reads its own loops and another arm's of the same seeds: P6's statistic
is the filter x labeller interaction, the p6 pair against the same seed's p1 pair
(`report.predictions.p6_matched_filters`). So (programme.json: `arms.p6.paired_with = "p1"`):
- the p1 arm runs every seed the p6 arm runs: max(P1's count, P6's count) seeds, while P1's
  rule still reads only the first v2_p1_seeds readable ones (`run_seeds`);
- P6's seeds are the first v2_p6_seeds that passed the gate whose p6 *and* p1 pairs are both
  readable: a seed with either unreadable is replaced by the next that passed (`unreadable_for`);
- p6's blocks come beside p1's (`families`), so that both loops of a seed finish together;
- the filter starts at generation 1, so a p6 loop's generation 0 is its p1 loop's (the same
  streams): the gate-first stage's verdict on a seed holds for both arms, and a seed that
  missed is counted once, under p1, whose generation-0 records stand for both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

SECONDARY = "lambda1"
GATE = "gate"
DEFAULT_ARMS = ("p1", "p2", SECONDARY)
# The report setting that holds each matched arm's seed count (its rule's).
COUNT_SETTING = {"p1": "v2_p1_seeds", "p2": "v2_p2_seeds", "p6": "v2_p6_seeds",
                 "p9": "v2_p9_seeds"}
# arm -> the arm whose loops of the same seeds its rule also reads (P9's control is the oracle
# twin of the same seed's p1 loop: scripts/v2_p9.py)
PAIRED = {"p6": "p1", "p9": "p1"}
P6_SIZING = "docs/results/pilot-p6/sizing.json"  # the noise behind P6's planned MDE
# A prediction whose arm a programme lacks: its verdict there is "not run", saying where it runs.
RUNS_ELSEWHERE = {
    "6": {"arm": "p6", "prediction": "P6", "pilot": "docs/results/pilot-p6",
          "where": "in the d = 3 setting (label noise, where the prior's scale matters)"},
    "9": {"arm": "p9", "prediction": "P9", "pilot": "docs/results/pilot-p9",
          "where": "in its own setting (`--setting p9`: d = 2 at horizon G = 12, against the "
                   "same seed's oracle-labelled replace loop; `gpu_d20_p9` on a GPU)"},
}


def matched_arms(arms: dict) -> list[str]:
    """The arms with an oracle twin (the loops the rules read), in the programme's order."""
    return [a for a in arms if a not in (SECONDARY, GATE)]


def readers(arms: dict, arm: str) -> list[str]:
    """The arms whose rule reads `arm`'s loops: itself and the arms paired with it."""
    return [a for a in matched_arms(arms) if a == arm or arms[a].get("paired_with") == arm]


def families(arms: dict) -> list[list[str]]:
    """Matched arms grouped with the arms paired with them (p1 with p6), in order."""
    return [readers(arms, a) for a in matched_arms(arms) if not arms[a].get("paired_with")]


def in_family_order(arms: dict, rows: dict[str, list]) -> list:
    """Each arm's new blocks (`rows`), a family's arms interleaved (p1's first block, p6's
    first, p1's second, ...), one family after the other. Without a paired arm every family
    is one arm and this is zip_longest over the arms (the gate stage's order before P6)."""
    fams = families(arms)
    if all(len(f) == 1 for f in fams):
        order = [[rows.get(a, []) for a in matched_arms(arms)]]
    else:
        order = [[rows.get(a, []) for a in fam] for fam in fams]
    return [b for group in order for row in zip_longest(*group) for b in row if b is not None]


def unreadable_for(arms: dict, arm: str, unreadable: dict[str, set[int]]) -> set[int]:
    """The seeds `arm`'s rule cannot read: its own unreadable loops, and for a paired arm
    those of the arm it is paired with."""
    paired = arms[arm].get("paired_with")
    return set(unreadable.get(arm, set())) | (set(unreadable.get(paired, set())) if paired
                                                else set())


def run_seeds(arms: dict, chosen: dict[str, list[int]]) -> dict[str, list[int]]:
    """The seeds whose loops each arm runs, in its list's order: those chosen for it and for
    every arm paired with it (`chosen`: per arm, the seeds its rule decided on so far)."""
    out = {}
    for arm in matched_arms(arms):
        wanted = {s for a in readers(arms, arm) for s in chosen.get(a, [])}
        out[arm] = [s for s in arms[arm]["seeds"] if s in wanted]
    return out


def arm_of_run(run: str | Path, runs: Path) -> str:
    """A run's arm: the folder under runs/ that holds it (runs/<arm>/<block>/)."""
    return Path(run).relative_to(runs).parts[0]


def unreadable_by_arm(records: list[dict], settings: dict, cfg, runs: Path,
                      arms: dict) -> dict[str, set[int]]:
    """Per matched arm, the seeds whose loop missed the gate or failed to train, each arm's
    loops read from its own runs (p1 and p6 share lambda = 0, so lambda cannot tell them)."""
    from icl_stl.report.matched import matched_loops

    by_arm: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_arm[arm_of_run(r["run"], runs)].append(r)
    out = {}
    for arm in matched_arms(arms):
        loops = matched_loops(by_arm.get(arm, []), settings, cfg.gate_tolerance,
                              cfg.failure_gap, cfg.failure_train_ratio)
        out[arm] = {lp.seed for lp in loops if lp.real_fraction == arms[arm]["lambda"]
                    and (not lp.gated or lp.failures)}
    return out


def not_run_verdicts(arms: dict) -> dict[str, dict]:
    """The "not run" verdicts of the predictions whose arm this programme does not have."""
    return {number: {"verdict": "not run", "statement": f"{p['prediction']} is not run in this "
                     f"setting: it runs {p['where']}, beside P1's loops of the same seeds",
                     "why": f"not run in this setting: {p['prediction']} runs {p['where']}",
                     "pilot": p["pilot"]}
            for number, p in RUNS_ELSEWHERE.items() if p["arm"] not in arms}


def p6_design(cfg, seeds: int, noise: dict, source: str, draws: int = 4000,
              seed: int = 0) -> dict:
    """P6's minimum detectable effect at its seed count, before any data: how far below
    -delta_6 the mean interaction must lie to be confirmed with power cfg.power, simulated
    through the report's own `p6_matched_core` with the P6 pilot's noise of the interaction."""
    import numpy as np

    from icl_stl.report.predictions.p6_matched_filters import p6_matched_core
    from icl_stl.report.simulate_v2 import Noise, constant, draw
    from icl_stl.report.stats import rates

    gens = np.arange(1, cfg.v2_horizon + 1)
    base = draw(constant(0.0), gens, seeds, Noise(noise["sigma"], noise["tau"]), draws,
                np.random.default_rng(seed))

    def confirmed(effect: float) -> float:
        return rates(p6_matched_core(base - cfg.v2_p6_delta - effect, cfg)["code"])["confirmed"]

    low, high = 0.0, 5.0
    if confirmed(high) < cfg.power:
        mde = math.inf
    else:
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (low, mid) if confirmed(mid) >= cfg.power else (mid, high)
        mde = high
    return {"seeds": seeds, "margin": cfg.v2_p6_delta, "min_detectable_effect": mde,
            "noise": {"sigma": noise["sigma"], "tau": noise["tau"]}, "noise_source": source,
            "meaning": "distance of the mean filter x labeller interaction below -delta_6 "
                       "that the test resolves"}
