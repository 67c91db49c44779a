"""The report's generator-fidelity table: how real-like each loop's synthetic prompts are.

One row per loop group (configuration, n, lambda, m) and generation >= 1, means over seeds of
`icl_stl.loop.fidelity`'s measurements. A warning names the generator whenever a loop whose
generation 0 reached ridge labels with a variance ratio outside FAITHFUL_VAR_RATIO: its loop
then measures the labeller, not the mechanism the theory is about.
"""

from __future__ import annotations

import numpy as np

from icl_stl.loop.fidelity import FAITHFUL_VAR_RATIO
from icl_stl.report.collect import RunResult, settings_by_path
from icl_stl.report.document import Document
from icl_stl.report.groups import describe_group, group_by
from icl_stl.report.verdict import fmt

COLUMNS = ("syn_label_var_ratio", "syn_w_norm", "real_w_norm", "syn_label_w1", "head_var_ratio")


def generator_name(settings: dict) -> str:
    """What labelled a run's synthetic prompts, from its flattened settings."""
    if settings.get("loop.labeller") == "oracle":
        return "oracle (true posterior predictive)"
    if settings.get("loop.learner") == "gaussian_prior":
        return "reference learner (w from its fitted prior)"
    mode = settings.get("loop.label_mode", "sample")
    std = settings.get("loop.label_noise_std")
    if mode == "mean":
        return "mean (predicted mean, no spread)"
    if mode == "context" and not settings.get("loop.context_noise", False):
        return "context (real opening pairs, then the predicted mean)"
    return (f"{mode}, fixed scale {std:g} around the mean" if std is not None
            else f"{mode}, predictive (the head's own variance)")


def _mean(recs: list[dict], key: str) -> float | None:
    values = [r[key] for r in recs if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _range(recs: list[dict], key: str) -> tuple[float, float] | None:
    values = [r[key] for r in recs if r.get(key) is not None]
    return (min(values), max(values)) if values else None


def fidelity_rows(runs: list[RunResult], records: list[dict]) -> list[dict]:
    """Per group and generation >= 1: the generator and the mean fidelity over seeds."""
    settings = settings_by_path(runs)
    reached = {(r["run"], r["seed"], r["real_fraction"], r["n"], r.get("augment", 0)):
               r.get("reached_ridge") for r in records if r["generation"] == 0}
    rows = []
    key = lambda r: (r["config"], r["n"], r["real_fraction"], r.get("augment", 0),  # noqa: E731
                     r["generation"], r["run"])
    for (config, n, lam, m, generation, run), recs in group_by(
            (r for r in records if r["generation"] > 0 and r.get("syn_label_var_ratio")
             is not None), key).items():
        gates = [reached.get((run, r["seed"], lam, n, m)) for r in recs]
        rows.append({"group": describe_group(config, n=n, **{"λ": lam}, m=m),
                     "generation": generation, "generator": generator_name(settings.get(run, {})),
                     "seeds": len(recs), "generation_0_reached": all(g is True for g in gates),
                     **{c: _mean(recs, c) for c in COLUMNS},
                     # seeds may drift apart in opposite directions, which a mean hides
                     "syn_label_var_ratio_range": _range(recs, "syn_label_var_ratio")})
    return rows


def unfaithful(rows: list[dict]) -> list[str]:
    """A warning per row whose learner passed the gate but whose labels are not real-like."""
    lo, hi = FAITHFUL_VAR_RATIO
    return [f"{r['group']}, generation {r['generation']}: generation 0 reached ridge but the "
            f"synthetic/real label-variance ratio is {fmt(r['syn_label_var_ratio'])}, outside "
            f"[{lo:g}, {hi:g}]; the label mode responsible is {r['generator']}"
            for r in rows if r["generation_0_reached"] and r["syn_label_var_ratio"] is not None
            and not lo <= r["syn_label_var_ratio"] <= hi]


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["group", "generation", "generator", "seeds", "var ratio (min..max)",
              "implied ||w||", "real ||w||", "label W1", "head var / sq. error"]

    def ratio(r: dict) -> str:
        span = r.get("syn_label_var_ratio_range")
        spread = f" ({fmt(span[0])}..{fmt(span[1])})" if span and r["seeds"] > 1 else ""
        return fmt(r["syn_label_var_ratio"]) + spread

    return header, [[r["group"] or "(all)", r["generation"], r["generator"], r["seeds"],
                     ratio(r), *(fmt(r[c]) for c in COLUMNS[1:])] for r in rows]


def write_section(doc: Document, runs: list[RunResult], records: list[dict]) -> list[str]:
    """The fidelity section of REPORT.md ; returns its warnings."""
    rows = fidelity_rows(runs, records)
    if not rows:
        return []
    lo, hi = FAITHFUL_VAR_RATIO
    doc.add("## The generator: how real-like are the synthetic prompts?", "",
            "Each generation's synthetic prompts against real labels of the same x's (means over "
            "seeds, the ratio's range over seeds beside it): the label-variance ratio (mean over "
            "positions; 1 is real-like; mean labels plus a fixed noise of scale 0.1 give about 0.07), the norm of the w least squares reads off a "
            "prompt, the W1 distance of the labels, and the Gaussian head's predicted variance "
            "over its realised squared error on fresh prompts (1: calibrated). The oracle "
            "labeller samples the true posterior predictive: its loops are the control.", "")
    doc.table(*table(rows))
    warnings = unfaithful(rows)
    if warnings:
        doc.add(f"**Warning: generators outside [{lo:g}, {hi:g}] behind learners that reached "
                "ridge**; their loops measure the labeller, not the theory's mechanism:", "",
                *(f"- {w}" for w in warnings), "")
    return warnings
