"""The confirmatory reproduction's record and report (used by scripts/reproduce_v2.py).

Files under --out:
- runs/programme.json: the plan, written when the programme starts and never changed: the
  setting, presets, seeds and counts, the workers its one-member blocks are cut for (those of
  the first invocation; v2_schedule.one_member_chunks), the rules' settings, `rules_commit`
  (HEAD at the start, with docs/THEORY.md and icl_stl/report committed) and each rule's minimum
  detectable effect at its seed count. It travels with runs/, so the report regenerates from
  runs/ alone.
- runs/<arm>/<block>/: each ensemble's run directory (summary.json; timing.json holds the wall
  time of every generation it trained, over all invocations).
- state.json: the blocks made so far (spares appended when needed) and every part: its
  segments, planned and measured wall time, each invocation's command and machine. A setting
  with the gate-first stage (scripts/v2_gate.py) also records `gate` (each candidate's gap
  closed and verdict, each arm's seeds) and each part's `stage`; its gate runs are runs/gate/.
- checkpoints/, logs/ (one log per block), and the report: REPORT.md, verdicts.json, runs.csv.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import v2_arms
import v2_p9
import v2_schedule as schedule
from v2_arms import COUNT_SETTING, SECONDARY, matched_arms
from v2_settings import (  # noqa: F401
    SETTING_RULES,
    ProgrammeError,
    changed_sections,
    compose_arms,
    pair_arm,
    setting_rules,
    shown,
    theory_sections,
)

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "conf" / "experiment" / "reproduce_v2"
PROGRAMME = "programme.json"
# Seconds per optimizer step of one worker (one thread, two workers at once) by the members it
# trains, for the estimates until this programme has timed a generation of its own. K = 4 and
# 8: the pilot's generations of 6,000 steps, labelling and evaluation included (870 s with 4
# members, 910 s with 8; docs/results/pilot-v2/runs/*/timing.json). K = 16: K = 8's times the
# ratio of their training steps, 1.72, measured by scripts/measure_v2_workers.py
# (docs/bench/v2-workers-cpu-2026-12-06.json, two one-thread processes at once).
PRIOR_STEP_SECONDS = {4: 870.0 / 6000, 8: 910.0 / 6000, 16: 1.72 * 910.0 / 6000}
RULE_FILES = ("docs/THEORY.md", "icl_stl/report")


def settings_available() -> list[str]:
    return sorted(p.stem[1:] for p in (PRESETS / "setting").glob("_*.yaml"))


def run_name(prog: dict, block: schedule.Block) -> str:
    return f"v2-{prog['setting']}-{block.name}"


def run_dir(out: Path, block: schedule.Block) -> Path:
    return out / "runs" / block.arm / block.name


def _git(*args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def rules_state() -> tuple[str | None, list[str]]:
    """(HEAD, the rule files with uncommitted changes)."""
    head = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--", *RULE_FILES)
    return head, [line[3:] for line in (dirty or "").splitlines()]


def new_programme(args, counts: dict[str, int] | None = None) -> dict:
    """The plan this invocation would start (compared with a stored one on resume). `counts`:
    a smoke run's seed counts instead of the rules' (a P6 count of 0 leaves its arm out)."""
    from icl_stl.report.rules import ReportConfig
    from icl_stl.report.simulate_v2 import Noise, planned_mde

    rules, sizing = setting_rules(args.setting)
    names = tuple(a for a in rules.arms if (counts or {}).get(a) != 0)
    arms, shape = compose_arms(args.setting, args.overrides, names)
    try:
        cfg = ReportConfig.from_overrides([*rules.report_overrides(sizing),
                                           *args.report_overrides])
    except ValueError as err:
        raise ProgrammeError(str(err)) from None
    confirmatory = not (args.overrides or counts or args.report_overrides)
    if confirmatory and rules.from_sizing and shape["horizon"] != cfg.v2_horizon:
        raise ProgrammeError(f"loop.generations of {args.setting}'s presets is "
                             f"{shape['horizon']}, its sizing's horizon {cfg.v2_horizon}")
    for arm in matched_arms(arms):
        key = COUNT_SETTING[arm]
        seeds = arms[arm]["seeds"]
        if seeds != sorted(set(seeds)):
            raise ProgrammeError(f"members.seeds of {arm} must be ascending without repeats, "
                                 f"got {seeds}")
        if sorted(arms[arm]["labellers"]) != ["model", "oracle"]:
            raise ProgrammeError(f"members.labellers of {arm} must be [model, oracle], got "
                                 f"{arms[arm]['labellers']}")
        count = (counts or {}).get(arm, getattr(cfg, key))
        if confirmatory and (rules.from_sizing or arm == "p9") and count > len(seeds):
            raise ProgrammeError(f"{arms[arm]['preset']}: the rules read {count} seeds for "
                                 f"{arm.upper()}, the preset lists {len(seeds)}; list the "
                                 "count and 4 spares in members.seeds")
        arms[arm]["count"] = min(count, len(seeds))
        setattr(cfg, key, arms[arm]["count"])
        pair_arm(arms, arm, rules.gate_first)
    if SECONDARY in arms:
        arms[SECONDARY]["count"] = None
    if args.overrides and 3 <= shape["horizon"] < cfg.v2_horizon:
        cfg.v2_horizon = shape["horizon"]  # a smoke run: judged at its own (shorter) horizon
    if "p9" in arms and args.overrides and shape["horizon"] < cfg.v2_p9_horizon:
        cfg.v2_p9_horizon = shape["horizon"]  # the same for P9's horizon (a smoke run)
    noise = Noise(sizing["noise"]["sigma"], sizing["noise"]["tau"])
    if "p2" in arms:
        design = planned_mde(noise, cfg, arms["p1"]["count"], arms["p2"]["count"],
                             lam=arms["p2"]["lambda"])
        design["noise_source"] = shown(rules.sizing)
    else:  # the P9 setting: P1's reading is a by-product, P9's design its own pilot's
        design = {"how": "simulated through the report's functions with P9's own pilot's "
                         "noise of its statistic; P1's reading in this setting is a "
                         f"by-product without a planned design (power {cfg.power:g}, one-sided "
                         f"level {cfg.alpha:g})", "power": cfg.power}
    if "p6" in arms and arms["p6"]["count"] >= 2:
        p6_noise = json.loads((REPO / v2_arms.P6_SIZING).read_text())["noise"]
        design["P6"] = v2_arms.p6_design(cfg, arms["p6"]["count"], p6_noise, v2_arms.P6_SIZING)
    if "p9" in arms:
        design["P9"] = v2_p9.planned(cfg, arms["p9"]["count"])
    return {"setting": args.setting, "presets": {a: arms[a]["preset"] for a in arms},
            "arms": arms, **shape, "block_seeds": args.block_seeds, "workers": args.workers,
            "overrides": list(args.overrides), "confirmatory": confirmatory,
            "report_settings": cfg.to_dict(), "design": design,
            **({"gate_first": True} if rules.gate_first else {})}


COMPARED = ("setting", "presets", "arms", "horizon", "steps", "later_steps", "block_seeds",
            "overrides", "report_settings")


def comparable(key: str, stored, fresh):
    """`fresh` as a resume compares it with `stored`. A report setting added to ReportConfig
    after the programme started (the rule of a later prediction, with its default) is not a
    change to the programme's settings: only the settings it stored are compared, and one it
    stored that no longer exists still counts as a change."""
    if key != "report_settings" or not isinstance(stored, dict):
        return fresh
    return {name: fresh[name] for name in stored if name in fresh} | {
        name: None for name in stored if name not in fresh}


def start_or_resume(args, started: bool = True, counts: dict[str, int] | None = None) -> dict:
    """The stored programme, checked against this invocation's settings; or a new one, written
    when `started` (not for --plan)."""
    path = args.out / "runs" / PROGRAMME
    fresh = new_programme(args, counts)
    head, dirty = rules_state()
    if path.exists():
        stored = json.loads(path.read_text())
        for key in COMPARED:
            then, now = stored.get(key), comparable(key, stored.get(key), fresh[key])
            if json.dumps(then, sort_keys=True) != json.dumps(now, sort_keys=True):
                raise ProgrammeError(
                    f"{key}: the programme in {args.out} was started with "
                    f"{json.dumps(then)[:200]}, this command gives "
                    f"{json.dumps(now)[:200]}; resume with the same settings or use "
                    "another --out")
        if stored["confirmatory"] and stored["rules_commit"]:
            then = _git("show", f"{stored['rules_commit']}:docs/THEORY.md")
            now = (REPO / "docs" / "THEORY.md").read_text()
            changed = changed_sections(then, now) if then is not None else ["(unreadable)"]
            if changed:
                raise ProgrammeError(
                    f"docs/THEORY.md section {changed[0]!r} differs from rules_commit "
                    f"{stored['rules_commit'][:12]}: the rules in force when the programme "
                    "started must stay as they were (new sections may be added; restore the "
                    "section, or start over on fresh seeds)")
        return stored
    if started and fresh["confirmatory"] and (head is None or dirty):
        raise ProgrammeError(
            "the rules must be committed before the confirmatory programme starts (rules_commit "
            "is the commit that fixed them); uncommitted: " + (", ".join(dirty) if dirty
                                                               else "no git repository"))
    fresh.update(rules_commit=head, rules_commit_source="HEAD when the programme started",
                 started=datetime.datetime.now().isoformat(timespec="seconds"),
                 command=" ".join(sys.argv))
    if started:
        atomic_write(path, fresh)
        state = load_state(args.out)
        if not state["blocks"]:
            state["blocks"] = [b.to_json() for b in first_blocks(fresh)]
            save_state(args.out, state)
    return fresh


def atomic_write(path: Path, data: dict) -> None:
    from icl_stl.persistence import atomic_write_json

    atomic_write_json(path, data)


def load_state(out: Path) -> dict:
    path = out / "state.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"blocks": [], "spares": {arm: [] for arm in schedule.MATCHED}, "parts": []}


def save_state(out: Path, state: dict) -> None:
    atomic_write(out / "state.json", state)


def first_blocks(prog: dict) -> list[schedule.Block]:
    """A new programme's blocks: the primary seeds' loops, or the first gate round's."""
    if prog.get("gate_first"):
        import v2_gate

        return v2_gate.initial_blocks(prog)
    return schedule.primary_blocks(prog["arms"], prog["block_seeds"],
                                   schedule.block_workers(prog))


def blocks(prog: dict, out: Path, state: dict | None = None) -> list[schedule.Block]:
    state = state or load_state(out)
    made = [schedule.Block.from_json(b) for b in state["blocks"]]
    return made or first_blocks(prog)


def finished_generations(prog: dict, out: Path, block: schedule.Block) -> set[int]:
    """Generations finished in the block's checkpoints, or recorded for every member in its
    run's summary.json: runs/ is the programme's record, so a block whose checkpoints are gone
    (a new machine; only runs/ and state.json were kept) is not trained again."""
    ckpt = out / "checkpoints" / run_name(prog, block)
    return ({int(p.parent.name[4:]) for p in ckpt.glob("gen_*/metrics.json")}
            | recorded_generations(run_dir(out, block) / "summary.json"))


def recorded_generations(summary: Path) -> set[int]:
    """Generations that summary.json records for every one of its members."""
    if not summary.exists():
        return set()
    data = json.loads(summary.read_text())
    members: dict[int, set[int]] = {}
    for record in data.get("generations", []):
        members.setdefault(record["generation"], set()).add(record["member"])
    everyone = set(range(len(data.get("members", []))))
    return {g for g, seen in members.items() if everyone and seen >= everyone}


def next_generation(prog: dict, out: Path, block: schedule.Block) -> int:
    done = finished_generations(prog, out, block)
    g = 0
    while g in done:
        g += 1
    return g


def unreadable_state(runs: Path, prog: dict) -> dict[str, set[int]]:
    """Per matched arm, the seeds whose loop (`report.matched`) in a finished run under runs/
    missed the gate or failed to train."""
    from icl_stl.report.collect import load_runs, loop_records, settings_by_path
    from icl_stl.report.rules import ReportConfig

    found = [p.parent for p in runs.rglob("summary.json")
             if p.relative_to(runs).parts[0] != schedule.GATE]  # the gate stage's: not loops
    if not found:
        return {arm: set() for arm in matched_arms(prog["arms"])}
    cfg = ReportConfig.from_settings(prog["report_settings"])
    loaded = load_runs(found)
    return v2_arms.unreadable_by_arm(loop_records(loaded), settings_by_path(loaded), cfg, runs,
                                     prog["arms"])


def update_blocks(prog: dict, state: dict, out: Path) -> list[str]:
    """Spares for the seeds that missed the gate or failed to train (with the gate-first stage:
    the next gate round, and the loops of the seeds that passed), and lambda = 1 loops for
    every seed that ran; returns what was added, in words."""
    unreadable = unreadable_state(out / "runs", prog)
    added = []
    if prog.get("gate_first"):
        import v2_gate

        from icl_stl.report.rules import ReportConfig

        tolerance = ReportConfig.from_settings(prog["report_settings"]).gate_tolerance
        found = v2_gate.outcomes(v2_gate.gate_summaries(out / "runs"), tolerance)
        added += v2_gate.update(prog, state, found, unreadable)
    for arm in () if prog.get("gate_first") else matched_arms(prog["arms"]):  # (the gate's: above)
        spec = prog["arms"][arm]
        new = schedule.spares_needed(spec, unreadable[arm], state["spares"][arm])
        if new:
            state["spares"][arm] += new
            state["blocks"].append(schedule.Block(arm, tuple(new), True).to_json())
            added.append(f"{arm} spares {new} (unreadable: {sorted(unreadable[arm])})")
    made = [schedule.Block.from_json(b) for b in state["blocks"]]
    ran = {s for b in made if b.matched and b.arm != schedule.GATE for s in b.seeds}
    covered = {s for b in made if not b.matched for s in b.seeds}
    ones = prog["arms"].get(schedule.SECONDARY, {}).get("seeds", [])  # none in P9's setting
    extra = sorted(s for s in ran - covered if s in ones)
    workers = schedule.block_workers(prog)
    for chunk in schedule.one_member_chunks(extra, prog["block_seeds"], workers):
        state["blocks"].append(schedule.Block(schedule.SECONDARY, chunk, False).to_json())
        added.append(f"lambda1 loops for {list(chunk)}")
    return added


def first_unfinished(prog: dict, out: Path, block: schedule.Block) -> int:
    """The block's first generation not finished. A gate block is finished when its run wrote
    summary.json (which the next gate round reads): its generation 0 alone is not enough."""
    if block.arm == schedule.GATE and not (run_dir(out, block) / "summary.json").exists():
        return 0
    return next_generation(prog, out, block)


def pending_order(made: list[schedule.Block]) -> list[schedule.Block]:
    """The gate stage's blocks first, then the rules' loops, then the lambda = 1 loops."""
    rank = {schedule.GATE: 0}
    return sorted(made, key=lambda b: rank.get(b.arm, 1 if b.matched else 2))


def pending(prog: dict, out: Path, made: list[schedule.Block]) -> list[tuple]:
    """(block, first generation not finished) of unfinished blocks, in `pending_order`."""
    rows = [(b, first_unfinished(prog, out, b)) for b in pending_order(made)]
    return [(b, g) for b, g in rows if g <= b.last_generation(prog["horizon"])]


def write_results(runs: Path, out: Path, results: Path | None, figures: bool = True) -> None:
    """The report over every finished run under runs/, with the programme's rules_commit and
    design beside the verdicts; with `results`, a copy of it and of every file it reads."""
    import v2_report

    v2_report.write(runs, out, results, figures)
