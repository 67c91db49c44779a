"""The benchmark harness runs end to end and its correctness checks hold (no timing asserts)."""

from __future__ import annotations

import pytest

from icl_stl.bench import garg_reference_model, nonembedding_flops_per_step
from icl_stl.cli.bench import parse_args, run
from icl_stl.config import ModelConfig
from icl_stl.io import read_json
from icl_stl.seeding import make_generator


def test_quick_bench_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    result = run(["--quick", "--device", "cpu", "--out", str(out)])
    stored = read_json(out)
    assert stored["command"].startswith("icl-stl-bench")
    assert {r["engine"] for r in stored["training"]} == {"batched", "garg_reference"}
    assert sorted(r["K"] for r in stored["training"] if r["engine"] == "batched") == [1, 2]
    for row in stored["training"]:
        assert row["steps_per_s"] > 0
        assert row["prompts_per_s"] == pytest.approx(row["member_steps_per_s"] * 64)
    # The fast paths are checked against their references in the same run.
    assert stored["labelling"]["max_abs_diff"] < 1e-4
    assert stored["evaluation"]["least_squares_max_abs_diff"] < 1e-4
    assert stored["generation"]["generation_1_s"] > 0
    assert result["matmul_gflops"]["square_1024"] > 0


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
