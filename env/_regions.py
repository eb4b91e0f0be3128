"""Named editable regions: finding the markers and vetting text that goes into a region.

Markers are whole lines, exactly::

    # ── EDITABLE REGION START: <name> ──
    # ── EDITABLE REGION END: <name> ──

The marker lines belong to the frozen text. Text an agent puts into a region must not contain
anything that could later be read as a marker (by us, by a sandbox re-parsing the file, or by
a human reading a diff), nor characters that make the text mean something other than it shows
(lone CR and U+2028 act as line breaks for Python or editors; bidi controls reorder what a
reader sees — "Trojan Source").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "MARKER_END",
    "MARKER_START",
    "MarkerSpan",
    "RegionSyntaxError",
    "content_lines",
    "find_regions",
    "format_ranges",
    "line_problem",
    "looks_like_marker",
]

MARKER_START = "# ── EDITABLE REGION START: {name} ──"
MARKER_END = "# ── EDITABLE REGION END: {name} ──"
_MARKER = re.compile(r"^# ── EDITABLE REGION (START|END): ([A-Za-z_][A-Za-z0-9_]*) ──$")


class RegionSyntaxError(ValueError):
    """Markers in a codebase file that do not pair up (the message names the line)."""


@dataclass(frozen=True)
class MarkerSpan:
    """One region as found in a file: the 1-based line numbers of its two marker lines."""

    name: str
    start_marker: int
    end_marker: int

    @property
    def body(self) -> tuple[int, int]:
        """First and last body line (last < first when the region is empty)."""
        return self.start_marker + 1, self.end_marker - 1


def find_regions(lines: list[str]) -> list[MarkerSpan]:
    """The regions of a file given as lines (no newlines), in file order.

    Raises `RegionSyntaxError` for nested, unterminated, mismatched or duplicate regions and
    for lines that look like markers without being exact ones.
    """
    spans: list[MarkerSpan] = []
    seen: set[str] = set()
    open_name: str | None = None
    open_line = 0
    for number, line in enumerate(lines, start=1):
        match = _MARKER.match(line)
        if match is None:
            if "EDITABLE REGION START" in line or "EDITABLE REGION END" in line:
                raise RegionSyntaxError(f"line {number}: malformed region marker {line!r}")
            continue
        kind, name = match.groups()
        if kind == "START":
            if open_name is not None:
                raise RegionSyntaxError(
                    f"line {number}: region {name!r} starts inside region {open_name!r} "
                    f"(opened at line {open_line})"
                )
            if name in seen:
                raise RegionSyntaxError(f"line {number}: duplicate region {name!r}")
            open_name, open_line = name, number
        else:
            if open_name != name:
                raise RegionSyntaxError(
                    f"line {number}: END of region {name!r} without its START"
                    + (f" (region {open_name!r} is open)" if open_name else "")
                )
            spans.append(MarkerSpan(name, open_line, number))
            seen.add(name)
            open_name = None
    if open_name is not None:
        raise RegionSyntaxError(f"line {open_line}: region {open_name!r} has no END marker")
    return spans


# Letters from other scripts that render like the Latin letters of "EDITABLE REGION START END".
# fmt: off
_CONFUSABLES = str.maketrans({
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "і": "i",
    "І": "I", "Ι": "I", "Α": "A", "Β": "B", "Ε": "E", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T",
    "ο": "o", "ı": "i", "Ӏ": "I", "ℓ": "l"
})
# fmt: on


_REGION_WORDS = re.compile(r"region[\W_]*(start|end)(?![a-z])")


def _skeleton(line: str) -> str:
    """Lower-case ASCII letters of a line after NFKC and confusable folding."""
    folded = unicodedata.normalize("NFKC", line).translate(_CONFUSABLES).casefold()
    return "".join(ch for ch in folded if "a" <= ch <= "z")


def looks_like_marker(line: str) -> bool:
    """Whether a line could be taken for a region marker by a parser or a reader.

    Deliberately broad: spacing, dashes, case, full-width forms, zero-width characters and
    Cyrillic/Greek look-alikes are all folded away before matching.
    """
    if _MARKER.match(line):
        return True
    skeleton = _skeleton(line)
    if "editableregion" in skeleton:
        return True
    # "REGION END: x" alone is marker-like only in a comment: `decay_region_end = 3` is code.
    folded = unicodedata.normalize("NFKC", line).translate(_CONFUSABLES).casefold()
    return folded.lstrip().startswith("#") and _REGION_WORDS.search(folded) is not None


# Characters refused anywhere in agent text, with the name used in the error message.
# fmt: off
_BIDI = {
    "\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066",
    "\u2067", "\u2068", "\u2069",
}
# fmt: on
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
_LINE_BREAKS = {"\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"}


def _bad_character(ch: str) -> str | None:
    if ch == "\r":
        return "a carriage return (CR) not followed by a line feed"
    if ch in _LINE_BREAKS:
        return f"the line-breaking character U+{ord(ch):04X} ({unicodedata.name(ch, 'control')})"
    if ch in _BIDI:
        return f"the bidirectional control character U+{ord(ch):04X}"
    if ch in _INVISIBLE:
        return f"the invisible character U+{ord(ch):04X}"
    if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
        return f"the control character U+{ord(ch):04X}"
    return None


def content_lines(content: str) -> list[str]:
    """Split agent content into lines, or raise ValueError saying what is wrong and where.

    CRLF line endings are normalised to LF (agents on some platforms send them); a CR anywhere
    else is refused because Python's tokenizer treats a lone CR as a line break. One trailing
    newline is dropped, so ``"a\\nb"`` and ``"a\\nb\\n"`` are both two lines; ``""`` is none.
    """
    text = content.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n") if content != "" else []
    for offset, line in enumerate(lines, start=1):
        problem = line_problem(line)
        if problem:
            raise ValueError(f"content line {offset} {problem}")
    return lines


def line_problem(line: str) -> str | None:
    """Why one line (no newline) may not go into a region, or None if it may."""
    for ch in line:
        problem = _bad_character(ch)
        if problem:
            return f"contains {problem}"
    if looks_like_marker(line):
        return (
            f"looks like an editable-region marker ({line.strip()!r}); "
            "region markers are frozen and cannot be written or imitated"
        )
    return None


def format_range(start: int, end: int) -> str:
    """``191–201``; an emptied region (end < start) reads ``empty, after line 190``."""
    if end < start:
        return f"empty, after line {start - 1}"
    return f"{start}–{end}"


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    """``191–201, 245–247`` (en dashes, as MLS-Bench)."""
    return ", ".join(format_range(s, e) for s, e in ranges) if ranges else "none"
