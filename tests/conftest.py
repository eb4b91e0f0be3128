"""Test configuration shared by all tiers.

Each area keeps its fixtures in ``tests/_fixtures/<area>.py``; they are registered here so
that every test can use them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests._fixtures.env",
    "tests._fixtures.codebase",
    "tests._fixtures.evaluation",
    "tests._fixtures.sandbox",
    "tests._fixtures.tasks",
    "tests._fixtures.runner",
    "tests._fixtures.leaderboard",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEBASE_DIR = REPO_ROOT / "tasks" / "codebases" / "nanogpt"

# Tests never touch the network: lm-eval and Hugging Face libraries must stay offline.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def codebase_dir() -> Path:
    return CODEBASE_DIR
