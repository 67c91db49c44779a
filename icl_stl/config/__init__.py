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

from icl_stl.config.app import (
    CHAOS_CONTROLS,
    FIT_METRICS,
    NOT_EMPTY,
    PROBE_KINDS,
    REPLACEMENTS,
    AppConfig,
    MembersConfig,
    ProbeConfig,
    RunConfig,
    parse_app_config,
)
from icl_stl.config.fields import (
    ConfigError,
    check_choice,
    check_float,
    check_int,
    from_container,
    to_container,
)
from icl_stl.config.loop import (
    EXTENSION_DEFAULTS,
    FILTERS,
    INIT_MODES,
    LABEL_MODES,
    LABELLERS,
    LEARNERS,
    REAL_SOURCES,
    SYNTHETIC_MODES,
    VERIFIER_SOURCES,
    LoopConfig,
    omit_extension_defaults,
)
from icl_stl.config.schedules import ROUNDINGS, RealSchedule, real_count
from icl_stl.config.schedules import SCHEDULES as REAL_SCHEDULES
from icl_stl.config.sections import (
    ARCHS,
    ATTN_IMPLS,
    BASELINES,
    DEVICES,
    ENGINES,
    GAUSSIAN_PRIOR_TASKS,
    LOGGER_MODES,
    MODEL_INITS,
    OPTIMIZERS,
    SCHEDULES,
    TASK_NAMES,
    CurriculumConfig,
    DataConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    RuntimeConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "ARCHS",
    "ATTN_IMPLS",
    "AppConfig",
    "BASELINES",
    "CHAOS_CONTROLS",
    "ConfigError",
    "CurriculumConfig",
    "DEVICES",
    "DataConfig",
    "ENGINES",
    "EXTENSION_DEFAULTS",
    "EvalConfig",
    "FILTERS",
    "FIT_METRICS",
    "GAUSSIAN_PRIOR_TASKS",
    "INIT_MODES",
    "LABELLERS",
    "LABEL_MODES",
    "LEARNERS",
    "LOGGER_MODES",
    "LoggerConfig",
    "LoopConfig",
    "MODEL_INITS",
    "MembersConfig",
    "ModelConfig",
    "NOT_EMPTY",
    "OPTIMIZERS",
    "PROBE_KINDS",
    "ProbeConfig",
    "REAL_SCHEDULES",
    "REAL_SOURCES",
    "REPLACEMENTS",
    "ROUNDINGS",
    "RealSchedule",
    "RunConfig",
    "RuntimeConfig",
    "SCHEDULES",
    "SYNTHETIC_MODES",
    "TASK_NAMES",
    "TaskConfig",
    "TrainConfig",
    "VERIFIER_SOURCES",
    "check_choice",
    "check_float",
    "check_int",
    "from_container",
    "omit_extension_defaults",
    "parse_app_config",
    "real_count",
    "to_container",
]
