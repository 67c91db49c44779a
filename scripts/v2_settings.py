"""Where each setting of the confirmatory reproduction takes its rules, its arms' presets, and
the guard on the rules' text (used by scripts/v2_programme.py).

The primary setting (d = 2, and the same programme at Garg et al.'s size on a GPU) is judged by
`ReportConfig`'s defaults, docs/THEORY.md section 8.1, sized by the d = 2 pilot. The second
setting (label noise at d = 3, section 8.7) is judged by the margins, horizon and seed counts of
its own pilot's sizing.json (scripts/size_v2.py --pilot docs/results/pilot-v2-d3), which its
programme records in runs/programme.json when it starts (`report_settings`), so a resume with a
different sizing is refused. Each setting's planned minimum detectable effects use its own
pilot's noise.

A setting whose generation 0 misses the gate for many seeds (d = 3: about half) runs the
*gate-first stage* (`gate_first`, scripts/v2_gate.py): generation 0 of candidate seeds first,
then the loops of the first seeds that passed. Off for d = 2 and its GPU preset, whose
programmes plan, run and record exactly as before.

Each setting has its own arms (`SettingRules.arms`; scripts/v2_arms.py): d = 2 and its GPU
preset p1, p2 and lambda1; the second setting also `p6`, P6's filtered loops, paired with p1;
the P9 setting (`p9`, and `gpu_d20_p9` on a GPU; scripts/v2_p9.py) p1 and `p9`, accumulation
with S_0 kept, paired with p1, gated first, judged by `ReportConfig`'s defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from v2_arms import DEFAULT_ARMS, PAIRED, SECONDARY
from v2_p9 import CPU_MEMBER_STEPS_PER_S

REPO = Path(__file__).resolve().parents[1]
D2_SIZING = REPO / "docs" / "results" / "pilot-v2" / "sizing.json"



class ProgrammeError(Exception):
    """Bad settings or a programme that cannot resume as asked: one line, exit code 2."""


# The report settings a setting's sizing fixes (a rule's setting: the sizing.json key).
RULES_FROM_SIZING = {"v2_delta1": "delta_1", "v2_delta2": "delta_2", "v2_horizon": "horizon",
                     "v2_p1_seeds": "seeds_p1", "v2_p2_seeds": "seeds_p2"}


@dataclass(frozen=True)
class SettingRules:
    """Where a setting's rules come from. d = 2 (and its GPU preset): `ReportConfig`'s
    defaults, which are docs/THEORY.md section 8.1 and equal the d = 2 pilot's sizing
    (tests/report/test_calibration_v2.py). The second setting: its own pilot's sizing.json
    (section 8.7), read when its programme starts and stored in runs/programme.json."""

    sizing: Path  # the pilot's sizing.json: the noise behind the planned MDEs
    from_sizing: bool  # the margins and seed counts are the sizing's, not the defaults
    gate_first: bool = False  # generation 0 of candidate seeds before the loops (v2_gate)
    arms: tuple[str, ...] = DEFAULT_ARMS  # its kinds of loop (scripts/v2_arms.py)
    # the plan's assumed member steps/s per worker until a generation is timed (None: the CPU
    # pilot's table, v2_programme.PRIOR_STEP_SECONDS); --member-steps-per-s overrides it
    member_steps_per_s: float | None = None

    def report_overrides(self, sizing: dict) -> list[str]:
        if not self.from_sizing:
            return []
        missing = [key for key in RULES_FROM_SIZING.values() if sizing.get(key) is None]
        if missing:
            raise ProgrammeError(f"{shown(self.sizing)}: {missing[0]} is "
                                 f"{sizing.get(missing[0])!r}; the pilot fixed no such number, "
                                 "so the rules of this setting are not complete")
        return [f"{name}={sizing[key]}" for name, key in RULES_FROM_SIZING.items()]


SETTING_RULES = {
    "d2": SettingRules(D2_SIZING, from_sizing=False),
    "gpu_d20": SettingRules(D2_SIZING, from_sizing=False),
    "d3": SettingRules(REPO / "docs" / "results" / "pilot-v2-d3" / "sizing.json",
                       from_sizing=True, gate_first=True, arms=(*DEFAULT_ARMS[:2], "p6",
                                                                DEFAULT_ARMS[2])),
    # P9's (scripts/v2_p9.py): no p2 and no lambda = 1 arm; gated first, as the pairing needs
    "p9": SettingRules(D2_SIZING, from_sizing=False, gate_first=True, arms=("p1", "p9"),
                       member_steps_per_s=CPU_MEMBER_STEPS_PER_S),
    "gpu_d20_p9": SettingRules(D2_SIZING, from_sizing=False, gate_first=True,
                               arms=("p1", "p9")),
}


def shown(path: Path) -> str:
    """A path as the programme records it: relative to the repository where it lies inside."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def setting_rules(setting: str) -> tuple[SettingRules, dict]:
    """The setting's rule source and its sizing.json (ProgrammeError when it has none yet)."""
    if setting not in SETTING_RULES:
        raise ProgrammeError(f"--setting {setting}: no rules are stated for it (known: "
                             f"{', '.join(sorted(SETTING_RULES))})")
    rules = SETTING_RULES[setting]
    if not rules.sizing.exists():
        raise ProgrammeError(f"--setting {setting}: {shown(rules.sizing)} does not "
                             "exist; run its pilot and scripts/size_v2.py first "
                             "(docs/reproduce.md)")
    return rules, json.loads(rules.sizing.read_text())


def theory_sections(text: str) -> dict[str, str]:
    """docs/THEORY.md's sections: each heading line, with the text up to the next heading."""
    sections: dict[str, list[str]] = {"(preamble)": []}
    current = "(preamble)"
    for line in text.splitlines():
        if line.startswith("#"):
            current = line.strip()
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return {head: "\n".join(body).strip() for head, body in sections.items()}


def changed_sections(then: str, now: str) -> list[str]:
    """The sections of `then` that `now` changed or dropped. A section added later (the rules
    of another setting or prediction, committed before *its* runs) leaves the rules in force
    when a programme started unchanged, so it does not count."""
    before, after = theory_sections(then), theory_sections(now)
    return [head for head, body in before.items() if after.get(head) != body]


def compose_arms(setting: str, overrides: list[str],
                 names: tuple[str, ...] = DEFAULT_ARMS) -> tuple[dict, dict]:
    """Each arm's preset, lambda, seeds and labellers (and its filter or way of holding
    synthetic data, where it has one other than the default), and the setting's horizon and
    steps."""
    from hydra import compose, initialize_config_dir

    from icl_stl.cli.common import CONFIG_DIR, load_app_config

    arms, shape = {}, {}
    for arm in names:
        preset = f"reproduce_v2/{setting}_{arm}"
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose("loop", overrides=[f"experiment={preset}", *overrides])
        app = load_app_config(cfg, needs_loop=True)
        (lam,) = app.members.real_fractions
        arms[arm] = {"preset": preset, "lambda": lam, "seeds": list(app.members.seeds),
                     "labellers": list(app.members.labellers or [app.loop.labeller])}
        if app.loop.filter != "none":  # only P6's arm: the other arms' records stay as they were
            arms[arm].update(filter=app.loop.filter, filter_keep=app.loop.filter_keep)
        if app.loop.synthetic != "replace":  # only P9's arm: accumulate_s0
            arms[arm]["synthetic"] = app.loop.synthetic
        shape = {"horizon": app.loop.generations, "steps": app.train.steps,
                 "later_steps": app.loop.steps or app.train.steps}
    if SECONDARY in arms and sorted(set(arms[SECONDARY]["seeds"])) != arms[SECONDARY]["seeds"]:
        raise ProgrammeError("members.seeds of the lambda = 1 loops must be ascending")
    return arms, shape


def pair_arm(arms: dict, arm: str, gate_first: bool) -> None:
    """Mark a paired arm (P6's: its rule reads p1's loops too) in `arms`, after checking that
    it can be paired: the same lambda and seed list as the arm it reads, and the gate-first
    stage, which makes an arm's blocks from the seeds its rule decided on (scripts/v2_arms.py)."""
    other = PAIRED.get(arm)
    if other is None:
        return
    spec, partner = arms[arm], arms.get(other)
    if partner is None or spec["seeds"] != partner["seeds"] or spec["lambda"] != partner[
            "lambda"]:
        raise ProgrammeError(f"{spec['preset']}: members.seeds and real_fractions must be "
                             f"{other}'s ({partner and partner['preset']}), whose loops of the "
                             f"same seeds {arm.upper()}'s rule reads")
    if not gate_first:
        raise ProgrammeError(f"{spec['preset']}: an arm paired with {other} needs the "
                             "gate-first stage (SettingRules.gate_first)")
    spec["paired_with"] = other
