"""The registry of predictions: one module per prediction, each with `verdict` and `section`,
and a report that judges and writes whatever the registry holds."""

from __future__ import annotations

import inspect
import json
import pkgutil
import re
from types import SimpleNamespace

from test_report import healthy, loops, write_loop

from icl_stl.report import predictions, report
from icl_stl.report.verdict import CONFIRMED, GroupResult, Prediction, finalise


def test_every_prediction_module_is_registered_in_order_with_the_same_two_functions():
    names = sorted(m.name for m in pkgutil.iter_modules(predictions.__path__))
    registered = {m.__name__.rsplit(".", 1)[1]
                  for m in (*predictions.REGISTRY, *predictions.REGISTRY_V1)}
    assert sorted(registered) == names
    assert predictions.registry("v2") is predictions.REGISTRY
    assert predictions.registry("v1") is predictions.REGISTRY_V1
    for registry in (predictions.REGISTRY, predictions.REGISTRY_V1):
        numbers = [number_of(module) for module in registry]
        assert numbers == sorted(set(numbers)) and numbers[:8] == list(range(1, 9))
        for module in registry:
            assert list(inspect.signature(module.verdict).parameters) == ["evidence", "cfg"]
            assert list(inspect.signature(module.section).parameters) == ["doc", "evidence",
                                                                          "pred"]


def number_of(module) -> int:
    """A prediction module's number, from its name (p10_real_weight: 10)."""
    return int(re.match(r"p(\d+)_", module.__name__.rsplit(".", 1)[1]).group(1))


def test_report_names_no_prediction_by_position():
    source = inspect.getsource(report)
    assert "preds[" not in source and "p1_collapse" not in source


def test_a_registered_prediction_is_judged_and_written(tmp_path, monkeypatch):
    def verdict(evidence, cfg):
        pred = Prediction(9, "Loops exist.", "Count them.", (CONFIRMED,),
                          primary_rule="the only group")
        pred.groups.append(GroupResult("every loop", CONFIRMED, n_seeds=len(
            {r["seed"] for r in evidence.records})))
        return finalise(pred, cfg, lambda gs: gs[0] if gs else None)

    def section(doc, evidence, pred):
        doc.add("## Prediction 9: loops exist", "")
        doc.verdict_table(pred)

    ninth = SimpleNamespace(verdict=verdict, section=section)
    monkeypatch.setattr(predictions, "REGISTRY", [*predictions.REGISTRY, ninth])
    write_loop(tmp_path / "runs" / "a", loops(healthy))
    result = report.write_report([tmp_path / "runs"], tmp_path / "out", figures=False)
    assert result.verdicts[9] == CONFIRMED
    assert set(result.verdicts) == {9, *map(number_of, predictions.REGISTRY[:-1])}
    data = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert data["verdicts"]["9"]["groups"][0]["n_seeds"] == 6
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "## Prediction 9: loops exist" in text and "- **P9**. Count them." in text
