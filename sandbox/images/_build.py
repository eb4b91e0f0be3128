"""Building the sandbox images locally (no registry needed for the CPU test image)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox._backend import BackendError
from sandbox._docker import CPU_IMAGE, GPU_IMAGE, docker_client

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "pretrainbench/debian-py:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

Log = Callable[[str], None]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (``URIs:``/``deb`` lines), else deb.debian.org."""
    candidates = [
        Path("/etc/apt/sources.list"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
    ]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s*)?)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


def find_torch_wheel() -> Path:
    """The local torch CPU wheel pip installs from on this machine (pip's find-links dirs)."""
    import torch

    version = torch.__version__.split("+")[0]
    dirs: list[str] = []
    for var in ("PIP_FIND_LINKS",):
        dirs += os.environ.get(var, "").split()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if key.endswith("find-links"):
                dirs += value.strip("'\"").split()
    except (OSError, subprocess.SubprocessError):
        pass
    dirs += ["/opt/wheels"]
    for d in dirs:
        d = d.removeprefix("file://")
        matches = sorted(glob.glob(os.path.join(d, f"torch-{version}*cpu*-cp311-*.whl")))
        if matches:
            return Path(matches[-1])
    raise BackendError(f"no local torch {version} CPU wheel found in {dirs}")


def image_exists(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except Exception:
        return False


def build_base_image(
    client: Any, tag: str = BASE_IMAGE, *, mirror: str | None = None, log: Log = print
) -> str:
    """Debootstrap a minimal Debian bookworm with python3 and ``docker import`` it as ``tag``."""
    if image_exists(client, tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise BackendError("debootstrap is not installed (apt-get install debootstrap)")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="pb-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap bookworm from {mirror} (about a minute)")
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,bash,ca-certificates",
                "bookworm",
                str(rootfs),
                mirror,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BackendError(
                f"debootstrap failed ({proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}"
            )
        log(f"importing the root filesystem as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import", "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imp.returncode != 0:
            raise BackendError(f"docker import failed: {imp.stderr[-2000:]}")
    return tag


def _build(
    client: Any, context: Path, dockerfile: str, tag: str, buildargs: dict[str, str], log: Log
) -> str:
    last = ""
    for chunk in client.api.build(
        path=str(context),
        dockerfile=dockerfile,
        tag=tag,
        buildargs=buildargs,
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "stream" in chunk and chunk["stream"].strip():
            last = chunk["stream"].rstrip()
            log(last)
        if "error" in chunk:
            raise BackendError(f"docker build of {tag} failed: {chunk['error']}")
    if not image_exists(client, tag):
        raise BackendError(f"docker build of {tag} produced no image (last line: {last})")
    return tag


def build_cpu_image(
    tag: str = CPU_IMAGE, *, rebuild: bool = False, client: Any = None, log: Log = print
) -> str:
    """Build (once; cached by tag) the CPU test image: debootstrap base + local torch wheel."""
    client = client or docker_client()
    if image_exists(client, tag) and not rebuild:
        log(f"{tag} is already built")
        return tag
    base = build_base_image(client, log=log)
    wheel = find_torch_wheel()
    with tempfile.TemporaryDirectory(prefix="pb-cpu-image-") as tmp:
        ctx = Path(tmp)
        (ctx / "wheels").mkdir()
        try:
            os.link(wheel, ctx / "wheels" / wheel.name)
        except OSError:
            shutil.copy2(wheel, ctx / "wheels" / wheel.name)
        shutil.copy2(HERE / "Dockerfile.cpu", ctx / "Dockerfile.cpu")
        (ctx / "certs").mkdir()
        bundle = Path(
            os.environ.get("PIP_CERT")
            or os.environ.get("SSL_CERT_FILE")
            or "/etc/ssl/certs/ca-certificates.crt"
        )
        if bundle.is_file():
            shutil.copy2(bundle, ctx / "certs" / "ca-certificates.crt")
        else:
            (ctx / "certs" / "ca-certificates.crt").write_text("")
        log(f"building {tag} from {base} with {wheel.name}")
        return _build(client, ctx, "Dockerfile.cpu", tag, {"BASE": base}, log)


def build_gpu_image(
    tag: str = GPU_IMAGE, *, base: str | None = None, client: Any = None, log: Log = print
) -> str:
    """Build the GPU image (needs the CUDA PyTorch base image and network at build time)."""
    client = client or docker_client()
    with tempfile.TemporaryDirectory(prefix="pb-gpu-image-") as tmp:
        ctx = Path(tmp)
        (ctx / "sandbox" / "images").mkdir(parents=True)
        shutil.copy2(HERE / "bake_assets.py", ctx / "sandbox" / "images" / "bake_assets.py")
        shutil.copy2(HERE / "Dockerfile.gpu", ctx / "Dockerfile.gpu")
        return _build(client, ctx, "Dockerfile.gpu", tag, {"BASE": base} if base else {}, log)
