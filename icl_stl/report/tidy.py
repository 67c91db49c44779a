"""A tidy table of every loop record: one row per loop and generation, scalar columns only.

Written by the report as runs.csv, small enough to keep in git beside REPORT.md, and what a
researcher loads next (`pandas.read_csv`) to slice the runs another way; `load_runs` gives the
same table as a DataFrame straight from the run directories, without writing a report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from icl_stl.persistence import atomic_write_bytes

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for
    import pandas

# The identifying columns first, in this order; every other scalar field follows, sorted.
KEYS = ("run", "config", "labeller", "seed", "n", "real_fraction", "augment", "generation")


def tidy_rows(records: list[dict], settings: dict[str, dict]) -> list[dict]:
    """Scalar fields of every record (lists and dicts dropped), plus its labeller: the record's
    own (a run may mix loops and their oracle controls), else its run's.

    settings: run path -> flattened settings (`RunResult.flat_settings`)."""
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if v is None or isinstance(v, (bool, int, float, str))}
        row["labeller"] = r.get("labeller") or settings.get(r.get("run", ""), {}).get(
            "loop.labeller", "model")
        rows.append(row)
    return rows


def csv_text(rows: list[dict]) -> str:
    """The rows as CSV: the identifying columns first, then every other one sorted; an absent
    or null value is an empty cell."""
    columns = [k for k in KEYS if any(k in r for r in rows)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def write_csv(rows: list[dict], path: Path) -> Path:
    atomic_write_bytes(path, csv_text(rows).encode())
    return path


def load_runs(paths: str | Path | Iterable[str | Path]) -> pandas.DataFrame:
    """Every loop record under `paths` (run or sweep directories, searched as `icl-stl-report`
    searches them) as a DataFrame: one row per loop and generation with run, config, labeller,
    seed, n, real_fraction (lambda), augment (m), generation and every scalar metric.

    It equals `pandas.read_csv` of the runs.csv a report over the same paths writes: the rows
    are the report's and go through the same CSV text, so empty cells, booleans and integer
    columns come out typed alike. (`icl_stl.report.collect.load_runs` is the report's own
    reader: it returns the runs themselves, not a table.)"""
    import pandas

    from icl_stl.report.collect import load_runs as load_run_results
    from icl_stl.report.collect import loop_records, settings_by_path

    if isinstance(paths, (str, Path)):
        paths = [paths]
    runs = load_run_results([Path(p) for p in paths])
    rows = tidy_rows(loop_records(runs), settings_by_path(runs))
    if not rows:
        return pandas.DataFrame(columns=list(KEYS))
    return pandas.read_csv(io.StringIO(csv_text(rows)))
