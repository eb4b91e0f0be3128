"""What every workspace file must satisfy: frozen text byte-identical to the original (sha256)
and read the same way (token stream), syntax, the task's invariants and code policy, data
regions; and which new file names are allowed.

The reference a file is checked against (`FrozenReference`) is computed once from the original.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import re
import sys
import tokenize
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from env import _texts as texts
from env._data_regions import data_region_violations
from env._errors import IntegrityError
from env._file import Part, WorkspaceFile, split_parts
from env._invariants import Violation, check_invariants, scope_bindings
from env._policy import check_policy
from env._regions import RegionSyntaxError
from env._spec import TaskSpec

__all__ = [
    "MAX_CONTENT_CHARS",
    "FrozenReference",
    "Problems",
    "check_new_path",
    "frozen_digest",
    "sha256",
    "verify",
]

MAX_CONTENT_CHARS = 200_000  # one edit; far above any real region, far below a memory problem
MAX_FILE_LINES = 20_000
_SHADOW_GUARD = frozenset(
    {"torch", "numpy", "tiktoken", "lm_eval", "pyarrow", "datasets", "transformers",
     "sitecustomize", "usercustomize", "triton", "custom_pretrain", "evaluate", "setuptools",
     "pkg_resources", "yaml", "regex", "requests", "filelock", "huggingface_hub", "safetensors"}
)  # fmt: skip

_Tok = tuple[int, str, int, int]  # type, text, indentation depth, bracket depth


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def frozen_digest(parts: Sequence[Part], trailing_newline: bool) -> str:
    """The sha256 of a file's frozen parts (and its final newline)."""
    frozen = [list(part.lines) for part in parts if part.frozen]
    payload = json.dumps({"frozen": frozen, "trailing_newline": trailing_newline})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FrozenReference:
    """What an original file's frozen text is: its digest, the names its open regions define
    (theirs to redefine), and the tokens of its frozen lines with the nesting they are read in."""

    digest: str
    region_names: frozenset[str] = frozenset()
    tokens: tuple[_Tok, ...] = ()

    @classmethod
    def of(cls, f: WorkspaceFile) -> FrozenReference:
        digest = frozen_digest(f.parts, f.trailing_newline)
        if not f.python or f.created or not f.editable:
            return cls(digest)
        return cls(
            digest,
            _region_bound_names(f),
            tuple(_frozen_token_stream(f.original_text, f.editable_lines)[0]),
        )


@dataclass
class Problems:
    """What verification found: a frozen-text problem, or violations of one kind."""

    kind: str = ""
    violations: list[Violation] = field(default_factory=list)
    frozen: str | None = None


def _region_bound_names(f: WorkspaceFile) -> frozenset[str]:
    """Module-level names the original open regions define."""
    try:
        tree = ast.parse(f.original_text)
    except SyntaxError:
        return frozenset()
    open_lines = f.editable_lines
    return frozenset(
        b.name for b in scope_bindings(tree.body) if getattr(b.node, "lineno", 0) in open_lines
    )


@functools.lru_cache(maxsize=8)
def _parse_original(text: str) -> ast.Module:
    """The AST of an original codebase file (parsed once; never mutated by the checks)."""
    return ast.parse(text)


def _frozen_token_stream(
    text: str, open_lines: Collection[int]
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


def verify(task: TaskSpec, f: WorkspaceFile, ref: FrozenReference, name: str) -> Problems:
    """Frozen text, syntax, invariants and code policy of one file as it would be (`name`: the
    agent's name for it, for messages)."""
    if len(f.lines) > MAX_FILE_LINES:
        return Problems("syntax", [Violation(0, f"the file would exceed {MAX_FILE_LINES} lines")])
    try:
        return _verify(task, f, ref, name)
    except (RecursionError, MemoryError):
        # Deeply nested expressions exhaust the parser or the checkers: refuse, not crash.
        return Problems("syntax", [Violation(0, "the code is too deeply nested to check")])


def _verify(task: TaskSpec, f: WorkspaceFile, ref: FrozenReference, name: str) -> Problems:
    if not f.created:
        frozen = _frozen_problem(task, f, ref, name)
        if frozen:
            return Problems(frozen=frozen)
    if not f.python:
        return Problems()
    text = f.text
    try:
        tree = ast.parse(text, filename=name)
    except SyntaxError as e:
        return Problems("syntax", [Violation(e.lineno or 0, f"syntax error: {e.msg}")])
    except ValueError as e:  # e.g. NUL bytes; content checks normally catch these first
        return Problems("syntax", [Violation(0, f"cannot be parsed: {e}")])
    if not f.created:
        line = _structure_problem(f, ref)
        if line is not None:
            message = (
                "the edit changes how the frozen code is read: an unclosed string, bracket or "
                "block in an editable region would swallow frozen lines; close everything you "
                "open inside the region"
            )
            return Problems("structure", [Violation(line, message)])
    original = None if f.created else _parse_original(f.original_text)
    invariants = [inv for inv in task.invariants if inv.file == f.path]
    violations = check_invariants(tree, invariants, original)
    if violations:
        return Problems("invariant", violations)
    violations = check_policy(tree, text, f.editable_lines, task.code_policy, set(ref.region_names))
    if violations:
        return Problems("policy", violations)
    for part, start, _ in f.regions():
        data = task.data_regions.get(part.name or "")
        if data is not None:
            violations = data_region_violations("\n".join(part.lines), data.variable, start)
            if violations:
                return Problems("policy", violations)
    return Problems()


def _structure_problem(f: WorkspaceFile, ref: FrozenReference) -> int | None:
    """The first frozen line the edit makes read differently, or None."""
    tokens, token_lines, line = _frozen_token_stream(f.text, f.editable_lines)
    if line is None and tuple(tokens) != ref.tokens:
        differs = [
            i for i, (t, o) in enumerate(zip(tokens, ref.tokens, strict=False)) if t != o
        ] or [min(len(tokens), len(ref.tokens)) - 1]
        line = token_lines[differs[0]] if token_lines else 0
    return line


def _frozen_problem(
    task: TaskSpec, f: WorkspaceFile, ref: FrozenReference, name: str
) -> str | None:
    """Re-parse the rendered file and compare its frozen text with the original's."""
    entry = task.editable_file(f.path)
    regions = entry.regions if entry is not None else []
    try:
        parts, trailing = split_parts(f.path, f.text, regions)
    except (RegionSyntaxError, IntegrityError) as e:
        return texts.markers_broken(name, e)
    if frozen_digest(parts, trailing) != ref.digest:
        return texts.frozen_changed(name)
    return None


def check_new_path(task: TaskSpec, path: str, existing: Collection[str]) -> None:
    """Raise `IntegrityError` (its text the agent's ``ERROR: …``) unless ``path`` may be a new
    module of the package."""
    if path in existing or (task.codebase_dir / path).exists():
        raise IntegrityError(texts.file_exists(task.agent_path(path)))
    if not re.fullmatch(r"[a-z_][a-z0-9_]*\.py", path):
        why = "new files are single Python modules named like helpers.py, in the package folder"
        raise IntegrityError(texts.invalid_file_name(task.agent_path(path), why))
    # A new module beside the training script is first on sys.path: it must not shadow
    # a library or the harness (torch.py, math.py, sitecustomize.py, pb_config.py).
    stem = path[:-3]
    if stem in sys.stdlib_module_names or stem in _SHADOW_GUARD or stem.startswith("pb_"):
        raise IntegrityError(texts.shadowing_file_name(task.agent_path(path), stem))
