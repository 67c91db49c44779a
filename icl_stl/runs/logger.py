"""The single place a run writes its metrics: local files always, Weights & Biases when it can.

Local files are the record of a run and are written first, durably (see :mod:`icl_stl.persistence`):

* ``<run_dir>/metrics.jsonl``: one JSON object per :meth:`RunLogger.log_metrics` call;
* ``<run_dir>/summary.json``: the latest :meth:`RunLogger.write_summary`, replaced atomically.

W&B is a convenience on top. ``mode="online"`` that cannot start (no network, no API key)
falls back to offline W&B files, to be uploaded later with ``wandb sync``. Any other failure
(not installed, unwritable directory, a crash mid-run) is reported once, as a logged warning,
and the run continues with local files only: logging never kills or hangs a run. A failure to
write the *local* files is not swallowed (:class:`icl_stl.persistence.PersistenceError`), since then the
run's results would be lost. The job's W&B run is started and given up in
:mod:`icl_stl.runs.job_run`.

Two step axes are defined so that training and the self-consuming loop can share one W&B run:
training metrics are logged as ``train/<name>`` against ``train/global_step`` (optimizer steps
summed over the loop's generations; ``train/step`` restarts every generation), per-generation
metrics as ``gen/<name>`` against ``generation``. Records are logged without W&B's global
``step=`` argument, which would force a single axis.

Every run has a group (the preset's or sweep's name, see ``icl_stl.cli.common``) and a job type
(train, loop, probe, report). A job of K loops (members) gives each loop its own W&B run
(:meth:`open_member_runs`) in the job's group, whose config holds that loop's own settings at the
top level; per-member values are passed as ``members=`` to :meth:`RunLogger.log_metrics` and
:meth:`RunLogger.log_generation`. With a `resume_file`, a resumed loop continues its runs and logs
every finished generation once (:mod:`icl_stl.runs.member_runs`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from icl_stl.persistence import append_jsonl, atomic_write_json
from icl_stl.runs.job_run import JobRun
from icl_stl.runs.member_runs import LoopRuns, MemberRuns
from icl_stl.runs.wandb_util import plain

MODES = ("offline", "online", "disabled")

# Opening a member run costs about 0.15 s offline (measured with wandb 0.31 on a loaded 2-core
# machine, K=10 and K=50 alike) and a server round trip online; past this many members their
# metrics go to the job's run as `<key>/member<i>` instead (`logger.member_runs`).
MEMBER_RUNS_DEFAULT = 50


class RunLogger(JobRun, MemberRuns):
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
        name, group, tags: W&B run name, group and tags; member runs share the group.
        job_type: W&B job type: train, loop, probe or report.
        init_timeout_s: Upper bound, passed to W&B as ``init_timeout``, on how long W&B may take
            to start. Online with no network, ``wandb.init`` gives up after about this long
            (measured: timeout + ~1 s with wandb 0.31), then the offline fallback starts in
            about a second. On a terminal, a credentials check that avoids W&B's unbounded login
            prompt comes first and, when a key is configured but the server is unreachable,
            adds W&B's own ~5 s user lookup.
        resume_id: W&B run id to continue (``resume="allow"``): store :attr:`run_id` with the
            checkpoint and pass it back when resuming, so a resumed run extends its W&B run.
        resume_file: A loop's ``wandb.json`` (in its checkpoint directory): the ids of its runs
            are kept there and continued by the same command after a kill, and every finished
            generation is logged once (:meth:`log_generation`; :mod:`icl_stl.runs.member_runs`).
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
        job_type: str | None = None,
        tags: list[str] | None = None,
        init_timeout_s: float = 30.0,
        resume_id: str | None = None,
        resume_file: str | os.PathLike[str] | None = None,
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
        self.config: dict[str, Any] = plain(dict(config), "config", strict=False)
        self.name, self.project, self.group, self.job_type = name, project, group, job_type
        self.tags = list(tags) if tags else []
        self.member_runs = member_runs
        self._init_timeout_s = float(init_timeout_s)
        self._wandb_mode = mode  # "offline" after an online start fell back
        self._run: Any = None
        self._members: list[Any] = []
        self._wandb: Any = None
        self._warned = False
        self._closed = False
        # No resume file without W&B: a disabled logger writes nothing but its local files.
        self._loops = LoopRuns(None if mode == "disabled" or resume_file is None
                               else Path(resume_file), self.run_dir / "wandb")
        if mode != "disabled":
            self._start_wandb(resume_id=resume_id or self._loops.job_id)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"RunLogger for {self.run_dir} is closed")

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
        values = plain(dict(record), "metrics", strict=True)
        if members is None:
            append_jsonl(self.metrics_path, values)
            self._to_wandb("log", values)
            return
        per = [plain(dict(m), f"metrics.members[{i}]", strict=True)
               for i, m in enumerate(members)]
        append_jsonl(self.metrics_path, {**values, "members": per})
        self._send(values, per)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Atomically replace ``summary.json`` with `summary` and set it as the W&B summary.

        Values follow the rules of :meth:`log_metrics`. Non-finite floats are written as
        ``NaN``/``Infinity`` (see :func:`icl_stl.persistence.atomic_write_json`).
        """
        self._check_open()
        if not isinstance(summary, Mapping):
            raise TypeError(f"summary must be a mapping, got {type(summary).__name__}")
        values = plain(dict(summary), "summary", strict=True)
        atomic_write_json(self.summary_path, values)
        if self._run is not None:
            try:
                self._run.summary.update(values)
            except Exception as exc:
                self._give_up_wandb("summary", exc)

    def update_wandb_summary(self, values: Mapping[str, Any]) -> None:
        """Set headline values in the W&B summary only; summary.json is left to its writer.

        For runs whose full summary.json is too large for a dashboard summary.
        """
        self._check_open()
        if self._run is not None:
            try:
                self._run.summary.update(plain(dict(values), "summary", strict=True))
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
        data = plain(dict(extra or {}), "extra", strict=True)
        try:
            data[key] = self._wandb.Image(str(path))
        except Exception as exc:
            self._give_up_wandb("image", exc)
            return
        self._to_wandb("image", data)

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Log a table (e.g. the report's verdicts) to W&B under `key`; nothing locally (the
        caller writes its own file). Cells follow the rules of :meth:`log_metrics`."""
        self._check_open()
        cells = plain([list(r) for r in rows], key, strict=True)
        if self._run is None:
            return
        try:
            table = self._wandb.Table(columns=list(columns), data=cells)
        except Exception as exc:
            self._give_up_wandb("table", exc)
            return
        self._to_wandb("table", {key: table})

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
