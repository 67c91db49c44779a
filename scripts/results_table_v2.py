"""The confirmatory reproduction's Results table, printed from a version-2 verdicts.json.

    .venv/bin/python scripts/results_table_v2.py docs/results/cpu-v2

One row per prediction: what it claims, its verdict, the group it was read in and one reading
whose every number is formatted from verdicts.json (the estimate, its 90% interval, the margin,
the seeds read and the minimum detectable effect; or why it was not tested, not run or is not
testable). `--report-only` writes it into the results folder's README between two markers
(`refresh_readme`), and tests/system/test_cpu_v2_results.py checks the README holds exactly
these lines, so the table cannot quote a number the committed verdicts do not hold. An interim
report's rows say what each prediction still needs.

The repository's README.md leads its Results with the programme's settings side by side
(`SETTINGS`: d = 2, the second setting d = 3, and P9's), between markers of its own
(`README_BEGIN`, `README_END`): one status line per setting (which parts have finished, from its
parts.json and verdicts.json's `programme`; "not started" while its folder holds no
verdicts.json), then one row per prediction and setting that judges it (`combined_table`).
`--report-only --results FOLDER` rewrites that block too when FOLDER is one of the settings'
committed folders (`refresh_readmes`); any other folder (a copy, a smoke run) leaves the
repository's README alone.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from readme_markers import replace_between

BEGIN = "<!-- results table: begin (scripts/results_table_v2.py) -->"
END = "<!-- results table: end -->"
REPO = Path(__file__).resolve().parents[1]
README_SOURCE = REPO / "docs" / "results" / "cpu-v2"  # the d = 2 programme's, and the others' parent
README_BEGIN = "<!-- confirmatory results: begin (scripts/results_table_v2.py) -->"
README_END = "<!-- confirmatory results: end -->"
ARM_NAMES = {"p1": "P1", "p2": "P2", "p6": "P6", "p9": "P9", "lambda1": "the λ = 1 control"}


@dataclass(frozen=True)
class Setting:
    """A confirmatory programme whose verdicts README.md quotes: its `--setting`, how the table
    names it, its committed results folder and the predictions it judges (None: every one its
    verdicts.json does not mark "not run")."""

    name: str
    label: str
    folder: Path
    judges: tuple[str, ...] | None = None
    arm_names: tuple[tuple[str, str], ...] = ()  # the status line's names where not ARM_NAMES


SETTINGS = (
    Setting("d2", "d = 2", README_SOURCE),
    Setting("d3", "d = 3, σ = 0.25", README_SOURCE / "d3", judges=("1", "2", "6")),
    Setting("p9", "P9's: d = 2, G = 12", README_SOURCE / "p9", judges=("9",),
            arm_names=(("p1", "the replace loops (P9's control)"),)),
)

CLAIMS = {
    "1": "λ = 0: excess risk grows against the oracle twin",
    "2": "λ > 0: it stays bounded against the twin",
    "3": "recursive stability shrinks with n",
    "4": "error decays at least as n^-1/4",
    "5": "an interior optimum m*",
    "6": "a filter that keeps the spread prevents collapse",
    "7": "decaying λ acts like its floor",
    "8": "M ≤ d tracks dMMSE, drifts apart",
    "9": "accumulation with S_0 kept stays bounded",
    "10": "an interior optimum of the real weight",
}


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "n/a"


def reading(v: dict) -> str:
    if v["verdict"] in ("not testable", "not run"):
        return v["why"]
    if v.get("rules_version") == "v1":
        return "no version-2 rule: read in the exploratory reproduction only"
    if v.get("estimate") is None:
        numbers = v.get("numbers") or "no run holds the data"
        group = v.get("primary_group")
        if group and numbers.startswith(f"primary group {group}: "):
            numbers = numbers[len(f"primary group {group}: "):]
        design = v.get("design")
        if design and "min_detectable_effect" not in design:  # not planned (P9's, no pilot)
            return numbers + f"; the design reads {design['seeds']} seeds (MDE not planned)"
        return numbers + (f"; the design reads {design['seeds']} seeds (MDE "
                          f"{_num(design['min_detectable_effect'])})" if design else "")
    low, high = v["interval"]
    text = (f"{v['statistic']} {_num(v['estimate'])} [{_num(low)}, {_num(high)}] against "
            f"{_num(v['margin'])}, {v['n_seeds']} seeds")
    mde = v.get("min_detectable_effect")
    return text + (f", MDE {_num(mde)}" if mde is not None else "")


def results_table(folder: Path) -> list[str]:
    verdicts = json.loads((folder / "verdicts.json").read_text())["verdicts"]
    lines = ["| | prediction | verdict | group | reading |", "| --- | --- | --- | --- | --- |"]
    for number in sorted(verdicts, key=int):
        v = verdicts[number]
        group = v.get("primary_group") or ""
        lines.append(f"| P{number} | {CLAIMS.get(number, v.get('statement', ''))} | "
                     f"**{v['verdict']}** | {group} | {reading(v).replace('|', '/')} |")
    return lines


def refresh_readme(readme: Path, folder: Path) -> bool:
    """Replace the table between the markers; False (nothing written) when they are absent."""
    return replace_between(readme, BEGIN, END, results_table(folder))


def _spans(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def status_line(folder: Path, arm_names: dict[str, str] | None = None) -> str:
    """Where the programme stands: finished or interim, the parts finished (parts.json), and
    for each arm the seeds run and the last generation every block of it has finished."""
    names = {**ARM_NAMES, **(arm_names or {})}
    report = json.loads((folder / "verdicts.json").read_text())
    programme = report["programme"]
    state = folder / "parts.json"
    parts = json.loads(state.read_text())["parts"] if state.exists() else []
    done = [p["index"] for p in parts if p.get("finished")]
    opened = [p["index"] for p in parts if not p.get("finished")]
    if programme["finished"]:
        return (f"**Finished** (`programme.finished`: true; parts {_spans(done)}): the "
                f"confirmatory verdicts, by the rules of {str(report['rules_commit'])[:7]}.")
    reached: dict[str, int] = {}
    for part in parts:
        if part.get("finished"):
            for seg in part["segments"]:
                reached[seg["block"]] = max(reached.get(seg["block"], -1), seg["last"])
    arms = []
    for arm, spec in programme["arms"].items():
        seeds = spec["seeds_run"]
        name = names.get(arm, arm)
        if not seeds:
            arms.append(f"{name} has not started")
            continue
        last = min((g for b, g in reached.items() if b.startswith(f"{arm}-")), default=None)
        count = f", {len(seeds)} of the {spec['count']} it reads" if spec.get("count") else ""
        through = (f", through generation {last} of {programme['horizon']}"
                   if last is not None else ", none finished yet")
        arms.append(f"{name} seeds {min(seeds)}-{max(seeds)}{count}{through}")
    parts_text = (f"part{'s' if len(done) != 1 else ''} {_spans(done)} finished"
                  if done else "no part finished")
    if opened:
        parts_text += f", part {_spans(opened)} open"
    final = settled_rules(report)
    if final:
        named = " and ".join(f"P{n}" for n in final)
        one = len(final) == 1
        closing = (f"Every loop {named} {'reads' if one else 'read'} is through generation "
                   f"{programme['horizon']}, so {'its verdict' if one else 'their verdicts'} "
                   "below will not change with the parts left.")
    else:
        closing = "Until the last part, no verdict below is the confirmatory one."
    return (f"**Interim** (`programme.finished`: false; {parts_text}): "
            f"{'; '.join(arms)}. {closing}")


def settled_rules(report: dict) -> list[str]:
    """The rules (numbers) of an interim report whose verdicts cannot change: each read its
    arm's full count of seeds, and every seed the arm ran is through the horizon (a spare runs
    only for a seed read as unreadable, and a finished seed's reading is fixed)."""
    out = []
    for arm, spec in report["programme"]["arms"].items():
        verdict = report["verdicts"].get(arm[1:], {}) if arm.startswith("p") else {}
        if (spec.get("count") and verdict.get("n_seeds") == spec["count"]
                and spec["seeds_run"] and set(spec["seeds_run"]) <= set(spec["seeds_finished"])):
            out.append(arm[1:])
    return out


def _verdicts(setting: Setting) -> dict | None:
    path = setting.folder / "verdicts.json"
    return json.loads(path.read_text())["verdicts"] if path.exists() else None


def _judged_here(setting: Setting, number: str, verdict: dict | None) -> bool:
    if setting.judges is not None and number not in setting.judges:
        return False
    return verdict is None or (verdict["verdict"] != "not run" and not verdict.get("by_product"))


def combined_table(settings: tuple[Setting, ...] = SETTINGS) -> list[str]:
    """One row per prediction and setting that judges it, in the predictions' order. A
    prediction no setting judges keeps the first setting's row (its "not run" says where it
    runs); a setting without verdicts.json yet shows its predictions as "not started"."""
    held = {s.name: _verdicts(s) for s in settings}
    numbers = sorted({n for s in settings for n in (held[s.name] or {})}
                     | {n for s in settings for n in (s.judges or ())}, key=int)
    lines = ["| | prediction | setting | verdict | group | reading |",
             "| --- | --- | --- | --- | --- | --- |"]
    for number in numbers:
        rows = []
        for s in settings:
            verdicts = held[s.name]
            if verdicts is not None and number not in verdicts:
                continue
            v = None if verdicts is None else verdicts[number]
            if not _judged_here(s, number, v):
                continue
            if v is None:
                rows.append((s, "not started", "", f"runs in `scripts/reproduce_v2.py "
                             f"--setting {s.name}`; its results will be in "
                             f"`{_shown(s.folder)}`"))
            else:
                rows.append((s, v["verdict"], v.get("primary_group") or "", reading(v)))
        if not rows:
            first = next((s for s in settings if held[s.name] and number in held[s.name]), None)
            if first is None:
                continue
            v = held[first.name][number]
            rows.append((first, v["verdict"], v.get("primary_group") or "", reading(v)))
        claim = CLAIMS.get(number, "")
        for s, verdict, group, text in rows:
            lines.append(f"| P{number} | {claim} | {s.label} | **{verdict}** | {group} | "
                         f"{text.replace('|', '/')} |")
    return lines


def _shown(folder: Path) -> str:
    return str(folder.relative_to(REPO)) if folder.is_relative_to(REPO) else str(folder)


def setting_status(setting: Setting) -> str:
    """The status line of one setting: its programme's, or "not started"."""
    readme = setting.folder / "README.md"
    where = (f"[{_shown(setting.folder)}]({_shown(readme)})" if readme.exists()
             else f"`{_shown(setting.folder)}`")  # no link to a folder not yet written
    head = f"- **{setting.label}** ({where})"
    if not (setting.folder / "verdicts.json").exists():
        return (f"{head}: not started (`scripts/reproduce_v2.py --setting {setting.name}`; it "
                f"judges {', '.join(f'P{n}' for n in setting.judges or ())}).")
    return f"{head}: {status_line(setting.folder, dict(setting.arm_names))}"


def readme_block(settings: tuple[Setting, ...] = SETTINGS) -> list[str]:
    """What the repository's README holds between its markers: each setting's status line,
    then the combined table."""
    return [*(setting_status(s) for s in settings), "", *combined_table(settings)]


def readmes_for(results: Path, settings: tuple[Setting, ...] = SETTINGS) -> list[Path]:
    """The READMEs `--report-only --results RESULTS` refreshes: the folder's own and, when the
    folder is one of the settings' committed folders, the repository's README too."""
    readmes = [results / "README.md"]
    if any(results.resolve() == s.folder.resolve() for s in settings):
        readmes.append(REPO / "README.md")
    return [r for r in readmes if r.exists()]


def refresh_readmes(results: Path) -> list[Path]:
    """Rewrite the generated blocks of `readmes_for(results)`; the READMEs written."""
    written = []
    for readme in readmes_for(results):
        if readme.parent.resolve() == results.resolve():
            changed = refresh_readme(readme, results)
        else:
            changed = replace_between(readme, README_BEGIN, README_END, readme_block())
        if changed:
            written.append(readme)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "verdicts.json").exists():
        print("usage: results_table_v2.py RESULTS_FOLDER (holding verdicts.json)",
              file=sys.stderr)
        raise SystemExit(2)
    print("\n".join(results_table(Path(sys.argv[1]))))
