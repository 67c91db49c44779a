"""icl-stl: a testbed for self-consuming training loops of in-context learners."""

from typing import TYPE_CHECKING

# Bumped by every change that alters the numbers a run produces (a bug fix in training, a new
# default generator). It is part of every checkpoint's identity and of the default run name, so
# after such a change the same command starts afresh instead of reloading old generations, and
# resuming a checkpoint of another version is refused naming `results_version`.
RESULTS_VERSION = 2

if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` imports it
    from icl_stl.report.tidy import load_runs

__all__ = ["RESULTS_VERSION", "load_runs"]


def __getattr__(name: str):
    # `icl_stl.load_runs` (every loop record as a pandas DataFrame) is loaded on first use, so
    # `import icl_stl` stays light: no pandas, torch or matplotlib until a table is asked for.
    if name == "load_runs":
        from icl_stl.report.tidy import load_runs

        return load_runs
    raise AttributeError(f"module 'icl_stl' has no attribute {name!r}")
