"""Typed, validated run configuration.

Only entry points see a Hydra ``DictConfig``: they turn it into these dataclasses with
:func:`from_container`, which rejects unknown keys, wrong types and out-of-domain values with a
:class:`ConfigError` that names the field and its value, before anything is trained or written.
Every core function takes these dataclasses (or plain arguments), never a ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting is missing, of the wrong type or outside its domain."""


# ---------------------------------------------------------------------------------------------
# Field checks. Each returns nothing and raises ConfigError naming `path` and the value.


def _fail(path: str, value: Any, domain: str) -> None:
    raise ConfigError(f"{path} must be {domain}, got {value!r}")


def check_int(path: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, value, "an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]" if lo is not None else f"<= {hi}"
        _fail(path, value, f"an integer {bounds}")


def check_float(
    path: str, value: Any, lo: float | None = None, hi: float | None = None, lo_open=False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, value, "a finite number")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        _fail(path, value, f"a number {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        _fail(path, value, f"a number <= {hi}")


def check_choice(path: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        _fail(path, value, f"one of {list(choices)}")


# ---------------------------------------------------------------------------------------------

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


@dataclass
class TaskConfig:
    """The function class prompts are drawn from, and the prompt shape."""

    name: str = "linear_regression"
    d: int = 5  # input dimension
    k: int = 11  # (x, y) pairs per prompt
    w_scale: float = 1.0  # w ~ N(0, w_scale^2 I)
    noise_std: float = 0.0  # y = f(x) + N(0, noise_std^2)
    sparsity: int = 3  # nonzero weights, sparse_linear_regression only
    hidden: int = 100  # hidden units, relu_2nn_regression only

    def validate(self, path: str = "task") -> None:
        check_choice(f"{path}.name", self.name, TASK_NAMES)
        check_int(f"{path}.d", self.d, 1, 4096)
        check_int(f"{path}.k", self.k, 1, 4096)
        check_float(f"{path}.w_scale", self.w_scale, 0.0, lo_open=True)
        check_float(f"{path}.noise_std", self.noise_std, 0.0)
        check_int(f"{path}.sparsity", self.sparsity, 1)
        if self.name == "sparse_linear_regression":
            check_int(f"{path}.sparsity", self.sparsity, 1, self.d)
        check_int(f"{path}.hidden", self.hidden, 1)
        if self.name == "noisy_linear_regression" and self.noise_std == 0:
            _fail(f"{path}.noise_std", self.noise_std, "> 0 for noisy_linear_regression")


@dataclass
class ModelConfig:
    """The in-context learner: read-in, backbone, read-out."""

    arch: str = "gpt2"
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    # Predict (mean, log-variance), trained by beta-NLL (train.nll_beta): the loop's generator
    # samples labels from it. false: the mean alone, trained by squared error.
    gaussian_head: bool = True
    attn_implementation: str = "sdpa"  # or eager: softmax(q k^T) v written out, both engines
    # native: GPT-2 written with a member axis (icl_stl.gpt2); reference: one ICLModel per
    # member, run one after another (transformers GPT2Model for gpt2; any arch).
    engine: str = "native"
    init: str = "torch_default"  # read-in/read-out: torch_default (nn.Linear's) or gpt2

    def validate(self, path: str = "model") -> None:
        check_choice(f"{path}.arch", self.arch, ARCHS)
        check_int(f"{path}.n_layer", self.n_layer, 1, 96)
        check_int(f"{path}.n_head", self.n_head, 1, 128)
        check_int(f"{path}.n_embd", self.n_embd, 1, 16384)
        if self.n_embd % self.n_head:
            _fail(f"{path}.n_embd", self.n_embd, f"a multiple of model.n_head={self.n_head}")
        check_float(f"{path}.dropout", self.dropout, 0.0, 0.99)
        if not isinstance(self.gaussian_head, bool):
            _fail(f"{path}.gaussian_head", self.gaussian_head, "true or false")
        check_choice(f"{path}.attn_implementation", self.attn_implementation, ATTN_IMPLS)
        check_choice(f"{path}.engine", self.engine, ENGINES)
        if self.engine == "native" and self.arch != "gpt2":
            _fail(f"{path}.engine", self.engine,
                  f"'reference' for {path}.arch={self.arch!r} (the native engine is GPT-2 only)")
        check_choice(f"{path}.init", self.init, MODEL_INITS)


@dataclass
class CurriculumConfig:
    """Garg et al.'s curriculum: start with fewer dimensions and pairs, grow every `interval`."""

    enabled: bool = False
    d_start: int = 1
    d_step: int = 1
    k_start: int = 3
    k_step: int = 2
    interval: int = 100

    def validate(self, path: str, task: TaskConfig) -> None:
        for name in ("d_start", "d_step", "k_start", "k_step", "interval"):
            check_int(f"{path}.{name}", getattr(self, name), 1)
        check_int(f"{path}.d_start", self.d_start, 1, task.d)
        check_int(f"{path}.k_start", self.k_start, 1, task.k)


@dataclass
class TrainConfig:
    """Optimisation of one model (one generation of the loop)."""

    # The defaults are conf/train/default.yaml's recipe (chosen by time to ridge).
    steps: int = 5000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm per model; 0 disables
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    log_every: int = 50  # metrics are gathered from the device only this often
    checkpoint_every: int = 200  # steps between mid-training checkpoints; 0 = only at the end
    max_bad_steps: int = 0  # non-finite losses tolerated (step skipped) before the run stops
    nll_beta: float = 0.5  # Gaussian head only: beta of the beta-NLL loss (0: plain NLL)

    def validate(self, path: str = "train") -> None:
        check_int(f"{path}.steps", self.steps, 1)
        check_int(f"{path}.batch_size", self.batch_size, 1, 1 << 20)
        check_float(f"{path}.lr", self.lr, 0.0, 10.0, lo_open=True)
        check_choice(f"{path}.optimizer", self.optimizer, OPTIMIZERS)
        check_float(f"{path}.weight_decay", self.weight_decay, 0.0, 10.0)
        check_float(f"{path}.beta1", self.beta1, 0.0, 0.999999)
        check_float(f"{path}.beta2", self.beta2, 0.0, 0.999999)
        check_int(f"{path}.warmup_steps", self.warmup_steps, 0)
        check_choice(f"{path}.schedule", self.schedule, SCHEDULES)
        check_float(f"{path}.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_float(f"{path}.grad_clip", self.grad_clip, 0.0)
        check_int(f"{path}.log_every", self.log_every, 1)
        check_int(f"{path}.checkpoint_every", self.checkpoint_every, 0)
        check_int(f"{path}.max_bad_steps", self.max_bad_steps, 0)
        check_float(f"{path}.nll_beta", self.nll_beta, 0.0, 1.0)


@dataclass
class DataConfig:
    """The training data of generation 0: a finite set S_0 of n prompts, or a fresh stream."""

    n: int | None = 256  # the theorem's n; null trains on an endless stream of fresh prompts

    def validate(self, path: str = "data") -> None:
        if self.n is not None:
            check_int(f"{path}.n", self.n, 1, 1 << 26)


@dataclass
class EvalConfig:
    n_prompts: int = 1280  # fresh real prompts for test risk
    batch_size: int = 1280
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    knn_neighbours: int = 3
    ridge_alpha: float | None = None  # null: Bayes-optimal noise_std^2 / w_scale^2

    def validate(self, path: str = "eval") -> None:
        check_int(f"{path}.n_prompts", self.n_prompts, 1, 1 << 24)
        check_int(f"{path}.batch_size", self.batch_size, 1, 1 << 24)
        if not isinstance(self.baselines, list):
            _fail(f"{path}.baselines", self.baselines, f"a list drawn from {list(BASELINES)}")
        for i, name in enumerate(self.baselines):
            check_choice(f"{path}.baselines[{i}]", name, BASELINES)
        check_int(f"{path}.knn_neighbours", self.knn_neighbours, 1)
        if self.ridge_alpha is not None:
            check_float(f"{path}.ridge_alpha", self.ridge_alpha, 0.0)


@dataclass
class RuntimeConfig:
    """Where and how tensors are computed. Defaults adapt to the device."""

    device: str = "auto"
    bf16: bool | None = None  # null: on for CUDA, off (exact fp32) on CPU
    tf32: bool | None = None
    fused_adam: bool | None = None
    compile: bool = False
    threads: int | None = None  # torch intra-op threads; null leaves torch's default

    def validate(self, path: str = "runtime") -> None:
        check_choice(f"{path}.device", self.device, DEVICES)
        for name in ("bf16", "tf32", "fused_adam"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, bool):
                _fail(f"{path}.{name}", v, "true, false or null")
        if not isinstance(self.compile, bool):
            _fail(f"{path}.compile", self.compile, "true or false")
        if self.threads is not None:
            check_int(f"{path}.threads", self.threads, 1, 1024)


@dataclass
class LoggerConfig:
    mode: str = "offline"
    project: str = "icl-stl"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    init_timeout_s: float = 30.0
    member_runs: int = 50  # at most this many loops get their own W&B run (0: none)

    def validate(self, path: str = "logger") -> None:
        check_choice(f"{path}.mode", self.mode, LOGGER_MODES)
        if not isinstance(self.project, str) or not self.project:
            _fail(f"{path}.project", self.project, "a non-empty string")
        check_float(f"{path}.init_timeout_s", self.init_timeout_s, 0.0, lo_open=True)
        check_int(f"{path}.member_runs", self.member_runs, 0)


def _hint(tp: Any) -> tuple[type, ...]:
    """The runtime types a field annotation admits (for the small set used in this module)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(tp) for t in _hint(a))
    if origin is list:
        return (list,)
    if tp is type(None):
        return (type(None),)
    return (tp,)


def from_container(cls: type, data: Any, path: str) -> Any:
    """Build dataclass `cls` from a plain dict, naming the field of any problem.

    Unknown keys are errors (a typo never silently falls back to a default). Ints are accepted
    where floats are expected, and whole floats where ints are (`train.steps=1e3` is 1000, as a
    user means it); nothing else is coerced.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'the config'} must be a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path} has" if path else "the config has"
        raise ConfigError(f"{where} unknown setting(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        fpath = f"{path}.{key}" if path else key
        allowed = _hint(hint)
        nested = [t for t in allowed if dataclasses.is_dataclass(t)]
        if nested and (value is not None or type(None) not in allowed):
            kwargs[key] = from_container(nested[0], value, fpath)
            continue
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            # An int is a number: made a float when exact, else kept so errors quote it as given.
            if abs(value) < 2**53:
                value = float(value)
            else:
                allowed = (*allowed, int)
        if (int in allowed and float not in allowed and isinstance(value, float)
                and value.is_integer() and abs(value) < 2**53):
            value = int(value)
        if bool not in allowed and isinstance(value, bool):
            raise ConfigError(f"{fpath} must be of type {_names(allowed)}, got {value!r}")
        if not isinstance(value, allowed):
            raise ConfigError(f"{fpath} must be of type {_names(allowed)}, got {value!r}")
        kwargs[key] = list(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _names(types_: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types_)


def to_container(obj: Any) -> dict:
    """A dataclass config as a plain dict (for checkpoints, wandb and summary files)."""
    return dataclasses.asdict(obj)


REAL_SOURCES = ("reuse", "fresh")
SYNTHETIC_MODES = ("replace", "accumulate")
INIT_MODES = ("from_scratch", "warm_start")
LABEL_MODES = ("sample", "context", "mean")
ROUNDINGS = ("exact", "floor", "round", "ceil")
LEARNERS = ("transformer", "gaussian_prior")
LABELLERS = ("model", "oracle")
GAUSSIAN_PRIOR_TASKS = ("linear_regression", "noisy_linear_regression")


@dataclass
class LoopConfig:
    """The self-consuming loop. Generation 0 trains on S_0; generations 1..`generations` on S_i."""

    generations: int = 5  # self-consuming generations after generation 0
    real_fraction: float = 0.5  # lambda: share of the n prompts of S_i that are real
    rounding: str = "exact"  # how lambda n becomes a count; "exact" requires a whole number
    real_source: str = "reuse"  # reuse: a subset of S_0; fresh: new prompts each generation
    redraw_real: bool = False  # reuse only: draw a new subset of S_0 every generation
    synthetic: str = "replace"  # replace: only generation i-1's prompts; accumulate: all so far
    augment: int = 0  # m extra synthetic prompts on top of n
    init: str = "from_scratch"  # or warm_start from generation i-1
    # Generations >= 1 have their own budget: with init=warm_start it is what a generation
    # spends refining its predecessor. null: train.steps (and train.warmup_steps); every
    # generation builds a new optimizer, so its learning rate warms up again unless
    # warmup_steps says otherwise (0: start at the full rate).
    steps: int | None = None  # step budget of generations >= 1 (null: train.steps)
    warmup_steps: int | None = None  # warm-up of generations >= 1 (null: train.warmup_steps)
    # The generator: "model" labels with the trained learner; "oracle" samples the true
    # posterior predictive (icl_stl/loop/oracle.py), the control whose prompts are real-like.
    labeller: str = "model"
    # sample: draw each label from the predictive distribution, fed back as context; context:
    # c real pairs, then the model's; mean: the predicted mean (no generator: no spread)
    label_mode: str = "sample"
    # null: the Gaussian head's own predicted scale (predictive sampling); a number: that fixed
    # scale around the predicted mean (the old default, which shrinks the label variance)
    label_noise_std: float | None = None
    context_pairs: int = 2  # c: real pairs opening each synthetic prompt (context mode)
    context_noise: bool = False  # context mode: add label noise to the model's labels
    kv_cache: bool = True  # label with cached keys/values (native GPT-2 only)
    label_batch_size: int = 4096
    learner: str = "transformer"
    prior_covariance: bool = False  # gaussian_prior: also re-estimate the covariance of w
    # Train generation 0 once per distinct (seed, S_0) and copy it to every member sharing them
    # (the lambdas of one seed): the same numbers, less work. false: one per member.
    share_generation_0: bool = True

    def validate(self, path: str, n: int | None, task: TaskConfig, model: ModelConfig) -> None:
        check_int(f"{path}.generations", self.generations, 0, 10_000)
        check_float(f"{path}.real_fraction", self.real_fraction, 0.0, 1.0)
        check_choice(f"{path}.rounding", self.rounding, ROUNDINGS)
        check_choice(f"{path}.real_source", self.real_source, REAL_SOURCES)
        check_choice(f"{path}.synthetic", self.synthetic, SYNTHETIC_MODES)
        check_int(f"{path}.augment", self.augment, 0)
        check_choice(f"{path}.init", self.init, INIT_MODES)
        if self.steps is not None:
            check_int(f"{path}.steps", self.steps, 1)
        if self.warmup_steps is not None:
            check_int(f"{path}.warmup_steps", self.warmup_steps, 0)
        check_choice(f"{path}.labeller", self.labeller, LABELLERS)
        check_choice(f"{path}.label_mode", self.label_mode, LABEL_MODES)
        if self.label_noise_std is not None:
            check_float(f"{path}.label_noise_std", self.label_noise_std, 0.0)
        check_int(f"{path}.context_pairs", self.context_pairs, 0)
        check_int(f"{path}.label_batch_size", self.label_batch_size, 1)
        check_choice(f"{path}.learner", self.learner, LEARNERS)
        for name in ("redraw_real", "context_noise", "kv_cache", "prior_covariance",
                     "share_generation_0"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{path}.{name}", getattr(self, name), "true or false")
        if n is None:
            raise ConfigError("data.n must be a positive integer for the loop (S_0 is a finite "
                              "set of n prompts), got None")
        real_count(self.real_fraction, n, self.rounding, path)
        if self.label_mode == "context" and self.context_pairs >= task.k:
            _fail(f"{path}.context_pairs", self.context_pairs, f"< task.k={task.k}")
        needs_noise = self.label_mode == "sample" or (
            self.label_mode == "context" and self.context_noise)
        model_labels = self.labeller == "model" and self.learner == "transformer"
        if (model_labels and needs_noise and self.label_noise_std is None
                and not model.gaussian_head):
            _fail(f"{path}.label_noise_std", self.label_noise_std,
                  f"a noise scale for label_mode={self.label_mode!r} unless "
                  f"model.gaussian_head=true supplies one")
        if self.learner == "gaussian_prior" and task.name not in GAUSSIAN_PRIOR_TASKS:
            _fail(f"{path}.learner", self.learner, "'transformer' for a non-linear task")
        if self.learner == "gaussian_prior" and task.k < task.d:
            _fail("task.k", task.k, f">= task.d={task.d} with {path}.learner=gaussian_prior "
                  f"(it reads w off a prompt by least squares, exact only when k >= d)")
        if self.labeller == "oracle":
            if task.name not in GAUSSIAN_PRIOR_TASKS:
                _fail(f"{path}.labeller", self.labeller,
                      f"'model' for task {task.name!r} (the oracle needs a Gaussian prior on w)")
            if self.label_mode == "mean":
                _fail(f"{path}.label_mode", self.label_mode,
                      "'sample' or 'context' with loop.labeller=oracle (the oracle samples)")


def real_count(real_fraction: float, n: int, rounding: str, path: str = "loop") -> int:
    """The number of real prompts lambda n, under the configured rounding rule."""
    exact = real_fraction * n
    if rounding == "exact":
        if abs(exact - round(exact)) > 1e-9:
            raise ConfigError(
                f"{path}.real_fraction={real_fraction} times data.n={n} is {exact:g}, not a whole "
                f"number of prompts; choose them so, or set {path}.rounding to floor, round or ceil")
        return int(round(exact))
    return int({"floor": math.floor, "round": round, "ceil": math.ceil}[rounding](exact + 0.0))


@dataclass
class RunConfig:
    """Naming and places. A run's name keys its checkpoints: the same name resumes."""

    name: str | None = None  # null: derived from a hash of the settings, so a rerun resumes
    checkpoint_root: str = "checkpoints"
    resume: bool = True  # false: refuse to start over an existing checkpoint of the same name

    def validate(self, path: str = "run") -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name
                                      or "/" in self.name or self.name.startswith(".")):
            _fail(f"{path}.name", self.name, "a plain non-empty name without '/'")
        if not isinstance(self.checkpoint_root, str) or not self.checkpoint_root:
            _fail(f"{path}.checkpoint_root", self.checkpoint_root, "a directory path")
        if not isinstance(self.resume, bool):
            _fail(f"{path}.resume", self.resume, "true or false")


@dataclass
class MembersConfig:
    """Loops trained together as one ensemble: the product of these lists (null: the single
    value from seed, loop.real_fraction, data.n, loop.augment)."""

    seeds: list[int] | None = None
    real_fractions: list[float] | None = None
    ns: list[int] | None = None
    augments: list[int] | None = None

    def validate(self, path: str = "members") -> None:
        for name, lo, hi, is_int in (("seeds", 0, None, True), ("real_fractions", 0.0, 1.0, False),
                                     ("ns", 1, 1 << 26, True), ("augments", 0, None, True)):
            values = getattr(self, name)
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                _fail(f"{path}.{name}", values, "a non-empty list or null")
            for i, v in enumerate(values):
                if is_int:
                    check_int(f"{path}.{name}[{i}]", v, lo, hi)
                else:
                    check_float(f"{path}.{name}[{i}]", v, lo, hi)


@dataclass
class AppConfig:
    """Everything an entry point reads, parsed from the Hydra config and validated together."""

    seed: int = 0
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
    probe: dict | None = None  # parsed by the probe entry point

    def validate(self) -> None:
        check_int("seed", self.seed, 0, (1 << 63) - 1)
        self.task.validate()
        self.model.validate()
        self.train.validate()
        if self.train.curriculum.enabled:
            self.train.curriculum.validate("train.curriculum", self.task)
        self.data.validate()
        self.eval.validate()
        self.logger.validate()
        self.runtime.validate()
        self.run.validate()
        self.members.validate()
        if self.train.curriculum.enabled and self.train.curriculum.d_start < self.task.d \
                and self.data.n is not None:
            _fail("train.curriculum.d_start", self.train.curriculum.d_start,
                  f"task.d={self.task.d} when training on a finite set (data.n={self.data.n}): "
                  f"a curriculum over d needs fresh prompts (data.n=null)")
        if self.loop is not None:
            for n in self.members.ns or [self.data.n]:
                for lam in self.members.real_fractions or [self.loop.real_fraction]:
                    probe = dataclasses.replace(self.loop, real_fraction=lam)
                    probe.validate("loop", n, self.task, self.model)


def parse_app_config(data: dict, *, needs_loop: bool = False) -> AppConfig:
    """A validated AppConfig from a plain (resolved) dict; ConfigError names any bad field."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "experiment"}  # preset name, informative
    cfg = from_container(AppConfig, data, "")
    if needs_loop and cfg.loop is None:
        cfg.loop = LoopConfig()
    cfg.validate()
    if cfg.train.warmup_steps > cfg.train.steps:
        # Legal (a short test run), but rarely meant: say so rather than accept it silently.
        log.warning("train.warmup_steps=%d exceeds train.steps=%d: the learning rate never "
                    "reaches train.lr=%g", cfg.train.warmup_steps, cfg.train.steps, cfg.train.lr)
    return cfg


PROBE_KINDS = ("stability", "decay", "in_context")
REPLACEMENTS = ("fresh", "flip", "identical")
CHAOS_CONTROLS = ("batch_order", "seed", "none")
FIT_METRICS = ("excess_risk", "test_risk")


@dataclass
class ProbeConfig:
    """Settings of `icl-stl-probe` (parsed from AppConfig.probe by the probe entry point)."""

    kind: str = "stability"
    seeds: list[int] | None = None  # null: the run's single `seed`
    replaced_indices: list[int] = field(default_factory=lambda: [0])  # which prompt of S_0
    replacement: str = "fresh"  # fresh prompt | flip (labels negated) | identical (self-check)
    probe_prompts: int = 256  # fixed real prompts gamma (or the in-context change) is read on
    # stability: the chaos control twin gamma is read against (batch_order: the same S_0 in
    # another order, so other batches; seed: S_0 under another seed, so another init too)
    chaos_control: str = "batch_order"
    ns: list[int] | None = None  # decay: the grid of n (null: data.n alone)
    with_stability: bool = False  # decay: also run twins, to fit gamma against n
    fit_metric: str = "excess_risk"  # decay: the quantity the verdict is drawn from
    fit_min_n: int = 1  # decay: fit only n >= this (the bound is asymptotic)
    level: float = 0.95  # confidence level of every fitted interval

    def validate(self, n_values: list[int], path: str = "probe") -> None:
        """Check every field; `n_values` are the sample sizes the probe will run."""
        check_choice(f"{path}.kind", self.kind, PROBE_KINDS)
        check_choice(f"{path}.replacement", self.replacement, REPLACEMENTS)
        check_choice(f"{path}.chaos_control", self.chaos_control, CHAOS_CONTROLS)
        check_choice(f"{path}.fit_metric", self.fit_metric, FIT_METRICS)
        for name, lo in (("seeds", 0), ("replaced_indices", 0), ("ns", 1)):
            values = getattr(self, name)
            if values is None and name != "replaced_indices":
                continue
            if not isinstance(values, list) or not values:
                _fail(f"{path}.{name}", values, "a non-empty list" +
                      ("" if name == "replaced_indices" else " or null"))
            for i, v in enumerate(values):
                check_int(f"{path}.{name}[{i}]", v, lo)
            if len(set(values)) != len(values):
                _fail(f"{path}.{name}", values, "a list without repeated values")
        for i, index in enumerate(self.replaced_indices):
            check_int(f"{path}.replaced_indices[{i}]", index, 0, min(n_values) - 1)
        check_int(f"{path}.probe_prompts", self.probe_prompts, 1, 1 << 20)
        for name in ("with_stability",):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{path}.{name}", getattr(self, name), "true or false")
        check_int(f"{path}.fit_min_n", self.fit_min_n, 1)
        check_float(f"{path}.level", self.level, 0.0, 0.999999, lo_open=True)
        if self.kind == "decay":
            fitted = [n for n in n_values if n >= self.fit_min_n]
            # An interval over seeds needs 2 sizes; a regression interval (one seed) needs 3.
            need = 2 if self.seeds is not None and len(self.seeds) >= 2 else 3
            if len(set(fitted)) < need:
                _fail(f"{path}.ns", self.ns, f"at least {need} distinct values >= "
                      f"probe.fit_min_n={self.fit_min_n} for a decay fit")
