"""icl_stl.load_runs: every loop record as a DataFrame, equal to the report's runs.csv."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

import icl_stl
from icl_stl.report.report import write_report
from icl_stl.report.tidy import KEYS

# Committed runs: the generator at demo scale (model and oracle labellers) and the CPU
# reproduction (the transformer's loops and the reference learner's).
RUN_DIRS = [REPO / "docs" / "results" / "generator-cpu" / "runs",
            REPO / "docs" / "results" / "cpu" / "runs"]


@pytest.mark.parametrize("runs_dir", RUN_DIRS, ids=lambda p: p.parent.name)
def test_the_table_equals_the_reports_runs_csv(runs_dir, tmp_path):
    write_report([runs_dir], tmp_path / "report")
    table = icl_stl.load_runs([runs_dir])
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "report" / "runs.csv"))
    assert list(table.columns[:len(KEYS)]) == list(KEYS)
    assert not table.duplicated(["run", "seed", "n", "real_fraction", "augment",
                                 "generation"]).any()


def test_each_row_holds_its_loop_records_metrics():
    """Read against summary.json directly, not through the report's code."""
    runs_dir = RUN_DIRS[0]
    table = icl_stl.load_runs(str(runs_dir))  # one path, as a string
    records = [(path.parent, r) for path in sorted(runs_dir.rglob("summary.json"))
               for r in json.loads(path.read_text())["generations"]]
    assert len(table) == len(records) == 2 * 2 * 2 * 6  # labellers x seeds x lambdas x gens
    for run, r in records:
        (row,) = table[(table.run == str(run)) & (table.seed == r["seed"])
                       & (table.real_fraction == r["real_fraction"])
                       & (table.generation == r["generation"])].itertuples()
        assert row.labeller == run.name  # the two runs are named after their labeller
        assert (row.n, row.augment) == (r["n"], r["augment"])
        assert (row.test_risk, row.gap_closed) == (r["test_risk"], r["gap_closed"])
        ratio = r["syn_label_var_ratio"]  # null at generation 0: an empty cell, so NaN
        assert pd.isna(row.syn_label_var_ratio) if ratio is None else (
            row.syn_label_var_ratio == ratio)


def test_a_missing_directory_is_named():
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        icl_stl.load_runs([REPO / "no_such_dir"])


def test_importing_the_package_loads_neither_pandas_nor_torch():
    code = ("import sys, icl_stl\n"
            "print(sorted(m for m in ('pandas', 'torch', 'matplotlib') if m in sys.modules))\n"
            "print(callable(icl_stl.load_runs))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
