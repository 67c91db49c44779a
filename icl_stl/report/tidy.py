"""A tidy table of every loop record: one row per loop and generation, scalar columns only.

Written by the report as runs.csv, small enough to keep in git beside REPORT.md, and what a
researcher loads next (`pandas.read_csv`) to slice the runs another way.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from icl_stl.io import atomic_write_bytes

# The identifying columns first, in this order; every other scalar field follows, sorted.
KEYS = ("run", "config", "labeller", "seed", "n", "real_fraction", "augment", "generation")


def tidy_rows(records: list[dict], settings: dict[str, dict]) -> list[dict]:
    """Scalar fields of every record (lists and dicts dropped), plus the run's labeller.

    settings: run path -> flattened settings (`RunResult.flat_settings`)."""
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if v is None or isinstance(v, (bool, int, float, str))}
        row["labeller"] = settings.get(r.get("run", ""), {}).get("loop.labeller", "model")
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    columns = [k for k in KEYS if any(k in r for r in rows)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    atomic_write_bytes(path, buf.getvalue().encode())
    return path
