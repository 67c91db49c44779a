"""The commit that fixed each version-2 prediction's rule, where a prediction's rule came after
the confirmatory programme's own `rules_commit` (issue 30: P6, P9 and P10 each record theirs).

Rules before data: the commit named here precedes every run that judges the rule (for P10, whose
pre-stated outcome made it "not testable", its pilot's runs). tests/system/
test_rules_before_data.py checks that order in the git history, and that a rule's text and its
settings are what they were at its commit. verdicts.json copies the commit
into the prediction's entry (`verdicts[n]["rules_commit"]`, scripts/v2_report.py).
"""

from __future__ import annotations

RULES_COMMITS: dict[str, str] = {
    # docs/THEORY.md section 8.9 and ReportConfig's v2_p6_* fixed from the P6 pilot, before the
    # d = 3 programme that judges it
    "6": "752ad134b96836ec32685bc775759872fe7aff45",
    # docs/THEORY.md section 8.10 and ReportConfig's v2_p9_* fixed from the P9 pilot, before the
    # P9 programme (scripts/reproduce_v2.py --setting p9) that judges it
    "9": "11c57d6555ebb4711ea7d27db5686ccf37d1c24d",
    # docs/THEORY.md section 8.8 and the "no dip" outcome, before the pilot of 2026-12-06 23:15
    "10": "4a792f65c4613379f863b42d65fdb084c9130955",
}
