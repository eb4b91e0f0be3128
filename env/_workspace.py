"""The agent's private copy of a task's files, editable only inside the open regions.

A small facade over four parts: each file is a frozen `WorkspaceFile` value (`env._file`) —
frozen segments and region bodies, so an edit can only replace lines of one body; every edit
is then verified by `env._checks` (markers parsed again and frozen text compared by sha256, as
a second, independent check; token stream, invariants, code policy); listings come from
`env._listing`; the saved form is the pydantic `WorkspaceState`. Undo pops a stack of values.

The agent addresses files as ``<package>/<path>`` and lines by 1-based numbers that shift as
regions grow and shrink. Agent mistakes raise `EditError`, whose ``str()`` is the full
``ERROR: …`` observation text; nothing changes on an error.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from env import _texts as texts
from env._checks import MAX_CONTENT_CHARS, FrozenReference, check_new_path, sha256, verify
from env._errors import EditError, IntegrityError
from env._file import WorkspaceFile
from env._listing import file_diff, numbered, render_file, snapshot
from env._regions import RegionSyntaxError, content_lines
from env._spec import TaskSpec
from env._tools import EditArgs
from env._workspace_state import FileState, UndoEntry, WorkspaceState
from sandbox import write_atomic

__all__ = ["Workspace"]

#: One accepted edit on the undo stack: the file's path and its value before the edit
#: (None when the edit created the file).
_Undo = tuple[str, WorkspaceFile | None]


class Workspace:
    """A task's editable and read-only files under ``root``, with named editable regions.

    Create one with `Workspace.create(task, root)`; rebuild one from `state()` with
    `Workspace.load(task, root, state)`. Files are mirrored to ``root/<codebase path>`` after
    every change so that a sandbox can copy them.
    """

    def __init__(self, task: TaskSpec, root: Path, files: dict[str, WorkspaceFile]) -> None:
        self.task = task
        self.root = Path(root)
        self._files = files
        self._refs = {p: FrozenReference.of(f) for p, f in files.items()}
        self._history: list[_Undo] = []

    # -- construction ---------------------------------------------------------------------

    @staticmethod
    def _original_files(task: TaskSpec) -> dict[str, WorkspaceFile]:
        files: dict[str, WorkspaceFile] = {}
        codebase = task.codebase_dir
        for entry in task.editable_files:
            text = (codebase / entry.path).read_text(encoding="utf-8")
            try:
                files[entry.path] = WorkspaceFile.from_codebase(entry.path, text, entry.regions)
            except RegionSyntaxError as e:
                raise IntegrityError(f"{codebase / entry.path}: {e}") from e
        for path in task.read_only_files:
            text = (codebase / path).read_text(encoding="utf-8")
            files[path] = WorkspaceFile.read_only(path, text)
        return files

    @classmethod
    def create(cls, task: TaskSpec, root: str | Path) -> Workspace:
        """A fresh workspace holding the task's original files, written under ``root``."""
        ws = cls(task, Path(root), cls._original_files(task))
        ws.check()
        ws._write_all()
        return ws

    @classmethod
    def load(cls, task: TaskSpec, root: str | Path, state: WorkspaceState | object) -> Workspace:
        """Rebuild a workspace from `state()` output (the model or its JSON form); verifies
        everything before trusting it and raises `IntegrityError` otherwise."""
        try:
            saved = WorkspaceState.model_validate(state)
        except ValidationError as e:
            raise IntegrityError(f"workspace state is malformed: {e}") from e
        if saved.task_id != task.id:
            raise IntegrityError(
                f"workspace state belongs to task {saved.task_id!r}, not {task.id!r}"
            )
        files = cls._original_files(task)
        editable = sorted(p for p, f in files.items() if f.editable)
        if sorted(saved.files) != editable:
            raise IntegrityError(
                f"workspace state lists files {sorted(saved.files)}, the task has {editable}"
            )
        ws = cls(task, Path(root), files)
        for path, file_state in saved.files.items():
            ws._files[path] = ws._restored(files[path], file_state)
        for path, lines in saved.created.items():
            check_new_path(task, path, files)
            ws._add_created(WorkspaceFile.new(path, lines))
        ws._history = [ws._undo_entry(entry) for entry in saved.history]
        ws.check()
        ws._write_all()
        return ws

    @staticmethod
    def _restored(original: WorkspaceFile, saved: FileState) -> WorkspaceFile:
        if saved.original_sha256 != sha256(original.original_text):
            raise IntegrityError(
                f"{original.path} in the codebase changed since this workspace was created "
                f"(sha256 {sha256(original.original_text)[:12]}…, state has "
                f"{saved.original_sha256[:12]}…)"
            )
        return _with_bodies(original, saved.regions)

    def _undo_entry(self, entry: UndoEntry) -> _Undo:
        """An undo entry from a saved state, verified so that a later undo cannot fail."""
        f = self._files.get(entry.file)
        if entry.created:
            if f is None or not f.created or isinstance(entry.before, dict):
                raise IntegrityError(f"workspace history names an unknown file {entry.file!r:.200}")
            return entry.file, None if entry.before is None else WorkspaceFile.new(
                f.path, entry.before
            )
        if f is None or not f.editable or f.created:
            raise IntegrityError(f"workspace history names an unknown file {entry.file!r:.200}")
        if not isinstance(entry.before, dict):
            raise IntegrityError(f"workspace history entry for {f.path} has no region bodies")
        return entry.file, _with_bodies(f, entry.before)

    def _add_created(self, f: WorkspaceFile) -> None:
        self._files[f.path] = f
        self._refs[f.path] = FrozenReference.of(f)

    # -- persistence ----------------------------------------------------------------------

    def state(self) -> WorkspaceState:
        """Everything needed to rebuild this workspace (saved in ``session.json``)."""
        return WorkspaceState(
            task_id=self.task.id,
            files={
                f.path: FileState(original_sha256=sha256(f.original_text), regions=f.bodies())
                for f in self._files.values()
                if f.editable and not f.created
            },
            created={f.path: list(f.lines) for f in self._files.values() if f.created},
            history=[_saved_entry(path, before) for path, before in self._history],
        )

    def _write(self, f: WorkspaceFile) -> None:
        write_atomic(self.root / f.path, f.text)

    def _write_all(self) -> None:
        for f in self._files.values():
            self._write(f)

    # -- names ----------------------------------------------------------------------------

    def _agent_name(self, path: str) -> str:
        return self.task.agent_path(path)

    def _resolve(self, filename: object) -> str:
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

    def _editable_file(self, filename: object) -> WorkspaceFile:
        f = self._files.get(self._resolve(filename))
        if f is None or not f.editable:
            names = [self._agent_name(p) for p, g in self._files.items() if g.editable]
            raise EditError(texts.not_editable(str(filename), names))
        return f

    def _viewable_file(self, filename: object) -> WorkspaceFile:
        f = self._files.get(self._resolve(filename))
        if f is None:
            names = [self._agent_name(p) for p in self._files]
            raise EditError(texts.not_found(str(filename), names))
        return f

    def _lookup(self, filename: str) -> WorkspaceFile:
        """A file by agent name (``nanoGPT/x.py``) or codebase path (``x.py``)."""
        f = self._files.get(filename) or self._files.get(filename.partition("/")[2])
        if f is None:
            raise KeyError(filename)
        return f

    # -- rendering ------------------------------------------------------------------------

    def editable_ranges(self, filename: str) -> list[tuple[int, int]]:
        """Current 1-based (first, last) line of each open region; last < first when empty.

        ``filename`` may be the agent name (``nanoGPT/x.py``) or the codebase path (``x.py``).
        """
        return self._lookup(filename).ranges()

    def _snapshot(self, f: WorkspaceFile) -> str:
        return snapshot(f, self._agent_name(f.path))

    def render_file(self, filename: str) -> str:
        """The whole numbered file for the initial observation, headed MLS-Bench style."""
        f = self._viewable_file(filename if "/" in filename else self._agent_name(filename))
        return render_file(f, self._agent_name(f.path))

    def view(
        self, filename: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        """Numbered lines ``start_line..end_line`` (default: all); editable lines are marked."""
        f = self._viewable_file(filename)
        total = len(f.lines)
        for value, what in ((start_line, "start_line"), (end_line, "end_line")):
            if value is not None and _int(value) is None:
                raise EditError(texts.view_not_an_integer(what, value))
        start = 1 if start_line is None else start_line
        end = total if end_line is None else min(end_line, total)
        if total == 0:
            return texts.view_empty(filename)
        if start < 1 or start > total or end < start:
            raise EditError(texts.view_bad_range(filename, start_line, end_line, total))
        ranges = f.ranges() if f.editable else None
        return texts.view(filename, start, end, total, ranges, numbered(f, start, end))

    def _error(self, f: WorkspaceFile, message: str) -> EditError:
        return EditError(texts.error(message, self._snapshot(f)))

    # -- edits ----------------------------------------------------------------------------

    def apply(self, args: EditArgs) -> str:
        """One ``edit`` tool call's arguments, dispatched on their ``op``."""
        if args.op == "replace":
            assert args.start_line is not None and args.end_line is not None
            return self.replace(args.filename, args.start_line, args.end_line, args.content)
        if args.op == "insert":
            assert args.after_line is not None
            return self.insert(args.filename, args.after_line, args.content)
        return self.create_file(args.filename, args.content)

    def replace(self, filename: str, start_line: int, end_line: int, content: str) -> str:
        """Replace lines ``start_line..end_line`` (inclusive), which must lie in one region."""
        f = self._editable_file(filename)
        total = len(f.lines)
        start, end = _int(start_line), _int(end_line)
        if start is None or end is None or start < 1 or end < start or end > total:
            raise self._error(f, texts.replace_bad_range(start_line, end_line, total))
        if f.region_holding(start, end) is None:
            raise self._error(f, texts.replace_outside(start, end, self._allowed(f)))
        new_lines = self._content(f, content)
        candidate = f.replace(start, end, new_lines)
        self._accept(f, candidate, start, len(new_lines))
        ranges = texts.format_ranges(candidate.ranges())
        snap = self._snapshot(candidate)
        return texts.replaced(start, end, len(new_lines), filename, ranges, snap)

    def insert(self, filename: str, after_line: int, content: str) -> str:
        """Insert lines after ``after_line``: a region's START marker line or a line inside it."""
        f = self._editable_file(filename)
        total = len(f.lines)
        after = _int(after_line)
        if after is None or after < 0 or after > total:
            raise self._error(f, texts.insert_bad_line(after_line, total))
        if f.region_after(after) is None:
            raise self._error(f, texts.insert_outside(after, f.ranges(), self._allowed(f)))
        new_lines = self._content(f, content)
        if not new_lines:
            raise self._error(f, texts.insert_nothing())
        candidate = f.insert(after, new_lines)
        self._accept(f, candidate, after + 1, len(new_lines))
        ranges = texts.format_ranges(candidate.ranges())
        return texts.inserted(after, len(new_lines), filename, ranges, self._snapshot(candidate))

    def create_file(self, filename: str, content: str) -> str:
        """Create a new file in the package (only when the task sets ``allow_create``)."""
        if not self.task.allow_create:
            raise EditError(texts.create_not_allowed())
        path = self._resolve(filename)
        try:
            check_new_path(self.task, path, self._files)
        except IntegrityError as e:
            raise EditError(str(e)) from None
        if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
            raise EditError(texts.create_content_invalid(MAX_CONTENT_CHARS))
        try:
            lines = content_lines(content)
        except ValueError as e:
            raise EditError(texts.error(texts.content_invalid(e))) from None
        candidate = WorkspaceFile.new(path, lines)
        self._accept(None, candidate, 1, len(lines))
        return texts.created(filename, self._snapshot(candidate))

    def _allowed(self, f: WorkspaceFile) -> str:
        return texts.allowed_lines(f.ranges(), f.empty_regions())

    def _content(self, f: WorkspaceFile, content: object) -> list[str]:
        if not isinstance(content, str):
            raise self._error(f, texts.content_not_text())
        if len(content) > MAX_CONTENT_CHARS:
            raise self._error(f, texts.content_too_long(len(content), MAX_CONTENT_CHARS))
        try:
            return content_lines(content)
        except ValueError as e:
            raise self._error(f, texts.content_invalid(e)) from None

    def _accept(
        self, current: WorkspaceFile | None, candidate: WorkspaceFile, first_new: int, count: int
    ) -> None:
        """Verify a candidate file and make it current; raise EditError and change nothing else."""
        shown = current if current is not None else candidate
        ref = self._refs.get(candidate.path) or FrozenReference.of(candidate)
        problems = verify(self.task, candidate, ref, self._agent_name(candidate.path))
        if problems.frozen:
            raise self._error(shown, problems.frozen)
        if problems.violations:
            text = texts.violations(problems.kind, problems.violations, first_new, count)
            raise self._error(shown, text)
        self._history.append((candidate.path, current))
        if current is None:
            self._add_created(candidate)
        self._files[candidate.path] = candidate
        self._write(candidate)

    def check(self) -> None:
        """Verify every file: frozen text (sha256), markers, syntax, invariants, code policy.

        Accepted edits always pass; a failure here means the state or the files on disk were
        changed behind the workspace's back, and raises `IntegrityError`.
        """
        failures = []
        for f in self._files.values():
            ref = self._refs[f.path]
            if not f.editable:
                if FrozenReference.of(f).digest != ref.digest:
                    failures.append(f"{f.path}: read-only text changed")
                continue
            problems = verify(self.task, f, ref, self._agent_name(f.path))
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
        count = _int(n)
        if count is None or count < 1:
            raise EditError(texts.undo_bad_n(n))
        if not self._history:
            raise EditError(texts.nothing_to_undo())
        restored: list[tuple[str, bool]] = []
        last: WorkspaceFile | None = None
        for _ in range(min(count, len(self._history))):
            path, before = self._history.pop()
            restored.append((self._agent_name(path), before is None))
            if before is None:
                del self._files[path]
                del self._refs[path]
                (self.root / path).unlink(missing_ok=True)
            else:
                self._files[path] = before
                self._write(before)
            last = before
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
        return "".join(
            file_diff(f.original_text, f.text, self._agent_name(f.path), created=f.created)
            for f in self._files.values()
            if f.editable and (f.text != f.original_text or f.created)
        )

    def files(self) -> list[str]:
        """Agent names of every file in the workspace (editable first)."""
        ordered = sorted(self._files.values(), key=lambda f: (not f.editable, f.created))
        return [self._agent_name(f.path) for f in ordered]

    def text(self, filename: str) -> str:
        """Current text of a file by agent name or codebase path."""
        return self._lookup(filename).text


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _with_bodies(f: WorkspaceFile, bodies: dict[str, list[str]]) -> WorkspaceFile:
    """`f` with saved region bodies, which must name exactly its open regions."""
    names = [p.name for p in f.parts if p.name is not None]
    if sorted(bodies) != sorted(names):
        raise IntegrityError(
            f"workspace state for {f.path} has regions {sorted(bodies)}, expected {names}"
        )
    return f.with_bodies(bodies)


def _saved_entry(path: str, before: WorkspaceFile | None) -> UndoEntry:
    if before is None:
        return UndoEntry(file=path, created=True, before=None)
    if before.created:
        return UndoEntry(file=path, created=True, before=list(before.lines))
    return UndoEntry(file=path, created=False, before=before.bodies())
