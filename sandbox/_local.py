"""The local backend: every job, and every worker of a job, in its own bubblewrap sandbox.

Each sandbox runs as an unprivileged uid with no capabilities (see ``sandbox._bwrap`` for the
root and user-namespace modes), sees only a minimal filesystem view, has no network, cannot
create user namespaces (a seccomp filter), and lives in cgroups it joins before it starts (``sandbox._cgroups``: memory, process count and CPU, on v2
or v1 per controller). The supervisor adds the wall-time limit, the output-size limit (it polls
the output directory; ``RLIMIT_FSIZE`` bounds any single file) and writes the log itself.

What a job sees::

    /usr, /bin → usr/bin, /lib → usr/lib, …   read-only (as on the host)
    <the Python runtime's prefixes>           read-only, at their host paths
    /etc/{passwd,group,hosts,nsswitch.conf}   synthetic; /etc/ld.so.cache, /etc/alternatives
    /proc (fresh), /dev (minimal)             + /dev/nvidia* and parts of /sys for GPU jobs
    /tmp, /dev/shm                            private tmpfs, size-capped
    /pb/code                                  a fresh copy of the codebase (+ job.files), read-only
    /pb/data/<input>                          each granted input, read-only
    /pb/needs/<label>                         each needed job's outputs, read-only
    /pb/workers/<i>                           worker i's socket directory, read-only
    /pb/compile-cache                         the shared compile cache, read-only (if granted)
    /pb/out                                   the job's output directory, the one writable place

A job that cannot be isolated or limited does not start (``infra_error``) unless the backend
was built with ``allow_weak_isolation=True``; ``describe()`` then says what held.

Infrastructure failure is what the supervisor observed, never what the job says: bwrap's
``--json-status-fd`` reports ``exit-code`` only once the sandbox was set up and its command
executed. With it, every exit status, signal, OOM kill and printed text is the job's outcome.
Without it, the sandbox never started (``infra_error``), unless the supervisor itself ended the
job (time, output size) or the job's own memory limit did.

How far this was tested (tests/integration/test_sandbox_local.py, test_sandbox_cgroup_v2.py):
root mode on a hybrid cgroup v1 host (memory, pids and cpu on v1; membership and kill through
the v2 hierarchy; v2 delegation with a real leaf move); user-namespace mode as uid 65534 on the
same host (no cgroups there, so weak); limits through v2 controllers only where a host has them
there (CI). GPU jobs (device binds, driver libraries, sysfs for NCCL) were not run on a GPU.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sandbox._backend import (
    IN_SANDBOX,
    INPUT_VARIABLES,
    Backend,
    BackendError,
    GpuPool,
    Job,
    JobOutcome,
    LineCallback,
    cancelled_outcome,
    job_environment,
    sandboxed_job_environment,
    sandboxed_worker_environment,
    worker_environment,
)
from sandbox._bwrap import (
    Bwrap,
    base_view,
    command,
    env_args,
    find_bwrap,
    helper,
    namespace_args,
    runtime_roots,
    userns_seccomp,
    write_etc,
)
from sandbox._cgroups import (
    CONTROLLERS,
    CgroupError,
    CgroupLimits,
    CgroupPlan,
    JobCgroup,
    job_cgroup_name,
    plan_cgroups,
    sweep_stale_cgroups,
)
from sandbox._workdir import hand_back_outputs, make_copy, tree_usage

log = logging.getLogger(__name__)

# A log larger than this is truncated: a submission printing without end must not fill the disk.
_MAX_LOG_BYTES = 64 * 1024 * 1024
# A line longer than this is passed on in pieces (the supervisor's memory is not the job's).
_MAX_LINE_BYTES = 1 << 20
# Worker socket directories are for sockets; anything big there is a misuse of the host disk.
_MAX_WORKER_DIR_BYTES = 64 * 1024 * 1024
_POLL_S = 0.5
#: Sandbox uids are taken from here (one per running sandbox, job or worker); the range is
#: unused by distributions and by systemd's container ranges.
DEFAULT_UID_BASE = 0x70000000
_UID_COUNT = 65536
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# The launcher joins the cgroups, then becomes the sandbox: `bash -c` with positional args
# umask, status fd, plain mode, address-space lift, cgroup.procs files…, --, the command. It is
# the harness's code and runs before any of the job's. In plain (weak) mode it reports that it
# reached exec on the status fd itself and closes that fd, so the job never holds it. For a GPU
# job it lifts an address-space limit (`ulimit -v`) the supervisor may have inherited: CUDA
# reserves terabytes of virtual address space and fails to initialise under one.
_LAUNCHER = r"""
umask "$1"; status_fd="$2"; plain="$3"; lift_as="$4"; shift 4
if [ "$lift_as" = 1 ]; then
    ulimit -S -v unlimited 2>/dev/null || { echo "pb-sandbox: cannot lift ulimit -v" >&2; exit 125; }
fi
while [ "$1" != -- ]; do
    echo $$ 2>/dev/null > "$1" || { echo "pb-sandbox: cannot join cgroup $1" >&2; exit 125; }
    shift
done
shift
if [ "$plain" = 1 ]; then
    printf '{ "child-pid": %s }\n{ "exit-code": null }\n' $$ >&"$status_fd"
    exec {status_fd}>&-
fi
exec "$@"
"""


@dataclass(frozen=True)
class JobLimits:
    """The limits of one sandbox (a job, or one of its workers)."""

    memory_mb: int
    max_processes: int
    cpus: float
    tmp_mb: int
    shm_mb: int
    max_output_mb: int


@dataclass(frozen=True)
class HostSupport:
    """What this host gives the local backend, probed once per process."""

    bwrap: Bwrap | None
    mode: str  # "root" (setpriv to a sandbox uid) or "userns" (the invoking uid)
    sandbox_error: str | None  # why bwrap cannot run a sandbox here (None: it can)
    cgroups: CgroupPlan
    prlimit: bool

    def missing(self) -> list[str]:
        """The guarantees this host cannot give, each with what to do about it."""
        out: list[str] = []
        if self.bwrap is None:
            out.append("bubblewrap is not installed; install it (apt-get install bubblewrap)")
        elif self.sandbox_error is not None:
            out.append(f"bubblewrap cannot create a sandbox here: {self.sandbox_error}")
        for controller in CONTROLLERS:
            if self.cgroups.version(controller) is None:
                out.append(
                    f"no {controller} cgroup (v2 or v1) can be made here"
                    + (
                        ""
                        if os.geteuid() == 0
                        else "; run as root or in a delegated cgroup "
                        "(systemd-run --user --scope -p Delegate=yes …)"
                    )
                )
        if not self.prlimit:
            out.append("prlimit (util-linux) is missing: no per-file size limit")
        return out


_HOST: HostSupport | None = None
_HOST_LOCK = threading.Lock()


def probe_host(refresh: bool = False) -> HostSupport:
    """Find out (once per process) what isolation this host gives: bubblewrap and its mode,
    and which cgroup hierarchy carries each controller."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is not None and not refresh:
            return _HOST
        bwrap = find_bwrap()
        mode = "root" if os.geteuid() == 0 else "userns"
        error: str | None = None
        if bwrap is not None:
            error = _try_sandbox(bwrap, mode)
        plan = plan_cgroups()
        _HOST = HostSupport(bwrap, mode, error, plan, helper("prlimit") is not None)
        for note in plan.notes:
            log.info("local sandbox: %s", note)
        return _HOST


def _try_sandbox(bwrap: Bwrap, mode: str) -> str | None:
    """Run ``true`` in the kind of sandbox jobs get; ``None`` when that works, else bwrap's error."""
    if mode == "root" and helper("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    true = helper("true") or "/usr/bin/true"
    argv = [
        bwrap.path,
        *namespace_args(bwrap, mode),
        "--ro-bind", "/usr", "/usr",
        *_system_links_args(),
        "--proc", "/proc", "--dev", "/dev",
        "--",
        *command(mode, uid=DEFAULT_UID_BASE, gid=DEFAULT_UID_BASE, max_file_bytes=1 << 20,
                 argv=[true]),
    ]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if proc.returncode != 0:
        return (
            proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        )
    return None


def _system_links_args() -> list[str]:
    args: list[str] = []
    for name in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    return args


class _UidPool:
    """Sandbox uids, one per running sandbox, so that sandboxes share no uid-keyed state
    (signals, keyrings, process-count rlimits, files) with each other or with the host."""

    def __init__(self, base: int) -> None:
        self.base = base
        self._used: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            for _ in range(_UID_COUNT):
                uid = self.base + self._next
                self._next = (self._next + 1) % _UID_COUNT
                if uid not in self._used:
                    self._used.add(uid)
                    return uid
        raise RuntimeError("no free sandbox uid")

    def give(self, uid: int) -> None:
        with self._lock:
            self._used.discard(uid)


_UID_POOLS: dict[int, _UidPool] = {}
_UID_POOLS_LOCK = threading.Lock()


def _uid_pool(base: int) -> _UidPool:
    with _UID_POOLS_LOCK:
        return _UID_POOLS.setdefault(base, _UidPool(base))


def _visible_gpus() -> list[tuple[str, str]]:
    """(index, name) of the GPUs ``nvidia-smi`` sees; empty without one."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(",", 1) for line in out.splitlines() if "," in line]
    return [(i.strip(), n.strip()) for i, n in rows]


# -- one running sandbox -----------------------------------------------------------------------


@dataclass
class _Process:
    """A launched sandbox: its process, status pipe, log pump and cgroup."""

    name: str
    proc: subprocess.Popen[bytes]
    status_fd: int
    cgroup: JobCgroup | None
    pump: threading.Thread
    tail: collections.deque[bytes]
    log_error: list[OSError] = field(default_factory=list)
    killed: bool = False
    status: dict[str, int | None] = field(default_factory=dict)

    def kill(self) -> None:
        """Kill everything of the sandbox (its cgroup, and bwrap, whose death ends the rest)."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()

    def finish(self) -> None:
        """Wait for the process and its log, then read bwrap's status reports."""
        self.proc.wait()
        self.pump.join(timeout=10)
        self.status = _read_status(self.status_fd)
        os.close(self.status_fd)

    def tail_text(self) -> str:
        text = b"".join(self.tail).decode("utf-8", "replace").strip()
        return text[-1500:]


def _read_status(fd: int) -> dict[str, int | None]:
    """bwrap's JSON status documents (``child-pid``, then ``exit-code``), merged."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    merged: dict[str, int | None] = {}
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, AttributeError):
            for key, value in json.loads(line).items():
                if key in ("child-pid", "exit-code"):
                    merged[key] = value if isinstance(value, int) else None
    return merged


def _pump(
    stream: IO[bytes],
    log_file: IO[bytes],
    tail: collections.deque[bytes],
    errors: list[OSError],
    on_line: LineCallback | None,
) -> None:
    """Copy the sandbox's output to its log (capped) and to ``on_line``, line by line."""
    written = 0
    pending = b""
    fd = stream.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        tail.append(chunk)
        if written < _MAX_LOG_BYTES and not errors:
            try:
                log_file.write(chunk)
                log_file.flush()
                written += len(chunk)
                if written >= _MAX_LOG_BYTES:
                    log_file.write(b"\n[log truncated by the sandbox]\n")
                    log_file.flush()
            except OSError as exc:
                errors.append(exc)
        if on_line is None:
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > _MAX_LINE_BYTES:
            lines.append(pending)
            pending = b""
        for raw in lines:
            with contextlib.suppress(Exception):
                on_line(raw.decode("utf-8", "replace").rstrip("\r"))
    if pending and on_line is not None:
        with contextlib.suppress(Exception):
            on_line(pending.decode("utf-8", "replace").rstrip("\r"))


_LOCK_FILE = ".pb-sandbox.lock"


def _lock_work_dir(work: Path) -> IO[bytes]:
    fh = (work / _LOCK_FILE).open("wb")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def sweep_stale_work_dirs(root: Path) -> list[Path]:
    """Remove work dirs of local jobs whose supervising process died without cleaning up
    (killed by SIGKILL, a lost machine): their lock file is no longer held by anyone.
    """
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for lock_path in root.glob(f"pb-*/{_LOCK_FILE}"):
            try:
                with lock_path.open("rb") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    shutil.rmtree(lock_path.parent, ignore_errors=True)
                    removed.append(lock_path.parent)
            except OSError:  # held: a job is running there
                continue
    return removed


def address_space_refusal(limit: tuple[int, int]) -> str | None:
    """Why a GPU job cannot start under this (soft, hard) ``RLIMIT_AS``, or None. A soft limit
    the launcher lifts; a hard one it cannot, and CUDA fails to initialise under it."""
    hard = limit[1]
    if hard == resource.RLIM_INFINITY:
        return None
    return (
        f"the harness runs under a hard address-space limit (ulimit -v {hard // 1024} KiB) that "
        "a GPU job cannot lift; CUDA does not start under one: run the runner without it"
    )


class _Refused(Exception):
    """A job that must not start; its message is the infrastructure reason."""


# -- the backend -------------------------------------------------------------------------------


class LocalBackend(Backend):
    """Runs each job in a bubblewrap sandbox on this machine (the default backend).

    Limits per job kind. CPU jobs: ``memory_limit_mb`` (8 GiB), ``max_processes`` (1024),
    ``cpus`` (default: this machine's CPUs shared by ``parallel_cpu_jobs``), ``tmp_mb`` (4 GiB)
    and ``shm_mb`` (1 GiB) for the private ``/tmp`` and ``/dev/shm``.

    GPU jobs (``job.gpus > 0``) are sized for 2-rank torchrun DDP with torch.compile:
    ``gpu_memory_limit_mb`` is *per GPU* (32 GiB, so 64 GiB for two ranks): each rank holds
    4–6 GiB of host memory (CUDA context, torch, pinned buffers, the data memmap's pages),
    inductor's compile pool adds up to one worker process per CPU per rank at 0.3–0.6 GiB each
    (about 16 GiB for two ranks on 16 CPUs), rank 0 copies the checkpoint to host memory to save
    it (1.4 GiB for GPT-2 Medium), and /tmp and /dev/shm, being tmpfs, count too.
    ``gpu_max_processes`` (8192) counts threads: each rank runs OpenMP, CUDA and NCCL threads
    and its compile workers run their own (~400 per rank), plus torchrun and gcc while Triton
    compiles; 8192 leaves room for that several times over and still bounds a fork bomb.
    ``gpu_shm_mb`` (8 GiB, as the Docker backend) is for NCCL's shared-memory transport and
    DataLoader workers; Docker's default 64 MiB is too small for either. ``gpu_tmp_mb`` (16 GiB)
    holds the inductor and Triton caches. A GPU job gets its share of the CPUs. A GPU job never
    runs under an address-space limit (``ulimit -v``): CUDA fails to initialise under one, so the
    launcher lifts a soft limit the supervisor inherited, and a hard one refuses the job
    (`address_space_refusal`). The GPU numbers are the Docker backend's `GPU_JOB_LIMITS`; the
    table with the reasons is in docs/SECURITY.md ("Limits per job kind").

    ``max_output_mb`` (16 GiB) caps what a job may leave in its output directory. Each worker of
    a job gets the job's limits in a cgroup of its own.

    Without bubblewrap or a cgroup controller, jobs fail to start with an infrastructure error
    naming what is missing, unless ``allow_weak_isolation``: they then run with what the host
    gives (without bubblewrap: a plain subprocess that sees the host), and ``describe()`` — part
    of every result — says exactly what held. ``host`` replaces the probed `HostSupport` (to
    behave as a host that gives less would).
    """

    name = "local"

    def __init__(
        self,
        *,
        memory_limit_mb: int = 8192,
        max_processes: int = 1024,
        cpus: float | None = None,
        tmp_mb: int = 4096,
        shm_mb: int = 1024,
        gpu_memory_limit_mb: int = 32768,
        gpu_max_processes: int = 8192,
        gpu_tmp_mb: int = 16384,
        gpu_shm_mb: int = 8192,
        max_output_mb: int = 16384,
        parallel_cpu_jobs: int = 1,
        allow_weak_isolation: bool = False,
        tmp_root: Path | None = None,
        python: str | None = None,
        uid_base: int = DEFAULT_UID_BASE,
        host: HostSupport | None = None,
    ) -> None:
        self.host = host or probe_host()
        self.allow_weak_isolation = allow_weak_isolation
        self.cpu_slots = max(1, parallel_cpu_jobs)
        machine_cpus = len(os.sched_getaffinity(0)) or 1
        self._cpu_limits = JobLimits(
            memory_mb=memory_limit_mb,
            max_processes=max_processes,
            cpus=cpus if cpus is not None else max(1.0, machine_cpus / self.cpu_slots),
            tmp_mb=tmp_mb,
            shm_mb=shm_mb,
            max_output_mb=max_output_mb,
        )
        self._gpu_limits = JobLimits(
            memory_mb=gpu_memory_limit_mb,
            max_processes=gpu_max_processes,
            cpus=float(machine_cpus),
            tmp_mb=gpu_tmp_mb,
            shm_mb=gpu_shm_mb,
            max_output_mb=max_output_mb,
        )
        self.tmp_root = tmp_root
        self.python = python or sys.executable
        self._bin_dir = str(Path(self.python).parent)
        self._runtime = runtime_roots(self.python) if self.host.bwrap else []
        self._uids = _uid_pool(uid_base)
        self._gpus = _visible_gpus()
        self.gpu_capacity = len(self._gpus)
        self._gpu_pool = GpuPool([i for i, _ in self._gpus])
        self._lock = threading.Lock()
        self._running: dict[int, _Process] = {}
        self._cancelled = False
        self._missing = self.host.missing()
        if self._missing:
            level = "runs weakened" if allow_weak_isolation else "refuses jobs"
            for why in self._missing:
                log.warning("local sandbox %s: %s", level, why)
        sweep_stale_work_dirs(Path(tmp_root or tempfile.gettempdir()))
        sweep_stale_cgroups(self.host.cgroups)

    # -- what holds ----------------------------------------------------------------------------
    def limits_for(self, job: Job) -> JobLimits:
        """The limits of ``job`` (and of each of its workers), by job kind; the output cap is
        the smaller of the backend's and the executor's (``job.max_output_mb``)."""
        if job.gpus <= 0:
            limits = self._cpu_limits
        else:
            g = self._gpu_limits
            share = g.cpus * job.gpus / max(1, self.gpu_capacity)
            limits = JobLimits(
                memory_mb=g.memory_mb * job.gpus,
                max_processes=g.max_processes,
                cpus=max(1.0, min(g.cpus, share)),
                tmp_mb=g.tmp_mb,
                shm_mb=g.shm_mb,
                max_output_mb=g.max_output_mb,
            )
        if job.max_output_mb is not None and job.max_output_mb < limits.max_output_mb:
            limits = dataclasses.replace(limits, max_output_mb=max(1, job.max_output_mb))
        return limits

    @property
    def sandboxed(self) -> bool:
        """Whether jobs run under bubblewrap (else: plain subprocesses, weak mode only)."""
        return self.host.bwrap is not None and self.host.sandbox_error is None

    def describe(self) -> dict[str, str]:
        host, cpu, gpu = self.host, self._cpu_limits, self._gpu_limits

        def limit(controller: str, text: str) -> str:
            version = host.cgroups.version(controller)
            return f"cgroup {version}: {text}" if version else "none"

        if self.sandboxed:
            assert host.bwrap is not None
            user = (
                f"a uid of its own from {self._uids.base}, no capabilities, no_new_privs"
                if host.mode == "root"
                else f"the invoking uid {os.getuid()} in a user namespace, no capabilities"
            )
            isolation = f"bubblewrap {host.bwrap.version} ({host.mode} mode)"
            view, network = "minimal (runtime, code, granted inputs, /pb/out)", "none (loopback)"
            userns = "refused (seccomp)" if userns_seccomp() is not None else "allowed"
            if host.mode == "userns" and host.bwrap.disable_userns:
                userns = "refused (seccomp, --disable-userns)"
        else:
            user = f"the supervisor's own uid {os.getuid()}"
            isolation, view, network = "none (plain subprocess)", "the whole host", "host network"
            userns = "allowed"
        return {
            "backend": self.name,
            "isolation": isolation,
            "user": user,
            "filesystem": view,
            "network": network,
            "user_namespaces": userns,
            "memory": limit("memory", f"{cpu.memory_mb} MiB (GPU jobs {gpu.memory_mb} per GPU)"),
            "processes": limit("pids", f"{cpu.max_processes} (GPU jobs {gpu.max_processes})"),
            "cpu": limit("cpu", f"{cpu.cpus:g} CPUs (GPU jobs their share)"),
            "output": f"{cpu.max_output_mb} MiB (polled)"
            + (" + RLIMIT_FSIZE" if host.prlimit else ""),
            "wall_time": "enforced by the supervisor",
            "weak": "; ".join(self._missing) if self._missing else "no",
        }

    # -- GPUs ----------------------------------------------------------------------------------
    # -- lifecycle -----------------------------------------------------------------------------
    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            running = list(self._running.values())
        for process in running:
            process.kill()

    # -- one job -------------------------------------------------------------------------------
    def run_job(self, job: Job, on_line: LineCallback | None = None) -> JobOutcome:
        start = time.monotonic()
        if self._cancelled:  # one flag, written under the lock by cancel()
            return cancelled_outcome()
        if self._missing and not self.allow_weak_isolation:
            why = "; ".join(self._missing)
            return JobOutcome(
                None,
                0.0,
                infra_error=f"cannot isolate the job: {why}; or allow weaker isolation "
                "explicitly (LocalBackend(allow_weak_isolation=True))",
            )
        run = _JobRun(self, job, on_line, start)
        try:
            return run.execute()
        except _Refused as exc:
            return JobOutcome(None, time.monotonic() - start, infra_error=str(exc))
        except Exception as exc:  # the supervisor's own failure, never the job's
            log.exception("local sandbox: supervising %s (seed %s) failed", job.label, job.seed)
            return JobOutcome(
                None, time.monotonic() - start, infra_error=f"sandbox supervisor error: {exc}"
            )
        finally:
            run.cleanup()

    def _register(self, process: _Process) -> None:
        with self._lock:
            self._running[id(process)] = process
            cancelled = self._cancelled
        if cancelled:
            process.kill()

    def _unregister(self, process: _Process) -> None:
        with self._lock:
            self._running.pop(id(process), None)

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled


@dataclass
class _Sandbox:
    """One sandbox to launch: its command, where it writes, and who it runs as."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    umask: str
    log_path: Path
    cgroup: JobCgroup | None


class _JobRun:
    """Everything of one ``run_job`` call; ``cleanup`` undoes what ``execute`` made."""

    def __init__(
        self, backend: LocalBackend, job: Job, on_line: LineCallback | None, start: float
    ) -> None:
        self.b = backend
        self.job = job
        self.on_line = on_line
        self.start = start
        self.limits = backend.limits_for(job)
        self.work: Path | None = None
        self._lock_fh: IO[bytes] | None = None
        self.uids: list[int] = []
        self.gpus: list[str] = []
        self.cgroups: list[JobCgroup] = []
        self.processes: list[_Process] = []
        self.notes: list[str] = []
        self.chowned_out = False

    # -- preparing -----------------------------------------------------------------------------
    def _uid(self) -> int:
        if not (self.b.sandboxed and self.b.host.mode == "root"):
            return os.getuid()
        uid = self.b._uids.take()
        self.uids.append(uid)
        return uid

    def _cgroup(self) -> JobCgroup | None:
        plan = self.b.host.cgroups
        if not plan.usable:
            return None
        limits = CgroupLimits(
            memory_bytes=self.limits.memory_mb * 2**20,
            max_pids=self.limits.max_processes,
            cpus=self.limits.cpus,
        )
        try:
            cgroup = JobCgroup(plan, job_cgroup_name(), limits)
        except CgroupError as exc:
            raise _Refused(str(exc)) from exc
        self.cgroups.append(cgroup)
        return cgroup

    def execute(self) -> JobOutcome:
        job, b = self.job, self.b
        for name in job.inputs:
            if name not in INPUT_VARIABLES:
                raise _Refused(f"unknown data input {name!r}")
        for label in job.needs:
            if not _SAFE_LABEL.match(label):
                raise _Refused(f"job label {label!r} cannot name a directory")
        try:
            self.work = Path(
                tempfile.mkdtemp(prefix=f"pb-{job.label}-s{job.seed}-", dir=b.tmp_root)
            )
            # Held while the job runs; the kernel drops it when this process dies in any way,
            # which tells a later sweep that the directory is stale.
            self._lock_fh = _lock_work_dir(self.work)
            code = make_copy(job.codebase_dir, job.files, self.work / "code")
            _readable_tree(code)
            job.out_dir.mkdir(parents=True, exist_ok=True)
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _Refused(f"cannot prepare the job: {exc}") from exc
        if job.gpus > 0:
            why = address_space_refusal(resource.getrlimit(resource.RLIMIT_AS))
            if why:
                raise _Refused(why)
        try:
            self.gpus = b._gpu_pool.take(job.gpus)
        except BackendError as exc:
            raise _Refused(str(exc)) from exc
        job_uid = self._uid()
        workers = self._start_workers(job_uid) if job.workers else []
        sandbox = self._job_sandbox(code, job_uid, workers)
        process = self._launch(sandbox, self.on_line)
        outcome = self._supervise(process, workers)
        return outcome

    def _gpu_env(self, env: dict[str, str]) -> None:
        if self.job.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
            env.setdefault("PB_NPROC", str(self.job.gpus))

    def _path_var(self) -> str:
        return os.pathsep.join([self.b._bin_dir, "/usr/local/bin", "/usr/bin", "/bin"])

    def _job_sandbox(self, code: Path, uid: int, workers: list[Path]) -> _Sandbox:
        job, b = self.job, self.b
        assert self.work is not None
        cgroup = self._cgroup()
        if b.sandboxed:
            env = sandboxed_job_environment(
                job, path=self._path_var(), home=IN_SANDBOX.tmp, host_env=dict(os.environ)
            )
            self._gpu_env(env)
            if b.host.mode == "root":
                os.chown(job.out_dir, uid, uid)
                self.chowned_out = True
            os.chmod(job.out_dir, 0o755)
            binds: list[tuple[Path, str, bool]] = [(job.out_dir, IN_SANDBOX.out, True)]
            binds += [(p, f"{IN_SANDBOX.data}/{n}", False) for n, p in sorted(job.inputs.items())]
            binds += [(p, f"{IN_SANDBOX.needs}/{n}", False) for n, p in sorted(job.needs.items())]
            binds += [(d, f"{IN_SANDBOX.workers}/{i}", False) for i, d in enumerate(workers)]
            if job.compile_cache is not None:
                binds.append((job.compile_cache.path, IN_SANDBOX.compile_cache, False))
            argv = self._bwrap_argv("job", code, uid, binds, env, job.script)
            return _Sandbox("job", argv, env, "/", "0022", job.log_path, cgroup)
        # weak: a plain subprocess that sees the host; paths are host paths
        needs_dir = self.work / "needs"
        for label, path in job.needs.items():
            needs_dir.mkdir(exist_ok=True)
            (needs_dir / label).symlink_to(path.resolve())
        workers_dir = self.work / "workers"
        for i, directory in enumerate(workers):
            workers_dir.mkdir(exist_ok=True)
            (workers_dir / str(i)).symlink_to(directory)
        (self.work / "tmp").mkdir()
        env = job_environment(
            job,
            path=self._path_var(),
            home=str(self.work / "tmp"),
            tmpdir=str(self.work / "tmp"),
            out_dir=str(job.out_dir.resolve()),
            inputs={name: str(path.resolve()) for name, path in job.inputs.items()},
            needs_dir=str(needs_dir) if job.needs else None,
            workers_dir=str(workers_dir) if job.workers else None,
            host_env=dict(os.environ),
            compile_cache_dir=str(job.compile_cache.path) if job.compile_cache else None,
        )
        self._gpu_env(env)
        return _Sandbox(
            "job", self._plain_argv(job.script), env, str(code), "0022", job.log_path, cgroup
        )

    def _bwrap_argv(
        self,
        name: str,
        code: Path,
        uid: int,
        binds: list[tuple[Path, str, bool]],
        env: dict[str, str],
        script: str,
        extra_groups: dict[str, int] | None = None,
    ) -> list[str]:
        host, limits = self.b.host, self.limits
        assert host.bwrap is not None and self.work is not None
        etc = self.work / f"etc-{name}"
        write_etc(etc, uid, uid, extra_groups)
        view = base_view(
            host.bwrap,
            runtime=self.b._runtime,
            etc_dir=etc,
            tmp_bytes=limits.tmp_mb * 2**20,
            shm_bytes=limits.shm_mb * 2**20,
            gpu=self.job.gpus > 0,
        )
        view.bind(code, IN_SANDBOX.code)
        for src, dest, writable in binds:
            view.bind(src, dest, writable=writable)
        bash = helper("bash") or "/bin/bash"
        inner = command(
            host.mode,
            uid=uid,
            gid=uid,
            max_file_bytes=limits.max_output_mb * 2**20,
            argv=[bash, script],
        )
        return [
            host.bwrap.path,
            *namespace_args(host.bwrap, host.mode),
            *view.args,
            *env_args(env),
            "--chdir",
            IN_SANDBOX.code,
            "--",
            *inner,
        ]

    def _plain_argv(self, script: str) -> list[str]:
        bash = helper("bash") or "/bin/bash"
        prlimit = helper("prlimit")
        if prlimit is None:
            return [bash, script]
        size = self.limits.max_output_mb * 2**20
        return [prlimit, f"--fsize={size}", "--core=0", "--", bash, script]

    def _start_workers(self, job_uid: int) -> list[Path]:
        """Start every worker, each in a sandbox and cgroup of its own; their socket dirs."""
        job, b = self.job, self.b
        assert job.workers is not None and self.work is not None
        original = make_copy(job.codebase_dir, {}, self.work / "original")
        _readable_tree(original)
        dirs: list[Path] = []
        for i in range(job.workers.count):
            directory = self.work / "workers" / str(i)
            directory.mkdir(parents=True)
            uid = self._uid()
            if b.sandboxed:
                if b.host.mode == "root":
                    # The socket dir is the worker's; its group is the job's, set-gid, so the
                    # sockets the worker makes (umask 007) accept the job and nobody else.
                    os.chown(directory, uid, job_uid)
                    os.chmod(directory, 0o2770)
                env = sandboxed_worker_environment(
                    job, i, path=self._path_var(), host_env=dict(os.environ)
                )
                self._gpu_env(env)
                binds = [(directory, IN_SANDBOX.worker, True)]
                binds += [
                    (p, f"{IN_SANDBOX.needs}/{n}", False) for n, p in sorted(job.needs.items())
                ]
                argv = self._bwrap_argv(
                    f"worker-{i}", original, uid, binds, env, job.workers.script,
                    extra_groups={"pb-job": job_uid},
                )  # fmt: skip
                cwd = "/"
            else:
                (self.work / f"tmp-worker-{i}").mkdir()
                env = worker_environment(
                    job,
                    i,
                    path=self._path_var(),
                    tmpdir=str(self.work / f"tmp-worker-{i}"),
                    worker_dir=str(directory),
                    needs_dir=None,
                    host_env=dict(os.environ),
                )
                self._gpu_env(env)
                argv, cwd = self._plain_argv(job.workers.script), str(original)
            sandbox = _Sandbox(
                f"worker-{i}", argv, env, cwd, "0007", job.worker_log(i), self._cgroup()
            )
            self._launch(sandbox, None)
            dirs.append(directory)
        return dirs

    # -- running -------------------------------------------------------------------------------
    def _launch(self, sandbox: _Sandbox, on_line: LineCallback | None) -> _Process:
        read_fd, write_fd = os.pipe()
        plain = not self.b.sandboxed
        procs = [str(p) for p in sandbox.cgroup.procs_files] if sandbox.cgroup else []
        argv = list(sandbox.argv)
        passed = [write_fd]
        if not plain:
            argv[1:1] = ["--json-status-fd", str(write_fd)]
            program = userns_seccomp()
            if program is not None:
                # bwrap reads the filter from this fd and closes it before the job runs
                seccomp_fd = os.memfd_create("pb-seccomp")
                os.write(seccomp_fd, program)
                os.lseek(seccomp_fd, 0, os.SEEK_SET)
                passed.append(seccomp_fd)
                argv[1:1] = ["--seccomp", str(seccomp_fd)]
        launcher = [
            helper("bash") or "/bin/bash",
            "-c",
            _LAUNCHER,
            "pb-launch",
            sandbox.umask,
            str(write_fd),
            "1" if plain else "0",
            "1" if self.job.gpus > 0 else "0",
            *procs,
            "--",
            *argv,
        ]
        try:
            log_file = sandbox.log_path.open("ab")
        except OSError as exc:
            os.close(read_fd)
            for fd in passed:
                os.close(fd)
            raise _Refused(f"cannot open the log {sandbox.log_path}: {exc.strerror}") from exc
        try:
            # bwrap clears the environment itself; the launcher needs none of the supervisor's.
            proc = subprocess.Popen(
                launcher,
                cwd=sandbox.cwd,
                env=sandbox.env if plain else {"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(passed),
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            os.close(read_fd)
            raise _Refused(f"cannot start the sandbox: {exc}") from exc
        finally:
            for fd in passed:
                os.close(fd)
        assert proc.stdout is not None
        tail: collections.deque[bytes] = collections.deque(maxlen=8)
        errors: list[OSError] = []

        def pump() -> None:
            try:
                _pump(proc.stdout, log_file, tail, errors, on_line)  # type: ignore[arg-type]
            finally:
                log_file.close()

        thread = threading.Thread(target=pump, name=f"log-{self.job.label}-{sandbox.name}")
        thread.daemon = True
        process = _Process(
            sandbox.name, proc, read_fd, sandbox.cgroup, thread, tail, log_error=errors
        )
        thread.start()
        self.processes.append(process)
        self.b._register(process)
        return process

    def _supervise(self, process: _Process, workers: list[Path]) -> JobOutcome:
        job, limits = self.job, self.limits
        deadline = time.monotonic() + job.time_limit_s
        max_out = limits.max_output_mb * 2**20
        max_entries = 100_000
        timed_out, limit = False, None
        while process.proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(timeout=min(_POLL_S, remaining))
                break
            if self.b.cancelled:
                break
            size, entries = tree_usage(job.out_dir, max_entries)
            if size > max_out:
                limit = f"output size: more than {limits.max_output_mb} MiB in the output directory"
            elif entries > max_entries:
                limit = f"output files: more than {max_entries} entries in the output directory"
            for i, directory in enumerate(workers):
                if tree_usage(directory, 1000)[0] > _MAX_WORKER_DIR_BYTES:
                    limit = f"worker {i} wrote more than 64 MiB into its socket directory"
            if limit:
                break
        # Whatever ended the loop, nothing a job started may outlive it (background processes,
        # daemons, its workers). A worker that ended before this did so on its own.
        workers_ended = {id(p) for p in self.processes if p.proc.poll() is not None}
        for p in self.processes:
            if p.proc.poll() is None:
                p.kill()
        cancelled = self.b.cancelled and process.killed and not (timed_out or limit)
        for p in self.processes:
            p.finish()
        wall = time.monotonic() - self.start
        cg = process.cgroup
        oom = bool(cg and cg.oom_kills())
        refused = cg.forks_refused() if cg else 0
        if refused:
            self.notes.append(
                f"process limit ({limits.max_processes}) reached: {refused} forks refused"
            )
        exit_code = process.status.get("exit-code")
        if not self.b.sandboxed and "exit-code" in process.status:
            # plain mode: the launcher only said it reached exec; the status is the process's
            rc = process.proc.returncode
            exit_code = rc if rc >= 0 else 128 + -rc
        infra = self._infra_reason(process, workers_ended, cancelled, timed_out, limit, oom)
        self.notes += hand_back_outputs(job.out_dir, chown=self.chowned_out)
        if limit is None and refused and exit_code not in (0, None) and not oom:
            limit = f"process count: the job reached its limit of {limits.max_processes}"
        return JobOutcome(
            exit_code,
            wall,
            timed_out=timed_out and infra is None,
            oom=oom,
            infra_error=infra,
            peak_mem_mb=cg.peak_memory_mb() if cg else None,
            gpu_type=dict(self.b._gpus).get(self.gpus[0]) if self.gpus else None,
            notes=tuple(self.notes),
            limit=limit,
        )

    def _infra_reason(
        self,
        process: _Process,
        workers_ended: set[int],
        cancelled: bool,
        timed_out: bool,
        limit: str | None,
        oom: bool,
    ) -> str | None:
        """Only what the supervisor observed: the job's own exit, signals and text never count."""
        if process.log_error:
            err = process.log_error[0]
            if err.errno == errno.ENOSPC:
                return "disk full while writing the log"
            return f"cannot write the log: {err.strerror}"
        if cancelled:
            return "the supervisor cancelled the job"
        for i, worker in enumerate(p for p in self.processes if p is not process):
            if id(worker) in workers_ended and "exit-code" not in worker.status:
                cg = worker.cgroup
                if not (cg and cg.oom_kills()):
                    return f"worker {i} could not be started: {worker.tail_text() or 'no output'}"
        if timed_out or limit or oom or "exit-code" in process.status:
            return None
        # No exit-code: the sandbox never ran the job's command.
        rc = process.proc.returncode
        if "child-pid" not in process.status:
            return f"the sandbox could not be started: {process.tail_text() or f'exit {rc}'}"
        if rc is not None and rc < 0:
            return f"the sandbox was killed from outside by signal {-rc} ({_signame(-rc)})"
        return f"the sandbox could not be set up: {process.tail_text() or f'exit {rc}'}"

    def cleanup(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):
                if process.proc.poll() is None:
                    process.kill()
                    process.proc.wait(timeout=30)
            self.b._unregister(process)
        for cgroup in self.cgroups:
            cgroup.remove()
        self.b._gpu_pool.give(self.gpus)
        for uid in self.uids:
            self.b._uids.give(uid)
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
        if self._lock_fh is not None:
            self._lock_fh.close()


def _readable_tree(root: Path) -> None:
    """Directories 0755, files 0644/0755: the sandbox uid must read the copy, never write it."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & 0o100 else 0o644)


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"
