"""P4: a decay fit at the edge of its exponent's search range is never evidence.

A flat curve with one high value at the smallest n fits as A n^-3, the edge of the range the
exponent is searched in; bootstrap replicates land there too and make the interval narrow, so
the one-sided test "confirms" a decay the data do not show. The fit flags such exponents
(`fit_decay(...)["at_edge"]`), and P4 reads a group whose point estimate, or at least alpha of
its bootstrap replicates, is at the edge as underpowered, with a reading that says why. The
rate at which a flat truth is confirmed is measured in tests/report/test_calibration.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_report import DECAY_NS, rel_noise, verdicts_json, write_decay

from icl_stl.report.report import verdicts_of, write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.theory import DECAY_EXPONENT_RANGE, fit_decay

N = np.array(DECAY_NS, float)

# Planted records without oracle-labelled twins: P1 and P2 read by the version-1 rules.
V1 = ReportConfig(rules="v1")


def report(tmp_path) -> dict[int, str]:
    """The verdicts (no figures: they change none and take most of a report's time)."""
    write_report([tmp_path / "runs"], tmp_path / "report", V1, figures=False)
    return verdicts_of(tmp_path / "report")


def test_a_fit_at_the_edge_of_the_exponent_range_is_flagged():
    bump = np.where(N == N.min(), 0.3, 0.0)
    steep = fit_decay(N, 0.3 + bump)  # one high value at the smallest n
    assert steep["slope"] == pytest.approx(DECAY_EXPONENT_RANGE[0]) and steep["at_edge"]
    clean = fit_decay(N, 0.02 + N ** -0.5)
    assert clean["slope"] == pytest.approx(-0.5, abs=0.01) and not clean["at_edge"]
    flat = fit_decay(N, np.full(N.size, 0.3) + 0.001 * np.log(N))  # rising: no decay, A = 0
    assert flat["slope"] == 0.0 and not flat["at_edge"]
    log_like = fit_decay(N, 1.0 - 0.05 * np.log(N))  # flatter than any power: the top edge
    assert log_like["slope"] > -0.02 and log_like["at_edge"]
    batch = fit_decay(N, np.stack([0.3 + bump, 0.02 + N ** -0.5]))
    assert batch["at_edge"].tolist() == [True, False]


@pytest.mark.parametrize("bump, where", [(0.3, "the fit's exponent b = -3"),
                                         (0.05, "of the bootstrap replicates")])
def test_a_flat_decay_with_a_high_first_value_is_not_confirmed(tmp_path, bump, where):
    """The one-sided test alone confirms both (p < 0.01): the edge makes them underpowered."""
    write_decay(tmp_path / "runs" / "d",
                lambda n, s: 0.3 * rel_noise(n, s) + (bump if n == min(DECAY_NS) else 0.0))
    assert report(tmp_path)[4] == "underpowered"
    p4 = verdicts_json(tmp_path)["verdicts"]["4"]
    group = p4["groups"][0]
    assert group["parts"]["p_consistent"] < 0.01 and group["parts"]["at_edge"] is True
    assert p4["reading"].startswith("not read: ") and where in p4["reading"]
    assert "edge of the exponent's search range [-3, 0)" in p4["reading"]
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "edge of the exponent's search range" in text


def test_a_real_decay_is_not_at_the_edge(tmp_path):
    write_decay(tmp_path / "runs" / "d", lambda n, s: (0.01 + 2 * n ** -0.6) * rel_noise(n, s))
    assert report(tmp_path)[4] == "confirmed"
    parts = verdicts_json(tmp_path)["verdicts"]["4"]["groups"][0]["parts"]
    assert parts["at_edge"] is False and parts["edge_share"] < 0.05
    assert json.dumps(parts)  # plain JSON
