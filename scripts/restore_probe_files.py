"""Rebuild a reproduction's stability.json and decay.json from its committed summary.json.

Both files are pure functions of the probe run's summary records and the probe's settings:
`run_stability` writes `aggregate_stability` and `per_seed_stability` of
`summary["generations"]` under the probe's settings, `run_decay` writes `aggregate_decay` of the
same records with `probe.fit_metric`, `fit_min_n` and `level`. Nothing is trained: this script
composes the part's preset (conf/experiment/reproduce/<part>.yaml, as scripts/reproduce.py
does), checks it against what the summary recorded, and calls the probes' own functions
(`icl_stl.probes.stability.stability_result`, `icl_stl.probes.decay.decay_result`).

The checks, each of which must hold or nothing is written:
- the preset's loop settings equal `summary["settings"]` (what decides the loop's numbers);
- the members the probe builds from the preset (its seeds, n, replaced indices, replacement and
  chaos control) are the summary's `members`, S_0 fingerprints included: prompts are drawn,
  not trained, so this costs seconds;
- the headline the probe wrote into `summary["probe"]` (final gamma, decay slope and verdict)
  is that of the rebuilt file, exactly.

    .venv/bin/python scripts/restore_probe_files.py                   # docs/results/cpu/runs
    .venv/bin/python scripts/restore_probe_files.py --runs OUT/runs --check   # compare, 1e-9
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from icl_stl.cli.common import CONFIG_DIR, load_app_config, runtime_options
from icl_stl.cli.loop import loop_settings
from icl_stl.cli.probe import headline, probe_config
from icl_stl.data.tasks import make_task
from icl_stl.loop.identity import member_records
from icl_stl.loop.mixing import draw_s0
from icl_stl.persistence import atomic_write_json
from icl_stl.probes.decay import decay_members, decay_result
from icl_stl.probes.stability import stability_result
from icl_stl.probes.twins import run_pool, twin_members
from icl_stl.report.agreement import json_differences

REPO = Path(__file__).resolve().parents[1]
# probe part -> the file its probe writes beside summary.json
PARTS = {"stability": "stability.json", "decay": "decay.json"}


def compose_probe(part: str, overrides: list[str] = ()):
    """The part's preset as scripts/reproduce.py composes it (its checkpoint root aside)."""
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("probe", overrides=[f"experiment=reproduce/{part}", *overrides])


def probe_members(settings, probe, seeds: list[int], ns: list[int]) -> list[dict]:
    """The summary's `members` records of the probe's loops, drawn as the probe draws them."""
    task, k = make_task(settings.task), settings.task.k
    loop = settings.loop
    if probe.kind == "stability" or probe.with_stability:
        members, _ = twin_members(
            task, k, ns, seeds, probe.replaced_indices, loop.real_fraction, loop.augment,
            probe.replacement, probe.chaos_control if probe.kind == "stability" else "none",
            loop, run_pool(task, settings))
    else:
        members = decay_members(ns, seeds, loop.real_fraction, loop.augment)
    return member_records(members, [m.s0 if m.s0 is not None else draw_s0(task, m, k)
                                    for m in members])


def rebuild(part: str, summary: dict, overrides: list[str] = ()) -> dict:
    """The probe file of `part` from its run's summary; ValueError if the preset is not the
    summary's run."""
    app = load_app_config(compose_probe(part, overrides), needs_loop=True)
    probe, seeds, ns = probe_config(app)
    settings = loop_settings(app, runtime_options(app.runtime))
    if settings.identity() != summary["settings"]:
        raise ValueError(f"{part}: the preset's settings are not the summary's")
    if probe_members(settings, probe, seeds, ns) != summary["members"]:
        raise ValueError(f"{part}: the preset's members (seeds, n, twins, S_0) are not the "
                         "summary's")
    if part == "stability":
        result = stability_result(summary["generations"], settings, probe, seeds, ns,
                                  run_pool(make_task(settings.task), settings))
    else:
        result = decay_result(summary["generations"], settings, probe)
    if headline(part, result) != summary["probe"]:
        raise ValueError(f"{part}: the rebuilt file's headline {headline(part, result)} is not "
                         f"the summary's {summary['probe']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=REPO / "docs" / "results" / "cpu" / "runs",
                        help="the reproduction's runs/ (default: docs/results/cpu/runs)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 unless each file agrees with its rebuild to "
                             "1e-9 relative")
    args = parser.parse_args(argv)
    results = {part: rebuild(part, json.loads((args.runs / part / "summary.json").read_text()))
               for part in PARTS}  # both pass their checks before either is written
    status = 0
    for part, name in PARTS.items():
        result, target = results[part], args.runs / part / name
        if args.check:  # to 1e-9 relative: the fits' sums round apart on another CPU
            with tempfile.TemporaryDirectory() as tmp:
                atomic_write_json(Path(tmp) / name, result)
                rebuilt = json.loads((Path(tmp) / name).read_text())
            found = (json_differences(json.loads(target.read_text()), rebuilt)
                     if target.exists() else ["missing"])
            print(f"{target}: " + ("agrees" if not found else f"DIFFERS ({found[0]})"))
            status |= bool(found)
        else:
            atomic_write_json(target, result)
            print(f"wrote {target}")
    return status


if __name__ == "__main__":
    sys.exit(main())
