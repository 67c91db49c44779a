"""icl-stl: a testbed for self-consuming training loops of in-context learners."""

# Bumped by every change that alters the numbers a run produces (a bug fix in training, a new
# default generator). It is part of every checkpoint's identity and of the default run name, so
# after such a change the same command starts afresh instead of reloading old generations, and
# resuming a checkpoint of another version is refused naming `results_version`.
RESULTS_VERSION = 2
