"""Find and load the results of runs and sweeps: summary.json, stability.json, decay.json,
in_context.json and the error.json a failed sweep job leaves behind.

Runs are told apart by their settings (`summary.json["settings"]`: everything that decides a
loop's numbers except its members). Settings that differ between the runs given to the report
become each run's `config` label (e.g. "loop.init=warm_start, model.arch=lstm"), so a sweep's
jobs are grouped and named by what the sweep varied.

Seeds: a member's seed decides its loop (S_0, initialisation, batches, synthetic draws); the
run's own `seed` only draws the test and probe prompts. The replicate is therefore the member
seed: the same loop found in runs with different run seeds is averaged into one record
(`test_sets` says over how many), never counted twice, and every record of every run is used
(nothing is kept "first found only").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from icl_stl.config import EXTENSION_DEFAULTS
from icl_stl.probes.stability import per_seed_stability
from icl_stl.report.groups import natural_key
from icl_stl.report.integrity import merge_copies
from icl_stl.report.pooling import canonical_order, pool_test_sets, record_order, s0_lookup

log = logging.getLogger(__name__)

RESULT_FILES = ("summary.json", "stability.json", "decay.json", "in_context.json",
                "dose_response.json", "error.json")
# What a results folder keeps of each run so that its report regenerates: every file the report
# reads, with the run's resolved config and wall time beside them.
RUN_FILES = (*RESULT_FILES, "config.yaml", "timing.json")
# Settings that decide whether a run is the setting of the transformer theorem (see verdicts).
# The oracle labeller is the control, not the theorem's loop: its runs are shown, not counted.
# So are loops with a decaying lambda, a filter or a task pool (P6-P8's, not P1-P5's); their
# settings are absent from summaries at the defaults, which then count as here.
THEOREM_SETTING = {"model.arch": "gpt2", "loop.learner": "transformer",
                   "loop.synthetic": "replace", "loop.labeller": "model",
                   "loop.real_schedule": "constant", "loop.filter": "none",
                   "task.n_tasks": None}


@dataclass
class RunResult:
    """Everything found in one run directory (a run, a probe, or one job of a sweep)."""

    path: Path
    summary: dict | None = None
    stability: dict | None = None
    decay: dict | None = None
    in_context: dict | None = None
    dose_response: dict | None = None
    error: dict | None = None
    config: str = ""  # the settings that set this run apart from the others ("" if none do)
    flat_settings: dict = field(default_factory=dict)

    @property
    def in_theorem_setting(self) -> bool:
        """GPT-2 trained as a transformer learner on replaced synthetic data (the theorem's loop).

        Runs without settings (no summary.json) are assumed to be in it."""
        return all(self.flat_settings.get(k, v) == v for k, v in THEOREM_SETTING.items())

    @property
    def run_seed(self) -> int | None:
        """The run's own seed: it draws the test set and the probe prompts (not the loops)."""
        return self.flat_settings.get("seed")


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


# The extension settings (filter, schedule, pool) at their defaults, flattened: an older summary
# that leaves them out ran with these.
EXTENSION_SETTING_DEFAULTS = flatten(EXTENSION_DEFAULTS)


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
    defaults = {**EXTENSION_SETTING_DEFAULTS, "loop.rounding": "exact"}

    def shown(r: RunResult, key: str) -> bool:
        # An extension setting at its default (or left out of an older summary) says nothing
        # about the run; the non-default ones still tell every pair of runs apart.
        return key not in defaults or r.flat_settings.get(key, defaults[key]) != defaults[key]

    for r in runs:
        r.config = ", ".join(f"{k}={_short(r.flat_settings.get(k))}" for k in varying
                             if r.flat_settings and shown(r, k))


def _short(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


TWINS = ("neighbour", "control")  # S_0' and chaos-control copies of a base loop
# The dose-response probe's replaced loops and chaos twins (`dose_role`), copies of its base loop
DOSE_TWINS = ("dose", "chaos")


def settings_by_path(runs: list[RunResult]) -> dict[str, dict]:
    """Run path (a record's "run") -> that run's flattened settings."""
    return {str(r.path): r.flat_settings for r in runs}


def loop_records(runs: list[RunResult], copies: list[dict] | None = None) -> list[dict]:
    """Every loop's per-generation records, with `config`, `run`, `run_seed`, `zero_risk`,
    `labeller`, `s0` and `in_theorem_setting` added; one record per loop and generation, in
    one canonical order (`canonical_order`) whatever the order of the runs and records read.

    Twins of the stability probe (neighbours and chaos controls) are left out: they are copies
    of a base loop, not independent loops. A loop found twice in runs with the same run seed
    (a re-run sweep) counts once: the run with more generations wins (ties: the first run by
    path, then the record first in canonical order). The same loop in runs with different run
    seeds (the same member seed, so the same S_0 and training) is ONE replicate measured on
    several test sets: averaged (`test_sets`), never counted twice. A loop copied under another
    seed (the same S_0 and settings) counts once too (`integrity.merge_copies`; what was found
    is appended to `copies`).
    """
    best: dict[tuple, tuple[int, dict]] = {}
    for run in runs:
        if run.summary is None:
            continue
        records = sorted((r for r in run.summary.get("generations", [])
                          if r.get("twin") not in TWINS
                          and r.get("dose_role") not in DOSE_TWINS), key=record_order)
        depth = max((r["generation"] for r in records), default=-1)
        zero = zero_risk(run.summary)
        labeller = run.flat_settings.get("loop.labeller", "model")
        s0_of = s0_lookup(run.summary)
        for r in records:
            mine = r.get("labeller") or labeller
            # An oracle-labelled member of a run of model-labelled loops is a control: its own
            # configuration (so no group mixes it with the loops under test) and not counted.
            config = (run.config if mine == labeller
                      else ", ".join(p for p in (run.config, f"loop.labeller={mine}") if p))
            theorem = run.in_theorem_setting and mine == "model"
            key = (config, theorem, r["seed"], r["real_fraction"], r["n"],
                   r.get("augment", 0), mine, r["generation"], str(run.run_seed))
            if key not in best or best[key][0] < depth:
                best[key] = (depth, {**r, "config": config, "run": str(run.path),
                                     "run_seed": run.run_seed, "labeller": mine,
                                     "s0": r.get("s0") or s0_of(r),
                                     "in_theorem_setting": theorem,
                                     # a record without zero_risk takes
                                     # summary.json's zero baseline (the gate needs one)
                                     "zero_risk": zero if r.get("zero_risk") is None
                                     else r["zero_risk"]})
    records, found = merge_copies(pool_test_sets(best))
    if copies is not None:
        copies.extend(found)
    return canonical_order(records)


def stability_records(runs: list[RunResult]) -> list[dict]:
    """Per (configuration, lambda, replacement, seed, n, generation): gamma averaged over the
    replaced indices of that seed (a seed's twins share one base loop, so they are one
    replicate), and the chaos control's gamma of the same seed where the run has one.

    Read from summary.json's twin records (every run of the stability probe writes them), else
    from stability.json's `per_seed` list. Records of the same loop in runs with different run
    seeds (different probe prompts) are averaged, as in `loop_records`. `epochs` is the number
    of passes over S_0 in generation 0 (train.steps x train.batch_size / n).
    """
    best: dict[tuple, tuple[int, dict]] = {}
    for run in runs:
        if run.stability is None:
            continue
        lam = float(run.stability.get("real_fraction", float("nan")))
        replacement = run.stability.get("replacement", "")
        control = run.stability.get("chaos_control")
        rows = _per_seed_from_summary(run) or sorted(run.stability.get("per_seed", []),
                                                     key=record_order)
        base_s0 = _base_s0(run)
        depth = max((r["generation"] for r in rows), default=-1)
        steps = run.flat_settings.get("train.steps")
        batch = run.flat_settings.get("train.batch_size")
        for r in rows:
            key = (run.config, lam, replacement, run.in_theorem_setting, r["seed"], r["n"],
                   r["generation"], str(run.run_seed))
            epochs = (steps * batch / r["n"]) if steps and batch else None
            if key not in best or best[key][0] < depth:
                best[key] = (depth, {**r, "config": run.config, "real_fraction": lam,
                                     "replacement": replacement, "chaos_control": control,
                                     "in_theorem_setting": run.in_theorem_setting,
                                     "run": str(run.path), "run_seed": run.run_seed,
                                     "epochs": epochs, "s0": base_s0.get((r["seed"], r["n"]))})
    # a copied stability loop was warned about with the loop records (its base loops)
    records, _ = merge_copies(pool_test_sets(best), warn=False)
    return sorted(records, key=lambda r: natural_key((
        r["config"], r["real_fraction"], r["replacement"], str(r["in_theorem_setting"]),
        r["n"], r["seed"], r["generation"])))


def _base_s0(run: RunResult) -> dict[tuple, str]:
    """(seed, n) -> the S_0 fingerprint of the stability probe's base loop (from summary.json)."""
    if run.summary is None:
        return {}
    s0_of = s0_lookup(run.summary)
    return {(r["seed"], r["n"]): s0 for r in run.summary.get("generations", [])
            if r.get("twin") not in TWINS and (s0 := r.get("s0") or s0_of(r))}


def _per_seed_from_summary(run: RunResult) -> list[dict]:
    """gamma per (seed, n, generation) from the twin records of the run's summary.json."""
    if run.summary is None:
        return []
    return per_seed_stability(sorted(run.summary.get("generations", []), key=record_order))


def zero_risk(summary: dict) -> float | None:
    """The zero predictor's risk (E y^2 / d), the scale against which excess risk is judged."""
    zero = summary.get("baselines", {}).get("zero")
    return None if zero is None else float(zero["risk"])
