"""Which W&B runs a loop continues, and which generations each of them already holds.

A loop killed and started again with the same command continues its W&B runs (the job's and one
per loop, ``resume="allow"``) and logs each finished generation exactly once across the kill:

* the run ids are kept in the loop's resume file (:class:`~icl_stl.runs.wandb_files.ResumeState`,
  ``wandb.json`` in its checkpoint directory, written atomically under the loop's lock);
* the loop hands every finished generation to :meth:`RunLogger.log_generation`, those loaded from
  disk on resume included; a generation is sent to a run only if the run does not hold it yet,
  and appended to ``metrics.jsonl`` only past ``logged_through``, the marker written after a
  generation was logged. A generation finished but not logged before a kill is thus logged on
  resume from its records on disk.
* What a run holds: offline, what its ``.wandb`` files hold (read back, since W&B's buffer dies
  with a SIGKILL); online, the generations up to ``logged_through``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icl_stl.persistence import append_jsonl
from icl_stl.runs.wandb_files import ResumeState, logged_generations
from icl_stl.runs.wandb_util import cause, finish_quietly, member_config, plain, present

logger = logging.getLogger("icl_stl.runs.logger")  # one logger for the RunLogger's warnings


class LoopRuns:
    """The resume state of one loop's W&B runs; without a resume file, every run is new."""

    def __init__(self, resume_file: Path | None, wandb_dir: Path) -> None:
        self.state = None if resume_file is None else ResumeState.load(resume_file)
        self._wandb_dir = str(wandb_dir)
        self._held: dict[str, set[int]] = {}

    @property
    def job_id(self) -> str | None:
        """The job run to continue, if any."""
        return None if self.state is None else self.state.job

    def member_id(self, name: str) -> str | None:
        """The run of the loop named `name` to continue, if any."""
        return None if self.state is None else self.state.members.get(name)

    def opened(self, job_id: str | None, members: dict[str, str]) -> None:
        """Record the runs in use and this process's W&B directory."""
        if self.state is None or job_id is None:
            return
        self.state.job = job_id
        self.state.members = members or self.state.members
        if self._wandb_dir not in self.state.dirs:
            self.state.dirs.append(self._wandb_dir)
        self.state.save()

    def fresh(self, generation: int) -> bool:
        """Whether `generation` is not yet in the local metrics.jsonl."""
        return self.state is None or generation > self.state.logged_through

    def holds(self, run_id: str, generation: int, *, offline: bool) -> bool:
        """Whether the run `run_id` already holds `generation` (read once per run)."""
        if run_id not in self._held:
            self._held[run_id] = self._read(run_id, offline)
        return generation in self._held[run_id]

    def _read(self, run_id: str, offline: bool) -> set[int]:
        state = self.state
        if state is None or run_id not in {state.job, *state.members.values()}:
            return set()
        if offline:
            return logged_generations(state.dirs, run_id)
        return set(range(state.logged_through + 1))

    def mark(self, run_id: str, generation: int) -> None:
        self._held.setdefault(run_id, set()).add(generation)

    def logged(self, generation: int) -> None:
        """Move the marker past `generation`, now logged."""
        if self.state is not None and generation > self.state.logged_through:
            self.state.logged_through = generation
            self.state.save()


class MemberRuns:
    """RunLogger's per-loop W&B runs: opening them, routing per-loop values, logging generations.

    A mixin of :class:`icl_stl.runs.logger.RunLogger`, which provides the attributes below (the
    W&B methods through its other mixin, :class:`icl_stl.runs.job_run.JobRun`).
    """

    config: dict[str, Any]
    name: str | None
    tags: list[str]
    member_runs: int
    metrics_path: Path
    _run: Any
    _members: list[Any]
    _loops: LoopRuns
    _wandb_mode: str

    if TYPE_CHECKING:
        @property
        def run_id(self) -> str | None: ...
        def _check_open(self) -> None: ...
        def _init_run(self, mode: str, **kwargs: Any) -> Any: ...
        def _warn_once(self, message: str) -> None: ...
        def _give_up_wandb(self, stage: str, exc: BaseException) -> None: ...
        def _to_wandb(self, stage: str, data: dict[str, Any]) -> None: ...

    @property
    def member_runs_active(self) -> bool:
        """Whether per-member metrics go to one W&B run per member."""
        return bool(self._members)

    def open_member_runs(self, names: Sequence[str], members: Sequence[Mapping[str, Any]],
                         settings: Sequence[Mapping[str, Any]] | None = None) -> bool:
        """Give each of K >= 2 loops its own W&B run; return whether they are in use.

        Loop i's run is named ``names[i]``, in this run's group, and its config is this run's
        with ``settings[i]`` (the loop's own values by dotted path, e.g. ``{"seed": 1,
        "loop.real_fraction": 0.0}``) in place, ``member: members[i]``, and the job's name and
        the values replaced under ``job``. With a single loop this run is its run and takes its
        settings. Not opened without W&B or for more than `member_runs` loops:
        :meth:`log_metrics` then puts loop i's values in this run as ``<key>/member<i>``. Runs
        of the resume file are continued; the runs in use are written to it.
        """
        self._check_open()
        settings = list(settings) if settings is not None else [{} for _ in names]
        if not len(names) == len(members) == len(settings):
            raise ValueError(f"{len(names)} member names for {len(members)} member configs and "
                             f"{len(settings)} member settings")
        if self._run is None or self._members:
            return bool(self._members)
        if len(names) == 1:
            self._update_config(member_config(self.config, plain(dict(settings[0]), "settings[0]",
                                                                 strict=False),
                                              plain(dict(members[0]), "members[0]", strict=False),
                                              self.name))
        elif len(names) > self.member_runs:
            logger.info("%d loops is more than logger.member_runs=%d: their W&B metrics go to "
                        "the job's run as <key>/member<i>", len(names), self.member_runs)
        else:
            tags = [*self.tags, "member"]
            for i, (name, member, own) in enumerate(zip(names, members, settings)):
                config = member_config(self.config, plain(dict(own), f"settings[{i}]",
                                                          strict=False),
                                       plain(dict(member), f"members[{i}]", strict=False),
                                       self.name)
                try:
                    self._members.append(self._init_run(
                        self._wandb_mode, name=name, tags=tags, config=config,
                        resume_id=self._loops.member_id(name)))
                except Exception as exc:
                    self._give_up_members("member init", exc)
                    break
        self._loops.opened(self.run_id, {name: str(run.id)
                                         for name, run in zip(names, self._members)})
        return bool(self._members)

    def _update_config(self, config: dict[str, Any]) -> None:
        """Set the job run's config to `config` (changed top-level keys only)."""
        changed = {k: v for k, v in config.items() if self.config.get(k) != v}
        try:
            self._run.config.update(changed, allow_val_change=True)
        except Exception as exc:
            self._give_up_wandb("config", exc)

    def _send(self, record: dict[str, Any], per: list[dict[str, Any]],
              skip: set[str] = frozenset()) -> None:
        """`record` with each member's values: to the member runs, else to this run with
        suffixes; runs whose id is in `skip` get nothing."""
        if self._members:
            try:
                for run, values in zip(self._members, per):
                    if str(run.id) not in skip:
                        run.log({**record, **present(values)})
                return
            except Exception as exc:
                self._give_up_members("member log", exc)
        if self._run is None or str(self._run.id) in skip:
            return
        if len(per) == 1:
            self._to_wandb("log", {**record, **present(per[0])})
        else:
            self._to_wandb("log", {**record, **{f"{k}/member{i}": v for i, values in enumerate(per)
                                                for k, v in present(values).items()}})

    def _give_up_members(self, stage: str, exc: BaseException) -> None:
        """Stop using member runs; their metrics go to the job's run with suffixes."""
        runs, self._members = self._members, []
        self._warn_once(
            f"wandb member runs unavailable ({stage} failed: {cause(exc)}); per-member metrics "
            f"go to the job's run as <key>/member<i>"
        )
        if stage != "finish":
            for run in runs:
                finish_quietly(run, 1)

    def log_generation(self, generation: int, members: Sequence[Mapping[str, Any]],
                       job: Mapping[str, Any] | None = None) -> None:
        """Log a finished generation's ``gen/*`` values once, however often it is called.

        `members` as in :meth:`log_metrics`; `job` (e.g. per-group summaries) goes to this run
        only. A loop calls this for every finished generation, loaded or computed: with a
        resume file, a generation already in ``metrics.jsonl`` is not appended again and a run
        whose history holds it is not sent it again (see :mod:`icl_stl.runs.member_runs`).
        """
        self._check_open()
        head = {"generation": int(generation)}
        per = [plain(dict(m), f"metrics.members[{i}]", strict=True)
               for i, m in enumerate(members)]
        extra = plain(dict(job), "metrics", strict=True) if job else None
        if self._loops.fresh(generation):
            append_jsonl(self.metrics_path, {**head, "members": per})
            if extra:
                append_jsonl(self.metrics_path, {**head, **extra})
        runs = [str(r.id) for r in (self._run, *self._members) if r is not None]
        offline = self._wandb_mode == "offline"
        held = {r for r in runs if self._loops.holds(r, generation, offline=offline)}
        self._send(head, per, held)
        if extra and self._run is not None and str(self._run.id) not in held:
            self._to_wandb("log", {**head, **extra})
        for run_id in runs:
            self._loops.mark(run_id, generation)
        self._loops.logged(generation)

