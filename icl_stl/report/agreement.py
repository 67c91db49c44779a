"""Whether a regenerated result file says what the committed one says.

A committed JSON result (a report's verdicts, a pilot's analysis, a probe's decay fit) is checked
by regenerating it from the records committed beside it. Numbers are compared to 1e-9 relative,
not to the bit: on another CPU numpy's and LAPACK's sums round differently in the last digits
(docs/reproduce.md, "On a new machine").
"""

from __future__ import annotations

import math
from collections.abc import Collection

REL_TOL = 1e-9


def json_differences(committed, regenerated, where: str = "", ignore: Collection[str] = (),
                     rel_tol: float = REL_TOL) -> list[str]:
    """Where `regenerated` departs from `committed`: a number beyond `rel_tol` relative, another
    string or value, a missing key or list entry; keys named in `ignore` are skipped at any
    depth. Keys only `regenerated` has are not differences (a file written before a field
    existed lacks it)."""
    if isinstance(committed, dict):
        if not isinstance(regenerated, dict):
            return [f"{where}: {committed!r} became {regenerated!r}"]
        out = []
        for key, value in committed.items():
            if key in ignore:
                continue
            if key not in regenerated:
                out.append(f"{where}/{key}: missing")
            else:
                out += json_differences(value, regenerated[key], f"{where}/{key}", ignore,
                                        rel_tol)
        return out
    if isinstance(committed, list):
        if not isinstance(regenerated, list) or len(regenerated) != len(committed):
            return [f"{where}: {committed!r} became {regenerated!r}"]
        return [d for i, (a, b) in enumerate(zip(committed, regenerated))
                for d in json_differences(a, b, f"{where}[{i}]", ignore, rel_tol)]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                  for v in (committed, regenerated))
    if numbers and math.isclose(committed, regenerated, rel_tol=rel_tol, abs_tol=0.0):
        return []
    return [] if committed == regenerated else [f"{where}: {committed!r} became {regenerated!r}"]
