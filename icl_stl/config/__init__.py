"""Typed, validated run configuration.

Every settings class checks itself when built: from Python (`TaskConfig(d=-1)`) or from the plain
dict an entry point makes of its Hydra ``DictConfig`` (:func:`from_container`,
:func:`parse_app_config`). An unknown key, a wrong type or an out-of-domain value is a
:class:`ConfigError` of one line that names the dotted setting and its value ("task.d must be an
integer in [1, 4096], got -1"), before anything is trained or written. A field's annotation is
its domain (`Int(1, 4096)`, icl_stl/config/fields.py); `_check` methods relate fields. They are
(pydantic) dataclasses: `dataclasses.asdict` and `dataclasses.replace` work, and a replaced value
is checked too. Every core function takes these classes (or plain arguments), never a DictConfig.
"""

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
    ConfigError,
    Float,
    Int,
    List,
    NonEmpty,
    Number,
    Str,
    ensure,
    fail,
    revalidate,
    settings,
)
from icl_stl.config.fields import check_choice as check_choice
from icl_stl.config.fields import check_float as check_float
from icl_stl.config.fields import check_int as check_int
from icl_stl.config.fields import from_container as from_container
from icl_stl.config.fields import to_container as to_container
from icl_stl.config.schedules import ROUNDINGS, RealSchedule, real_count
from icl_stl.config.schedules import SCHEDULES as REAL_SCHEDULES

log = logging.getLogger(__name__)

TASK_NAMES = ("linear_regression", "noisy_linear_regression", "sparse_linear_regression",
              "relu_2nn_regression")
ARCHS = ("gpt2", "lstm", "mlp")
ATTN_IMPLS = ("sdpa", "eager")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("native", "reference")
MODEL_INITS = ("gpt2", "torch_default")
LOGGER_MODES = ("offline", "online", "disabled")
BASELINES = ("least_squares", "ridge", "averaging", "knn", "zero")
GAUSSIAN_PRIOR_TASKS = ("linear_regression", "noisy_linear_regression")


@settings("task")
class TaskConfig:
    """The function class prompts are drawn from, and the prompt shape."""

    name: Choice(TASK_NAMES) = "linear_regression"
    d: Int(1, 4096) = 5  # input dimension
    k: Int(1, 4096) = 11  # (x, y) pairs per prompt
    w_scale: Float(0.0, lo_open=True) = 1.0  # w ~ N(0, w_scale^2 I)
    noise_std: Float(0.0) = 0.0  # y = f(x) + N(0, noise_std^2)
    sparsity: Int(1) = 3  # nonzero weights, sparse_linear_regression only
    hidden: Int(1) = 100  # hidden units, relu_2nn_regression only
    # null: every prompt draws its own task from the prior; M: real prompts draw their task
    # uniformly from a pool of M drawn once from the run's seed (icl_stl/data/task_pool.py)
    n_tasks: Int(1) | None = None

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if self.name == "sparse_linear_regression":
            check_int("task.sparsity", self.sparsity, 1, self.d)
        if self.name == "noisy_linear_regression" and self.noise_std == 0:
            fail("task.noise_std", self.noise_std, "> 0 for noisy_linear_regression")
        if self.n_tasks is not None and self.name == "relu_2nn_regression":
            fail("task.n_tasks", self.n_tasks,
                 f"null for task {self.name!r} (dMMSE, the pool's Bayes predictor, needs a "
                 f"linear task)")
        return self


@settings("model")
class ModelConfig:
    """The in-context learner: read-in, backbone, read-out."""

    arch: Choice(ARCHS) = "gpt2"
    n_layer: Int(1, 96) = 3
    n_head: Int(1, 128) = 4
    n_embd: Int(1, 16384) = 64
    dropout: Float(0.0, 0.99) = 0.0
    # Predict (mean, log-variance), trained by beta-NLL (train.nll_beta): the loop's generator
    # samples labels from it. false: the mean alone, trained by squared error.
    gaussian_head: Bool = True
    attn_implementation: Choice(ATTN_IMPLS) = "sdpa"  # or eager: softmax(q k^T) v written out
    # native: GPT-2 written with a member axis (icl_stl.models.gpt2); reference: one ICLModel per
    # member, run one after another (transformers GPT2Model for gpt2; any arch).
    engine: Choice(ENGINES) = "native"
    init: Choice(MODEL_INITS) = "torch_default"  # read-in/read-out: nn.Linear's, or gpt2

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            fail("model.n_embd", self.n_embd, f"a multiple of model.n_head={self.n_head}")
        if self.engine == "native" and self.arch != "gpt2":
            fail("model.engine", self.engine,
                 f"'reference' for model.arch={self.arch!r} (the native engine is GPT-2 only)")
        return self


@settings("train.curriculum")
class CurriculumConfig:
    """Garg et al.'s curriculum: start with fewer dimensions and pairs, grow every `interval`."""

    enabled: Bool = False
    d_start: Int(1) = 1
    d_step: Int(1) = 1
    k_start: Int(1) = 3
    k_step: Int(1) = 2
    interval: Int(1) = 100


@settings("train")
class TrainConfig:
    """Optimisation of one model (one generation of the loop)."""

    # The defaults are conf/train/default.yaml's recipe (chosen by time to ridge).
    steps: Int(1) = 5000
    batch_size: Int(1, 1 << 20) = 128
    lr: Float(0.0, 10.0, lo_open=True) = 1e-3
    optimizer: Choice(OPTIMIZERS) = "adamw"
    weight_decay: Float(0.0, 10.0) = 0.0
    beta1: Float(0.0, 0.999999) = 0.9
    beta2: Float(0.0, 0.999999) = 0.999
    warmup_steps: Int(0) = 100
    schedule: Choice(SCHEDULES) = "cosine"
    min_lr_ratio: Float(0.0, 1.0) = 0.1
    grad_clip: Float(0.0) = 1.0  # max global grad norm per model; 0 disables
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    log_every: Int(1) = 50  # metrics are gathered from the device only this often
    checkpoint_every: Int(0) = 200  # steps between mid-training checkpoints; 0 = only at the end
    max_bad_steps: Int(0) = 0  # non-finite losses tolerated (step skipped) before the run stops
    nll_beta: Float(0.0, 1.0) = 0.5  # Gaussian head only: beta of the beta-NLL loss (0: NLL)


@settings("data")
class DataConfig:
    """The training data of generation 0: a finite set S_0 of n prompts, or a fresh stream."""

    n: Int(1, 1 << 26) | None = 256  # the theorem's n; null: an endless stream of fresh prompts


@settings("eval")
class EvalConfig:
    n_prompts: Int(1, 1 << 24) = 1280  # fresh real prompts for test risk
    batch_size: Int(1, 1 << 24) = 1280
    baselines: List(Choice(BASELINES)) = field(default_factory=lambda: list(BASELINES))
    knn_neighbours: Int(1) = 3
    ridge_alpha: Float(0.0) | None = None  # null: Bayes-optimal noise_std^2 / w_scale^2


@settings("runtime")
class RuntimeConfig:
    """Where and how tensors are computed. Defaults adapt to the device."""

    device: Choice(DEVICES) = "auto"
    bf16: Bool | None = None  # null: on for CUDA, off (exact fp32) on CPU
    tf32: Bool | None = None
    fused_adam: Bool | None = None
    compile: Bool = False
    threads: Int(1, 1024) | None = None  # torch intra-op threads; null leaves torch's default


@settings("logger")
class LoggerConfig:
    mode: Choice(LOGGER_MODES) = "offline"
    project: Annotated[Str, ensure(bool, "a non-empty string")] = "icl-stl"
    group: Str | None = None
    tags: List(Str) = field(default_factory=list)
    init_timeout_s: Float(0.0, lo_open=True) = 30.0
    member_runs: Int(0) = 50  # at most this many loops get their own W&B run (0: none)


REAL_SOURCES = ("reuse", "fresh")
SYNTHETIC_MODES = ("replace", "accumulate")
INIT_MODES = ("from_scratch", "warm_start")
LABEL_MODES = ("sample", "context", "mean")
LEARNERS = ("transformer", "gaussian_prior")
LABELLERS = ("model", "oracle")
FILTERS = ("none", "confidence", "verifier")  # icl_stl/loop/filters.py
VERIFIER_SOURCES = ("s0", "real")


@settings("loop")
class LoopConfig:
    """The self-consuming loop. Generation 0 trains on S_0; generations 1..`generations` on S_i."""

    generations: Int(0, 10_000) = 5  # self-consuming generations after generation 0
    real_fraction: Float(0.0, 1.0) = 0.5  # lambda: share of the n prompts of S_i that are real
    rounding: Choice(ROUNDINGS) = "exact"  # how lambda n becomes a count; exact: a whole number
    real_source: Choice(REAL_SOURCES) = "reuse"  # reuse: a subset of S_0; fresh: new prompts
    redraw_real: Bool = False  # reuse only: draw a new subset of S_0 every generation
    synthetic: Choice(SYNTHETIC_MODES) = "replace"  # replace: generation i-1's; accumulate: all
    augment: Int(0) = 0  # m extra synthetic prompts on top of n
    init: Choice(INIT_MODES) = "from_scratch"  # or warm_start from generation i-1
    # Generations >= 1 have their own budget: with init=warm_start it is what a generation
    # spends refining its predecessor. null: train.steps (and train.warmup_steps); every
    # generation builds a new optimizer, so its learning rate warms up again unless
    # warmup_steps says otherwise (0: start at the full rate).
    steps: Int(1) | None = None  # step budget of generations >= 1 (null: train.steps)
    warmup_steps: Int(0) | None = None  # warm-up of generations >= 1 (null: train.warmup_steps)
    # The generator: "model" labels with the trained learner; "oracle" samples the true
    # posterior predictive (icl_stl/loop/oracle.py), the control whose prompts are real-like.
    labeller: Choice(LABELLERS) = "model"
    # sample: draw each label from the predictive distribution, fed back as context; context:
    # c real pairs, then the model's; mean: the predicted mean (no generator: no spread)
    label_mode: Choice(LABEL_MODES) = "sample"
    # null: the Gaussian head's own predicted scale (predictive sampling); a number: that fixed
    # scale around the predicted mean (a degenerate generator: it shrinks the label variance)
    label_noise_std: Float(0.0) | None = None
    context_pairs: Int(0) = 2  # c: real pairs opening each synthetic prompt (context mode)
    context_noise: Bool = False  # context mode: add label noise to the model's labels
    kv_cache: Bool = True  # label with cached keys/values (native GPT-2 only)
    label_batch_size: Int(1) = 4096
    learner: Choice(LEARNERS) = "transformer"
    prior_covariance: Bool = False  # gaussian_prior: also re-estimate the covariance of w
    # Train generation 0 once per distinct (seed, S_0) and copy it to every member sharing them
    # (the lambdas of one seed): the same numbers, less work. false: one per member.
    share_generation_0: Bool = True
    # lambda_i of generation i >= 1 (icl_stl/config/schedules.py): constant (real_fraction),
    # or decayed linearly / exponentially from real_fraction by `rate` per generation, never
    # below `floor`. The defaults leave a run's identity as it is (`EXTENSION_DEFAULTS`).
    real_schedule: Choice(REAL_SCHEDULES) = "constant"
    real_schedule_rate: Float(0.0) = 0.0
    real_schedule_floor: Float(0.0, 1.0) = 0.0
    # Filters on synthetic data (icl_stl/loop/filters.py): label ceil(m / filter_keep) prompts
    # and keep the m the filter scores best (or, with filter_threshold, the first m scoring
    # <= it). confidence: the Gaussian head's predicted variance; verifier: ridge centred on
    # the tasks of real prompts (icl_stl/loop/verifier.py).
    filter: Choice(FILTERS) = "none"
    filter_keep: Float(0.0, 1.0, lo_open=True) = 1.0
    filter_threshold: Float(0.0) | None = None  # null: keep the best fraction
    verifier_source: Choice(VERIFIER_SOURCES) = "s0"  # s0 (works at lambda = 0) or real part
    verifier_n_real: Int(1) | None = None  # fit on this many real prompts (null: all)
    verifier_label_noise_std: Float(0.0) = 0.0  # degrade: noise on the labels it reads
    verifier_centre_noise_std: Float(0.0) = 0.0  # degrade: noise on its knowledge centre

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.labeller == "oracle" and self.label_mode == "mean":
            fail("loop.label_mode", self.label_mode,
                 "'sample' or 'context' with loop.labeller=oracle (the oracle samples)")
        if self.filter == "none":
            for key in ("filter_keep", "filter_threshold"):
                if getattr(self, key) != EXTENSION_DEFAULTS["loop"][key]:
                    fail(f"loop.{key}", getattr(self, key),
                         f"{EXTENSION_DEFAULTS['loop'][key]} with loop.filter=none "
                         f"(a setting that would do nothing)")
        if self.real_schedule == "constant":
            for key in ("real_schedule_rate", "real_schedule_floor"):
                if getattr(self, key) != 0:
                    fail(f"loop.{key}", getattr(self, key),
                         "0 with loop.real_schedule=constant (a setting that would do nothing)")
        if self.filter == "confidence" and self.learner == "gaussian_prior":
            fail("loop.filter", self.filter, "'none' or 'verifier' with "
                 "loop.learner=gaussian_prior (its predictive variance ignores the labels)")
        if self.filter == "confidence" and self.labeller == "oracle":
            fail("loop.filter", self.filter, "'none' or 'verifier' with loop.labeller=oracle")
        return self

    def schedule(self, lambda0: float, path: str = "loop") -> RealSchedule:
        """The real-data schedule of a member whose real_fraction is lambda0, validated."""
        return RealSchedule(self.real_schedule, lambda0, self.real_schedule_rate,
                            self.real_schedule_floor, path)

    def real_counts(self, lambda0: float, n: int, path: str = "loop") -> list[int]:
        """Real prompts of S_1..S_generations for a member with real_fraction lambda0 and n."""
        return self.schedule(lambda0, path).counts(n, self.generations, self.rounding)[1:]

    def validate(self, path: str, n: int | None, task: TaskConfig, model: ModelConfig) -> None:
        """Check what depends on the other sections, for data.n = `n`."""
        revalidate(self, path)
        if n is None:
            raise ConfigError("data.n must be a positive integer for the loop (S_0 is a finite "
                              "set of n prompts), got None")
        real_count(self.real_fraction, n, self.rounding, path)  # also with no generation
        reals = self.real_counts(self.real_fraction, n, path)
        if self.filter == "confidence" and self.learner == "transformer" and (
                self.labeller == "model" and not model.gaussian_head):
            fail(f"{path}.filter", self.filter, "'none' or 'verifier' unless "
                 "model.gaussian_head=true supplies a predicted variance")
        if self.filter == "verifier":
            available = min(reals, default=n) if self.verifier_source == "real" else n
            if self.verifier_source == "real" and available == 0:
                fail(f"{path}.verifier_source", self.verifier_source,
                     f"'s0' when a generation has no real prompt (real_fraction="
                     f"{self.real_fraction}, real_schedule={self.real_schedule})")
            if self.verifier_n_real is not None and self.verifier_n_real > available:
                fail(f"{path}.verifier_n_real", self.verifier_n_real,
                     f"null or an integer <= {available} (the real prompts it is fitted on)")
        if self.label_mode == "context" and self.context_pairs >= task.k:
            fail(f"{path}.context_pairs", self.context_pairs, f"< task.k={task.k}")
        needs_noise = self.label_mode == "sample" or (
            self.label_mode == "context" and self.context_noise)
        model_labels = self.labeller == "model" and self.learner == "transformer"
        if (model_labels and needs_noise and self.label_noise_std is None
                and not model.gaussian_head):
            fail(f"{path}.label_noise_std", self.label_noise_std,
                 f"a noise scale for label_mode={self.label_mode!r} unless "
                 f"model.gaussian_head=true supplies one")
        if self.learner == "gaussian_prior" and task.name not in GAUSSIAN_PRIOR_TASKS:
            fail(f"{path}.learner", self.learner, "'transformer' for a non-linear task")
        if self.learner == "gaussian_prior" and task.k < task.d:
            fail("task.k", task.k, f">= task.d={task.d} with {path}.learner=gaussian_prior "
                 f"(it reads w off a prompt by least squares, exact only when k >= d)")
        if self.labeller == "oracle" and task.n_tasks is not None:
            fail(f"{path}.labeller", self.labeller, "'model' with task.n_tasks (the oracle "
                 "samples the Gaussian prior, not the task pool real prompts come from)")
        if self.labeller == "oracle" and task.name not in GAUSSIAN_PRIOR_TASKS:
            fail(f"{path}.labeller", self.labeller,
                 f"'model' for task {task.name!r} (the oracle needs a Gaussian prior on w)")


# Extension settings at the values that switch the extension off. An identity (a run name, a
# checkpoint's loop.json) leaves a setting out at this value, so a run that does not use an
# extension has the same name and resumes the same checkpoints whether or not the setting exists.
EXTENSION_DEFAULTS = {
    "task": {"n_tasks": None},
    "loop": {"real_schedule": "constant", "real_schedule_rate": 0.0,
             "real_schedule_floor": 0.0, "filter": "none", "filter_keep": 1.0,
             "filter_threshold": None, "verifier_source": "s0", "verifier_n_real": None,
             "verifier_label_noise_std": 0.0, "verifier_centre_noise_std": 0.0},
}


def omit_extension_defaults(settings_tree: dict) -> dict:
    """A copy of an identity's nested settings without the `EXTENSION_DEFAULTS` at default."""
    out = dict(settings_tree)
    for section, defaults in EXTENSION_DEFAULTS.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items()
                            if not (k in defaults and v == defaults[k])}
    return out



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
    value from seed, loop.real_fraction, data.n, loop.augment)."""

    seeds: List(Int(0), NOT_EMPTY) | None = None
    # As written ([0, 0.5, 1]): the names of committed runs (loop-28cc699237) hash this list.
    real_fractions: List(Number(0.0, 1.0), NOT_EMPTY) | None = None
    ns: List(Int(1, 1 << 26), NOT_EMPTY) | None = None
    augments: List(Int(0), NOT_EMPTY) | None = None


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
        if self.loop is not None:
            for n in self.members.ns or [self.data.n]:
                for lam in self.members.real_fractions or [self.loop.real_fraction]:
                    dataclasses.replace(self.loop, real_fraction=lam).validate(
                        "loop", n, self.task, self.model)
        return self


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


PROBE_KINDS = ("stability", "decay", "in_context")
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

    def validate(self, n_values: list[int], path: str = "probe") -> None:
        """Check what depends on `n_values`, the sample sizes the probe will run."""
        revalidate(self, path)
        for i, index in enumerate(self.replaced_indices):
            check_int(f"{path}.replaced_indices[{i}]", index, 0, min(n_values) - 1)
        if self.kind == "decay":
            fitted = [n for n in n_values if n >= self.fit_min_n]
            # An interval over seeds needs 2 sizes; a regression interval (one seed) needs 3.
            need = 2 if self.seeds is not None and len(self.seeds) >= 2 else 3
            if len(set(fitted)) < need:
                fail(f"{path}.ns", self.ns, f"at least {need} distinct values >= "
                     f"probe.fit_min_n={self.fit_min_n} for a decay fit")
