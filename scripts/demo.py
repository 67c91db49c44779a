"""The whole story on a laptop CPU in minutes: what `make demo` runs.

Three shrunk experiments (conf/experiment/demo_*.yaml), in-process through Hydra's compose API,
then the report:

1. collapse_vs_lambda: lambda = 0 against 0.5 (icl-stl-loop): collapse against a plateau;
2. stability_vs_n: gamma at two n (icl-stl-probe probe=stability);
3. decay_vs_n: final-generation excess risk at three n and its fitted slope (probe=decay);
4. icl-stl-report over all three: outputs/demo/REPORT.md and outputs/demo/figures/.

    .venv/bin/python scripts/demo.py                      # into outputs/demo (resumes)
    .venv/bin/python scripts/demo.py --fresh --figures docs/figures
    .venv/bin/python scripts/demo.py --set train.steps=5  # any override, applied to every part

Checkpoints live under the output directory, so a second run only rewrites the outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR
from icl_stl.cli.loop import loop_from_config
from icl_stl.cli.probe import probe_from_config
from icl_stl.io import atomic_write_json
from icl_stl.report.report import write_report

# (part, primary config, preset, runner): the runner writes the part's outputs into its dir.
PARTS = (("collapse", "loop", "demo_collapse", loop_from_config),
         ("stability", "probe", "demo_stability", probe_from_config),
         ("decay", "probe", "demo_decay", probe_from_config))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"),
                        help="output directory (default: outputs/demo)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the output directory (and its checkpoints) first")
    parser.add_argument("--figures", type=Path, default=None,
                        help="also copy the report's figures here (e.g. docs/figures)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a Hydra override for every part (repeatable)")
    return parser.parse_args(argv)


def run_part(name: str, primary: str, preset: str, runner, out: Path,
             overrides: list[str]) -> float:
    """Compose `primary` with the preset and run it into out/name; returns wall seconds."""
    start = time.perf_counter()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(primary, overrides=[f"experiment={preset}",
                                          f"run.checkpoint_root={out / 'checkpoints'}",
                                          *overrides])
    runner(cfg, out / name)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = args.out
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    total = time.perf_counter()
    for name, primary, preset, runner in PARTS:
        print(f"[demo] {name} ({preset}) ...", flush=True)
        seconds[name] = run_part(name, primary, preset, runner, out, args.overrides)
        print(f"[demo] {name} done in {seconds[name]:.0f} s", flush=True)
    start = time.perf_counter()
    report = write_report([out / name for name, *_ in PARTS], out)
    seconds["report"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - total
    atomic_write_json(out / "demo_timing.json", {"seconds": seconds, "overrides": args.overrides})
    if args.figures is not None:
        args.figures.mkdir(parents=True, exist_ok=True)
        for fig in report.figures:
            shutil.copy2(fig, args.figures / fig.name)
    print(f"[demo] report: {report.path}")
    print(f"[demo] figures: {out / 'figures'}" + (f" (copied to {args.figures})"
                                                  if args.figures else ""))
    print(f"[demo] verdicts: {json.dumps({f'P{k}': v for k, v in report.verdicts.items()})}")
    print(f"[demo] total {seconds['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
