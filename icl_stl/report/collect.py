"""Find and load the results of runs and sweeps: summary.json, stability.json, decay.json,
in_context.json and the error.json a failed sweep job leaves behind.

Runs are told apart by their settings (`summary.json["settings"]`: everything that decides a
loop's numbers except its members). Settings that differ between the runs given to the report
become each run's `config` label (e.g. "loop.init=warm_start, model.arch=lstm"), so a sweep's
jobs are grouped and named by what the sweep varied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RESULT_FILES = ("summary.json", "stability.json", "decay.json", "in_context.json", "error.json")
# Settings that decide whether a run is the setting of the transformer theorem (see verdicts).
THEOREM_SETTING = {"model.arch": "gpt2", "loop.learner": "transformer",
                   "loop.synthetic": "replace"}


@dataclass
class RunResult:
    """Everything found in one run directory (a run, a probe, or one job of a sweep)."""

    path: Path
    summary: dict | None = None
    stability: dict | None = None
    decay: dict | None = None
    in_context: dict | None = None
    error: dict | None = None
    config: str = ""  # the settings that set this run apart from the others ("" if none do)
    flat_settings: dict = field(default_factory=dict)

    @property
    def in_theorem_setting(self) -> bool:
        """GPT-2 trained as a transformer learner on replaced synthetic data (the theorem's loop).

        Runs without settings (no summary.json) are assumed to be in it."""
        return all(self.flat_settings.get(k, v) == v for k, v in THEOREM_SETTING.items())


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"loop": {"init": "x"}} -> {"loop.init": "x"}; lists are kept as values."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("skipping unreadable %s (%s)", path, err)
        return None


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every directory at or under `paths` holding at least one result file, sorted."""
    dirs: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"no such run or sweep directory: {root}")
        if root.is_file():
            dirs.add(root.parent)
            continue
        for name in RESULT_FILES:
            dirs.update(p.parent for p in root.rglob(name))
    return sorted(dirs)


def load_runs(paths: Iterable[Path]) -> list[RunResult]:
    """Load every run under `paths` and label each by the settings that set it apart."""
    runs = []
    for d in find_run_dirs(paths):
        run = RunResult(d)
        for name in RESULT_FILES:
            if (d / name).exists():
                setattr(run, name.removesuffix(".json"), _read(d / name))
        if run.summary is not None:
            settings = dict(run.summary.get("settings", {}))
            run.flat_settings = flatten(settings)
        runs.append(run)
    label_configs(runs)
    return runs


def label_configs(runs: list[RunResult]) -> None:
    """Set each run's `config` to the settings whose values differ between runs."""
    keys = sorted({k for r in runs for k in r.flat_settings})
    varying = [k for k in keys
               if len({json.dumps(r.flat_settings.get(k), sort_keys=True)
                       for r in runs if r.flat_settings}) > 1
               and k != "seed"]  # the run seed only names the test set; members carry theirs
    for r in runs:
        r.config = ", ".join(f"{k}={_short(r.flat_settings.get(k))}" for k in varying
                             if r.flat_settings)


def _short(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def loop_records(runs: list[RunResult]) -> list[dict]:
    """Every loop's per-generation records, with `config`, `run` and `in_theorem_setting` added.

    Neighbour twins of the stability probe are left out (they are S_0' copies of a base loop,
    not independent loops), and a loop found twice (the same settings, member and generation,
    e.g. a re-run sweep) counts once: the run with more generations wins.
    """
    best: dict[tuple, tuple[int, dict]] = {}
    for run in runs:
        if run.summary is None:
            continue
        records = [r for r in run.summary.get("generations", []) if r.get("twin") != "neighbour"]
        depth = max((r["generation"] for r in records), default=-1)
        for r in records:
            key = (run.config, run.in_theorem_setting, r["seed"], r["real_fraction"], r["n"],
                   r.get("augment", 0), r["generation"])
            if key not in best or best[key][0] < depth:
                best[key] = (depth, {**r, "config": run.config, "run": str(run.path),
                                     "in_theorem_setting": run.in_theorem_setting,
                                     "zero_risk": zero_risk(run.summary)})
    return [rec for _, rec in best.values()]


def zero_risk(summary: dict) -> float | None:
    """The zero predictor's risk (E y^2 / d), the scale against which excess risk is judged."""
    zero = summary.get("baselines", {}).get("zero")
    return None if zero is None else float(zero["risk"])
