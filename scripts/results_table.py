"""The exploratory reproduction's Results table, printed from docs/results/cpu/verdicts.json.

    .venv/bin/python scripts/results_table.py docs/results/cpu

One row per prediction: its verdict, a short name for the primary group it was read in, and a
one-line reading whose every number is formatted from verdicts.json; then the legend that maps
each short name to the report's full group label, and the training gate's line. `readme_block`
is all of it; `scripts/reproduce.py --report-only --results FOLDER` writes it into
FOLDER/README.md between two markers (`refresh_readme`), and
tests/system/test_documented_results.py checks that docs/results/cpu/README.md holds exactly
these lines, so it cannot quote a verdict or a number the committed result does not hold.
The short names and the readings are written for docs/results/cpu: another folder whose primary
groups differ stops with an error naming the group.

    .venv/bin/python scripts/results_table.py docs/results/cpu docs/results/generator-cpu

With a second folder it also prints the two training regimes side by side (docs/reproduce.md):
the reproduction's warm-started generations against the generator run's generations trained
from scratch, on the seeds and lambdas both hold.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # imported by path, as by the tests

from readme_markers import replace_between  # noqa: E402

BEGIN = "<!-- results table: begin (scripts/results_table.py) -->"
END = "<!-- results table: end -->"

# Every primary group of the reproduction starts with these settings: generation 0 trained from
# scratch, every later generation warm-started for 200 steps.
COMMON = "loop.init=warm_start, loop.learner=transformer, loop.steps=200, loop.warmup_steps=20"

# prediction -> (what it claims, in a few words; the short group name; the rest of the report's
# label of its primary group, after COMMON)
PREDICTIONS = {
    "1": ("λ = 0: risk grows (collapse)", "collapse, λ = 0",
          "train.batch_size=128, n=10000"),
    "2": ("λ > 0: risk stays bounded", "collapse, λ = 0.1",
          "train.batch_size=128, n=10000, λ=0.1"),
    "3": ("γ shrinks with n, bounded in i", "stability, λ = 0.5",
          "train.batch_size=64, λ=0.5, replacement=fresh"),
    "4": ("error decays at least as n^-1/4", "decay, λ = 0.5", "train.batch_size=64, λ=0.5"),
    "5": ("an interior optimum m*", "augmentation, λ = 0.5", "train.batch_size=64, λ=0.5"),
    "6": ("a filter keeps λ = 0 bounded", "filters, verifier on S_0",
          "train.batch_size=128, n=10000, filter=verifier, keep=0.5, n_real=all"),
    "7": ("decaying λ acts like its floor", "schedules, 0.75 → 0.25",
          "train.batch_size=128, n=10000, schedule=linear, λ1=0.75, rate=0.25, floor=0.25"),
    "8": ("M ≤ d tracks dMMSE, drifts apart", "pools, M = 2",
          "train.batch_size=128, n=10000"),
}
SHORT_NAME_LIMIT = 40


def _find(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"the report's numbers no longer say {pattern!r}: {text}")
    return match.groups()


def _percent(log_ratio: float) -> str:
    return f"{math.expm1(log_ratio):+.1%}"


def _reading(key: str, v: dict, settings: dict) -> str:
    """One line on what the data show, every number formatted from the verdict `v` and the
    report's settings."""
    numbers, est, (low, high), margin = v["numbers"], v["estimate"], v["interval"], v["margin"]
    if key == "1":
        first, last, gens = _find(r"risk ([\d.]+) -> ([\d.]+) over (\d+) generations", numbers)
        return (f"risk {first} → {last} over {gens} generations, {_percent(est)} "
                f"[{_percent(low)}, {_percent(high)}]: the interval straddles the "
                f"{math.expm1(margin):.0%} margin")
    if key == "2":
        (plateau,) = _find(r"plateau ([\d.]+)", numbers)
        return (f"plateau {plateau}, slope {est:+.2%} of it per generation "
                f"[{low:+.2%}, {high:+.2%}], inside ±{margin:.0%}")
    if key == "3":
        gen, small, large = _find(r"gamma at generation (\d+): n=1000: ([\d.]+), n=10000: "
                                  r"([\d.]+)", numbers)
        (ceiling,) = _find(r"chaos ceiling n=1000: ([\d.]+)", numbers)
        return (f"γ falls {float(small):.3f} → {float(large):.3f} from n = 1,000 to 10,000, but "
                f"at 1,000 it is {float(ceiling):.2f} of the chaos ceiling: chaos, not the prompt")
    if key == "4":
        first, last = _find(r"over 2 decades \[(\d+), (\d+)\]", numbers)
        return (f"generalization gap ∝ n^{est:.2f} [{low:.2f}, {high:.2f}] on n = "
                f"{int(first):,}-{int(last):,}: faster than n^-1/4")
    if key == "5":
        small_m, left, right = _find(r"n=2500: m\*=(\d+) \(ends ([\d.]+)/([\d.]+)", numbers)
        (zero_share,) = _find(r"n=10000: m\*=0 \(ends ([\d.]+)/", numbers)
        return (f"m* = 0 at n = 10,000 in {float(zero_share):.0%} of replicates (refuting needs "
                f"95%); at 2,500, m* = {int(small_m):,}, at an end of the grid in "
                f"{float(left) + float(right):.0%}")
    if key == "6":
        return (f"the verifier speeds the drift: {est:+.1%} of the plateau per generation "
                f"[{low:+.1%}, {high:+.1%}], margin ±{margin:.0%}; (b) a better verifier, a "
                f"lower plateau: {v['quality']['verdict']}")
    if key == "7":
        decaying, constant = _find(r"decaying ([\d.]+), constant ([\d.]+)", numbers)
        return (f"window risk {decaying} against {constant} at the constant floor: log ratio "
                f"{est:.3f} [{low:.3f}, {high:.3f}], inside ±{margin:.3f}")
    if key == "8":
        diff, diff_low, diff_high = _find(r"difference ([-\d.]+) \[([-\d.]+), ([-\d.]+)\]",
                                          numbers)
        (tracking,) = _find(r"\(a\) at M=2: [-\d.]+ \[[-\d., ]+\] \(([a-z ]+)", numbers)
        return (f"M = 2 sits near dMMSE (log ratio {est:.2f}, {tracking}), but drifts like "
                f"M = null: {float(diff):.3f} [{float(diff_low):.3f}, "
                f"{float(diff_high):.3f}], inside ±{math.log1p(settings['p8_drift_margin']):.3f}")
    raise KeyError(f"no reading written for prediction {key}")


def _checked(key: str, v: dict) -> tuple[str, str]:
    statement, short, rest = PREDICTIONS[key]
    if v.get("primary_group") != f"{COMMON}, {rest}":
        raise ValueError(f"P{key}'s primary group is {v.get('primary_group')!r}, not the one "
                         f"{short!r} names")
    return statement, short


def results_table(results: Path) -> list[str]:
    report = json.loads((Path(results) / "verdicts.json").read_text())
    verdicts = report["verdicts"]
    lines = ["| | prediction | verdict | group | what the data show |",
             "| --- | --- | --- | --- | --- |"]
    for key in sorted(verdicts, key=int):
        v = verdicts[key]
        statement, short = _checked(key, v)
        lines.append(f"| P{key} | {statement} | **{v['verdict']}** | {short} | "
                     f"{_reading(key, v, report['settings'])} |")
    return lines


def legend(results: Path) -> list[str]:
    """Each short group name beside the report's label of the group, after COMMON."""
    verdicts = json.loads((Path(results) / "verdicts.json").read_text())["verdicts"]
    lines = ["| group | the report's label, after the common settings |", "| --- | --- |"]
    for key in sorted(verdicts, key=int):
        _checked(key, verdicts[key])
        _, short, rest = PREDICTIONS[key]
        lines.append(f"| {short} | `{rest}` |")
    return lines


def gate_line(results: Path) -> str:
    """The gate's count, and the n of every group that missed it (such a group is "not
    applicable" for the predictions judged per group)."""
    gate = json.loads((Path(results) / "verdicts.json").read_text())["ridge_gate"]
    line = (f"Training gate: generation 0 reached ridge in {gate['reached']} of "
            f"{gate['groups']} groups.")
    missed = sorted({row["n"] for row in gate["rows"] if not row["reached"]})
    if missed:
        line += (f" The groups that missed it are at n = {', '.join(f'{n:,}' for n in missed)}"
                 ".")
    return line


def readme_block(results: Path) -> list[str]:
    """The table, the common settings and the legend, and the gate's line: what the results
    folder's README holds between the markers."""
    return [*results_table(results), "", f"Every group also has `{COMMON}`:", "",
            *legend(results), "", gate_line(results)]


def refresh_readme(readme: Path, results: Path) -> bool:
    """Replace the block between the markers; False (nothing written) when they are absent."""
    return replace_between(readme, BEGIN, END, readme_block(results))


def _risk_by(summary: Path) -> tuple[dict, dict]:
    """({(seed, lambda, generation): test risk} at the largest n, the training settings)."""
    data = json.loads(Path(summary).read_text())
    records = data["generations"]
    n = max(r["n"] for r in records)
    risk = {(r["seed"], r["real_fraction"], r["generation"]): r["test_risk"]
            for r in records if r["n"] == n and r.get("augment", 0) == 0}
    return risk, data["settings"]


def _regime(settings: dict) -> str:
    train, loop = settings["train"], settings["loop"]
    if loop["init"] == "warm_start":
        return (f"warm start: generation 0 {train['steps']:,} steps, then {loop['steps']} "
                f"per generation (batch {train['batch_size']})")
    return f"from scratch: {train['steps']:,} steps per generation (batch {train['batch_size']})"


def regimes_table(warm: Path, scratch: Path) -> list[str]:
    """Mean test risk over the shared seeds at generation 0 and at the last generation both
    runs reached, per lambda both hold: one row per (regime, lambda)."""
    (w, w_set), (s, s_set) = (_risk_by(Path(f) / "runs" / sub / "summary.json")
                              for f, sub in ((warm, "collapse"), (scratch, "model")))
    keys = {(seed, lam) for seed, lam, _ in w} & {(seed, lam) for seed, lam, _ in s}
    seeds = sorted({seed for seed, _ in keys})
    last = min(max(g for *_, g in w), max(g for *_, g in s))
    lines = [f"| regime | λ | risk, generation 0 | risk, generation {last} | change |",
             "| --- | --- | --- | --- | --- |"]
    for risk, settings in ((w, w_set), (s, s_set)):
        for lam in sorted({lam for _, lam in keys}):
            first = sum(risk[(seed, lam, 0)] for seed in seeds) / len(seeds)
            end = sum(risk[(seed, lam, last)] for seed in seeds) / len(seeds)
            lines.append(f"| {_regime(settings)} | {lam:g} | {first:.3f} | {end:.3f} | "
                         f"{100 * (end / first - 1):+.0f}% |")
    lines.append(f"\nMeans over seeds {', '.join(map(str, seeds))} (the seeds both runs hold).")
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/cpu")
    print("\n".join(readme_block(folder)))
    if len(sys.argv) > 2:
        print()
        print("\n".join(regimes_table(folder, Path(sys.argv[2]))))
