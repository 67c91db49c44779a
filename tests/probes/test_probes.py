"""The probes: twin loops share every draw but S_0, gamma is exactly 0 for identical twins and
positive otherwise, a twin matches its loop trained alone, the decay fit recovers a planted
exponent, and every probe writes its JSON and its plot (through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BIN, run_cli
from hydra import compose, initialize_config_dir

import icl_stl.loop.learners.transformer as learners_module
import icl_stl.training.engine as training_module
from icl_stl.cli.common import CONFIG_DIR
from icl_stl.cli.probe import probe_from_config
from icl_stl.config import (
    ConfigError,
    EvalConfig,
    LoopConfig,
    ModelConfig,
    ProbeConfig,
    TaskConfig,
    TrainConfig,
)
from icl_stl.data.prompts import sample_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.tasks import make_task
from icl_stl.loop.hooks import combine_hooks
from icl_stl.loop.mixing import MemberSpec
from icl_stl.loop.runner import LoopRun, LoopSettings
from icl_stl.probes import (
    StabilityHook,
    TwinPair,
    aggregate_decay,
    neighbour_set,
    perturb_first_pair,
    probe_set,
    twin_members,
)

D, K, N, INDEX = 2, 5, 16, 3
TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", f"task.d={D}", f"task.k={K}",
        f"data.n={N}", "train.steps=8", "train.batch_size=16", "train.warmup_steps=2",
        "train.log_every=4", "eval.n_prompts=32", "eval.batch_size=32", "eval.baselines=[ridge]",
        "probe.probe_prompts=32", "logger.mode=disabled"]


def tiny_settings(**loop) -> LoopSettings:
    return LoopSettings(
        TaskConfig(d=D, k=K), ModelConfig(n_layer=1, n_head=2, n_embd=16),
        TrainConfig(steps=8, batch_size=16, warmup_steps=2, log_every=4, checkpoint_every=0),
        EvalConfig(n_prompts=32, batch_size=32, baselines=["ridge"]),
        LoopConfig(generations=2, real_fraction=0.5, **loop))


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory):
    """Twins (fresh replacement) for seeds 0 and 1 plus a flipped twin of seed 0, one ensemble,
    with spies on every batch-order generator, every initialisation and every S_i."""
    tmp = tmp_path_factory.mktemp("twins")
    s = tiny_settings(real_source="fresh")
    task = make_task(s.task)
    members, pairs = twin_members(task, K, [N], [0, 1], [INDEX], 0.5, 0, "fresh")
    flip = neighbour_set(task, members[0].s0, INDEX, "flip", 0, K)
    pairs.append(TwinPair(0, len(members), INDEX))
    members.append(MemberSpec(0, 0.5, N, s0=flip, tag="flip"))
    spy = {"batch_states": [], "init": [], "datasets": []}

    class RecordingSampler(training_module.BatchSampler):
        def sample(self, d_cur, k_cur):
            spy["batch_states"].append([g.get_state() for g in self.gens])
            return super().sample(d_cur, k_cur)

    def recording_build(*args, **kwargs):
        ensemble = build(*args, **kwargs)  # NativeGPT2: every parameter is (K, ...)
        spy["init"].append({n: p.detach().clone() for n, p in ensemble.state_dict().items()})
        return ensemble

    def record_sets(generation, learner, datasets, new_synthetic):
        spy["datasets"].append(datasets)
        return [{} for _ in datasets]

    build = learners_module.build_ensemble
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training_module, "BatchSampler", RecordingSampler)
        mp.setattr(learners_module, "build_ensemble", recording_build)
        hook = combine_hooks(StabilityHook(pairs, probe_set(task, K, 32, 0)), record_sets)
        records = LoopRun(s, members, tmp / "ck", extra_metrics=hook).run()["generations"]
    return {"settings": s, "members": members, "pairs": pairs, "records": records, "spy": spy,
            "tmp": tmp}


def test_twins_share_batches_init_and_synthetic_inputs(twin_run):
    spy, members = twin_run["spy"], twin_run["members"]
    assert len(members) == 5 and len(spy["batch_states"]) == 3 * 8  # 3 generations x 8 steps
    for states in spy["batch_states"]:
        assert torch.equal(states[0], states[1]) and torch.equal(states[0], states[4])
        assert torch.equal(states[2], states[3])
        assert not torch.equal(states[0], states[2])  # other seed, other batches
    assert len(spy["init"]) == 3  # generation 0's model, built once, then one per generation
    for init in spy["init"]:
        for value in init.values():
            assert torch.equal(value[0], value[1]) and torch.equal(value[0], value[4])
            assert torch.equal(value[2], value[3])
        assert not all(torch.equal(v[0], v[2]) for v in init.values())
    s0, s0_twin = spy["datasets"][0][0], spy["datasets"][0][1]
    differs = (s0.xs != s0_twin.xs).flatten(1).any(1) | (s0.ys != s0_twin.ys).flatten(1).any(1)
    assert differs.nonzero().flatten().tolist() == [INDEX]  # S_0 and S_0': one prompt apart
    for sets in spy["datasets"][1:]:  # fresh real prompts and synthetic x's: all shared
        assert torch.equal(sets[0].xs, sets[1].xs) and torch.equal(sets[0].xs, sets[4].xs)
        assert not torch.equal(sets[0].xs, sets[2].xs)
        assert not torch.equal(sets[0].ys, sets[1].ys)  # different models label them


def test_gamma_is_positive_when_one_prompt_differs(twin_run):
    neighbours = [r for r in twin_run["records"] if r.get("twin") == "neighbour"]
    assert len(neighbours) == 3 * 3
    for r in neighbours:
        assert r["gamma_max"] > 0 and r["gamma_mean"] > 0 and r["gamma_max"] >= r["gamma_mean"]
        if r["generation"] > 0:
            assert r["syn_label_diff"] > 0


def test_each_twin_matches_its_loop_trained_alone(twin_run):
    members, tmp = twin_run["members"], twin_run["tmp"]
    alone = LoopRun(twin_run["settings"], [members[1]], tmp / "alone").run()["generations"]
    together = [r for r in twin_run["records"] if r["member"] == 1]
    for a, b in zip(alone, together, strict=True):
        for key in ("test_risk", "train_risk", "gen_gap", "syn_label_var"):
            if a[key] is None:
                assert b[key] is None
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def compose_probe(tmp_path: Path, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("probe", overrides=[*overrides, f"run.checkpoint_root={tmp_path}/ck"])


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_identical_twins_have_gamma_exactly_zero_and_cli_outputs(tmp_path):
    """The self-check through the CLI: identical twins are bit-identical (uncached labels)."""
    cfg = compose_probe(tmp_path, [*TINY, "probe=stability", "probe.replacement=identical",
                                   "loop.generations=2",
                                   "probe.seeds=[0,1]", f"probe.replaced_indices=[{INDEX}]"])
    result = probe_from_config(cfg, tmp_path / "out")
    out = json.loads((tmp_path / "out" / "stability.json").read_text())
    assert out == json.loads(json.dumps(result))
    assert [g["generation"] for g in out["generations"]] == [0, 1, 2]
    for g in out["generations"]:
        assert g["n_pairs"] == 2
        assert g["gamma_max_max"] == 0.0 and g["gamma_mean_max"] == 0.0
        assert g["test_risk_diff_max"] == 0.0
        assert g["syn_label_diff_max"] in (None, 0.0)
    assert out["identical_twins_exact"] is True
    assert_png(tmp_path / "out" / "stability.png")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # per seed: base, identical twin and the chaos control (another batch order)
    assert len(summary["members"]) == 2 * 3 and summary["probe"]["final_gamma_max"] == 0.0
    assert out["chaos_control"] == "batch_order"
    for g in out["generations"]:  # the same S_0 in another order trains another model
        assert g["chaos_gamma_mean"] > 0 and g["gamma_ratio"] == 0.0
    assert {(r["seed"], r["generation"]) for r in out["per_seed"]} == \
        {(s, g) for s in (0, 1) for g in (0, 1, 2)}
    assert len(json.loads((tmp_path / "out" / "timing.json").read_text())["generations"]) == 3


def test_identical_twins_exact_for_any_ensemble_size_with_cached_labels(tmp_path):
    """K = 6 (members 4..5 fall in a vector tail) with KV-cached labelling: every identical twin
    stays bit-identical to its base, because per-member gradient norms accumulate parameter by
    parameter and cached attention uses the math kernel (flash rounds by batch position)."""
    from icl_stl.probes import run_stability

    s = tiny_settings(kv_cache=True)
    probe = ProbeConfig(replacement="identical", replaced_indices=[0, INDEX], probe_prompts=32,
                        chaos_control="none")
    result, summary = run_stability(s, probe, [0, 1], [N], tmp_path / "ck")
    assert len(summary["members"]) == 6
    assert [g["gamma_max_max"] for g in result["generations"]] == [0.0, 0.0, 0.0]
    assert [g["syn_label_diff_max"] for g in result["generations"]] == [None, 0.0, 0.0]
    assert result["identical_twins_exact"] is True


def test_identical_twins_exact_with_predictive_sampling_and_the_oracle(tmp_path):
    """Both generators draw from the loop's shared noise streams: identical twins stay exact."""
    from icl_stl.probes import run_stability

    for labeller in ("model", "oracle"):
        s = tiny_settings(labeller=labeller)
        assert s.model.gaussian_head and s.loop.label_noise_std is None  # predictive sampling
        probe = ProbeConfig(replacement="identical", replaced_indices=[INDEX], probe_prompts=32,
                            chaos_control="none")
        result, _ = run_stability(s, probe, [0], [N], tmp_path / labeller)
        assert [g["gamma_max_max"] for g in result["generations"]] == [0.0, 0.0, 0.0]
        assert result["generations"][1]["syn_label_diff_max"] == 0.0
        assert result["identical_twins_exact"] is True


def _planted_records(exponent: float, ns, seeds, sigma: float, rng) -> list[dict]:
    """Loop-like records whose final excess risk is 3 n^exponent exp(noise)."""
    records = []
    for g in (0, 1):
        for n in ns:
            for seed in seeds:
                excess = 3.0 * n ** exponent * float(np.exp(rng.normal(0, sigma)))
                records.append({"member": len(records), "generation": g, "n": n, "seed": seed,
                                "excess_risk": excess, "test_risk": excess + 0.1,
                                "gen_gap": -0.01, "ridge_risk": 0.1})
    return records


def test_decay_aggregation_recovers_planted_exponent():
    rng = np.random.default_rng(0)
    ns, seeds = [16, 32, 64, 128, 256, 512], [0, 1, 2, 3]
    result = aggregate_decay(_planted_records(-0.5, ns, seeds, 0.1, rng))
    assert result["ci"][0] <= -0.5 <= result["ci"][1]
    assert result["slope"] == pytest.approx(-0.5, abs=0.1)
    assert result["verdict"] == "confirmed" and result["at_least_as_fast"] is True
    assert result["grid"]["meets_guideline"] is True
    assert result["fits"]["gen_gap"]["power_law"] is None  # negative gaps are not fitted
    assert set(result["per_n"]) == {str(n) for n in ns} and len(result["per_generation"]) == 2
    slow = aggregate_decay(_planted_records(-0.05, ns, seeds, 0.02, rng), fit_min_n=32)
    # slower than n^-1/4 on the range, which never refutes an upper bound
    assert slow["fit_ns"] == ns[1:] and slow["verdict"] == "inconclusive"
    assert slow["verdict_detail"]["reading"].startswith("decays slower than n^-0.25")
    assert slow["at_least_as_fast"] is False
    assert all(c >= 0 for c in (slow["bound"]["c1"], slow["bound"]["c2"], slow["bound"]["c3"]))


def test_decay_cli_with_reference_learner_writes_json_and_plot(tmp_path):
    """The Gaussian-prior learner's excess risk falls like 1/n (its prior error is d/n)."""
    cfg = compose_probe(tmp_path, [
        *TINY, "task.d=3", "probe=decay", "probe.ns=[4,8,16,32,64,128]", "probe.seeds=[0,1,2]",
        "probe.with_stability=true", "loop.learner=gaussian_prior", "loop.real_source=fresh",
        "loop.generations=2", "eval.n_prompts=256"])
    probe_from_config(cfg, tmp_path / "out")
    out = json.loads((tmp_path / "out" / "decay.json").read_text())
    assert out["metric"] == "excess_risk" and out["ns"] == [4, 8, 16, 32, 64, 128]
    assert out["slope"] < -0.25 and out["ci"][0] <= out["slope"] <= out["ci"][1]
    # 3 seeds: the interval need not lie wholly below -1/4, but it is never "slower"
    assert out["verdict"] in ("confirmed", "inconclusive") and out["grid"]["meets_guideline"]
    assert out["verdict_detail"]["significantly_slower"] is False
    assert out["fits"]["gamma_mean"]["power_law"]["slope"] < 0  # gamma shrinks with n
    assert len(out["per_generation"]) == 3
    assert_png(tmp_path / "out" / "decay.png")
    records = json.loads((tmp_path / "out" / "summary.json").read_text())["generations"]
    assert all("prior_mean_err2" in r for r in records)


def test_in_context_cli_writes_json_and_plot_every_generation(tmp_path):
    cfg = compose_probe(tmp_path, [*TINY, "probe=in_context", "loop.generations=1",
                                   "probe.seeds=[0,1]"])
    probe_from_config(cfg, tmp_path / "out")
    out = json.loads((tmp_path / "out" / "in_context.json").read_text())
    assert [g["generation"] for g in out["generations"]] == [0, 1]
    for g in out["generations"]:
        assert g["positions"] == list(range(2, K + 1)) and g["loops"] == 2
        assert all(v > 0 for v in g["abs_change"])
        fit = g["linear_fit"]
        assert fit["method"] == "seeds" and fit["ci_low"] <= fit["slope"] <= fit["ci_high"]
    assert_png(tmp_path / "out" / "in_context.png")


def test_perturb_first_pair_flips_only_the_first_example():
    task = make_task(TaskConfig(d=D, k=K))
    prompts = sample_prompts(task, 8, K, make_generator(0, "p"))
    flipped = perturb_first_pair(prompts, task, make_generator(0, "f"))
    assert torch.equal(flipped.xs[:, 1:], prompts.xs[:, 1:])
    assert torch.equal(flipped.ys[:, 1:], prompts.ys[:, 1:])
    assert not torch.equal(flipped.xs[:, 0], prompts.xs[:, 0])
    torch.testing.assert_close(flipped.ys[:, 0], -task.f(prompts.params, flipped.xs[:, :1])[:, 0])


@pytest.mark.parametrize("override, field", [
    ("members.seeds=[0,1]", "members.seeds"),
    ("probe.replaced_indices=[16]", "probe.replaced_indices[0]"),
    ("probe.replacement=swap", "probe.replacement"),
    ("+probe.typo=1", "probe has unknown setting"),
])
def test_probe_config_errors_name_the_field(tmp_path, override, field):
    cfg = compose_probe(tmp_path, [*TINY, override])
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        probe_from_config(cfg, tmp_path / "out")


@pytest.mark.parametrize("kind", ["stability", "decay", "in_context", "dose_response"])
def test_members_labellers_is_refused_naming_it_before_anything_trains(tmp_path, kind):
    """The probes pair their own members, so `members.labellers` (which icl-stl-loop honours)
    is refused, not silently dropped: one line with the setting and its value, nothing written."""
    cfg = compose_probe(tmp_path, [*TINY, f"probe={kind}", "members.labellers=[model,oracle]"])
    with pytest.raises(ConfigError) as info:
        probe_from_config(cfg, tmp_path / "out")
    message = str(info.value)
    assert message.startswith("members.labellers must be null"), message
    assert "['model', 'oracle']" in message and "loop.labeller" in message and "\n" not in message
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


# members.<key>=<override>, the value as the refusal prints it, and the setting it points to.
MEMBERS_LISTS = [("seeds", "[0,1]", "[0, 1]", "probe.seeds"),
                 ("ns", "[16,32]", "[16, 32]", "probe.ns"),
                 ("real_fractions", "[0,0.5]", "[0, 0.5]", "probe.real_fractions"),
                 ("augments", "[0,4]", "[0, 4]", "loop.augment")]


@pytest.mark.parametrize("kind", ["stability", "dose_response"])
@pytest.mark.parametrize("key, override, shown, instead", MEMBERS_LISTS)
def test_each_members_list_is_refused_naming_its_key_and_value(tmp_path, kind, key, override,
                                                               shown, instead):
    """members.seeds, .ns, .real_fractions and .augments (which icl-stl-loop honours) are each
    refused by their own name and value, one line, before anything is written."""
    cfg = compose_probe(tmp_path, [*TINY, f"probe={kind}", f"members.{key}={override}"])
    with pytest.raises(ConfigError) as info:
        probe_from_config(cfg, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"members.{key} must be null for icl-stl-probe"), message
    assert message.endswith(f", got {shown}") and instead in message and "\n" not in message
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


# Through the CLI (about 4 s of CPU each): labellers and the last list probe_config checks.
@pytest.mark.parametrize("key, value, shown", [
    ("labellers", "[model,oracle]", "['model', 'oracle']"), MEMBERS_LISTS[-1][:3]])
def test_members_lists_exit_2_through_the_cli_before_anything_is_written(tmp_path, key, value,
                                                                         shown):
    proc = run_cli(str(BIN / "icl-stl-probe"), *TINY, f"members.{key}={value}",
                   f"run.checkpoint_root={tmp_path}/ck", f"hydra.run.dir={tmp_path}/out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    stderr = proc.stderr.strip()
    assert "\n" not in stderr and f"members.{key} must be null" in stderr, stderr
    assert shown in stderr, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("redraw", [False, True])
def test_batch_order_control_keeps_every_generations_prompts(tmp_path, redraw):
    """The chaos control sees S_0 in another order and, every generation, the same reused real
    prompts: the reference learner's fit ignores order, so its control is gamma-exact 0, while a
    control under another seed differs."""
    from icl_stl.probes import run_stability

    s = tiny_settings(learner="gaussian_prior", redraw_real=redraw)
    s.loop.generations = 3
    task = make_task(s.task)
    members, pairs = twin_members(task, K, [N], [0], [INDEX], 0.5, 0, "fresh",
                                  control="batch_order", loop=s.loop)
    control, base = members[pairs[-1].neighbour], members[0]
    assert pairs[-1].kind == "control" and control.seed == base.seed
    assert not torch.equal(control.s0.xs, base.s0.xs)  # another order ...
    assert sorted(control.s0.ys.flatten().tolist()) == sorted(base.s0.ys.flatten().tolist())
    for name in ("batch_order", "seed"):
        probe = ProbeConfig(replaced_indices=[INDEX], probe_prompts=32, chaos_control=name)
        result, _ = run_stability(s, probe, [0, 1], [N], tmp_path / name)
        chaos = [g["chaos_gamma_max"] for g in result["generations"]]
        if name == "batch_order":  # ... of the same prompts, generation after generation
            # (up to float32 storage of the synthetic labels: a reused subset that differed by
            # one prompt would move mu by about 1/n)
            assert max(chaos) < 1e-6, chaos
        else:  # generation 0 fits S_0 alone (no randomness); later ones label other draws
            assert chaos[0] < 1e-6 and min(chaos[1:]) > 1e-3, chaos
        assert all(r["chaos_gamma_mean"] is not None for r in result["per_seed"])
