"""The settings of one training run, section by section: task, model, train, data, eval, runtime,
logger."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from pydantic import model_validator

from icl_stl.config.fields import (
    Bool,
    Choice,
    Float,
    Int,
    List,
    Str,
    check_int,
    ensure,
    fail,
    settings,
)

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
    # > 0: hold out this share of S_0 (its own seeded stream) and keep, per member, the
    # parameters of the logging step with the lowest held-out risk (training/early_stopping.py).
    # 0 (default): off, and left out of every identity, so existing runs keep their names.
    held_out_fraction: Float(0.0, 0.5) = 0.0


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
