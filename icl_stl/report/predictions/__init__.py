"""The predictions of docs/THEORY.md, one module each, in the order REPORT.md states them.

Every module has the same two functions:

    verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction
    section(doc: Document, evidence: Evidence, prediction: Prediction) -> None

`verdict` judges the prediction from the evidence `evidence.collect` built once; `section`
writes its part of REPORT.md (figures, tables, the group table). `report.write_report` loops
over `registry(cfg)`: adding a prediction is one module and one line here.

Two versions of the rules (`ReportConfig.rules`): version 2 (`REGISTRY`, the default) judges
P1 and P2 on excess risk against each loop's matched oracle-labelled control; version 1
(`REGISTRY_V1`) is the exploratory reproduction's (docs/results/cpu), kept so that its verdicts
regenerate. Version 2 judges P3 as a dose-response against a chaos twin (`p3_dose_response`;
version 1's `p3_stability` reads the one-prompt stability probe), and P4 and P5 by their own
version-2 modules (`p4_decay_v2`: early stopping, every fitted n learning in context, fits
listed in advance, "no decay on [a, b]"; `p5_augmentation_v2`: compute growing with m, a
quadratic in m / n per seed, the oracle-augmented arm beside it), and P6 by
`p6_matched_filters` (provisional: admitted filters only, the filter x labeller interaction
against the oracle-labelled loop under the same filter; version 1's `p6_filters` reads the
ranking verifier's plateau). P7 and P8 are judged by the same modules under both.
P9 (accumulation with S_0 kept, `p9_accumulation`) is version 2 only.
P10 (`p10_real_weight`: the weight of real data, fresh against reused) is version 2 only.
"""

from __future__ import annotations

from types import ModuleType

from icl_stl.report.predictions import (
    p1_collapse,
    p1_matched_collapse,
    p2_bounded,
    p2_matched_bounded,
    p3_dose_response,
    p3_stability,
    p4_decay,
    p4_decay_v2,
    p5_augmentation,
    p5_augmentation_v2,
    p6_filters,
    p6_matched_filters,
    p7_schedules,
    p8_pools,
    p9_accumulation,
    p10_real_weight,
)

_AFTER_P6: list[ModuleType] = [p7_schedules, p8_pools]
REGISTRY: list[ModuleType] = [p1_matched_collapse, p2_matched_bounded, p3_dose_response,
                              p4_decay_v2, p5_augmentation_v2, p6_matched_filters, *_AFTER_P6,
                              p9_accumulation, p10_real_weight]
REGISTRY_V1: list[ModuleType] = [p1_collapse, p2_bounded, p3_stability, p4_decay,
                                 p5_augmentation, p6_filters, *_AFTER_P6]


def registry(rules: str) -> list[ModuleType]:
    """The prediction modules of rules "v2" (default) or "v1"."""
    return REGISTRY_V1 if rules == "v1" else REGISTRY
