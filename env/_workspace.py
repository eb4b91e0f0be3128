"""The agent's private copy of a task's files, editable only inside the open regions.

A file is held as a list of parts: frozen segments and open-region bodies, alternating. An
edit can only ever replace lines of one body, so frozen text cannot change by construction;
after every accepted edit the whole file is re-rendered, its markers are parsed again and the
frozen text is compared (sha256) with the original, as a second, independent check.

The agent addresses files as ``<package>/<path>`` (``nanoGPT/custom_pretrain.py``) and lines by
1-based numbers that shift as regions grow and shrink. Texts follow MLS-Bench so that agents
transfer; success texts start ``OK:`` / ``Created:`` / ``Undo complete`` and every result on an
editable file ends with a ``[Current file: …]`` snapshot. Agent mistakes raise `EditError`,
whose ``str()`` is the full ``ERROR: …`` observation text; nothing changes on an error.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import io
import json
import os
import re
import sys
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from env import _texts as texts
from env._data_regions import data_region_violations
from env._errors import EditError, IntegrityError
from env._invariants import check_invariants, scope_bindings
from env._policy import Violation, check_policy
from env._regions import (
    RegionSyntaxError,
    content_lines,
    find_regions,
    line_problem,
)
from env._spec import TaskSpec

__all__ = ["STATE_VERSION", "Workspace"]

STATE_VERSION = 1
_CONTEXT_BEFORE = 3  # frozen lines shown above a region in a snapshot
_CONTEXT_AFTER = 1
_SHOW_WHOLE_REGION = 8  # regions up to this many lines are shown whole in a snapshot
MAX_CONTENT_CHARS = 200_000  # one edit; far above any real region, far below a memory problem
MAX_FILE_LINES = 20_000
_SHADOW_GUARD = frozenset(
    {"torch", "numpy", "tiktoken", "lm_eval", "pyarrow", "datasets", "transformers",
     "sitecustomize", "usercustomize", "triton", "custom_pretrain", "evaluate", "setuptools",
     "pkg_resources", "yaml", "regex", "requests", "filelock", "huggingface_hub", "safetensors"}
)  # fmt: skip


@dataclass
class _Part:
    """Frozen text (``name`` None) or the body of an open region."""

    name: str | None
    lines: list[str]

    @property
    def frozen(self) -> bool:
        return self.name is None


@dataclass
class _File:
    """One file of the workspace: codebase-relative path, parts, and what it was originally."""

    path: str
    parts: list[_Part]
    trailing_newline: bool
    original_text: str
    editable: bool
    created: bool = False
    frozen_digest: str = ""
    region_names: frozenset[str] = frozenset()
    frozen_tokens: tuple[tuple[int, str, int, int], ...] = ()  # see _frozen_token_stream
    python: bool = field(init=False)

    def __post_init__(self) -> None:
        self.python = self.path.endswith(".py")

    @property
    def lines(self) -> list[str]:
        return [line for part in self.parts for line in part.lines]

    @property
    def text(self) -> str:
        lines = self.lines
        if not lines:
            return ""
        return "\n".join(lines) + ("\n" if self.trailing_newline else "")

    def regions(self) -> list[tuple[_Part, int, int]]:
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

    def editable_lines(self) -> set[int]:
        return {n for _, start, end in self.regions() for n in range(start, end + 1)}

    def bodies(self) -> dict[str, list[str]]:
        return {part.name: list(part.lines) for part in self.parts if part.name is not None}

    def copy(self) -> _File:
        clone = _File(
            self.path,
            [_Part(p.name, list(p.lines)) for p in self.parts],
            self.trailing_newline,
            self.original_text,
            self.editable,
            self.created,
            self.frozen_digest,
            self.region_names,
            self.frozen_tokens,
        )
        return clone


def _split_text(text: str) -> tuple[list[str], bool]:
    if text == "":
        return [], True
    trailing = text.endswith("\n")
    return (text[:-1] if trailing else text).split("\n"), trailing


def _frozen_digest(parts: Sequence[_Part], trailing_newline: bool) -> str:
    frozen = [part.lines for part in parts if part.frozen]
    payload = json.dumps({"frozen": frozen, "trailing_newline": trailing_newline})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _split_parts(path: str, text: str, open_regions: Sequence[str]) -> tuple[list[_Part], bool]:
    """Parts of a codebase file whose named regions ``open_regions`` are open."""
    lines, trailing = _split_text(text)
    spans = {span.name: span for span in find_regions(lines)}
    missing = [name for name in open_regions if name not in spans]
    if missing:
        raise IntegrityError(
            f"{path}: no markers for region(s) {', '.join(missing)} "
            f"(regions in the file: {', '.join(spans) or 'none'})"
        )
    chosen = sorted((spans[name] for name in open_regions), key=lambda s: s.start_marker)
    parts: list[_Part] = []
    cursor = 0  # 0-based index of the first line not yet assigned to a part
    for span in chosen:
        parts.append(_Part(None, lines[cursor : span.start_marker]))  # up to the START marker
        parts.append(_Part(span.name, lines[span.start_marker : span.end_marker - 1]))
        cursor = span.end_marker - 1  # the END marker opens the next frozen part
    parts.append(_Part(None, lines[cursor:]))
    return parts, trailing


def _region_bound_names(f: _File) -> frozenset[str]:
    """Module-level names the original open regions define (theirs to redefine)."""
    if not f.python:
        return frozenset()
    try:
        tree = ast.parse(f.original_text)
    except SyntaxError:
        return frozenset()
    open_lines = f.editable_lines()
    return frozenset(
        b.name for b in scope_bindings(tree.body) if getattr(b.node, "lineno", 0) in open_lines
    )


@functools.lru_cache(maxsize=8)
def _parse_original(text: str) -> ast.Module:
    """The AST of an original codebase file (parsed once; never mutated by the checks)."""
    return ast.parse(text)


_Tok = tuple[int, str, int, int]  # type, text, indentation depth, bracket depth


def _frozen_token_stream(
    text: str, open_lines: set[int]
) -> tuple[list[_Tok], list[int], int | None]:
    """The tokens on frozen lines with the nesting they are read in, their line numbers, and the
    first frozen line a token reaches into from a region (None when none crosses a boundary).

    Byte-identical frozen text is not enough: a region that opens a string or bracket and a
    later region that closes it would turn the frozen code between them into data.
    """
    stream: list[_Tok] = []
    lines: list[int] = []
    depth = brackets = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.INDENT:
                depth += 1
                continue
            if tok.type == tokenize.DEDENT:
                depth -= 1
                continue
            first, last = tok.start[0], tok.end[0]
            if tok.type == tokenize.ENDMARKER:
                break
            frozen_first, frozen_last = first not in open_lines, last not in open_lines
            if frozen_first != frozen_last or (
                not frozen_first and any(n not in open_lines for n in range(first, last + 1))
            ):
                crossing = next(n for n in range(first, last + 1) if n not in open_lines)
                return stream, lines, crossing
            if tok.type == tokenize.OP and tok.string in ")]}":
                brackets -= 1
            if frozen_first:
                # Blank and comment-only lines sit at whatever depth the code before them left.
                loose = tok.type in (tokenize.COMMENT, tokenize.NL)
                stream.append((tok.type, tok.string, -1 if loose else depth, brackets))
                lines.append(first)
            if tok.type == tokenize.OP and tok.string in "([{":
                brackets += 1
    except (tokenize.TokenError, SyntaxError):
        return stream, lines, 0
    return stream, lines, None


class Workspace:
    """A task's editable and read-only files under ``root``, with named editable regions.

    Create one with `Workspace.create(task, root)`; rebuild one from `state()` with
    `Workspace.load(task, root, state)`. Files are mirrored to ``root/<codebase path>`` after
    every change so that a sandbox can copy them.
    """

    def __init__(self, task: TaskSpec, root: Path, files: dict[str, _File]) -> None:
        self.task = task
        self.root = Path(root)
        self._files = files
        self._history: list[dict[str, Any]] = []

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def _original_files(cls, task: TaskSpec) -> dict[str, _File]:
        files: dict[str, _File] = {}
        codebase = task.codebase_dir
        for entry in task.editable_files:
            text = (codebase / entry.path).read_text(encoding="utf-8")
            try:
                parts, trailing = _split_parts(entry.path, text, entry.regions)
            except RegionSyntaxError as e:
                raise IntegrityError(f"{codebase / entry.path}: {e}") from e
            f = _File(entry.path, parts, trailing, text, editable=True)
            f.frozen_digest = _frozen_digest(parts, trailing)
            f.region_names = _region_bound_names(f)
            if f.python:
                f.frozen_tokens = tuple(_frozen_token_stream(text, f.editable_lines())[0])
            files[entry.path] = f
        for path in task.read_only_files:
            text = (codebase / path).read_text(encoding="utf-8")
            lines, trailing = _split_text(text)
            f = _File(path, [_Part(None, lines)], trailing, text, editable=False)
            f.frozen_digest = _frozen_digest(f.parts, trailing)
            files[path] = f
        return files

    @classmethod
    def create(cls, task: TaskSpec, root: str | Path) -> Workspace:
        """A fresh workspace holding the task's original files, written under ``root``."""
        ws = cls(task, Path(root), cls._original_files(task))
        ws.check()
        ws._write_all()
        return ws

    @classmethod
    def load(cls, task: TaskSpec, root: str | Path, state: dict[str, Any]) -> Workspace:
        """Rebuild a workspace from `state()` output; verifies everything before trusting it."""
        try:
            return cls._load(task, Path(root), state)
        except IntegrityError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise IntegrityError(f"workspace state is malformed: {e!r}") from e

    @classmethod
    def _load(cls, task: TaskSpec, root: Path, state: dict[str, Any]) -> Workspace:
        if state.get("schema_version") != STATE_VERSION:
            raise IntegrityError(
                f"workspace state has schema_version {state.get('schema_version')!r}, "
                f"expected {STATE_VERSION}"
            )
        if state.get("task_id") != task.id:
            raise IntegrityError(
                f"workspace state belongs to task {state.get('task_id')!r}, not {task.id!r}"
            )
        files = cls._original_files(task)
        saved_files = state["files"]
        if set(saved_files) != {p for p, f in files.items() if f.editable}:
            raise IntegrityError(
                f"workspace state lists files {sorted(saved_files)}, the task has "
                f"{sorted(p for p, f in files.items() if f.editable)}"
            )
        for path, saved in saved_files.items():
            f = files[path]
            if saved["original_sha256"] != _sha256(f.original_text):
                raise IntegrityError(
                    f"{path} in the codebase changed since this workspace was created "
                    f"(sha256 {_sha256(f.original_text)[:12]}…, state has "
                    f"{str(saved['original_sha256'])[:12]}…)"
                )
            cls._restore_bodies(f, saved["regions"])
        for path, lines in state.get("created", {}).items():
            cls._check_new_path(task, path, files)
            files[path] = cls._created_file(path, cls._checked_lines(path, lines))
        ws = cls(task, root, files)
        ws._history = [cls._checked_entry(entry, files) for entry in state.get("history", [])]
        ws.check()
        ws._write_all()
        return ws

    @classmethod
    def _checked_entry(cls, entry: Any, files: dict[str, _File]) -> dict[str, Any]:
        """An undo entry from a saved state, verified so that a later undo cannot fail."""
        if not isinstance(entry, dict) or set(entry) != {"file", "created", "before"}:
            raise IntegrityError(f"workspace history entry is malformed: {entry!r:.200}")
        path, created, before = entry["file"], entry["created"], entry["before"]
        if created is True:
            if path not in files or not files[path].created:
                raise IntegrityError(f"workspace history names an unknown file {path!r:.200}")
            if before is not None:
                cls._checked_lines(path, before)
            return {"file": path, "created": True, "before": before}
        f = files.get(path)
        if created is not False or f is None or not f.editable or f.created:
            raise IntegrityError(f"workspace history names an unknown file {path!r:.200}")
        probe = f.copy()
        if not isinstance(before, dict):
            raise IntegrityError(f"workspace history entry for {path} has no region bodies")
        cls._restore_bodies(probe, before)
        return {"file": path, "created": False, "before": probe.bodies()}

    @staticmethod
    def _checked_lines(path: str, lines: Any) -> list[str]:
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise IntegrityError(f"workspace state for {path}: lines must be a list of strings")
        for number, line in enumerate(lines, start=1):
            if "\n" in line or (problem := line_problem(line)):
                raise IntegrityError(
                    f"workspace state for {path}: line {number} is not allowed "
                    f"({problem or 'contains a newline'})"
                )
        return list(lines)

    @classmethod
    def _restore_bodies(cls, f: _File, bodies: dict[str, Any]) -> None:
        names = [p.name for p in f.parts if p.name is not None]
        if sorted(bodies) != sorted(names):
            raise IntegrityError(
                f"workspace state for {f.path} has regions {sorted(bodies)}, expected {names}"
            )
        for part in f.parts:
            if part.name is not None:
                part.lines = cls._checked_lines(f.path, bodies[part.name])

    @staticmethod
    def _created_file(path: str, lines: list[str]) -> _File:
        parts = [_Part(None, []), _Part("(whole file)", lines), _Part(None, [])]
        f = _File(path, parts, True, "", editable=True, created=True)
        f.frozen_digest = _frozen_digest(parts, True)
        return f

    # -- persistence ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this workspace (JSON-serialisable)."""
        return {
            "schema_version": STATE_VERSION,
            "task_id": self.task.id,
            "files": {
                f.path: {"original_sha256": _sha256(f.original_text), "regions": f.bodies()}
                for f in self._files.values()
                if f.editable and not f.created
            },
            "created": {f.path: f.lines for f in self._files.values() if f.created},
            "history": json.loads(json.dumps(self._history)),
        }

    def _write(self, f: _File) -> None:
        target = self.root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(f.text, encoding="utf-8")
        os.replace(tmp, target)

    def _write_all(self) -> None:
        for f in self._files.values():
            self._write(f)

    # -- names ----------------------------------------------------------------------------

    def _agent_name(self, path: str) -> str:
        return self.task.agent_path(path)

    def _resolve(self, filename: Any) -> str:
        """Codebase-relative path of an agent file name; raises EditError for bad names."""
        if not isinstance(filename, str) or not filename.strip():
            raise EditError(texts.empty_file_name())
        name = filename.strip()
        package, _, rest = name.partition("/")
        if package != self.task.package or not rest:
            example = self._agent_name(self.task.editable_files[0].path)
            raise EditError(texts.bad_package(package, self.task.package, example))
        parts = rest.split("/")
        if "\\" in rest or any(p in ("", ".", "..") for p in parts):
            raise EditError(texts.invalid_file_name(filename))
        return rest

    def _editable_file(self, filename: Any) -> _File:
        path = self._resolve(filename)
        f = self._files.get(path)
        if f is None or not f.editable:
            names = [self._agent_name(p) for p, g in self._files.items() if g.editable]
            raise EditError(texts.not_editable(filename, names))
        return f

    def _viewable_file(self, filename: Any) -> _File:
        path = self._resolve(filename)
        f = self._files.get(path)
        if f is None:
            names = [self._agent_name(p) for p in self._files]
            raise EditError(texts.not_found(filename, names))
        return f

    # -- rendering ------------------------------------------------------------------------

    def editable_ranges(self, filename: str) -> list[tuple[int, int]]:
        """Current 1-based (first, last) line of each open region; last < first when empty.

        ``filename`` may be the agent name (``nanoGPT/x.py``) or the codebase path (``x.py``).
        """
        f = self._files.get(filename) or self._files.get(filename.partition("/")[2])
        if f is None:
            raise KeyError(filename)
        return f.ranges()

    def _snapshot(self, f: _File) -> str:
        lines = f.lines
        editable = f.editable_lines()
        out = [texts.snapshot_header(self._agent_name(f.path), f.ranges(), len(lines))]
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
            out.append(self._listing_line(f, n, editable))
            previous = n
        return "\n".join(out)

    def render_file(self, filename: str) -> str:
        """The whole numbered file for the initial observation, headed MLS-Bench style.

        ``nanoGPT/custom_pretrain.py [EDITABLE — lines 191–201, lines 245–247 only]``; frozen
        lines are numbered ``N: `` (as MLS-Bench prints files) and editable lines ``N  ``.
        """
        f = self._viewable_file(filename if "/" in filename else self._agent_name(filename))
        editable = f.editable_lines()
        body = [self._listing_line(f, n, editable) for n in range(1, len(f.lines) + 1)]
        ranges = f.ranges() if f.editable else None
        return texts.file_listing(self._agent_name(f.path), ranges, body)

    def _listing_line(self, f: _File, n: int, editable: set[int]) -> str:
        """Line `n` of `f` numbered; the marker of a region not open here shown as frozen."""
        text = f.lines[n - 1]
        if n not in editable and not any(n in (s - 1, e + 1) for s, e in f.ranges()):
            text = texts.frozen_marker(text)
        return texts.listing_line(n, text, n in editable)

    def view(
        self, filename: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        """Numbered lines ``start_line..end_line`` (default: all); editable lines are marked."""
        f = self._viewable_file(filename)
        lines = f.lines
        total = len(lines)
        for value, what in ((start_line, "start_line"), (end_line, "end_line")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise EditError(texts.view_not_an_integer(what, value))
        start = 1 if start_line is None else start_line
        end = total if end_line is None else min(end_line, total)
        if total == 0:
            return texts.view_empty(filename)
        if start < 1 or start > total or end < start:
            raise EditError(texts.view_bad_range(filename, start_line, end_line, total))
        editable = f.editable_lines()
        body = [self._listing_line(f, n, editable) for n in range(start, end + 1)]
        ranges = f.ranges() if f.editable else None
        return texts.view(filename, start, end, total, ranges, body)

    def _range_text(self, f: _File) -> str:
        return texts.format_ranges(f.ranges())

    def _error(self, f: _File, message: str) -> EditError:
        return EditError(texts.error(message, self._snapshot(f)))

    # -- edits ----------------------------------------------------------------------------

    @staticmethod
    def _int(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def replace(self, filename: str, start_line: int, end_line: int, content: str) -> str:
        """Replace lines ``start_line..end_line`` (inclusive), which must lie in one region."""
        f = self._editable_file(filename)
        total = len(f.lines)
        start, end = self._int(start_line), self._int(end_line)
        if start is None or end is None or start < 1 or end < start or end > total:
            raise self._error(f, texts.replace_bad_range(start_line, end_line, total))
        target = next(((part, s) for part, s, e in f.regions() if s <= start and end <= e), None)
        if target is None:
            raise self._error(f, texts.replace_outside(start, end, self._allowed_text(f)))
        new_lines = self._content(f, content)
        part, region_start = target
        candidate = f.copy()
        body = next(p for p in candidate.parts if p.name == part.name)
        offset = start - region_start
        body.lines[offset : offset + end - start + 1] = new_lines
        self._accept(f, candidate, start, len(new_lines))
        return texts.replaced(
            start,
            end,
            len(new_lines),
            filename,
            self._range_text(candidate),
            self._snapshot(candidate),
        )

    def insert(self, filename: str, after_line: int, content: str) -> str:
        """Insert lines after ``after_line``: a region's START marker line or a line inside it."""
        f = self._editable_file(filename)
        total = len(f.lines)
        after = self._int(after_line)
        if after is None or after < 0 or after > total:
            raise self._error(f, texts.insert_bad_line(after_line, total))
        target = next(((part, s) for part, s, e in f.regions() if s - 1 <= after <= e), None)
        if target is None:
            raise self._error(f, texts.insert_outside(after, f.ranges(), self._allowed_text(f)))
        new_lines = self._content(f, content)
        if not new_lines:
            raise self._error(f, texts.insert_nothing())
        part, region_start = target
        candidate = f.copy()
        body = next(p for p in candidate.parts if p.name == part.name)
        offset = after - region_start + 1
        body.lines[offset:offset] = new_lines
        self._accept(f, candidate, after + 1, len(new_lines))
        return texts.inserted(
            after, len(new_lines), filename, self._range_text(candidate), self._snapshot(candidate)
        )

    def create_file(self, filename: str, content: str) -> str:
        """Create a new file in the package (only when the task sets ``allow_create``)."""
        if not self.task.allow_create:
            raise EditError(texts.create_not_allowed())
        path = self._resolve(filename)
        try:
            self._check_new_path(self.task, path, self._files)
        except IntegrityError as e:
            raise EditError(str(e)) from None
        if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
            raise EditError(texts.create_content_invalid(MAX_CONTENT_CHARS))
        try:
            lines = content_lines(content)
        except ValueError as e:
            raise EditError(texts.error(texts.content_invalid(e))) from None
        candidate = self._created_file(path, lines)
        self._accept(None, candidate, 1, len(lines))
        return texts.created(filename, self._snapshot(candidate))

    @staticmethod
    def _check_new_path(task: TaskSpec, path: str, files: dict[str, _File]) -> None:
        if path in files or (task.codebase_dir / path).exists():
            raise IntegrityError(texts.file_exists(task.agent_path(path)))
        if not re.fullmatch(r"[a-z_][a-z0-9_]*\.py", path):
            why = "new files are single Python modules named like helpers.py, in the package folder"
            raise IntegrityError(texts.invalid_file_name(task.agent_path(path), why))
        # A new module beside the training script is first on sys.path: it must not shadow
        # a library or the harness (torch.py, math.py, sitecustomize.py, pb_config.py).
        stem = path[:-3]
        if stem in sys.stdlib_module_names or stem in _SHADOW_GUARD or stem.startswith("pb_"):
            raise IntegrityError(texts.shadowing_file_name(task.agent_path(path), stem))

    def _allowed_text(self, f: _File) -> str:
        empty = [(p.name or "", s) for p, s, e in f.regions() if e < s]
        return texts.allowed_lines(f.ranges(), empty)

    def _content(self, f: _File, content: Any) -> list[str]:
        if not isinstance(content, str):
            raise self._error(f, texts.content_not_text())
        if len(content) > MAX_CONTENT_CHARS:
            raise self._error(f, texts.content_too_long(len(content), MAX_CONTENT_CHARS))
        try:
            return content_lines(content)
        except ValueError as e:
            raise self._error(f, texts.content_invalid(e)) from None

    def _accept(self, current: _File | None, candidate: _File, first_new: int, count: int) -> None:
        """Verify a candidate file and make it current; raise EditError and change nothing else."""
        shown = current if current is not None else candidate
        problems = self._verify(candidate)
        if problems.frozen:
            raise self._error(shown, problems.frozen)
        if problems.violations:
            text = texts.violations(problems.kind, problems.violations, first_new, count)
            raise self._error(shown, text)
        before: Any
        if current is None:
            before = None
        elif current.created:
            before = current.lines
        else:
            before = current.bodies()
        self._history.append(
            {"file": candidate.path, "created": candidate.created, "before": before}
        )
        self._files[candidate.path] = candidate
        self._write(candidate)

    # -- verification ---------------------------------------------------------------------

    def _verify(self, f: _File) -> _Problems:
        """Frozen text, syntax, invariants and code policy of one file, as it would be."""
        if len(f.lines) > MAX_FILE_LINES:
            return _Problems(
                "syntax", [Violation(0, f"the file would exceed {MAX_FILE_LINES} lines")]
            )
        try:
            return self._verify_checked(f)
        except (RecursionError, MemoryError):
            # Deeply nested expressions exhaust the parser or the checkers: refuse, not crash.
            return _Problems("syntax", [Violation(0, "the code is too deeply nested to check")])

    def _verify_checked(self, f: _File) -> _Problems:
        if not f.created:
            frozen = self._frozen_problem(f)
            if frozen:
                return _Problems(frozen=frozen)
        if not f.python:
            return _Problems()
        text = f.text
        try:
            tree = ast.parse(text, filename=self._agent_name(f.path))
        except SyntaxError as e:
            return _Problems("syntax", [Violation(e.lineno or 0, f"syntax error: {e.msg}")])
        except ValueError as e:  # e.g. NUL bytes; content checks normally catch these first
            return _Problems("syntax", [Violation(0, f"cannot be parsed: {e}")])
        if not f.created:
            tokens, token_lines, line = _frozen_token_stream(text, f.editable_lines())
            if line is None and tuple(tokens) != f.frozen_tokens:
                differs = [
                    i
                    for i, (t, o) in enumerate(zip(tokens, f.frozen_tokens, strict=False))
                    if t != o
                ] or [min(len(tokens), len(f.frozen_tokens)) - 1]
                line = token_lines[differs[0]] if token_lines else 0
            if line is not None:
                return _Problems(
                    "structure",
                    [
                        Violation(
                            line,
                            "the edit changes how the frozen code is read: an unclosed string, "
                            "bracket or block in an editable region would swallow frozen lines; "
                            "close everything you open inside the region",
                        )
                    ],
                )
        original = None if f.created else _parse_original(f.original_text)
        invariants = [inv for inv in self.task.invariants if inv.file == f.path]
        violations = check_invariants(tree, invariants, original)
        if violations:
            return _Problems("invariant", violations)
        violations = check_policy(
            tree, text, f.editable_lines(), self.task.code_policy, set(f.region_names)
        )
        if violations:
            return _Problems("policy", violations)
        for part, start, _ in f.regions():
            data = self.task.data_regions.get(part.name or "")
            if data is not None:
                body = "\n".join(part.lines)
                violations = data_region_violations(body, data.variable, start)
                if violations:
                    return _Problems("policy", violations)
        return _Problems()

    def _frozen_problem(self, f: _File) -> str | None:
        """Re-parse the rendered file and compare its frozen text with the original's."""
        entry = self.task.editable_file(f.path)
        regions = entry.regions if entry is not None else []
        try:
            parts, trailing = _split_parts(f.path, f.text, regions)
        except (RegionSyntaxError, IntegrityError) as e:
            return texts.markers_broken(self._agent_name(f.path), e)
        if _frozen_digest(parts, trailing) != f.frozen_digest:
            return texts.frozen_changed(self._agent_name(f.path))
        return None

    def check(self) -> None:
        """Verify every file: frozen text (sha256), markers, syntax, invariants, code policy.

        Accepted edits always pass; a failure here means the state or the files on disk were
        changed behind the workspace's back, and raises `IntegrityError`.
        """
        failures = []
        for f in self._files.values():
            if not f.editable:
                if _frozen_digest(f.parts, f.trailing_newline) != f.frozen_digest:
                    failures.append(f"{f.path}: read-only text changed")
                continue
            problems = self._verify(f)
            if problems.frozen:
                failures.append(f"{f.path}: {problems.frozen}")
            for v in problems.violations:
                failures.append(f"{f.path}: line {v.line}: {v.message}")
            disk = self.root / f.path
            if disk.is_file() and disk.read_text(encoding="utf-8") != f.text:
                failures.append(f"{disk}: the file on disk differs from the workspace")
        if failures:
            raise IntegrityError("workspace check failed:\n" + "\n".join(failures))

    # -- undo -----------------------------------------------------------------------------

    def undo(self, n: int = 1) -> str:
        """Undo the last ``n`` accepted edits (contents and ranges); ``Undo complete:`` text."""
        count = self._int(n)
        if count is None or count < 1:
            raise EditError(texts.undo_bad_n(n))
        if not self._history:
            raise EditError(texts.nothing_to_undo())
        restored: list[tuple[str, bool]] = []
        last: _File | None = None
        for _ in range(min(count, len(self._history))):
            entry = self._history.pop()
            path = entry["file"]
            name = self._agent_name(path)
            if entry["before"] is None:
                del self._files[path]
                (self.root / path).unlink(missing_ok=True)
                restored.append((name, True))
                last = None
                continue
            f = self._files[path].copy()
            if f.created:
                f.parts[1].lines = list(entry["before"])
            else:
                self._restore_bodies(f, entry["before"])
            self._files[path] = f
            self._write(f)
            restored.append((name, False))
            last = f
        return texts.undone(restored, self._snapshot(last) if last is not None else None)

    # -- results --------------------------------------------------------------------------

    def edited_files(self) -> dict[str, str]:
        """Codebase-relative path → full text of every editable and created file.

        All editable files are included, changed or not, so the overlay a sandbox applies is
        complete and its cache key does not depend on whether an edit was undone.
        """
        return {p: f.text for p, f in self._files.items() if f.editable}

    def region_texts(self) -> dict[str, str]:
        """Open region name → its current body text (created files under their path)."""
        out: dict[str, str] = {}
        for f in self._files.values():
            if f.created:
                out[f.path] = f.text
                continue
            for name, lines in f.bodies().items():
                out[name] = "\n".join(lines) + "\n" if lines else ""
        return out

    def diff(self) -> str:
        """Unified diff of every changed or created file against the original, agent names."""
        chunks: list[str] = []
        for f in self._files.values():
            if not f.editable or (f.text == f.original_text and not f.created):
                continue
            name = self._agent_name(f.path)
            chunks.extend(
                difflib.unified_diff(
                    f.original_text.splitlines(keepends=True),
                    f.text.splitlines(keepends=True),
                    fromfile="/dev/null" if f.created else f"a/{name}",
                    tofile=f"b/{name}",
                )
            )
        return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)

    def files(self) -> list[str]:
        """Agent names of every file in the workspace (editable first)."""
        ordered = sorted(self._files.values(), key=lambda f: (not f.editable, f.created))
        return [self._agent_name(f.path) for f in ordered]

    def text(self, filename: str) -> str:
        """Current text of a file by agent name or codebase path."""
        f = self._files.get(filename) or self._files.get(filename.partition("/")[2])
        if f is None:
            raise KeyError(filename)
        return f.text


@dataclass
class _Problems:
    """What verification found: a frozen-text problem, or violations of one kind."""

    kind: str = ""
    violations: list[Violation] = field(default_factory=list)
    frozen: str | None = None
