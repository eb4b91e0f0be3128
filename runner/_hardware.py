"""What machine this is: visible GPUs (without importing torch), library versions, git commit."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pydantic import JsonValue

LIBRARIES = (
    "torch",
    "numpy",
    "tiktoken",
    "lm_eval",
    "pydantic",
    "openai",
    "mcp",
    "fastapi",
    "sqlalchemy",
    "pretrainbench",
)


def visible_gpus() -> list[str]:
    """Names of the visible CUDA GPUs: nvidia-smi if present, else torch in a subprocess.

    The runner process never imports torch (it would make every CLI call slow).
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            if out.returncode == 0:
                return [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired):
            pass
    code = (
        "import torch\nif torch.cuda.is_available():\n"
        " [print(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0
        else []
    )


def choose_profile(
    requested: str,
    cpu_profile: str,
    gpu_profile: str,
    gpus_needed: int,
    gpus: list[str] | None = None,
) -> tuple[str, str]:
    """The profile to run and a one-line reason. ``auto`` picks the task's ``gpu_profile`` only
    where enough GPUs for its jobs are visible, else its ``cpu_profile``."""
    if requested != "auto":
        return requested, f"profile {requested} (requested)"
    gpus = visible_gpus() if gpus is None else gpus
    if gpus and len(gpus) >= max(1, gpus_needed):
        return gpu_profile, f"profile {gpu_profile}: {len(gpus)} GPU(s) visible ({gpus[0]})"
    why = f"{len(gpus)} GPU(s) visible, the {gpu_profile} profile needs {max(1, gpus_needed)}"
    return cpu_profile, f"profile {cpu_profile} (CPU): {why}; pass --profile to choose"


def hardware_info(gpus: list[str] | None = None) -> dict[str, JsonValue]:
    """Host facts recorded with every run."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "gpus": list(gpus or []),
        "gpu_count": len(gpus or []),
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide a result (those present)."""
    versions: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return versions


def git_commit(repo: Path) -> str | None:
    """HEAD of the repository holding the harness (with ``+dirty`` when it has changes)."""
    git = shutil.which("git")
    if not git or not (repo / ".git").exists():
        return None
    try:
        head = subprocess.run(
            [git, "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            [git, "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
