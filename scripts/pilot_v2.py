"""The pilot that sizes the version-2 rules (docs/THEORY.md section 8.1), on seeds outside any
confirmatory set.

    .venv/bin/python scripts/pilot_v2.py run       # both arms, one process each (resumable)
    .venv/bin/python scripts/pilot_v2.py evaluate  # excess over Bayes from the checkpoints
    .venv/bin/python scripts/pilot_v2.py analyse   # noise, correlation, failures -> pilot.json

`run` trains conf/experiment/pilot/v2_d2.yaml twice, once with loop.labeller=model and once with
loop.labeller=oracle (the matched control: same seeds, S_0, initialisation, batch order and
synthetic x's), each as its own process on one thread; killed, it resumes with the same
command. The pilot ran before the loop recorded the excess risk over the Bayes predictor, so
`evaluate` recomputes it for every generation and loop from the stored models, on the run's own
test set, with the loop's own estimator, and writes each arm's summary.json with the version-2
fields under --results/runs/<arm>/ (the report reads them like any run). `analyse` measures
what sets the power: the retrain-to-retrain noise of the log contrast per generation (sigma),
its persistent per-seed part (tau), the correlation between a loop and its control, each
generation's gap closed and the training-risk ratio between the arms, and writes pilot.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PRESET = "pilot/v2_d2"
ARMS = ("model", "oracle")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("run", "evaluate", "analyse"))
    parser.add_argument("--work", type=Path, default=Path("outputs/pilot_v2"),
                        help="run directories and checkpoints (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/results/pilot-v2",
                        help="where the evaluated runs and pilot.json go (default: %(default)s)")
    return parser.parse_args(argv)


def run(work: Path) -> int:
    """Both arms at once, one thread each (a background pair on the 2-core CPU)."""
    procs = []
    for arm in ARMS:
        cmd = [str(REPO / ".venv/bin/icl-stl-loop"), f"experiment={PRESET}",
               f"loop.labeller={arm}", "runtime.threads=1", f"run.name=pilot_v2_d2_{arm}",
               f"run.checkpoint_root={work / 'checkpoints'}", f"hydra.run.dir={work / arm}"]
        log = open(work / f"{arm}.log", "a")  # noqa: SIM115 (closed when the process ends)
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
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


def _two_way(values: np.ndarray) -> tuple[float, float]:
    """(sigma, tau) of values (seeds, generations) = generation mean + seed offset + noise."""
    s, g = values.shape
    resid = values - values.mean(0, keepdims=True) - values.mean(1, keepdims=True) \
        + values.mean()
    sigma2 = float((resid ** 2).sum() / ((s - 1) * (g - 1)))
    seed_var = float(values.mean(1).var(ddof=1)) - sigma2 / g
    return float(np.sqrt(sigma2)), float(np.sqrt(max(seed_var, 0.0)))


def analyse(results: Path) -> dict:
    """pilot.json: per lambda the contrast by generation, its noise and the arms' agreement."""
    from icl_stl.training.gate import gap_closed

    arms = {arm: json.loads((results / "runs" / arm / "summary.json").read_text())
            for arm in ARMS}
    zero = {arm: arms[arm]["baselines"]["zero"]["risk"] for arm in ARMS}
    by = {arm: {(r["seed"], r["real_fraction"], r["generation"]): r
                for r in arms[arm]["generations"]} for arm in ARMS}
    seeds = sorted({k[0] for k in by["model"]})
    lams = sorted({k[1] for k in by["model"]})
    gens = sorted({k[2] for k in by["model"]} & {k[2] for k in by["oracle"]})
    later = [g for g in gens if g > 0]
    relative = [r["bayes_excess_se"] / r["bayes_excess"] for arm in ARMS
                for r in arms[arm]["generations"]]
    out = {"seeds": seeds, "generations": gens, "lambdas": {},
           "test_prompts": arms["model"]["settings"]["eval_prompts"],
           "excess_relative_se": {"mean": float(np.mean(relative)),
                                  "max": float(np.max(relative))}}
    for lam in lams:
        get = lambda arm, key, gs: np.array([[by[arm][(s, lam, g)][key] for g in gs]  # noqa
                                             for s in seeds])
        em, eo = get("model", "bayes_excess", gens), get("oracle", "bayes_excess", gens)
        contrast = np.log(em[:, 1:] / eo[:, 1:])
        sigma, tau = _two_way(contrast)
        log_o = np.log(eo[:, 1:])
        resid = lambda x: x - x.mean(0) - x.mean(1, keepdims=True) + x.mean()  # noqa: E731
        rm, ro = resid(np.log(em[:, 1:])), resid(log_o)
        closed = {arm: [[gap_closed(by[arm][(s, lam, g)]["test_risk"],
                                    by[arm][(s, lam, g)]["ridge_risk"], zero[arm])
                         for g in gens] for s in seeds] for arm in ARMS}
        ratio = get("model", "train_risk", later) / get("oracle", "train_risk", later)
        out["lambdas"][f"{lam:g}"] = {
            "excess_model": em.tolist(), "excess_oracle": eo.tolist(),
            "contrast": contrast.tolist(),
            "contrast_mean_by_generation": contrast.mean(0).tolist(),
            "contrast_sd_by_generation": contrast.std(0, ddof=1).tolist(),
            "sigma": sigma, "tau": tau,
            "oracle_log_excess_sd_retrain": _two_way(log_o)[0],
            "arm_correlation": float((rm * ro).sum() / np.sqrt((rm ** 2).sum()
                                                               * (ro ** 2).sum())),
            "gap_closed": closed,
            "train_risk_ratio": ratio.tolist(),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "run":
        args.work.mkdir(parents=True, exist_ok=True)
        return run(args.work)
    if args.step == "evaluate":
        evaluate(args.work, args.results)
        return 0
    pilot = analyse(args.results)
    (args.results / "pilot.json").write_text(json.dumps(pilot, indent=2) + "\n")
    for lam, row in pilot["lambdas"].items():
        print(f"[pilot] λ={lam}: contrast by generation "
              f"{np.round(row['contrast_mean_by_generation'], 3).tolist()}, sigma "
              f"{row['sigma']:.3f}, tau {row['tau']:.3f}, arm correlation "
              f"{row['arm_correlation']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
