"""`runner setup`: prepare $PRETRAINBENCH_HOME (tokenizer, offline corpus and the evaluation
sets generated from its held-out documents, online data).

Each step runs the codebase's own trusted script in a subprocess (the runner never imports
torch or tiktoken) and is skipped when its output is already valid, so setup is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

GPT2_TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


class SetupError(Exception):
    """A preparation step failed; the message names the command and the log tail."""


@dataclass
class SetupStep:
    """One thing setup checked: what, where, and whether it was done now or already there."""

    name: str
    path: Path
    action: str  # "present" | "prepared" | "skipped"
    detail: str = ""


def tokenizer_ready(home: Path) -> bool:
    """True when home/tokenizer/gpt2.tiktoken exists with the expected sha256."""
    path = home / "tokenizer" / "gpt2.tiktoken"
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == GPT2_TIKTOKEN_SHA256


def shards_ready(data_dir: Path) -> bool:
    """True when data_dir has a meta.json listing shards that all exist with their sizes."""
    meta_path = data_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    shards = meta.get("shards") if isinstance(meta, dict) else None
    if not isinstance(shards, dict) or not shards:
        return False
    for name, info in shards.items():
        path = data_dir / name
        if not path.is_file():
            return False
        size = info.get("bytes") if isinstance(info, dict) else None
        if isinstance(size, int) and path.stat().st_size != size:
            return False
    return any(n.startswith("train") for n in shards) and any(n.startswith("val") for n in shards)


def corpus_ready(home: Path) -> bool:
    """True when the offline corpus's shards are complete and its held-out documents (the
    evaluation sets' source, in their own folder) were written by the same build."""
    offline, heldout = home / "data" / "offline", home / "data" / "offline-heldout"
    if not shards_ready(offline):
        return False
    try:
        meta = json.loads((offline / "meta.json").read_text())
        held = json.loads((heldout / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(meta, dict)
        and isinstance(held, dict)
        and "heldout_documents" in meta
        and held.get("corpus_text_sha256") == meta.get("text_sha256")
        and (heldout / "heldout.jsonl").is_file()
    )


def eval_sets_ready(home: Path) -> bool:
    """True when home/data/offline-eval holds the evaluation sets generated from this corpus:
    its manifest names the held-out documents and training shards that are there now, and
    every set file has the sha256 the manifest records."""
    out = home / "data" / "offline-eval"
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        held = json.loads((home / "data" / "offline-heldout" / "meta.json").read_text())
        meta = json.loads((home / "data" / "offline" / "meta.json").read_text())
        sets = manifest["sets"]
        if (
            manifest["heldout_sha256"] != held["sha256"]
            or manifest["train_sha256"] != meta["sha256"]
            or not sets
        ):
            return False
        return all(
            hashlib.sha256((out / info["file"]).read_bytes()).hexdigest() == info["sha256"]
            for info in sets.values()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def setup_ready(home: Path) -> bool:
    """Whether the offline quick start has what it needs."""
    return tokenizer_ready(home) and corpus_ready(home) and eval_sets_ready(home)


#: What a codebase must ship to prepare the home (run by `run_setup`).
SETUP_SCRIPTS = ("pb_tokenizer.py", "offline_corpus.py", "make_eval_sets.py")


def setup_codebase(candidates: list[Path]) -> Path:
    """The first of ``candidates`` (the tasks' codebases) that ships the data-preparation
    scripts; else the first shipped with the harness that does. The tokenizer and the offline
    corpus are shared by every task, so any codebase that can prepare them will do."""
    from runner._components import REPO_ROOT

    shipped = sorted(p for p in (REPO_ROOT / "tasks" / "codebases").iterdir() if p.is_dir())
    for codebase in [*candidates, *shipped]:
        if all((codebase / script).is_file() for script in SETUP_SCRIPTS):
            return codebase
    raise SetupError(f"no codebase ships the setup scripts {', '.join(SETUP_SCRIPTS)}")


def ensure_home_ready(home: Path, *, say: Callable[[str], None], codebases: list[Path]) -> bool:
    """Prepare what the offline quick start still lacks under ``home``; True if anything.

    For servers (`runner mcp`, `runner serve`): an agent's first test must not be the first
    to find the data missing, with a host path in the error. The preparation is `run_setup`'s,
    its output going to ``home/logs`` and one line to ``say``. Raises `SetupError`, telling
    the user to run `runner setup`, when the home cannot be prepared.
    """
    if setup_ready(home):
        return False
    say(
        f"preparing {home} (GPT-2 tokenizer, offline corpus, evaluation sets; "
        f"logs in {home / 'logs'}) …"
    )
    try:
        run_setup(home, setup_codebase(codebases), say=lambda _: None)
    except (SetupError, OSError) as e:
        raise SetupError(
            f"{home} is not prepared for tests and preparing it failed: {e}\n"
            f"Run `runner setup` (PRETRAINBENCH_HOME={home}), then start again."
        ) from e
    return True


def run_setup(
    home: Path,
    codebase: Path,
    *,
    fineweb: bool = False,
    eval_datasets: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> list[SetupStep]:
    """Prepare what is missing under ``home``; returns what was found or done."""
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    tok_dir = home / "tokenizer"
    offline = home / "data" / "offline"
    steps = [
        _step(
            SetupStep("tokenizer", tok_dir / "gpt2.tiktoken", "", "sha256 ok"),
            lambda: tokenizer_ready(home),
            f"fetching the GPT-2 tokenizer into {tok_dir} …",
            [codebase / "pb_tokenizer.py", "--fetch", tok_dir],
            logs / "tokenizer.log",
            force=force,
            say=say,
        ),
        _step(
            SetupStep("offline corpus", offline, ""),
            lambda: corpus_ready(home),
            f"building the offline English corpus into {offline} …",
            [
                codebase / "offline_corpus.py",
                "--out",
                offline,
                "--heldout",
                home / "data" / "offline-heldout",
                "--tokenizer-dir",
                tok_dir,
            ],
            logs / "offline_corpus.log",
            force=force,
            say=say,
        ),
        _step(
            SetupStep("offline evaluation sets", home / "data" / "offline-eval", ""),
            lambda: eval_sets_ready(home),
            "generating the offline evaluation sets from the held-out documents …",
            [
                codebase / "make_eval_sets.py",
                "--heldout",
                home / "data" / "offline-heldout",
                "--train",
                offline,
                "--out",
                home / "data" / "offline-eval",
                "--tokenizer-dir",
                tok_dir,
            ],
            logs / "eval_sets.log",
            force=force,
            say=say,
        ),
    ]
    if fineweb:
        target = home / "data" / "fineweb"
        steps.append(
            _step(
                SetupStep("fineweb shards", target, ""),
                lambda: shards_ready(target),
                f"downloading and tokenizing FineWeb into {target} (needs network) …",
                [
                    codebase / "prepare_data.py",
                    "--out",
                    target,
                    "--tokenizer-dir",
                    tok_dir,
                    "--quiet",
                ],
                logs / "fineweb.log",
                force=force,
                say=say,
                check=False,
            )
        )
    if eval_datasets:
        hf_home = home / "hf"
        say(f"downloading the lm-eval datasets into {hf_home} (needs network) …")
        _run(
            [sys.executable, str(codebase / "prepare_eval.py"), "--hf-home", str(hf_home)],
            codebase,
            logs / "eval_datasets.log",
            env_extra={"HF_HOME": str(hf_home)},
        )
        steps.append(SetupStep("lm-eval datasets", hf_home, "prepared"))
    return steps


def _step(
    step: SetupStep,
    ready: Callable[[], bool],
    message: str,
    script: list[str | Path],
    log: Path,
    *,
    force: bool,
    say: Callable[[str], None],
    check: bool = True,
) -> SetupStep:
    """One idempotent step: ``present`` when ``ready()``; else run the codebase's ``script``
    (its path, then its arguments) and, with ``check``, make sure it left ``ready()`` true."""
    if ready() and not force:
        return replace(step, action="present")
    say(message)
    codebase = Path(script[0]).parent
    _run([sys.executable, *map(str, script)], codebase, log)
    if check and not ready():
        raise SetupError(
            f"{step.path} is missing or invalid after {Path(script[0]).name} (log: {log})"
        )
    return replace(step, action="prepared")


def _run(cmd: list[str], cwd: Path, log: Path, env_extra: dict[str, str] | None = None) -> None:
    import os

    if not Path(cmd[1]).is_file():
        raise SetupError(f"{cmd[1]} does not exist; is the codebase complete?")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(env_extra or {})}
    with log.open("w") as out:
        proc = subprocess.run(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SetupError(f"`{' '.join(cmd)}` exited with {proc.returncode} (log: {log}):\n{tail}")
