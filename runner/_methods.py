"""Hand-written methods: ``--region NAME=FILE`` files read into region texts, and a label.

A method is a baseline that is not in the task's ``baselines/`` folder: its region bodies are
edited in through the same ``edit`` tool path as an agent's edits (frozen text, invariants,
the code policy), then tested and submitted. Nothing here trusts a file more than an agent's
edit: this module only reads the files and names the run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from env import TaskSpec

#: the largest region file read (an editable region is a function or a dict, not a corpus)
MAX_REGION_BYTES = 256 * 1024
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class MethodError(ValueError):
    """A ``--region`` or ``--label`` that cannot be used; the message says which and why."""


def task_regions(task: TaskSpec) -> list[str]:
    """The names of the task's editable regions, in file order."""
    return [name for entry in task.editable_files for name in entry.regions]


def read_region_files(task: TaskSpec, specs: list[str]) -> dict[str, str]:
    """``["get_lr=my_schedule.py", …]`` → {region name: the file's text}.

    The file holds the region's body, without the region markers (as a baseline file's region
    block does between them). Raises `MethodError` for a malformed spec, a region the task
    does not open, a region named twice, or an unreadable, non-UTF-8 or oversized file.
    """
    known = task_regions(task)
    regions: dict[str, str] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        name, file = name.strip(), file.strip()
        if not sep or not name or not file:
            raise MethodError(f"--region {spec!r}: expected NAME=FILE, e.g. get_lr=my_schedule.py")
        if name not in known:
            raise MethodError(
                f"--region {spec!r}: task {task.id} has no editable region {name!r}; "
                f"its regions are: {', '.join(known)}"
            )
        if name in regions:
            raise MethodError(f"--region names region {name!r} twice")
        regions[name] = _read(Path(file), spec)
    return regions


def method_label(label: str | None, specs: list[str]) -> str:
    """``--label``, checked; else the first region file's stem (``my_schedule``)."""
    if label is None:
        stem = Path(specs[0].partition("=")[2].strip()).stem if specs else "method"
        label = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:100] or "method"
    if not _LABEL.match(label):
        raise MethodError(
            f"--label {label!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return label


def _read(path: Path, spec: str) -> str:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise MethodError(f"--region {spec!r}: cannot read {path}: {e.strerror or e}") from None
    if not path.is_file():
        raise MethodError(f"--region {spec!r}: {path} is not a file")
    if size > MAX_REGION_BYTES:
        raise MethodError(
            f"--region {spec!r}: {path} is {size:,} bytes; a region file may hold at most "
            f"{MAX_REGION_BYTES:,}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MethodError(f"--region {spec!r}: {path} is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise MethodError(f"--region {spec!r}: cannot read {path}: {e.strerror or e}") from None
    if "\x00" in text:
        raise MethodError(f"--region {spec!r}: {path} holds NUL characters")
    if not text.strip():
        raise MethodError(f"--region {spec!r}: {path} is empty")
    return text.rstrip("\n")  # as a baseline file's region body
