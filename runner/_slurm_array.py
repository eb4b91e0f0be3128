"""Many commands as one Slurm array job: what `runner sweep --sandbox slurm` submits.

One ``sbatch --array`` holds every command; array task ``i`` runs task ``i``'s argv on a compute
node as the submitting user, in the submitter's current directory, with exactly the environment
the caller gives (``--export=NONE``: nothing of this shell leaks onto the node). Each argv sits
in the batch script as a bash array of shell-quoted words, so every word arrives verbatim
(spaces, quotes and ``$(…)`` included); the script never splices text into a command line.

The commands are the harness's own (``runner run …``), not agent code: an array task is no
sandbox. A command that needs one starts it itself (``--sandbox local`` works inside a task).

Tasks are followed with ``scontrol`` (``sacct`` needs slurmdbd, which small clusters lack). A
task's outcome is what Slurm says: its state and exit code. Infrastructure (``infra=True``) is
only what the scheduler observed: the node failed or never booted, the task was preempted or
could never be scheduled, Slurm lost it, or this supervisor cancelled it (an interrupt, a
hopeless pending reason). Whatever a task prints or exits with is its own outcome.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# a controller silent this long ends the wait (the array is cancelled, its tasks infra)
_CONTROLLER_TIMEOUT_S = 600.0
# after scancel, how long to wait for Slurm to report the tasks ended
_CANCEL_WAIT_S = 30.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# a state of ours: Slurm forgot a task before its end was seen
LOST = "UNKNOWN"


@dataclass(frozen=True)
class ArrayTask:
    """One command of an array job: array index ``index`` runs ``argv``."""

    index: int
    argv: list[str]


@dataclass(frozen=True)
class ArrayTaskOutcome:
    """How an array task ended: Slurm's ``state`` (COMPLETED, FAILED, TIMEOUT, CANCELLED,
    NODE_FAIL…, or ``UNKNOWN`` when Slurm forgot it), its exit code (128 + signal when killed;
    None when it never ran), its log, and whether the end is infrastructure's doing."""

    state: str
    exit_code: int | None
    log_path: Path
    infra: bool


class SlurmArrayError(RuntimeError):
    """The array could not be submitted (bad tasks, sbatch refused it)."""


@dataclass
class _Seen:
    state: str = "PENDING"
    reason: str = ""
    exit_code: int | None = None


def run_array(
    tasks: list[ArrayTask],
    *,
    job_name: str,
    log_dir: Path,
    cpus_per_task: int,
    mem_mb: int | None,
    time_limit: str,
    max_parallel: int | None,
    env: dict[str, str],
    poll_s: float = 2.0,
    on_state: Callable[[int, str], None] | None = None,
) -> dict[int, ArrayTaskOutcome]:
    """Submit ``tasks`` as one array job and wait until every task has ended.

    Task ``i`` writes stdout and stderr to ``log_dir/<i>.log``; the batch script is
    ``log_dir/array.sbatch``. ``time_limit`` is sbatch's ``--time`` (per task), ``max_parallel``
    the array's throttle (``%N``), ``env`` the tasks' whole environment (give PATH, HOME,
    PRETRAINBENCH_HOME…). ``on_state(index, state)`` is called when a task's state changes.
    Ctrl-C or SIGTERM cancels the whole array, waits for Slurm to confirm it, and re-raises
    KeyboardInterrupt with the outcomes so far as its ``outcomes`` attribute.
    """
    from sandbox import slurm_command

    _check(tasks, job_name, log_dir, cpus_per_task, max_parallel, env)
    log_dir = log_dir.resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    script = log_dir / "array.sbatch"
    script.write_text(batch_script(tasks, env))
    argv = sbatch_args(
        tasks,
        job_name=job_name,
        log_dir=log_dir,
        cpus_per_task=cpus_per_task,
        mem_mb=mem_mb,
        time_limit=time_limit,
        max_parallel=max_parallel,
    )
    with _term_as_interrupt():
        try:
            proc = slurm_command([*argv, str(script)])
        except (OSError, subprocess.SubprocessError) as e:
            raise SlurmArrayError(f"sbatch failed: {e}") from e
        if proc.returncode != 0:
            raise SlurmArrayError(f"sbatch refused the array job: {proc.stderr.strip()[:500]}")
        job_id = proc.stdout.strip().split(";")[0]
        tracker = _Tracker(job_id, [t.index for t in tasks], log_dir, on_state)
        try:
            tracker.wait(poll_s)
        except BaseException as e:  # KeyboardInterrupt / SIGTERM: no task may outlive us
            tracker.cancel("interrupted")
            with contextlib.suppress(BaseException):
                tracker.wait(poll_s, deadline=time.monotonic() + _CANCEL_WAIT_S)
            if isinstance(e, KeyboardInterrupt):
                e.outcomes = tracker.outcomes()  # type: ignore[attr-defined]  # for the caller
            raise
        return tracker.outcomes()


def _check(
    tasks: list[ArrayTask],
    job_name: str,
    log_dir: Path,
    cpus_per_task: int,
    max_parallel: int | None,
    env: dict[str, str],
) -> None:
    indices = [t.index for t in tasks]
    if not tasks:
        raise SlurmArrayError("an array job needs at least one task")
    if len(set(indices)) != len(indices) or min(indices) < 0:
        raise SlurmArrayError(f"array indices must be distinct and >= 0: {sorted(indices)}")
    if any(not t.argv for t in tasks):
        raise SlurmArrayError("every array task needs a command")
    if not _JOB_NAME.match(job_name):
        raise SlurmArrayError(f"job name {job_name!r}: use letters, digits, '.', '_', '-'")
    if "\n" in str(log_dir) or "\r" in str(log_dir):
        raise SlurmArrayError(f"log directory {log_dir!r} holds a line break")
    if cpus_per_task < 1 or (max_parallel is not None and max_parallel < 1):
        raise SlurmArrayError("cpus_per_task and max_parallel must be at least 1")
    bad = [name for name in env if not _ENV_NAME.match(name)]
    if bad:
        raise SlurmArrayError(f"not environment variable names: {bad}")


def sbatch_args(
    tasks: list[ArrayTask],
    *,
    job_name: str,
    log_dir: Path,
    cpus_per_task: int,
    mem_mb: int | None,
    time_limit: str,
    max_parallel: int | None,
) -> list[str]:
    """sbatch's options for the array (argv, never parsed from script text)."""
    indices = ",".join(str(t.index) for t in sorted(tasks, key=lambda t: t.index))
    throttle = f"%{max_parallel}" if max_parallel else ""
    args = [
        "sbatch",
        "--parsable",
        f"--array={indices}{throttle}",
        f"--job-name={job_name}",
        # "%a" is the task index in Slurm's file names; "%%" a literal "%"
        f"--output={str(log_dir).replace('%', '%%')}/%a.log",
        f"--chdir={os.getcwd()}",
        f"--time={time_limit}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={cpus_per_task}",
        "--export=NONE",
        # a failed node ends the task (infrastructure) instead of Slurm silently rerunning it
        "--no-requeue",
    ]
    if mem_mb is not None:
        args.append(f"--mem={mem_mb}M")
    return args


def batch_script(tasks: list[ArrayTask], env: dict[str, str]) -> str:
    """The batch script: the environment, then the argv of ``$SLURM_ARRAY_TASK_ID``, run with
    ``exec`` so its exit status is the task's."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# PretrainBench array job: each task runs its own command (words quoted: data, not code).",
        "set -u",
        *(f"export {name}={q(value)}" for name, value in sorted(env.items())),
        'case "${SLURM_ARRAY_TASK_ID-}" in',
    ]
    for task in sorted(tasks, key=lambda t: t.index):
        lines.append(f"  {task.index}) argv=({' '.join(q(word) for word in task.argv)}) ;;")
    lines += [
        '  *) echo "pretrainbench: no command for array task ${SLURM_ARRAY_TASK_ID-}" >&2; exit 2 ;;',
        "esac",
        'exec "${argv[@]}"',
    ]
    return "\n".join(lines) + "\n"


def _array_indices(spec: str) -> list[int]:
    """The indices of scontrol's ArrayTaskId: ``3``, ``2,5%2``, ``0-7:2%4``…"""
    indices: list[int] = []
    for part in spec.split("%")[0].split(","):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        with contextlib.suppress(ValueError):
            indices += range(int(first), int(last or first) + 1, int(step or 1))
    return indices


def _exit_code(value: str | None) -> int | None:
    """Slurm's ``ExitCode=X:Y`` as a shell would say it (128 + signal when killed)."""
    rc, _, sig = (value or "").partition(":")
    try:
        return 128 + int(sig) if sig and int(sig) else int(rc)
    except ValueError:
        return None


class _Tracker:
    """The states of one array job's tasks, as scontrol reports them."""

    def __init__(
        self,
        job_id: str,
        indices: list[int],
        log_dir: Path,
        on_state: Callable[[int, str], None] | None,
    ) -> None:
        self.job_id = job_id
        self.log_dir = log_dir
        self.on_state = on_state
        self.seen = {index: _Seen() for index in indices}
        self.ran: set[int] = set()
        self.cancelled_by_us = False
        self.answered = time.monotonic()

    def ended(self, index: int) -> bool:
        from sandbox import SLURM_INFRA_END, SLURM_JOB_END

        return self.seen[index].state in SLURM_JOB_END | SLURM_INFRA_END | {LOST}

    def wait(self, poll_s: float, deadline: float | None = None) -> None:
        """Poll until every task has ended (or ``deadline``, a monotonic time, passed)."""
        while not all(self.ended(i) for i in self.seen):
            if deadline is not None and time.monotonic() > deadline:
                return
            self.poll()
            if all(self.ended(i) for i in self.seen):
                return
            time.sleep(poll_s)

    def poll(self) -> None:
        from sandbox import SLURM_HOPELESS, scontrol_jobs

        records = scontrol_jobs(self.job_id)
        if records is None:  # the controller did not answer
            if time.monotonic() - self.answered > _CONTROLLER_TIMEOUT_S:
                self.cancel("the Slurm controller stopped answering")
                self._lose_the_rest("the Slurm controller stopped answering")
            return
        self.answered = time.monotonic()
        listed: set[int] = set()
        for fields in records:
            indices = _array_indices(fields.get("ArrayTaskId", ""))
            for index in indices:
                if index not in self.seen:
                    continue
                listed.add(index)
                if not self.ended(index):
                    self._update(index, fields)
        hopeless = [
            s.reason
            for i, s in self.seen.items()
            if s.reason in SLURM_HOPELESS and not self.ended(i)
        ]
        if hopeless and not self.cancelled_by_us:
            reason = hopeless[0]
            self.cancel(f"Slurm can never run array job {self.job_id} (Reason={reason})")
        # ended tasks are purged after MinJobAge; a task gone before its end was seen is lost
        forgotten = [i for i in self.seen if i not in listed and not self.ended(i)]
        if forgotten:
            self._lose(forgotten, f"Slurm forgot array job {self.job_id} before its end was seen")

    def _update(self, index: int, fields: dict[str, str]) -> None:
        seen = self.seen[index]
        state = fields.get("JobState", "UNKNOWN")
        seen.reason = fields.get("Reason", "")
        if state != "PENDING" and fields.get("NodeList", "") not in ("", "(null)"):
            self.ran.add(index)  # it had a node (a pending task cancelled never gets one)
        if state != seen.state:
            seen.state = state
            seen.exit_code = _exit_code(fields.get("ExitCode")) if index in self.ran else None
            if self.on_state is not None:
                with contextlib.suppress(Exception):
                    self.on_state(index, state)

    def _lose_the_rest(self, why: str) -> None:
        self._lose([i for i in self.seen if not self.ended(i)], why)

    def _lose(self, indices: list[int], why: str) -> None:
        for index in indices:
            self.seen[index].state = LOST
            self._note(index, why)
            if self.on_state is not None:
                with contextlib.suppress(Exception):
                    self.on_state(index, LOST)

    def cancel(self, why: str) -> None:
        """scancel the whole array; every task not yet ended becomes infrastructure."""
        from sandbox import slurm_command

        self.cancelled_by_us = True
        for index in self.seen:
            if not self.ended(index):
                self._note(index, f"cancelled by the supervisor: {why}")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            slurm_command(["scancel", self.job_id])

    def _note(self, index: int, text: str) -> None:
        """A line in the task's log saying what the supervisor saw (the task never writes it
        after its end, and an infra verdict never comes from the log)."""
        with contextlib.suppress(OSError), (self.log_dir / f"{index}.log").open("a") as fh:
            fh.write(f"pretrainbench: {text}\n")

    def outcomes(self) -> dict[int, ArrayTaskOutcome]:
        from sandbox import SLURM_INFRA_END, SLURM_JOB_END

        result = {}
        for index, seen in self.seen.items():
            infra = (
                seen.state in SLURM_INFRA_END
                or seen.state == LOST
                or seen.state not in SLURM_JOB_END  # still pending/running: we stopped waiting
                or (seen.state == "CANCELLED" and self.cancelled_by_us)
            )
            result[index] = ArrayTaskOutcome(
                state=seen.state,
                exit_code=seen.exit_code,
                log_path=self.log_dir / f"{index}.log",
                infra=infra,
            )
        return result


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the array runs, unless the caller already
    handles SIGTERM (the CLI's handler does the same) or this is not the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
