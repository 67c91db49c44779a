"""The one collect step: everything the verdicts and sections read, built once per report.

    evidence = collect([Path("multirun/loop/2025-01-01")])

`Evidence` holds the runs found under the paths (`collect.load_runs`), every loop's records
(`collect.loop_records`), the stability probe's per-seed records, each run's flattened
settings, and the records tagged with their extension settings and base configuration with the
index of the plain loops P6-P8 compare against (`extension_runs`). Every prediction's `verdict`
and `section` take it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from icl_stl.report.collect import (
    RunResult,
    load_runs,
    loop_records,
    settings_by_path,
    stability_records,
)
from icl_stl.report.extension_runs import plain_index, tag


@dataclass
class Evidence:
    """What the report reads, collected once (`collect`)."""

    runs: list[RunResult]
    records: list[dict]  # every loop's per-generation records (`collect.loop_records`)
    stability: list[dict]  # gamma per (seed, n, generation) (`collect.stability_records`)
    settings: dict[str, dict]  # run path -> flattened settings
    tagged: list[dict]  # `records` with extension settings and base configuration
    index: dict  # the plain loops by (base, n, lambda), then seed, then generation
    paths: list[Path] = field(default_factory=list)  # where the runs were searched

    @classmethod
    def from_records(cls, records: list[dict], settings: dict[str, dict],
                     runs: Iterable[RunResult] = (), stability: Iterable[dict] = (),
                     paths: Iterable[Path] = ()) -> Evidence:
        """Evidence from records already collected (tags and the plain index built here)."""
        tagged = tag(records, settings)
        return cls(list(runs), records, list(stability), settings, tagged, plain_index(tagged),
                   list(paths))

    @property
    def failed(self) -> list[RunResult]:
        """The sweep jobs that left an error.json."""
        return [r for r in self.runs if r.error is not None]

    def loop_records_of(self, paths: set[str]) -> list[dict]:
        """`loop_records` of the runs at `paths` only: a probe's base loops, pooled as
        everywhere (the same loop in a run of another probe may not shadow them)."""
        return loop_records([r for r in self.runs if str(r.path) in paths])


def collect(paths: Iterable[Path]) -> Evidence:
    """Load every run under `paths` and build the evidence every prediction reads."""
    paths = [Path(p) for p in paths]
    runs = load_runs(paths)
    return Evidence.from_records(loop_records(runs), settings_by_path(runs), runs=runs,
                                 stability=stability_records(runs), paths=paths)
