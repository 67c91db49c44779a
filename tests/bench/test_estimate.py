"""The GPU time estimate's arithmetic (icl_stl/bench/estimate.py, programmes.py) and its command."""

from __future__ import annotations

import math

import pytest
from conftest import compose_cfg

from icl_stl.bench.estimate import (
    GpuAssumptions,
    KernelCounts,
    RunShape,
    chunks_for,
    estimate_programme,
    estimate_run,
    flops_per_member_step,
    memory_per_member,
    step_seconds,
)
from icl_stl.bench.gpu_steps import count_kernels
from icl_stl.bench.programmes import CPU_SCALE, GARG_SCALE, V2_GROUPS, shape_from_app, v2_programme
from icl_stl.cli.bench import run
from icl_stl.cli.common import load_app_config
from icl_stl.config import ModelConfig
from icl_stl.models.model import MODEL_SIZES, ICLModel
from icl_stl.persistence import read_json

TINY = ModelConfig(**MODEL_SIZES["tiny"])
# Round numbers, so that every expected value below is worked out by hand.
GPU = GpuAssumptions(gpu="H200", launch_s=10e-6, efficiency=0.5, peak_tflops=100.0,
                     memory_gib=1.0, memory_use=1.0)
COUNTS = KernelCounts(train_fixed=500, forward_fixed=100)


def test_flops_are_six_times_parameters_times_tokens_plus_attention():
    params = ICLModel(TINY, 2, 6).num_parameters(non_embedding=True)
    one = flops_per_member_step(TINY, 2, 6, 1)
    assert one == 6 * params * 12 + 12 * TINY.n_layer * 12 ** 2 * TINY.n_embd
    assert flops_per_member_step(TINY, 2, 6, 64) == pytest.approx(64 * one)
    # The attention part grows with the square of the prompt, the rest linearly.
    longer = flops_per_member_step(TINY, 2, 12, 1)
    assert longer - 2 * 6 * params * 12 == pytest.approx(4 * (one - 6 * params * 12), rel=0.02)


def test_a_step_is_launch_bound_until_the_members_flops_outweigh_the_launches():
    flops = 1e9  # per member step
    launch = GPU.launch_s * 500  # 5 ms
    crossover = launch * GPU.peak_flops() * GPU.efficiency / flops  # members: 250
    few = step_seconds(10, flops, 500, GPU)
    assert few == (pytest.approx(launch), "launch")
    seconds, bound = step_seconds(1000, flops, 500, GPU)
    assert bound == "compute" and seconds == pytest.approx(1000 * flops / 5e13)
    assert step_seconds(math.floor(crossover), flops, 500, GPU)[1] == "launch"
    assert step_seconds(math.ceil(crossover) + 1, flops, 500, GPU)[1] == "compute"


def test_a_run_too_large_for_the_memory_is_split_into_ensembles_that_fit():
    per_member = memory_per_member(TINY, 2, 6, 64)
    params = ICLModel(TINY, 2, 6).num_parameters(non_embedding=False)
    assert per_member == 16 * params + 34 * 64 * 3 * 64 * 12
    fit = int(2 ** 30 // per_member)
    assert chunks_for(fit, per_member, GPU) == 1
    assert chunks_for(fit + 1, per_member, GPU) == 2


def test_a_runs_seconds_are_generations_times_steps_times_a_step_plus_evaluation():
    shape = RunShape(name="r", model=TINY, d=2, k=6, batch=64, steps_first=100,
                     steps_later=40, generations=3, members_first=2, members_later=4, n=2000,
                     eval_prompts=500, eval_batch=250, label_batch=1000)
    counts = KernelCounts(train_fixed=500, forward_fixed=100, train_per_member=10,
                          forward_per_member=1)
    est = estimate_run(shape, counts, GPU)
    assert est.chunks == 1 and est.bound == "launch"
    # Launch-bound at 2 and 4 members: 500 + 10 K kernels a step, 100 + K a forward.
    first, later = GPU.launch_s * 520, GPU.launch_s * 540
    # Per generation: 2 evaluation batches and 2 labelling batches x 6 positions of forwards.
    eval_first, eval_later = (GPU.launch_s * (2 + 2 * 6) * fwd for fwd in (102, 104))
    assert est.seconds == pytest.approx(100 * first + 3 * 40 * later + eval_first
                                        + 3 * eval_later)
    assert shape.member_steps() == 2 * 100 + 3 * 4 * 40
    # Measured step times replace the model for training steps, per ensemble size.
    measured = estimate_run(shape, counts, GPU, measured=lambda k: 0.001 * k)
    assert measured.step_source == "measured"
    assert measured.seconds == pytest.approx(100 * 0.002 + 120 * 0.004 + eval_first
                                             + 3 * eval_later)


def test_the_programmes_share_of_peak_is_its_flops_over_its_time():
    shapes = v2_programme(CPU_SCALE, "by-lambda")
    est = estimate_programme(shapes, {s.name: COUNTS for s in shapes}, GPU)
    assert est["share_of_peak"] == pytest.approx(est["flops"] / (est["seconds"] * 1e14))
    assert est["seconds"] == pytest.approx(sum(r["seconds"] for r in est["runs"]))
    assert set(est["assumptions"]["assumed"]) == {"launch_s", "efficiency", "peak", "memory"}


def test_the_v2_programme_holds_theory_8_1s_loops():
    seeds = {lam: s for lam, (s, _) in V2_GROUPS.items()}
    assert seeds == {0.0: 10, 0.5: 20, 1.0: 20}
    (one,) = v2_programme(CPU_SCALE, "one")
    loops = 10 * 2 + 20 * 2 + 20  # lambda = 1 has one arm: its oracle twin is the same loop
    assert (one.members_first, one.members_later) == (20, loops)
    assert one.member_steps() == 20 * 6000 + 8 * loops * 6000
    split = v2_programme(CPU_SCALE, "by-lambda")
    assert sum(s.members_later for s in split) == loops
    assert sum(s.members_first for s in split) == 50  # generation 0 once per run and seed
    garg = v2_programme(GARG_SCALE, "one", steps=1000)[0]
    assert (garg.d, garg.k, garg.model.n_embd, garg.steps_later) == (20, 41, 256, 1000)


def test_a_presets_shape_is_its_members_product():
    app = load_app_config(compose_cfg("loop", "experiment=pilot/v2_d2",
                                      "members.labellers=[model,oracle]",
                                      "members.real_fractions=[0,0.5,1]"), needs_loop=True)
    shape = shape_from_app(app, "pilot")
    assert shape.members_first == 4  # generation 0 shared per seed
    assert shape.members_later == 4 * (2 + 2 + 1)
    assert (shape.steps_first, shape.steps_later, shape.generations) == (6000, 6000, 3)


def test_kernels_are_counted_per_step_and_mostly_shared_by_the_members():
    tiny = count_kernels(TINY, 2, 6)
    assert 0 <= tiny.train_per_member < tiny.train_fixed  # the member axis is batched
    assert 0 < tiny.forward(8) < tiny.train_step(8)
    deeper = count_kernels(ModelConfig(**{**MODEL_SIZES["tiny"], "n_layer": 6}), 2, 6)
    assert deeper.train_step(8) > tiny.train_step(8) and deeper.forward(8) > tiny.forward(8)


def test_the_command_writes_the_estimate_and_names_its_assumptions(tmp_path, capsys):
    out = tmp_path / "estimate.json"
    run(["--suite", "gpu-estimate", "--device", "cpu", "--programme", "v2-cpu",
         "--launch-us", "20", "--out", str(out)])
    stored = read_json(out)
    est = stored["programmes"]["v2-cpu"]
    assert stored["step_times"].startswith("modelled")
    assert est["assumptions"]["launch_s"] == pytest.approx(20e-6)
    assert est["minutes"] > 0 and est["runs"][0]["bound"] == "launch"
    assert "v2-cpu:" in capsys.readouterr().out


def test_bad_assumptions_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        run(["--suite", "gpu-estimate", "--efficiency", "1.5"])
    assert err.value.code == 2
    assert "--efficiency must be at most 1, got 1.5" in capsys.readouterr().err
