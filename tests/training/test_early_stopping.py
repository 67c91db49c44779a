"""Early stopping on a held-out share of S_0 (train.held_out_fraction): the split, the best
held-out step, a member's invariance to its companions, and resume after a kill."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import gens

from icl_stl.config import ConfigError, ModelConfig, TrainConfig
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import LinearRegression
from icl_stl.models import build_ensemble
from icl_stl.models.model import MODEL_SIZES
from icl_stl.persistence import CheckpointSlot
from icl_stl.persistence.identity import train_identity
from icl_stl.training.early_stopping import (
    EarlyStopping,
    check_held_out,
    held_out_count,
    member_parameters,
    split_held_out,
)
from icl_stl.training.engine import MemberData, train_ensemble

TASK, K = LinearRegression(d=2), 5
TINY = ModelConfig(**MODEL_SIZES["tiny"])
# A small S_0 and a high learning rate: the held-out risk falls, then rises as S_0 is memorised.
TRAIN = TrainConfig(steps=120, batch_size=16, lr=3e-3, warmup_steps=5, log_every=10,
                    checkpoint_every=40, held_out_fraction=0.25)


def _splits(count: int, n: int = 24):
    return [split_held_out(sample_prompts(TASK, n, K, make_generator(i, "S0")),
                           TRAIN.held_out_fraction, i) for i in range(count)]


def _train(members: list[int], checkpoint=None, path=None, on_log=None):
    splits = _splits(3)
    model = build_ensemble(TINY, TASK.d, K, [gens(0, 3)[i] for i in members])
    stop = EarlyStopping([splits[i].held_out for i in members], 64, path=path,
                         identity={"members": members})
    data = [MemberData(100 + i, splits[i].train) for i in members]
    train_ensemble(model, data, TASK, K, TRAIN, checkpoint=checkpoint,
                   on_log=stop.callback(model, on_log))
    stop.restore(model)
    return model, stop


def test_the_split_is_seeded_disjoint_and_recorded():
    s0 = sample_prompts(TASK, 40, K, make_generator(0, "S0"))
    a, b = split_held_out(s0, 0.1, 7), split_held_out(s0, 0.1, 7)
    assert torch.equal(a.held_out_index, b.held_out_index)
    assert len(a.held_out) == held_out_count(40, 0.1) == 4 and len(a.train) == 36
    other = split_held_out(s0, 0.1, 8)
    assert not torch.equal(a.held_out_index, other.held_out_index)
    rows = {tuple(x.flatten().tolist()) for x in a.train.xs}
    assert not rows & {tuple(x.flatten().tolist()) for x in a.held_out.xs}
    assert a.record() == {"held_out_n": 4, "held_out_s0": a.held_out.fingerprint(),
                          "train_n": 36}


def test_a_fraction_too_small_for_n_is_refused_naming_the_setting():
    check_held_out([20, 200], 0.1)
    with pytest.raises(ConfigError, match="train.held_out_fraction .*n=4"):
        check_held_out([4, 200], 0.1)


def test_off_by_default_and_left_out_of_the_identity():
    assert TrainConfig().held_out_fraction == 0.0
    assert "held_out_fraction" not in train_identity(TrainConfig())
    assert train_identity(dataclasses.replace(TrainConfig(), held_out_fraction=0.1))[
        "held_out_fraction"] == 0.1


def test_each_member_is_kept_at_its_best_held_out_step():
    model, stop = _train([0, 1, 2])
    steps = [h["step"] for h in stop.history]
    assert steps == list(range(10, 121, 10))
    for i in range(3):
        risks = [h["risk"][i] for h in stop.history]
        best = min(range(len(risks)), key=lambda j: (risks[j], j))
        assert stop.best_step[i] == steps[best] and stop.best_risk[i] == risks[best]
    # the restored parameters are those of that step: their held-out risk is the best one
    assert stop.held_out_risks(model) == pytest.approx(stop.best_risk, rel=1e-6)
    # and the stopping points differ from the end of training for at least one member
    assert any(s < TRAIN.steps for s in stop.best_step), stop.best_step
    records = stop.records()
    assert [r["stopped_step"] for r in records] == stop.best_step


def test_a_member_stops_where_it_would_alone_bit_for_bit():
    together, stop_together = _train([0, 1, 2])
    alone, stop_alone = _train([1])
    assert stop_alone.best_step[0] == stop_together.best_step[1]
    assert stop_alone.best_risk[0] == stop_together.best_risk[1]
    a, b = member_parameters(together, 1), member_parameters(alone, 0)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class _Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_stopping_point(tmp_path):
    straight, stop_straight = _train([0, 1])

    def kill_at_70(record: dict) -> None:  # after the step-40 checkpoint, before step 80
        if record["step"] == 70:
            raise _Killed

    slot, path = CheckpointSlot(tmp_path, "train"), tmp_path / "early_stopping.pt"
    with pytest.raises(_Killed):
        _train([0, 1], checkpoint=slot, path=path, on_log=kill_at_70)
    resumed, stop_resumed = _train([0, 1], checkpoint=slot, path=path)
    assert stop_resumed.best_step == stop_straight.best_step
    assert stop_resumed.best_risk == stop_straight.best_risk
    assert [h["step"] for h in stop_resumed.history] == [h["step"] for h in stop_straight.history]
    for i in range(2):
        a, b = member_parameters(resumed, i), member_parameters(straight, i)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_state_written_for_other_data_is_refused(tmp_path):
    path = tmp_path / "early_stopping.pt"
    _train([0], path=path)
    with pytest.raises(ConfigError, match="early-stopping state .* other settings"):
        EarlyStopping([_splits(1)[0].held_out], 64, path=path, identity={"members": [9]})
