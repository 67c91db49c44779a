"""The time profile, the GPU estimate and the bf16 parity figures quoted in BENCHMARKS.md and
docs/usage.md are the committed JSON they came from (docs/bench/)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "docs" / "bench"
USAGE = (REPO / "docs" / "usage.md").read_text()
BENCHMARKS = (REPO / "BENCHMARKS.md").read_text()


def _one(pattern: str) -> dict:
    (path,) = sorted(BENCH.glob(pattern))  # exactly one committed file of each kind
    return json.loads(path.read_text())


def _flat(text: str) -> str:
    return " ".join(text.split())


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    rest = text[start + len(heading):]
    end = rest.find("\n## ")
    return _flat(rest if end < 0 else rest[:end])


def _profile_part():
    spec = importlib.util.spec_from_file_location("profile_part",
                                                  REPO / "scripts" / "profile_part.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_profile_table_is_the_committed_profile():
    """The profile of one confirmatory part (scripts/profile_part.py --json, written as
    docs/bench/profile-v2-part-<N>-<machine>-<date>.json), else of the exploratory collapse
    part: its table in BENCHMARKS.md and its shares (both workers' mean) in docs/usage.md."""
    pattern = ("profile-v2-part-*.json" if sorted(BENCH.glob("profile-v2-part-*.json"))
               else "profile-collapse-*.json")
    if not sorted(BENCH.glob(pattern)):
        pytest.skip("no part's profile has landed yet (BENCHMARKS.md: pending)")
    profile = _one(pattern)
    section = _section(BENCHMARKS, "## Where a reproduction part's time goes")
    assert _flat(_profile_part().markdown(profile)) in section
    shares = {r["row"]: f"{100 * r['share']:.0f}%" for r in profile["rows"]}
    readme = _section(USAGE, "## Where the time goes, and on a GPU")
    for row in ("training", "labelling", "evaluation"):
        assert f"{row} {shares[row]}" in readme


def test_the_gpu_estimates_are_the_committed_ones():
    section = _section(BENCHMARKS, "## The version-2 programme on a GPU")
    readme = _section(USAGE, "## Where the time goes, and on a GPU")
    for pattern in ("gpu-estimate-v2-h200-2*.json", "gpu-estimate-v2-h200-by-lambda-*.json",
                    "gpu-estimate-v2-h100-*.json"):
        data = _one(pattern)
        for est in data["programmes"].values():
            assert f"{est['minutes']:.1f} min" in section
    for tag in ("launchus5", "launchus20", "efficiency0.1", "efficiency0.5"):  # sensitivity
        for est in _one(f"gpu-estimate-v2-h200-{tag}-*.json")["programmes"].values():
            assert f"{est['minutes']:.1f} min" in section
    main = _one("gpu-estimate-v2-h200-2*.json")["programmes"]
    assert f"{main['v2-cpu']['minutes']:.1f} min" in readme
    assert f"{main['v2-garg']['minutes'] / 60:.1f} h" in readme


def test_the_bf16_figures_are_the_measured_ones():
    data = _one("bf16-parity-cpu-*.json")
    section = _section(BENCHMARKS, "## bf16 autocast on the CPU")
    for run in data["runs"]:
        for values in run["relative"].values():
            for v in values:
                assert f"{v:.1e}" in section


def test_the_first_parts_partial_profile_is_the_committed_one():
    """Part 1 of the confirmatory programme ran before its processes were recorded: the shares
    BENCHMARKS.md quotes for it are those of its committed partial profile."""
    data = _one("partial-profile-v2-part-1-*.json")
    assert data["part"] == 1 and data["recorded"] == "generations only"
    shares = {r["row"]: r["share"] for r in data["rows"]}
    section = _section(BENCHMARKS, "## Where a reproduction part's time goes")
    assert f"training {100 * shares['training']:.1f}% of each worker's time" in section
    assert f"evaluation {100 * shares['evaluation']:.1f}%" in section
    assert f"{100 * shares['not recorded']:.0f}% not recorded" in section
