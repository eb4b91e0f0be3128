"""One file of a workspace as a value: frozen segments and open-region bodies, alternating.

A `WorkspaceFile` never changes: `replace` and `insert` return a new one, so an undo stack is a
stack of values and a rejected edit leaves nothing to roll back. An edit can only ever replace
lines of one body, so frozen text cannot change by construction (`env._checks` verifies it
independently after every edit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from env._errors import IntegrityError
from env._regions import find_regions

__all__ = ["CREATED_REGION", "Part", "WorkspaceFile", "split_parts", "split_text"]

CREATED_REGION = "(whole file)"  # the one region of a file the agent created


@dataclass(frozen=True)
class Part:
    """Frozen text (``name`` None) or the body of an open region."""

    name: str | None
    lines: tuple[str, ...]

    @property
    def frozen(self) -> bool:
        return self.name is None


def split_text(text: str) -> tuple[list[str], bool]:
    """Lines without newlines, and whether the text ended with one."""
    if text == "":
        return [], True
    trailing = text.endswith("\n")
    return (text[:-1] if trailing else text).split("\n"), trailing


def split_parts(path: str, text: str, open_regions: Sequence[str]) -> tuple[tuple[Part, ...], bool]:
    """Parts of a codebase file whose named regions ``open_regions`` are open.

    Raises `IntegrityError` for a region without markers, `RegionSyntaxError` for bad markers.
    """
    lines, trailing = split_text(text)
    spans = {span.name: span for span in find_regions(lines)}
    missing = [name for name in open_regions if name not in spans]
    if missing:
        raise IntegrityError(
            f"{path}: no markers for region(s) {', '.join(missing)} "
            f"(regions in the file: {', '.join(spans) or 'none'})"
        )
    chosen = sorted((spans[name] for name in open_regions), key=lambda s: s.start_marker)
    parts: list[Part] = []
    cursor = 0  # 0-based index of the first line not yet assigned to a part
    for span in chosen:
        parts.append(Part(None, tuple(lines[cursor : span.start_marker])))  # to the START marker
        parts.append(Part(span.name, tuple(lines[span.start_marker : span.end_marker - 1])))
        cursor = span.end_marker - 1  # the END marker opens the next frozen part
    parts.append(Part(None, tuple(lines[cursor:])))
    return tuple(parts), trailing


@dataclass(frozen=True)
class WorkspaceFile:
    """A codebase-relative path, its parts, and the text it started from."""

    path: str
    parts: tuple[Part, ...]
    trailing_newline: bool
    original_text: str
    editable: bool
    created: bool = False

    @classmethod
    def from_codebase(cls, path: str, text: str, open_regions: Sequence[str]) -> WorkspaceFile:
        """An editable codebase file with ``open_regions`` open."""
        parts, trailing = split_parts(path, text, open_regions)
        return cls(path, parts, trailing, text, editable=True)

    @classmethod
    def read_only(cls, path: str, text: str) -> WorkspaceFile:
        lines, trailing = split_text(text)
        return cls(path, (Part(None, tuple(lines)),), trailing, text, editable=False)

    @classmethod
    def new(cls, path: str, lines: Sequence[str]) -> WorkspaceFile:
        """A file the agent created: one region, the whole file."""
        parts = (Part(None, ()), Part(CREATED_REGION, tuple(lines)), Part(None, ()))
        return cls(path, parts, True, "", editable=True, created=True)

    @property
    def python(self) -> bool:
        return self.path.endswith(".py")

    @cached_property
    def lines(self) -> tuple[str, ...]:
        return tuple(line for part in self.parts for line in part.lines)

    @cached_property
    def text(self) -> str:
        if not self.lines:
            return ""
        return "\n".join(self.lines) + ("\n" if self.trailing_newline else "")

    def regions(self) -> list[tuple[Part, int, int]]:
        """Open parts with their current 1-based first and last line (last < first if empty)."""
        out = []
        offset = 0
        for part in self.parts:
            if not part.frozen:
                out.append((part, offset + 1, offset + len(part.lines)))
            offset += len(part.lines)
        return out

    def ranges(self) -> list[tuple[int, int]]:
        return [(start, end) for _, start, end in self.regions()]

    @cached_property
    def editable_lines(self) -> frozenset[int]:
        return frozenset(n for _, start, end in self.regions() for n in range(start, end + 1))

    def bodies(self) -> dict[str, list[str]]:
        return {part.name: list(part.lines) for part in self.parts if part.name is not None}

    def empty_regions(self) -> list[tuple[str, int]]:
        """(name, first line) of each region that is empty now."""
        return [(p.name or "", s) for p, s, e in self.regions() if e < s]

    def region_holding(self, start: int, end: int) -> tuple[str, int] | None:
        """The region whose lines ``start..end`` all are, with its first line; else None."""
        for part, first, last in self.regions():
            if first <= start and end <= last and part.name is not None:
                return part.name, first
        return None

    def region_after(self, after: int) -> tuple[str, int] | None:
        """The region a line inserted after line ``after`` would join (after its START marker
        line or after one of its lines), with its first line; else None."""
        for part, first, last in self.regions():
            if first - 1 <= after <= last and part.name is not None:
                return part.name, first
        return None

    def with_body(self, name: str, lines: Sequence[str]) -> WorkspaceFile:
        """This file with region ``name``'s body replaced (a new value)."""
        parts = tuple(Part(p.name, tuple(lines)) if p.name == name else p for p in self.parts)
        return dataclasses.replace(self, parts=parts)

    def with_bodies(self, bodies: Mapping[str, Sequence[str]]) -> WorkspaceFile:
        """This file with every open region's body taken from ``bodies`` (same names)."""
        parts = tuple(
            p if p.name is None else Part(p.name, tuple(bodies[p.name])) for p in self.parts
        )
        return dataclasses.replace(self, parts=parts)

    def replace(self, start: int, end: int, new_lines: Sequence[str]) -> WorkspaceFile:
        """Lines ``start..end`` (inclusive, inside one region) replaced by ``new_lines``."""
        held = self.region_holding(start, end)
        if held is None:
            raise ValueError(f"lines {start}..{end} are not inside one region")
        name, first = held
        body = list(self.bodies()[name])
        body[start - first : end - first + 1] = new_lines
        return self.with_body(name, body)

    def insert(self, after: int, new_lines: Sequence[str]) -> WorkspaceFile:
        """``new_lines`` inserted after line ``after`` (a START marker or a region line)."""
        held = self.region_after(after)
        if held is None:
            raise ValueError(f"line {after} is not a region's START marker or a region line")
        name, first = held
        body = list(self.bodies()[name])
        body[after - first + 1 : after - first + 1] = new_lines
        return self.with_body(name, body)
