"""Building the sandbox images locally (no registry needed for the CPU images).

Three images, all running jobs as the non-root user ``pb`` (``USER 61000:61000``):
- ``build_host_runtime_image``: a few-kB image whose jobs run the host's own Python, bound
  read-only (`host_runtime_paths`); built in under a second, for tests and CI.
- ``build_cpu_image``: a self-contained image (debootstrapped Debian + the local torch wheel +
  lm-eval from the package registry); about ten minutes on a fresh machine, cached by tag.
- ``build_gpu_image``: the CUDA image for real runs (needs its base image and network).

All three install the one torch release the project pins (`pinned_torch_version`).
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox._backend import BackendError
from sandbox._docker import (
    CPU_IMAGE,
    GPU_IMAGE,
    SANDBOX_UID,
    SANDBOX_USER,
    docker_client,
)

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "pretrainbench/debian-py:bookworm"
HOST_RUNTIME_IMAGE = "pretrainbench/sandbox-host"
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


def pinned_torch_version(dockerfile: Path = HERE / "Dockerfile.gpu") -> str:
    """The torch release the images install (``ARG TORCH_VERSION=`` of the Dockerfile; the same
    as pyproject.toml's ``torch==`` pin, which a unit test checks)."""
    match = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile.read_text(), re.M)
    if match is None:
        raise BackendError(f"{dockerfile} declares no ARG TORCH_VERSION")
    return match.group(1)


def find_torch_wheel(version: str | None = None) -> Path:
    """The local torch CPU wheel of the pinned release that pip installs from on this machine
    (pip's find-links dirs)."""
    version = version or pinned_torch_version()
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
        matches = sorted(glob.glob(os.path.join(d, f"torch-{version}+cpu-cp311-*.whl")))
        if matches:
            return Path(matches[-1])
    raise BackendError(f"no local torch {version} CPU wheel found in {dirs}")


def image_exists(client: Any, tag: str) -> bool:
    """Whether the daemon has an image tagged ``tag``."""
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
        buildargs = {
            "BASE": base,
            "PB_UID": str(SANDBOX_UID),
            "TORCH_VERSION": pinned_torch_version(),
        }
        return _build(client, ctx, "Dockerfile.cpu", tag, buildargs, log)


def build_gpu_image(
    tag: str = GPU_IMAGE,
    *,
    base: str | None = None,
    torch_index_url: str | None = None,
    client: Any = None,
    log: Log = print,
) -> str:
    """Build the GPU image: the pinned torch release's CUDA build (PyPI's, or the one at
    ``torch_index_url``) on a Python 3.11 base; needs network at build time."""
    client = client or docker_client()
    with tempfile.TemporaryDirectory(prefix="pb-gpu-image-") as tmp:
        ctx = Path(tmp)
        (ctx / "sandbox" / "images").mkdir(parents=True)
        shutil.copy2(HERE / "Dockerfile.gpu", ctx / "Dockerfile.gpu")
        buildargs = {
            "PB_UID": str(SANDBOX_UID),
            "TORCH_VERSION": pinned_torch_version(),
            **({"BASE": base} if base else {}),
            **({"TORCH_INDEX_URL": torch_index_url} if torch_index_url else {}),
        }
        log(f"building {tag} with torch {buildargs['TORCH_VERSION']} (CUDA build)")
        return _build(client, ctx, "Dockerfile.gpu", tag, buildargs, log)


def host_runtime_paths() -> tuple[Path, ...]:
    """The host directories this interpreter needs in a container: its virtual environment,
    its base installation and ``/usr`` (the C libraries, bash, coreutils), outermost only."""
    candidates = sorted(
        {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path("/usr")},
        key=lambda p: len(p.parts),
    )
    kept: list[Path] = []
    for path in candidates:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return tuple(kept)


def build_host_runtime_image(
    client: Any = None, *, paths: tuple[Path, ...] | None = None, log: Log = print
) -> str:
    """Build (once; tagged by content) an image with no runtime of its own: the ``pb`` user,
    usr-merge links, an empty world-writable ``/tmp`` and the ``PATH`` of this interpreter.
    Jobs in it need ``DockerBackend(host_runtime=host_runtime_paths())``. The jobs see the
    host's ``/usr`` and Python read-only, as the local backend's jobs do; every other
    guarantee of the Docker backend is the same as with the self-contained images."""
    client = client or docker_client()
    paths = paths or host_runtime_paths()
    path_env = ":".join(
        dict.fromkeys([str(Path(sys.prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    )
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:pretrainbench sandbox:/nonexistent:"
        "/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_UID}:\n"
    changes = [f"USER {SANDBOX_UID}:{SANDBOX_UID}", f"ENV PATH={path_env}", "WORKDIR /pb/code"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)  # mtime 0, owner root: the same bytes every time
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        # /sbin stays a real directory: Docker mounts its init there before the /usr bind
        for name in ("usr", "etc", "pb", "proc", "sys", "dev", "sbin"):
            add(name, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)  # a tmpfs over it takes this mode
        for name in ("bin", "lib", "lib64"):
            add(name, tarfile.SYMTYPE, 0o777, link=f"usr/{name}")
        add("etc/passwd", tarfile.REGTYPE, 0o644, passwd.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, group.encode())
    digest = hashlib.sha256(
        buf.getvalue() + "\0".join([*changes, *map(str, paths)]).encode()
    ).hexdigest()[:12]
    tag = f"{HOST_RUNTIME_IMAGE}:{digest}"
    if image_exists(client, tag):
        return tag
    log(f"importing {tag} (host runtime: {', '.join(map(str, paths))})")
    try:
        client.api.import_image_from_data(
            buf.getvalue(), repository=HOST_RUNTIME_IMAGE, tag=digest, changes=changes
        )
    except Exception as exc:
        raise BackendError(f"docker import of {tag} failed: {exc}") from exc
    if not image_exists(client, tag):
        raise BackendError(f"docker import of {tag} produced no image")
    return tag
