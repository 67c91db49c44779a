"""A generated block inside a hand-written README: the lines between two marker comments are
replaced, the text around them kept (used by scripts/v2_parts_table.py and
scripts/results_table_v2.py)."""

from __future__ import annotations

from pathlib import Path


def replace_between(readme: Path, begin: str, end: str, lines: list[str]) -> bool:
    """Write `lines` between the markers; False (nothing written) when they are absent."""
    text = readme.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    return True
