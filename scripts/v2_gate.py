"""The gate-first stage of the confirmatory reproduction (settings with `gate_first` in
scripts/v2_settings.py: d = 3; used by scripts/v2_programme.py, v2_parts.py and v2_report.py).

Why. At d = 3 about half the seeds' generation 0 misses the gate (BENCHMARKS.md, "The second
setting: the gate at d = 3"). Trained through all generations before the miss is seen, such a
seed's loops cost 17 trainings per arm that the report cannot read. So generation 0 comes first.

How.
- *Gate blocks* (arm `gate`, runs/gate/gate-SEEDS/): one `icl-stl-loop` of P1's preset with
  `loop.generations=0`, and members every candidate seed x every arm's lambda x [model, oracle].
  Generation 0 is trained once per seed (`loop.share_generation_0`) and evaluated as each loop
  the seed could run, so a seed that misses leaves the generation-0 records its loops would have
  had. Generation 0 does not depend on lambda or the ensemble (a member's numbers never do), so
  a loop's own generation 0 is this same model: `generation_0_agreement` in verdicts.json
  compares the two for every loop that has both.
- *Paired arms* (d3's p6, scripts/v2_arms.py): P6's rule reads each seed's p6 and p1 loops, so
  its selection treats a seed as unreadable when either is, and the p1 arm runs the seeds
  chosen for P6 as well as P1's own (`v2_arms.run_seeds`). A p6 loop's generation 0 is its p1
  loop's (the filter starts at generation 1): a gate verdict holds for both, a miss is counted
  under p1.
- *Candidates*: the matched arms' listed seeds in ascending order. A round gates the fewest next
  candidates that would give every arm its target if all passed; a further round only when too
  few passed. Each round is cut into blocks of at most 2 x block_seeds seeds, run as parts.
- *Selection* (`arm_selection`): an arm runs the first `count` seeds of its list that passed,
  plus the next one for each of them whose loop turned out unreadable (failed to train): the
  rules' "first `count` readable seeds, in a fixed order". Its blocks are made once that set is
  decided (no earlier candidate still to be gated).
- *Accounting* (`counted_misses`): a seed that missed counts, as loops that missed the gate (model
  and oracle arms), in every arm that would have run it had every seed been run through (it
  precedes the arm's last selected seed, or the arm's list ran out), and in the lambda = 1 arm
  when one of them does. The report reads those generation-0 records from runs/gate/ and no
  others, so `ridge_gate` and each prediction's left-out lists are as a run-through would give.
  (Only `ridge_gate.training_failures` can differ: a missed seed's later generations are never
  trained, so it counts the failures of the loops that ran. A loop that missed is listed as
  missed, not failed, either way.)
- The loops' blocks *retrain* generation 0 instead of copying the gate run's checkpoint: one
  training of the 17 in a seed's matched loop (about 6%), and no member surgery on checkpoints,
  whose identity holds the ensemble's members.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import v2_schedule as schedule
from v2_arms import in_family_order, matched_arms, readers, run_seeds, unreadable_for
from v2_schedule import GATE, SECONDARY, Block


def member_overrides(prog: dict) -> list[str]:
    """A gate block's members besides its seeds: every arm's lambda, both labellers."""
    lams = sorted({float(spec["lambda"]) for spec in prog["arms"].values()})
    return [f"members.real_fractions=[{','.join(f'{lam:g}' for lam in lams)}]",
            "members.labellers=[model,oracle]"]


@dataclass(frozen=True)
class Selection:
    """One arm's seeds after the gate: `chosen` in order, `target` how many it needs."""

    chosen: list[int]
    target: int
    decided: bool  # no candidate before the last chosen one is still to be gated
    exhausted: bool  # the list ran out before `target` seeds passed


def arm_selection(listed: list[int], count: int, passed: dict[int, bool],
                  unreadable: set[int]) -> Selection:
    """The first `count` of `listed` that passed (`passed`: finished candidates only), one more
    for each chosen seed whose loop is unreadable."""
    chosen, target = [], count
    for seed in listed:
        if len(chosen) >= target:
            return Selection(chosen, target, True, False)
        if seed not in passed:
            return Selection(chosen, target, False, False)
        if passed[seed]:
            chosen.append(seed)
            target += seed in unreadable
    return Selection(chosen, target, True, len(chosen) < target)


def next_candidates(arms: dict, passed: dict[int, bool], pending: set[int],
                    selections: dict[str, Selection]) -> list[int]:
    """The candidates to gate next (ascending): for each undecided arm, those its list reaches
    before its target if every candidate not yet known passed (`passed`: the finished ones;
    `pending`: those being gated)."""
    out: set[int] = set()
    for arm, sel in selections.items():
        found = 0
        for seed in arms[arm]["seeds"] if not sel.decided else ():
            if found >= sel.target:
                break
            if passed.get(seed) is False:
                continue
            found += 1
            if seed not in passed and seed not in pending:
                out.add(seed)
    return sorted(out)


def outcomes(summaries: list[tuple[str, dict]], tolerance: float) -> dict[int, dict]:
    """{seed: {"passed", "gap_closed", "block"}} from finished gate runs' summaries, each seed
    gated on its generation-0 records by the report's own test (`gating.gate_of_record`)."""
    from icl_stl.report.gating import gate_of_record

    out: dict[int, dict] = {}
    for block, summary in summaries:
        for rec in summary.get("generations", []):
            if int(rec["generation"]) != 0:
                continue
            gate = gate_of_record(rec, tolerance)
            row = out.setdefault(int(rec["seed"]), {"passed": True, "gap_closed": math.inf,
                                                    "block": block})
            row["passed"] = row["passed"] and gate["reached"] is True
            row["gap_closed"] = min(row["gap_closed"], gate["gap_closed"] if
                                    gate["gap_closed"] is not None else -math.inf)
    for row in out.values():
        row["gap_closed"] = row["gap_closed"] if math.isfinite(row["gap_closed"]) else None
    return dict(sorted(out.items()))


def gate_summaries(runs: Path) -> list[tuple[str, dict]]:
    """(block name, summary.json) of every finished gate run under runs/."""
    return [(p.parent.name, json.loads(p.read_text()))
            for p in sorted((runs / GATE).glob("*/summary.json"))]


def selections(prog: dict, passed: dict[int, bool],
               unreadable: dict[str, set[int]]) -> dict[str, Selection]:
    """Each matched arm's rule's seeds; a paired arm's unreadable seeds include its partner's."""
    arms = prog["arms"]
    return {arm: arm_selection(arms[arm]["seeds"], arms[arm]["count"], passed,
                               unreadable_for(arms, arm, unreadable))
            for arm in matched_arms(arms)}


def update(prog: dict, state: dict, found: dict[int, dict],
           unreadable: dict[str, set[int]]) -> list[str]:
    """The next gate round, and the matched arms' blocks once their seeds are decided, added to
    `state` (with its `gate` record); returns what was added, in words."""
    made = [Block.from_json(b) for b in state["blocks"]]
    passed = {s: row["passed"] for s, row in found.items()}
    pending = {s for b in made if b.arm == GATE for s in b.seeds} - set(passed)
    chosen = selections(prog, passed, unreadable)
    added = []
    new = next_candidates(prog["arms"], passed, pending, chosen)
    workers = schedule.block_workers(prog)
    for seeds in schedule.one_member_chunks(new, prog["block_seeds"], workers):
        state["blocks"].append(Block(GATE, seeds, True).to_json())
    if new:
        added.append(f"gate: generation 0 of candidates {new}")
    runs = run_seeds(prog["arms"], {arm: sel.chosen for arm, sel in chosen.items()
                                    if sel.decided})
    rows = {}
    for arm in matched_arms(prog["arms"]):
        have = {s for b in made if b.arm == arm for s in b.seeds}
        fresh = [s for s in runs[arm] if s not in have]
        rows[arm] = [Block(arm, c, True) for c in schedule.chunks(fresh, prog["block_seeds"])
                     ] if fresh else []
        if fresh:
            added.append(f"{arm} loops for {fresh} (passed the gate)")
        state.setdefault("spares", {}).setdefault(arm, [])
        state["spares"][arm] = chosen[arm].chosen[prog["arms"][arm]["count"]:]
    state["blocks"] += [b.to_json() for b in in_family_order(prog["arms"], rows)]
    state["gate"] = {
        "candidates": {str(s): row for s, row in found.items()},
        "pending": sorted(pending | set(new)),
        "arms": {arm: {"seeds": sel.chosen, "target": sel.target, "decided": sel.decided,
                       "exhausted": sel.exhausted,
                       **({"runs": runs[arm]} if len(readers(prog["arms"], arm)) > 1 else {})}
                 for arm, sel in chosen.items()}}
    return added


def initial_blocks(prog: dict) -> list[Block]:
    """The first gate round's blocks (what a new programme starts with)."""
    state = {"blocks": [], "spares": {arm: [] for arm in matched_arms(prog["arms"])},
             "parts": []}
    update(prog, state, {}, {})
    return [Block.from_json(b) for b in state["blocks"]]


def provisional_blocks(prog: dict, state: dict, made: list[Block]) -> list[Block]:
    """For the plan: the blocks the arms would still get if every candidate not yet gated
    passed (an arm already decided gets none, unless an arm paired with it is not), and their
    lambda = 1 blocks."""
    arms = prog["arms"]
    record = state.get("gate", {})
    done = {int(s): row["passed"] for s, row in record.get("candidates", {}).items()}
    optimistic = {s: done.get(s, True) for arm in matched_arms(arms) for s in arms[arm]["seeds"]}
    runs = run_seeds(arms, {arm: sel.chosen for arm, sel in selections(
        prog, optimistic, {}).items()})
    rows, seeds = {}, set()
    for arm in matched_arms(arms):
        have = {s for b in made if b.arm == arm for s in b.seeds}
        fresh = [s for s in runs[arm] if s not in have]
        rows[arm] = [Block(arm, c, True) for c in schedule.chunks(fresh, prog["block_seeds"])
                     ] if fresh else []
        seeds |= set(fresh)
    covered = {s for b in made if b.arm == SECONDARY for s in b.seeds}
    ones = sorted((seeds & set(arms.get(SECONDARY, {}).get("seeds", []))) - covered)
    return in_family_order(arms, rows) + [Block(SECONDARY, c, False) for c in
                                          schedule.one_member_chunks(ones, prog["block_seeds"],
                                                                     schedule.block_workers(prog))]


def counted_misses(prog: dict, found: dict[int, dict],
                   unreadable: dict[str, set[int]]) -> dict[str, list[int]]:
    """Per arm (each matched arm and lambda1): the seeds that missed in the gate stage and that
    the arm would have run had every seed been run through (module doc): up to the last seed
    that its rule, or a rule paired with it, chose."""
    arms = prog["arms"]
    passed = {s: row["passed"] for s, row in found.items()}
    missed = {s for s, ok in passed.items() if not ok}
    sels = selections(prog, passed, unreadable)
    out = {}
    for arm in matched_arms(arms):
        limit = max(math.inf if sels[a].exhausted else max(sels[a].chosen, default=-math.inf)
                    for a in readers(arms, arm))
        out[arm] = sorted(s for s in missed if s in arms[arm]["seeds"] and s < limit)
    if SECONDARY in arms:  # (the P9 setting has no lambda = 1 arm)
        ones = set(arms[SECONDARY]["seeds"])
        out[SECONDARY] = sorted({s for arm in matched_arms(arms) for s in out[arm]} & ones)
    return out


def stage_of(segments: list[dict]) -> str:
    """A part's stage for state.json: "gate", "loops" or "gate and loops"."""
    gate = {seg["block"].startswith(f"{GATE}-") for seg in segments}
    return "gate and loops" if len(gate) > 1 else ("gate" if gate == {True} else "loops")
