"""Rules before data, per prediction: a rule that records its own `rules_commit` was committed
before the runs it speaks about (the pilot's, for a rule whose pre-stated outcome made the
prediction "not testable").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from icl_stl.report.rule_commits import RULES_COMMITS
from icl_stl.report.untestable import NOT_TESTABLE_ON_CPU

REPO = Path(__file__).resolve().parents[2]



def _full_history() -> bool:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return False
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO,
                             capture_output=True, text=True).stdout.strip()
    return shallow == "false"


needs_history = pytest.mark.skipif(not _full_history(),
                                   reason="needs the repository's full git history")


def _is_ancestor(older: str, newer: str) -> bool:
    run = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode in (0, 1), f"git merge-base {older} {newer}: {run.stderr.strip()}"
    return run.returncode == 0


def _runs_commit(pilot: str) -> str:
    readme = (REPO / pilot / "README.md").read_text()
    found = re.search(r"Commit of the runs: ([0-9a-f]{40})", readme)
    assert found, f"{pilot}/README.md names no commit of its runs"
    return found.group(1)


@needs_history
@pytest.mark.parametrize("number", sorted(set(RULES_COMMITS) & set(NOT_TESTABLE_ON_CPU)))
def test_a_not_testable_rule_was_committed_before_its_pilot_ran(number):
    commit, runs = RULES_COMMITS[number], _runs_commit(NOT_TESTABLE_ON_CPU[number].pilot)
    assert _is_ancestor(commit, runs), \
        f"P{number}: rules_commit {commit[:12]} is not an ancestor of the pilot's runs' " \
        f"commit {runs[:12]}"
    assert runs == commit or not _is_ancestor(runs, commit)


def test_the_committed_verdicts_carry_each_rules_commit():
    import json

    verdicts = json.loads((REPO / "docs/results/cpu-v2/verdicts.json").read_text())["verdicts"]
    for number, commit in RULES_COMMITS.items():
        assert verdicts[number]["rules_commit"] == commit


@needs_history
def test_the_ancestry_check_can_fail():
    """The check above reads history in the right direction: a commit is not an ancestor of its
    own parent."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
    parent = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    if not parent:
        pytest.skip("a single-commit checkout")
    assert _is_ancestor(parent, head) and not _is_ancestor(head, parent)


# Where each rule fixed by its own commit is stated: the THEORY section holding its "**The
# rule**" paragraph, and the ReportConfig settings that carry its numbers.
RULE_TEXT = {"6": ("### 8.9 P6, version 2", "v2_p6_"), "9": ("### 8.10 P9, version 2", "v2_p9_")}


def _rule_paragraph(theory: str, heading: str) -> str:
    section = theory[theory.index(heading):]
    start = section.index("**The rule**")
    following = re.search(r"^\*\*", section[start + 2:], flags=re.M)
    return section[start:start + 2 + following.start()] if following else section[start:]


def _settings_lines(source: str, prefix: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if line.strip().startswith(prefix)]


@needs_history
@pytest.mark.parametrize("number", sorted(RULE_TEXT))
def test_a_rule_is_unchanged_since_its_commit(number):
    heading, prefix = RULE_TEXT[number]
    commit = RULES_COMMITS[number]

    def at(path: str) -> str:
        return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout

    now_theory = (REPO / "docs" / "THEORY.md").read_text()
    assert _rule_paragraph(at("docs/THEORY.md"), heading) == \
        _rule_paragraph(now_theory, heading), f"P{number}: the rule's text changed since {commit}"
    rules = "icl_stl/report/rules.py"
    then, now = _settings_lines(at(rules), prefix), _settings_lines((REPO / rules).read_text(),
                                                                    prefix)
    assert then and then == now, f"P{number}: its settings changed since {commit[:12]}"


def test_the_rule_paragraph_reader_sees_a_change():
    theory = (REPO / "docs" / "THEORY.md").read_text()
    heading = RULE_TEXT["6"][0]
    paragraph = _rule_paragraph(theory, heading)
    assert "δ_6" in paragraph and "**Why the co-primary" not in paragraph
    assert _rule_paragraph(theory.replace("-δ_6 = -0.57", "-δ_6 = -0.50"), heading) != paragraph
