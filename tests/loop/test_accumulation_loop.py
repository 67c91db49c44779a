"""The arms of `loop.synthetic` in the loop code (P9, docs/accumulation.md): what S_i holds, its
size in the records, each arm's drift of the reference learner against its closed form, a
member's numbers independent of its ensemble, resume, and the settings an arm refuses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import compose_loop

from icl_stl.cli.common import load_app_config
from icl_stl.config import ConfigError, EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.loop.hooks import combine_hooks
from icl_stl.loop.learners.reference import prior_drift_metrics
from icl_stl.loop.plan import MemberSpec, plan_generations, train_sizes
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.theory.accumulation import accumulation_drift

D, K, N, GENERATIONS = 3, 5, 20, 4
ARMS = ("replace", "accumulate", "accumulate_s0", "volume_matched")


def reference(arm: str, generations: int = GENERATIONS) -> LoopSettings:
    return LoopSettings(TaskConfig(d=D, k=K), ModelConfig(), TrainConfig(steps=1),
                        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
                        LoopConfig(generations=generations, real_fraction=0.0, synthetic=arm,
                                   learner="gaussian_prior"))


def tiny(arm: str) -> LoopSettings:
    return LoopSettings(
        TaskConfig(d=2, k=K), ModelConfig(n_layer=1, n_head=2, n_embd=16),
        TrainConfig(steps=6, batch_size=16, warmup_steps=2, log_every=3, checkpoint_every=100),
        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
        LoopConfig(generations=2, real_fraction=0.0, synthetic=arm))


def expected_sizes(arm: str, generations: int, n: int = N) -> list[int]:
    return [{"replace": n, "accumulate": n * max(i, 1), "accumulate_s0": n * (i + 1),
             "volume_matched": n * (i + 1)}[arm] for i in range(generations + 1)]


@pytest.mark.parametrize("arm", ARMS)
def test_s_i_holds_what_the_arm_says(tmp_path, arm):
    """S_i, as the learner trains on it: S_0 first for the arms that keep it, then every
    generation's synthetic prompts (accumulating arms) or generation i-1's (the others)."""
    seen: dict[int, list] = {}

    def check(generation, learner, datasets, new_synthetic):
        seen[generation] = [(s.xs.clone(), n.xs.clone()) for s, n in zip(datasets,
                                                                        new_synthetic)]
        return [{} for _ in datasets]

    members = [MemberSpec(seed, 0.0, N) for seed in range(2)]
    records = LoopRun(reference(arm), members, tmp_path / arm, extra_metrics=check).run()[
        "generations"]
    sizes = expected_sizes(arm, GENERATIONS)
    for m in range(2):
        mine = [r for r in records if r["member"] == m]
        assert [r["train_size"] for r in mine] == sizes
        s0 = seen[0][m][0]
        for i in range(1, GENERATIONS + 1):
            s_i, new = seen[i][m]
            assert len(new) == (N * i if arm == "volume_matched" else N)
            assert torch.equal(s_i[-len(new):], new)  # the newest prompts come last
            assert torch.equal(s_i[:N], s0) == (arm in ("accumulate_s0", "volume_matched"))
            if arm in ("accumulate", "accumulate_s0"):  # generation i-1's prompts are kept
                previous = seen[i - 1][m][1] if i > 1 else None
                if previous is not None:
                    assert torch.equal(s_i[-len(new) - len(previous):-len(new)], previous)
        if arm == "replace":
            assert all("synthetic" not in r for r in mine)  # a default run's records as before
        else:
            assert all(r["synthetic"] == arm for r in mine)
            real = [r["n_real"] for r in mine]
            assert real == ([N] * (GENERATIONS + 1) if arm in ("accumulate_s0", "volume_matched")
                            else [N] + [0] * GENERATIONS)
    plans = plan_generations(reference(arm).loop, members[0])
    assert train_sizes(reference(arm).loop, plans) == sizes


SEEDS, DRIFT_GENERATIONS = 100, 3
Z_TOL = 4.0


@pytest.mark.parametrize("arm", ARMS)
def test_the_reference_learner_drifts_as_its_closed_form(tmp_path, arm):
    """The loop's reference learner, many seeds in one run: the mean of n ||mu_i - mu*||^2 / d
    within Z_TOL standard errors of `accumulation_drift` at every generation; replace's form
    rejected for the arms that settle."""
    members = [MemberSpec(seed, 0.0, N) for seed in range(SEEDS)]
    hook = combine_hooks(prior_drift_metrics, None)
    records = LoopRun(reference(arm, DRIFT_GENERATIONS), members, tmp_path / arm,
                      extra_metrics=hook).run()["generations"]
    err = np.array([[r["prior_mean_err2"] * N / D for r in records if r["generation"] == g]
                    for g in range(DRIFT_GENERATIONS + 1)])
    se = err.std(1, ddof=1) / math.sqrt(SEEDS)
    z = (err.mean(1) - accumulation_drift(DRIFT_GENERATIONS, arm)) / se
    assert np.all(np.abs(z) < Z_TOL), (arm, err.mean(1), z)
    if arm != "replace":
        wrong = (err.mean(1) - accumulation_drift(DRIFT_GENERATIONS, "replace")) / se
        assert abs(wrong[-1]) > 2 * Z_TOL, wrong


def _records(summary: dict, m: int) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "member"} for r in summary["generations"]
            if r["member"] == m]


@pytest.mark.parametrize("arm", ["accumulate_s0", "volume_matched"])
def test_a_member_is_the_loop_it_would_be_alone_and_resumes(tmp_path, arm):
    """The transformer: a loop beside its oracle twin and another seed has the records it has
    alone, bit for bit; a run cut after generation 1 resumes to the same records."""
    both = LoopRun(tiny(arm), [MemberSpec(0, 0.0, 16, labeller="model"),
                               MemberSpec(0, 0.0, 16, labeller="oracle"),
                               MemberSpec(1, 0.0, 16, labeller="model")], tmp_path / "all").run()
    alone = LoopRun(tiny(arm), [MemberSpec(1, 0.0, 16, labeller="model")],
                    tmp_path / "alone").run()
    assert json.dumps(_records(both, 2), sort_keys=True) == json.dumps(_records(alone, 0),
                                                                       sort_keys=True)
    short = tiny(arm)
    short.loop.generations = 1
    LoopRun(short, [MemberSpec(1, 0.0, 16, labeller="model")], tmp_path / "resumed").run()
    resumed = LoopRun(tiny(arm), [MemberSpec(1, 0.0, 16, labeller="model")],
                      tmp_path / "resumed").run()
    assert json.dumps(_records(resumed, 0), sort_keys=True) == json.dumps(_records(alone, 0),
                                                                          sort_keys=True)
    assert [r["train_size"] for r in _records(alone, 0)] == [16, 32, 48]


@pytest.mark.parametrize("overrides,message", [
    (["loop.synthetic=accumulate_s0", "loop.real_fraction=0.5"],
     "loop.real_fraction must be 0 with loop.synthetic=accumulate_s0"),
    (["loop.synthetic=volume_matched", "loop.real_fraction=0", "members.real_fractions=[0,0.25]"],
     "loop.real_fraction must be 0 with loop.synthetic=volume_matched"),
    (["loop.synthetic=accumulate_s0", "loop.real_fraction=0", "loop.real_schedule=linear",
      "loop.real_schedule_rate=0.1", "loop.rounding=floor"],
     "loop.real_schedule must be 'constant' with loop.synthetic=accumulate_s0"),
    (["loop.synthetic=accumulate_all"], "loop.synthetic"),
])
def test_bad_arm_settings_are_refused_naming_the_setting(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_app_config(compose_loop(tmp_path, *overrides), needs_loop=True)
