"""The benchmark harness runs end to end and its correctness checks hold (no timing asserts)."""

from __future__ import annotations

import pytest

from icl_stl.bench.speed import garg_reference_model, nonembedding_flops_per_step
from icl_stl.cli.bench import parse_args, run
from icl_stl.config import ModelConfig
from icl_stl.data.seeding import make_generator
from icl_stl.persistence import read_json


def test_quick_bench_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    result = run(["--quick", "--device", "cpu", "--out", str(out)])
    stored = read_json(out)
    assert stored["command"].startswith("icl-stl-bench")
    assert {r["engine"] for r in stored["training"]} == {"native", "garg_reference"}
    assert sorted(r["K"] for r in stored["training"] if r["engine"] == "native") == [1, 2]
    for row in stored["training"]:
        assert row["steps_per_s"] > 0
        assert row["prompts_per_s"] == pytest.approx(row["member_steps_per_s"] * 64)
    # The fast paths are checked against their references in the same run.
    assert stored["labelling"]["max_abs_diff"] < 1e-4
    assert stored["evaluation"]["least_squares_max_abs_diff"] < 1e-4
    assert stored["generation"]["generation_1_s"] > 0
    assert result["matmul_gflops"]["square_1024"] > 0


def test_bench_without_a_single_model_states_no_targets(tmp_path):
    """--ks without 1 (e.g. 25 50, the reproduction's ensemble sizes) measures and writes
    every rate; the single-model targets are left empty rather than crashing at the end."""
    out = tmp_path / "bench.json"
    run(["--quick", "--device", "cpu", "--ks", "2", "--out", str(out)])
    stored = read_json(out)
    assert sorted(r["K"] for r in stored["training"] if r["engine"] == "native") == [2]
    assert stored["cpu_targets"] == {}


def test_reference_backbone_is_configured_like_garg_et_al():
    cfg = ModelConfig()
    ref = garg_reference_model(cfg, 5, 11, make_generator(0))
    gpt2 = ref.backbone.gpt2
    assert gpt2.wte.weight.shape[0] == 50257
    assert gpt2.config._attn_implementation == "eager"
    # Its non-embedding parameter count equals ours: the FLOP estimate is the same model.
    assert nonembedding_flops_per_step(cfg, 5, 11, 64) == 6.0 * ref.num_parameters() * 64 * 22


@pytest.mark.parametrize("flag,value", [("--batch", "0"), ("--d", "-1"), ("--budget", "-2")])
def test_bench_rejects_bad_arguments(flag, value, capsys):
    with pytest.raises(SystemExit) as err:
        parse_args([flag, value])
    assert err.value.code == 2
    assert flag in capsys.readouterr().err


def test_ridge_suite_times_the_default_recipe_against_garg(tmp_path):
    out = tmp_path / "ridge.json"
    run(["--suite", "ridge", "--quick", "--device", "cpu", "--ridge-cases", "demo",
         "--out", str(out)])
    stored = read_json(out)
    assert stored["suite"] == "ridge" and stored["command"].startswith("icl-stl-bench")
    runs = stored["runs"]
    assert {(r["data"], r["recipe"]) for r in runs} == {
        (data, recipe) for data in ("fresh", "n2000") for recipe in ("default", "garg")}
    for r in runs:
        assert r["case"] == "demo" and r["cap_s"] == 1.0
        assert r["steps_run"] > 0 and r["curve"][-1][0] == r["steps_run"]
        assert r["reached"] == (r["steps"] is not None)
        assert r["threshold"] == pytest.approx(r["ridge_risk"] + 0.1 * (r["zero_risk"]
                                                                        - r["ridge_risk"]))


def test_every_ablation_row_composes_into_valid_settings():
    from icl_stl.bench.ridge import ABLATION, CASES, DATA, compose_app
    from icl_stl.cli.common import CONFIG_DIR

    settings = [compose_app(CONFIG_DIR, [*CASES["demo"], *DATA["fresh"], *overrides])
                for _, overrides in ABLATION]
    garg, adamw, batch, default, gpt2_init, two_heads = settings
    assert (garg.train.optimizer, garg.train.lr, garg.train.batch_size) == ("adam", 1e-4, 64)
    assert garg.train.schedule == "constant" and not garg.train.curriculum.enabled
    assert garg.train.grad_clip == 0 and garg.model.init == "torch_default"
    assert (adamw.train.optimizer, adamw.train.lr, adamw.train.batch_size) == ("adamw", 1e-3, 64)
    assert batch.train.batch_size == 128 and batch.train.schedule == "constant"
    # The row labelled the default recipe is what `icl-stl-train` runs with no overrides, for the
    # squared-error learner (every row has no Gaussian head).
    plain = compose_app(CONFIG_DIR, ["model.gaussian_head=false"])
    assert (default.train, default.model) == (plain.train, plain.model)
    assert not any(s.model.gaussian_head for s in settings)
    assert default.train.schedule == "cosine"
    assert (default.train.lr, default.train.batch_size, default.model.n_head) == (1e-3, 128, 4)
    assert gpt2_init.model.init == "gpt2" and gpt2_init.train == default.train
    assert two_heads.model.n_head == 2 and two_heads.train == default.train


def test_head_suite_compares_the_losses_of_the_gaussian_head(tmp_path):
    from icl_stl.bench.ridge import CASES, DATA, HEAD, compose_app
    from icl_stl.cli.common import CONFIG_DIR

    mse, one, default, plain = [compose_app(CONFIG_DIR, [*CASES["demo"], *DATA["fresh"], *o])
                                 for _, o in HEAD]
    assert not mse.model.gaussian_head and default.model.gaussian_head
    # the row labelled the default is what icl-stl-train runs
    assert (default.model, default.train) == (compose_app(CONFIG_DIR, []).model,
                                              compose_app(CONFIG_DIR, []).train)
    assert (one.train.nll_beta, default.train.nll_beta, plain.train.nll_beta) == (1.0, 0.5, 0.0)
    out = tmp_path / "head.json"
    run(["--suite", "head", "--quick", "--device", "cpu", "--ridge-seeds", "0",
         "--out", str(out)])
    runs = read_json(out)["runs"]
    assert [r["change"] for r in runs] == [label for label, _ in HEAD]
    assert all(r["case"] == "demo" and r["steps_run"] > 0 for r in runs)


def test_warm_start_suite_times_generation_1_from_generation_0(tmp_path):
    out = tmp_path / "warm.json"
    run(["--suite", "warm_start", "--quick", "--device", "cpu", "--ridge-seeds", "0",
         "--out", str(out)])
    (row,) = read_json(out)["runs"]
    assert row["n"] == 64 and row["real_fraction"] == 0.5 and row["loop_steps"] == 20
    # --quick bounds generation 1 by steps only: a seconds cap cut it short on a loaded CI
    assert row["cap_s"] is None
    assert row["generation_0_risk"] > 0
    assert row["generation_0_reached"] == (row["generation_0_gap_closed"] >= 0.9)
    # generation 1 is evaluated from its first logging step and trains its whole budget
    assert [point[0] for point in row["curve"]] == [10, 20] and row["steps_run"] == 20
    assert row["generation_1_final_reached"] == (row["gap_closed"] >= 0.9)
    assert row["reached"] == (row["steps"] is not None)
