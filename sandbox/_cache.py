"""The result cache: identical inputs of a (job, seed) → the finished result, instantly."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sandbox._models import JobSpec, SeedResult

RESULT_FILE = "result.json"


def cache_key(
    *,
    files: dict[str, str],
    job: JobSpec,
    seed: int,
    profile: str,
    codebase_version: str,
    data_fingerprint: str,
    env: dict[str, str],
    needs_keys: list[str],
) -> str:
    """sha256 of everything that decides a (job, seed)'s outcome.

    ``needs_keys`` chain a job to the keys of the jobs whose outputs it reads, so a job on the
    original code (which ignores ``files``) still misses the cache when its inputs changed.
    ``hidden``, ``show_log`` and ``description`` are left out: they change who sees a result, not the result.
    """
    identity: dict[str, Any] = {
        "v": 3,
        "files": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(files.items())},
        "job": job.model_dump(
            mode="json",
            exclude={"hidden", "show_log", "description"},
        ),
        "seed": seed,
        "profile": profile,
        "codebase": codebase_version,
        "data": data_fingerprint,
        "env": dict(sorted(env.items())),
        "needs": needs_keys,
    }
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def link_tree(src: Path, dest: Path) -> None:
    """Copy a directory, hard-linking files when both sides share a filesystem (checkpoints)."""

    def link_or_copy(s: str, d: str) -> object:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
        return d

    def not_regular(directory: str, names: list[str]) -> set[str]:
        # A job's output dir is untrusted: a symlink (to /dev/zero, to a host file) or a FIFO
        # must not be followed when its outputs are copied.
        skip = set()
        for name in names:
            path = Path(directory) / name
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                skip.add(name)
        return skip

    shutil.copytree(src, dest, copy_function=link_or_copy, ignore=not_regular, dirs_exist_ok=True)


class ResultCache:
    """A directory of finished (job, seed) outputs keyed by :func:`cache_key`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def lookup(self, key: str) -> tuple[SeedResult, Path] | None:
        entry = self.root / key
        try:
            result = SeedResult.model_validate_json((entry / RESULT_FILE).read_text())
        except (OSError, ValueError):
            return None
        if result.status == "infra_error" or not (entry / "out").is_dir():
            return None
        return result, entry / "out"

    def store(self, key: str, result: SeedResult, out_dir: Path, log_path: Path) -> None:
        """Keep a finished result, its outputs and its log; infrastructure failures never."""
        if result.status == "infra_error" or (self.root / key / RESULT_FILE).is_file():
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
        try:
            link_tree(out_dir, staging / "out")
            if log_path.is_file():
                shutil.copyfile(log_path, staging / "log.txt")
            (staging / RESULT_FILE).write_text(result.model_dump_json(indent=1))
            # rename is atomic: a reader sees a whole entry or none
            os.rename(staging, self.root / key)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            with contextlib.suppress(OSError):
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
