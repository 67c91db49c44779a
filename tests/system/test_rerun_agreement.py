"""scripts/compare_reruns.py and what it measured: the d2 programme's seeds 20006-20010, trained
through generation 1 on one machine and again from generation 0 on another
(docs/results/cpu-v2/first-machine/), and the numbers docs/reproduce.md quotes from it."""

from __future__ import annotations

import json
import math
import re
import sys

import pytest
from programme_checks import REPO

from icl_stl.report.agreement import json_differences

sys.path.insert(0, str(REPO / "scripts"))
import compare_reruns  # noqa: E402

FIRST = REPO / "docs" / "results" / "cpu-v2" / "first-machine"
RUNS = REPO / "docs" / "results" / "cpu-v2" / "runs"


def _summary(path, risks: dict[tuple[int, int], float]) -> None:
    """A summary.json with seed 7's model (member 0) and oracle twin (member 1)."""
    recs = [{"generation": g, "member": m, "seed": 7, "labeller": ["model", "oracle"][m],
             "test_risk": 1.0 + e, "excess_risk": e} for (g, m), e in risks.items()]
    path.write_text(json.dumps({"members": [{}, {}], "generations": recs}))


def test_identical_runs_agree_exactly_and_a_change_is_measured(tmp_path):
    before = {(0, 0): 0.1, (0, 1): 0.1, (1, 0): 0.2, (1, 1): 0.1}
    _summary(tmp_path / "a.json", before)
    _summary(tmp_path / "b.json", {**before, (1, 0): 0.3, (2, 0): 9.0})  # 2: only in b
    same = compare_reruns.compare([(tmp_path / "a.json", tmp_path / "a.json")])
    assert all(v["max"] == 0.0 for row in same["generations"].values() for v in row.values())
    moved = compare_reruns.compare([(tmp_path / "a.json", tmp_path / "b.json")])
    assert set(moved["generations"]) == {"0", "1"}
    one = moved["generations"]["1"]
    assert one["excess_risk_relative"]["max"] == pytest.approx(0.5)
    assert one["excess_risk_relative"]["median"] == pytest.approx(0.25)  # 0.5 and 0 (oracle)
    assert one["test_risk_relative"]["max"] == pytest.approx(0.1 / 1.2)
    assert one["log_contrast_difference"]["max"] == pytest.approx(math.log(3) - math.log(2))


def test_the_committed_agreement_regenerates_and_the_docs_quote_it():
    committed = json.loads((FIRST / "agreement.json").read_text())
    pairs = [(FIRST / f"{arm}-20006-20010.summary.json",
              RUNS / arm / f"{arm}-20006-20010" / "summary.json") for arm in ("p1", "p2")]
    fresh = compare_reruns.compare(pairs)
    assert json_differences(committed["generations"], fresh["generations"]) == []
    gen0, gen1 = committed["generations"]["0"], committed["generations"]["1"]
    assert gen0["log_contrast_difference"]["max"] == 0.0  # the twins share generation 0
    assert 0 < gen0["test_risk_relative"]["max"] < 1e-3  # the last digits only ...
    assert gen1["excess_risk_relative"]["max"] > gen0["excess_risk_relative"]["max"]  # ... grown
    text = " ".join((REPO / "docs" / "reproduce.md").read_text().split())
    quoted = re.search(r"generation 0's test risk moved by a median of ([\d.e-]+) relative "
                       r"\(largest ([\d.e-]+)\).*?generation 1's excess risk by a median of "
                       r"([\d.e-]+) \(largest ([\d.e-]+)\).*?log\(E / E_oracle\) by a median of "
                       r"([\d.e-]+) \(largest ([\d.e-]+)\)", text)
    assert quoted, "docs/reproduce.md no longer quotes the rerun's agreement"
    numbers = [gen0["test_risk_relative"]["median"], gen0["test_risk_relative"]["max"],
               gen1["excess_risk_relative"]["median"], gen1["excess_risk_relative"]["max"],
               gen1["log_contrast_difference"]["median"], gen1["log_contrast_difference"]["max"]]
    assert list(quoted.groups()) == [f"{v:.2g}" for v in numbers]
