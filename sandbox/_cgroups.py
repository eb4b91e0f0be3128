"""Per-job cgroups on cgroup v2, v1 or both, decided one controller at a time.

Hosts differ: most current ones are pure v2, older ones pure v1, and hybrid ones (this project's
development machine) have the unified v2 hierarchy mounted beside v1 hierarchies that still own
some controllers. Each of ``memory``, ``pids`` and ``cpu`` is therefore looked up on its own:
v2 when the supervisor's v2 cgroup can hand it to children, else v1 when a v1 hierarchy carries
it, else it is missing (and the backend refuses jobs unless weak isolation was allowed).

Job cgroups are made beside each other under the supervisor's own cgroup in each hierarchy, so
whatever limits the supervisor itself runs under still bound its jobs. On v2 the "no internal
processes" rule applies: a cgroup that holds processes cannot enable controllers for its
children, so when (and only when) enabling is refused, the supervisor's cgroup members are moved
into a leaf ``pb-supervisor`` first. The v2 cgroup is also used without any controller: it gives
every job an exact membership list and an atomic ``cgroup.kill``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The controllers a job is limited by.
CONTROLLERS = ("memory", "pids", "cpu")
# v1 quota period (also the v2 default): 100 ms
_CPU_PERIOD_US = 100_000
_NAME_PREFIX = "pb-"
_SUPERVISOR_LEAF = "pb-supervisor"


class CgroupError(RuntimeError):
    """A job cgroup could not be made or limited."""


@dataclass(frozen=True)
class CgroupLimits:
    """The limits of one job cgroup."""

    memory_bytes: int
    max_pids: int
    cpus: float


@dataclass(frozen=True)
class CgroupPlan:
    """Where job cgroups are made and which hierarchy carries each controller.

    ``unified``: the v2 directory job cgroups are made in (``None`` when v2 is not usable);
    ``v2``: the controllers those cgroups get; ``v1``: controller → the v1 directory its job
    cgroups are made in, for controllers v2 does not carry.
    """

    unified: Path | None = None
    v2: frozenset[str] = frozenset()
    v1: Mapping[str, Path] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def version(self, controller: str) -> str | None:
        """``"v2"``, ``"v1"`` or ``None`` (the controller is unavailable)."""
        if controller in self.v2:
            return "v2"
        if controller in self.v1:
            return "v1"
        return None

    @property
    def usable(self) -> bool:
        """Whether a job cgroup (to track and kill processes) can be made at all."""
        return self.unified is not None or bool(self.v1)


# -- finding the hierarchies ----------------------------------------------------------------


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def locate(mountinfo: str, proc_cgroup: str) -> tuple[Path | None, dict[str, Path]]:
    """The supervisor's own v2 directory and v1 directory per controller.

    ``mountinfo`` is ``/proc/self/mountinfo``, ``proc_cgroup`` is ``/proc/self/cgroup``; pure,
    so the hybrid, v1-only and v2-only layouts can be checked without such a host.
    """
    own_v2: str | None = None
    own_v1: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            own_v2 = path
        else:
            for name in controllers.split(","):
                own_v1[name] = path
    v2_dir: Path | None = None
    v1_dirs: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        root, mount_point, fstype = _unescape(fields[3]), _unescape(fields[4]), rfields[0]
        if fstype == "cgroup2" and own_v2 is not None and v2_dir is None:
            v2_dir = _inside(Path(mount_point), root, own_v2)
        elif fstype == "cgroup":
            for name in rfields[2].split(","):
                if name in CONTROLLERS and name in own_v1 and name not in v1_dirs:
                    found = _inside(Path(mount_point), root, own_v1[name])
                    if found is not None:
                        v1_dirs[name] = found
    return v2_dir, v1_dirs


def _inside(mount_point: Path, mount_root: str, own: str) -> Path | None:
    """The directory of cgroup ``own`` under a mount of the hierarchy rooted at ``mount_root``."""
    root = mount_root.rstrip("/") or "/"
    if root != "/" and own != root and not own.startswith(root + "/"):
        return None  # our cgroup is outside what this mount shows
    rel = own[len(root) :] if root != "/" else own
    return mount_point / rel.lstrip("/")


def _read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def _members(directory: Path) -> list[int]:
    try:
        return [int(x) for x in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _enable_v2(own: Path, wanted: set[str], notes: list[str]) -> tuple[Path, set[str]]:
    """Enable ``wanted`` controllers for children of ``own``; returns where job cgroups go.

    Enabling fails with EBUSY while ``own`` holds processes (the root cgroup is exempt); then
    its members move into a leaf first. Job cgroups stay children of ``own`` either way.
    """
    available = _read_words(own / "cgroup.controllers") & wanted
    missing = available - _read_words(own / "cgroup.subtree_control")
    tried_leaf = False
    for controller in sorted(missing):
        try:
            (own / "cgroup.subtree_control").write_text(f"+{controller}")
            continue
        except OSError as exc:
            error = exc
        if error.errno == errno.EBUSY and not tried_leaf:
            tried_leaf = True
            if _move_into_leaf(own, notes):
                try:
                    (own / "cgroup.subtree_control").write_text(f"+{controller}")
                    continue
                except OSError as exc:
                    error = exc
        notes.append(f"cannot enable the v2 {controller} controller in {own}: {error.strerror}")
    return own, _read_words(own / "cgroup.subtree_control") & wanted


def _move_into_leaf(own: Path, notes: list[str]) -> bool:
    """Move every process of ``own`` into ``own/pb-supervisor`` (no-internal-processes rule)."""
    leaf = own / _SUPERVISOR_LEAF
    try:
        leaf.mkdir(exist_ok=True)
        # Processes can fork while we move them: repeat until none is left behind.
        for _ in range(20):
            pids = _members(own)
            if not pids:
                notes.append(f"moved the supervisor's processes into {leaf} to delegate v2")
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    (leaf / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        notes.append(f"cannot move the supervisor into a leaf cgroup {leaf}: {exc}")
        return False
    notes.append(f"processes kept appearing in {own}; v2 controllers not delegated")
    return False


def _probe_dir(base: Path, files: list[str]) -> str | None:
    """``None`` when a child cgroup with ``files`` can be made under ``base``, else why not."""
    probe = base / f"{_NAME_PREFIX}probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"cannot create cgroups under {base}: {exc.strerror or exc}"
    try:
        missing = [f for f in files if not (probe / f).exists()]
        return f"{base} gives children no {', '.join(missing)}" if missing else None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


_LIMIT_FILE = {
    ("memory", "v2"): "memory.max",
    ("pids", "v2"): "pids.max",
    ("cpu", "v2"): "cpu.max",
    ("memory", "v1"): "memory.limit_in_bytes",
    ("pids", "v1"): "pids.max",
    ("cpu", "v1"): "cpu.cfs_quota_us",
}


def plan_cgroups(*, mountinfo: str | None = None, proc_cgroup: str | None = None) -> CgroupPlan:
    """Find (and on v2 delegate) the hierarchies job cgroups can be made in, per controller."""
    try:
        mountinfo = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
        proc_cgroup = (
            proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
        )
    except OSError as exc:
        return CgroupPlan(notes=(f"cannot read this process's cgroups: {exc}",))
    own_v2, own_v1 = locate(mountinfo, proc_cgroup)
    notes: list[str] = []
    unified: Path | None = None
    v2: set[str] = set()
    if own_v2 is not None and own_v2.is_dir():
        base, enabled = _enable_v2(own_v2, set(CONTROLLERS), notes)
        why = _probe_dir(base, ["cgroup.procs", *(_LIMIT_FILE[(c, "v2")] for c in enabled)])
        if why is None:
            unified, v2 = base, enabled
        else:
            notes.append(f"cgroup v2 unusable: {why}")
    v1: dict[str, Path] = {}
    for controller in CONTROLLERS:
        if controller in v2 or controller not in own_v1:
            continue
        why = _probe_dir(own_v1[controller], [_LIMIT_FILE[(controller, "v1")]])
        if why is None:
            v1[controller] = own_v1[controller]
        else:
            notes.append(f"cgroup v1 {controller} unusable: {why}")
    return CgroupPlan(unified=unified, v2=frozenset(v2), v1=v1, notes=tuple(notes))


def job_cgroup_name() -> str:
    """A fresh job cgroup name that carries the supervisor's pid (for the stale sweep)."""
    return f"{_NAME_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}"


def sweep_stale_cgroups(plan: CgroupPlan) -> list[Path]:
    """Remove empty job cgroups left by supervisors that died (their pid is gone)."""
    removed: list[Path] = []
    bases = {d for d in (plan.unified, *plan.v1.values()) if d is not None}
    pattern = re.compile(rf"^{_NAME_PREFIX}(\d+)-[0-9a-f]+$")
    for base in bases:
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                match = pattern.match(entry.name)
                if match is None or Path(f"/proc/{match.group(1)}").exists():
                    continue
                with contextlib.suppress(OSError):
                    entry.rmdir()  # fails while it still has members: left alone
                    removed.append(entry)
    return removed


# -- one job's cgroup ------------------------------------------------------------------------


class JobCgroup:
    """The cgroup(s) of one sandbox: one v2 directory and/or one per v1 hierarchy.

    The sandbox's first process joins every ``procs_files`` entry before it starts anything
    (see the launcher in ``sandbox._local``), so nothing of the job is ever outside them.
    """

    def __init__(self, plan: CgroupPlan, name: str, limits: CgroupLimits) -> None:
        self.v2: Path | None = None
        self.v1: dict[str, Path] = {}
        self._dirs: list[Path] = []
        try:
            if plan.unified is not None:
                self.v2 = plan.unified / name
                self._make(self.v2)
                for controller in sorted(plan.v2):
                    _write_limit(self.v2, controller, "v2", limits)
            for controller, base in sorted(plan.v1.items()):
                directory = base / name
                if directory not in self._dirs:  # co-mounted controllers share one directory
                    self._make(directory)
                self.v1[controller] = directory
                _write_limit(directory, controller, "v1", limits)
        except OSError as exc:
            self.remove()  # no half-made cgroups left behind
            raise CgroupError(f"cannot set up the job's cgroup {name}: {exc}") from exc

    def _make(self, directory: Path) -> None:
        directory.mkdir()
        self._dirs.append(directory)

    @property
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a process writes its pid to, to join this cgroup."""
        return [d / "cgroup.procs" for d in self._dirs]

    def members(self) -> set[int]:
        """Every process in the cgroup (any hierarchy)."""
        found: set[int] = set()
        for d in self._dirs:
            found.update(_members(d))
        return found

    def kill(self, timeout_s: float = 10.0) -> bool:
        """SIGKILL every process; ``True`` once none is left (v2: ``cgroup.kill``)."""
        if self.v2 is not None:
            with contextlib.suppress(OSError):
                (self.v2 / "cgroup.kill").write_text("1")
        # v1 (and v2 kernels before 5.14) have no atomic kill: repeat until the group is empty;
        # a fork bomb cannot outrun it for long because its process count is bounded.
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.members()
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def oom_kills(self) -> int:
        """How many processes the cgroup's memory limit killed."""
        if self.v2 is not None and (self.v2 / "memory.events").exists():
            return _keyed(self.v2 / "memory.events", "oom_kill")
        if "memory" in self.v1:
            return _keyed(self.v1["memory"] / "memory.oom_control", "oom_kill")
        return 0

    def peak_memory_mb(self) -> float | None:
        """The largest memory use seen (``None`` where the kernel does not track it)."""
        candidates = []
        if self.v2 is not None:
            candidates.append(self.v2 / "memory.peak")
        if "memory" in self.v1:
            candidates.append(self.v1["memory"] / "memory.max_usage_in_bytes")
        for path in candidates:
            with contextlib.suppress(OSError, ValueError):
                return int(path.read_text().strip()) / 2**20
        return None

    def forks_refused(self) -> int:
        """How many forks the process limit refused."""
        for directory in (self.v2, self.v1.get("pids")):
            if directory is not None and (directory / "pids.events").exists():
                return _keyed(directory / "pids.events", "max")
        return 0

    def remove(self) -> None:
        """Kill what is left and remove the directories."""
        self.kill()
        for d in reversed(self._dirs):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # still populated for a moment after the last process died
                    time.sleep(0.02)


def _keyed(path: Path, key: str) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


def _write_limit(directory: Path, controller: str, version: str, limits: CgroupLimits) -> None:
    if controller == "memory":
        value = str(limits.memory_bytes)
        (directory / _LIMIT_FILE[(controller, version)]).write_text(value)
        # No swap: the limit must mean memory, and a swapping job would only get slow.
        swap = "memory.swap.max" if version == "v2" else "memory.memsw.limit_in_bytes"
        with contextlib.suppress(OSError):
            (directory / swap).write_text("0" if version == "v2" else value)
        if version == "v2":
            # An OOM kills the whole job, not one rank of a DDP run left hanging.
            with contextlib.suppress(OSError):
                (directory / "memory.oom.group").write_text("1")
    elif controller == "pids":
        (directory / "pids.max").write_text(str(limits.max_pids))
    elif controller == "cpu":
        quota = max(1000, int(limits.cpus * _CPU_PERIOD_US))
        if version == "v2":
            (directory / "cpu.max").write_text(f"{quota} {_CPU_PERIOD_US}")
        else:
            (directory / "cpu.cfs_period_us").write_text(str(_CPU_PERIOD_US))
            (directory / "cpu.cfs_quota_us").write_text(str(quota))
