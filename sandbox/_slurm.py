"""The Slurm backend: one ``sbatch`` job per (setting, seed) on an existing cluster.

Jobs are tracked with ``squeue``/``scontrol`` (``sacct`` needs slurmdbd, which small clusters
lack). The codebase copy lives in a work directory beside the test's output directory, which
must be on a filesystem the compute nodes share. Optionally each job runs inside a container
runtime (``apptainer``/``singularity`` with an image file, or ``enroot``). Without a
container, a job drops its network with ``unshare --net`` when the node allows it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

from sandbox._backend import (
    Backend,
    BackendError,
    JobOutcome,
    LineCallback,
    SettingJob,
    job_environment,
)
from sandbox._workdir import make_copy

ContainerRuntime = Literal["apptainer", "singularity", "enroot"]

# Job states after which a job never runs again, and whose fault each is.
_SUBMISSION_END = {"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY"}
_INFRA_END = {
    "NODE_FAIL",
    "BOOT_FAIL",
    "PREEMPTED",
    "DEADLINE",
    "REVOKED",
    "CANCELLED",
    "SPECIAL_EXIT",
}
# Pending reasons that can never resolve by waiting (e.g. more CPUs/GPUs than any node has).
_HOPELESS = {
    "PartitionConfig",
    "BadConstraints",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "InvalidQOS",
    "InvalidAccount",
    "ReqNodeNotAvail, UnavailableNodes",
}


def _slurm(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def slurm_available() -> str | None:
    """``None`` when a Slurm controller answers, else the reason it does not."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "the Slurm client commands (sbatch, squeue) are not installed"
    try:
        proc = _slurm(["sinfo", "-h", "-o", "%P %a %D"], timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"no Slurm controller answers: {proc.stderr.strip() or 'sinfo printed nothing'}"
    return None


class SlurmBackend(Backend):
    """Submits each setting as an sbatch job and waits for it.

    ``partition``, ``account``, ``cpus_per_task``, ``mem`` and ``extra_args`` go to sbatch;
    ``container`` + ``image`` run the job in a container runtime; ``python`` names the
    interpreter directory on the nodes when no container is used (default: this one's).
    ``check_cluster=False`` skips asking the controller (to write batch scripts offline).
    """

    name = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        account: str | None = None,
        cpus_per_task: int | None = None,
        mem: str | None = None,
        container: ContainerRuntime | None = None,
        image: str | None = None,
        extra_args: list[str] | None = None,
        max_jobs: int = 32,
        poll_s: float = 1.0,
        time_grace_s: float = 120.0,
        python: str | None = None,
        check_cluster: bool = True,
    ) -> None:
        reason = slurm_available() if check_cluster else None
        if reason is not None:
            raise BackendError(reason)
        if container and not image:
            raise BackendError(f"container runtime {container} needs an image")
        self.partition, self.account = partition, account
        self.cpus_per_task, self.mem = cpus_per_task, mem
        self.container, self.image = container, image
        self.extra_args = list(extra_args or [])
        self.poll_s = poll_s
        self.time_grace_s = time_grace_s
        # the cluster queues jobs itself: let the executor submit a whole group at once
        self.gpu_capacity = max_jobs
        self.cpu_slots = max_jobs
        self._bin_dir = str(Path(python or sys.executable).parent)
        self._lock = threading.Lock()
        self._jobs: set[str] = set()
        self._cancelled = False

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "container": self.container or "none",
            "partition": self.partition or "default",
        }

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            jobs = sorted(self._jobs)
        if jobs:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                _slurm(["scancel", *jobs])

    def close(self) -> None:
        self.cancel()

    # -- one job --------------------------------------------------------------------------
    def run_setting(self, job: SettingJob, on_line: LineCallback | None = None) -> JobOutcome:
        start = time.monotonic()
        work = job.out_dir.parent / f".work-{job.out_dir.name}-{uuid.uuid4().hex[:8]}"
        job_id: str | None = None
        try:
            try:
                code = make_copy(job.codebase_dir, job.files, work / "code")
                (work / "home").mkdir()
                (work / "tmp").mkdir()
                job.out_dir.mkdir(parents=True, exist_ok=True)
                batch = self._write_batch(job, work, code)
            except OSError as exc:
                return JobOutcome(
                    None, time.monotonic() - start, infra_error=f"cannot prepare the job: {exc}"
                )
            with self._lock:
                if self._cancelled:
                    return JobOutcome(None, 0.0, infra_error="the executor was cancelled")
            proc = _slurm(["sbatch", "--parsable", str(batch)])
            if proc.returncode != 0:
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"sbatch refused the job: {proc.stderr.strip()[:500]}",
                )
            job_id = proc.stdout.strip().split(";")[0]
            with self._lock:
                self._jobs.add(job_id)
            return self._track(job, job_id, work, on_line, start)
        finally:
            if job_id is not None:
                with self._lock:
                    self._jobs.discard(job_id)
            shutil.rmtree(work, ignore_errors=True)

    def _write_batch(self, job: SettingJob, work: Path, code: Path) -> Path:
        q = shlex.quote
        inside = self.container is not None
        env = job_environment(
            job,
            path=os.pathsep.join(
                ([] if inside else [self._bin_dir])
                + ["/opt/venv/bin", "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            home=str(work / "home"),
            tmpdir=str(work / "tmp"),
            out_dir=str(job.out_dir.resolve()),
            data_dir=str(job.data.data_dir.resolve()),
            eval_data_dir=str(job.data.eval_data_dir.resolve()) if job.data.eval_data_dir else None,
            tokenizer_dir=str(job.data.tokenizer_dir.resolve()) if job.data.tokenizer_dir else None,
            hf_home=str(job.data.hf_home.resolve()) if job.data.hf_home else None,
            ckpt_dir=str(job.ckpt_dir.resolve()) if job.ckpt_dir else None,
            host_env=dict(os.environ),
        )
        if job.gpus:
            env.pop("CUDA_VISIBLE_DEVICES", None)  # Slurm sets it from --gres
            env.setdefault("PB_NPROC", str(job.gpus))
        minutes = max(1, math.ceil((job.time_limit_s + self.time_grace_s) / 60))
        lines = [
            "#!/bin/bash",
            f"#SBATCH --job-name=pb-{job.label}-s{job.seed}",
            f"#SBATCH --output={job.log_path.resolve()}",
            f"#SBATCH --time={minutes}",
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks=1",
            "#SBATCH --export=NONE",
        ]
        if job.gpus:
            lines.append(f"#SBATCH --gres=gpu:{job.gpus}")
        if self.partition:
            lines.append(f"#SBATCH --partition={self.partition}")
        if self.account:
            lines.append(f"#SBATCH --account={self.account}")
        if self.cpus_per_task:
            lines.append(f"#SBATCH --cpus-per-task={self.cpus_per_task}")
        if self.mem:
            lines.append(f"#SBATCH --mem={self.mem}")
        lines += [f"#SBATCH {a}" for a in self.extra_args]
        lines.append(
            "unset $(env | cut -d= -f1 | grep -v '^SLURM_' | grep -v '^CUDA_VISIBLE_DEVICES$') 2>/dev/null"
        )
        lines += [f"export {k}={q(v)}" for k, v in sorted(env.items())]
        lines.append(f"cd {q(str(code))}")
        script = f"bash {q(job.script)}"
        binds = [f"{code}", f"{job.out_dir.resolve()}", f"{work}", f"{job.data.data_dir.resolve()}"]
        binds += [
            str(p.resolve())
            for p in (
                job.data.eval_data_dir,
                job.data.tokenizer_dir,
                job.data.hf_home,
                job.ckpt_dir,
            )
            if p is not None
        ]
        if self.container in ("apptainer", "singularity"):
            bind = ",".join(f"{b}:{b}" for b in binds)
            nv = "--nv " if job.gpus else ""
            lines.append(
                f"{self.container} exec {nv}--containall --no-home --cleanenv --writable-tmpfs "
                f"--env-file <(env | grep -E '^(PB_|HF_|TRANSFORMERS_|PYTHON|HOME=|TMPDIR=|LANG=|PATH=)') "
                f"--bind {q(bind)} --pwd {q(str(code))} {q(str(self.image))} {script}"
            )
        elif self.container == "enroot":
            mounts = " ".join(f"--mount {q(b + ':' + b)}" for b in binds)
            lines.append(
                f"enroot start --rw {mounts} {q(str(self.image))} bash -c {q(f'cd {code} && {script}')}"
            )
        else:
            lines.append(
                f"if unshare --net --map-root-user true 2>/dev/null; then "
                f"unshare --net --map-root-user {script}; else {script}; fi"
            )
        lines += ["rc=$?", f"echo $rc > {q(str(work / 'exit_code'))}", "exit $rc"]
        batch = work / "job.sbatch"
        batch.write_text("\n".join(lines) + "\n")
        return batch

    def _state(self, job_id: str) -> tuple[str | None, str, str | None]:
        """(state, reason, exit code "X:Y") of a job, ``state`` None when Slurm forgot it."""
        proc = _slurm(["scontrol", "show", "job", "-o", job_id], timeout=30)
        if proc.returncode != 0 or "JobState=" not in proc.stdout:
            return None, "", None
        fields = dict(tok.split("=", 1) for tok in proc.stdout.split() if "=" in tok)
        return fields.get("JobState"), fields.get("Reason", ""), fields.get("ExitCode")

    def _track(
        self, job: SettingJob, job_id: str, work: Path, on_line: LineCallback | None, start: float
    ) -> JobOutcome:
        offset = 0
        buf = b""

        def follow() -> None:
            nonlocal offset, buf
            if on_line is None or not job.log_path.is_file():
                return
            with job.log_path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
            offset += len(data)
            *lines, buf = (buf + data).split(b"\n")
            for raw in lines:
                with contextlib.suppress(Exception):
                    on_line(raw.decode("utf-8", "replace"))

        deadline = start + job.time_limit_s + self.time_grace_s + 60
        state: str | None = "PENDING"
        exit_code: str | None = None
        while True:
            follow()
            state, reason, exit_code = self._state(job_id)
            if state is None or state in _SUBMISSION_END or state in _INFRA_END:
                break
            if state == "PENDING" and reason in _HOPELESS:
                _slurm(["scancel", job_id])
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"Slurm can never run job {job_id} (Reason={reason})",
                )
            if state == "RUNNING" and time.monotonic() > deadline:
                _slurm(["scancel", job_id])
                return JobOutcome(None, time.monotonic() - start, timed_out=True)
            time.sleep(self.poll_s)
        time.sleep(0.2)
        follow()
        wall = time.monotonic() - start
        with self._lock:
            cancelled = self._cancelled
        code: int | None = None
        if exit_code and ":" in exit_code:
            rc, sig = (int(x) for x in exit_code.split(":", 1))
            code = -sig if sig else rc
        rc_file = work / "exit_code"
        if state is None or code is None:
            with contextlib.suppress(OSError, ValueError):
                code = int(rc_file.read_text().strip())
        if state == "TIMEOUT":
            return JobOutcome(code, wall, timed_out=True)
        if state == "OUT_OF_MEMORY":
            return JobOutcome(code, wall, oom=True)
        if state in _INFRA_END:
            who = "the executor" if cancelled else "Slurm or an administrator"
            return JobOutcome(code, wall, infra_error=f"job {job_id} ended {state} (by {who})")
        if state is None and code is None:
            return JobOutcome(
                None,
                wall,
                infra_error=f"lost track of job {job_id}: Slurm forgot it and it left no exit code",
            )
        return JobOutcome(code, wall)
