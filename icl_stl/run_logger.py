"""The single place a run writes its metrics: local files always, Weights & Biases when it can.

Local files are the record of a run and are written first, durably (see :mod:`icl_stl.io`):

* ``<run_dir>/metrics.jsonl``: one JSON object per :meth:`RunLogger.log_metrics` call;
* ``<run_dir>/summary.json``: the latest :meth:`RunLogger.write_summary`, replaced atomically.

W&B is a convenience on top. Any failure of it (not installed, no credentials, no network,
unwritable directory, a crash mid-run) is reported once as a warning and the run continues with
local files only: logging never kills or hangs a run. A failure to write the *local* files is
not swallowed (:class:`icl_stl.io.PersistenceError`), since then the run's results would be lost.

Two step axes are defined so that training and the self-consuming loop can share one W&B run:
training metrics are logged as ``train/<name>`` together with ``train/step``; per-generation
metrics as ``gen/<name>`` together with ``generation``. Records are logged without W&B's global
``step=`` argument, which would force a single axis.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

from icl_stl.persistence import append_jsonl, atomic_write_json

logger = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")

# How long run.finish() may spend uploading before giving up (the data stays on disk for
# `wandb sync`). Without a bound a network outage at the end of a run would hang it forever.
FINISH_TIMEOUT_S = 120.0


class WandbUnavailableWarning(RuntimeWarning):
    """W&B failed; the run continues with local files only."""


def _plain(value: Any, where: str, *, strict: bool) -> Any:
    """`value` as JSON types.

    Numpy scalars and one-element tensors become Python numbers, tuples and sets lists, paths
    strings, enums their value, dataclasses dicts. Anything else raises ``TypeError`` naming
    `where` if `strict`, else becomes its ``repr`` (used for configs, which must always log).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}", strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", strict=strict) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [_plain(v, where, strict=strict) for v in sorted(value, key=repr)]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value, where, strict=strict)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where, strict=strict)
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalar, or a tensor/array with one element
        numel = getattr(value, "numel", None)  # torch: .size is a method, .numel() the count
        count = numel() if callable(numel) else getattr(value, "size", None)
        if count == 1:
            return _plain(item(), where, strict=strict)
    if strict:
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be "
            "logged; use numbers, strings, lists or dicts (one-element tensors are accepted)"
        )
    return repr(value)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # replaced or closed streams
        return False


def _could_prompt() -> bool:
    """Whether W&B would ask for an API key interactively (a terminal, or a notebook)."""
    return (_isatty(sys.stdin) and _isatty(sys.stderr)) or "ipykernel" in sys.modules


class RunLogger:
    """Write a run's metrics and summary to `run_dir`, and to W&B unless disabled or failing.

    Args:
        run_dir: Directory of the run; created if missing. W&B files go to ``run_dir/wandb``.
        mode: ``"offline"`` (W&B files on disk, sync later with ``wandb sync``), ``"online"`` or
            ``"disabled"`` (W&B is not even imported and no W&B file is created).
        project: W&B project.
        config: The resolved run configuration, a plain dict. Values that are not JSON types are
            converted (tuples to lists, paths to strings, numpy scalars to numbers, dataclasses
            to dicts) and any other object is recorded as its ``repr``, so a config never stops
            a run from logging.
        name, group, tags: W&B run name, group and tags.
        init_timeout_s: Upper bound, passed to W&B as ``init_timeout``, on how long W&B may take
            to start. Online with no network, ``wandb.init`` gives up after about this long
            (measured: timeout + ~1 s with wandb 0.31). On a terminal, a credentials check that
            avoids W&B's unbounded login prompt comes first and, when a key is configured but
            the server is unreachable, adds W&B's own ~5 s user lookup.
        resume_id: W&B run id to continue (``resume="allow"``): store :attr:`run_id` with the
            checkpoint and pass it back when resuming, so a resumed run extends its W&B run.

    Usable as a context manager; leaving it because of an exception marks the W&B run failed.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        mode: str,
        project: str,
        config: Mapping[str, Any],
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        init_timeout_s: float = 30.0,
        resume_id: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {list(MODES)}, got {mode!r}")
        if not isinstance(init_timeout_s, (int, float)) or not init_timeout_s > 0:
            raise ValueError(f"init_timeout_s must be a positive number, got {init_timeout_s!r}")
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.mode = mode
        self.config: dict[str, Any] = _plain(dict(config), "config", strict=False)
        self._run: Any = None
        self._wandb: Any = None
        self._warned = False
        self._closed = False
        if mode != "disabled":
            self._start_wandb(
                project=project,
                name=name,
                group=group,
                tags=tags,
                init_timeout_s=float(init_timeout_s),
                resume_id=resume_id,
            )

    # -----------------------------------------------------------------------------------------
    # W&B plumbing

    @property
    def wandb_active(self) -> bool:
        """Whether metrics are currently forwarded to W&B."""
        return self._run is not None

    @property
    def run_id(self) -> str | None:
        """The W&B run id (to pass as `resume_id` when resuming), or None without W&B."""
        return None if self._run is None else str(self._run.id)

    def _start_wandb(
        self,
        *,
        project: str,
        name: str | None,
        group: str | None,
        tags: list[str] | None,
        init_timeout_s: float,
        resume_id: str | None,
    ) -> None:
        try:
            import wandb

            self._wandb = wandb
            if self.mode == "online" and _could_prompt():
                # Where it can prompt, wandb.init without credentials asks for an API key and
                # waits forever, outside init_timeout; check for credentials without prompting.
                if not wandb.login(prompt=False, verify=False):
                    raise RuntimeError(
                        "no W&B API key configured (run `wandb login` or set WANDB_API_KEY)"
                    )
            run = wandb.init(
                project=project,
                config=self.config,
                mode=self.mode,
                dir=str(self.run_dir),
                name=name,
                group=group,
                tags=list(tags) if tags else None,
                id=resume_id,
                resume="allow" if resume_id else None,
                # Each RunLogger owns its run; the default would hand back a still-open run
                # from an earlier RunLogger in the same process.
                reinit="create_new",
                settings=self._settings(wandb, init_timeout_s),
            )
            self._run = run
            run.define_metric("train/step")
            run.define_metric("train/*", step_metric="train/step")
            run.define_metric("generation")
            run.define_metric("gen/*", step_metric="generation")
        except Exception as exc:
            self._give_up_wandb("init", exc)

    @staticmethod
    def _settings(wandb: Any, init_timeout_s: float) -> Any:
        wanted: dict[str, Any] = {
            "init_timeout": init_timeout_s,
            "finish_timeout": FINISH_TIMEOUT_S,
            # Quiet, and no stdout/stderr capture: it interferes with Hydra's and pytest's own
            # handling of the console and the run's log file already holds it.
            "silent": True,
            "console": "off",
        }
        known = getattr(wandb.Settings, "model_fields", None)
        if known:  # older wandb versions lack some settings; drop rather than fail
            wanted = {k: v for k, v in wanted.items() if k in known}
        return wandb.Settings(**wanted)

    def _give_up_wandb(self, stage: str, exc: BaseException) -> None:
        """Stop using W&B after a failure, warning once; local files carry on."""
        run, self._run = self._run, None
        if not self._warned:
            self._warned = True
            cause = " ".join(str(exc).split())  # W&B's messages span several lines
            message = (
                f"wandb unavailable ({stage} failed: {type(exc).__name__}: {cause}); "
                f"continuing with local files only in {self.run_dir}"
            )
            logger.warning(message)
            # Aim at the caller of the public method (most failures are two frames below it).
            warnings.warn(message, WandbUnavailableWarning, stacklevel=4)
        if run is not None and stage != "finish":
            try:
                run.finish(exit_code=1)
            except Exception:  # already failing; the warning above is the report
                pass

    def _to_wandb(self, stage: str, data: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.log(data)
        except Exception as exc:
            self._give_up_wandb(stage, exc)

    # -----------------------------------------------------------------------------------------
    # Public API

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"RunLogger for {self.run_dir} is closed")

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """Append `record` to ``metrics.jsonl`` (durably) and forward it to W&B.

        Include the step key of its axis: ``train/step`` with ``train/*`` metrics,
        ``generation`` with ``gen/*`` metrics. Values must be numbers, strings, booleans, None,
        or lists/dicts of those; numpy scalars and one-element tensors are converted. Raises
        ``TypeError`` naming the key otherwise, and :class:`icl_stl.io.PersistenceError` if the
        local file cannot be written.
        """
        self._check_open()
        if not isinstance(record, Mapping):
            raise TypeError(f"metrics record must be a mapping, got {type(record).__name__}")
        plain = _plain(dict(record), "metrics", strict=True)
        append_jsonl(self.metrics_path, plain)
        self._to_wandb("log", plain)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Atomically replace ``summary.json`` with `summary` and set it as the W&B summary.

        Values follow the rules of :meth:`log_metrics`. Non-finite floats are written as
        ``NaN``/``Infinity`` (see :func:`icl_stl.io.atomic_write_json`).
        """
        self._check_open()
        if not isinstance(summary, Mapping):
            raise TypeError(f"summary must be a mapping, got {type(summary).__name__}")
        plain = _plain(dict(summary), "summary", strict=True)
        atomic_write_json(self.summary_path, plain)
        if self._run is not None:
            try:
                self._run.summary.update(plain)
            except Exception as exc:
                self._give_up_wandb("summary", exc)

    def update_wandb_summary(self, values: Mapping[str, Any]) -> None:
        """Set headline values in the W&B summary only; summary.json is left to its writer.

        For runs whose full summary.json is too large for a dashboard summary.
        """
        self._check_open()
        if self._run is not None:
            try:
                self._run.summary.update(_plain(dict(values), "summary", strict=True))
            except Exception as exc:
                self._give_up_wandb("summary", exc)

    def log_image(
        self, key: str, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
    ) -> None:
        """Log the image file at `path` to W&B under `key` (no local copy: it is already a file).

        `extra` is logged in the same call, e.g. ``{"generation": 3}`` for a ``gen/*`` key so
        the image lands on the generation axis. Raises ``FileNotFoundError`` naming `path` if it
        does not exist, whatever the mode, so a broken plot path shows up in offline tests too.
        """
        self._check_open()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image to log does not exist: {path}")
        if self._run is None:
            return
        data = _plain(dict(extra or {}), "extra", strict=True)
        try:
            data[key] = self._wandb.Image(str(path))
        except Exception as exc:
            self._give_up_wandb("image", exc)
            return
        self._to_wandb("image", data)

    def close(self, *, failed: bool = False) -> None:
        """Finish the W&B run (marked failed if `failed`). Idempotent; never raises for W&B."""
        if self._closed:
            return
        self._closed = True
        run, self._run = self._run, None
        if run is None:
            return
        try:
            run.finish(exit_code=1 if failed else 0)
        except Exception as exc:
            self._give_up_wandb("finish", exc)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc_type is not None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("wandb" if self._run is not None else "local")
        return f"RunLogger({str(self.run_dir)!r}, mode={self.mode!r}, {state})"
