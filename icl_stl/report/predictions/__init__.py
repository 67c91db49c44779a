"""The predictions of docs/THEORY.md, one module each, in the order REPORT.md states them.

Every module has the same two functions:

    verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction
    section(doc: Document, evidence: Evidence, prediction: Prediction) -> None

`verdict` judges the prediction from the evidence `evidence.collect` built once; `section`
writes its part of REPORT.md (figures, tables, the group table). `report.write_report` loops
over `REGISTRY`: adding a prediction is one module and one line here.
"""

from __future__ import annotations

from types import ModuleType

from icl_stl.report.predictions import (
    p1_collapse,
    p2_bounded,
    p3_stability,
    p4_decay,
    p5_augmentation,
    p6_filters,
    p7_schedules,
    p8_pools,
)

REGISTRY: list[ModuleType] = [p1_collapse, p2_bounded, p3_stability, p4_decay,
                              p5_augmentation, p6_filters, p7_schedules, p8_pools]
