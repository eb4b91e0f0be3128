"""One torch everywhere: pyproject's `torch==` pin, the GPU and CPU images' TORCH_VERSION, any
requirements or constraints file, and every torch release the docs state are the same."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from sandbox.images import pinned_torch_version

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "sandbox" / "images"
# a torch release written down: `torch==2.13.0`, `torch 2.13.0`, `torch-2.13.0`, `torch/2.13.0`
STATED = re.compile(r"\btorch(?:==|\s|-|/)v?(\d+\.\d+\.\d+)")


def pyproject_pin() -> str:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [
        req
        for reqs in [
            data["project"]["dependencies"],
            *data["project"]["optional-dependencies"].values(),
        ]
        for req in reqs
        if re.match(r"torch\b", req)
    ]
    assert len(pins) == 1 and pins[0].startswith("torch=="), f"one exact torch pin, not {pins}"
    return pins[0].removeprefix("torch==")


def dockerfile_pin(name: str) -> str:
    match = re.search(r"^ARG TORCH_VERSION=(\S+)$", (IMAGES / name).read_text(), re.M)
    assert match, f"{name} declares no ARG TORCH_VERSION"
    return match.group(1)


def tracked_text_files() -> list[Path]:
    skip = {".git", ".venv", "node_modules", "__pycache__", "_fixtures", "snapshots"}
    out = []
    for path in REPO.rglob("*"):
        if any(part in skip for part in path.relative_to(REPO).parts) or not path.is_file():
            continue
        if path.suffix in {
            ".md",
            ".txt",
            ".toml",
            ".cfg",
            ".sh",
            ".yaml",
            ".yml",
        } or path.name.startswith("Dockerfile"):
            out.append(path)
    return out


def test_every_pin_names_the_same_torch_release() -> None:
    release = pyproject_pin()
    assert dockerfile_pin("Dockerfile.gpu") == release
    assert dockerfile_pin("Dockerfile.cpu") == release
    assert pinned_torch_version() == release  # what the image build passes


def test_the_gpu_image_installs_the_pin_and_not_a_base_images_torch() -> None:
    text = (IMAGES / "Dockerfile.gpu").read_text()
    assert "pytorch/pytorch" not in text  # a base image with its own torch release
    assert '"torch==${TORCH_VERSION}"' in text
    assert "--constraint" in text  # lm-eval's dependencies may not move torch
    assert "torch.version.cuda" in text  # the build refuses a CPU-only wheel
    assert "/tmp/wheels/torch-${TORCH_VERSION}+cpu-" in (IMAGES / "Dockerfile.cpu").read_text()


def test_requirements_and_docs_state_no_other_release() -> None:
    release = pyproject_pin()
    stated: dict[str, set[str]] = {}
    for path in tracked_text_files():
        name = path.name.lower()
        text = path.read_text(errors="replace")
        if "requirements" in name or "constraints" in name:
            assert not re.search(r"^torch\b(?!==" + re.escape(release) + r"\b)", text, re.M), path
        for found in STATED.findall(text):
            stated.setdefault(found, set()).add(str(path.relative_to(REPO)))
    others = {v: files for v, files in stated.items() if v != release}
    assert not others, f"torch releases other than {release} stated in {others}"


def test_the_installed_torch_is_the_pinned_release() -> None:
    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pytest.skip("torch is not installed here (the harness core does not need it)")
    assert installed.split("+")[0] == pyproject_pin()


def test_the_pattern_finds_stated_releases() -> None:
    assert STATED.findall("pins torch==2.6.0; the image had torch 2.6.0 and torch-2.6.0+cu124") == [
        "2.6.0",
        "2.6.0",
        "2.6.0",
    ]
