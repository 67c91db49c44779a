"""Real-data schedules (loop.real_schedule) wired through whole tiny loops: each generation's
real count and recorded lambda_i."""

from __future__ import annotations

import math

import pytest
from conftest import compose_loop

from icl_stl.cli.loop import loop_from_config
from icl_stl.config.schedules import RealSchedule
from icl_stl.persistence import load_state

N = 16  # compose_loop's data.n
FAST = ["train.steps=4", "train.warmup_steps=0", "eval.n_prompts=16", "eval.batch_size=16"]


def _checkpoint(tmp_path):
    (ck,) = (tmp_path / "ck").iterdir()
    return ck


@pytest.mark.parametrize("schedule,rate", [("linear", 0.25), ("exponential", 0.7)])
def test_schedule_sets_each_generations_real_count_and_records_lambda(tmp_path, schedule, rate):
    cfg = compose_loop(tmp_path, *FAST, "loop.generations=3", "loop.rounding=floor",
                       f"loop.real_schedule={schedule}", f"loop.real_schedule_rate={rate}",
                       "loop.real_schedule_floor=0.125", "loop.real_source=fresh")
    records = loop_from_config(cfg, tmp_path / "out")["generations"]
    expected = RealSchedule(schedule, 0.5, rate, 0.125).fractions(3)
    assert [r["real_fraction_i"] for r in records] == pytest.approx(expected)
    assert expected[1] == 0.5 and expected[3] < 0.5  # it does decay
    ck = _checkpoint(tmp_path)
    for rec, lam in zip(records[1:], expected[1:]):
        n_real = math.floor(lam * N)
        assert (rec["n_real"], rec["n_synthetic_new"]) == (n_real, N - n_real), rec
        stored = load_state(ck / f"gen_{rec['generation']:03d}" / "synthetic.pt")["members"][0]
        assert stored["xs"].shape[0] == N - n_real


def test_constant_schedule_records_the_constant_lambda(tmp_path):
    records = loop_from_config(compose_loop(tmp_path, *FAST, "loop.generations=2"),
                               tmp_path / "out")["generations"]
    assert [r["real_fraction_i"] for r in records] == [1.0, 0.5, 0.5]
    assert [r["n_real"] for r in records] == [N, N // 2, N // 2]
