"""The one collect step: everything the verdicts and sections read, built once per report.

    evidence = collect([Path("multirun/loop/2025-01-01")])

`Evidence` holds the runs found under the paths (`collect.load_runs`), every loop's records
(`collect.loop_records`), the stability probe's per-seed records, each run's flattened
settings, and the records tagged with their extension settings and base configuration with the
index of the plain loops P6-P8 compare against (`extension_runs`). Every prediction's `verdict`
and `section` take it as it is. What the input may hide (copied loops, groups of uneven
generations: `integrity`) is found here once and listed by `warnings`.
"""

from __future__ import annotations

import logging
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
from icl_stl.report.gating import split_by_gate
from icl_stl.report.integrity import copy_warnings, uneven_groups, uneven_warning

log = logging.getLogger(__name__)


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
    copies: list[dict] = field(default_factory=list)  # loops found copied under other seeds
    uneven: list[dict] = field(default_factory=list)  # groups of uneven generations
    _passing: dict = field(default_factory=dict, repr=False)  # passing_index, per tolerance

    @classmethod
    def from_records(cls, records: list[dict], settings: dict[str, dict],
                     runs: Iterable[RunResult] = (), stability: Iterable[dict] = (),
                     paths: Iterable[Path] = ()) -> Evidence:
        """Evidence from records already collected (tags and the plain index built here)."""
        tagged = tag(records, settings)
        return cls(list(runs), records, list(stability), settings, tagged, plain_index(tagged),
                   list(paths), uneven=uneven_groups(records))

    @property
    def failed(self) -> list[RunResult]:
        """The sweep jobs that left an error.json."""
        return [r for r in self.runs if r.error is not None]

    @property
    def warnings(self) -> list[str]:
        """One line per copied loop and per group of uneven generations (REPORT.md, log and
        verdicts.json's `warnings`)."""
        return copy_warnings(self.copies) + [uneven_warning(g) for g in self.uneven]

    def passing_index(self, tolerance: float) -> dict:
        """`index` of the plain loops whose own generation 0 reached ridge (or could not be
        checked): the comparison loops a verdict may rest on (P6-P8)."""
        if tolerance not in self._passing:
            kept, _ = split_by_gate(self.tagged, tolerance)
            self._passing[tolerance] = plain_index(kept)
        return self._passing[tolerance]

    def loop_records_of(self, paths: set[str]) -> list[dict]:
        """`loop_records` of the runs at `paths` only: a probe's base loops, pooled as
        everywhere (the same loop in a run of another probe may not shadow them)."""
        return loop_records([r for r in self.runs if str(r.path) in paths])


def collect(paths: Iterable[Path]) -> Evidence:
    """Load every run under `paths` and build the evidence every prediction reads."""
    paths = [Path(p) for p in paths]
    runs = load_runs(paths)
    copies: list[dict] = []
    evidence = Evidence.from_records(loop_records(runs, copies), settings_by_path(runs),
                                     runs=runs, stability=stability_records(runs), paths=paths)
    evidence.copies = copies
    for group in evidence.uneven:
        log.warning("%s", uneven_warning(group))
    return evidence
