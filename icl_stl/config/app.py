"""A whole entry point's settings (`AppConfig`: every section, the run and its members) and the
probe's."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import field
from typing import Annotated, Any

from pydantic import Strict, model_validator

from icl_stl.config.fields import (
    NO_REPEATS,
    Bool,
    Choice,
    Float,
    Int,
    List,
    NonEmpty,
    Number,
    Str,
    check_int,
    ensure,
    fail,
    from_container,
    revalidate,
    settings,
)
from icl_stl.config.loop import LABELLERS, LoopConfig
from icl_stl.config.sections import (
    DataConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    RuntimeConfig,
    TaskConfig,
    TrainConfig,
)

log = logging.getLogger(__name__)


def _plain_name(name: str | None) -> bool:
    return name is None or (bool(name) and "/" not in name and not name.startswith("."))


@settings("run")
class RunConfig:
    """Naming and places. A run's name keys its checkpoints: the same name resumes."""

    # null: derived from a hash of the settings, so a rerun resumes
    name: Annotated[Str | None, ensure(_plain_name, "a plain non-empty name without '/'")] = None
    checkpoint_root: Annotated[Str, ensure(bool, "a directory path")] = "checkpoints"
    resume: Bool = True  # false: refuse to start over an existing checkpoint of the same name


NOT_EMPTY = NonEmpty("a non-empty list or null")


@settings("members")
class MembersConfig:
    """Loops trained together as one ensemble: the product of these lists (null: the single
    value from seed, loop.real_fraction, data.n, loop.augment, loop.labeller)."""

    seeds: List(Int(0), NOT_EMPTY) | None = None
    # As written ([0, 0.5, 1]): the names of committed runs (loop-28cc699237) hash this list.
    real_fractions: List(Number(0.0, 1.0), NOT_EMPTY) | None = None
    ns: List(Int(1, 1 << 26), NOT_EMPTY) | None = None
    augments: List(Int(0), NOT_EMPTY) | None = None
    # [model, oracle]: each loop beside its matched control, the same loop labelled by the
    # oracle (same seed, lambda, n, m: the same S_0, initialisation, batches and x's)
    labellers: List(Choice(LABELLERS), NOT_EMPTY, NO_REPEATS) | None = None


@settings("")
class AppConfig:
    """Everything an entry point reads, parsed from the Hydra config and validated together."""

    seed: Int(0, (1 << 63) - 1) = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loop: LoopConfig | None = None
    members: MembersConfig = field(default_factory=MembersConfig)
    probe: Annotated[dict, Strict()] | None = None  # parsed by the probe entry point

    @model_validator(mode="after")
    def _check(self) -> AppConfig:
        curriculum, task = self.train.curriculum, self.task
        if curriculum.enabled:
            check_int("train.curriculum.d_start", curriculum.d_start, 1, task.d)
            check_int("train.curriculum.k_start", curriculum.k_start, 1, task.k)
            if curriculum.d_start < task.d and self.data.n is not None:
                fail("train.curriculum.d_start", curriculum.d_start,
                     f"task.d={task.d} when training on a finite set (data.n={self.data.n}): "
                     f"a curriculum over d needs fresh prompts (data.n=null)")
        held = self.train.held_out_fraction
        if held > 0:  # early stopping holds out part of S_0: there must be one to split
            for n in self.members.ns or [self.data.n]:
                if n is None:
                    fail("train.held_out_fraction", held, "0 with data.n=null (early stopping "
                         "holds out part of a finite S_0)")
                if not 1 <= round(held * n) < n:
                    fail("train.held_out_fraction", held, f"a share leaving at least one "
                         f"held-out and one training prompt of n={n}")
        if self.loop is not None:
            self._check_steps_scale()
            for n in self.members.ns or [self.data.n]:
                for lam in self.members.real_fractions or [self.loop.real_fraction]:
                    dataclasses.replace(self.loop, real_fraction=lam).validate(
                        "loop", n, self.task, self.model, self.members.labellers)
            self._check_real_weight()
        return self

    def _check_real_weight(self) -> None:
        """loop.real_weight for every member's lambda, n and augmentation m (a member whose
        S_i has no real, or no synthetic, part cannot weigh it)."""
        loop = self.loop
        if loop.real_weight is None or not self.members.augments:
            return  # with loop.augment alone, LoopConfig.validate has checked it
        for n in self.members.ns or [self.data.n]:
            for lam in self.members.real_fractions or [loop.real_fraction]:
                for m in self.members.augments:
                    member = dataclasses.replace(loop, real_fraction=lam, augment=m)
                    member._check_real_weight("loop", n, member.real_counts(lam, n))

    def _check_steps_scale(self) -> None:
        """loop.steps_scale=per_prompt scales a transformer's steps with |S_i|: refused for a
        learner without a step budget. (With m = 0 and replace it equals fixed: allowed, so
        that debug=default, which sets every m to 0, combines with a per_prompt preset.)"""
        loop = self.loop
        if loop.steps_scale == "per_prompt" and loop.learner != "transformer":
            fail("loop.steps_scale", loop.steps_scale,
                 f"'fixed' with loop.learner={loop.learner} (it has no step budget to scale)")


def parse_app_config(data: Any, *, needs_loop: bool = False) -> AppConfig:
    """A validated AppConfig from a plain (resolved) dict; ConfigError names any bad field."""
    if isinstance(data, dict | None):
        data = {k: v for k, v in (data or {}).items() if k != "experiment"}  # preset: informative
        if needs_loop and data.get("loop") is None:
            data["loop"] = {}
    cfg = from_container(AppConfig, data, "")
    if cfg.train.warmup_steps > cfg.train.steps:
        # Legal (a short test run), but rarely meant: say so rather than accept it silently.
        log.warning("train.warmup_steps=%d exceeds train.steps=%d: the learning rate never "
                    "reaches train.lr=%g", cfg.train.warmup_steps, cfg.train.steps, cfg.train.lr)
    return cfg


PROBE_KINDS = ("stability", "decay", "in_context", "dose_response")
REPLACEMENTS = ("fresh", "flip", "identical")
CHAOS_CONTROLS = ("batch_order", "seed", "none")
FIT_METRICS = ("excess_risk", "test_risk")


@settings("probe")
class ProbeConfig:
    """Settings of `icl-stl-probe` (parsed from AppConfig.probe by the probe entry point)."""

    kind: Choice(PROBE_KINDS) = "stability"
    seeds: List(Int(0), NOT_EMPTY, NO_REPEATS) | None = None  # null: the run's single `seed`
    replaced_indices: List(Int(0), NonEmpty(), NO_REPEATS) = field(  # which prompts of S_0
        default_factory=lambda: [0])
    # fresh prompt | flip (labels negated) | identical (self-check)
    replacement: Choice(REPLACEMENTS) = "fresh"
    probe_prompts: Int(1, 1 << 20) = 256  # fixed real prompts gamma (or the change) is read on
    # stability: the chaos control twin gamma is read against (batch_order: the same S_0 in
    # another order, so other batches; seed: S_0 under another seed, so another init too)
    chaos_control: Choice(CHAOS_CONTROLS) = "batch_order"
    ns: List(Int(1), NOT_EMPTY, NO_REPEATS) | None = None  # decay: the grid of n (null: data.n)
    with_stability: Bool = False  # decay: also run twins, to fit gamma against n
    fit_metric: Choice(FIT_METRICS) = "excess_risk"  # decay: what the verdict is drawn from
    fit_min_n: Int(1) = 1  # decay: fit only n >= this (the bound is asymptotic)
    level: Float(0.0, 0.999999, lo_open=True) = 0.95  # confidence level of every interval
    # dose_response: the fractions q of S_0 replaced (q n must be a whole number of prompts),
    # the batch orders per loop (order 1..: the chaos twins) and the lambdas run side by side
    # (null: loop.real_fraction), which share generation 0
    fractions: List(Number(0.0, 0.999999), NOT_EMPTY, NO_REPEATS) = field(
        default_factory=lambda: [0.003, 0.01, 0.03])
    orders: Int(2, 16) = 2
    real_fractions: List(Number(0.0, 1.0), NOT_EMPTY, NO_REPEATS) | None = None

    def validate(self, n_values: list[int], path: str = "probe") -> None:
        """Check what depends on `n_values`, the sample sizes the probe will run."""
        revalidate(self, path)
        if self.kind == "dose_response":
            self._validate_dose(n_values, path)
            return
        for i, index in enumerate(self.replaced_indices):
            check_int(f"{path}.replaced_indices[{i}]", index, 0, min(n_values) - 1)
        if self.kind == "decay":
            fitted = [n for n in n_values if n >= self.fit_min_n]
            # An interval over seeds needs 2 sizes; a regression interval (one seed) needs 3.
            need = 2 if self.seeds is not None and len(self.seeds) >= 2 else 3
            if len(set(fitted)) < need:
                fail(f"{path}.ns", self.ns, f"at least {need} distinct values >= "
                     f"probe.fit_min_n={self.fit_min_n} for a decay fit")

    def _validate_dose(self, n_values: list[int], path: str) -> None:
        """A slope in q needs 2 fractions; each replaces a whole number of prompts, 1..n-1."""
        if len(self.fractions) < 2:
            fail(f"{path}.fractions", self.fractions, "at least 2 fractions for a dose slope")
        for n in n_values:
            for i, q in enumerate(self.fractions):
                count = q * n
                if abs(count - round(count)) > 1e-9 or not 1 <= round(count) <= n - 1:
                    fail(f"{path}.fractions[{i}]", q, f"a fraction whose q n is a whole number "
                         f"of prompts from 1 to n-1 at n={n} (q n = {count:g})")
        if self.chaos_control != "batch_order":
            fail(f"{path}.chaos_control", self.chaos_control,
                 "batch_order for probe.kind=dose_response (its chaos twin shares everything "
                 "but the batch order)")
