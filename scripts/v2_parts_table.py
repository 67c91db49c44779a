"""The parts' wall times in a results folder's README (issue 29: "the parts' wall times in
docs/results/cpu-v2/README.md"), written from the programme's state (parts.json, a copy of
<out>/state.json) between two markers, so that the table is the record's and a test ties them.

Each row: the part, what it trains (block and generations), its planned minutes, its measured
wall time summed over every recorded invocation, the invocations (an interrupted one included),
the commits the invocations ran at, and when the last one ended; "(open)" marks a part the
programme has opened and not finished (its invocations are recorded when they end). An invocation that a session's
end killed before it could record itself is not in the state: the README says so in prose.
"""

from __future__ import annotations

from pathlib import Path

from readme_markers import replace_between

BEGIN = "<!-- parts table: begin (scripts/v2_parts_table.py) -->"
END = "<!-- parts table: end -->"


def _blocks(part: dict) -> str:
    return "; ".join(f"{s['block']} gen {s['first']}-{s['last']}" for s in part["segments"])


def parts_table(state: dict) -> list[str]:
    lines = ["| part | trains | planned (min) | wall (min) | invocations | commits | ended |",
             "| ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for part in state["parts"]:
        runs = part.get("invocations", [])
        wall = sum(float(r["seconds"]) for r in runs)
        commits = sorted({r["machine"]["commit"][:7] for r in runs if r.get("machine")})
        ended = runs[-1]["finished"] if runs else ""
        status = "" if part.get("finished") else " (open)"
        lines.append(f"| {part['index']}{status} | {_blocks(part)} | "
                     f"{part['estimate_s'] / 60:.0f} | {wall / 60:.1f} | {len(runs)} | "
                     f"{', '.join(commits)} | {ended} |")
    done = [p for p in state["parts"] if p.get("finished")]
    total = sum(float(r["seconds"]) for p in done for r in p.get("invocations", []))
    lines.append(f"| **{len(done)} finished** | | | **{total / 60:.1f}** | | | |")
    return lines


def refresh_readme(readme: Path, state: dict) -> bool:
    """Replace the table between the markers; False (nothing written) when they are absent."""
    return replace_between(readme, BEGIN, END, parts_table(state))
