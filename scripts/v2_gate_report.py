"""What the report of a programme with the gate-first stage reads (used by scripts/v2_report.py;
the stage itself: scripts/v2_gate.py).

Every loop record of the loops' runs, and of the gate runs (runs/gate/) only the
generation-0 records of the seeds that missed there, as the loops that would have run them
(`v2_gate.counted_misses`): so `ridge_gate` and each prediction's left-out lists count and
name a seed that missed as a run-through programme would, and nothing a gate run recorded for
a seed that passed (its loops' own generation 0 is read instead) or that no arm would have run.
A paired arm's misses (d3's p6, whose generation 0 is p1's) are read as p1's, once.
Everything is read from runs/, so a copy of runs/ regenerates it.
"""

from __future__ import annotations

import json
from pathlib import Path

import v2_arms
import v2_gate
from v2_arms import matched_arms
from v2_schedule import GATE, SECONDARY

LABELLERS = ("model", "oracle")


def is_gate_run(path: Path, runs: Path) -> bool:
    return Path(path).relative_to(runs).parts[0] == GATE


def collect(finished: list[Path], runs: Path, prog: dict, cfg) -> tuple:
    """(the report's Evidence, the loops' own records, the stage's summary for verdicts.json)."""
    from icl_stl.report.collect import (
        load_runs,
        loop_records,
        settings_by_path,
        stability_records,
    )
    from icl_stl.report.evidence import Evidence
    from icl_stl.report.integrity import uneven_groups
    from icl_stl.report.pooling import canonical_order

    loaded = load_runs(finished)
    gate_runs = [r for r in loaded if is_gate_run(r.path, runs)]
    loop_runs = [r for r in loaded if not is_gate_run(r.path, runs)]
    copies: list[dict] = []
    loops = loop_records(loop_runs, copies)
    settings = settings_by_path(loaded)
    unreadable = v2_arms.unreadable_by_arm(loops, settings, cfg, runs, prog["arms"])
    found = v2_gate.outcomes([(r.path.name, r.summary) for r in gate_runs if r.summary],
                             cfg.gate_tolerance)
    counted = v2_gate.counted_misses(prog, found, unreadable)
    wanted = {(float(prog["arms"][arm]["lambda"]), seed, labeller)
              for arm in matched_arms(prog["arms"]) if not prog["arms"][arm].get("paired_with")
              for seed in counted[arm] for labeller in LABELLERS}
    wanted |= {(float(prog["arms"][SECONDARY]["lambda"]), seed, "model")
               for seed in counted.get(SECONDARY, [])}  # (none in the P9 setting)
    gate_records = loop_records(gate_runs)
    misses = [r for r in gate_records
              if (float(r["real_fraction"]), int(r["seed"]), r["labeller"]) in wanted]
    evidence = Evidence.from_records(canonical_order(loops + misses), settings, runs=loaded,
                                     stability=stability_records(loaded), paths=finished)
    evidence.copies = copies
    # a loop that missed has generation 0 only, as it would have been read had it run on
    evidence.uneven = uneven_groups(loops)
    summary = {"candidates": sorted(found), "passed": [s for s, r in found.items() if r["passed"]],
               "missed": [s for s, r in found.items() if not r["passed"]],
               "gap_closed": {str(s): r["gap_closed"] for s, r in found.items()},
               "counted_misses": counted, "records_read": len(misses),
               "blocks": [block_time(r.path) for r in gate_runs],
               "generation_0_agreement": agreement(loops, gate_records)}
    summary["seconds"] = sum(b["seconds"] or 0.0 for b in summary["blocks"])
    return evidence, loops, summary


def block_time(path: Path) -> dict:
    """A gate run's seeds and the wall time of its generation 0 (its timing.json)."""
    summary = json.loads((path / "summary.json").read_text())
    timing = path / "timing.json"
    rows = json.loads(timing.read_text()).get("generations", []) if timing.exists() else []
    return {"block": path.name, "seeds": sorted({int(m["seed"]) for m in summary["members"]}),
            "seconds": round(sum(float(r["seconds"]) for r in rows), 1) if rows else None}


def agreement(loops: list[dict], gate_records: list[dict]) -> dict:
    """How far each loop's own generation 0 is from the gate run's for the same seed, lambda
    and labeller (the same model, retrained: 0 when a member's numbers do not depend on its
    ensemble)."""
    key = lambda r: (int(r["seed"]), float(r["real_fraction"]), r["labeller"])  # noqa: E731
    gate = {key(r): r for r in gate_records if int(r["generation"]) == 0}
    pairs = [(r, gate[key(r)]) for r in loops if int(r["generation"]) == 0 and key(r) in gate]
    diffs = [abs(float(a[f]) - float(b[f])) for a, b in pairs for f in ("test_risk",
                                                                          "bayes_excess")
             if a.get(f) is not None and b.get(f) is not None]
    return {"loops": len(pairs), "max_abs_difference": max(diffs) if diffs else None}


def section(summary: dict) -> list[str]:
    """REPORT.md's account of the gate-first stage."""
    counted = summary["counted_misses"]
    lines = ["", "## The gate-first stage", "",
             "Generation 0 alone of each candidate seed, in ascending order, before any loop "
             "(scripts/v2_gate.py); the loops run the first seeds that passed. A seed that "
             "missed is counted, as loops that missed the gate, in every arm that would have "
             "run it had every seed been run through. "
             f"{len(summary['candidates'])} candidates, {len(summary['passed'])} passed, "
             f"{len(summary['missed'])} missed; generation 0 of the loops against the gate "
             f"runs' for the same seeds: {summary['generation_0_agreement']['loops']} loops, "
             f"largest difference {summary['generation_0_agreement']['max_abs_difference']}.",
             "", "| seed | gap closed | gate | counted as a miss in |", "| ---: | ---: | --- | --- |"]
    for seed in summary["candidates"]:
        arms = [arm for arm, seeds in counted.items() if seed in seeds]
        passed = seed in summary["passed"]
        closed = summary["gap_closed"][str(seed)]
        lines.append(f"| {seed} | {'n/a' if closed is None else f'{closed:.4f}'} | "
                     f"{'passed' if passed else 'missed'} | {', '.join(arms) or '-'} |")
    lines += ["", "| gate run | seeds | wall time of generation 0 (s) |", "| --- | --- | ---: |"]
    for block in summary["blocks"]:
        lines.append(f"| {block['block']} | {', '.join(map(str, block['seeds']))} | "
                     f"{block['seconds'] if block['seconds'] is not None else 'n/a'} |")
    return lines
