"""How records of one loop found more than once become one: measurements on several test sets
averaged, a loop re-read in another order resolved the same way, records put in one canonical
order, and each record's S_0 fingerprint found (`collect.loop_records` uses all of these).
"""

from __future__ import annotations

import json
from collections import defaultdict

from icl_stl.report.groups import natural_key


def average(records: list[dict]) -> dict:
    """One record from several measurements of the same loop: numbers (and lists of numbers)
    averaged, anything else taken from the first."""
    out = dict(records[0])
    if len(records) == 1:
        return out
    for key, value in records[0].items():
        values = [r.get(key) for r in records]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            if key not in ("seed", "n", "generation", "augment", "member", "real_fraction"):
                out[key] = sum(values) / len(values)
        elif isinstance(value, list) and value and all(
                isinstance(v, list) and len(v) == len(value) for v in values) and all(
                isinstance(x, (int, float)) for v in values for x in v):
            out[key] = [sum(col) / len(col) for col in zip(*values)]
    return out


def pool_test_sets(best: dict[tuple, tuple[int, dict]]) -> list[dict]:
    """Records keyed by (..., run seed): the same loop (same member seed and settings) measured
    in runs with different run seeds differs only in its test (and probe) prompts, so it is one
    replicate: its measurements are averaged and `test_sets` says how many were pooled."""
    pooled: dict[tuple, list[dict]] = defaultdict(list)
    for key, (_, rec) in best.items():
        pooled[key[:-1]].append(rec)
    out = []
    for recs in pooled.values():
        recs = sorted(recs, key=lambda r: (str(r.get("run_seed")), r["run"]))
        rec = average(recs)
        rec["test_sets"] = len(recs)
        rec["run_seeds"] = sorted({r.get("run_seed") for r in recs}, key=str)
        rec["runs"] = sorted({r["run"] for r in recs})
        out.append(rec)
    return out


def record_order(r: dict) -> str:
    """A record's place in a summary read in canonical order: by its whole content, so the
    order records were written in never decides which of two duplicates is kept."""
    return json.dumps(r, sort_keys=True, default=str)


def canonical_order(records: list[dict]) -> list[dict]:
    """Loop records sorted by configuration, labeller, lambda, n, m, seed and generation: every
    rule sees them in this order, whatever order the runs and their summaries were read in."""
    return sorted(records, key=lambda r: natural_key((
        r.get("config", ""), str(r.get("in_theorem_setting", True)),
        r.get("labeller") or "model", float(r["real_fraction"]), r["n"],
        r.get("augment") or 0, r["seed"], r["generation"], str(r.get("run", "")))))


def s0_lookup(summary: dict):
    """record -> its loop's S_0 fingerprint from summary.json's `members` (None if absent)."""
    members = summary.get("members") or []
    by_settings = {(m.get("seed"), m.get("real_fraction"), m.get("n"), m.get("augment", 0),
                    m.get("tag", "")): m.get("s0") for m in members if isinstance(m, dict)}

    def of(r: dict) -> str | None:
        i = r.get("member")
        if isinstance(i, int) and 0 <= i < len(members) and isinstance(members[i], dict):
            m = members[i]
            if (m.get("seed"), m.get("n"), m.get("real_fraction")) == (
                    r["seed"], r["n"], r["real_fraction"]):
                return m.get("s0")
        return by_settings.get((r["seed"], r["real_fraction"], r["n"], r.get("augment", 0),
                                r.get("tag", "")))
    return of
