"""The Slurm backend: one ``sbatch`` job per job, on an existing cluster.

The batch script is the supervisor's: it starts the job's workers, then the job, each in a
sandbox of its own, kills the workers when the job ends and records the job's exit status.
Slurm itself isolates nothing, so the sandbox comes from one of two places:

- ``container="apptainer"`` (or ``"singularity"``) with an image file: each process runs with
  ``--containall --no-home --net --network none --cleanenv`` in the read-only image, seeing
  only its binds (code, granted inputs, needs and the compile cache read-only, the output
  directory, its socket directories) at the paths the Docker backend uses (``/pb/...``).
- no container, only with ``allow_weak_isolation=True``: each process gets its own network,
  PID and mount namespaces (``unshare``), no capabilities and ``no_new_privs`` (``setpriv``),
  but sees the node's whole filesystem with the rights of its uid: other runs, the data home
  and the evaluation data included. Fit for trusted code and for testing the backend only.

When the harness submits as root, every process drops to the sandbox uid (61000, as in the
images) before anything of the job runs; otherwise it keeps the submitting user's uid.

Infrastructure failures, from the scheduler's view: the node failed or never booted, the job
was preempted, Slurm could never run it, the node could not start the sandbox, or this
supervisor cancelled it. COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY and whatever the job's own
exit status says are the job's outcome. Jobs are tracked with ``scontrol`` (``sacct`` needs
slurmdbd, which small clusters lack); work directories sit beside the output directories, on
the filesystem the nodes share.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
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
    IN_SANDBOX,
    INPUT_VARIABLES,
    Backend,
    BackendError,
    Job,
    JobOutcome,
    LineCallback,
    cancelled_outcome,
    job_environment,
    sandboxed_job_environment,
    sandboxed_worker_environment,
    worker_environment,
)
from sandbox._docker import SANDBOX_UID, SANDBOX_USER
from sandbox._workdir import hand_back_outputs, make_copy

ContainerRuntime = Literal["apptainer", "singularity"]

#: Job states after which a job never runs again by its own doing. CANCELLED is infrastructure
#: only when the supervisor cancelled (a job can scancel itself when it runs as its owner).
SLURM_JOB_END = frozenset(
    {"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "SPECIAL_EXIT"}
)
#: Job states after which a job never runs again by the cluster's doing (infrastructure).
SLURM_INFRA_END = frozenset({"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED"})
#: Pending reasons that can never resolve by waiting (e.g. more CPUs/GPUs than any node has).
SLURM_HOPELESS = frozenset(
    {
        "PartitionConfig",
        "BadConstraints",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "InvalidQOS",
        "InvalidAccount",
        "ReqNodeNotAvail, UnavailableNodes",
    }
)
# Paths reach sbatch, apptainer's --bind (":" and "," separate fields) and shell text (quoted).
_UNSAFE_PATH = re.compile(r"[\n\r:,]")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_/:]*$")  # scontrol's keys: CPUs/Task, ReqB:S:C:T
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Every sandboxed process starts with this (the script is an argument, never spliced in).
# No exec: this shell stays PID 1 of the namespace, so the script is an ordinary process that
# signals (its own SIGKILL included) reach, and orphans have a parent that reaps them.
# (bash execs the last command of -c itself: the exit after it prevents that.)
_RUN = "bash -c " + shlex.quote('mkdir -p "$HOME" && bash "$0"; exit $?')
#: PATH inside an apptainer image built from our GPU image (conda) or CPU image (venv).
CONTAINER_PATH = "/opt/conda/bin:/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"


def slurm_command(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client command (``sbatch``, ``scontrol``, ``scancel``…), output captured."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def scontrol_jobs(job_id: str) -> list[dict[str, str]] | None:
    """The fields of each record ``scontrol show job -o JOB_ID`` prints: one for a job, one per
    array task that started plus one for the array's still-pending tasks. ``[]`` when Slurm has
    forgotten the job, ``None`` when the controller did not answer (ask again)."""
    try:
        proc = slurm_command(["scontrol", "show", "job", "-o", job_id], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 or "JobState=" not in proc.stdout:
        return [] if "Invalid job id" in proc.stderr else None
    records = []
    for line in proc.stdout.splitlines():
        fields: dict[str, str] = {}
        key = ""
        for token in line.split():
            name, sep, value = token.partition("=")
            if sep and _FIELD_NAME.match(name):
                key, fields[name] = name, value
            elif key:  # "Reason=ReqNodeNotAvail, UnavailableNodes:…": a value with a space
                fields[key] += " " + token
        if "JobState" in fields:
            records.append(fields)
    return records


def slurm_available() -> str | None:
    """``None`` when a Slurm controller answers, else the reason it does not."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "the Slurm client commands (sbatch, squeue) are not installed"
    try:
        proc = slurm_command(["sinfo", "-h", "-o", "%P %a %D"], timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"no Slurm controller answers: {proc.stderr.strip() or 'sinfo printed nothing'}"
    return None


def _cluster_config() -> dict[str, str]:
    """The controller's configuration (``scontrol show config``), empty when unavailable."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = slurm_command(["scontrol", "show", "config"], timeout=15)
        return {
            key.strip(): value.strip()
            for key, _, value in (line.partition("=") for line in proc.stdout.splitlines())
            if value
        }
    return {}


class SlurmBackend(Backend):
    """Submits each job as an sbatch job and waits for it.

    ``partition``, ``account``, ``cpus_per_task`` and ``extra_args`` go to sbatch; ``mem`` and
    ``gpu_mem`` are the memory of jobs without / with GPUs (``--mem``; enforced only where the
    cluster confines jobs with cgroups). ``container`` + ``image`` run each process in a
    container runtime; without one the backend refuses to run unless ``allow_weak_isolation``.
    ``python`` names the interpreter on the nodes when no container is used (default: this
    one's); ``container_path`` is ``PATH`` inside the image. A controller silent for
    ``controller_timeout_s`` ends the job as an infrastructure failure.
    ``check_cluster=False`` skips asking the controller (to write batch scripts).
    """

    name = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        account: str | None = None,
        cpus_per_task: int | None = None,
        mem: str | None = None,
        gpu_mem: str | None = None,
        container: ContainerRuntime | None = None,
        image: str | None = None,
        allow_weak_isolation: bool = False,
        extra_args: list[str] | None = None,
        max_jobs: int = 32,
        poll_s: float = 1.0,
        time_grace_s: float = 120.0,
        python: str | None = None,
        container_path: str = CONTAINER_PATH,
        controller_timeout_s: float = 600.0,
        check_cluster: bool = True,
    ) -> None:
        if container is None and not allow_weak_isolation:
            raise BackendError(
                "Slurm without a container runtime gives jobs no filesystem isolation (they "
                "could read other runs and the evaluation data); use container='apptainer' "
                "with an image, or allow_weak_isolation=True for trusted code only"
            )
        if container and not image:
            raise BackendError(f"container runtime {container} needs an image")
        reason = slurm_available() if check_cluster else None
        if reason is not None:
            raise BackendError(reason)
        self.partition, self.account = partition, account
        self.cpus_per_task, self.mem, self.gpu_mem = cpus_per_task, mem, gpu_mem
        self.container, self.image = container, image
        self.extra_args = list(extra_args or [])
        self.poll_s = poll_s
        self.time_grace_s = time_grace_s
        self.container_path = container_path
        self.controller_timeout_s = controller_timeout_s
        # the cluster queues jobs itself: let the executor submit a whole group at once
        self.gpu_capacity = max_jobs
        self.cpu_slots = max_jobs
        self._bin_dir = str(Path(python or sys.executable).parent)
        # only root can hand the output directory to the sandbox uid (and must, or the job
        # would run as root); any other submitter's jobs keep its own uid
        self._as_root = os.geteuid() == 0
        self._config = _cluster_config() if check_cluster else {}
        self._lock = threading.Lock()
        self._jobs: set[str] = set()
        self._cancelled_jobs: set[str] = set()
        self._cancelled = False

    def describe(self) -> dict[str, str]:
        confined = "cgroup" in self._config.get("TaskPlugin", "")
        facts = {
            "backend": self.name,
            "partition": self.partition or "default",
            "container": f"{self.container} {self.image}" if self.container else "none",
            "user": f"{SANDBOX_UID} (dropped from root)" if self._as_root else "the submitter",
            "limits": "memory and devices confined by Slurm's cgroups"
            if confined
            else "memory and GPUs not enforced (TaskPlugin without cgroup); no process limit",
        }
        if self.container:
            facts["isolation"] = (
                "apptainer --containall --no-home --cleanenv --net --network none, "
                "read-only image; binds: code, inputs, needs and compile cache ro, out rw, socket dirs"
            )
        else:
            facts["isolation"] = (
                "WEAK: own network, PID and mount namespaces, no capabilities, no_new_privs; "
                "the node's whole filesystem is visible with the job's uid"
            )
        return facts

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            jobs = sorted(self._jobs)
            self._cancelled_jobs.update(jobs)
        if jobs:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                slurm_command(["scancel", *jobs])

    # -- one job ----------------------------------------------------------------------------
    def run_job(self, job: Job, on_line: LineCallback | None = None) -> JobOutcome:
        start = time.monotonic()
        work = job.out_dir.parent / f".work-{job.out_dir.name}-{uuid.uuid4().hex[:8]}"
        job_id: str | None = None
        try:
            try:
                self._prepare(job, work)
                argv = [*self.sbatch_args(job, work), str(work / "job.sbatch")]
            except (OSError, ValueError, BackendError) as exc:
                return JobOutcome(
                    None, time.monotonic() - start, infra_error=f"cannot prepare the job: {exc}"
                )
            if self._cancelled:  # one flag, written under the lock by cancel()
                return cancelled_outcome()
            proc = slurm_command(argv)
            if proc.returncode != 0:
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"sbatch refused the job: {proc.stderr.strip()[:500]}",
                )
            job_id = proc.stdout.strip().split(";")[0]
            with self._lock:
                self._jobs.add(job_id)
                cancelled = self._cancelled
            if cancelled:  # cancel() ran between sbatch and here
                self.cancel()
            return self._track(job, job_id, work, on_line, start)
        finally:
            if job_id is not None:
                with self._lock:
                    self._jobs.discard(job_id)
            with contextlib.suppress(OSError):
                if job.out_dir.is_dir():
                    hand_back_outputs(job.out_dir, chown=self._as_root)
            shutil.rmtree(work, ignore_errors=True)

    def _prepare(self, job: Job, work: Path) -> None:
        """The work directory: code copies, socket and temp dirs, the batch script."""
        for path in [
            job.codebase_dir,
            job.out_dir,
            job.log_path,
            *job.inputs.values(),
            *job.needs.values(),
            *([job.compile_cache.path] if job.compile_cache else []),
            work,
        ]:
            if _UNSAFE_PATH.search(str(path.resolve())):
                raise BackendError(f"path {path} contains a character Slurm or apptainer splits on")
        for label in job.needs:
            if not _SAFE_NAME.match(label):
                raise BackendError(f"job label {label!r} cannot name a directory")
        job.out_dir.mkdir(parents=True, exist_ok=True)
        work.mkdir(mode=0o711)
        make_copy(job.codebase_dir, job.files, work / "code")
        if job.workers and job.files:  # workers run the original code
            make_copy(job.codebase_dir, {}, work / "worker-code")
        self._hand_over(job.out_dir)
        private = ["tmp", *(f"workers/{i}" for i in range(job.workers.count if job.workers else 0))]
        private += [f"worker-tmp/{i}" for i in range(job.workers.count if job.workers else 0)]
        for name in private:
            (work / name).mkdir(parents=True, exist_ok=True)
            self._hand_over(work / name)
        if job.needs and self.container is None:
            # $PB_NEEDS_DIR/<label> on the host: links to the finished jobs' outputs
            (work / "needs").mkdir()
            for label, path in job.needs.items():
                (work / "needs" / label).symlink_to(path.resolve())
        if self.container:
            for name, text in self._env_files(job, work).items():
                (work / name).write_text(text)
                (work / name).chmod(0o644)  # apptainer reads it as the sandbox user
        (work / "job.sbatch").write_text(self.batch_script(job, work))

    def _hand_over(self, path: Path) -> None:
        """Make ``path`` writable for the sandbox's uid and nobody else."""
        if self._as_root:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
        path.chmod(0o700)

    # -- the batch script -----------------------------------------------------------------
    def sbatch_args(self, job: Job, work: Path) -> list[str]:
        """sbatch's options for ``job`` (argv, never parsed from script text)."""
        minutes = max(1, math.ceil((job.time_limit_s + self.time_grace_s) / 60))
        args = [
            "sbatch",
            "--parsable",
            f"--job-name=pb-{job.label}-s{job.seed}",
            # "%" names a pattern in Slurm's file names: "%%" is a literal one
            f"--output={str(job.log_path.resolve()).replace('%', '%%')}",
            "--open-mode=append",
            f"--chdir={work.resolve()}",
            f"--time={minutes}",
            "--nodes=1",
            "--ntasks=1",
            "--export=NONE",
            # a failed node ends the job (infrastructure, rerun by the executor from a clean
            # output directory) instead of Slurm restarting it over a half-written one
            "--no-requeue",
        ]
        if job.gpus:
            args.append(f"--gres=gpu:{job.gpus}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        # at least the job's threads (where the cluster binds CPUs, torch would get fewer cores
        # than threads); the count of threads itself is the job's, never the allocation's
        args.append(f"--cpus-per-task={max(self.cpus_per_task or 1, job.threads)}")
        mem = self.gpu_mem if job.gpus else self.mem
        if mem:
            args.append(f"--mem={mem}")
        return [*args, *self.extra_args]

    def batch_script(self, job: Job, work: Path) -> str:
        """The batch script: start the workers, run the job, stop the workers, keep its status."""
        q = shlex.quote
        work = work.resolve()
        count = job.workers.count if job.workers else 0
        if self.container:
            probe = (
                f"{self._drop()} {self.container} exec --containall --net --network none "
                f"{q(str(self.image))} true"
            )
        else:
            probe = f"{self._unshare()} {self._drop()} true"
        gpu_env = []
        if job.gpus and self.container:
            # Slurm's GPU assignment is known only now; a file, as apptainer's --env splits on ","
            gpu_env = [
                f'printf "CUDA_VISIBLE_DEVICES=%q\\n" "${{CUDA_VISIBLE_DEVICES-}}" >> "$work/{name}"'
                for name in ("job.env", *(f"worker-{i}.env" for i in range(count)))
            ]
        lines = [
            "#!/bin/bash",
            f"# PretrainBench job {job.label}, seed {job.seed}: the supervisor's script. The job",
            "# and each worker run in a sandbox of their own, with only the variables given here.",
            "set -u",
            "umask 077",
            f"work={q(str(work))}",
            'fail() { printf "%s\\n" "$1" > "$work/setup_failed"; echo "pretrainbench: $1" >&2; exit 1; }',
            f"{probe} >/dev/null 2>&1 || fail {q('the node cannot start the sandbox (' + probe.split()[0] + ')')}",
            *gpu_env,
            "workers=()",
            'stop_workers() { for p in "${workers[@]}"; do kill -KILL -- "-$p" "$p" 2>/dev/null; done; }',
            "trap stop_workers EXIT",
        ]
        for index in range(count):
            assert job.workers is not None
            log = q(str(job.worker_log(index).resolve()))
            lines += [
                f"setsid {self._process(job, work, index, job.workers.script)} >>{log} 2>&1 </dev/null &",
                "workers+=($!)",
            ]
        lines += [
            f"{self._process(job, work, None, job.script)} </dev/null",
            "rc=$?",
            "stop_workers",
            'echo "$rc" > "$work/exit_code"',
            'exit "$rc"',
        ]
        return "\n".join(lines) + "\n"

    def _drop(self) -> str:
        """Privileges off: the sandbox uid when root submits, no capabilities, no_new_privs."""
        if self._as_root:
            return (
                f"setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_UID} --clear-groups "
                "--inh-caps=-all --bounding-set=-all --no-new-privs"
            )
        return "setpriv --no-new-privs"

    def _unshare(self, wd: Path | None = None) -> str:
        """Own network (loopback only, up: torchrun's rendezvous needs it), PID and mount
        namespaces; killed with its parent. Ends in a command prefix (``… "$@"``)."""
        userns = "" if self._as_root else " --map-current-user"
        cwd = f" --wd={shlex.quote(str(wd))}" if wd else ""
        up = shlex.quote('ip link set lo up 2>/dev/null; exec "$@"')
        return f"unshare{userns} --mount --net --pid --fork --kill-child --mount-proc{cwd} sh -c {up} sh"

    def _process(self, job: Job, work: Path, worker: int | None, script: str) -> str:
        """One sandboxed process (the job, or worker ``worker``) running ``script``."""
        q = shlex.quote
        run = f"{_RUN} {q(script)}"
        if self.container:
            env_file = work / ("job.env" if worker is None else f"worker-{worker}.env")
            binds = " ".join(f"--bind {q(b)}" for b in self._binds(job, work, worker))
            return (
                f"{self._drop()} {self.container} exec --containall --no-home --cleanenv "
                f"--net --network none{' --nv' if job.gpus else ''} --pwd {IN_SANDBOX.code} "
                f"--env-file {q(str(env_file))} {binds} {q(str(self.image))} {run}"
            )
        code = work / ("worker-code" if worker is not None and job.files else "code")
        env = self._host_env(job, work, worker)
        assignments = " ".join(f"{k}={q(v)}" for k, v in sorted(env.items()))
        if job.gpus:  # Slurm's assignment, known only when the job runs
            assignments += ' CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"'
        return f"{self._unshare(code)} {self._drop()} env -i {assignments} {run}"

    def _host_env(self, job: Job, work: Path, worker: int | None) -> dict[str, str]:
        """Environment of a process without a container: host paths."""
        path = f"{self._bin_dir}:/usr/local/bin:/usr/bin:/bin"
        needs_dir = str(work / "needs") if job.needs else None
        if worker is not None:
            tmp = str(work / "worker-tmp" / str(worker))
            env = worker_environment(
                job,
                worker,
                path=path,
                tmpdir=tmp,
                worker_dir=str(work / "workers" / str(worker)),
                needs_dir=needs_dir,
            )
        else:
            for name in job.inputs:
                if name not in INPUT_VARIABLES:
                    raise BackendError(f"unknown data input {name!r}")
            env = job_environment(
                job,
                path=path,
                home=str(work / "tmp" / "home"),
                tmpdir=str(work / "tmp"),
                out_dir=str(job.out_dir.resolve()),
                inputs={name: str(p.resolve()) for name, p in job.inputs.items()},
                needs_dir=needs_dir,
                workers_dir=str(work / "workers") if job.workers else None,
                compile_cache_dir=str(job.compile_cache.path) if job.compile_cache else None,
            )
        return {**env, **self._common_env(job)}

    def _env_files(self, job: Job, work: Path) -> dict[str, str]:
        """apptainer's ``--env-file`` of the job and of each worker: paths inside the image."""
        for name in job.inputs:
            if name not in INPUT_VARIABLES:
                raise BackendError(f"unknown data input {name!r}")
        envs = {
            "job.env": sandboxed_job_environment(
                job, path=self.container_path, home=f"{IN_SANDBOX.tmp}/home"
            )
        }
        for index in range(job.workers.count if job.workers else 0):
            envs[f"worker-{index}.env"] = sandboxed_worker_environment(
                job, index, path=self.container_path
            )
        return {
            name: "".join(
                f"{k}={shlex.quote(v)}\n"
                for k, v in sorted({**env, **self._common_env(job)}.items())
            )
            for name, env in envs.items()
        }

    def _common_env(self, job: Job) -> dict[str, str]:
        env = {"USER": SANDBOX_USER, "LOGNAME": SANDBOX_USER}  # getpass() in torch.compile
        if job.gpus:
            env["PB_NPROC"] = job.env.get("PB_NPROC", str(job.gpus))
        return env

    def _binds(self, job: Job, work: Path, worker: int | None) -> list[str]:
        """apptainer ``--bind`` specs (``src:dest:opts``) of the job or of worker ``worker``."""
        needs = [f"{p.resolve()}:{IN_SANDBOX.needs}/{label}:ro" for label, p in job.needs.items()]
        if worker is not None:
            code = work / ("worker-code" if job.files else "code")
            return [
                f"{code}:{IN_SANDBOX.code}:ro",
                *needs,
                f"{work / 'workers' / str(worker)}:{IN_SANDBOX.worker}:rw",
            ]
        count = job.workers.count if job.workers else 0
        return [
            f"{work / 'code'}:{IN_SANDBOX.code}:ro",
            f"{job.out_dir.resolve()}:{IN_SANDBOX.out}:rw",
            *(f"{p.resolve()}:{IN_SANDBOX.data}/{name}:ro" for name, p in job.inputs.items()),
            *needs,
            *(f"{work / 'workers' / str(i)}:{IN_SANDBOX.workers}/{i}:rw" for i in range(count)),
            *(
                [f"{job.compile_cache.path.resolve()}:{IN_SANDBOX.compile_cache}:ro"]
                if job.compile_cache
                else []
            ),
        ]

    # -- tracking ---------------------------------------------------------------------------
    def _state(self, job_id: str) -> tuple[str | None, str, str | None]:
        """(state, reason, exit code "X:Y") of a job, ``state`` None when Slurm forgot it."""
        records = scontrol_jobs(job_id)
        if records is None:
            return "UNKNOWN", "", None  # the controller did not answer: ask again
        if not records:
            return None, "", None
        fields = records[0]
        return fields.get("JobState"), fields.get("Reason", ""), fields.get("ExitCode")

    def _track(
        self, job: Job, job_id: str, work: Path, on_line: LineCallback | None, start: float
    ) -> JobOutcome:
        offset = 0
        buf = b""

        def follow() -> None:
            nonlocal offset, buf
            if on_line is None or not job.log_path.is_file():
                return
            with job.log_path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read(1 << 20)
            offset += len(data)
            *lines, buf = (buf + data).split(b"\n")
            if len(buf) > 1 << 16:  # output without newlines must not grow memory
                lines.append(buf)
                buf = b""
            for raw in lines:
                with contextlib.suppress(Exception):
                    on_line(raw.decode("utf-8", "replace").rstrip("\r"))

        running_since: float | None = None
        answered = time.monotonic()
        timed_out = False
        state: str | None = "PENDING"
        exit_code: str | None = None
        while True:
            follow()
            state, reason, exit_code = self._state(job_id)
            if state is None or state in SLURM_JOB_END or state in SLURM_INFRA_END:
                break
            if state != "UNKNOWN":
                answered = time.monotonic()
            elif time.monotonic() - answered > self.controller_timeout_s:
                self._scancel(job_id)
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"the Slurm controller stopped answering about job {job_id}",
                )
            if state == "PENDING" and reason in SLURM_HOPELESS:
                self._scancel(job_id)
                return JobOutcome(
                    None,
                    time.monotonic() - start,
                    infra_error=f"Slurm can never run job {job_id} (Reason={reason})",
                )
            if state == "RUNNING" and running_since is None:
                running_since = time.monotonic()
            if running_since and time.monotonic() > running_since + job.time_limit_s:
                timed_out = True
                self._scancel(job_id)
            time.sleep(self.poll_s)
        time.sleep(0.2)
        follow()
        return self._ended(job_id, work, state, exit_code, timed_out, time.monotonic() - start)

    def _ended(
        self,
        job_id: str,
        work: Path,
        state: str | None,
        exit_code: str | None,
        timed_out: bool,
        wall: float,
    ) -> JobOutcome:
        """The outcome of a job that left the queue, from its last state and exit code (the
        supervisor's observations decide what is an infrastructure failure)."""
        with self._lock:
            ours = job_id in self._cancelled_jobs
        code: int | None = None
        if exit_code and ":" in exit_code:
            rc, sig = (int(x) for x in exit_code.split(":", 1))
            code = 128 + sig if sig else rc
        if state is None or code is None:
            with contextlib.suppress(OSError, ValueError):
                code = int((work / "exit_code").read_text().strip())
        if ours:
            return JobOutcome(code, wall, infra_error="the supervisor cancelled the job")
        if (work / "setup_failed").is_file() and self._markers_trusted:
            why = (work / "setup_failed").read_text(errors="replace").strip()[:300]
            return JobOutcome(None, wall, infra_error=f"job {job_id}: {why}")
        if state in SLURM_INFRA_END:
            return JobOutcome(code, wall, infra_error=f"Slurm ended job {job_id} {state}")
        if timed_out or state == "TIMEOUT":
            return JobOutcome(code, wall, timed_out=True)
        if state == "OUT_OF_MEMORY":
            return JobOutcome(code, wall, oom=True)
        if state is None and code is None:
            return JobOutcome(
                None,
                wall,
                infra_error=f"lost track of job {job_id}: Slurm forgot it and it left no exit code",
            )
        notes: tuple[str, ...] = ()
        if state == "CANCELLED":
            notes = (f"job {job_id} was cancelled by someone other than the supervisor",)
        return JobOutcome(code, wall, notes=notes)

    @property
    def _markers_trusted(self) -> bool:
        # The work directory is out of the job's reach in a container, or when the job runs
        # under the sandbox uid; a weakly isolated job of the submitter's uid could forge it.
        return self.container is not None or self._as_root

    def _scancel(self, job_id: str) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            slurm_command(["scancel", job_id])
