"""A loop and its matched oracle-labelled control in one ensemble (members.labellers): each is
the loop it would be alone, the learner labels only its own loops' prompts, generation 0 is
shared, and every record says which loop it is (labeller, regime, s0, pair) and how far it lies
from the Bayes predictor."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import compose_loop

import icl_stl.loop.learners.transformer as learners_module
from icl_stl.cli.common import load_app_config
from icl_stl.cli.loop import loop_from_config, members_from_config
from icl_stl.config import ConfigError, EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.loop.learners import TransformerLearner
from icl_stl.loop.oracle import oracle_synthesize
from icl_stl.loop.plan import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.persistence import read_json
from icl_stl.persistence.identity import run_identity

D, K, N = 2, 5, 16


def settings(**loop) -> LoopSettings:
    return LoopSettings(
        TaskConfig(d=D, k=K), ModelConfig(n_layer=1, n_head=2, n_embd=16),
        TrainConfig(steps=6, batch_size=16, warmup_steps=2, log_every=3, checkpoint_every=100),
        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
        LoopConfig(generations=2, real_fraction=0.0, **loop))


def member(labeller: str | None, seed: int = 0, lam: float = 0.0) -> MemberSpec:
    return MemberSpec(seed, lam, N, labeller=labeller)


def run(root: Path, members: list[MemberSpec], **loop) -> dict:
    return LoopRun(settings(**loop), members, root / "ck").run()


def records_of(summary: dict, m: int) -> list[dict]:
    """Member m's records without the member index (its place in the ensemble)."""
    return [{k: v for k, v in r.items() if k != "member"} for r in summary["generations"]
            if r["member"] == m]


def same(a, b) -> bool:
    """Equal bit for bit, NaN included (json.dumps writes floats by repr)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory) -> dict:
    """seed 0 at lambda 0, labelled by the model and by the oracle, in one ensemble."""
    return run(tmp_path_factory.mktemp("pair"), [member("model"), member("oracle")])


def test_a_member_trains_as_it_would_alone_beside_its_oracle_twin(tmp_path, pair_run):
    alone = run(tmp_path / "model", [member("model")])
    assert same(records_of(pair_run, 0), records_of(alone, 0))
    # The control is the loop `loop.labeller=oracle` runs (its labeller from the run's setting).
    oracle = run(tmp_path / "oracle", [member(None)], labeller="oracle")
    assert same(records_of(pair_run, 1), records_of(oracle, 0))
    # and the two did differ after generation 0 (a test that can fail)
    last = [r for r in pair_run["generations"] if r["generation"] == 2]
    assert last[0]["test_risk"] != last[1]["test_risk"]


def test_records_say_which_loop_they_are_and_pair_the_twins(pair_run):
    model, oracle = records_of(pair_run, 0), records_of(pair_run, 1)
    assert [r["labeller"] for r in model + oracle] == ["model"] * 3 + ["oracle"] * 3
    s0 = pair_run["members"][0]["s0"]
    for r in model + oracle:
        assert r["regime"] == "from_scratch" and r["s0"] == s0
        assert r["pair"] == f"seed=0 n={N} m=0 lambda=0 s0={s0[:12]} regime=from_scratch"
        assert r["bayes_excess"] >= 0 and r["bayes_excess_se"] > 0
        assert math.isfinite(r["gap_closed"])  # on every generation, not only the gate's
    # one generation 0 for both (shared: the same seed and S_0), hence the same numbers
    assert model[0]["bayes_excess"] == oracle[0]["bayes_excess"]
    assert model[0]["test_risk"] == oracle[0]["test_risk"]
    # loop.json and summary.json name a member's labeller where it is not the run's
    assert [m.get("labeller") for m in pair_run["members"]] == [None, "oracle"]


def test_generation_0_is_trained_once_for_a_loop_and_its_control(tmp_path, monkeypatch):
    sizes: list[tuple[int, int]] = []
    real = learners_module.train_ensemble

    def counting(model, members, *args, **kwargs):
        sizes.append((kwargs["identity"]["generation"], model.n_members))
        return real(model, members, *args, **kwargs)

    monkeypatch.setattr(learners_module, "train_ensemble", counting)
    run(tmp_path, [member("model"), member("oracle"), member("model", seed=1)])
    assert sizes == [(0, 2), (1, 3), (2, 3)]


def test_the_learner_labels_only_its_own_loops(tmp_path, monkeypatch):
    calls = []
    real = TransformerLearner.synthesize

    def recording(self, generation, inputs, members=None):
        calls.append((generation, members, len(inputs)))
        return real(self, generation, inputs, members)

    oracle_calls = []

    def recording_oracle(task, inputs):
        oracle_calls.append(len(inputs))
        return oracle_synthesize(task, inputs)

    monkeypatch.setattr(TransformerLearner, "synthesize", recording)
    monkeypatch.setattr("icl_stl.loop.synthesis.oracle_synthesize", recording_oracle)
    members = [member("model"), member("oracle"), member("model", seed=1, lam=0.5)]
    summary = run(tmp_path, members)
    assert calls == [(1, [0, 2], 2), (2, [0, 2], 2)]
    assert oracle_calls == [1, 1]
    assert [r["labeller"] for r in summary["generations"][:3]] == ["model", "oracle", "model"]


def test_a_checkpoint_resumes_only_with_the_same_loops(tmp_path):
    run(tmp_path, [member("model")])
    ident = read_json(tmp_path / "ck" / "loop.json")
    assert "labeller" not in ident["members"][0]  # as written before members had labellers
    again = run(tmp_path, [member("model")])  # resumes: every generation already finished
    assert len(again["generations"]) == 3
    with pytest.raises(ConfigError, match="members"):
        run(tmp_path, [member("model"), member("oracle")])


# ---------------------------------------------------------------------------------------------
# members.labellers in the config

FAST = ["train.steps=2", "eval.n_prompts=16", "eval.batch_size=16"]


def test_labellers_cross_the_other_member_axes(tmp_path):
    app = load_app_config(compose_loop(tmp_path, "members.seeds=[0,1]",
                                       "members.real_fractions=[0,0.5]",
                                       "members.labellers=[model,oracle]"), needs_loop=True)
    specs = [(m.seed, m.real_fraction, m.labeller) for m in members_from_config(app)]
    assert specs == [(s, lam, lab) for s in (0, 1) for lam in (0, 0.5)
                     for lab in ("model", "oracle")]
    plain = load_app_config(compose_loop(tmp_path, "loop.labeller=oracle"), needs_loop=True)
    assert [m.labeller for m in members_from_config(plain)] == ["oracle"]
    assert "labellers" not in run_identity(plain)["members"]  # run names as before
    assert run_identity(app)["members"]["labellers"] == ["model", "oracle"]


@pytest.mark.parametrize("overrides, setting", [
    (["loop.label_mode=mean"], "loop.label_mode"),
    (["loop.filter=confidence"], "loop.filter"),
    (["task=sparse_linear_regression", "task.sparsity=1"], "members.labellers"),
    (["task.n_tasks=2"], "members.labellers"),
])
def test_an_oracle_member_needs_what_the_oracle_labeller_needs(tmp_path, overrides, setting):
    cfg = compose_loop(tmp_path, *FAST, "members.labellers=[model,oracle]", *overrides)
    with pytest.raises(ConfigError) as info:
        loop_from_config(cfg, tmp_path / "out")
    message = str(info.value)
    assert setting in message and "oracle" in message and "\n" not in message, message
    assert not (tmp_path / "ck").exists()
    # the same settings with the model's loops alone are fine as far as the labeller goes
    if setting == "loop.label_mode":
        load_app_config(compose_loop(tmp_path, "members.labellers=[model]", *overrides),
                        needs_loop=True)


@pytest.mark.parametrize("value", ["[model,model]", "[teacher]", "[]"])
def test_bad_labeller_lists_are_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="members.labellers"):
        load_app_config(compose_loop(tmp_path, f"members.labellers={value}"), needs_loop=True)


def test_a_mixed_run_through_the_entry_point(tmp_path):
    summary = loop_from_config(compose_loop(tmp_path, *FAST, "members.labellers=[model,oracle]",
                                            "loop.real_fraction=0"), tmp_path / "out")
    last = [r for r in summary["generations"] if r["generation"] == 1]
    assert [r["labeller"] for r in last] == ["model", "oracle"]
    assert last[0]["pair"] == last[1]["pair"]
    assert (tmp_path / "out" / "risk_vs_generation.png").exists()
