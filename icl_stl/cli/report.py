"""icl-stl-report: REPORT.md with figures and verdicts from run and sweep directories.

    icl-stl-report outputs/demo                        # writes outputs/demo/REPORT.md
    icl-stl-report multirun/loop/2025-01-01 multirun/probe/2025-01-01 --out report/
    icl-stl-report outputs/demo min_seeds=3 p2_margin=0.05 primary.1="n=2000"

A plain argparse CLI (not Hydra): it reads results, it trains nothing. Every directory under
the given paths holding summary.json, stability.json, decay.json, in_context.json or a failed
job's error.json is read. Arguments of the form KEY=VALUE (that are not existing paths) set the
verdicts' settings (`icl_stl.report.rules.ReportConfig`: margins, min_seeds, alpha, ...);
`--settings` lists them with their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from icl_stl.cli.help import DescribedParser
from icl_stl.persistence import read_json
from icl_stl.report.report import ReportResult, write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.runs.logger import RunLogger
from icl_stl.runs.wandb_files import find_runs

VERDICT_COLUMNS = ("verdict", "statement", "estimate", "interval", "margin", "n_seeds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = DescribedParser(
        prog="icl-stl-report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="icl-stl-report reads run and sweep directories and writes REPORT.md: "
                    "figures and a verdict\non each prediction of docs/THEORY.md, with "
                    "verdicts.json and runs.csv. It trains nothing.\nStart here, after "
                    "`make demo`: icl-stl-report outputs/demo")
    parser.add_argument("paths", nargs="*", type=str,
                        help="run or sweep directories (searched recursively), and KEY=VALUE "
                             "settings of the verdicts")
    parser.add_argument("--out", type=Path, default=None,
                        help="where REPORT.md, verdicts.json and figures/ go (default: the "
                             "first PATH)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the verdicts (repeatable; same as a bare KEY=VALUE)")
    parser.add_argument("--no-figures", action="store_true",
                        help="write REPORT.md, verdicts.json and runs.csv without drawing the "
                             "figures (the verdicts are the same)")
    parser.add_argument("--settings", action="store_true",
                        help="print the verdicts' settings with their defaults and exit")
    return parser.parse_args(argv)


def log_report(paths: list[Path], out: Path, cfg: ReportConfig, result: ReportResult) -> None:
    """The report's figures (images) and verdicts (a table) in a W&B run of job type report, in
    the project, group and mode of the first run read that logged to W&B; nothing when none
    did (they ran with logger.mode=disabled)."""
    runs = find_runs(paths)
    if not runs:
        return
    first = runs[0]
    verdicts = read_json(out / "verdicts.json").get("verdicts", {})
    config = {"report": dataclasses.asdict(cfg), "paths": [str(p) for p in paths],
              "groups": sorted({r.group for r in runs})}
    with RunLogger(out, mode=first.mode, project=first.project, config=config,
                   name=f"report-{first.group}", group=first.group, job_type="report",
                   tags=["report"]) as logger:
        for figure in result.figures:
            logger.log_image(f"figures/{Path(figure).stem}", figure)
        rows = [[str(number), *(v.get(c) if c != "interval" or v.get(c) is None
                                else str(v.get(c)) for c in VERDICT_COLUMNS)]
                for number, v in verdicts.items()]
        logger.log_table("verdicts", ["prediction", *VERDICT_COLUMNS], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = [Path(p) for p in args.paths if "=" not in p or Path(p).exists()]
    overrides = list(args.set) + [p for p in args.paths if "=" in p and not Path(p).exists()]
    try:
        cfg = ReportConfig.from_overrides(overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.settings:
        for f in dataclasses.fields(cfg):
            print(f"{f.name} = {json.dumps(getattr(cfg, f.name))}")
        return 0
    if not paths:
        print("error: give at least one run or sweep directory", file=sys.stderr)
        return 2
    out = args.out or (paths[0] if paths[0].is_dir() else paths[0].parent)
    try:
        result = write_report(paths, out, cfg, figures=not args.no_figures)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log_report(paths, out, cfg, result)
    print(f"wrote {result.path} ({len(result.figures)} figures)")
    for prediction, verdict in sorted(result.verdicts.items()):
        print(f"  prediction {prediction}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
