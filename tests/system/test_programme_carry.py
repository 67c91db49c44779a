"""A programme goes on from its carry on a new machine (scripts/v2_carry.py): the carry holds the
records, and of each unfinished block its resume point only; restored into an empty --out, the
same command finishes the programme without training a carried generation again."""

from __future__ import annotations

import json
import subprocess

from programme_checks import REPO, kill_once_written, toy_command


def command(out, *extra: str) -> list[str]:
    return toy_command(out, "--workers", "1", *extra)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_a_programme_goes_on_from_its_carry_in_an_empty_out(tmp_path):
    out, results, fresh = tmp_path / "machine-1", tmp_path / "results", tmp_path / "machine-2"
    # killed once P1's block (the first) has finished generation 1
    kill_once_written(command(out), out / "checkpoints", "*p1*/gen_001/metrics.json", 600)
    saved = run(command(out, "--save-carry", "--results", str(results)))
    assert saved.returncode == 0, saved.stderr
    assert (results / "parts.json").exists() and (results / "runs" / "programme.json").exists()
    carried = {str(p.relative_to(results / "carry")) for p in (results / "carry").rglob("*")
               if p.is_file()}
    (p1_ckpt,) = {f.split("/")[0] for f in carried if "-p1-" in f}
    done = sorted(f.split("/")[1] for f in carried
                  if f.startswith(f"{p1_ckpt}/") and f.endswith("metrics.json"))
    assert done[:2] == ["gen_000", "gen_001"]
    models = {f for f in carried if f.endswith("model.pt")}
    assert f"{p1_ckpt}/{done[-1]}/model.pt" in models  # its resume point ...
    assert f"{p1_ckpt}/gen_000/model.pt" not in models  # ... and no earlier model
    assert not any(f.endswith(("synthetic.pt", "train.pt", ".lock")) for f in carried)
    assert f"carry: {len(carried)} files" in saved.stdout

    refused = run(command(out, "--restore-carry", str(results)))  # out holds a programme
    assert refused.returncode == 2 and "already holds a programme" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    restored = run(command(fresh, "--restore-carry", str(results)))
    assert restored.returncode == 0, restored.stderr
    finished = run(command(fresh, "--parts", "9"))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "every loop of the programme has finished" in finished.stdout
    ckpt = fresh / "checkpoints" / p1_ckpt
    assert not (ckpt / "gen_000" / "model.pt").exists()  # generation 0 was not trained again
    assert (ckpt / "gen_003" / "model.pt").exists()
    for summary in (fresh / "runs").rglob("summary.json"):
        gens = {r["generation"] for r in json.loads(summary.read_text())["generations"]}
        assert gens == {0, 1, 2, 3}, summary
    assert json.loads((fresh / "verdicts.json").read_text())["programme"]["finished"] is True


def test_a_carry_is_refused_where_there_is_none(tmp_path):
    (tmp_path / "empty").mkdir()
    refused = run(command(tmp_path / "out", "--restore-carry", str(tmp_path / "empty")))
    assert refused.returncode == 2 and "holds no runs/programme.json" in refused.stderr
    refused = run(command(tmp_path / "out", "--save-carry", "--results", str(tmp_path / "c")))
    assert refused.returncode == 2 and "--save-carry needs --results" in refused.stderr
    assert not (tmp_path / "c").exists()
