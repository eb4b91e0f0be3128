"""Where tasks, codebases and baselines live on disk.

Tasks are data: ``tasks/<id>/task.yaml`` next to ``tasks/codebases/<name>/``. The task root can
be moved with ``PRETRAINBENCH_TASKS_DIR`` (tests, installed copies); baselines likewise with
``PRETRAINBENCH_BASELINES_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BASELINES_DIR", "REPO_ROOT", "TASKS_DIR", "baselines_dir", "codebases_dir", "tasks_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = REPO_ROOT / "tasks"
BASELINES_DIR = REPO_ROOT / "baselines"


def tasks_dir() -> Path:
    """The task root: ``$PRETRAINBENCH_TASKS_DIR`` if set, else ``<repo>/tasks``."""
    override = os.environ.get("PRETRAINBENCH_TASKS_DIR")
    return Path(override).expanduser().resolve() if override else TASKS_DIR


def codebases_dir() -> Path:
    """Where the shared codebases of the task root live (``<tasks>/codebases``)."""
    return tasks_dir() / "codebases"


def baselines_dir() -> Path:
    """The baselines root: ``$PRETRAINBENCH_BASELINES_DIR`` if set, else ``<repo>/baselines``."""
    override = os.environ.get("PRETRAINBENCH_BASELINES_DIR")
    return Path(override).expanduser().resolve() if override else BASELINES_DIR
