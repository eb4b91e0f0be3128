"""The local backend: a subprocess in a fresh temp copy, as isolated as this OS allows.

Isolation, strongest first, each probed once per process and logged when missing:
- Linux namespaces via ``unshare``: a new network namespace (no network, loopback only),
  a new PID namespace (the job cannot see or signal host processes; when its init dies every
  process of the job dies), a private mount namespace whose root is remounted read-only
  except the job's work dir, its output dir and a fresh ``/dev/shm``; all capabilities are
  dropped (``setpriv``) so the job cannot remount anything writable again.
- cgroup v1 ``memory`` and ``pids`` controllers: a memory limit whose OOM kills are detected,
  a process-count limit against fork bombs, peak memory, and a kill of everything left over.
- Without cgroups: ``ulimit -v`` (generous: torch reserves much virtual memory).
Every job also runs in its own session/process group that is SIGKILLed on timeout, and its
temp copy is removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sandbox._backend import Backend, JobOutcome, LineCallback, SettingJob, job_environment
from sandbox._workdir import make_copy

log = logging.getLogger(__name__)

_CGROUP_ROOT = Path("/sys/fs/cgroup")
# exit status of the launcher when the sandbox itself could not be set up
SETUP_FAILED = 199
# A log larger than this is truncated: a submission printing without end must not fill the disk.
_MAX_LOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Isolation:
    """What this machine allows, probed once."""

    namespaces: bool
    network_only: bool
    network_cmd: tuple[str, ...]
    memory_cgroup: Path | None
    pids_cgroup: Path | None
    notes: tuple[str, ...]


_ISOLATION: Isolation | None = None
_ISOLATION_LOCK = threading.Lock()


def _own_cgroup(controller: str) -> Path | None:
    """The directory of this process's cgroup for a v1 controller, if writable."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if controller in controllers.split(","):
                base = _CGROUP_ROOT / controller / rel.lstrip("/")
                probe = base / f"pb-probe-{uuid.uuid4().hex[:8]}"
                probe.mkdir()
                probe.rmdir()
                return base
    except (OSError, ValueError):
        return None
    return None


def _run_quiet(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def probe_isolation(refresh: bool = False) -> Isolation:
    """Find out (once) which isolation mechanisms work on this machine."""
    global _ISOLATION
    with _ISOLATION_LOCK:
        if _ISOLATION is not None and not refresh:
            return _ISOLATION
        notes: list[str] = []
        inner = (
            "mount --make-rprivate / && mount -o remount,bind,ro / && "
            "exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs true"
        )
        have_tools = all(shutil.which(t) for t in ("unshare", "setpriv", "mount"))
        namespaces = have_tools and _run_quiet(
            [
                "unshare",
                "--mount",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "/bin/sh",
                "-c",
                inner,
            ]
        )
        network_cmd: tuple[str, ...] = ()
        if not namespaces and shutil.which("unshare"):
            for cmd in (("unshare", "--net"), ("unshare", "--net", "--map-root-user")):
                if _run_quiet([*cmd, "true"]):
                    network_cmd = cmd
                    break
        network_only = bool(network_cmd)
        if not namespaces:
            notes.append(
                "namespaces unavailable: jobs are not confined to their output directory"
                + ("" if network_only else " and keep network access")
            )
        memory = _own_cgroup("memory")
        pids = _own_cgroup("pids")
        if memory is None:
            notes.append("memory cgroup unavailable: falling back to ulimit -v")
        if pids is None:
            notes.append("pids cgroup unavailable: no process-count limit")
        _ISOLATION = Isolation(namespaces, network_only, network_cmd, memory, pids, tuple(notes))
        for note in notes:
            log.warning("local sandbox: %s", note)
        return _ISOLATION


class _Cgroups:
    """The per-job memory and pids cgroups (v1)."""

    def __init__(self, iso: Isolation, name: str, memory_mb: int, max_pids: int) -> None:
        self.dirs: list[Path] = []
        self.memory: Path | None = None
        self.pids: Path | None = None
        try:
            if iso.memory_cgroup is not None:
                self.memory = iso.memory_cgroup / name
                self.memory.mkdir()
                self.dirs.append(self.memory)
                limit = str(memory_mb * 1024 * 1024)
                (self.memory / "memory.limit_in_bytes").write_text(limit)
                memsw = self.memory / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    with contextlib.suppress(OSError):
                        memsw.write_text(limit)
            if iso.pids_cgroup is not None:
                self.pids = iso.pids_cgroup / name
                self.pids.mkdir()
                self.dirs.append(self.pids)
                (self.pids / "pids.max").write_text(str(max_pids))
        except OSError:
            self.remove()  # no half-made cgroups left behind
            raise

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def members(self) -> set[int]:
        found: set[int] = set()
        for path in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in path.read_text().split())
        return found

    def kill_all(self) -> None:
        # New processes can appear while we kill (a fork bomb); repeat until the group is empty.
        for _ in range(200):
            pids = self.members()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def oom_killed(self) -> bool:
        if self.memory is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            for line in (self.memory / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def peak_mb(self) -> float | None:
        if self.memory is None:
            return None
        try:
            return int((self.memory / "memory.max_usage_in_bytes").read_text()) / 2**20
        except (OSError, ValueError):
            return None

    def forks_refused(self) -> int:
        if self.pids is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in (self.pids / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        return 0

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


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


class LocalBackend(Backend):
    """Runs each setting as a sandboxed subprocess on this machine (the default backend).

    ``memory_limit_mb`` bounds each job's memory (cgroup; else virtual memory via ``ulimit``,
    multiplied by ``virtual_memory_factor`` because torch reserves far more address space than
    it uses); ``max_processes`` bounds its process count; ``parallel_cpu_jobs`` is how many
    GPU-less jobs may run at once.
    """

    name = "local"

    def __init__(
        self,
        *,
        memory_limit_mb: int = 8192,
        max_processes: int = 512,
        parallel_cpu_jobs: int = 1,
        virtual_memory_factor: int = 4,
        tmp_root: Path | None = None,
        python: str | None = None,
    ) -> None:
        self.memory_limit_mb = memory_limit_mb
        self.max_processes = max_processes
        self.virtual_memory_factor = virtual_memory_factor
        self.cpu_slots = max(1, parallel_cpu_jobs)
        self.tmp_root = tmp_root
        self.isolation = probe_isolation()
        self._gpus = _visible_gpus()
        self.gpu_capacity = len(self._gpus)
        self._free_gpus = [i for i, _ in self._gpus]
        self._lock = threading.Lock()
        self._running: dict[int, tuple[subprocess.Popen[bytes], _Cgroups | None]] = {}
        self._cancelled = False
        # The interpreter that runs the harness also runs the jobs (it has torch, lm-eval …).
        self._bin_dir = str(Path(python or sys.executable).parent)
        sweep_stale_work_dirs(Path(tmp_root or tempfile.gettempdir()))

    def describe(self) -> dict[str, str]:
        iso = self.isolation
        level = (
            "namespaces"
            if iso.namespaces
            else ("network-namespace" if iso.network_only else "none")
        )
        return {
            "backend": self.name,
            "isolation": level,
            "memory_cgroup": str(iso.memory_cgroup is not None),
            "pids_cgroup": str(iso.pids_cgroup is not None),
        }

    # -- GPUs ---------------------------------------------------------------------------
    def _take_gpus(self, n: int) -> list[str]:
        if n == 0:
            return []
        with self._lock:
            if n > len(self._free_gpus):
                raise RuntimeError(f"{n} GPUs requested but {len(self._free_gpus)} free")
            taken, self._free_gpus = self._free_gpus[:n], self._free_gpus[n:]
            return taken

    def _give_gpus(self, gpus: list[str]) -> None:
        with self._lock:
            self._free_gpus.extend(gpus)

    # -- lifecycle ------------------------------------------------------------------------
    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            running = list(self._running.values())
        for proc, cg in running:
            _kill(proc, cg)

    def close(self) -> None:
        self.cancel()

    # -- one job --------------------------------------------------------------------------
    def run_setting(self, job: SettingJob, on_line: LineCallback | None = None) -> JobOutcome:
        start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"pb-{job.label}-s{job.seed}-", dir=self.tmp_root))
        # Held while the job runs; the kernel drops it when this process dies in any way, which
        # tells a later sweep that the directory is stale.
        lock = _lock_work_dir(work)
        cg: _Cgroups | None = None
        gpus: list[str] = []
        notes = list(self.isolation.notes)
        try:
            try:
                code = make_copy(job.codebase_dir, job.files, work / "code")
                for sub in ("home", "tmp"):
                    (work / sub).mkdir()
                job.out_dir.mkdir(parents=True, exist_ok=True)
                job.log_path.parent.mkdir(parents=True, exist_ok=True)
                gpus = self._take_gpus(job.gpus)
                if self.isolation.memory_cgroup or self.isolation.pids_cgroup:
                    cg = _Cgroups(
                        self.isolation, work.name, self.memory_limit_mb, self.max_processes
                    )
            except OSError as exc:
                return JobOutcome(
                    None, time.monotonic() - start, infra_error=f"cannot prepare the job: {exc}"
                )
            env = job_environment(
                job,
                path=os.pathsep.join([self._bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
                home=str(work / "home"),
                tmpdir=str(work / "tmp"),
                out_dir=str(job.out_dir.resolve()),
                data_dir=str(job.data.data_dir.resolve()),
                eval_data_dir=str(job.data.eval_data_dir.resolve())
                if job.data.eval_data_dir
                else None,
                tokenizer_dir=str(job.data.tokenizer_dir.resolve())
                if job.data.tokenizer_dir
                else None,
                hf_home=str(job.data.hf_home.resolve()) if job.data.hf_home else None,
                ckpt_dir=str(job.ckpt_dir.resolve()) if job.ckpt_dir else None,
                host_env=dict(os.environ),
            )
            if job.gpus:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
                env.setdefault("PB_NPROC", str(job.gpus))
            launcher = self._write_launcher(job, work, code, cg)
            return self._supervise(job, launcher, code, env, cg, on_line, start, gpus, notes)
        finally:
            if cg is not None:
                cg.remove()
            self._give_gpus(gpus)
            shutil.rmtree(work, ignore_errors=True)
            lock.close()

    def _write_launcher(self, job: SettingJob, work: Path, code: Path, cg: _Cgroups | None) -> Path:
        # A failing setup step exits SETUP_FAILED, so that it reads as the sandbox's fault.
        q = shlex.quote
        fail = f'{{ echo "pb-sandbox: setup failed: $1" >&2; exit {SETUP_FAILED}; }}'
        lines = ["#!/bin/sh", f"fail() {fail}"]
        for procs in cg.procs_files() if cg else []:
            lines.append(f"echo $$ > {q(str(procs))} || fail 'cannot join cgroup'")
        if cg is None or cg.memory is None:
            kb = self.memory_limit_mb * self.virtual_memory_factor * 1024
            lines.append(f"ulimit -v {kb} || fail 'ulimit -v'")
        script = " ".join(q(a) for a in ["bash", job.script])
        if self.isolation.namespaces:
            inner = work / "inner.sh"
            rw = [work, job.out_dir.resolve()]
            body = [f"fail() {fail}", "mount --make-rprivate / || fail 'private mounts'"]
            body += [f"mount --bind {q(str(p))} {q(str(p))} || fail 'bind {p.name}'" for p in rw]
            body += [
                "mount -t tmpfs -o size=2g,mode=1777 tmpfs /dev/shm 2>/dev/null || true",
                "mount -o remount,bind,ro / || fail 'read-only root'",
                "ip link set lo up 2>/dev/null || true",
                f"cd {q(str(code))} || fail 'cd'",
                f"exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- {script}",
            ]
            inner.write_text("\n".join(body) + "\n")
            lines.append(
                "exec unshare --mount --net --pid --fork --kill-child --mount-proc -- "
                f"/bin/sh {q(str(inner))}"
            )
        elif self.isolation.network_cmd:
            lines.append(f"exec {' '.join(self.isolation.network_cmd)} -- {script}")
        else:
            lines.append(f"exec {script}")
        launcher = work / "launch.sh"
        launcher.write_text("\n".join(lines) + "\n")
        return launcher

    def _supervise(
        self,
        job: SettingJob,
        launcher: Path,
        code: Path,
        env: dict[str, str],
        cg: _Cgroups | None,
        on_line: LineCallback | None,
        start: float,
        gpus: list[str],
        notes: list[str],
    ) -> JobOutcome:
        disk_error: list[OSError] = []
        with self._lock:
            if self._cancelled:
                return JobOutcome(None, 0.0, infra_error="the executor was cancelled")
        try:
            log_file = job.log_path.open("ab")
            proc = subprocess.Popen(
                ["/bin/sh", str(launcher)],
                cwd=code,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return JobOutcome(
                None, time.monotonic() - start, infra_error=f"cannot start the job: {exc}"
            )
        with self._lock:
            self._running[proc.pid] = (proc, cg)

        def pump() -> None:
            written = 0
            assert proc.stdout is not None
            for raw in proc.stdout:
                if written < _MAX_LOG_BYTES and not disk_error:
                    try:
                        log_file.write(raw)
                        log_file.flush()
                        written += len(raw)
                        if written >= _MAX_LOG_BYTES:
                            log_file.write(b"\n[log truncated by the sandbox]\n")
                    except OSError as exc:
                        disk_error.append(exc)
                if on_line is not None:
                    with contextlib.suppress(Exception):
                        on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))

        reader = threading.Thread(target=pump, name=f"log-{job.label}-{job.seed}", daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=job.time_limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Nothing a job started may outlive it (background processes, daemons).
            _kill(proc, cg)
            proc.wait()
            reader.join(timeout=10)
            log_file.close()
            with self._lock:
                self._running.pop(proc.pid, None)
                cancelled = self._cancelled
        wall = time.monotonic() - start
        oom = cg.oom_killed() if cg else False
        refused = cg.forks_refused() if cg else 0
        if refused:
            notes.append(f"process limit ({self.max_processes}) reached: {refused} forks refused")
        peak = cg.peak_mb() if cg else None
        if peak is None:
            # without a memory cgroup: the largest child this process ever waited for (approximate)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        gpu_type = dict(self._gpus).get(gpus[0]) if gpus else None
        code_ = proc.returncode
        infra: str | None = None
        if disk_error:
            err = disk_error[0]
            infra = (
                "disk full while writing the log"
                if err.errno == errno.ENOSPC
                else f"cannot write the log: {err}"
            )
        elif cancelled and not timed_out:
            infra = "the executor was cancelled"
        elif code_ == SETUP_FAILED and "pb-sandbox: setup failed" in _tail(job.log_path):
            infra = "the sandbox could not be set up (see the log)"
        elif not timed_out and not oom and code_ is not None and code_ < 0:
            infra = f"the job was killed from outside the sandbox by signal {-code_} ({_signame(-code_)})"
        elif not timed_out and not oom and code_ == 128 + signal.SIGKILL:
            # A job process died of SIGKILL that neither its time nor its memory limit sent: the
            # host (an operator, the kernel's global OOM killer) killed it, not the submission.
            infra = "a process of the job was killed by SIGKILL from outside the sandbox"
        return JobOutcome(
            code_,
            wall,
            timed_out=timed_out,
            oom=oom,
            infra_error=infra,
            peak_mem_mb=peak,
            gpu_type=gpu_type,
            notes=tuple(notes),
        )


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


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"


def _kill(proc: subprocess.Popen[bytes], cg: _Cgroups | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cg is not None:
        cg.kill_all()
