"""Numbered listings of a workspace file: the whole file (first observation), a range (``view``)
and the ``[Current file: …]`` snapshot that ends every edit result. The words are
`env._texts`'; this module picks the lines."""

from __future__ import annotations

import difflib
from collections.abc import Set as AbstractSet

from env import _texts as texts
from env._file import WorkspaceFile

__all__ = ["file_diff", "numbered", "render_file", "snapshot"]

_CONTEXT_BEFORE = 3  # frozen lines shown above a region in a snapshot
_CONTEXT_AFTER = 1
_SHOW_WHOLE_REGION = 8  # regions up to this many lines are shown whole in a snapshot


def numbered(f: WorkspaceFile, first: int, last: int) -> list[str]:
    """Lines ``first..last`` numbered, editable ones marked."""
    editable = f.editable_lines
    return [_line(f, n, editable) for n in range(first, last + 1)]


def _line(f: WorkspaceFile, n: int, editable: AbstractSet[int]) -> str:
    """Line `n` numbered; the marker of a region not open here is shown as frozen."""
    text = f.lines[n - 1]
    if n not in editable and not any(n in (s - 1, e + 1) for s, e in f.ranges()):
        text = texts.frozen_marker(text)
    return texts.listing_line(n, text, n in editable)


def render_file(f: WorkspaceFile, name: str) -> str:
    """The whole numbered file, headed ``F [EDITABLE — lines …]`` (or ``[READ-ONLY]``)."""
    body = numbered(f, 1, len(f.lines))
    return texts.file_listing(name, f.ranges() if f.editable else None, body)


def snapshot(f: WorkspaceFile, name: str) -> str:
    """``[Current file: F | editable: … | total: N lines]`` and each region with a little
    context: whole when short, else its first and last three lines."""
    lines = f.lines
    editable = f.editable_lines
    out = [texts.snapshot_header(name, f.ranges(), len(lines))]
    shown: set[int] = set()
    for _, start, end in f.regions():
        shown.update(
            range(max(1, start - _CONTEXT_BEFORE), min(len(lines), end + _CONTEXT_AFTER) + 1)
        )
        if end - start + 1 > _SHOW_WHOLE_REGION:
            shown.difference_update(range(start + 3, end - 2))
    previous = 0
    for n in sorted(shown):
        if previous and n - previous > 1:
            inside = previous in editable and n in editable
            out.append(texts.skipped_lines(n - previous - 1) if inside else "")
        out.append(_line(f, n, editable))
        previous = n
    return "\n".join(out)


def file_diff(before: str, after: str, name: str, *, created: bool = False) -> str:
    """The unified diff of one file (``a/name`` → ``b/name``; from ``/dev/null`` when created),
    every line ending in a newline even where the file's last line has none."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile="/dev/null" if created else f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
