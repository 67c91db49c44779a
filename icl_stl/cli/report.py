"""icl-stl-report: REPORT.md with figures and verdicts from run and sweep directories.

    icl-stl-report outputs/demo                        # writes outputs/demo/REPORT.md
    icl-stl-report multirun/loop/2025-01-01 multirun/probe/2025-01-01 --out report/

A plain argparse CLI (not Hydra): it reads results, it trains nothing. Every directory under
the given paths holding summary.json, stability.json, decay.json, in_context.json or a failed
job's error.json is read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from icl_stl.report.report import write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="icl-stl-report",
        description="Write REPORT.md (figures and a verdict on each prediction of THEORY.md) "
                    "from run and sweep directories.")
    parser.add_argument("paths", nargs="+", type=Path,
                        help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where REPORT.md, verdicts.json and figures/ go (default: the "
                             "first PATH)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent)
    try:
        result = write_report(args.paths, out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result.path} ({len(result.figures)} figures)")
    for prediction, verdict in sorted(result.verdicts.items()):
        print(f"  prediction {prediction}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
