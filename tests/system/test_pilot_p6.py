"""scripts/pilot_p6.py: `run` screens every listed seed's generation 0, continues the first gated
seeds in all three arms (one process per arm and seed, one thread each, the compiled engine),
skips finished runs when started again; `analyse` reads the records with the report's own
functions, and its numbers follow them."""

from __future__ import annotations

import importlib
import json
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
pilot_p6 = importlib.import_module("pilot_p6")

# A stand-in for icl-stl-loop: writes (or extends) the run's summary.json with one record per
# labeller and generation, generation 0 closing 95% of the gap for odd seeds and 80% for even
# ones, and logs its arguments.
STUB = """#!{python}
import json, sys
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:])
seed = int(args["members.seeds"].strip("[]"))
run_dir = Path(args["hydra.run.dir"])
run_dir.mkdir(parents=True, exist_ok=True)
with open(run_dir.parents[1] / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
closed = 0.95 if seed % 2 else 0.80
records = [{{"seed": seed, "real_fraction": 0, "n": 100, "augment": 0, "generation": g,
            "member": m, "labeller": lab, "regime": "from_scratch", "test_risk":
            1.0 - closed * 0.9, "ridge_risk": 0.1, "zero_risk": 1.0, "bayes_excess": 0.05,
            "train_risk": 0.5}}
           for g in range(int(args["loop.generations"]) + 1)
           for m, lab in enumerate(("model", "oracle"))]
(run_dir / "summary.json").write_text(json.dumps(
    {{"members": [{{"seed": seed}}, {{"seed": seed, "labeller": "oracle"}}],
     "generations": records}}))
"""


def _stub(tmp_path: Path, monkeypatch) -> Path:
    stub = tmp_path / "loop_stub"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(pilot_p6, "LOOP", stub)
    return tmp_path / "work"


def _calls(work: Path) -> list[dict]:
    path = work / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [dict(a.split("=", 1) for a in json.loads(line)) for line in lines]


def test_run_screens_then_continues_the_first_gated_seeds_and_resumes(tmp_path, monkeypatch):
    work = _stub(tmp_path, monkeypatch)
    seeds = pilot_p6.preset("p6/pilot")["seeds"]
    assert len(seeds) >= 6 and pilot_p6.run(work, [], workers=2, max_seeds=2) == 0
    calls = _calls(work)
    screens = [c for c in calls if c["loop.generations"] == "0"]
    assert sorted(int(c["members.seeds"].strip("[]")) for c in screens) == seeds
    assert {c["experiment"] for c in screens} == {"p6/pilot"}
    gated = [s for s in seeds if s % 2][:2]
    later = [(c["experiment"], int(c["members.seeds"].strip("[]"))) for c in calls[len(seeds):]]
    assert sorted(later) == sorted((p, s) for s in gated for p in pilot_p6.ARMS.values())
    for c in calls:
        assert (c["runtime.threads"], c["runtime.compile"], c["runtime.fused_adam"]) == \
            ("1", "true", "true")
        assert c["run.checkpoint_root"] == str(work.resolve() / "checkpoints")
    plan = json.loads((work / "plan.json").read_text())
    assert plan["continued"] == gated
    assert [s for s, g in plan["gate"].items() if g["gated"]] == [str(s) for s in seeds if s % 2]
    # started again: every run is finished, nothing is trained
    assert pilot_p6.run(work, [], workers=2, max_seeds=2) == 0
    assert len(_calls(work)) == len(calls)
    # one run lost: only it runs again
    (work / "residual" / str(gated[0]) / "summary.json").unlink()
    assert pilot_p6.run(work, [], workers=2, max_seeds=2) == 0
    again = _calls(work)[len(calls):]
    assert [(c["experiment"], c["members.seeds"]) for c in again] == \
        [("p6/pilot_residual", f"[{gated[0]}]")]


def test_bad_settings_are_one_line_and_exit_2(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        pilot_p6.parse_args(["run", "--workers", "0"])
    assert exc.value.code == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
