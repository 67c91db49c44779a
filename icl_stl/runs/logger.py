"""The single place a run writes its metrics: local files always, Weights & Biases when it can.

Local files are the record of a run and are written first, durably (see :mod:`icl_stl.persistence`):

* ``<run_dir>/metrics.jsonl``: one JSON object per :meth:`RunLogger.log_metrics` call;
* ``<run_dir>/summary.json``: the latest :meth:`RunLogger.write_summary`, replaced atomically.

W&B is a convenience on top. ``mode="online"`` that cannot start (no network, no API key)
falls back to offline W&B files, to be uploaded later with ``wandb sync``. Any other failure
(not installed, unwritable directory, a crash mid-run) is reported once, as a logged warning,
and the run continues with local files only: logging never kills or hangs a run. A failure to
write the *local* files is not swallowed (:class:`icl_stl.persistence.PersistenceError`), since then the
run's results would be lost.

Two step axes are defined so that training and the self-consuming loop can share one W&B run:
training metrics are logged as ``train/<name>`` against ``train/global_step`` (optimizer steps
summed over the loop's generations; ``train/step`` restarts every generation), per-generation
metrics as ``gen/<name>`` against ``generation``. Records are logged without W&B's global
``step=`` argument, which would force a single axis.

A job of K loops (members) can give each member its own W&B run (:meth:`open_member_runs`),
grouped under the job's name; per-member values are passed as ``members=`` to
:meth:`RunLogger.log_metrics`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

from icl_stl.persistence import append_jsonl, atomic_write_json

logger = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")

# How long run.finish() may spend uploading before giving up (the data stays on disk for
# `wandb sync`). Without a bound a network outage at the end of a run would hang it forever.
FINISH_TIMEOUT_S = 120.0

# Opening a member run costs about 0.15 s offline (measured with wandb 0.31 on a loaded 2-core
# machine, K=10 and K=50 alike) and a server round trip online; past this many members their
# metrics go to the job's run as `<key>/member<i>` instead (`logger.member_runs`).
MEMBER_RUNS_DEFAULT = 50


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
            ``"disabled"`` (W&B is not even imported and no W&B file is created). Online that
            cannot start continues offline, with one warning giving the ``wandb sync`` command.
        project: W&B project.
        config: The resolved run configuration, a plain dict. Values that are not JSON types are
            converted (tuples to lists, paths to strings, numpy scalars to numbers, dataclasses
            to dicts) and any other object is recorded as its ``repr``, so a config never stops
            a run from logging.
        name, group, tags: W&B run name, group and tags. Member runs are grouped under `name`.
        init_timeout_s: Upper bound, passed to W&B as ``init_timeout``, on how long W&B may take
            to start. Online with no network, ``wandb.init`` gives up after about this long
            (measured: timeout + ~1 s with wandb 0.31), then the offline fallback starts in
            about a second. On a terminal, a credentials check that avoids W&B's unbounded login
            prompt comes first and, when a key is configured but the server is unreachable,
            adds W&B's own ~5 s user lookup.
        resume_id: W&B run id to continue (``resume="allow"``): store :attr:`run_id` with the
            checkpoint and pass it back when resuming, so a resumed run extends its W&B run.
        member_runs: At most this many member runs are opened by :meth:`open_member_runs`
            (0: never); a job with more members logs them to its own run with suffixes.

    Usable as a context manager; leaving it because of an exception marks the W&B runs failed.
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
        member_runs: int = MEMBER_RUNS_DEFAULT,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {list(MODES)}, got {mode!r}")
        if not isinstance(init_timeout_s, (int, float)) or not init_timeout_s > 0:
            raise ValueError(f"init_timeout_s must be a positive number, got {init_timeout_s!r}")
        if isinstance(member_runs, bool) or not isinstance(member_runs, int) or member_runs < 0:
            raise ValueError(f"member_runs must be an integer >= 0, got {member_runs!r}")
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.mode = mode
        self.config: dict[str, Any] = _plain(dict(config), "config", strict=False)
        self.name, self.project = name, project
        self.tags = list(tags) if tags else []
        self.member_runs = member_runs
        self._init_timeout_s = float(init_timeout_s)
        self._wandb_mode = mode  # "offline" after an online start fell back
        self._run: Any = None
        self._members: list[Any] = []
        self._wandb: Any = None
        self._warned = False
        self._closed = False
        if mode != "disabled":
            self._start_wandb(group=group, resume_id=resume_id)

    # -----------------------------------------------------------------------------------------
    # W&B plumbing

    @property
    def wandb_active(self) -> bool:
        """Whether metrics are currently forwarded to W&B."""
        return self._run is not None

    @property
    def wandb_mode(self) -> str:
        """The mode W&B actually runs in: ``mode``, or ``"offline"`` after the online fallback."""
        return self._wandb_mode

    @property
    def member_runs_active(self) -> bool:
        """Whether per-member metrics go to one W&B run per member."""
        return bool(self._members)

    @property
    def run_id(self) -> str | None:
        """The W&B run id (to pass as `resume_id` when resuming), or None without W&B."""
        return None if self._run is None else str(self._run.id)

    def _init_run(self, mode: str, *, name: str | None, group: str | None, tags: list[str],
                  config: dict[str, Any], resume_id: str | None = None) -> Any:
        wandb = self._wandb
        run = wandb.init(
            project=self.project,
            config=config,
            mode=mode,
            dir=str(self.run_dir),
            name=name,
            group=group,
            tags=tags or None,
            id=resume_id,
            resume="allow" if resume_id else None,
            # Each run is its own: the default would hand back a still-open run from an earlier
            # RunLogger in the same process, and member runs are open at the same time.
            reinit="create_new",
            settings=self._settings(wandb, self._init_timeout_s),
        )
        run.define_metric("train/global_step")
        run.define_metric("train/*", step_metric="train/global_step")
        run.define_metric("generation")
        run.define_metric("gen/*", step_metric="generation")
        return run

    def _start_wandb(self, *, group: str | None, resume_id: str | None) -> None:
        try:
            import wandb

            self._wandb = wandb
        except Exception as exc:
            self._give_up_wandb("import", exc)
            return
        kwargs = dict(name=self.name, group=group, tags=self.tags, config=self.config,
                      resume_id=resume_id)
        try:
            if self.mode == "online" and _could_prompt():
                # Where it can prompt, wandb.init without credentials asks for an API key and
                # waits forever, outside init_timeout; check for credentials without prompting.
                if not wandb.login(prompt=False, verify=False):
                    raise RuntimeError(
                        "no W&B API key configured (run `wandb login` or set WANDB_API_KEY)"
                    )
            self._run = self._init_run(self.mode, **kwargs)
        except Exception as exc:
            if self.mode != "online":
                self._give_up_wandb("init", exc)
                return
            online_error = exc
        else:
            return
        # Online could not start: keep the run's W&B data on disk so that it can be uploaded.
        try:
            self._run = self._init_run("offline", **kwargs)
        except Exception as exc:
            self._give_up_wandb("init", exc)
            return
        self._wandb_mode = "offline"
        logger.warning(
            "wandb unavailable online (init failed: %s); logging offline instead, upload later "
            "with: wandb sync %s",
            _cause(online_error),
            self.run_dir / "wandb" / "offline-run-*",
        )

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

    def _warn_once(self, message: str) -> None:
        # One path only: a logged warning reaches the console (Python's last-resort handler
        # when logging is not configured) and the run's log file; warnings.warn as well
        # printed every message twice.
        if not self._warned:
            self._warned = True
            logger.warning(message)

    def _give_up_wandb(self, stage: str, exc: BaseException) -> None:
        """Stop using W&B after a failure, warning once; local files carry on."""
        run, self._run = self._run, None
        self._warn_once(
            f"wandb unavailable ({stage} failed: {_cause(exc)}); continuing with local files "
            f"only in {self.run_dir}"
        )
        if run is not None and stage != "finish":
            _finish_quietly(run, 1)

    def _give_up_members(self, stage: str, exc: BaseException) -> None:
        """Stop using member runs; their metrics go to the job's run with suffixes."""
        runs, self._members = self._members, []
        self._warn_once(
            f"wandb member runs unavailable ({stage} failed: {_cause(exc)}); per-member metrics "
            f"go to the job's run as <key>/member<i>"
        )
        if stage != "finish":
            for run in runs:
                _finish_quietly(run, 1)

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

    def open_member_runs(self, names: Sequence[str], configs: Sequence[Mapping[str, Any]]) -> bool:
        """Give each of K >= 2 members its own W&B run; return whether they are in use.

        Member i's run is named ``names[i]``, grouped under this run's name, and has this run's
        config plus ``member: configs[i]``. Not opened without W&B, for a single member (this
        run is its run), or for more than `member_runs` members; :meth:`log_metrics` then puts
        member i's values in this run as ``<key>/member<i>``.
        """
        self._check_open()
        if len(names) != len(configs):
            raise ValueError(f"{len(names)} member names for {len(configs)} member configs")
        if self._run is None or len(names) < 2 or self._members:
            return bool(self._members)
        if len(names) > self.member_runs:
            logger.info("%d loops is more than logger.member_runs=%d: their W&B metrics go to "
                        "the job's run as <key>/member<i>", len(names), self.member_runs)
            return False
        group = self.name or str(self._run.name)
        tags = [*self.tags, "member"]
        for i, (name, config) in enumerate(zip(names, configs)):
            member = _plain(dict(config), f"configs[{i}]", strict=False)
            try:
                self._members.append(self._init_run(
                    self._wandb_mode, name=name, group=group, tags=tags,
                    config={**self.config, "member": member}))
            except Exception as exc:
                self._give_up_members("member init", exc)
                break
        return bool(self._members)

    def log_metrics(self, record: Mapping[str, Any],
                    members: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Append `record` to ``metrics.jsonl`` (durably) and forward it to W&B.

        Include the step key of its axis: ``train/global_step`` (and ``train/step``) with
        ``train/*`` metrics, ``generation`` with ``gen/*`` metrics. Values must be numbers,
        strings, booleans, None, or lists/dicts of those; numpy scalars and one-element tensors
        are converted. Raises ``TypeError`` naming the key otherwise, and
        :class:`icl_stl.persistence.PersistenceError` if the local file cannot be written.

        `members`, one mapping per member, holds per-member values: written locally as one line
        ``{**record, "members": [...]}``; on W&B, member i's run gets ``{**record,
        **members[i]}`` (see :meth:`open_member_runs`), else this run gets member i's keys with
        the suffix ``/member<i>`` (none for a single member). None values are not sent to W&B.
        """
        self._check_open()
        if not isinstance(record, Mapping):
            raise TypeError(f"metrics record must be a mapping, got {type(record).__name__}")
        plain = _plain(dict(record), "metrics", strict=True)
        if members is None:
            append_jsonl(self.metrics_path, plain)
            self._to_wandb("log", plain)
            return
        per = [_plain(dict(m), f"metrics.members[{i}]", strict=True)
               for i, m in enumerate(members)]
        append_jsonl(self.metrics_path, {**plain, "members": per})
        if self._members:
            for run, values in zip(self._members, per):
                try:
                    run.log({**plain, **_present(values)})
                except Exception as exc:
                    self._give_up_members("member log", exc)
                    break
            else:
                return
        if len(per) == 1:
            self._to_wandb("log", {**plain, **_present(per[0])})
        else:
            self._to_wandb("log", {**plain, **{f"{k}/member{i}": v for i, values in enumerate(per)
                                               for k, v in _present(values).items()}})

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Atomically replace ``summary.json`` with `summary` and set it as the W&B summary.

        Values follow the rules of :meth:`log_metrics`. Non-finite floats are written as
        ``NaN``/``Infinity`` (see :func:`icl_stl.persistence.atomic_write_json`).
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
        """Finish the W&B runs (marked failed if `failed`). Idempotent; never raises for W&B."""
        if self._closed:
            return
        self._closed = True
        members, self._members = self._members, []
        for member in members:
            try:
                member.finish(exit_code=1 if failed else 0)
            except Exception as exc:
                self._give_up_members("finish", exc)
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


def _cause(exc: BaseException) -> str:
    """`exc` on one line (W&B's messages span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` that are not None (missing, rather than null, on a W&B chart)."""
    return {k: v for k, v in values.items() if v is not None}


def _finish_quietly(run: Any, exit_code: int) -> None:
    try:
        run.finish(exit_code=exit_code)
    except Exception:  # already failing; the warning given is the report
        pass
