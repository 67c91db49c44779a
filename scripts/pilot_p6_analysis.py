"""The analysis of the P6 pilot (used by scripts/pilot_p6.py analyse): pilot.json from the runs'
records with the report's own functions (`report.matched.matched_loops` for the gate and the
training failures, `report.p6_pairs.filter_groups` for the pairs P6 reads), then sizing.json
(`pilot_p6_sizing`), figures/arms.png (`report.arms_figure`: each readable arm beside its
oracle twin, with the head's z²) and the results folder's README section (`pilot_p6_readme`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from pilot_p6_coprimary import coprimary_block
from pilot_p6_readme import write_readme
from pilot_p6_sizing import size
from pilot_v2_analysis import _two_way as two_way

LABELLERS = ("model", "oracle")
ARM_OF_FILTER = {"none": "unfiltered", "residual": "residual", "density_ratio": "density_ratio"}
# record fields by generation: (name in pilot.json, field of a filtered arm, of the unfiltered)
CURVES = (("bayes_excess", "bayes_excess", "bayes_excess"),
          ("head_z2", "head_z2", "head_z2"),
          ("kept_fraction", "filter_kept_fraction", None),
          ("kept_cov_ratio", "filter_w_cov_ratio_after", "syn_w_cov_ratio"),
          ("kept_norm_ratio", "filter_w_norm_ratio_after", None),
          ("pool_cov_ratio", "filter_w_cov_ratio_before", "syn_w_cov_ratio"),
          ("pool_norm_ratio", "filter_w_norm_ratio_before", None))


class PilotInputError(Exception):
    """The input cannot be analysed: one line for the user, exit code 2."""


def collect(work: Path, results: Path) -> list[str]:
    """Each run's summary.json and timing.json, and plan.json, copied from work to results."""
    copied = []
    for summary in sorted(work.glob("*/*/summary.json")):
        dest = results / "runs" / summary.parent.parent.name / summary.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "timing.json"):
            if (summary.parent / name).exists():
                shutil.copyfile(summary.parent / name, dest / name)
        copied.append(f"{summary.parent.parent.name}/{summary.parent.name}")
    if (work / "plan.json").exists():
        results.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "plan.json", results / "plan.json")
    return copied


def load(results: Path):
    """The report's evidence from results/runs/, checked for what the analysis needs."""
    from icl_stl.report.evidence import collect as collect_evidence

    found = sorted((results / "runs").glob("*/*/summary.json"))
    if not found:
        raise PilotInputError(f"no runs under {results / 'runs'} (run the pilot, then analyse "
                              "with its --work)")
    for path in found:
        try:
            records = json.loads(path.read_text())["generations"]
        except (ValueError, KeyError) as err:
            raise PilotInputError(f"{path}: not a loop's summary.json ({err!r})") from None
        if any(r.get("bayes_excess") is None for r in records):
            raise PilotInputError(f"{path}: records without bayes_excess (a loop older than "
                                  "the version-2 records)")
    evidence = collect_evidence([results / "runs"])
    if "unfiltered" not in {_arm(r) for r in evidence.tagged}:
        raise PilotInputError(f"no unfiltered run under {results / 'runs'}: the interaction "
                              "needs it")
    return evidence


def _arm(tagged: dict) -> str:
    name = tagged.get("filter") or "none"
    if name not in ARM_OF_FILTER:
        raise PilotInputError(f"a run with loop.filter={name}: not an arm of the P6 pilot")
    return ARM_OF_FILTER[name]


def curves(evidence) -> dict:
    """{arm: {labeller: {seed: {"generations", field: [value by generation]}}}}."""
    by: dict = {}
    for r in evidence.tagged:
        arm = _arm(r)
        cell = by.setdefault(arm, {}).setdefault(r["labeller"], {}).setdefault(str(r["seed"]),
                                                                               {})
        cell[int(r["generation"])] = r
    out: dict = {}
    for arm, labellers in by.items():
        for labeller, seeds in labellers.items():
            for seed, gens in seeds.items():
                order = sorted(gens)
                row = {"generations": order}
                for name, filtered, plain in CURVES:
                    field = plain if arm == "unfiltered" else filtered
                    row[name] = [_value(gens[g], field, name, arm) for g in order]
                out.setdefault(arm, {}).setdefault(labeller, {})[seed] = row
    return out


def _value(record: dict, field: str | None, name: str, arm: str) -> float | None:
    if arm == "unfiltered" and name == "kept_fraction":
        return 1.0 if record["generation"] else None  # the unfiltered loop keeps every prompt
    if arm == "unfiltered" and name in ("kept_norm_ratio", "pool_norm_ratio"):
        syn, real = record.get("syn_w_norm"), record.get("real_w_norm")
        return float(syn) / float(real) if syn is not None and real else None
    value = record.get(field) if field else None
    return None if value is None or not np.isfinite(value) else float(value)


def arm_loops(evidence, cfg) -> list[tuple[str, object]]:
    """(arm, MatchedLoop) of every matched loop (`report.matched.matched_loops`)."""
    from icl_stl.report.matched import base_config, matched_loops

    arm_of = {base_config(r.get("config", "")): _arm(r) for r in evidence.tagged}
    return [(arm_of[lp.config], lp) for lp in matched_loops(
        evidence.records, evidence.settings, cfg.gate_tolerance, cfg.failure_gap,
        cfg.failure_train_ratio)]


def gates(loops: list[tuple[str, object]]) -> list[dict]:
    """Each matched loop's gate and failures, as the rules read them."""
    return [{"arm": arm, "seed": lp.seed, "generations": lp.generations,
             "gap_closed": lp.gate["gap_closed"], "reached": lp.gated,
             "failures": lp.failures, "readable": lp.gated and not lp.failures}
            for arm, lp in loops]


def _noise(values: np.ndarray) -> dict:
    """sigma and tau of (seeds, generations): generation means, seed offsets and noise."""
    if values.shape[0] < 2 or values.shape[1] < 2:
        return {"sigma": None, "tau": None}
    sigma, tau = two_way(values)
    return {"sigma": sigma, "tau": tau}


def interactions(evidence, cfg) -> dict:
    """Per admitted or not filter: the seed-paired filter x labeller interaction on log
    excess risk by generation, from the pairs `filter_groups` makes."""
    from icl_stl.report.p6_pairs import filter_groups

    groups, _ = filter_groups(evidence, cfg)
    out = {}
    for key, pairs in sorted(groups.items(), key=str):
        name = json.loads(key[-1])["filter"]
        rows = {}
        for loop, plain in pairs:
            if plain is None:
                continue
            gens = [g for g in loop.generations if g > 0 and g in plain.generations]
            own = [float(loop.contrast[loop.generations.index(g)]) for g in gens]
            ref = [float(plain.contrast[plain.generations.index(g)]) for g in gens]
            readable = all(lp.gated and not lp.failures for lp in (loop, plain))
            rows[loop.seed] = {"generations": gens, "filtered_contrast": own,
                               "unfiltered_contrast": ref,
                               "interaction": [a - b for a, b in zip(own, ref, strict=True)],
                               "readable": readable}
        out[ARM_OF_FILTER[name]] = {"per_seed": {str(s): r for s, r in sorted(rows.items())},
                                    **_summarise(rows, True), "all_pairs": _summarise(rows)}
    return out


def _summarise(rows: dict, readable_only: bool = False) -> dict:
    """Means by generation and the noise over the seeds read (those with every generation)."""
    seeds = [s for s, r in sorted(rows.items()) if r["readable"] or not readable_only]
    gens = sorted(set.intersection(*(set(rows[s]["generations"]) for s in seeds))) \
        if seeds else []
    seeds = [s for s in seeds if gens]

    def table(field: str) -> np.ndarray:
        return np.array([[rows[s][field][rows[s]["generations"].index(g)] for g in gens]
                         for s in seeds], dtype=float).reshape(len(seeds), len(gens))

    inter = table("interaction")
    out = {"seeds_read": seeds, "generations": gens,
           "interaction_mean_by_generation": inter.mean(0).tolist() if seeds else [],
           "interaction_per_seed": inter.mean(1).tolist(),
           "filtered_contrast_mean_by_generation":
               table("filtered_contrast").mean(0).tolist() if seeds else [],
           "unfiltered_contrast_mean_by_generation":
               table("unfiltered_contrast").mean(0).tolist() if seeds else []}
    return out | _noise(inter)


def unfiltered_contrast(loops: list[tuple[str, object]]) -> dict:
    """The unfiltered pair's log contrast by generation over its readable seeds (the collapse
    the filters are read against, whether or not a filtered run of the seed exists)."""
    read = [lp for arm, lp in loops if arm == "unfiltered" and lp.gated and not lp.failures
            and len(lp.generations) > 1]
    gens = sorted(set.intersection(*(set(lp.generations) for lp in read)) - {0}) if read else []
    table = np.array([[lp.contrast[lp.generations.index(g)] for g in gens] for lp in read])
    return {"seeds_read": [lp.seed for lp in read], "generations": gens,
            "contrast_mean_by_generation": table.mean(0).tolist() if read and gens else []}


def analyse(results: Path) -> tuple[dict, list[tuple[str, object]]]:
    """pilot.json (curves per arm, labeller and seed; the gate; the interaction and its noise)
    and the (arm, matched loop) pairs it was read from, which the figure draws."""
    from icl_stl.report.rules import ReportConfig

    cfg = ReportConfig()
    evidence = load(results)
    loops = arm_loops(evidence, cfg)
    gate_rows = gates(loops)
    inter = interactions(evidence, cfg)
    gen0 = {}
    for seed in sorted({r["seed"] for r in evidence.tagged}):
        values = [r["bayes_excess"] for r in evidence.tagged
                  if r["seed"] == seed and r["generation"] == 0]
        gen0[str(seed)] = float(max(values) / min(values) - 1.0)
    relative = [r["bayes_excess_se"] / r["bayes_excess"] for r in evidence.tagged
                if r.get("bayes_excess_se") is not None and r["bayes_excess"] > 0]
    pooled = [row for row in inter.values() if row["sigma"] is not None]
    return {
        "seeds": sorted({int(r["seed"]) for r in evidence.tagged}),
        "gate_tolerance": cfg.gate_tolerance,
        "gate": gate_rows,
        "gate_passed": {arm: {"loops": sum(g["arm"] == arm for g in gate_rows),
                              "reached": sum(g["arm"] == arm and g["reached"]
                                             for g in gate_rows),
                              "readable": sum(g["arm"] == arm and g["readable"]
                                              for g in gate_rows)}
                        for arm in sorted({g["arm"] for g in gate_rows})},
        "failures": [f"{g['arm']} seed {g['seed']}: generation {f['generation']} {f['arm']} "
                     f"arm {f['why']}" for g in gate_rows for f in g["failures"]],
        # every arm of a seed trains the same generation 0 (the same streams): the largest
        # relative difference of its excess risk across the seed's runs and labellers
        "generation_0_agreement": gen0,
        "excess_relative_se": {"mean": float(np.mean(relative)) if relative else None,
                               "max": float(np.max(relative)) if relative else None},
        "curves": curves(evidence),
        "unfiltered_pair": unfiltered_contrast(loops),
        "interaction": inter,
        # the co-primary scales (calibration, spread), decisive in the rule (THEORY 8.9)
        "coprimary": coprimary_block(evidence, cfg, ARM_OF_FILTER, two_way),
        # pooled over the filters with a noise estimate: sqrt of the mean variance
        "noise": {"sigma": float(np.sqrt(np.mean([r["sigma"] ** 2 for r in pooled])))
                  if pooled else None,
                  "tau": float(np.sqrt(np.mean([r["tau"] ** 2 for r in pooled])))
                  if pooled else None,
                  "filters": [k for k, r in inter.items() if r["sigma"] is not None]},
    }, loops


def figure(results: Path, pilot: dict, loops: list[tuple[str, object]]) -> Path | None:
    """figures/arms.png: unfiltered and each admitted filter, their readable loops beside their
    oracle twins, and the head's z² where the records carry it; None (and no figure) when no
    arm has a readable loop."""
    from icl_stl.loop.admission import ADMITTED_FILTERS
    from icl_stl.report.arms_figure import draw
    from icl_stl.report.matched import readable

    path = results / "figures" / "arms.png"
    path.unlink(missing_ok=True)  # a figure of earlier records would outlive them
    # a gated seed beyond --max-seeds has only its screen (generation 0): nothing to follow
    arms = {arm: readable([lp for a, lp in loops if a == arm and len(lp.generations) > 1]).loops
            for arm in ("unfiltered", *ADMITTED_FILTERS)}
    arms = {arm: read for arm, read in arms.items() if read}
    if not arms:
        return None
    z2 = {arm: {lab: {int(seed): dict(zip(row["generations"], row["head_z2"], strict=True))
                      for seed, row in seeds.items()}
                for lab, seeds in pilot["curves"][arm].items()} for arm in arms}
    seen = any(v is not None for arm, read in arms.items() for by_seed in z2[arm].values()
               for lp in read for v in by_seed.get(lp.seed, {}).values())
    first = next(iter(arms.values()))[0]
    return draw(arms, path, f"P6 pilot: each arm beside its oracle twin (λ = "
                f"{first.real_fraction:g}, n = {first.n:,}; readable seeds only)",
                z2 if seen else None)


def write_results(work: Path, results: Path, draws: int) -> int:
    try:
        copied = collect(work, results) if work.exists() else []
        print(f"[pilot_p6] copied {len(copied)} runs from {work}")
        pilot, loops = analyse(results)
    except PilotInputError as err:
        print(f"pilot_p6 analyse: {err}")
        return 2
    (results / "pilot.json").write_text(json.dumps(pilot, indent=2) + "\n")
    sizing = size(pilot, draws)
    (results / "sizing.json").write_text(json.dumps(sizing, indent=2) + "\n")
    drawn = figure(results, pilot, loops)
    write_readme(results, pilot, sizing)
    print(f"[pilot_p6] figure: {drawn or 'none (no arm has a readable loop)'}")
    print(f"[pilot_p6] gate: {pilot['gate_passed']}")
    for arm, row in pilot["interaction"].items():
        print(f"[pilot_p6] {arm}: seeds read {row['seeds_read']}, interaction by generation "
              f"{np.round(row['interaction_mean_by_generation'], 3).tolist()}, sigma "
              f"{row['sigma']}, tau {row['tau']}")
    print(f"[pilot_p6] proposed delta_6 {sizing['delta_6']}; seeds for 80% power "
          f"{sizing.get('seeds_for_80_percent', sizing.get('why_no_power'))}")
    return 0
