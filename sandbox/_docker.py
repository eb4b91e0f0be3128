"""The Docker backend: each setting in a fresh container with no network.

The codebase copy (with the submission's files) and the data are mounted read-only, the
(setting, seed) output directory read-write; the root filesystem is read-only with a tmpfs
``/tmp``; all capabilities are dropped; memory, CPU, process count and ``/dev/shm`` are
limited; GPUs are requested per job. Containers are removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sandbox._backend import (
    Backend,
    BackendError,
    JobOutcome,
    LineCallback,
    SettingJob,
    job_environment,
)
from sandbox._workdir import make_copy

log = logging.getLogger(__name__)

CPU_IMAGE = "pretrainbench/sandbox-cpu:latest"
GPU_IMAGE = "pretrainbench/sandbox-gpu:latest"

_CODE, _OUT, _DATA, _EVAL, _TOK, _CKPT, _HF = (
    "/workspace/code",
    "/workspace/out",
    "/data/train",
    "/data/eval",
    "/data/tokenizer",
    "/workspace/ckpt",
    "/data/hf",
)


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


def start_docker_daemon(data_root: Path, *, wait_s: float = 40.0) -> subprocess.Popen[bytes] | None:
    """Start ``dockerd`` (root only) and wait until it answers; ``None`` if one already runs.

    Raises ``BackendError`` when the daemon cannot be started here.
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
    logf = (data_root / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [
            dockerd,
            "--data-root",
            str(data_root / "root"),
            "--exec-root",
            str(data_root / "exec"),
            "--pidfile",
            str(data_root / "dockerd.pid"),
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


class DockerBackend(Backend):
    """Runs each setting in a container of ``image`` (default: the GPU image when GPUs exist)."""

    name = "docker"

    def __init__(
        self,
        image: str | None = None,
        *,
        memory_limit_mb: int = 16384,
        cpus: float | None = None,
        shm_size: str = "8g",
        max_processes: int = 1024,
        gpus: int | None = None,
        parallel_cpu_jobs: int = 1,
        tmp_root: Path | None = None,
        client: Any = None,
    ) -> None:
        self.client = client or docker_client()
        self.memory_limit_mb = memory_limit_mb
        self.cpus = cpus
        self.shm_size = shm_size
        self.max_processes = max_processes
        self.tmp_root = tmp_root
        self.gpu_capacity = gpus if gpus is not None else _count_gpus()
        self.cpu_slots = max(1, parallel_cpu_jobs)
        self.image = image or (GPU_IMAGE if self.gpu_capacity else CPU_IMAGE)
        try:
            self.client.images.get(self.image)
        except Exception as exc:
            raise BackendError(
                f"Docker image {self.image} is not present; build it (python -m sandbox.images build-cpu|build-gpu)"
            ) from exc
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}
        self._free_gpus = list(range(self.gpu_capacity))
        self._cancelled = False

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "image": self.image, "isolation": "container, network none"}

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            containers = list(self._containers.values())
        for c in containers:
            with contextlib.suppress(Exception):
                c.kill()

    def close(self) -> None:
        self.cancel()

    def run_setting(self, job: SettingJob, on_line: LineCallback | None = None) -> JobOutcome:
        start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"pb-docker-{job.label}-", dir=self.tmp_root))
        container: Any = None
        gpu_ids: list[int] = []
        try:
            try:
                code = make_copy(job.codebase_dir, job.files, work / "code")
                job.out_dir.mkdir(parents=True, exist_ok=True)
                job.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self._lock:
                    if job.gpus > len(self._free_gpus):
                        raise BackendError(
                            f"{job.gpus} GPUs requested, {len(self._free_gpus)} free"
                        )
                    gpu_ids, self._free_gpus = (
                        self._free_gpus[: job.gpus],
                        self._free_gpus[job.gpus :],
                    )
                container = self._create(job, code, gpu_ids)
            except (OSError, BackendError) as exc:
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"cannot prepare the container: {exc}",
                )
            except Exception as exc:  # docker.errors.*: the daemon's fault, not the submission's
                return JobOutcome(None, time.monotonic() - start, infra_error=f"docker: {exc}")
            return self._supervise(job, container, on_line, start)
        finally:
            if container is not None:
                with self._lock:
                    self._containers.pop(container.id, None)
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            with self._lock:
                self._free_gpus.extend(gpu_ids)
            shutil.rmtree(work, ignore_errors=True)

    def _create(self, job: SettingJob, code: Path, gpu_ids: list[int]) -> Any:
        from docker.types import DeviceRequest, Mount

        mounts = [
            Mount(_CODE, str(code.resolve()), type="bind", read_only=True),
            Mount(_OUT, str(job.out_dir.resolve()), type="bind", read_only=False),
            Mount(_DATA, str(job.data.data_dir.resolve()), type="bind", read_only=True),
        ]
        optional = [
            (job.data.eval_data_dir, _EVAL),
            (job.data.tokenizer_dir, _TOK),
            (job.ckpt_dir, _CKPT),
            (job.data.hf_home, _HF),
        ]
        for host, inside in optional:
            if host is not None:
                mounts.append(Mount(inside, str(host.resolve()), type="bind", read_only=True))
        env = job_environment(
            job,
            path="/opt/venv/bin:/opt/conda/bin:/usr/local/bin:/usr/bin:/bin",
            home="/tmp/home",
            tmpdir="/tmp",
            out_dir=_OUT,
            data_dir=_DATA,
            eval_data_dir=_EVAL if job.data.eval_data_dir else None,
            tokenizer_dir=_TOK if job.data.tokenizer_dir else None,
            hf_home=_HF if job.data.hf_home else None,
            ckpt_dir=_CKPT if job.ckpt_dir else None,
        )
        kwargs: dict[str, Any] = {}
        if gpu_ids:
            kwargs["device_requests"] = [
                DeviceRequest(device_ids=[str(i) for i in gpu_ids], capabilities=[["gpu"]])
            ]
            env.pop("CUDA_VISIBLE_DEVICES", None)
            env.setdefault("PB_NPROC", str(len(gpu_ids)))
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        container = self.client.containers.create(
            self.image,
            ["bash", "-c", f'mkdir -p "$HOME" && exec bash {job.script}'],
            working_dir=_CODE,
            environment=env,
            mounts=mounts,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,exec,size=4g"},
            shm_size=self.shm_size,
            mem_limit=f"{self.memory_limit_mb}m",
            memswap_limit=f"{self.memory_limit_mb}m",
            pids_limit=self.max_processes,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            labels={"pretrainbench.setting": job.label, "pretrainbench.seed": str(job.seed)},
            detach=True,
            **kwargs,
        )
        with self._lock:
            self._containers[container.id] = container
        return container

    def _supervise(
        self, job: SettingJob, container: Any, on_line: LineCallback | None, start: float
    ) -> JobOutcome:
        peak: list[float] = []
        stop = threading.Event()
        container.start()

        def pump() -> None:
            with job.log_path.open("ab") as log_file:
                buf = b""
                for chunk in container.logs(stream=True, follow=True):
                    log_file.write(chunk)
                    log_file.flush()
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        if on_line is not None:
                            with contextlib.suppress(Exception):
                                on_line(raw.decode("utf-8", "replace").rstrip("\r"))

        def watch_memory() -> None:
            while not stop.wait(2.0):
                with contextlib.suppress(Exception):
                    stats = container.stats(stream=False)
                    mem = stats.get("memory_stats", {})
                    value = mem.get("max_usage") or mem.get("usage")
                    if value:
                        peak.append(value / 2**20)

        reader = threading.Thread(target=pump, daemon=True)
        watcher = threading.Thread(target=watch_memory, daemon=True)
        reader.start()
        watcher.start()
        timed_out = False
        infra: str | None = None
        code: int | None = None
        try:
            status = container.wait(timeout=job.time_limit_s)
            code = int(status.get("StatusCode", -1))
        except Exception as exc:
            # requests' read timeout = our time limit; anything else means the daemon went away
            if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower():
                timed_out = True
            else:
                infra = f"lost the container: {exc}"
            with contextlib.suppress(Exception):
                container.kill()
        finally:
            stop.set()
            reader.join(timeout=10)
            watcher.join(timeout=5)
        oom = False
        with contextlib.suppress(Exception):
            container.reload()
            oom = bool(container.attrs["State"].get("OOMKilled"))
        with self._lock:
            if self._cancelled and infra is None and not timed_out:
                infra = "the executor was cancelled"
        if infra is None and not timed_out and not oom and code == 137:
            # SIGKILL that neither the time limit nor the memory limit sent: `docker kill`, the
            # host's OOM killer or a lost daemon; not the submission's fault.
            infra = "the container or one of its processes was killed by SIGKILL from outside"
        return JobOutcome(
            code,
            time.monotonic() - start,
            timed_out=timed_out,
            oom=oom,
            infra_error=infra,
            peak_mem_mb=max(peak) if peak else None,
            gpu_type=_gpu_name() if job.gpus else None,
        )


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
