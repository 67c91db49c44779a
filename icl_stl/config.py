"""Typed, validated run configuration.

Every settings class is a pydantic dataclass that checks itself when built, from Python
(`TaskConfig(d=-1)`) or from the plain dict an entry point makes of its Hydra ``DictConfig``
(:func:`from_container`). An unknown key, a wrong type or an out-of-domain value is a
:class:`ConfigError` of one line that names the dotted setting and its value, before anything is
trained or written. Each field's domain is its annotation (``d: Int(1, 4096) = 5``); checks that
relate fields are the classes' `_check` methods. Every core function takes these classes (or
plain arguments), never a ``DictConfig``. They are dataclasses: ``dataclasses.asdict`` and
``dataclasses.replace`` work (a replaced value is checked too).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import types
import typing
from dataclasses import field
from typing import Annotated, Any

import pydantic
from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainValidator,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import ArgsKwargs, PydanticCustomError

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting is missing, of the wrong type or outside its domain."""


def _fail(path: str, value: Any, domain: str) -> typing.NoReturn:
    raise ConfigError(f"{path} must be {domain}, got {value!r}")


def _outside(value: Any, lo: Any, hi: Any, lo_open: bool = False, integer: bool = False
             ) -> str | None:
    """The domain `value` falls outside of, as the messages word it, or None if it is inside."""
    if integer:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return "an integer " + (f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                                    if lo is not None else f"<= {hi}")
        return None
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return f"a number {'>' if lo_open else '>='} {lo}"
    return f"a number <= {hi}" if hi is not None and value > hi else None


# Checks of single values outside a settings class (a command-line `member`, say).

def check_int(path: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, value, "an integer")
    if domain := _outside(value, lo, hi, integer=True):
        _fail(path, value, domain)


def check_float(path: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, value, "a finite number")
    if domain := _outside(value, lo, hi, lo_open):
        _fail(path, value, domain)


def check_choice(path: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        _fail(path, value, f"one of {list(choices)}")


# ---------------------------------------------------------------------------------------------
# Field domains, as annotations. Scalars are strict (no "3" for 3, no true for 1), except that a
# whole float is the integer a user means (YAML reads `steps: 1e3` as 1000.0) and an int is a
# number where a float is expected.


def _ensure(ok: typing.Callable[[Any], bool], domain: str) -> AfterValidator:
    def check(value: Any) -> Any:
        if not ok(value):
            raise PydanticCustomError("domain", "{domain}", {"domain": domain})
        return value
    return AfterValidator(check)


def _in_range(lo: Any, hi: Any, lo_open: bool = False, integer: bool = False) -> AfterValidator:
    def check(value: Any) -> Any:
        if domain := _outside(value, lo, hi, lo_open, integer):
            raise PydanticCustomError("domain", "{domain}", {"domain": domain})
        return value
    return AfterValidator(check)


def _whole_float_as_int(value: Any) -> Any:
    exact = isinstance(value, float) and value.is_integer() and abs(value) < 2**53
    return int(value) if exact else value


Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def Int(lo: int | None = None, hi: int | None = None) -> Any:
    return Annotated[int, BeforeValidator(_whole_float_as_int), Strict(),
                     _in_range(lo, hi, integer=True)]


def Float(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    return Annotated[float, Strict(), _in_range(lo, hi, lo_open)]  # finite: the config says so


def _finite(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PydanticCustomError("domain", "{domain}", {"domain": "a finite number"})
    return value


def Number(lo: float | None = None, hi: float | None = None) -> Any:
    """Like Float, but an int stays an int: for lists that run names hash as written."""
    return Annotated[int | float, PlainValidator(_finite), _in_range(lo, hi)]


def Choice(choices: tuple[str, ...]) -> Any:
    return Annotated[str, Strict(), _ensure(lambda v: v in choices, f"one of {list(choices)}")]


def List(item: Any, domain: str | None = None) -> Any:
    """A list of `item`; with `domain`, also non-empty and without repeats (said as `domain`)."""
    if domain is None:
        return Annotated[list[item], Strict()]
    return Annotated[list[item], Strict(), _ensure(lambda v: v and len(set(v)) == len(v), domain)]


_CONFIG = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)


def settings(path: str) -> typing.Callable[[type], type]:
    """Make `cls` a pydantic dataclass whose constructor checks every field and raises a
    one-line ConfigError; `path` is where it sits in the full config ("train.curriculum")."""
    def make(cls: type) -> type:
        cls = pydantic.dataclasses.dataclass(cls, config=_CONFIG)
        validated_init = cls.__init__

        @functools.wraps(validated_init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                validated_init(self, *args, **kwargs)
            except ValidationError as err:
                raise ConfigError(one_line(err, cls, path)) from None

        cls.__init__, cls._section = __init__, path
        if "validate" not in vars(cls):
            cls.validate = _revalidate
        return cls
    return make


def _revalidate(self: Any, path: str | None = None) -> None:
    """Check the settings again (construction already did; this catches later assignments)."""
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    from_container(type(self), values, self._section if path is None else path)


def from_container(cls: type, data: Any, path: str) -> Any:
    """Build dataclass `cls` from a plain dict; a ConfigError names the setting of any problem.
    `path` is where `data` sits in the full config ("" for the top)."""
    if not hasattr(cls, "__pydantic_validator__"):  # a plain dataclass of an entry point
        cls = _checked_plain_dataclass(cls)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'the config'} must be a mapping of settings, got {data!r}")
    obj = cls.__new__(cls)
    try:  # what the constructor does (a strict dataclass validates keywords, not a dict)
        cls.__pydantic_validator__.validate_python(ArgsKwargs((), data), self_instance=obj)
    except ValidationError as err:
        raise ConfigError(one_line(err, cls, path)) from None
    return obj


@functools.cache
def _checked_plain_dataclass(cls: type) -> type:
    # Strict: its fields carry no domains of their own; its settings sections still take dicts.
    return pydantic.dataclasses.dataclass(cls, config=pydantic.ConfigDict(strict=True, **_CONFIG))


def to_container(obj: Any) -> dict:
    """A config as a plain dict (for checkpoints, wandb and summary files)."""
    return dataclasses.asdict(obj)


# ---------------------------------------------------------------------------------------------
# pydantic's ValidationError (many lines, its own words) as the one line of a ConfigError


def one_line(err: ValidationError, root: type, prefix: str) -> str:
    """The first problem of `err` (unknown keys first) as "<path> must be <domain>, got <value>".
    `root` is the class validated, at `prefix` in the full config."""
    errors = err.errors()
    unknown = [e for e in errors if e["type"] in ("unexpected_keyword_argument", "invalid_key")]
    if unknown:
        where = unknown[0]["loc"][:-1]
        keys = sorted(str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == where)
        known = sorted(f.name for f in dataclasses.fields(_class_at(root, where)))
        path = _dotted(prefix, where)
        return (f"{f'{path} has' if path else 'the config has'} unknown setting(s) {keys}; "
                f"known: {known}")
    e = errors[0]
    ctx = e.get("ctx") or {}
    if isinstance(ctx.get("error"), ConfigError):  # from a `_check`: names its settings itself
        return str(ctx["error"])
    kind = e["type"]
    domain = (ctx["domain"] if kind == "domain"
              else "a finite number" if kind == "finite_number"
              else "a mapping of settings" if kind.startswith("dataclass")
              else f"of type {_type_names(_hint_at(root, e['loc']))}" if kind.endswith("_type")
              else e["msg"])
    return f"{_dotted(prefix, e['loc']) or 'the config'} must be {domain}, got {e['input']!r}"


def _dotted(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _alternatives(hint: Any) -> tuple:
    """The types a (union) annotation admits, `list[int]` kept whole."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(hint) for t in _alternatives(a))
    return (hint,)


def _hint_at(root: type, loc: tuple) -> Any:
    """The annotation of the setting at `loc` under class `root` (a list item's: its type)."""
    hint: Any = root
    for part in loc:
        options = _alternatives(hint)
        if isinstance(part, int):
            hint = next(typing.get_args(t)[0] for t in options if typing.get_origin(t) is list)
        else:
            cls = next(t for t in options if dataclasses.is_dataclass(t))
            hint = typing.get_type_hints(cls)[part]
    return hint


def _class_at(root: type, loc: tuple) -> type:
    return next(t for t in _alternatives(_hint_at(root, loc)) if dataclasses.is_dataclass(t))


def _type_names(hint: Any) -> str:
    return " or ".join("null" if t is type(None) else (typing.get_origin(t) or t).__name__
                       for t in _alternatives(hint))


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

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if self.name == "sparse_linear_regression":
            check_int("task.sparsity", self.sparsity, 1, self.d)
        if self.name == "noisy_linear_regression" and self.noise_std == 0:
            _fail("task.noise_std", self.noise_std, "> 0 for noisy_linear_regression")
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
    # native: GPT-2 written with a member axis (icl_stl.gpt2); reference: one ICLModel per
    # member, run one after another (transformers GPT2Model for gpt2; any arch).
    engine: Choice(ENGINES) = "native"
    init: Choice(MODEL_INITS) = "torch_default"  # read-in/read-out: nn.Linear's, or gpt2

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            _fail("model.n_embd", self.n_embd, f"a multiple of model.n_head={self.n_head}")
        if self.engine == "native" and self.arch != "gpt2":
            _fail("model.engine", self.engine,
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
    project: Annotated[Str, _ensure(bool, "a non-empty string")] = "icl-stl"
    group: Str | None = None
    tags: List(Str) = field(default_factory=list)
    init_timeout_s: Float(0.0, lo_open=True) = 30.0


REAL_SOURCES = ("reuse", "fresh")
SYNTHETIC_MODES = ("replace", "accumulate")
INIT_MODES = ("from_scratch", "warm_start")
LABEL_MODES = ("sample", "context", "mean")
ROUNDINGS = ("exact", "floor", "round", "ceil")
LEARNERS = ("transformer", "gaussian_prior")
LABELLERS = ("model", "oracle")
GAUSSIAN_PRIOR_TASKS = ("linear_regression", "noisy_linear_regression")


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
    # scale around the predicted mean (the old default, which shrinks the label variance)
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

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.labeller == "oracle" and self.label_mode == "mean":
            _fail("loop.label_mode", self.label_mode,
                  "'sample' or 'context' with loop.labeller=oracle (the oracle samples)")
        return self

    def validate(self, path: str, n: int | None, task: TaskConfig, model: ModelConfig) -> None:
        """Check what depends on the other sections, for data.n = `n`."""
        _revalidate(self, path)
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
        if self.labeller == "oracle" and task.name not in GAUSSIAN_PRIOR_TASKS:
            _fail(f"{path}.labeller", self.labeller,
                  f"'model' for task {task.name!r} (the oracle needs a Gaussian prior on w)")


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


def _plain_name(name: str | None) -> bool:
    return name is None or (bool(name) and "/" not in name and not name.startswith("."))


@settings("run")
class RunConfig:
    """Naming and places. A run's name keys its checkpoints: the same name resumes."""

    # null: derived from a hash of the settings, so a rerun resumes
    name: Annotated[Str | None, _ensure(_plain_name, "a plain non-empty name without '/'")] = None
    checkpoint_root: Annotated[Str, _ensure(bool, "a directory path")] = "checkpoints"
    resume: Bool = True  # false: refuse to start over an existing checkpoint of the same name


@settings("members")
class MembersConfig:
    """Loops trained together as one ensemble: the product of these lists (null: the single
    value from seed, loop.real_fraction, data.n, loop.augment)."""

    seeds: List(Int(0), "a non-empty list or null") | None = None
    # As written ([0, 0.5, 1]): the names of committed runs (loop-28cc699237) hash this list.
    real_fractions: List(Number(0.0, 1.0), "a non-empty list or null") | None = None
    ns: List(Int(1, 1 << 26), "a non-empty list or null") | None = None
    augments: List(Int(0), "a non-empty list or null") | None = None


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
                _fail("train.curriculum.d_start", curriculum.d_start,
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
_UNIQUE = "a non-empty list without repeated values"


@settings("probe")
class ProbeConfig:
    """Settings of `icl-stl-probe` (parsed from AppConfig.probe by the probe entry point)."""

    kind: Choice(PROBE_KINDS) = "stability"
    seeds: List(Int(0), _UNIQUE + " or null") | None = None  # null: the run's single `seed`
    replaced_indices: List(Int(0), _UNIQUE) = field(default_factory=lambda: [0])  # of S_0
    # fresh prompt | flip (labels negated) | identical (self-check)
    replacement: Choice(REPLACEMENTS) = "fresh"
    probe_prompts: Int(1, 1 << 20) = 256  # fixed real prompts gamma (or the change) is read on
    # stability: the chaos control twin gamma is read against (batch_order: the same S_0 in
    # another order, so other batches; seed: S_0 under another seed, so another init too)
    chaos_control: Choice(CHAOS_CONTROLS) = "batch_order"
    ns: List(Int(1), _UNIQUE + " or null") | None = None  # decay: the grid of n (null: data.n)
    with_stability: Bool = False  # decay: also run twins, to fit gamma against n
    fit_metric: Choice(FIT_METRICS) = "excess_risk"  # decay: what the verdict is drawn from
    fit_min_n: Int(1) = 1  # decay: fit only n >= this (the bound is asymptotic)
    level: Float(0.0, 0.999999, lo_open=True) = 0.95  # confidence level of every interval

    def validate(self, n_values: list[int], path: str = "probe") -> None:
        """Check what depends on `n_values`, the sample sizes the probe will run."""
        _revalidate(self, path)
        for i, index in enumerate(self.replaced_indices):
            check_int(f"{path}.replaced_indices[{i}]", index, 0, min(n_values) - 1)
        if self.kind == "decay":
            fitted = [n for n in n_values if n >= self.fit_min_n]
            # An interval over seeds needs 2 sizes; a regression interval (one seed) needs 3.
            need = 2 if self.seeds is not None and len(self.seeds) >= 2 else 3
            if len(set(fitted)) < need:
                _fail(f"{path}.ns", self.ns, f"at least {need} distinct values >= "
                      f"probe.fit_min_n={self.fit_min_n} for a decay fit")
