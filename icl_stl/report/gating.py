"""The training gate per loop: each loop is judged on its OWN generation-0 record.

A loop is one member of an ensemble: (configuration, seed, lambda, n, m, labeller). Its
generation 0 must close at least 1 - tolerance of the zero-to-ridge gap on the test set
(`icl_stl.training.gate`). A loop that misses is left out of its group, and the group says how
many were left out; a loop without the risks the gate needs (no generation-0 record, no zero or
ridge risk: older runs) is kept and flagged as not checked. A group's mean never stands in for
its loops: a seed that misses is left out even when the group's mean passes.

    kept, summary = split_by_gate(records, tolerance)

Predictions about n (P3-P5) gate a *replicate* (a seed, whose loops at every n and m make one
data point) on its own loop at a reference setting (the largest n, the smallest m), because
small-n loops cannot reach ridge by design: `split_by_gate(records, tolerance,
replicate=..., reference=...)`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from icl_stl.training.gate import RIDGE_TOLERANCE, gap_closed

__all__ = ["apply_loop_gate", "describe_loop", "gate_loops", "gate_of_record", "loop_key",
           "ridge_gate_counts", "seeds_left_out", "split_by_gate"]


def loop_key(record: dict) -> tuple:
    """(config, seed, lambda, n, m, labeller) of a record: which loop it belongs to. A record
    without a labeller was labelled by the model (the only labeller older runs had); one
    without a configuration label (records built by hand) is told apart by its run."""
    config = record["config"] if "config" in record else record.get("run", "")
    return (config, record["seed"], float(record["real_fraction"]),
            record["n"], record.get("augment") or 0, record.get("labeller") or "model")


def describe_loop(key: tuple) -> str:
    """"seed 0, λ=0.5, n=10000" (m and the labeller only when they are not the defaults)."""
    config, seed, lam, n, m, labeller = key
    parts = [f"seed {seed}", f"λ={lam:g}", f"n={n}"]
    if m:
        parts.append(f"m={m}")
    if labeller != "model":
        parts.append(f"{labeller} labels")
    return (f"{config}: " if config else "") + ", ".join(parts)


RISKS = ("test_risk", "ridge_risk", "zero_risk")


def _gate_of_record(record: dict | None, tolerance: float) -> dict:
    """The gate of one loop from its generation-0 record (None: not checkable)."""
    if record is None or any(record.get(k) is None for k in RISKS):
        return {"gap_closed": None, "reached": None}
    risks = {k: float(record[k]) for k in RISKS}
    closed = gap_closed(*risks.values())
    if not math.isfinite(closed):
        return {"gap_closed": None, "reached": None}
    return {"gap_closed": closed, "reached": bool(closed >= 1.0 - tolerance), **risks}


def gate_of_record(record: dict | None, tolerance: float = RIDGE_TOLERANCE) -> dict:
    """The gate of one loop from its own generation-0 record: {"gap_closed", "reached"}
    (both None when the record lacks the risks). For probes whose loops share a `loop_key`
    (the dose-response's replaced loops and chaos twins), gated member by member."""
    return _gate_of_record(record, tolerance)


def gate_loops(records: Iterable[dict], tolerance: float = RIDGE_TOLERANCE) -> dict[tuple, dict]:
    """{loop_key: {"gap_closed", "reached"}} for every loop of `records`, each from its own
    generation-0 record; `reached` is None when the loop cannot be checked. Computed from the
    risks (not the record's own `reached_ridge`), so at this report's tolerance."""
    gen0: dict[tuple, dict | None] = {}
    for r in records:
        key = loop_key(r)
        if r["generation"] == 0:
            gen0[key] = r  # one record per loop and generation (collect.loop_records)
        else:
            gen0.setdefault(key, None)
    return {key: {**_gate_of_record(rec, tolerance), "n": key[3], "seed": key[1]}
            for key, rec in sorted(gen0.items(), key=lambda kv: _sortable(kv[0]))}


def _sortable(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0, str(v)) for v in key)


def split_by_gate(records: list[dict], tolerance: float = RIDGE_TOLERANCE,
                  replicate: Callable[[dict], object] | None = None,
                  reference: Callable[[dict], bool] | None = None) -> tuple[list[dict], dict]:
    """(records kept, summary): the records of the loops that reached ridge or could not be
    checked, and {"loops", "loops_reached", "loops_missed", "loops_unchecked", "left_out",
    "unchecked", "gap_closed_min", "tolerance"} (descriptions of the loops left out / not
    checked, `describe_loop`).

    With `replicate` (a record -> replicate id, e.g. its seed) and `reference` (which loops
    decide, e.g. those at the largest n): a replicate is left out, all its records, when one of
    its reference loops missed; it is not checked when none of them could be checked. Without
    them every loop stands for itself.
    """
    gates = gate_loops(records, tolerance)
    if replicate is None:
        judged = gates
        decides = {key: [key] for key in gates}
        unit_of = loop_key
    else:
        ref_keys = {loop_key(r) for r in records if reference is None or reference(r)}
        judged = {k: g for k, g in gates.items() if k in ref_keys}
        decides = defaultdict(list)
        for r in records:
            if loop_key(r) in ref_keys:
                decides[replicate(r)].append(loop_key(r))
        unit_of = replicate
    missed_units, unchecked_units = set(), set()
    for unit, keys in decides.items():
        reached = [judged[k]["reached"] for k in set(keys)]
        if any(v is False for v in reached):
            missed_units.add(unit)
        elif all(v is None for v in reached):
            unchecked_units.add(unit)
    kept = [r for r in records if unit_of(r) not in missed_units]
    if replicate is not None:  # a replicate without a reference loop is not checked either
        kept_units = {unit_of(r) for r in kept}
        unchecked_units |= kept_units - set(decides)
    closed = [g["gap_closed"] for g in judged.values() if g["gap_closed"] is not None]
    checked = [g for g in judged.values() if g["gap_closed"] is not None]
    means = {k: sum(g[k] for g in checked) / len(checked) if checked else None for k in RISKS}
    seeds = {k[1] for k in judged}
    summary = {
        "loops": len(judged), "loops_reached": sum(g["reached"] is True for g in judged.values()),
        "loops_missed": sum(g["reached"] is False for g in judged.values()),
        "loops_unchecked": sum(g["reached"] is None for g in judged.values()),
        "left_out": [_describe(k, judged) for k, g in judged.items() if g["reached"] is False],
        "unchecked": [describe_loop(k) for k, g in judged.items() if g["reached"] is None],
        "replicates_left_out": len(missed_units) if replicate is not None else None,
        "replicates_unchecked": len(unchecked_units) if replicate is not None else None,
        "gap_closed_min": min(closed) if closed else None,
        # as the group-mean gate reported them: means over the loops checked, the gap closed
        # by the mean risks, and seeds (of which every loop judged reached ridge)
        **means, "gap_closed": (gap_closed(*means.values()) if checked else None),
        "seeds": len(seeds),
        "seeds_reached": len(seeds - {k[1] for k, g in judged.items() if g["reached"] is not True}),
        "n": max((k[3] for k in judged), default=None), "tolerance": tolerance}
    return kept, summary


def seeds_left_out(records: list[dict], tolerance: float, reference: Callable[[dict], bool]
                   ) -> tuple[set, dict]:
    """(seeds left out, summary): `split_by_gate` with the seed as the replicate, each seed
    gated on its own loop(s) where `reference` holds (e.g. at the largest n)."""
    kept, summary = split_by_gate(records, tolerance, replicate=lambda r: r["seed"],
                                  reference=reference)
    return {r["seed"] for r in records} - {r["seed"] for r in kept}, summary


def _describe(key: tuple, gates: dict) -> str:
    closed = gates[key]["gap_closed"]
    return f"{describe_loop(key)} (closed {closed:.3g} of the gap)"


def ridge_gate_counts(records: list[dict], tolerance: float = RIDGE_TOLERANCE) -> dict:
    """verdicts.json's top-level `ridge_gate` counts over every loop of the report: loops,
    loops_reached, loops_missed, loops_unchecked (each loop on its own generation 0)."""
    gates = gate_loops(records, tolerance)
    return {"loops": len(gates),
            "loops_reached": sum(g["reached"] is True for g in gates.values()),
            "loops_missed": sum(g["reached"] is False for g in gates.values()),
            "loops_unchecked": sum(g["reached"] is None for g in gates.values())}


def apply_loop_gate(result, summary: dict, kept_any: bool):
    """A group's result after its loops were gated (`split_by_gate`): not applicable when every
    loop it had missed the gate (none kept); otherwise its numbers, computed on the loops kept,
    say how many were left out and which, and which could not be checked."""
    from icl_stl.report.verdict import NOT_APPLICABLE, fmt

    missed, total = summary["loops_missed"], summary["loops"]
    summary = {**summary, "reached": (None if summary["loops_unchecked"] == total
                                      else missed == 0)}
    result.gate = summary
    notes = []
    if missed and not kept_any:
        result.verdict = NOT_APPLICABLE
        notes.append(f"training gate failed: generation 0 of every loop missed ridge "
                     f"({'; '.join(summary['left_out'])}; needs >= "
                     f"{fmt(1 - summary['tolerance'])} of the zero-to-ridge gap)")
    elif missed:
        notes.append(f"training gate: {missed} of {total} loops left out, their generation 0 "
                     f"missed ridge ({'; '.join(summary['left_out'])}); judged on the rest")
    if summary["loops_unchecked"]:
        notes.append(f"training gate not checked for {summary['loops_unchecked']} of {total} "
                     "loops (no generation-0 zero/ridge risks)")
    elif not total:
        notes.append("training gate not checked (no generation-0 zero/ridge risks)")
    if notes:
        result.numbers = "; ".join(notes) + ("; " + result.numbers if result.numbers else "")
    return result
