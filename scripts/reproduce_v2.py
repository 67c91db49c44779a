"""The confirmatory reproduction: the version-2 rules (docs/THEORY.md section 8.1) on fresh seeds.

    .venv/bin/python scripts/reproduce_v2.py --plan        # the parts left, minutes each
    .venv/bin/python scripts/reproduce_v2.py               # the next part (or the killed one)
    .venv/bin/python scripts/reproduce_v2.py --parts 99    # parts until the programme is done
    .venv/bin/python scripts/reproduce_v2.py --report-only --results docs/results/cpu-v2
    .venv/bin/python scripts/reproduce_v2.py --report-only --runs COPY/runs --out DIR
    .venv/bin/python scripts/reproduce_v2.py --save-carry --results docs/results/cpu-v2
    .venv/bin/python scripts/reproduce_v2.py --restore-carry docs/results/cpu-v2  # new machine

The programme (presets conf/experiment/reproduce_v2/, setting `--setting`, default d2): P1's
loops (lambda = 0) and P2's (lambda = 0.5), each beside its oracle-labelled twin, and as
secondary control the same seed's lambda = 1 loop; in the second setting (d3) also P6's loops,
P1's under the residual filter, each beside its twin (scripts/v2_arms.py); the P9 setting
(`--setting p9`, scripts/v2_p9.py) runs P1's loops and P9's (accumulation with S_0 kept) only. Seeds in a fixed ascending order: the count
the rules read, then spares, run only when a seed already run missed the gate or failed to
train. The work is cut into *parts* (scripts/v2_schedule.py): each invocation runs one part of
at most --part-minutes on --workers processes of one thread each, prints its progress and the
expected time left, and writes the report over everything finished. Killed, the same command
resumes the same part from its checkpoints. A setting with the gate-first stage (d3;
scripts/v2_gate.py) first trains only generation 0 of candidate seeds, then runs the loops of
the first seeds that passed. The first invocation records the plan in
<out>/runs/programme.json: the rules' commit (`rules_commit`, which verdicts.json copies), the
seeds, and each rule's minimum detectable effect at its seed count. `--report-only` rewrites
the report from runs/ alone (`--runs` a copy of it), so a results folder regenerates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import v2_carry  # noqa: E402
import v2_gate  # noqa: E402
import v2_parts as parts  # noqa: E402
import v2_programme as programme_mod  # noqa: E402
import v2_schedule as schedule  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", default="d2", choices=programme_mod.settings_available(),
                   help="the programme's setting (conf/experiment/reproduce_v2/setting/)")
    p.add_argument("--out", type=Path, default=None,
                   help="runs, checkpoints, logs and the report (default "
                        "outputs/reproduce_v2/SETTING)")
    p.add_argument("--results", type=Path, default=None,
                   help="also copy the report and every file it reads here "
                        "(e.g. docs/results/cpu-v2)")
    p.add_argument("--plan", action="store_true", help="print the parts left; run nothing")
    p.add_argument("--parts", type=int, default=1, help="parts to run now (default 1)")
    p.add_argument("--part-minutes", type=float, default=60.0,
                   help="a part's planned wall time (default %(default)s)")
    p.add_argument("--workers", type=int, default=2,
                   help="processes at once, one thread each (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--speedup", type=float, default=1.0,
                   help="the engine's speed against the pilot's, for the estimates until a "
                        "generation of this programme has been timed (default %(default)s)")
    p.add_argument("--member-steps-per-s", type=float, default=None,
                   help="assumed member steps/s of one worker, for the estimates until a "
                        "generation has been timed, instead of the CPU pilot's (e.g. a GPU's)")
    p.add_argument("--block-seeds", type=int, default=5,
                   help="seeds per ensemble of P1 or P2 (twice as many at lambda = 1); fixed "
                        "when the programme starts (default %(default)s)")
    p.add_argument("--progress-every", type=float, default=60.0, help="seconds between lines")
    p.add_argument("--report-only", action="store_true",
                   help="write the report over the finished runs; train nothing")
    p.add_argument("--save-carry", action="store_true",
                   help="with --results: write the report there as at the end of a part, and "
                        "beside it carry/, each unfinished block's resume point, so that a new "
                        "machine can go on (scripts/v2_carry.py); train nothing")
    p.add_argument("--restore-carry", type=Path, default=None, metavar="RESULTS",
                   help="copy a results folder written with --save-carry (runs/, parts.json, "
                        "carry/) into an --out that holds no programme; train nothing")
    p.add_argument("--runs", type=Path, default=None,
                   help="with --report-only: the runs/ to read (default OUT/runs)")
    p.add_argument("--no-figures", action="store_true", help="the report without figures")
    p.add_argument("--seed-counts", nargs="+", type=int, default=None, metavar="N",
                   help="P1 P2 [P6] (the P9 setting: P1 P9): seeds the rules read, instead of "
                        "the rules' own (a smoke run; recorded as not confirmatory); a P6 count of 0 leaves its "
                        "arm out")
    p.add_argument("--report-set", dest="report_overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="a report setting other than the rules' own (a "
                   "smoke run; recorded as not confirmatory)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hydra override for every run (repeatable); a programme with "
                        "overrides is recorded as not confirmatory")
    args = p.parse_args(argv)
    if args.seed_counts is not None and not (
            len(args.seed_counts) in (2, 3) and min(args.seed_counts[:2]) >= 2
            and all(c == 0 or c >= 2 for c in args.seed_counts[2:])):
        # the rules' tests need two seeds (report settings v2_*_seeds: null or >= 2)
        p.error(f"--seed-counts takes P1 P2 [P6] (P1, P2 >= 2, P6 0 or >= 2; the P9 setting: "
                f"P1 P9), got {args.seed_counts}")
    args.out = args.out or Path("outputs/reproduce_v2") / args.setting
    for name in ("parts", "workers", "threads", "block_seeds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got "
                    f"{getattr(args, name)}")
    for name in ("part_minutes", "speedup", "progress_every", "member_steps_per_s"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    return args


def seed_count_arms(setting: str) -> tuple[str, ...]:
    """The arms whose counts --seed-counts gives, in order: P1 P2 [P6], or the P9 setting's
    P1 P9 (its matched arms)."""
    rules = programme_mod.SETTING_RULES.get(setting)
    if rules is not None and "p2" not in rules.arms:
        return tuple(programme_mod.matched_arms(dict.fromkeys(rules.arms)))
    return ("p1", "p2", "p6")


def segment_command(prog: dict, block: schedule.Block, last: int, out: Path,
                    threads: int) -> list[str]:
    """One segment's `icl-stl-loop`. A gate block runs P1's preset (the arms differ only in
    their members) with every arm's lambda and both labellers (scripts/v2_gate.py)."""
    gate = block.arm == schedule.GATE
    preset = prog["presets"][schedule.MATCHED[0] if gate else block.arm]
    members = v2_gate.member_overrides(prog) if gate else []
    return [sys.executable, "-m", "icl_stl.cli.loop", f"experiment={preset}", *prog["overrides"],
            *members, f"members.seeds=[{','.join(map(str, block.seeds))}]",
            f"loop.generations={last}", f"runtime.threads={threads}",
            f"run.name={programme_mod.run_name(prog, block)}",
            f"run.checkpoint_root={out / 'checkpoints'}",
            f"hydra.run.dir={programme_mod.run_dir(out, block)}"]


class PartRunner:
    """One part's segments on its workers: each worker runs its segments in order, one
    `icl-stl-loop` process at a time; SIGINT or SIGTERM stops them (they keep their
    checkpoints) and the part is resumed by the same command."""

    def __init__(self, prog: dict, part: dict, out: Path, threads: int):
        self.prog, self.part, self.out, self.threads = prog, part, out, threads
        self.procs: dict[int, subprocess.Popen] = {}
        self.stopped = False
        self.failed: list[str] = []

    def _worker(self, worker: int, segments: list[dict]) -> None:
        blocks = {b.name: b for b in programme_mod.blocks(self.prog, self.out)}
        for seg in segments:
            if self.stopped:
                return
            block = blocks[seg["block"]]
            cmd = segment_command(self.prog, block, seg["last"], self.out, self.threads)
            log = self.out / "logs" / f"{block.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
            partial = parts.mid_generation(self.prog, self.out, block)
            with open(log, "a") as fh:
                fh.write(f"\n$ {' '.join(cmd)}\n")
                fh.flush()
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                                        env=env)
                self.procs[worker] = proc
                if self.stopped:  # stopped while this one started
                    proc.send_signal(signal.SIGINT)
                code = proc.wait()
            parts.merge_timing(self.out, block, partial)
            if code != 0:
                if not self.stopped:
                    self.failed.append(f"{block.name} (exit {code}; see {log})")
                return

    def stop(self, *_):
        self.stopped = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    def run(self, progress_every: float, estimate: schedule.Estimator) -> bool:
        by_worker: dict[int, list[dict]] = {}
        for seg in self.part["segments"]:
            by_worker.setdefault(seg["worker"], []).append(seg)
        threads = [threading.Thread(target=self._worker, args=(w, segs), daemon=True)
                   for w, segs in sorted(by_worker.items())]
        old = {s: signal.signal(s, self.stop) for s in (signal.SIGINT, signal.SIGTERM)}
        before, wall_start = parts.finished_now(self.prog, self.out), time.time()
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=progress_every / max(len(threads), 1))
                if any(t.is_alive() for t in threads):
                    print(parts.progress_line(self.prog, self.part, self.out, estimate,
                                              wall_start, before), flush=True)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return not self.stopped and not self.failed


def run_parts(args: argparse.Namespace, prog: dict) -> int:
    out = args.out
    for _ in range(args.parts):
        state = programme_mod.load_state(out)
        part = parts.open_part(prog, state, out, args)
        if part is None:
            print("[reproduce_v2] every loop of the programme has finished")
            break
        planned = part["estimate_s"] / 60
        print(f"[reproduce_v2] part {part['index']}: {len(part['segments'])} segments on "
              f"{part['workers']} workers, planned {planned:.0f} min"
              + (f", stage: {part['stage']}" if "stage" in part else "")
              + (" (resumed)" if part.get("invocations") else ""), flush=True)
        for seg in part["segments"]:
            print(f"    worker {seg['worker']}: {seg['block']} generations {seg['first']}-"
                  f"{seg['last']} (~{seg['estimate_s'] / 60:.0f} min)")
        runner = PartRunner(prog, part, out, args.threads)
        start = time.perf_counter()
        completed = runner.run(args.progress_every,
                               parts.estimator(prog, state, out, args))
        parts.close_part(out, part["index"], time.perf_counter() - start, completed,
                                 " ".join(sys.argv))
        if runner.failed:
            print("[reproduce_v2] failed: " + "; ".join(runner.failed), flush=True)
            return 1
        if not completed:
            print(f"[reproduce_v2] part {part['index']} interrupted; the same command resumes "
                  "it", flush=True)
            return 130
        print(f"[reproduce_v2] part {part['index']} done in "
              f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
        programme_mod.write_results(out / "runs", out, args.results, figures=not args.no_figures)
    print(parts.plan_text(prog, out, args), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        runs = args.runs or args.out / "runs"
        if not (runs / programme_mod.PROGRAMME).exists():
            print(f"scripts/reproduce_v2.py: --runs {runs} holds no {programme_mod.PROGRAMME} "
                  "(the programme's runs/ folder, or a copy of it)", file=sys.stderr)
            return 2
        programme_mod.write_results(runs, args.out, args.results, figures=not args.no_figures)
        return 0
    if args.restore_carry is not None:
        try:
            copied = v2_carry.restore(args.restore_carry, args.out)
        except v2_carry.CarryError as err:
            print(f"scripts/reproduce_v2.py: {err}", file=sys.stderr)
            return 2
        print(f"[reproduce_v2] restored {copied} files from {args.restore_carry} into {args.out}")
        return 0
    if args.save_carry:
        stored = args.out / "runs" / programme_mod.PROGRAMME
        if args.results is None or not stored.exists():
            print("scripts/reproduce_v2.py: --save-carry needs --results and an --out that "
                  f"holds a programme (--out {args.out}, --results {args.results})",
                  file=sys.stderr)
            return 2
        programme_mod.write_results(args.out / "runs", args.out, args.results,
                                    figures=not args.no_figures)
        files, size = v2_carry.save(json.loads(stored.read_text()), args.out, args.results)
        print(f"[reproduce_v2] carry: {files} files, {size / 1e6:.1f} MB in "
              f"{args.results / v2_carry.CARRY}")
        return 0
    try:
        counts = dict(zip(seed_count_arms(args.setting), args.seed_counts)) if (
            args.seed_counts) else None
        prog = programme_mod.start_or_resume(args, started=not args.plan, counts=counts)
    except programme_mod.ProgrammeError as err:
        print(f"scripts/reproduce_v2.py: {err}", file=sys.stderr)
        return 2
    if args.plan:
        print(parts.plan_text(prog, args.out, args))
        return 0
    print(f"[reproduce_v2] {args.setting}: rules_commit {prog['rules_commit']}, "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}", flush=True)
    return run_parts(args, prog)


if __name__ == "__main__":
    sys.exit(main())
