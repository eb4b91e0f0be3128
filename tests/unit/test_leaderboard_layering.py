"""The leaderboard imports nothing else of PretrainBench (the runner depends on it, not back)."""

from __future__ import annotations

import ast
from pathlib import Path

OURS = {"env", "sandbox", "runner", "tasks", "baselines", "tests"}


def test_leaderboard_imports_no_other_package_of_ours(repo_root: Path) -> None:
    offenders = []
    for path in sorted((repo_root / "leaderboard").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in OURS]
    assert offenders == []


def test_templates_and_static_files_ship_with_the_package(repo_root: Path) -> None:
    root = repo_root / "leaderboard"
    for name in ["base.html", "home.html", "task.html", "run.html", "error.html"]:
        assert (root / "templates" / name).is_file()
    css = (root / "static" / "style.css").read_text()
    assert "@import" not in css and "url(" not in css  # no external assets, works offline


def test_migrations_ship_with_the_package(repo_root: Path) -> None:
    root = repo_root / "leaderboard" / "migrations"
    assert (root / "env.py").is_file() and (root / "script.py.mako").is_file()
    assert sorted(p.name for p in (root / "versions").glob("*.py"))[0] == "0001_initial_schema.py"
    pyproject = (repo_root / "pyproject.toml").read_text()
    assert '"migrations/**/*"' in pyproject  # package-data: installed beside the code
