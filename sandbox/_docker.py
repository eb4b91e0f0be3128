"""The Docker backend: each job in a fresh, hardened container; each worker in one of its own.

Every container (job or worker) runs as the image's non-root user, with a read-only root
filesystem, no capabilities, ``no-new-privileges``, no network (loopback only: torchrun's
rendezvous needs it), a private PID and IPC namespace, a size-capped ``/tmp`` and
``/dev/shm``, memory (swap included), process-count and core-dump limits sized per job kind
(`CPU_JOB_LIMITS`, `GPU_JOB_LIMITS`), and only the mounts the job was granted:

    /pb/code               the codebase copy (with the submission's files)      read-only
    /pb/data/<input>       each granted data input                              read-only
    /pb/needs/<label>      each finished job this one reads                     read-only
    /pb/out                the job's output directory                           read-write
    /pb/workers/<i>        the job's side of worker i's socket directory        read-write
    /pb/compile-cache      the shared compile cache, when granted               read-only

A worker sees the original codebase, the job's needs and its own socket directory at
``/pb/worker``: no data, no output directory, nothing of the other workers. GPUs are handed out
by device request. gVisor (``runtime="runsc"``) adds a user-space kernel when installed.
Containers are removed in ``finally``; afterwards the output directory is reclaimed (owned by
the harness again, no links, FIFOs or special mode bits) before anything reads it.

Infrastructure failures are only what this supervisor observed: Docker refused to create or
start a container, the daemon went away, the supervisor cancelled the job, or someone killed
the container through the Docker API. Once a container has started, its exit status, signals
it sent itself, and its own memory limit are the job's outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

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
    sandboxed_job_environment,
    sandboxed_worker_environment,
)
from sandbox._workdir import hand_back_outputs, make_copy

log = logging.getLogger(__name__)

CPU_IMAGE = "pretrainbench/sandbox-cpu:latest"
GPU_IMAGE = "pretrainbench/sandbox-gpu:latest"

#: The sandbox user baked into every image (``USER 61000:61000``). A dedicated id, not
#: ``nobody`` (65534), which NFS and host daemons share; below systemd's dynamic range.
SANDBOX_UID = 61000
SANDBOX_USER = "pb"

_LABEL = "pretrainbench.job"
# The job's log file grows no larger than this: a job printing without end must not fill the
# disk. Docker's own copy of the stream is rotated (`_LOG_CONFIG`).
_MAX_LOG_BYTES = 64 * 1024 * 1024
_MAX_LINE_BYTES = 64 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ContainerLimits:
    """The limits of one container. ``/tmp`` and ``/dev/shm`` are tmpfs: what a job writes
    there counts against ``memory_mb`` too. ``cpus`` None: no CPU quota."""

    memory_mb: int
    pids: int
    shm_mb: int
    tmp_mb: int
    cpus: float | None = None

    def for_gpus(self, gpus: int) -> ContainerLimits:
        """These limits for a job on ``gpus`` GPUs: ``memory_mb`` is per GPU (one DDP rank each)."""
        return dataclasses.replace(self, memory_mb=self.memory_mb * max(1, gpus))

    def describe(self) -> str:
        cpus = "all" if self.cpus is None else f"{self.cpus:g}"
        return (
            f"memory {self.memory_mb} MiB (swap included), pids {self.pids}, "
            f"/dev/shm {self.shm_mb} MiB, /tmp {self.tmp_mb} MiB, cpus {cpus}"
        )


#: CPU jobs: the tiny profile, preflight, evaluation on CPU. torch + lm-eval import in about
#: 1 GiB; the tiny model and the offline evaluation sets add little; torch.compile's worker
#: pool (up to 32 processes of ~200 MiB on a large host) is the peak. 1024 tasks (threads
#: count) covers torch's intra-op threads and that pool on a 64-core host; a fork bomb stops.
CPU_JOB_LIMITS = ContainerLimits(memory_mb=8192, pids=1024, shm_mb=512, tmp_mb=2048)
#: GPU jobs: torchrun DDP (2 ranks for the full profile) with torch.compile, or lm-eval on a
#: 345M checkpoint; the same numbers as the local backend's (docs/SECURITY.md, "Limits per job
#: kind"). ``memory_mb`` is per GPU (a job gets it times its GPUs): per rank the CUDA context,
#: torch and cuDNN/NCCL libraries and pinned batches (~4-6 GiB), inductor's compile pool (up to
#: 32 worker processes per rank at 0.3-0.6 GiB while compiling, ~10-16 GiB), rank 0's host copy
#: of the checkpoint on save (weights + AdamW state of 355M parameters, ~4 GiB, twice while
#: serialising), and what the job writes to the /tmp and /dev/shm tmpfs. About 20-26 GiB per
#: rank at the compile peak: 32 GiB leaves room without letting one job take a node. Threads
#: count against ``pids``: per rank ~100 (OpenMP, CUDA, NCCL) plus its compile workers' (~400),
#: gcc and ptxas while Triton compiles; 8192 is several times two ranks' peak and still stops a
#: fork bomb. /dev/shm (8 GiB): NCCL's shared-memory transport and proxy buffers (hundreds of
#: MiB; Docker's default 64 MiB makes NCCL fail) with room to spare. /tmp (16 GiB): the
#: inductor and Triton caches (1-2 GiB for GPT-2 Medium). No address-space limit: CUDA reserves
#: terabytes of virtual address space and fails to initialise under one.
GPU_JOB_LIMITS = ContainerLimits(memory_mb=32768, pids=8192, shm_mb=8192, tmp_mb=16384)


def docker_client(timeout: float = 10.0) -> Any:
    """A connected Docker SDK client, or ``BackendError`` saying why there is none."""
    try:
        import docker
    except ImportError as exc:
        raise BackendError("the docker Python SDK is not installed (pip install docker)") from exc
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:
        raise BackendError(f"no Docker daemon reachable: {exc}") from exc
    return client


#: How gVisor is registered when ``start_docker_daemon`` finds it: gVisor's own network stack
#: off (jobs have none; without it runsc refuses a nested network namespace), and Unix
#: sockets on bind mounts allowed, for the job-to-worker sockets.
RUNSC_ARGS = ["--network=none", "--host-uds=all"]


def start_docker_daemon(
    data_root: Path, *, wait_s: float = 40.0, runtimes: dict[str, Any] | None = None
) -> subprocess.Popen[bytes] | None:
    """Start ``dockerd`` (root only) and wait until it answers; ``None`` if one already runs.

    ``runtimes`` registers OCI runtimes as ``daemon.json`` does (name → ``{"path": …,
    "runtimeArgs": […]}``); by default gVisor's ``runsc`` with `RUNSC_ARGS` when it is
    installed. Raises ``BackendError`` when the daemon cannot be started here.
    """
    with contextlib.suppress(BackendError):
        docker_client(timeout=3)
        return None
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise BackendError(
            "dockerd is not installed or we are not root: cannot start a Docker daemon"
        )
    data_root.mkdir(parents=True, exist_ok=True)
    if runtimes is None:
        runsc = shutil.which("runsc")
        runtimes = {"runsc": {"path": runsc, "runtimeArgs": RUNSC_ARGS}} if runsc else {}
    config = data_root / "daemon.json"
    config.write_text(json.dumps({"runtimes": runtimes}, indent=2))
    with (data_root / "dockerd.log").open("ab") as logf:
        proc = subprocess.Popen(
            [
                dockerd,
                "--data-root",
                str(data_root / "root"),
                "--exec-root",
                str(data_root / "exec"),
                "--pidfile",
                str(data_root / "dockerd.pid"),
                "--config-file",
                str(config),
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendError(
                f"dockerd exited with {proc.returncode}; see {data_root / 'dockerd.log'}"
            )
        with contextlib.suppress(BackendError):
            docker_client(timeout=3)
            return proc
        time.sleep(0.5)
    proc.kill()
    raise BackendError(
        f"dockerd did not answer within {wait_s:.0f} s; see {data_root / 'dockerd.log'}"
    )


def docker_runtimes(client: Any) -> set[str]:
    """The OCI runtimes the daemon knows (``runc``, and ``runsc`` when gVisor is registered)."""
    try:
        return set((client.info().get("Runtimes") or {}).keys())
    except Exception as exc:
        raise BackendError(f"docker info failed: {exc}") from exc


@dataclass(frozen=True)
class _ImageFacts:
    uid: int
    gid: int
    path: str
    image_id: str


def _inspect_image(client: Any, tag: str) -> _ImageFacts:
    """The image's sandbox user and PATH; refuses images that would weaken a job's sandbox."""
    try:
        image = client.images.get(tag)
    except Exception as exc:
        raise BackendError(
            f"Docker image {tag} is not present; build it "
            "(python -m sandbox.images build-cpu|build-gpu)"
        ) from exc
    config = image.attrs.get("Config") or {}
    user = str(config.get("User") or "")
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    if match is None or int(match.group(1)) == 0:
        raise BackendError(
            f"Docker image {tag} runs as {user or 'root'!r}: a sandbox image must set a numeric "
            f"non-root USER (ours: USER {SANDBOX_UID}:{SANDBOX_UID}); rebuild it"
        )
    uid = int(match.group(1))
    gid = int(match.group(2) or uid)
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    # An image-level data variable would reach every job, granted or not (the environment a
    # container gets is the image's plus ours): data comes only as granted inputs.
    leaked = sorted(k for k in env if k.startswith("PB_") or k in INPUT_VARIABLES.values())
    if leaked:
        raise BackendError(
            f"Docker image {tag} sets {', '.join(leaked)}: data must reach a job only as a "
            "granted input; rebuild the image without them"
        )
    path = env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return _ImageFacts(uid, gid, path, str(image.id))


class DockerBackend(Backend):
    """Runs each job in a container of ``image`` (default: the GPU image when GPUs exist).

    ``cpu_limits`` / ``gpu_limits``: the container limits of jobs without / with GPUs (their
    workers get the same). ``runtime``: ``None`` for the daemon's default (runc), ``"runsc"``
    for gVisor (refused when the daemon does not know it), ``"auto"`` for gVisor when
    registered. ``host_runtime``: host directories bound read-only at the same path, for an
    image that runs the host's own Python (`sandbox.images.build_host_runtime_image`, tests).
    """

    name = "docker"

    def __init__(
        self,
        image: str | None = None,
        *,
        cpu_limits: ContainerLimits = CPU_JOB_LIMITS,
        gpu_limits: ContainerLimits = GPU_JOB_LIMITS,
        gpus: int | None = None,
        parallel_cpu_jobs: int = 1,
        runtime: str | None = None,
        host_runtime: Sequence[Path] = (),
        tmp_root: Path | None = None,
        client: Any = None,
    ) -> None:
        self.client = client or docker_client()
        self.cpu_limits, self.gpu_limits = cpu_limits, gpu_limits
        self.tmp_root = tmp_root
        self.gpu_capacity = gpus if gpus is not None else _count_gpus()
        self.cpu_slots = max(1, parallel_cpu_jobs)
        self.image = image or (GPU_IMAGE if self.gpu_capacity else CPU_IMAGE)
        self._facts = _inspect_image(self.client, self.image)
        try:
            info = self.client.info()
        except Exception as exc:
            raise BackendError(f"docker info failed: {exc}") from exc
        known = set((info.get("Runtimes") or {}).keys())
        self._seccomp = any("seccomp" in o for o in info.get("SecurityOptions") or [])
        host_mb = int(info.get("MemTotal") or 0) // 2**20
        if host_mb and self.cpu_slots * cpu_limits.memory_mb > host_mb:
            # the host's OOM killer would then kill jobs under their own limits, and that
            # exit (137, not OOMKilled) would be charged to the submission
            log.warning(
                "docker: %d CPU jobs of %d MiB exceed the host's %d MiB",
                self.cpu_slots,
                cpu_limits.memory_mb,
                host_mb,
            )
        if runtime == "auto":
            runtime = "runsc" if "runsc" in known else None
        elif runtime is not None and runtime not in known:
            raise BackendError(
                f"the Docker daemon has no runtime {runtime!r} (it has {', '.join(sorted(known))})"
            )
        self.runtime = runtime
        self.host_runtime = tuple(Path(p) for p in host_runtime)
        for path in self.host_runtime:
            if not path.is_absolute() or not path.is_dir() or path == Path("/"):
                raise BackendError(f"host runtime path {path} must be an absolute directory")
        # Only root can hand the output directory to the image's user; any other harness (in
        # the docker group) runs jobs under its own uid, which is never 0 either.
        self._as_root = os.geteuid() == 0
        self.uid, self.gid = (
            (self._facts.uid, self._facts.gid) if self._as_root else (os.getuid(), os.getgid())
        )
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}
        self._killed: set[str] = set()
        self._gpu_pool = GpuPool([str(i) for i in range(self.gpu_capacity)])
        self._cancelled = False

    def describe(self) -> dict[str, str]:
        facts = {
            "backend": self.name,
            "image": self.image,
            "image_id": self._facts.image_id[:19],
            "runtime": self.runtime or "runc (daemon default)",
            "user": f"{self.uid}:{self.gid} (non-root)",
            "isolation": "read-only root, cap_drop ALL, no-new-privileges, network none, "
            "private pid/ipc namespaces, core dumps off",
            "seccomp": "Docker's default profile" if self._seccomp else "none (daemon without)",
            "mounts": "code ro, granted inputs ro, needs ro, out rw, one socket dir per worker, "
            "compile cache ro",
            "workers": "one container each: original code, needs ro, own socket dir",
            "cpu_job_limits": self.cpu_limits.describe(),
            "gpu_job_limits": self.gpu_limits.describe(),
        }
        if self.host_runtime:
            facts["host_runtime"] = ", ".join(f"{p} ro" for p in self.host_runtime)
        return facts

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            containers = list(self._containers.values())
            self._killed.update(c.id for c in containers)
        for container in containers:
            with contextlib.suppress(Exception):
                container.kill()

    # -- one job ----------------------------------------------------------------------------
    def run_job(self, job: Job, on_line: LineCallback | None = None) -> JobOutcome:
        start = time.monotonic()
        if self._cancelled:  # one flag, written under the lock by cancel()
            return cancelled_outcome()
        work: Path | None = None
        gpu_ids: list[int] = []
        containers: list[Any] = []
        pumps: list[threading.Thread] = []
        logs: list[IO[bytes]] = []
        try:
            try:
                work = Path(tempfile.mkdtemp(prefix=f"pb-docker-{job.label}-", dir=self.tmp_root))
                gpu_ids = [int(i) for i in self._gpu_pool.take(job.gpus)]
                job_spec, worker_specs = self._prepare(job, work, gpu_ids)
                logs.append(_open_log(job.log_path))
                logs += [_open_log(job.worker_log(i)) for i in range(len(worker_specs))]
            except (OSError, ValueError, BackendError) as exc:
                return JobOutcome(
                    None, time.monotonic() - start, infra_error=f"cannot prepare the job: {exc}"
                )
            try:
                for spec, worker_log in zip(worker_specs, logs[1:], strict=True):
                    pumps.append(_pump(self._start(spec, containers), worker_log, None))
                container = self._start(job_spec, containers)
            except Exception as exc:  # docker.errors.*, requests.*: the daemon refused
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"Docker could not create or start a container: {exc}",
                )
            return self._supervise(job, container, logs[0], on_line, time.monotonic(), start)
        finally:
            for container in reversed(containers):
                self._remove(container)
            for thread in pumps:
                thread.join(timeout=10)
            for log_file in logs:
                log_file.close()
            self._gpu_pool.give([str(i) for i in gpu_ids])
            # after removal: nothing of the job runs any more while its outputs are reclaimed
            with contextlib.suppress(OSError):
                if job.out_dir.is_dir():
                    hand_back_outputs(job.out_dir, chown=self._as_root)
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)

    def _prepare(
        self, job: Job, work: Path, gpu_ids: list[int]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The create() arguments of the job's container and of each worker's."""
        from docker.types import Mount

        for name in job.inputs:
            if name not in INPUT_VARIABLES:
                raise BackendError(f"unknown data input {name!r}")
        for label in job.needs:
            if not _SAFE_NAME.match(label):
                raise BackendError(f"job label {label!r} cannot name a mount point")
        code = make_copy(job.codebase_dir, job.files, work / "code")
        # workers run the original code, never the submission's files
        worker_code = (
            make_copy(job.codebase_dir, {}, work / "worker-code")
            if (job.workers and job.files)
            else code
        )
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self._hand_over(job.out_dir)
        sockets: list[Path] = []
        for index in range(job.workers.count if job.workers else 0):
            sock = work / "workers" / str(index)
            sock.mkdir(parents=True)
            self._hand_over(sock)
            sockets.append(sock)

        def ro(target: str, source: Path) -> Any:
            return Mount(target, str(source.resolve()), type="bind", read_only=True)

        runtime = [ro(str(p), p) for p in self.host_runtime]
        needs = [ro(f"{IN_SANDBOX.needs}/{label}", path) for label, path in job.needs.items()]
        kind = self.limits_for(job)
        env = sandboxed_job_environment(job, path=self._facts.path, home=f"{IN_SANDBOX.tmp}/home")
        mounts = [
            *runtime,
            ro(IN_SANDBOX.code, code),
            Mount(IN_SANDBOX.out, str(job.out_dir.resolve()), type="bind", read_only=False),
            *(ro(f"{IN_SANDBOX.data}/{name}", path) for name, path in job.inputs.items()),
            *needs,
            *(
                Mount(f"{IN_SANDBOX.workers}/{i}", str(sock), type="bind", read_only=False)
                for i, sock in enumerate(sockets)
            ),
        ]
        if job.compile_cache is not None:
            mounts.append(ro(IN_SANDBOX.compile_cache, job.compile_cache.path))
        job_spec = self._spec(job, "job", job.script, env, mounts, kind, gpu_ids)
        worker_specs = []
        for index, sock in enumerate(sockets):
            assert job.workers is not None
            wenv = sandboxed_worker_environment(job, index, path=self._facts.path)
            wmounts = [
                *runtime,
                ro(IN_SANDBOX.code, worker_code),
                *needs,
                Mount(IN_SANDBOX.worker, str(sock), type="bind", read_only=False),
            ]
            worker_specs.append(
                self._spec(job, f"worker-{index}", job.workers.script, wenv, wmounts, kind, gpu_ids)
            )
        return job_spec, worker_specs

    def limits_for(self, job: Job) -> ContainerLimits:
        """The limits of ``job``'s containers by job kind; a GPU job's memory is per GPU."""
        return self.gpu_limits.for_gpus(job.gpus) if job.gpus > 0 else self.cpu_limits

    def _hand_over(self, path: Path) -> None:
        """Make ``path`` writable for the sandbox user and nobody else."""
        if self._as_root:
            os.chown(path, self.uid, self.gid)
        path.chmod(0o700)

    def _spec(
        self,
        job: Job,
        role: str,
        script: str,
        env: dict[str, str],
        mounts: list[Any],
        limits: ContainerLimits,
        gpu_ids: list[int],
    ) -> dict[str, Any]:
        from docker.types import DeviceRequest, LogConfig, Ulimit

        env = {**env, "USER": SANDBOX_USER, "LOGNAME": SANDBOX_USER}  # getpass() in inductor
        if gpu_ids:
            env.setdefault("PB_NPROC", str(len(gpu_ids)))
        spec: dict[str, Any] = {
            "image": self.image,
            # the script is an argument, never spliced into shell text
            "command": ["bash", "-c", 'mkdir -p "$HOME" && exec bash "$0"', script],
            "working_dir": IN_SANDBOX.code,
            "environment": env,
            "mounts": mounts,
            "user": f"{self.uid}:{self.gid}",
            "network_mode": "none",
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "ipc_mode": "private",
            "init": True,  # reaps the orphans of torchrun and compile workers
            # torch.compile writes and loads shared objects under /tmp: it must allow exec
            "tmpfs": {IN_SANDBOX.tmp: f"rw,exec,nosuid,nodev,size={limits.tmp_mb}m"},
            "shm_size": f"{limits.shm_mb}m",
            "mem_limit": f"{limits.memory_mb}m",
            "memswap_limit": f"{limits.memory_mb}m",
            "pids_limit": limits.pids,
            # a crashing job must not run the host's core_pattern helper or fill the disk
            "ulimits": [
                Ulimit(name="core", soft=0, hard=0),
                # CUDA cannot initialise under an address-space limit: never inherit one from
                # the daemon's default-ulimits
                *([Ulimit(name="as", soft=-1, hard=-1)] if gpu_ids else []),
            ],
            # under host-wide memory pressure the kernel kills a sandbox before the harness
            "oom_score_adj": 500,
            "log_config": LogConfig(type="json-file", config={"max-size": "16m", "max-file": "2"}),
            "labels": {
                _LABEL: job.label,
                "pretrainbench.seed": str(job.seed),
                "pretrainbench.role": role,
            },
            "detach": True,
        }
        if self.runtime:
            spec["runtime"] = self.runtime
        if limits.cpus:
            spec["nano_cpus"] = int(limits.cpus * 1e9)
        if gpu_ids:
            spec["device_requests"] = [
                DeviceRequest(device_ids=[str(i) for i in gpu_ids], capabilities=[["gpu"]])
            ]
        return spec

    def _start(self, spec: dict[str, Any], containers: list[Any]) -> Any:
        """Create and start a container, listed in ``containers`` (for removal) once it exists."""
        container = self.client.containers.create(**spec)
        containers.append(container)
        with self._lock:
            self._containers[container.id] = container
            cancelled = self._cancelled
        if cancelled:
            raise BackendError("the supervisor cancelled the job")
        container.start()
        return container

    def _remove(self, container: Any) -> None:
        with self._lock:
            self._containers.pop(container.id, None)
            self._killed.add(container.id)
        with contextlib.suppress(Exception):
            container.remove(force=True)
        with self._lock:
            self._killed.discard(container.id)

    def _kill(self, container: Any) -> None:
        with self._lock:
            self._killed.add(container.id)
        with contextlib.suppress(Exception):
            container.kill()

    def _supervise(
        self,
        job: Job,
        container: Any,
        log_file: IO[bytes],
        on_line: LineCallback | None,
        started: float,
        start: float,
    ) -> JobOutcome:
        from requests.exceptions import ReadTimeout

        peak: list[float] = []
        stop = threading.Event()
        reader = _pump(container, log_file, on_line)
        watcher = threading.Thread(target=_watch_memory, args=(container, stop, peak), daemon=True)
        watcher.start()
        deadline = started + job.time_limit_s
        timed_out = cancelled = False
        infra: str | None = None
        code: int | None = None
        try:
            while True:
                with self._lock:
                    cancelled = self._cancelled
                remaining = deadline - time.monotonic()
                if cancelled or remaining <= 0:
                    timed_out = not cancelled
                    self._kill(container)
                    with contextlib.suppress(Exception):
                        code = int(container.wait(timeout=60).get("StatusCode", -1))
                    break
                try:
                    status = container.wait(timeout=max(1, min(remaining, 5)))
                except ReadTimeout:
                    continue
                except Exception as exc:
                    if "timed out" in str(exc).lower():  # urllib3 wraps some read timeouts
                        continue
                    infra = f"lost the Docker daemon or the container while the job ran: {exc}"
                    self._kill(container)  # if the daemon still hears us, nothing stays behind
                    break
                code = int(status.get("StatusCode", -1))
                break
        finally:
            stop.set()
            reader.join(timeout=30)
            watcher.join(timeout=10)
        with self._lock:  # cancel() may have killed it while we waited
            cancelled = cancelled or (self._cancelled and container.id in self._killed)
        oom = False
        if infra is None:
            try:
                container.reload()
                state = container.attrs.get("State") or {}
                oom = bool(state.get("OOMKilled"))
                if not (timed_out or cancelled):
                    infra = self._outside_kill(container, state)
            except Exception as exc:
                infra = f"lost the Docker daemon after the job ended: {exc}"
        if cancelled:
            infra = "the supervisor cancelled the job"
        return JobOutcome(
            code,
            time.monotonic() - start,
            timed_out=timed_out,
            oom=oom and not timed_out,
            infra_error=infra,
            peak_mem_mb=max(peak) if peak else None,
            gpu_type=_gpu_name() if job.gpus else None,
        )

    def _outside_kill(self, container: Any, state: dict[str, Any]) -> str | None:
        """A ``kill`` the daemon reports that this supervisor did not send (``docker kill``,
        ``docker stop``, a daemon shutting down). A job has no Docker API, so it cannot fake one;
        a job that kills itself makes no such event."""
        with self._lock:
            if container.id in self._killed:
                return None
        since, until = _daemon_time(state.get("StartedAt")), _daemon_time(state.get("FinishedAt"))
        if since is None or until is None:
            return None
        # a kill comes before the container's end; an "until" in the future would block
        events = self.client.events(
            since=int(since) - 1,
            until=f"{until + 0.01:.6f}",
            filters={"container": container.id, "event": "kill"},
            decode=True,
        )
        try:
            for event in events:
                signal = (event.get("Actor") or {}).get("Attributes", {}).get("signal", "?")
                return f"the container was killed through the Docker API (signal {signal}), not by the job"
        finally:
            with contextlib.suppress(Exception):
                events.close()
        return None


def _daemon_time(value: object) -> float | None:
    """Seconds since the epoch of the daemon's RFC 3339 timestamp (nanoseconds cut to micro)."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()


def _open_log(path: Path) -> IO[bytes]:
    """Open a supervisor log for appending; never through a link planted where it should be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "ab")


def _pump(container: Any, log_file: IO[bytes], on_line: LineCallback | None) -> threading.Thread:
    """Copy the container's merged output into ``log_file`` (capped) and ``on_line``."""

    def run() -> None:
        written = 0
        buf = b""
        with contextlib.suppress(OSError, ValueError):  # the log was closed: nothing to keep
            for chunk in _stream(container):
                if written < _MAX_LOG_BYTES:
                    part = chunk[: _MAX_LOG_BYTES - written]
                    log_file.write(part)
                    written += len(part)
                    if written >= _MAX_LOG_BYTES:
                        log_file.write(b"\n[log truncated by the supervisor at 64 MiB]\n")
                    log_file.flush()
                if on_line is None:
                    continue
                *lines, buf = (buf + chunk).split(b"\n")
                if len(buf) > _MAX_LINE_BYTES:  # output without newlines must not grow memory
                    lines.append(buf)
                    buf = b""
                for raw in lines:
                    with contextlib.suppress(Exception):
                        on_line(raw.decode("utf-8", "replace").rstrip("\r"))
        if buf and on_line is not None:
            with contextlib.suppress(Exception):
                on_line(buf.decode("utf-8", "replace").rstrip("\r"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _stream(container: Any) -> Iterator[bytes]:
    with contextlib.suppress(Exception):  # the container went away: the stream just ends
        yield from container.logs(stream=True, follow=True)


def _watch_memory(container: Any, stop: threading.Event, peak: list[float]) -> None:
    while True:
        with contextlib.suppress(Exception):
            mem = container.stats(stream=False, one_shot=True).get("memory_stats", {})
            value = mem.get("max_usage") or mem.get("usage")  # cgroup v1 keeps a true peak
            if value:
                peak.append(value / 2**20)
        if stop.wait(2.0):
            return


def _count_gpus() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU"))


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None
