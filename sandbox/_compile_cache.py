"""The compile cache: what torch.compile built, kept between runs so that a job need not
compile again, without giving any job a way to leave something for another run.

One directory per (torch release, codebase identity, profile) holds inductor's caches (FX
graphs, AOT autograd, generated kernels) and Triton's. Every job that is granted it sees it
read-only at ``/pb/compile-cache``; the training script copies it into the job's own working
cache (``TORCHINDUCTOR_CACHE_DIR``, the same path in every job) and compiles there. Only the
supervisor writes the shared directory: a job of a *trusted* request (``CompileCache.writable``:
a baseline run, whose code is ours) leaves a copy of its working cache in its output directory
(``PB_COMPILE_CACHE_PUBLISH``), and once the job ended ``ok`` the supervisor copies the new
files from there (`publish_compile_cache`). See docs/SECURITY.md.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

from sandbox._workdir import hash_tree

#: The folder of a trusted job's output directory that holds a copy of its working compile
#: cache; the supervisor publishes it and removes it before anything else reads the outputs.
COMPILE_OUTPUT = "compile-cache"
#: Inside a job, where it compiles (under its private temp dir; the same path in every job).
PRIVATE_DIR = "pb-compile-cache"
# Lock files are per process and meaningless in a shared copy.
_NOT_PUBLISHED = {"locks"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def torch_release() -> str:
    """The installed torch's version, read from its metadata (importing torch takes seconds)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def compile_cache_path(root: Path, codebase_dir: Path, profile: str) -> Path:
    """``root/torch-<release>/<codebase identity>/<profile>``: the compile cache of a codebase.

    The torch release is the harness's; a sandbox image with another torch only misses (inductor
    keys every entry by its own version too), it never loads a foreign entry.
    """
    release = _UNSAFE.sub("_", torch_release())
    identity = hash_tree(codebase_dir).removeprefix("sha256:")[:16]
    return root / f"torch-{release}" / identity / _UNSAFE.sub("_", profile)


def prepare_compile_cache(path: Path) -> None:
    """Create the shared directory, readable (never writable) by the sandbox's users."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)


def publish_compile_cache(staged: Path, cache: Path) -> int:
    """Copy the regular files of ``staged`` that ``cache`` lacks into it; the number copied.

    Each file lands whole or not at all (copied beside, then linked into place without
    replacing anything), so concurrent publishers and readers never see half a file, and an
    entry once published never changes. Links, FIFOs and lock files are skipped; published
    files are 0644 (0755 when executable) and owned by the supervisor.
    """
    copied = 0
    for dirpath, dirnames, filenames in os.walk(staged):
        here = Path(dirpath)
        rel = here.relative_to(staged)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in _NOT_PUBLISHED]
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
        for name in filenames:
            source = here / name
            mode = os.lstat(source).st_mode
            dest = cache / rel / name
            if not stat.S_ISREG(mode) or os.path.lexists(dest):
                continue
            _make_dirs(cache, rel)
            temp = dest.with_name(f".pb-publish-{uuid.uuid4().hex}")
            try:
                shutil.copyfile(source, temp, follow_symlinks=False)
                temp.chmod(0o755 if mode & stat.S_IXUSR else 0o644)
                os.link(temp, dest)  # never replaces: a file already there stays
                copied += 1
            except FileExistsError:
                pass
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
    return copied


def _make_dirs(cache: Path, rel: Path) -> None:
    """``cache/rel`` and its parents below ``cache``, each 0755."""
    path = cache
    for part in rel.parts:
        path = path / part
        if not path.is_dir():
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            path.chmod(0o755)
