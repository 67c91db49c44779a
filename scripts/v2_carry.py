"""A programme's *carry*: what a new machine needs to go on with it, small enough to commit.

A machine's outputs/ need not outlive a session, and a block of ten members takes longer to
train through its horizon than a session lasts. `scripts/reproduce_v2.py --save-carry --results
DIR` writes the report into DIR as at the end of a part (runs/ with programme.json and each
run's summary.json, timing.json and config; parts.json, a copy of state.json), and beside it
carry/: for each block that runs/ does not record through its horizon, its checkpoint pruned
to the resume point (`icl_stl.loop.checkpoints.prune_to_resume_point`): loop.json, every
finished generation's metrics.json and the last one's model.pt, about 6 MB for a block of the
d2 setting. A block recorded through its horizon is finished by runs/ alone
(`v2_programme.finished_generations`).

`--restore-carry DIR` copies runs/, parts.json and carry/ back into an --out that holds no
programme; the same command as before then goes on from the resume points with the numbers the
whole checkpoints would give (tests/loop/test_loop_resume.py,
tests/system/test_programme_carry.py). A generation killed halfway is not carried: it is
trained again. carry/ is replaced whole (a new folder, then a rename).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import v2_programme as programme_mod
import v2_schedule as schedule
from v2_report import STATE_COPY

from icl_stl.loop.checkpoints import prune_to_resume_point

STATE, CARRY = "state.json", "carry"


class CarryError(Exception):
    """A carry that cannot be restored (the message names the folder)."""


def unfinished_in_runs(prog: dict, out: Path) -> list[schedule.Block]:
    """Blocks whose run's summary.json does not record every generation through their last."""
    return [b for b in programme_mod.blocks(prog, out)
            if not set(range(b.last_generation(prog["horizon"]) + 1))
            <= programme_mod.recorded_generations(programme_mod.run_dir(out, b) / "summary.json")]


def resume_points(prog: dict, out: Path) -> list[Path]:
    """The checkpoint files carry/ holds, relative to out/checkpoints."""
    files = []
    for block in unfinished_in_runs(prog, out):
        ckpt = out / "checkpoints" / programme_mod.run_name(prog, block)
        if (ckpt / "loop.json").exists():
            files += [Path(ckpt.name) / rel for rel in prune_to_resume_point(ckpt)]
    return files


def save(prog: dict, out: Path, results: Path) -> tuple[int, int]:
    """Write results/carry/ from out's checkpoints, replacing the previous one; (files, bytes).
    The caller has written the report and runs/ into `results` (`write_results`)."""
    files = resume_points(prog, out)
    carry = results / CARRY
    fresh, old = results / (CARRY + ".new"), results / (CARRY + ".old")
    for stale in (fresh, old):
        shutil.rmtree(stale, ignore_errors=True)
    fresh.mkdir(parents=True)
    for rel in files:
        (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / "checkpoints" / rel, fresh / rel)
    if carry.exists():
        carry.rename(old)
    fresh.rename(carry)
    shutil.rmtree(old, ignore_errors=True)
    return len(files), sum((carry / rel).stat().st_size for rel in files)


def restore(results: Path, out: Path) -> int:
    """Copy a results folder's runs/, parts.json and carry/ into `out`, which must hold no
    programme; the files copied."""
    if not (results / "runs" / programme_mod.PROGRAMME).exists() or not (
            results / STATE_COPY).exists():
        raise CarryError(f"--restore-carry {results} holds no runs/{programme_mod.PROGRAMME} "
                         f"and {STATE_COPY} (a results folder written with --save-carry)")
    if (out / "runs" / programme_mod.PROGRAMME).exists() or (out / STATE).exists():
        raise CarryError(f"--out {out} already holds a programme; restore into an empty --out "
                         "(or go on with it as it is)")
    pairs = [(p, out / "runs" / p.relative_to(results / "runs"))
             for p in (results / "runs").rglob("*") if p.is_file()]
    pairs.append((results / STATE_COPY, out / STATE))
    if (results / CARRY).exists():
        pairs += [(p, out / "checkpoints" / p.relative_to(results / CARRY))
                  for p in (results / CARRY).rglob("*") if p.is_file()]
    for src, dest in pairs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    return len(pairs)
