"""The pilots that size the version-2 rules (docs/THEORY.md section 8.1), on seeds outside any
confirmatory set: the primary setting's (d = 2, `pilot/v2_d2`) and the second setting's (label
noise at d = 3, `pilot/v2_d3`; docs/THEORY.md section 8.7).

    .venv/bin/python scripts/pilot_v2.py run       # d = 2: both arms, one process each (resumable)
    .venv/bin/python scripts/pilot_v2.py evaluate  # d = 2: excess over Bayes from the checkpoints
    .venv/bin/python scripts/pilot_v2.py analyse   # noise, correlation, failures -> pilot.json
    .venv/bin/python scripts/pilot_v2.py run --preset pilot/v2_d3      # d = 3 (resumable)
    .venv/bin/python scripts/pilot_v2.py analyse --preset pilot/v2_d3  # -> pilot-v2-d3/pilot.json

d = 2: `run` trains conf/experiment/pilot/v2_d2.yaml twice, once with loop.labeller=model and once
with loop.labeller=oracle (the matched control: same seeds, S_0, initialisation, batch order and
synthetic x's), each as its own process on one thread; killed, it resumes with the same
command. That pilot ran before the loop recorded the excess risk over the Bayes predictor, so
`evaluate` recomputes it for every generation and loop from the stored models, on the run's own
test set, with the loop's own estimator, and writes each arm's summary.json with the version-2
fields under --results/runs/<arm>/ (the report reads them like any run).

d = 3: the preset trains both arms in one ensemble (`members.labellers: [model, oracle]`), and
the loop records `bayes_excess` itself, so there is no `evaluate`. `run` cuts the seeds into
two halves, one one-thread process each (every seed's generation 0 is trained once, shared by
its lambdas and arms); `analyse` first copies each process's summary.json and timing.json from
--work to --results/runs/<part>/, then reads them there.

`analyse` measures what sets the power: the retrain-to-retrain noise of the log contrast per
generation (sigma), its persistent per-seed part (tau), the correlation between a loop and its
control, each generation's gap closed and the training-risk ratio between the arms, and writes
pilot.json. For d = 3 it also records each loop's gate (its own generation 0 must close 90% of
the zero-to-ridge gap), every training failure (report/matched.py, as the rules read them),
the Bayes and least-squares risk per position, and reads the noise from the readable loops
only (gated, no failure), as the rules will; the d = 2 pilot.json predates those fields and is
kept as it was committed (every one of its loops passed and none failed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pilot_v2_analysis import ARMS, analyse, collect  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pilot:
    """One pilot: its preset, where it trains and where its records and pilot.json go."""

    preset: str
    setting: str
    work: str
    results: str
    # "labeller": one process per arm (loop.labeller; the d = 2 pilot, evaluated afterwards);
    # "seeds": both arms in one ensemble, the seeds cut into halves, one process each
    split: str

    @property
    def extended(self) -> bool:
        """pilot.json with the gate per loop, the failures and the Bayes risk per position."""
        return self.split == "seeds"


PILOTS = {p.preset: p for p in (
    Pilot("pilot/v2_d2", "d2", "outputs/pilot_v2", "docs/results/pilot-v2", "labeller"),
    Pilot("pilot/v2_d3", "d3", "outputs/pilot_v2_d3", "docs/results/pilot-v2-d3", "seeds"),
)}
PROCESSES = 2  # one thread each: the 2-core CPU


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "evaluate", "analyse"))
    parser.add_argument("--preset", choices=sorted(PILOTS), default=None,
                        help="the pilot (default: the one whose --results this is, else "
                             "pilot/v2_d2)")
    parser.add_argument("--work", type=Path, default=None,
                        help="run directories and checkpoints (default: the pilot's, "
                             "outputs/pilot_v2 for d = 2)")
    parser.add_argument("--results", type=Path, default=None,
                        help="where the runs' records and pilot.json go (default: the "
                             "pilot's, docs/results/pilot-v2 for d = 2)")
    args = parser.parse_args(argv)
    if args.preset is None:
        by_results = {(REPO / p.results).resolve(): p.preset for p in PILOTS.values()}
        args.preset = by_results.get(args.results.resolve() if args.results else None,
                                     "pilot/v2_d2")
    args.pilot = PILOTS[args.preset]
    args.work = args.work or Path(args.pilot.work)
    args.results = args.results or REPO / args.pilot.results
    if args.step == "evaluate" and args.pilot.extended:
        parser.error(f"evaluate: {args.preset} records bayes_excess as it trains; run analyse")
    return args


def preset_seeds(preset: str) -> list[int]:
    from hydra import compose, initialize_config_dir

    from icl_stl.cli.common import CONFIG_DIR, load_app_config

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("loop", overrides=[f"experiment={preset}"])
    return list(load_app_config(cfg, needs_loop=True).members.seeds)


def commands(pilot: Pilot, work: Path) -> dict[str, list[str]]:
    """Each process's `icl-stl-loop` command, by the name of its run directory under work."""
    loop = str(REPO / ".venv/bin/icl-stl-loop")
    name = pilot.preset.replace("/", "_")
    common = [f"experiment={pilot.preset}", "runtime.threads=1",
              f"run.checkpoint_root={work / 'checkpoints'}"]
    if pilot.split == "labeller":
        return {arm: [loop, f"experiment={pilot.preset}", f"loop.labeller={arm}",
                      "runtime.threads=1", f"run.name={name}_{arm}",
                      f"run.checkpoint_root={work / 'checkpoints'}",
                      f"hydra.run.dir={work / arm}"] for arm in ARMS}
    seeds = preset_seeds(pilot.preset)
    half = (len(seeds) + 1) // 2
    return {f"part{i + 1}": [loop, *common, f"members.seeds=[{','.join(map(str, chunk))}]",
                             f"run.name={name}_part{i + 1}", f"hydra.run.dir={work / f'part{i + 1}'}"]
            for i, chunk in enumerate((seeds[:half], seeds[half:])) if chunk}


def run(pilot: Pilot, work: Path) -> int:
    """Every process at once, one thread each (a background pair on the 2-core CPU)."""
    procs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for part, cmd in commands(pilot, work).items():
        log = open(work / f"{part}.log", "a")  # noqa: SIM115 (closed when the process ends)
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                      env=env))
    return max(p.wait() for p in procs)


def evaluate(work: Path, results: Path) -> None:
    """Each arm's summary.json with the version-2 fields, re-evaluated from its checkpoints."""
    import torch

    from icl_stl.config import TaskConfig
    from icl_stl.data.tasks import make_task
    from icl_stl.loop.held_out import loop_test_sets
    from icl_stl.models.stored import load_stored_model
    from icl_stl.persistence import atomic_write_json
    from icl_stl.training.evaluation import bayes_excess, bayes_predictions, predict
    from icl_stl.training.losses import squared_error

    for arm in ARMS:
        summary = json.loads((work / arm / "summary.json").read_text())
        settings = summary["settings"]
        task_cfg = TaskConfig(**settings["task"])
        task = make_task(task_cfg)
        test = loop_test_sets(task, task_cfg, settings["eval_prompts"], task_cfg.k,
                              settings["seed"]).test
        bayes = bayes_predictions(task_cfg, test)
        fingerprints = [m["s0"] for m in summary["members"]]
        checkpoints = Path(summary["checkpoint_dir"])
        for rec in summary["generations"]:
            stored = load_stored_model(checkpoints / f"gen_{rec['generation']:03d}" / "model.pt",
                                       rec["member"])
            with torch.no_grad():
                pred = predict(stored.model, test.xs[None], test.ys[None], 500)[0]
            risk = squared_error(pred, test.ys, task_cfg.d).mean().item()
            if abs(risk - rec["test_risk"]) > 1e-5 * max(1.0, rec["test_risk"]):
                raise ValueError(f"{arm}: generation {rec['generation']} member "
                                 f"{rec['member']}: the stored model's test risk {risk} is not "
                                 f"the recorded {rec['test_risk']}")
            value, se = bayes_excess(pred, bayes, task_cfg.d)
            fp = fingerprints[rec["member"]]
            rec.update(labeller=arm, regime=settings["loop"]["init"], s0=fp,
                       pair=f"seed={rec['seed']} n={rec['n']} m={rec.get('augment', 0)} "
                            f"lambda={rec['real_fraction']:g} s0={fp[:12]} "
                            f"regime={settings['loop']['init']}",
                       bayes_excess=value, bayes_excess_se=se)
        summary["bayes_excess_source"] = ("re-evaluated from the stored models by "
                                          "scripts/pilot_v2.py evaluate")
        atomic_write_json(results / "runs" / arm / "summary.json", summary)
        print(f"[pilot] {arm}: {len(summary['generations'])} records re-evaluated")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "run":
        args.work.mkdir(parents=True, exist_ok=True)
        return run(args.pilot, args.work)
    if args.step == "evaluate":
        evaluate(args.work, args.results)
        return 0
    if args.pilot.extended and args.work.exists():
        print(f"[pilot] copied {', '.join(collect(args.work, args.results)) or 'no runs'} "
              f"from {args.work}")
    pilot = analyse(args.results, args.pilot.setting if args.pilot.extended else None)
    (args.results / "pilot.json").write_text(json.dumps(pilot, indent=2) + "\n")
    if "gate_passed" in pilot:
        print(f"[pilot] gate: {pilot['gate_passed']}")
    for lam, row in pilot["lambdas"].items():
        if "sigma" not in row:
            print(f"[pilot] λ={lam}: fewer than 2 readable seeds, no noise estimate")
            continue
        print(f"[pilot] λ={lam}: contrast by generation "
              f"{np.round(row['contrast_mean_by_generation'], 3).tolist()}, sigma "
              f"{row['sigma']:.3f}, tau {row['tau']:.3f}, arm correlation "
              f"{row['arm_correlation']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
