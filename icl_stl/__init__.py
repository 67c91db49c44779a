"""icl-stl: a testbed for self-consuming training loops of in-context learners."""
