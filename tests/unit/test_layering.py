"""The dependency direction of docs/INTERFACES.md, checked on the source.

runner → env → sandbox, runner → leaderboard; sandbox and leaderboard import nothing of ours;
nothing imports runner; code under tasks/ imports none of our packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"env", "sandbox", "leaderboard", "runner", "tasks", "baselines"}
ALLOWED = {
    "env": {"env", "sandbox"},
    "sandbox": {"sandbox"},
    "leaderboard": {"leaderboard"},
    "runner": {"runner", "env", "sandbox", "leaderboard"},
}
# What sandboxed code may import besides the standard library and its own sibling modules.
CODEBASE_THIRD_PARTY = {
    "torch",
    "numpy",
    "tiktoken",
    "tiktoken_ext",
    "lm_eval",
    "pyarrow",
    "datasets",
    "tqdm",
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_dependency_direction(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    for path in files:
        ours = _imported_top_levels(path) & OURS
        forbidden = ours - ALLOWED[package]
        assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


def test_codebase_imports_only_its_runtime() -> None:
    import sys

    codebase = ROOT / "tasks" / "codebases"
    files = sorted(codebase.rglob("*.py"))
    assert files, "tasks/codebases has no Python files"
    for path in files:
        # modules of its own codebase folder, subfolders included (lm_eval_tasks/pb_tasks.py)
        own = codebase / path.relative_to(codebase).parts[0]
        siblings = {p.stem for p in own.rglob("*.py")}
        for name in _imported_top_levels(path):
            ok = name in sys.stdlib_module_names or name in CODEBASE_THIRD_PARTY or name in siblings
            assert ok, f"{path.relative_to(ROOT)} imports {name!r}"
            assert name not in OURS - siblings, f"{path.relative_to(ROOT)} imports our {name!r}"
