"""A fake `wandb` module recording exactly what RunLogger asks of W&B, without W&B."""

from __future__ import annotations

import sys
from typing import Any

import pytest


class FakeConfig(dict):
    def update(self, values: dict, allow_val_change: bool = False) -> None:
        super().update(values)


class FakeRun:
    def __init__(self, fail_log_after: int | None = None, name: str = "fake-run",
                 run_id: str = "fake123") -> None:
        self.id = run_id
        self.name = name
        self.init: dict[str, Any] = {}
        self.logged: list[tuple[dict, dict]] = []
        self.metrics: list[tuple[tuple, dict]] = []
        self.summary: dict[str, Any] = {}
        self.config = FakeConfig()
        self.finished: list[int | None] = []
        self.fail_log_after = fail_log_after

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        self.metrics.append((args, kwargs))

    def log(self, data: dict, **kwargs: Any) -> None:
        if self.fail_log_after is not None and len(self.logged) >= self.fail_log_after:
            raise ConnectionError("wandb-core went away")
        self.logged.append((dict(data), kwargs))

    def finish(self, exit_code: int | None = None) -> None:
        self.finished.append(exit_code)


class FakeWandb:
    """`wandb.init` hands out `first` (if given), then a new FakeRun per call; it raises for a
    mode in `fail_modes`, and from call number `fail_from_call` (0-based) on."""

    class Settings:
        model_fields = {"init_timeout": None, "finish_timeout": None, "silent": None,
                        "console": None}

        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    def __init__(self, first: FakeRun | None = None, fail_modes: tuple[str, ...] = (),
                 fail_from_call: int | None = None) -> None:
        self.first, self.fail_modes, self.fail_from_call = first, fail_modes, fail_from_call
        self.inits: list[dict[str, Any]] = []
        self.runs: list[FakeRun] = []
        self.calls: dict[str, Any] = {}

    def init(self, **kwargs: Any) -> FakeRun:
        self.inits.append(kwargs)
        self.calls["init"] = kwargs
        if kwargs["mode"] in self.fail_modes:
            raise ConnectionError(f"cannot start {kwargs['mode']}")
        if self.fail_from_call is not None and len(self.inits) > self.fail_from_call:
            raise ConnectionError("wandb-core refused another run")
        if self.first is not None and not self.runs:
            run = self.first
        else:
            run = FakeRun(name=kwargs.get("name") or f"run{len(self.runs)}",
                          run_id=kwargs.get("id") or f"fake{len(self.inits)}")
        run.init = kwargs
        self.runs.append(run)
        return run

    @staticmethod
    def login(**kwargs: Any) -> bool:
        return True

    @staticmethod
    def Image(path: str) -> tuple[str, str]:  # noqa: N802 (wandb's name)
        return ("image", path)


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeWandb) -> FakeWandb:
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return fake
