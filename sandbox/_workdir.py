"""Fresh copies of the codebase with a submission's files laid over them, measures of trees,
and the hand-back of a finished job's outputs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from pathlib import Path, PurePosixPath

# Build outputs and caches never belong to the copy a submission runs in.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache")


class OverlayError(ValueError):
    """An overlay path would land outside the codebase copy."""


def safe_relative(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path that stays inside its root, else ``OverlayError``."""
    rel = PurePosixPath(path.replace("\\", "/"))
    if (
        not path
        or rel.is_absolute()
        or any(part in ("..", "") for part in rel.parts)
        or str(rel) == "."
    ):
        raise OverlayError(f"file path {path!r} must be relative and stay inside the codebase")
    return rel


def make_copy(codebase_dir: Path, files: dict[str, str], dest: Path) -> Path:
    """Copy ``codebase_dir`` to ``dest`` and overlay ``files`` (relative path → full text)."""
    if not codebase_dir.is_dir():
        raise FileNotFoundError(f"codebase directory {codebase_dir} does not exist")
    shutil.copytree(codebase_dir, dest, ignore=_IGNORED, symlinks=False)
    for name, text in files.items():
        target = dest / safe_relative(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return dest


def hash_tree(root: Path) -> str:
    """``sha256:…`` of every file's relative path and content under ``root`` (the codebase version)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache"))
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            path = Path(dirpath) / name
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def fingerprint_dir(root: Path | None) -> str:
    """A cheap identity of a data directory: names, sizes and mtimes, plus small files' content.

    Shards can be gigabytes, so they are identified by size and mtime; a re-prepared dataset
    gets new mtimes and therefore a new fingerprint (a cache miss, never a wrong hit).
    """
    if root is None:
        return "none"
    if not root.exists():
        return f"missing:{root}"
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.stat()
            digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if st.st_size <= 1 << 16:
                digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()


def tree_usage(root: Path, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) under ``root``, symlinks not followed; stops counting at ``max_entries``."""
    total = entries = 0
    stack = [root]
    while stack and entries <= max_entries:
        directory = stack.pop()
        try:
            listing = list(os.scandir(directory))
        except PermissionError:
            # user-namespace mode: a job (our own uid) can chmod a directory to hide it
            try:
                os.chmod(directory, 0o700)
                listing = list(os.scandir(directory))
            except OSError:
                continue
        except OSError:
            continue
        for entry in listing:
            entries += 1
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total, entries


def hand_back_outputs(root: Path, *, chown: bool) -> list[str]:
    """Make a finished job's outputs safe for the supervisor and the jobs that read them.

    Every backend (local, Docker, Slurm) hands back through this one rule: anything that is
    not a regular file or a directory is removed — a symbolic link could send a trusted reader
    to a host file (``/etc/shadow``) or a device, a FIFO could block it, a socket or device node
    has no business in results. What stays becomes the supervisor's (``chown``, when it ran the
    job as another user), world-readable so that a later job (the sandbox user) can read it
    through its read-only mount, writable by nobody else, with no set-id or sticky bits.
    Directories are opened before they are read, so even a ``chmod 000`` one is handed back.
    Returns notes: what was removed and what could not be handed back.
    """
    notes: list[str] = []
    uid, gid = os.getuid(), os.getgid()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            if chown:
                os.lchown(directory, uid, gid)
            os.chmod(directory, 0o755)
            entries = list(os.scandir(directory))
        except OSError as exc:
            notes.append(f"cannot hand back {directory}: {exc.strerror}")
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    path.unlink()
                    kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
                    notes.append(f"removed a {kind} from the outputs: {path.name}")
                    continue
                if chown:
                    os.lchown(path, uid, gid)
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)
            except OSError as exc:
                notes.append(f"cannot hand back {path}: {exc.strerror}")
    return notes
