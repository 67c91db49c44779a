"""The confirmatory reproduction's report (used by scripts/reproduce_v2.py).

The report of `icl_stl.report` over every finished run under runs/, judged with the rules'
settings that runs/programme.json recorded when the programme started, and then, beside the
verdicts: the programme's `rules_commit` (top level of verdicts.json), what it planned and ran
(`programme`), and for P1, P2 (and P6 where it runs) the minimum detectable effect of the rule
at its seed count (`verdicts[N].design`). P3, P4, P5 and P10, which the rules state not testable
on this CPU (icl_stl/report/untestable.py), are given that verdict with their pilots' reasons on
a CPU setting, and "not run" on a GPU one (their pilots at that scale are still to come) and in
the second setting (which judges P1, P2 and P6). P6 and P9 are judged from their runs where the
programme has their arm (P6: the second setting; P9: its own setting, scripts/v2_p9.py), and
are "not run" elsewhere, saying where they run; the P9 setting gives P2 "not run" and labels
P1's verdict a by-product. Everything is read from runs/, so a copy of runs/ regenerates it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import results_table_v2
import v2_arms
import v2_p9
from v2_arms import readers
from v2_parts_table import refresh_readme
from v2_programme import PROGRAMME
from v2_settings import SETTING_RULES

from icl_stl.report.rule_commits import RULES_COMMITS

STATE_COPY = "parts.json"  # a results folder's copy of the programme's state.json

# the rules whose planned MDE a programme may hold
DESIGN = {"1": "P1", "2": "P2", "6": "P6", "9": "P9"}
SECOND_SETTINGS = ("d3",)  # label noise at d >= 3: P1, P2 and P6 (issues 29 and 30)


def _of_arm(r: dict, arm: str, spec: dict) -> bool:
    """A record of `arm`'s loops: its run lies in runs/<arm>/ (p1 and p6 share lambda = 0);
    a record without its run (a test's) is told by its lambda."""
    if r.get("run"):
        return Path(r["run"]).parent.name == arm
    return float(r["real_fraction"]) == spec["lambda"]


def programme_summary(prog: dict, records: list[dict]) -> dict:
    ran, arms = {}, prog["arms"]
    for arm, spec in arms.items():
        mine = [r for r in records if _of_arm(r, arm, spec)
                and float(r["real_fraction"]) == spec["lambda"]
                and r.get("labeller", "model") == "model"]
        seeds = sorted({int(r["seed"]) for r in mine})
        finished = sorted({int(r["seed"]) for r in mine
                           if int(r["generation"]) == prog["horizon"]})
        ran[arm] = {"lambda": spec["lambda"], "count": spec["count"],
                    "seeds_listed": spec["seeds"], "seeds_run": seeds,
                    "seeds_finished": finished}
        if spec["count"] is not None and len(readers(arms, arm)) > 1:  # p1 runs P6's seeds too
            ran[arm]["seeds_needed"] = max(arms[a]["count"] for a in readers(arms, arm))
    # Finished when every arm has its count of seeds through the last generation (spares
    # included when some seeds were unreadable; p1 as many as P6 reads, where P6 runs), and
    # the lambda = 1 loops (no count: one per seed P1 or P2 ran) every such seed: until then
    # the report is an interim one.
    matched = set().union(*(a["seeds_finished"] for a in ran.values() if a["count"] is not None))
    done = all(len(a["seeds_finished"]) >= a.get("seeds_needed", a["count"])
               if a["count"] is not None else matched <= set(a["seeds_finished"])
               for a in ran.values())
    return {"finished": done, "setting": prog["setting"], "presets": prog["presets"],
            "confirmatory": prog["confirmatory"], "overrides": prog["overrides"],
            "started": prog.get("started"), "horizon": prog["horizon"],
            "steps_per_generation": prog["steps"], "arms": ran}


def untested_verdicts(prog: dict) -> dict[str, dict]:
    """The verdicts of the predictions this programme does not run, by number: those the rules
    state not testable on this CPU, and those whose arm this programme lacks (P6 outside the
    second setting: `v2_arms.RUNS_ELSEWHERE`)."""
    from icl_stl.report.untestable import NOT_TESTABLE_ON_CPU

    setting = prog["setting"]
    if setting in SECOND_SETTINGS:
        out = {number: {"verdict": "not run", "statement": f"{u.prediction} is not run in the "
                        "second setting, which judges P1, P2 and P6 only (docs/THEORY.md "
                        "sections 8.7 and 8.9); its verdict is the primary setting's",
                        "why": "the second setting judges P1, P2 and P6 only", "pilot": None}
               for number, u in NOT_TESTABLE_ON_CPU.items()}
    elif not setting.startswith("gpu"):
        out = {number: u.to_json() for number, u in NOT_TESTABLE_ON_CPU.items()}
    else:
        out = {number: {"verdict": "not run", "statement": f"{u.prediction} is not run by this "
                        "programme: its pilot at this scale has not fixed its numbers",
                        "why": "no pilot at this scale", "pilot": None}
               for number, u in NOT_TESTABLE_ON_CPU.items()}
    elsewhere = v2_arms.not_run_verdicts(prog["arms"])
    own = SETTING_RULES[setting].arms if setting in SETTING_RULES else ()
    # the setting's own arm left out of a smoke run (--seed-counts): d3's p6, the P9 setting's p9
    elsewhere = {number: {**v, "why": "its arm was left out of this (smoke) programme",
                          "statement": v["statement"].split(":")[0] + ": its arm was left "
                          "out of this (smoke) programme", "pilot": None}
                 if v2_arms.RUNS_ELSEWHERE[number]["arm"] in own else v
                 for number, v in elsewhere.items()}
    if setting in v2_p9.SETTINGS:  # P2: no lambda > 0 arm
        elsewhere.update(v2_p9.untested_verdicts(prog))
    return {**out, **elsewhere}


def untested_section(verdicts: dict) -> list[str]:
    lines = ["", "## Predictions not run", "",
             "| prediction | verdict | why | pilot |", "| --- | --- | --- | --- |"]
    for number, v in sorted(verdicts["verdicts"].items(), key=lambda item: int(item[0])):
        if v.get("verdict") in ("not testable", "not run"):
            lines.append(f"| P{number} | {v['verdict']} | {v['why']} | {v['pilot'] or ''} |")
    return lines


def design_section(prog: dict, verdicts: dict) -> list[str]:
    design = prog["design"]
    lines = ["", "## The confirmatory programme", "",
             f"Rules fixed at commit `{prog.get('rules_commit')}` "
             f"({prog.get('rules_commit_source', 'recorded when the programme started')}); "
             + ("a confirmatory run of the presets as committed." if prog["confirmatory"] else
                f"**not confirmatory**: run with overrides {prog['overrides']}."), "",
             *([] if verdicts["programme"]["finished"] else [
                 "**Interim report**: the programme has not finished; seeds through the last "
                 "generation so far: " + ", ".join(
                     f"{arm} {len(a['seeds_finished'])}" + (f" of {a['count']}" if a["count"] else "")
                     for arm, a in verdicts["programme"]["arms"].items())
                 + ". Its verdicts are not the confirmatory ones.", ""]),
             "Each rule's minimum detectable effect at its seed count, planned before any "
             f"data from the pilot's noise ({design['how']}):", "",
             "| rule | verdict | seeds read | margin | minimum detectable effect | meaning |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for number, rule in DESIGN.items():
        if rule not in design:
            continue
        d = design[rule]
        v = verdicts["verdicts"].get(number, {})
        if "not_planned" in d:  # P9's before its pilot's sizing.json exists
            lines.append(f"| {rule} | {v.get('verdict', 'n/a')} | {d['seeds']} | | not planned "
                         f"| {d['not_planned']} |")
            continue
        lines.append(f"| {rule} | {v.get('verdict', 'n/a')} | {d['seeds']} | {d['margin']:g} | "
                     f"{d['min_detectable_effect']:.3g} | {d['meaning']} |")
    for rule in ("P2", "P9"):
        below = design.get(rule, {}).get("below_delta_1")
        if below is not None:
            lines.append(f"| {rule} (its own P1 statistic below delta_1) | | "
                         f"{design[rule]['seeds']} | {below['margin']:g} | "
                         f"{below['min_detectable_effect']:.3g} | distance below delta_1 that "
                         "the joint test's second part resolves |")
    if "P9" in design:
        p9 = design["P9"]
        lines += ["", f"P9's at {p9['seeds']} seeds: " + (
            f"not planned: {p9['not_planned']}." if "not_planned" in p9 else
            f"from its own pilot's noise of log(E_acc / E_oracle-replace) "
            f"({p9['noise_source']}: sigma = {p9['noise']['sigma']:.4g}, tau = "
            f"{p9['noise']['tau']:.4g}) over its window, generations {p9['window'][0]}-"
            f"{p9['window'][-1]}.") + " Its control's loops are the p1 arm's oracle twins, "
            "which run every seed P9 reads; P1's verdict here is " + v2_p9.BY_PRODUCT + "."]
    if "P6" in design:
        noise = design["P6"]["noise"]
        lines += ["", f"P6's from its own pilot's noise of the filter x labeller interaction "
                  f"({design['P6']['noise_source']}: sigma = {noise['sigma']:.4g}, tau = "
                  f"{noise['tau']:.4g}); its seeds' unfiltered loops are P1's arm, which runs "
                  "every seed P6 reads (P1's rule still reads only its own count)."]
    return lines


def write(runs: Path, out: Path, results: Path | None, figures: bool = True) -> None:
    from icl_stl.persistence import atomic_write_json
    from icl_stl.report.evidence import collect
    from icl_stl.report.report import write_report
    from icl_stl.report.rules import ReportConfig

    prog = json.loads((runs / PROGRAMME).read_text())
    finished = sorted(p.parent for p in runs.rglob("summary.json"))
    if not finished:
        print("[reproduce_v2] no finished run to report on yet")
        if results is not None:  # the programme's record still travels (scripts/v2_carry.py)
            copy_record(runs, out, results)
        return
    cfg = ReportConfig.from_settings(prog["report_settings"])
    gate = None
    if prog.get("gate_first"):  # the gate runs' records of the seeds that missed, as loops
        import v2_gate_report

        evidence, records, gate = v2_gate_report.collect(finished, runs, prog, cfg)
        report = write_report(finished, out, cfg, figures=figures, evidence=evidence)
    else:
        report = write_report(finished, out, cfg, figures=figures)
        records = collect(finished).records
    verdicts = json.loads((out / "verdicts.json").read_text())
    for number, rule in DESIGN.items():
        if number in verdicts["verdicts"] and rule in prog["design"]:
            verdicts["verdicts"][number]["design"] = prog["design"][rule]
    if prog["setting"] in v2_p9.SETTINGS and "1" in verdicts["verdicts"]:
        verdicts["verdicts"]["1"]["by_product"] = v2_p9.BY_PRODUCT
    for number, untested in untested_verdicts(prog).items():
        rule = verdicts["verdicts"].get(number, {}).get("rule")
        verdicts["verdicts"][number] = {**untested, "rule": rule}
    for number, commit in RULES_COMMITS.items():
        if number in verdicts["verdicts"]:
            verdicts["verdicts"][number]["rules_commit"] = commit
    verdicts = {"rules_commit": prog.get("rules_commit"), **verdicts,
                "programme": {**programme_summary(prog, records),
                              **({"gate_stage": gate} if gate is not None else {})}}
    atomic_write_json(out / "verdicts.json", verdicts)
    with open(report.path, "a") as fh:
        fh.write("\n".join(design_section(prog, verdicts) + untested_section(verdicts)
                           + (v2_gate_report.section(gate) if gate is not None else [])) + "\n")
    print(f"[reproduce_v2] report: {report.path}")
    print("[reproduce_v2] verdicts: " + json.dumps(
        {f"P{k}": v["verdict"] for k, v in verdicts["verdicts"].items()
         if DESIGN.get(k) in prog["design"]}))
    if results is None:
        return
    results.mkdir(parents=True, exist_ok=True)
    for name in ("REPORT.md", "verdicts.json", "runs.csv"):
        if (out / name).resolve() != (results / name).resolve():
            shutil.copy2(out / name, results / name)
    copy_record(runs, out, results)
    print(f"[reproduce_v2] copied to {results}")


def copy_record(runs: Path, out: Path, results: Path) -> None:
    """The programme's record into `results`: parts.json (a copy of state.json, with the
    README tables it feeds), figures, and runs/ with every file the report reads."""
    from icl_stl.report.collect import RUN_FILES

    results.mkdir(parents=True, exist_ok=True)
    # the programme's state: beside the report, or beside runs/ (`--report-only --runs`)
    state = next((p for p in (out / "state.json", runs.parent / "state.json") if p.exists()),
                 None)
    if state is not None:
        shutil.copy2(state, results / STATE_COPY)
        if (results / "README.md").exists():
            refresh_readme(results / "README.md", json.loads(state.read_text()))
    for readme in results_table_v2.refresh_readmes(results):
        print(f"[reproduce_v2] results table rewritten in {readme}")
    if (out / "figures").exists() and (out / "figures").resolve() != (
            results / "figures").resolve():
        shutil.copytree(out / "figures", results / "figures", dirs_exist_ok=True)
    copy_tree_files(runs, results / "runs", (*RUN_FILES, PROGRAMME))


def copy_tree_files(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    for path in sorted(src.rglob("*")):
        if path.name in names and path.is_file():
            target = dest / path.relative_to(src)
            if target.resolve() == path.resolve():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
