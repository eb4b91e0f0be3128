"""The run's transcript: one JSON object per line, appended and flushed as things happen.

The first line is a header carrying ``TRANSCRIPT_FORMAT_VERSION``; every later line is an
event with ``kind`` and ``t`` (UNIX seconds). A run killed mid-write leaves at most one
truncated last line, which ``read_transcript`` drops.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TypeAlias

TRANSCRIPT_FORMAT_VERSION = 1
TRANSCRIPT_NAME = "transcript.jsonl"

#: One transcript line. Values are whatever ``json.dumps(default=str)`` writes; readers narrow
#: the fields they use.
Event: TypeAlias = dict[str, object]


class TranscriptError(Exception):
    """A transcript file that cannot be read as a PretrainBench transcript."""


class Transcript:
    """Append-only JSONL writer; each event is flushed to disk before ``append`` returns."""

    def __init__(self, run_dir: Path, *, header: Event | None = None) -> None:
        self.path = run_dir / TRANSCRIPT_NAME
        self.snapshots_dir = run_dir / "snapshots"
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            _repair_tail(self.path)
        self._file = self.path.open("a", encoding="utf-8")
        if not exists:
            self._write(
                {
                    "kind": "header",
                    "format_version": TRANSCRIPT_FORMAT_VERSION,
                    "t": time.time(),
                    **(header or {}),
                }
            )

    def append(self, kind: str, **data: object) -> Event:
        """Write one event and return it (as written)."""
        event = {"kind": kind, "t": round(time.time(), 3), **data}
        self._write(event)
        return event

    def snapshot(self, step: int, filename: str, text: str) -> Path:
        """Save the full text of an edited file after step ``step``; returns its path."""
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        safe = filename.replace("/", "__")
        path = self.snapshots_dir / f"{step:03d}_{safe}"
        path.write_text(text, encoding="utf-8")
        return path

    def close(self) -> None:
        """Close the file (events already written are on disk)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _write(self, event: Event) -> None:
        if self._file.closed:  # a call after the run ended (e.g. a client calling on): still kept
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def read_transcript(path: Path) -> list[Event]:
    """All complete events of a transcript, header first; a truncated last line is dropped."""
    if path.is_dir():
        path = path / TRANSCRIPT_NAME
    if not path.exists():
        raise TranscriptError(f"no transcript at {path}")
    events: list[Event] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                break  # killed while writing the last line
            raise TranscriptError(f"{path}:{number}: not JSON ({e})") from e
        if not isinstance(event, dict) or "kind" not in event:
            raise TranscriptError(f"{path}:{number}: not a transcript event")
        events.append(event)
    if not events or events[0]["kind"] != "header":
        raise TranscriptError(f"{path}: the first line is not a transcript header")
    version = events[0].get("format_version")
    if version != TRANSCRIPT_FORMAT_VERSION:
        raise TranscriptError(
            f"{path}: transcript format {version!r}, this runner reads {TRANSCRIPT_FORMAT_VERSION}"
        )
    return events


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (a kill mid-write) so that appends start on a fresh line."""
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with path.open("r+b") as f:
        f.truncate(cut)
