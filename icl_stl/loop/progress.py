"""Readable names for the loops of a job, and short per-group summaries of their risks.

A job can hold hundreds of loops (e.g. 200 seeds of two lambdas): the console gets one short
line per generation (median [min, max] over the loops of each (lambda, n, m) group) and W&B gets
one run per loop, named after what distinguishes it (``lam0.5-n1000-seed3``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# The settings that make loops differ in kind; loops differing only in seed form one group.
GROUP_FIELDS = (("real_fraction", "lam"), ("n", "n"), ("augment", "m"), ("labeller", ""))

MAX_GROUPS_SHOWN = 6  # keeps the per-generation line short whatever the grid


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def member_name(spec: Mapping[str, Any]) -> str:
    """``lam0.5-n1000-seed3`` (``-m<augment>`` when augmented, ``-oracle`` for an
    oracle-labelled control, then the tag's new parts)."""
    parts = [f"lam{_fmt(spec['real_fraction'])}", f"n{spec['n']}"]
    if spec.get("augment"):
        parts.append(f"m{spec['augment']}")
    parts.append(f"seed{spec['seed']}")
    if spec.get("labeller") == "oracle":
        parts.append("oracle")
    for piece in str(spec.get("tag") or "").split("/"):  # probes' tags repeat n and seed
        if piece and piece not in parts:
            parts.append(piece)
    return "-".join(parts)


def member_names(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """`member_name` of each spec, made unique with ``-member<i>`` where two would collide."""
    names = [member_name(s) for s in specs]
    repeated = {n for n in names if names.count(n) > 1}
    return [f"{n}-member{i}" if n in repeated else n for i, n in enumerate(names)]


def group_labels(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each loop's group, named by the group fields that vary in the job (``""``: one group)."""
    varying = [(key, short) for key, short in GROUP_FIELDS
               if len({s.get(key) for s in specs}) > 1]
    return ["-".join(f"{short}{_fmt(s.get(key))}" for key, short in varying) for s in specs]


def group_stats(values: Sequence[float], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per group (in order of first appearance): median, min, max of the finite values, the
    number of loops and of non-finite values (a diverged loop shows up, not as a NaN median)."""
    groups: dict[str, list[float]] = {}
    for value, label in zip(values, labels):
        groups.setdefault(label, []).append(value)
    stats = {}
    for label, vals in groups.items():
        finite = [v for v in vals if math.isfinite(v)]
        nan = float("nan")
        stats[label] = {"median": statistics.median(finite) if finite else nan,
                        "min": min(finite, default=nan), "max": max(finite, default=nan),
                        "loops": len(vals), "nonfinite": len(vals) - len(finite)}
    return stats


def risk_line(values: Sequence[float], labels: Sequence[str], what: str = "test risk") -> str:
    """One short line: the value for a single loop, else median [min, max] per group."""
    if len(values) == 1:
        return f"{what} {values[0]:.4g}"
    stats = group_stats(values, labels)
    pieces = []
    for label, st in list(stats.items())[:MAX_GROUPS_SHOWN]:
        text = f"{st['median']:.4g} [{st['min']:.4g}, {st['max']:.4g}]"
        if st["nonfinite"]:
            text += f" {st['nonfinite']} non-finite"
        pieces.append(f"{label} {text} ({st['loops']})" if label else f"{text} ({st['loops']})")
    more = len(stats) - MAX_GROUPS_SHOWN
    if more > 0:
        pieces.append(f"... {more} more groups")
    return f"{what}, median [min, max] (loops): " + ", ".join(pieces)


def gate_lines(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """Generation 0's training gate per group, for jobs too large for a line per loop:
    ``lam0.5: 180/200 loops reached ridge (gap closed: median 95%, min 41%)``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec, label in zip(records, labels):
        groups.setdefault(label, []).append(rec)
    lines = []
    for label, recs in groups.items():
        closed = group_stats([r["gap_closed"] for r in recs], [""] * len(recs))[""]
        passed = sum(bool(r["reached_ridge"]) for r in recs)
        lines.append(f"{label + ': ' if label else ''}{passed}/{len(recs)} loops reached ridge "
                     f"(gap closed: median {100 * closed['median']:.1f}%, "
                     f"min {100 * closed['min']:.1f}%)")
    return lines


def group_metrics(values: Sequence[float], labels: Sequence[str], key: str) -> dict[str, float]:
    """``<key>_median/<group>`` (and _min, _max) for the job's W&B run."""
    out = {}
    for label, st in group_stats(values, labels).items():
        suffix = f"/{label}" if label else ""
        for stat in ("median", "min", "max"):
            out[f"{key}_{stat}{suffix}"] = st[stat]
    return out
