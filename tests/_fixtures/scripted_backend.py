"""The real `sandbox.Executor` over a scripted, in-process `sandbox.Backend` (no subprocess).

Session tests need a test to run in milliseconds, yet what they check — which pairs are reused
on resume, how a failure is classified, what a record holds — is the executor's to decide. So
only the backend is fake: it "runs" each job by writing what the job's script would leave
behind (a state file every job passes on through ``needs``, ``failure.json`` for a failing job,
``metrics.json`` for an evaluation job) and the log the supervisor would keep. The executor is
the real one: its levels, cache keys, resume records and failure classification.

A job's role comes from its `JobSpec`: ``stage: preflight`` jobs pass or fail as ``preflight``
says; jobs reporting metrics are trusted evaluations; every other job is a training job and
takes the next scripted outcome. Metric values are a deterministic function of the edited files
(chained through ``needs``) and the seed, so different code gives different numbers.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from sandbox import (
    Backend,
    Executor,
    Job,
    JobOutcome,
    JobSpec,
    ProgressCallback,
    TestRequest,
    TestResult,
)

#: What a training job does: finish, fail (exit 1 with its own reason), or be lost by the
#: infrastructure (as a supervisor that lost its node reports it).
Outcome = Literal["ok", "failed", "infra_error"]

STATE_FILE = "state.json"
PREFLIGHT_ERROR = "NameError: name 'mathh' is not defined"


def fake_metrics(digest: str, names: list[str], seed: int) -> dict[str, float]:
    """Numbers that depend on the code (``digest``) and the seed, like real ones would."""
    base = int(digest[:2], 16) / 255 + seed % 7 / 100
    return {name: round(3.0 + i + base, 4) for i, name in enumerate(names)}


class ScriptedBackend(Backend):
    """Runs each job in process by writing the outputs its script would; see the module doc.

    ``outcomes`` are consumed one per training job run (a pair the executor reuses runs
    nothing, so consumes nothing); when none are left a training job succeeds. Training jobs
    sleep ``delay_s`` (so a test can be killed while one runs). ``ran`` lists every job run.
    A `Job` does not carry its `JobSpec`: ``specs`` (label → spec) is filled from each request
    by `RecordingExecutor`.
    """

    name = "scripted"

    def __init__(
        self,
        outcomes: Iterable[Outcome] = (),
        *,
        preflight: Literal["ok", "failed"] = "ok",
        delay_s: float = 0.0,
    ) -> None:
        self.outcomes = list(outcomes)
        self.preflight = preflight
        self.delay_s = delay_s
        self.specs: dict[str, JobSpec] = {}
        self.ran: list[Job] = []
        self._lock = threading.Lock()

    def runs_of(self, label: str, seed: int) -> list[Path]:
        """The output directories of every run of (``label``, ``seed``), in order."""
        return [job.out_dir for job in self.ran if (job.label, job.seed) == (label, seed)]

    def run_job(self, job: Job, on_line: Callable[[str], None] | None = None) -> JobOutcome:
        spec = self.specs[job.label]
        with self._lock:
            self.ran.append(job)
            if spec.stage == "preflight":
                outcome: Outcome = self.preflight
            elif spec.metrics:
                outcome = "ok"
            else:
                outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        lines = [f"{job.label} seed {job.seed}: started"]
        if outcome == "infra_error":
            job.log_path.write_text("\n".join(lines) + "\n")
            return JobOutcome(None, 0.01, infra_error="node lost (simulated)")
        if spec.stage != "preflight" and not spec.metrics:
            time.sleep(self.delay_s)
        if outcome == "failed":
            reason = PREFLIGHT_ERROR if spec.stage == "preflight" else "boom"
            (job.out_dir / "failure.json").write_text(json.dumps({"reason": reason}))
            lines.append(f"Traceback: {reason}")
            job.log_path.write_text("\n".join(lines) + "\n")
            return JobOutcome(1, 0.01)
        digest = _digest(job)
        (job.out_dir / STATE_FILE).write_text(json.dumps({"digest": digest}))
        if spec.metrics:
            metrics = fake_metrics(digest, spec.metrics, job.seed)
            doc = {
                "schema_version": 1,
                "seed": job.seed,
                "profile": job.env["PB_PROFILE"],
                "metrics": metrics,
                "dataset_source": "offline",
            }
            (job.out_dir / "metrics.json").write_text(json.dumps(doc))
            lines.append(f"metrics: {metrics}")
        else:
            lines.append("TRAIN_METRICS: step=80, train_loss=3.5")
        job.log_path.write_text("\n".join(lines) + "\n")
        for line in lines:
            if on_line is not None:
                on_line(line)
        return JobOutcome(0, 0.01)


def _digest(job: Job) -> str:
    """What this job's outputs are a function of: its files, seed and the outputs it read."""
    needs = {
        label: json.loads((path / STATE_FILE).read_text())["digest"]
        for label, path in sorted(job.needs.items())
    }
    identity = {"files": job.files, "seed": job.seed, "needs": needs}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class RecordingExecutor(Executor):
    """The real `sandbox.Executor`, recording each request (``preflight_requests`` holds those
    of preflight jobs only, ``requests`` the rest) and raising ``crash`` on test requests when
    set (an executor that dies or breaks mid-test)."""

    backend: ScriptedBackend

    def __init__(self, backend: ScriptedBackend, *, crash: BaseException | None = None) -> None:
        super().__init__(backend, min_free_disk_mb=1.0)
        self.crash = crash
        self.requests: list[TestRequest] = []
        self.preflight_requests: list[TestRequest] = []

    def run(self, request: TestRequest, progress: ProgressCallback | None = None) -> TestResult:
        self.backend.specs.update({job.label: job for job in request.jobs})
        if all(job.stage == "preflight" for job in request.jobs):
            self.preflight_requests.append(request)
        else:
            self.requests.append(request)
            if self.crash is not None:
                raise self.crash
        return super().run(request, progress)


def scripted_executor(
    outcomes: Iterable[Outcome] = (),
    *,
    preflight: Literal["ok", "failed"] = "ok",
    delay_s: float = 0.0,
    crash: BaseException | None = None,
) -> RecordingExecutor:
    """A real executor over a `ScriptedBackend` (see both)."""
    backend = ScriptedBackend(outcomes, preflight=preflight, delay_s=delay_s)
    return RecordingExecutor(backend, crash=crash)
