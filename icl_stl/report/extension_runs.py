"""What predictions 6-8 read from the runs: each loop's extension settings (filter, real-data
schedule, task pool), its *base configuration*, and the comparison loops of other runs.

The loop a filtered, scheduled or pooled loop is compared with lives in another run (the
collapse part's constant-lambda loops), so loops are paired by base configuration, n and seed.
The base configuration is a run's flat settings without the extension settings (`loop.filter*`,
`loop.verifier_*`, `loop.real_schedule*`, `loop.rounding`, `task.n_tasks`), without what only
names or replicates a run (`members.*`, `seed`, `run.*`, `logger.*`) and without
`loop.real_fraction` (a member's lambda is its record's `real_fraction`); P8(a) also leaves out
`loop.generations` (its pools above the threshold need generation 0 only). Settings a summary
leaves out are at their defaults (`config.EXTENSION_DEFAULTS`: older runs keep their identity).
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from icl_stl.report.collect import EXTENSION_SETTING_DEFAULTS as DEFAULTS

EXTENSION_PREFIXES = ("loop.filter", "loop.verifier_", "loop.real_schedule")
EXTENSION_KEYS = ("loop.rounding", "task.n_tasks")
NOT_BASE_PREFIXES = ("members.", "run.", "logger.")
NOT_BASE_KEYS = ("seed", "loop.real_fraction")
# P6-P8 are claims about the transformer learning in context, trained on replaced synthetic
# data labelled by itself: groups of the reference learner, another architecture, accumulated
# data or the oracle labeller are shown, not counted (`collect.THEOREM_SETTING` without the
# extension settings, which are what P6-P8 vary).
COUNTED_SETTING = {"model.arch": "gpt2", "loop.learner": "transformer",
                   "loop.synthetic": "replace", "loop.labeller": "model"}
# The extension settings copied onto every record (short name -> flat setting).
FIELDS = {"filter": "loop.filter", "filter_keep": "loop.filter_keep",
          "filter_threshold": "loop.filter_threshold",
          "verifier_source": "loop.verifier_source", "verifier_n_real": "loop.verifier_n_real",
          "verifier_label_noise": "loop.verifier_label_noise_std",
          "verifier_centre_noise": "loop.verifier_centre_noise_std",
          "verifier_w_var": "loop.verifier_w_var",
          "schedule": "loop.real_schedule", "rate": "loop.real_schedule_rate",
          "floor": "loop.real_schedule_floor", "n_tasks": "task.n_tasks"}


def _in_base(key: str, drop_generations: bool) -> bool:
    if key.startswith(EXTENSION_PREFIXES + NOT_BASE_PREFIXES):
        return False
    if key in EXTENSION_KEYS or key in NOT_BASE_KEYS:
        return False
    return not (drop_generations and key == "loop.generations")


def base_settings(flat: dict, drop_generations: bool = False) -> dict:
    """A run's base configuration (module doc) as a flat dict."""
    return {k: v for k, v in flat.items() if _in_base(k, drop_generations)}


def setting(flat: dict, key: str):
    """A flat setting, at its default when the summary leaves it out."""
    return flat.get(key, DEFAULTS.get(key))


def tag(records: list[dict], settings: dict[str, dict]) -> list[dict]:
    """Copies of the loop records with `base` (a key), `base_label` (the base settings that
    differ between the records' runs, "" when none do), the same without `loop.generations`
    (`pool_base`, `pool_base_label`: P8 groups pools by it), `counted`, `task_d`, `learner`
    and the extension settings (`FIELDS`) of their run."""
    bases: dict[str, dict] = {}
    pool_bases: dict[str, dict] = {}
    out = []
    for r in records:
        flat = settings.get(r["run"], {})
        base, pool_base = base_settings(flat), base_settings(flat, drop_generations=True)
        key = json.dumps(base, sort_keys=True, default=str)
        pool_key = json.dumps(pool_base, sort_keys=True, default=str)
        bases[key], pool_bases[pool_key] = base, pool_base
        out.append({**r, "base": key, "pool_base": pool_key,
                    **{k: setting(flat, v) for k, v in FIELDS.items()},
                    "counted": all(flat.get(k, v) == v for k, v in COUNTED_SETTING.items()),
                    "task_d": flat.get("task.d"), "learner": flat.get("loop.learner")})
    labels, pool_labels = _labels(bases), _labels(pool_bases)
    for r in out:
        r["base_label"], r["pool_base_label"] = labels[r["base"]], pool_labels[r["pool_base"]]
    return out


def _labels(bases: dict[str, dict]) -> dict[str, str]:
    """"k=v, ..." of the base settings that differ between the bases (as `collect`'s config)."""
    keys = sorted({k for b in bases.values() for k in b})
    varying = [k for k in keys if len({json.dumps(b.get(k), default=str)
                                       for b in bases.values()}) > 1]
    return {key: ", ".join(f"{k}={b.get(k)}" for k in varying) for key, b in bases.items()}


def is_plain(r: dict) -> bool:
    """A loop without extension: no filter, constant lambda, every prompt its own task, m = 0."""
    return (r["filter"] == "none" and r["schedule"] == "constant" and r["n_tasks"] is None
            and r.get("augment", 0) == 0)


def plain_index(tagged: list[dict]) -> dict[tuple, dict[int, dict[int, dict]]]:
    """{(base, n, lambda): {seed: {generation: record}}} of the plain loops: the comparison
    loops of P6-P8. A loop found in several runs (same base, n, lambda and seed) is taken
    from the first run by path, so a comparison is never counted twice."""
    index: dict[tuple, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in sorted((r for r in tagged if is_plain(r)), key=lambda r: str(r["run"])):
        cell = index[(r["base"], r["n"], float(r["real_fraction"]))][r["seed"]]
        cell.setdefault(r["generation"], r)
    return index


def comparison(index: dict, base: str, n: int, lam: float, seeds: list[int]
               ) -> dict[int, dict[int, dict]]:
    """The plain loops paired with `seeds` ({seed: {generation: record}}; missing seeds left
    out)."""
    found = index.get((base, n, float(lam)), {})
    return {s: found[s] for s in seeds if s in found}


def per_seed(records: list[dict]) -> dict[int, dict[int, dict]]:
    """{seed: {generation: record}} (the first record of each cell)."""
    out: dict[int, dict[int, dict]] = defaultdict(dict)
    for r in records:
        out[r["seed"]].setdefault(r["generation"], r)
    return dict(out)


def comparison_records(index: dict, base: str, n: int, lam: float, seeds: set[int]
                       ) -> list[dict]:
    """The paired plain loops' records, every generation (for a figure)."""
    return [rec for gens in comparison(index, base, n, lam, sorted(seeds)).values()
            for rec in gens.values()]


def mean_ridge(records: list[dict]) -> float | None:
    """The records' mean ridge risk (None when none carries one): a figure's reference line."""
    values = [r["ridge_risk"] for r in records if r.get("ridge_risk") is not None]
    return float(np.mean(values)) if values else None
