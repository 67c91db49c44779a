"""The loop's settings (`loop.*`) and the extension settings that an identity leaves out at
their defaults."""

from __future__ import annotations

from pydantic import model_validator

from icl_stl.config.fields import (
    Bool,
    Choice,
    ConfigError,
    Float,
    Int,
    fail,
    revalidate,
    settings,
)
from icl_stl.config.schedules import ROUNDINGS, RealSchedule, real_count
from icl_stl.config.schedules import SCHEDULES as REAL_SCHEDULES
from icl_stl.config.sections import GAUSSIAN_PRIOR_TASKS, ModelConfig, TaskConfig

REAL_SOURCES = ("reuse", "fresh")
# How S_i holds synthetic data (docs/accumulation.md). replace: generation i-1's new prompts;
# accumulate: every generation's so far, beside the real part (at lambda = 0 without S_0);
# accumulate_s0: S_0 kept whole plus every generation's (Gerstgrasser et al., 2024);
# volume_matched: S_0 plus i times the synthetic count, all labelled by generation i-1.
SYNTHETIC_MODES = ("replace", "accumulate", "accumulate_s0", "volume_matched")
KEEPS_S0 = ("accumulate_s0", "volume_matched")  # their real part is all of S_0
ACCUMULATES = ("accumulate", "accumulate_s0")  # S_i keeps earlier generations' prompts
INIT_MODES = ("from_scratch", "warm_start")
LABEL_MODES = ("sample", "context", "mean")
LEARNERS = ("transformer", "gaussian_prior")
LABELLERS = ("model", "oracle")
FILTERS = ("none", "confidence", "verifier", "residual", "density_ratio")  # loop/filters.py
VERIFIER_SOURCES = ("s0", "real")
VERIFIER_W_VARS = ("known", "s0")
STEPS_SCALES = ("fixed", "per_prompt")


@settings("loop")
class LoopConfig:
    """The self-consuming loop. Generation 0 trains on S_0; generations 1..`generations` on S_i."""

    generations: Int(0, 10_000) = 5  # self-consuming generations after generation 0
    real_fraction: Float(0.0, 1.0) = 0.5  # lambda: share of the n prompts of S_i that are real
    rounding: Choice(ROUNDINGS) = "exact"  # how lambda n becomes a count; exact: a whole number
    real_source: Choice(REAL_SOURCES) = "reuse"  # reuse: a subset of S_0; fresh: new prompts
    redraw_real: Bool = False  # reuse only: draw a new subset of S_0 every generation
    # The real part's share of every training batch of generations >= 1, by stratified
    # sampling with an unweighted loss (icl_stl/training/batches.py `stratified_indices`; P10,
    # docs/real_weight.md). null: batches drawn uniformly over S_i, so the real share is
    # lambda (the loop as it was; identities, records and results unchanged).
    real_weight: Float(0.0, 1.0) | None = None
    synthetic: Choice(SYNTHETIC_MODES) = "replace"  # what S_i holds (SYNTHETIC_MODES)
    augment: Int(0) = 0  # m extra synthetic prompts on top of n
    init: Choice(INIT_MODES) = "from_scratch"  # or warm_start from generation i-1
    # Generations >= 1 have their own budget: with init=warm_start it is what a generation
    # spends refining its predecessor. null: train.steps (and train.warmup_steps); every
    # generation builds a new optimizer, so its learning rate warms up again unless
    # warmup_steps says otherwise (0: start at the full rate).
    steps: Int(1) | None = None  # step budget of generations >= 1 (null: train.steps)
    warmup_steps: Int(0) | None = None  # warm-up of generations >= 1 (null: train.warmup_steps)
    # fixed: every generation >= 1 of every member trains for that budget, whatever the size of
    # its S_i. per_prompt: the budget is for n prompts, and a member's generation trains for
    # round(budget x |S_i| / n) steps, so that passes over the data stay fixed as S_i grows
    # with the augmentation m (P5, version 2). Members whose step counts differ are trained as
    # separate ensembles, one per step count (`TransformerLearner.fit`); the warm-up is kept.
    steps_scale: Choice(STEPS_SCALES) = "fixed"
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
    # the tasks of real prompts (icl_stl/loop/verifier.py). residual and density_ratio keep the
    # task spread (icl_stl/loop/spread_filters.py): the least-squares residual over all k
    # positions; acceptance by the verifier's density over the generator's.
    filter: Choice(FILTERS) = "none"
    filter_keep: Float(0.0, 1.0, lo_open=True) = 1.0
    filter_threshold: Float(0.0) | None = None  # null: keep the best fraction
    verifier_source: Choice(VERIFIER_SOURCES) = "s0"  # s0 (works at lambda = 0) or real part
    verifier_n_real: Int(1) | None = None  # fit on this many real prompts (null: all)
    verifier_label_noise_std: Float(0.0) = 0.0  # degrade: noise on the labels it reads
    verifier_centre_noise_std: Float(0.0) = 0.0  # degrade: noise on its knowledge centre
    # The verifier's prior variance: known (task.w_scale^2) or read off its real prompts (s0).
    # density_ratio always reads it off them.
    verifier_w_var: Choice(VERIFIER_W_VARS) = "known"

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.labeller == "oracle":
            self.check_oracle_settings("loop.labeller=oracle")
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
        self._check_spread_filters()
        return self

    def _check_spread_filters(self) -> None:
        """What the filters that keep the task spread need of the loop settings alone."""
        if self.verifier_w_var != "known" and self.filter != "verifier":
            fail("loop.verifier_w_var", self.verifier_w_var,
                 f"'known' with loop.filter={self.filter} (only the verifier filter reads it; "
                 f"density_ratio always estimates w_var from its real prompts)")
        if self.filter != "density_ratio":
            return
        if self.filter_keep >= 1.0:
            fail("loop.filter_keep", self.filter_keep,
                 "a number in (0, 1) with loop.filter=density_ratio (the pool must be larger "
                 "than the prompts kept)")
        if self.filter_threshold is not None:
            fail("loop.filter_threshold", self.filter_threshold,
                 "null with loop.filter=density_ratio (its acceptance bound comes from the pool)")
        if self.label_mode == "mean":
            fail("loop.label_mode", self.label_mode,
                 "'sample' or 'context' with loop.filter=density_ratio (it divides by the "
                 "generator's density)")
        if self.learner == "gaussian_prior":
            fail("loop.filter", self.filter, "'none', 'verifier' or 'residual' with "
                 "loop.learner=gaussian_prior")

    def _check_keeps_s0(self, path: str) -> None:
        """An arm that keeps all of S_0 is defined at lambda = 0 (every member's lambda): S_0
        is its real data, so a real share of each generation would count real prompts twice."""
        why = f"with {path}.synthetic={self.synthetic} (its real data is all of S_0)"
        if self.real_fraction != 0:
            fail(f"{path}.real_fraction", self.real_fraction, f"0 {why}")
        if self.real_schedule != "constant":
            fail(f"{path}.real_schedule", self.real_schedule, f"'constant' {why}")

    def check_oracle_settings(self, why: str, path: str = "loop") -> None:
        """What an oracle-labelled loop needs of the loop settings alone; `why` says where the
        oracle was asked for (loop.labeller=oracle, or an oracle member of members.labellers)."""
        if self.label_mode == "mean":
            fail(f"{path}.label_mode", self.label_mode,
                 f"'sample' or 'context' with {why} (the oracle samples)")
        if self.filter == "confidence":
            fail(f"{path}.filter", self.filter, f"'none' or 'verifier' with {why}")

    def schedule(self, lambda0: float, path: str = "loop") -> RealSchedule:
        """The real-data schedule of a member whose real_fraction is lambda0, validated."""
        return RealSchedule(self.real_schedule, lambda0, self.real_schedule_rate,
                            self.real_schedule_floor, path)

    def real_counts(self, lambda0: float, n: int, path: str = "loop") -> list[int]:
        """Real prompts of S_1..S_generations for a member with real_fraction lambda0 and n."""
        return self.schedule(lambda0, path).counts(n, self.generations, self.rounding)[1:]

    def validate(self, path: str, n: int | None, task: TaskConfig, model: ModelConfig,
                 labellers: list[str] | None = None) -> None:
        """Check what depends on the other sections, for data.n = `n` and loops labelled by each
        of `labellers` (null: `loop.labeller` alone; a list: members.labellers)."""
        revalidate(self, path)
        if n is None:
            raise ConfigError("data.n must be a positive integer for the loop (S_0 is a finite "
                              "set of n prompts), got None")
        real_count(self.real_fraction, n, self.rounding, path)  # also with no generation
        if self.synthetic in KEEPS_S0:
            self._check_keeps_s0(path)
        reals = self.real_counts(self.real_fraction, n, path)
        if self.real_weight is not None:
            self._check_real_weight(path, n, reals)
        if self.filter == "residual" and task.k <= task.d:
            fail("task.k", task.k, f"> task.d={task.d} with {path}.filter=residual (with k <= d "
                 f"every least-squares residual is 0)")
        if self.filter == "density_ratio" and not task.noise_std > 0:
            fail("task.noise_std", task.noise_std, f"> 0 with {path}.filter=density_ratio (a "
                 f"noiseless task has no label density to divide by)")
        if self.filter in ("verifier", "density_ratio"):
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
        if self.learner == "gaussian_prior" and task.name not in GAUSSIAN_PRIOR_TASKS:
            fail(f"{path}.learner", self.learner, "'transformer' for a non-linear task")
        if self.learner == "gaussian_prior" and task.k < task.d:
            fail("task.k", task.k, f">= task.d={task.d} with {path}.learner=gaussian_prior "
                 f"(it reads w off a prompt by least squares, exact only when k >= d)")
        source, value = ((f"{path}.labeller", self.labeller) if labellers is None
                         else ("members.labellers", labellers))
        for labeller in dict.fromkeys(labellers or [self.labeller]):
            self._check_labeller(labeller, path, source, value, task, model)

    def _check_real_weight(self, path: str, n: int, reals: list[int]) -> None:
        """A real weight needs a real part to weigh (unless it is 0) and, below 1, a synthetic
        part, in every generation >= 1 (the real counts `reals` of S_1..S_G)."""
        w = self.real_weight
        if w > 0 and any(r == 0 for r in reals):
            fail(f"{path}.real_weight", w, f"0 or null when a generation has no real prompt "
                 f"(real_fraction={self.real_fraction}, real_schedule={self.real_schedule})")
        if w < 1 and any(n - r + self.augment == 0 for r in reals):
            fail(f"{path}.real_weight", w, f"1 or null when a generation has no synthetic "
                 f"prompt (real_fraction={self.real_fraction}, augment={self.augment})")

    def _check_labeller(self, labeller: str, path: str, source: str, value: object,
                        task: TaskConfig, model: ModelConfig) -> None:
        """What loops labelled by `labeller` need of the other sections; `source` (holding
        `value`) is where the labeller was chosen: loop.labeller or members.labellers."""
        if labeller == "model":
            if self.filter == "confidence" and self.learner == "transformer" and (
                    not model.gaussian_head):
                fail(f"{path}.filter", self.filter, "'none' or 'verifier' unless "
                     "model.gaussian_head=true supplies a predicted variance")
            needs_noise = self.label_mode == "sample" or (
                self.label_mode == "context" and self.context_noise)
            if (self.learner == "transformer" and needs_noise and self.label_noise_std is None
                    and not model.gaussian_head):
                fail(f"{path}.label_noise_std", self.label_noise_std,
                     f"a noise scale for label_mode={self.label_mode!r} unless "
                     f"model.gaussian_head=true supplies one")
            return
        self.check_oracle_settings(f"{source}={value}" if source.endswith(".labeller")
                                   else f"an oracle member ({source}={value})", path)
        model_only = "'model'" if source.endswith(".labeller") else "a list without 'oracle'"
        if task.n_tasks is not None:
            fail(source, value, f"{model_only} with task.n_tasks (the oracle samples the "
                 f"Gaussian prior, not the task pool real prompts come from)")
        if task.name not in GAUSSIAN_PRIOR_TASKS:
            fail(source, value, f"{model_only} for task {task.name!r} (the oracle needs a "
                 f"Gaussian prior on w)")


# Extension settings at the values that switch the extension off. An identity (a run name, a
# checkpoint's loop.json) leaves a setting out at this value, so a run that does not use an
# extension has the same name and resumes the same checkpoints whether or not the setting exists.
EXTENSION_DEFAULTS = {
    "task": {"n_tasks": None},
    "members": {"labellers": None},
    "loop": {"real_weight": None, "steps_scale": "fixed", "real_schedule": "constant", "real_schedule_rate": 0.0,
             "real_schedule_floor": 0.0, "filter": "none", "filter_keep": 1.0,
             "filter_threshold": None, "verifier_source": "s0", "verifier_n_real": None,
             "verifier_label_noise_std": 0.0, "verifier_centre_noise_std": 0.0,
             "verifier_w_var": "known"},
}


def omit_extension_defaults(settings_tree: dict) -> dict:
    """A copy of an identity's nested settings without the `EXTENSION_DEFAULTS` at default."""
    out = dict(settings_tree)
    for section, defaults in EXTENSION_DEFAULTS.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items()
                            if not (k in defaults and v == defaults[k])}
    return out
