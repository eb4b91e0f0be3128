"""bubblewrap command lines: the filesystem view, namespaces and privilege drop of one sandbox.

Two modes, chosen by who runs the harness:
- ``root``: bwrap runs as root without a user namespace (a user namespace would map the job's
  uid to outside uid 0), and ``setpriv`` inside drops to the sandbox's own unprivileged uid/gid
  with an empty bounding set, no inheritable capabilities and ``no_new_privs``.
- ``userns``: an unprivileged harness runs bwrap in a user namespace; the job keeps the
  invoking (already unprivileged) uid, bwrap drops every capability, and with bwrap ≥ 0.8 the
  sandbox cannot create further user namespaces.
In both, a seccomp filter (``userns_seccomp``) refuses new user namespaces to the job.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Host files under /etc a job may read: the dynamic linker's cache (ldconfig -p, which Triton
# uses to find libcuda) and Debian's alternatives symlinks (/usr/bin/cc, awk … point there).
_HOST_ETC = ("/etc/ld.so.cache", "/etc/alternatives")
_GPU_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps")
# NCCL reads PCI topology from sysfs (realpaths under /sys/class/pci_bus → /sys/devices); it
# fails without it. GPU jobs get these read-only, never /sys/fs (cgroups) or /sys/kernel.
_GPU_SYSFS = ("/sys/devices", "/sys/bus", "/sys/class", "/sys/dev")


@dataclass(frozen=True)
class Bwrap:
    """An installed bubblewrap and the options this version supports."""

    path: str
    version: str
    tmpfs_size: bool  # --size (0.7+)
    disable_userns: bool  # --disable-userns (0.8+)


def find_bwrap() -> Bwrap | None:
    """The bubblewrap on ``PATH`` (or ``/usr/bin``), ``None`` when it is not installed."""
    path = shutil.which("bwrap") or ("/usr/bin/bwrap" if Path("/usr/bin/bwrap").exists() else None)
    if path is None:
        return None
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        usage = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return Bwrap(
        path=path,
        version=version.removeprefix("bubblewrap ").strip() or "unknown",
        tmpfs_size="--size" in usage,
        disable_userns="--disable-userns" in usage,
    )


def helper(name: str) -> str | None:
    """The absolute path of a host helper the sandbox runs (``setpriv``, ``prlimit``, ``bash``)."""
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def runtime_roots(python: str) -> list[Path]:
    """The directories that make up a Python runtime, to be bound at the same place.

    The prefixes (a virtual environment and the interpreter it was made from) plus the targets
    of the interpreter's symlink chain; roots under ``/usr`` are left out (always bound) and
    roots inside another root are merged.
    """
    if Path(python).resolve() == Path(sys.executable).resolve():
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    else:
        code = (
            "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)"
        )
        out = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        prefixes = set(out.split())
    roots: set[Path] = set()
    for prefix in prefixes:
        roots.add(Path(prefix))
        roots.add(Path(prefix).resolve())
    # Every hop of the interpreter's symlink chain (venv/bin/python → python3 → the real one)
    # must exist inside the sandbox too.
    hop = Path(os.path.normpath(python))
    for _ in range(40):
        if not any(hop.is_relative_to(r) for r in roots):
            roots.add(hop.parent)
        if not hop.is_symlink():
            break
        target = Path(os.readlink(hop))
        hop = Path(os.path.normpath(target if target.is_absolute() else hop.parent / target))
    kept = sorted(
        r for r in roots if r != Path("/") and not r.is_relative_to("/usr") and r.exists()
    )
    return [r for r in kept if not any(r != o and r.is_relative_to(o) for o in kept)]


@functools.cache
def gpu_library_dirs() -> tuple[Path, ...]:
    """Directories outside ``/usr`` that hold the NVIDIA driver's user-space libraries (as the
    dynamic linker's cache lists them; container hosts keep them in e.g. /usr/local/nvidia)."""
    ldconfig = helper("ldconfig")
    if ldconfig is None:
        return ()
    try:
        listing = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found: set[Path] = set()
    for line in listing.splitlines():
        match = re.search(r"(libcuda|libnvidia-\S+)\.so\S* .*=> (\S+)", line)
        if match:
            directory = Path(match.group(2)).resolve().parent
            if not directory.is_relative_to("/usr"):
                found.add(directory)
    return tuple(sorted(found))


def gpu_devices() -> list[Path]:
    """The NVIDIA device nodes of this host (empty without a driver)."""
    dev = Path("/dev")
    nodes = [dev / name for name in _GPU_DEVICES if (dev / name).exists()]
    nodes += sorted(p for p in dev.glob("nvidia[0-9]*") if p.name[6:].isdigit())
    return nodes


class View:
    """The bwrap arguments that build one sandbox's filesystem, in order.

    bwrap creates missing parent directories with mode 0700 (unreadable for the job's uid), so
    every parent is made explicitly with ``--perms 0755 --dir`` first.
    """

    def __init__(self, bwrap: Bwrap) -> None:
        self.bwrap = bwrap
        self.args: list[str] = []
        self._made: set[str] = {"/"}

    def _parents(self, dest: str) -> None:
        parts = Path(dest).parts[1:-1]
        for i in range(len(parts)):
            self.dir("/" + "/".join(parts[: i + 1]))

    def dir(self, dest: str, perms: str = "0755") -> None:
        """An empty directory."""
        if dest in self._made:
            return
        self._parents(dest)
        self.args += ["--perms", perms, "--dir", dest]
        self._made.add(dest)

    def bind(self, src: Path, dest: str, *, writable: bool = False, device: bool = False) -> None:
        """A bind mount of a host path (read-only unless ``writable``/``device``)."""
        self._parents(dest)
        option = "--dev-bind" if device else ("--bind" if writable else "--ro-bind")
        self.args += [option, str(src), dest]
        self._made.add(dest)

    def symlink(self, target: str, dest: str) -> None:
        """A symbolic link ``dest`` → ``target``."""
        self._parents(dest)
        self.args += ["--symlink", target, dest]
        self._made.add(dest)

    def tmpfs(self, dest: str, size_bytes: int) -> None:
        """A private tmpfs, world-writable with the sticky bit, capped where bwrap can."""
        self._parents(dest)
        size = ["--size", str(size_bytes)] if self.bwrap.tmpfs_size else []
        self.args += ["--perms", "1777", *size, "--tmpfs", dest]
        self._made.add(dest)


def base_view(
    bwrap: Bwrap,
    *,
    runtime: Iterable[Path],
    etc_dir: Path,
    tmp_bytes: int,
    shm_bytes: int,
    gpu: bool,
) -> View:
    """What every sandbox sees: /usr and its links, the Python runtime, a minimal /etc,
    fresh /proc, minimal /dev, private capped /tmp and /dev/shm; GPU devices for GPU jobs."""
    view = View(bwrap)
    view.bind(Path("/usr"), "/usr")
    for name in _SYSTEM_LINKS:
        path = Path(name)
        if path.is_symlink():
            view.symlink(os.readlink(path), name)
        elif path.is_dir():
            view.bind(path, name)
    view.args += ["--proc", "/proc", "--dev", "/dev"]
    view._made.update({"/proc", "/dev"})
    view.tmpfs("/tmp", tmp_bytes)
    view.tmpfs("/dev/shm", shm_bytes)
    for root in runtime:
        view.bind(root, str(root))
    view.dir("/etc")
    for entry in sorted(etc_dir.iterdir()):
        view.bind(entry, f"/etc/{entry.name}")
    for name in _HOST_ETC:
        if Path(name).exists():
            view.bind(Path(name), name)
    if gpu:
        for node in gpu_devices():
            view.bind(node, str(node), device=True)
        for directory in gpu_library_dirs():
            view.bind(directory, str(directory))
        for name in _GPU_SYSFS:
            if Path(name).exists():
                view.bind(Path(name), name)
    return view


def write_etc(
    etc_dir: Path, uid: int, gid: int, extra_groups: dict[str, int] | None = None
) -> None:
    """A synthetic /etc for one sandbox: its user, loopback name resolution, nothing of the host.

    Tools ask for the user's name (``getpass.getuser()`` in torch's inductor cache, ``id``);
    the host's /etc/passwd would tell them about the host's accounts instead.
    """
    etc_dir.mkdir(parents=True, exist_ok=True)
    groups = {"root": 0, "pb": gid, **(extra_groups or {})}
    (etc_dir / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"pb:x:{uid}:{gid}:PretrainBench sandbox:/tmp:/usr/sbin/nologin\n"
    )
    (etc_dir / "group").write_text("".join(f"{n}:x:{g}:\n" for n, g in groups.items()))
    (etc_dir / "hosts").write_text("127.0.0.1 localhost pb-sandbox\n::1 localhost\n")
    (etc_dir / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files\n")
    for entry in etc_dir.iterdir():
        entry.chmod(0o644)


def namespace_args(bwrap: Bwrap, mode: str) -> list[str]:
    """Namespaces and process options: no network, own pid/ipc/uts/cgroup namespaces."""
    args = [
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--hostname",
        "pb-sandbox",
        "--die-with-parent",
        "--new-session",
    ]
    if mode == "userns":
        args += ["--unshare-user", "--cap-drop", "ALL"]
        if bwrap.disable_userns:
            args.append("--disable-userns")
    return args


def command(mode: str, *, uid: int, gid: int, max_file_bytes: int, argv: list[str]) -> list[str]:
    """The command bwrap runs: the privilege drop (root mode), the file-size limit, ``argv``."""
    setpriv, prlimit = helper("setpriv"), helper("prlimit")
    limited = argv
    if prlimit is not None:
        # RLIMIT_FSIZE: no single file past the output cap (the supervisor polls the total);
        # no core dumps (their size and time are not the job's to spend).
        limited = [prlimit, f"--fsize={max_file_bytes}", "--core=0", "--", *argv]
    if mode != "root":
        return limited
    assert setpriv is not None  # probed before any job starts
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
        *limited,
    ]


def env_args(env: dict[str, str]) -> list[str]:
    """A scrubbed environment: nothing of the supervisor's, only ``env``."""
    args = ["--clearenv"]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return args


# -- seccomp: no new user namespaces ---------------------------------------------------------

# (audit arch, clone, unshare, clone3) per machine; see <linux/audit.h> and the syscall tables.
_SYSCALLS = {
    "x86_64": (0xC000003E, 56, 272, 435),
    "aarch64": (0xC00000B7, 220, 97, 435),
}
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000  # x86_64's x32 ABI: the same calls under other numbers
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _ENOSYS = 1, 38


def userns_seccomp() -> bytes | None:
    """A seccomp program (for ``bwrap --seccomp``) that refuses new user namespaces.

    In root mode the job is an ordinary uid, which the kernel still lets create a user
    namespace and hold every capability inside it: a large attack surface (most container
    escapes through kernel bugs start there). ``clone``/``unshare`` with ``CLONE_NEWUSER`` get
    EPERM; ``clone3`` (whose flags the filter cannot read) gets ENOSYS, so libc falls back to
    ``clone``; system calls of other ABIs (i386, x32) get ENOSYS. ``None`` on other machines.
    """
    known = _SYSCALLS.get(platform.machine())
    if known is None:
        return None
    arch, clone, unshare, clone3 = known

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    program = [
        op(_LD_ABS, 4),  # 0: seccomp_data.arch
        op(_JEQ, arch, 0, 9),  # 1: another ABI → 11
        op(_LD_ABS, 0),  # 2: seccomp_data.nr
        op(_JGE, _X32_BIT, 7, 0),  # 3: x32 → 11
        op(_JEQ, clone3, 6, 0),  # 4: → 11
        op(_JEQ, unshare, 1, 0),  # 5: → 7
        op(_JEQ, clone, 0, 2),  # 6: else → 9
        op(_LD_ABS, 16),  # 7: low word of args[0], the flags
        op(_JSET, _CLONE_NEWUSER, 1, 0),  # 8: → 10
        op(_RET, _ALLOW),  # 9
        op(_RET, _ERRNO | _EPERM),  # 10
        op(_RET, _ERRNO | _ENOSYS),  # 11
    ]
    return b"".join(program)
