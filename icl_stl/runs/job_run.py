"""RunLogger's own W&B run: starting it, logging to it, and giving W&B up after a failure.

``mode="online"`` that cannot start (no network, no API key) falls back to offline W&B files, to
be uploaded later with ``wandb sync``; any other failure (not installed, unwritable directory, a
crash mid-run) is reported once, as a logged warning, and W&B is not used again: the local files
carry on. Every run, the job's and each member's (:mod:`icl_stl.runs.member_runs`), is opened by
:meth:`JobRun._init_run`, which defines the ``train/*`` and ``gen/*`` step axes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from icl_stl.runs.wandb_util import cause, could_prompt, finish_quietly, wandb_settings

logger = logging.getLogger("icl_stl.runs.logger")  # one logger for the RunLogger's warnings


class JobRun:
    """RunLogger's W&B plumbing for its own (the job's) run.

    A mixin of :class:`icl_stl.runs.logger.RunLogger`, which provides the attributes below.
    """

    run_dir: Path
    mode: str
    project: str
    config: dict[str, Any]
    name: str | None
    group: str | None
    job_type: str | None
    tags: list[str]
    _init_timeout_s: float
    _wandb_mode: str
    _run: Any
    _wandb: Any
    _warned: bool

    @property
    def wandb_active(self) -> bool:
        """Whether metrics are currently forwarded to W&B."""
        return self._run is not None

    @property
    def wandb_mode(self) -> str:
        """The mode W&B actually runs in: ``mode``, or ``"offline"`` after the online fallback."""
        return self._wandb_mode

    @property
    def run_id(self) -> str | None:
        """The W&B run id (to pass as `resume_id` when resuming), or None without W&B."""
        return None if self._run is None else str(self._run.id)

    def _init_run(self, mode: str, *, name: str | None, tags: list[str],
                  config: dict[str, Any], resume_id: str | None = None) -> Any:
        wandb = self._wandb
        run = wandb.init(
            project=self.project,
            config=config,
            mode=mode,
            dir=str(self.run_dir),
            name=name,
            group=self.group,
            job_type=self.job_type,
            tags=tags or None,
            id=resume_id,
            resume="allow" if resume_id else None,
            # Each run is its own: the default would hand back a still-open run from an earlier
            # RunLogger in the same process, and member runs are open at the same time.
            reinit="create_new",
            settings=wandb_settings(wandb, self._init_timeout_s),
        )
        run.define_metric("train/global_step")
        run.define_metric("train/*", step_metric="train/global_step")
        run.define_metric("generation")
        run.define_metric("gen/*", step_metric="generation")
        return run

    def _start_wandb(self, *, resume_id: str | None) -> None:
        try:
            import wandb

            self._wandb = wandb
        except Exception as exc:
            self._give_up_wandb("import", exc)
            return
        kwargs = dict(name=self.name, tags=self.tags, config=self.config,
                      resume_id=resume_id)
        try:
            if self.mode == "online" and could_prompt():
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
            cause(online_error),
            self.run_dir / "wandb" / "offline-run-*",
        )

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
            f"wandb unavailable ({stage} failed: {cause(exc)}); continuing with local files "
            f"only in {self.run_dir}"
        )
        if run is not None and stage != "finish":
            finish_quietly(run, 1)

    def _to_wandb(self, stage: str, data: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.log(data)
        except Exception as exc:
            self._give_up_wandb(stage, exc)
