"""results/README.md of the P10 pilot (scripts/pilot_p10.py analyse): where and how the runs
trained (machine, commit, command, wall time per run, from each run's done.json, summary.json
and timing.json under results/runs/) and what pilot.json and sizing.json hold."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_rows(results: Path) -> list[dict]:
    """Per run directory: its wall time (done.json: the command's, start-up included; timing.json:
    the loop's own over every execution), the generations it trained, commit and machine."""
    from icl_stl.loop.timing import read_timing

    rows = []
    for run in sorted(p for p in (results / "runs").iterdir() if p.is_dir()):
        done, code = _json(run / "done.json"), _json(run / "summary.json").get("code", {})
        row = {"run": run.name, "wall_s": done.get("wall_s"), "loop_s": None, "trained": [],
               "commit": code.get("git_commit"), "dirty": code.get("git_dirty"),
               "machine": done.get("machine"), "command": done.get("command"),
               "finished": done.get("finished")}
        if (run / "timing.json").exists():
            timing = read_timing(run / "timing.json")
            executions = [*timing["earlier"], timing]
            row["loop_s"] = round(sum(e["entry"].get("seconds") or e["run"]["seconds"] or 0.0
                                      for e in executions), 1)
            row["trained"] = sorted(g["generation"] for e in executions
                                    for g in e["generations"])
        rows.append(row)
    return rows


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) \
        else str(value)


def _head() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write_readme(results: Path, pilot: dict, sizing: dict | None) -> None:
    rows = run_rows(results)
    machines = sorted({json.dumps(r["machine"], sort_keys=True) for r in rows if r["machine"]})
    commits = sorted({f"{r['commit']}{' (dirty)' if r['dirty'] else ''}" for r in rows
                      if r["commit"]})
    group = pilot["group"]
    lines = [
        "# The P10 pilot: the weight of real data (d = 2)", "",
        "Written by `scripts/pilot_p10.py analyse` from the runs' records in `runs/`; the rule "
        "and what the lead concludes are in docs/THEORY.md section 8.8.", "",
        "    .venv/bin/python scripts/pilot_p10.py run --work outputs/pilot_p10",
        "    .venv/bin/python scripts/pilot_p10.py analyse --work outputs/pilot_p10 "
        "--results docs/results/pilot-p10", "",
        f"Preset `conf/experiment/p10/pilot_d2.yaml`: {group['regime']}, "
        f"λ = {group['lambda']:g}, n = {group['n']}"
        + (f" ({group['config']})." if group["config"] else "."), "",
        "- Machine: " + ("; ".join(
            f"{m['cpu']} ({m['cores']} cores, host {m['host']})"
            for m in map(json.loads, machines)) or "not recorded (no done.json)"),
        "- Commit of the runs: " + (", ".join(commits) or "not recorded"),
        f"- Analysed at commit {_head()}", "",
        "| run | wall (s, command) | loop (s, all executions) | generations trained | finished |",
        "|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {_fmt(r['wall_s'], 0)} | {_fmt(r['loop_s'], 0)} | "
              f"{','.join(map(str, r['trained'])) or '-'} | {r['finished'] or '-'} |"
              for r in rows]
    one = next((r["command"] for r in rows if r["command"]), None)
    if one:
        lines += ["", "One run's command (the others differ in the weight and source):", "",
                  "    " + " ".join(one)]
    passed = pilot["gate_passed"]
    if (results / "figures" / "real_weight.png").exists():
        lines += ["", "![error against the real weight](figures/real_weight.png)", "",
                  "Log excess risk at the last generation against the real weight, per source: "
                  "solid the model-labelled loops, dashed their oracle twins (thin lines: the "
                  "seeds), dotted the reference learner's curve (shape only, drawn through the "
                  "model arm's mean at its minimum)."]
    lines += ["", "## pilot.json", "",
              f"- Gate: {passed['reached']} of {passed['loops']} loops reached it, "
              f"{passed['readable']} readable; seeds read {pilot['seeds_read']} at generation "
              f"{pilot['generation_read']}.",
              f"- Testable (the fresh loops' point estimates show a dip): {pilot['testable']}"
              + (f" ({pilot['not_read']})" if "not_read" in pilot else "")]
    for source, row in pilot["sources"].items():
        for arm in ("model", "oracle"):
            f = row[arm]
            lines.append(f"- {source}, {arm} arm: curvature {_fmt(f['curvature'])}, vertex "
                         f"{_fmt(f['vertex'])}, ends {_fmt(f['low_end'])} / "
                         f"{_fmt(f['high_end'])} above the interior's mean")
    if "direction" in pilot:
        lines.append(f"- Direction (w = 1 end, fresh minus reused): "
                     f"{_fmt(pilot['direction']['estimate'])}")
    if sizing is not None:
        need = sizing["seeds_for_power"]
        lines += [f"- Noise of one point: sigma {_fmt(sizing['sigma'])}, seed level tau "
                  f"{_fmt(sizing['tau'])} ({pilot['noise']['model']['dof']} dof; "
                  f"{pilot['noise']['how']}).", "",
                  "## sizing.json", "",
                  f"Power of the rule at (sigma, tau), {sizing['draws']} draws, seeds for "
                  f"{need['power']:.0%} power (none: beyond {sizing['seed_counts'][-1]}):", "",
                  "| truth | interior optimum | " + " | ".join(
                      str(s) for s in sizing["seed_counts"]) + " |",
                  "|---|---|" + "---|" * len(sizing["seed_counts"])]
        for name, rates in sizing["interior_optimum_confirmed"].items():
            lines.append(f"| {name} | {need['interior'][name]} | "
                         + " | ".join(f"{rates[str(s)]:.1%}" for s in sizing["seed_counts"])
                         + " |")
        for name, rates in sizing["direction_confirmed"].items():
            lines.append(f"| direction: {name} | {need['direction'][name]} | "
                         + " | ".join(f"{rates[str(s)]:.1%}" for s in sizing["seed_counts"])
                         + " |")
    (results / "README.md").write_text("\n".join(lines) + "\n")
