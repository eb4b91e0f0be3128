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


def _env_imports(path: Path) -> set[str]:
    """The env modules ``path`` imports, those under ``if TYPE_CHECKING:`` included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "env")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "env":  # `from env import x`: the package, or its submodule x
                subs = {f"env.{a.name}" for a in node.names}
                found.update(subs & _ENV_MODULES or {"env"})
            elif node.module.split(".")[0] == "env":
                found.add(node.module)
    return found


_ENV_MODULES = {
    "env" if p.stem == "__init__" else f"env.{p.stem}" for p in (ROOT / "env").glob("*.py")
}


def test_env_has_no_import_cycle() -> None:
    """Each env module's imports (type-only ones too) form a graph without a cycle below the
    package: a cycle means behaviour sits on the wrong side of a boundary."""
    graph = {
        ("env" if p.stem == "__init__" else f"env.{p.stem}"): _env_imports(p) - {"env"}
        for p in (ROOT / "env").glob("*.py")
    }
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' → '.join([*path, module])}"
        state[module] = "open"
        for target in sorted(graph.get(module, set())):
            visit(target, [*path, module])
        state[module] = "done"

    assert len(graph) > 5
    for module in sorted(graph):
        visit(module, [])
