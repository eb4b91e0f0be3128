"""The executor: every (job, seed) of a test, in ``needs`` order, with resume and cache."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sandbox._backend import Backend, Job, JobOutcome, Workers
from sandbox._cache import ResultCache, cache_key, link_tree
from sandbox._compile_cache import COMPILE_OUTPUT, prepare_compile_cache, publish_compile_cache
from sandbox._files import write_atomic
from sandbox._models import (
    DataPaths,
    JobSpec,
    ProgressCallback,
    ProgressEvent,
    Resources,
    SeedResult,
    Status,
    TestRequest,
    TestResult,
    format_duration,
    job_levels,
)
from sandbox._results import (
    LOG_FILE,
    MetricsError,
    last_error_line,
    read_curve,
    read_failure,
    read_metrics,
    tail_text,
    untrusted_json,
)
from sandbox._workdir import fingerprint_dir, hash_tree, tree_usage

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "PB_PROGRESS "
_MAX_COUNTED_ENTRIES = 1_000_000  # a job's output is measured up to this many entries


def parse_progress(line: str, setting: str, seed: int, started: float) -> ProgressEvent | None:
    """A ``PB_PROGRESS {json}`` log line as a display-only event (``None`` for other lines)."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        doc = untrusted_json(line[len(PROGRESS_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None

    def num(key: str) -> float | None:
        value = doc.get(key)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    step, max_steps = num("step"), num("max_steps")
    eta = num("eta_s")
    if eta is None and step and max_steps and step > 0:
        eta = (time.monotonic() - started) / step * max(0.0, max_steps - step)
    return ProgressEvent(
        setting=setting,
        seed=seed,
        phase="running",
        step=int(step) if step is not None else None,
        max_steps=int(max_steps) if max_steps is not None else None,
        loss=num("loss"),
        tokens_per_s=num("tokens_per_s"),
        eta_s=eta,
    )


def pair_dir(out_dir: Path, label: str, seed: int) -> Path:
    """Where a (job, seed)'s outputs live inside a test directory."""
    return out_dir / label / f"seed_{seed}"


def log_path(out_dir: Path, label: str, seed: int) -> Path:
    """The supervisor's log of a (job, seed), beside (not inside) the dir the job may write."""
    return out_dir / label / f"seed_{seed}.log"


def record_path(out_dir: Path, label: str, seed: int) -> Path:
    """The executor's record of a finished pair, beside (not inside) the dir the job may write."""
    return out_dir / label / f"seed_{seed}.result.json"


class Executor:
    """Runs tests on a backend; see ``docs/INTERFACES.md`` section 2.

    ``time_grace_s`` is added to each setting's time limit (start-up slack, as MLS-Bench adds
    300 s); ``max_parallel`` caps jobs running at once within a group (default: what the
    backend's GPUs / CPU slots allow); a pair does not start (``infra_error``) with less than
    twice ``min_free_disk_mb`` free where its outputs go, and each job's output is capped at its
    share of the free space less ``min_free_disk_mb`` (the reserve for logs and records).
    """

    def __init__(
        self,
        backend: Backend,
        cache_dir: Path | None = None,
        *,
        time_grace_s: float = 0.0,
        max_parallel: int | None = None,
        min_free_disk_mb: float = 1024.0,
    ) -> None:
        self.backend = backend
        self.min_free_disk_mb = min_free_disk_mb
        self.cache = ResultCache(cache_dir) if cache_dir is not None else None
        self.time_grace_s = time_grace_s
        self.max_parallel = max_parallel
        self._slots = threading.Condition()
        self._free_gpus = backend.gpu_capacity
        self._free_cpu = backend.cpu_slots

    @property
    def _capacity(self) -> int:
        """How many jobs the backend can run at once (its CPU slots and GPUs)."""
        return max(1, self.backend.cpu_slots + self.backend.gpu_capacity)

    def cancel(self) -> None:
        """Stop every job in flight; their pairs, and any not started yet, end as ``infra_error``.

        Final: the backend refuses new jobs afterwards (make a new one to run again).
        """
        self.backend.cancel()

    # -- the whole test -----------------------------------------------------------------
    def run(self, request: TestRequest, progress: ProgressCallback | None = None) -> TestResult:
        """Run (or resume, or serve from the cache) every (setting, seed) of ``request``."""
        start = time.monotonic()
        levels = job_levels(request.jobs)
        # absolute: backends mount these into sandboxes whose working directory is elsewhere
        request = request.model_copy(
            update={
                "out_dir": request.out_dir.resolve(),
                "codebase_dir": request.codebase_dir.resolve(),
            }
        )
        try:
            request.out_dir.mkdir(parents=True, exist_ok=True)
            codebase_version = hash_tree(request.codebase_dir)
        except OSError as exc:
            return TestResult(
                status="infra_error",
                reason=f"cannot prepare the test directory: {exc.strerror or exc}",
                elapsed_s=time.monotonic() - start,
            )
        keys: dict[tuple[str, int], str] = {}
        results: dict[tuple[str, int], SeedResult] = {}
        # in level order, so that the keys of a job's needs exist before its own is made
        for job in sorted(request.jobs, key=lambda j: levels[j.label]):
            for seed in request.seeds:
                keys[(job.label, seed)] = cache_key(
                    files=request.files if job.code == "edited" else {},
                    job=job,
                    seed=seed,
                    profile=request.profile,
                    codebase_version=codebase_version,
                    data_fingerprint=_data_fingerprint(request.data, job),
                    env=request.env,
                    needs_keys=[keys[(n, seed)] for n in job.needs],
                )
        for level in sorted(set(levels.values())):
            pairs = [
                (j, seed)
                for j in request.jobs
                if levels[j.label] == level
                for seed in request.seeds
            ]
            workers = self.max_parallel or self._capacity
            with ThreadPoolExecutor(max_workers=min(workers, len(pairs)) or 1) as pool:
                futures = {
                    (j.label, seed): pool.submit(
                        self._run_pair, request, j, seed, keys[(j.label, seed)], results, progress
                    )
                    for j, seed in pairs
                }
                for pair, fut in futures.items():
                    try:
                        results[pair] = fut.result()
                    except Exception as exc:  # a bug or lost backend: never the submission's fault
                        log.exception("executor lost pair %s", pair)
                        results[pair] = SeedResult(
                            setting=pair[0],
                            seed=pair[1],
                            status="infra_error",
                            reason=f"executor error: {type(exc).__name__}",
                        )
        ordered = [results[(j.label, seed)] for j in request.jobs for seed in request.seeds]
        status, reason = _overall(ordered)
        return TestResult(
            status=status,
            reason=reason,
            results=ordered,
            elapsed_s=round(time.monotonic() - start, 3),
            cached=bool(ordered) and all(r.cached for r in ordered),
        )

    # -- one (setting, seed) ----------------------------------------------------------------
    def _run_pair(
        self,
        request: TestRequest,
        spec: JobSpec,
        seed: int,
        key: str,
        results: dict[tuple[str, int], SeedResult],
        progress: ProgressCallback | None,
    ) -> SeedResult:
        label = spec.label
        out = pair_dir(request.out_dir, label, seed)
        emit = _safe(progress)

        reused = self._reuse(request, label, seed, key, emit)
        if reused is not None:
            return reused

        needs = _needed_outputs(request, spec, seed, results)
        if isinstance(needs, SeedResult):
            return needs
        inputs, missing = _granted_inputs(spec, request.data)
        if missing:
            # the harness's data, not the submission: never charged, and no host path is named
            return _infra(
                label,
                seed,
                f"infrastructure: the prepared {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing (run `runner setup`)",
            )

        shutil.rmtree(out, ignore_errors=True)  # a half-finished earlier attempt
        try:
            out.mkdir(parents=True, exist_ok=True)
            free_mb = shutil.disk_usage(out).free / 2**20
        except OSError as exc:
            return _infra(
                label,
                seed,
                f"infrastructure: cannot create the job's output directory: {exc.strerror}",
            )
        if free_mb < 2 * self.min_free_disk_mb:
            return _infra(label, seed, f"infrastructure: disk almost full ({free_mb:.0f} MB free)")
        # preflight jobs run agent code not yet checked and never compile: no cache for them
        compile_cache = request.data.compile_cache if spec.stage == "test" else None
        if compile_cache is not None:
            try:
                prepare_compile_cache(compile_cache.path)
            except OSError as exc:
                log.warning("no compile cache for %s seed %s: %s", label, seed, exc)
                compile_cache = None
        # A job may not fill the disk its result is recorded on: its share of the free space,
        # less a reserve for the logs and records, caps its output (a limit it cannot leave).
        output_cap_mb = int((free_mb - self.min_free_disk_mb) / self._capacity)
        job = Job(
            label=label,
            seed=seed,
            script=spec.script,
            codebase_dir=request.codebase_dir,
            files=request.files if spec.code == "edited" else {},
            out_dir=out,
            log_path=log_path(request.out_dir, label, seed),
            time_limit_s=spec.time_limit_s + self.time_grace_s,
            inputs=inputs,
            needs=needs,
            workers=Workers(spec.workers.script, spec.workers.count) if spec.workers else None,
            gpus=spec.gpus,
            threads=spec.threads,
            max_output_mb=output_cap_mb,
            compile_cache=compile_cache,
            env={
                **request.env,
                **spec.env,
                "PB_PROFILE": request.profile,
                "PB_EVAL_SOURCE": request.data.eval_source,
            },
        )
        outcome = self._run_job(job, spec, progress, emit)
        result = self._settle(request, spec, key, job, outcome, output_cap_mb)
        emit(ProgressEvent(setting=label, seed=seed, phase="done", message=result.status))
        return result

    def _reuse(
        self, request: TestRequest, label: str, seed: int, key: str, emit: ProgressCallback
    ) -> SeedResult | None:
        """This pair's result when it finished in an earlier attempt or is in the cache."""
        out = pair_dir(request.out_dir, label, seed)
        record = record_path(request.out_dir, label, seed)
        previous = _load_record(record, key)
        if previous is not None:
            emit(
                ProgressEvent(
                    setting=label, seed=seed, phase="done", message="finished earlier, reused"
                )
            )
            return previous
        if self.cache is None or (hit := self.cache.lookup(key)) is None:
            return None
        cached, cached_out = hit
        shutil.rmtree(out, ignore_errors=True)
        link_tree(cached_out, out)
        cached_log = log_path(request.out_dir, label, seed)
        with contextlib.suppress(OSError):
            shutil.copyfile(cached_out.parent / LOG_FILE, cached_log)
        result = cached.model_copy(update={"cached": True, "log_path": str(cached_log)})
        _write_record(record, key, result)
        emit(ProgressEvent(setting=label, seed=seed, phase="done", message="served from the cache"))
        return result

    def _run_job(
        self,
        job: Job,
        spec: JobSpec,
        progress: ProgressCallback | None,
        emit: ProgressCallback,
    ) -> JobOutcome:
        """The job through the backend, in a free slot, its progress lines forwarded."""
        label, seed = job.label, job.seed
        emit(ProgressEvent(setting=label, seed=seed, phase="queued"))
        with self._slot(spec.gpus):
            started = time.monotonic()
            emit(ProgressEvent(setting=label, seed=seed, phase="running", message="started"))

            def on_line(line: str) -> None:
                if (
                    progress is not None
                    and (event := parse_progress(line, label, seed, started)) is not None
                ):
                    emit(event)

            try:
                outcome = self.backend.run_job(job, on_line)
            except Exception as exc:
                log.exception("backend %s failed on %s seed %s", self.backend.name, label, seed)
                outcome = JobOutcome(
                    None,
                    time.monotonic() - started,
                    infra_error=f"the {self.backend.name} backend failed ({type(exc).__name__})",
                )
        return outcome

    def _settle(
        self,
        request: TestRequest,
        spec: JobSpec,
        key: str,
        job: Job,
        outcome: JobOutcome,
        output_cap_mb: int,
    ) -> SeedResult:
        """The finished job's result: output cap enforced, classified, recorded, cached."""
        label, seed, out = job.label, job.seed, job.out_dir
        record = record_path(request.out_dir, label, seed)
        used_mb = tree_usage(out, _MAX_COUNTED_ENTRIES)[0] / 2**20
        if used_mb > output_cap_mb:
            # Past its share of the disk (a backend polls, so a fast writer overshoots): whatever
            # failed to be written after that is the job's doing, not the infrastructure's. Its
            # output goes, so that its result (and the session) can be recorded.
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True, exist_ok=True)
            outcome = dataclasses.replace(
                outcome,
                infra_error=None,
                limit=f"output size: {used_mb:.0f} MB, more than the {output_cap_mb} MB the job "
                "may write here (its output was deleted)",
            )
        try:
            result = self._classify(request, spec, seed, job, outcome)
        except Exception as exc:
            # Classifying reads only what the job left behind: whatever breaks it is the job's.
            log.exception("cannot classify %s seed %s", label, seed)
            result = SeedResult(
                setting=label,
                seed=seed,
                status="infra_error" if outcome.infra_error else "failed",
                reason=outcome.infra_error
                or f"the job's outputs could not be read ({type(exc).__name__})",
                elapsed_s=round(outcome.wall_s, 3),
                log_path=str(job.log_path),
            )
        if job.compile_cache is not None and job.compile_cache.writable:
            _publish(job.compile_cache.path, out / COMPILE_OUTPUT, result.status == "ok")
        try:
            _write_record(record, key, result)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or "I/O error")
            result = result.model_copy(
                update={"status": "infra_error", "reason": f"cannot record the result: {reason}"}
            )
        if self.cache is not None and result.status != "infra_error" and not outcome.timed_out:
            with contextlib.suppress(OSError):
                self.cache.store(key, result, out, job.log_path)
        return result

    def _classify(
        self, request: TestRequest, spec: JobSpec, seed: int, job: Job, outcome: JobOutcome
    ) -> SeedResult:
        """The job's status from what the supervisor observed and the files trusted code wrote.

        A failure's reason is the job's own ``failure.json`` (capped; for a job that runs agent
        code that is agent text, which only ever goes back to the same agent) or what the
        supervisor saw; the log is read for a reason only when the job's log may be shown anyway.
        """
        out = job.out_dir
        tail = tail_text(job.log_path) if spec.show_log else ""
        resources = Resources(
            wall_s=round(outcome.wall_s, 3),
            gpus=spec.gpus,
            gpu_type=outcome.gpu_type,
            peak_mem_mb=outcome.peak_mem_mb,
        )
        base: dict[str, Any] = {
            "setting": spec.label,
            "seed": seed,
            "elapsed_s": round(outcome.wall_s, 3),
            "log_path": str(job.log_path),
            "log_tail": tail,
            "curve": read_curve(out) if spec.show_log else [],
            "resources": resources,
        }
        if outcome.infra_error:
            return SeedResult(
                status="infra_error", reason=f"infrastructure: {outcome.infra_error}", **base
            )
        failure = read_failure(out)
        reason: str | None = None
        if outcome.timed_out:
            reason = f"timeout: exceeded the time limit of {format_duration(spec.time_limit_s)}"
        elif outcome.oom:
            reason = f"out of memory: the job exceeded the sandbox memory limit (peak {outcome.peak_mem_mb or 0:.0f} MB)"
        elif outcome.limit:
            reason = f"limit: {outcome.limit}"
        elif outcome.exit_code != 0:
            detail = failure or (last_error_line(tail) if tail else None)
            reason = f"exit code {outcome.exit_code}: {detail or 'no error message'}"
        if reason is not None:
            notes = "; ".join(outcome.notes)
            if notes and not outcome.timed_out and not outcome.oom:
                reason += f" ({notes})"
            return SeedResult(status="failed", reason=reason, **base)
        if not spec.metrics:
            return SeedResult(status="ok", **base)
        try:
            metrics, stderr, source = read_metrics(out, spec, seed, request.profile)
        except MetricsError as exc:
            return SeedResult(status="failed", reason=f"no valid metrics: {exc}", **base)
        # The data identity counts only from a job that read the training data itself: another
        # evaluation can only repeat what the training job (possibly agent code) claimed.
        identity = source if "train_data" in spec.inputs else None
        return SeedResult(
            status="ok", metrics=metrics, stderr=stderr, dataset_source=identity, **base
        )

    @contextlib.contextmanager
    def _slot(self, gpus: int) -> Any:
        """Wait until the backend has room for a job needing ``gpus`` GPUs (0: a CPU slot)."""
        need_gpu = min(gpus, self.backend.gpu_capacity) if gpus else 0
        with self._slots:
            while not (self._free_gpus >= need_gpu if gpus else self._free_cpu > 0):
                self._slots.wait()
            if gpus:
                self._free_gpus -= need_gpu
            else:
                self._free_cpu -= 1
        try:
            yield
        finally:
            with self._slots:
                if gpus:
                    self._free_gpus += need_gpu
                else:
                    self._free_cpu += 1
                self._slots.notify_all()


_INPUT_NAMES = {
    "train_data": "training data",
    "eval_data": "evaluation data",
    "tokenizer": "tokenizer",
    "hf_home": "Hugging Face cache",
}


def _job_inputs(spec: JobSpec, data: DataPaths) -> list[tuple[str, Path | None]]:
    """Each data input a job declares, as the name it is granted under and its host directory.

    ``eval_data`` means the evaluation sets wherever they come from: the offline sets, or the
    prepared Hugging Face cache (granted as ``hf_home``) when the source is ``hf``.
    """
    where: dict[str, Path | None] = {
        "train_data": data.data_dir,
        "eval_data": data.eval_data_dir,
        "tokenizer": data.tokenizer_dir,
        "hf_home": data.hf_home,
    }
    inputs: list[tuple[str, Path | None]] = []
    for name in spec.inputs:
        if name == "eval_data" and data.eval_source == "hf":
            name = "hf_home"
        inputs.append((name, where[name]))
    return inputs


def _granted_inputs(spec: JobSpec, data: DataPaths) -> tuple[dict[str, Path], list[str]]:
    """The host directories of the data inputs a job declares, and the names of missing ones."""
    granted: dict[str, Path] = {}
    missing: list[str] = []
    for name, path in _job_inputs(spec, data):
        if path is None or not path.is_dir():
            missing.append(_INPUT_NAMES[name])
        else:
            granted[name] = path.resolve()
    return granted, missing


def _overall(results: list[SeedResult]) -> tuple[Status, str | None]:
    for status in ("infra_error", "failed"):
        bad = [r for r in results if r.status == status]
        if bad:
            return bad[0].status, f"{bad[0].setting} (seed {bad[0].seed}): {bad[0].reason}"
    return "ok", None


def _data_fingerprint(data: DataPaths, spec: JobSpec) -> str:
    """The data one job reads (only the inputs it declares), as one string for its cache key.

    Per job, so that new evaluation sets re-run the evaluations but not the training that
    never read them.
    """
    parts = [
        f"{name}={fingerprint_dir(path)}"
        for name, path in sorted(_job_inputs(spec, data), key=lambda i: i[0])
    ]
    if "eval_data" in spec.inputs:
        parts.insert(0, f"eval_source={data.eval_source}")
    return "|".join(parts)


def _needed_outputs(
    request: TestRequest, spec: JobSpec, seed: int, results: dict[tuple[str, int], SeedResult]
) -> dict[str, Path] | SeedResult:
    """The output directories of the jobs ``spec`` needs, or the result of a pair that cannot
    run because one of them did not succeed."""
    needs: dict[str, Path] = {}
    for need in spec.needs:
        needed = results.get((need, seed))
        if needed is None:
            needed = _load_record(record_path(request.out_dir, need, seed), None)
        if needed is None or needed.status != "ok":
            status: Status = needed.status if needed is not None else "infra_error"
            why = needed.reason if needed is not None else "it did not run"
            return SeedResult(
                setting=spec.label,
                seed=seed,
                status=status,
                reason=f"needs {need} (seed {seed}), which did not succeed: {why}",
            )
        needs[need] = pair_dir(request.out_dir, need, seed)
    return needs


def _publish(cache: Path, staged: Path, ok: bool) -> None:
    """Add a trusted job's compiled files to the shared cache (only when it ended ``ok``), then
    remove them from its outputs: they are not a result, and no later job reads them there."""
    try:
        if ok and staged.is_dir() and not staged.is_symlink():
            copied = publish_compile_cache(staged, cache)
            log.info("compile cache %s: %d new files", cache, copied)
    except OSError as exc:  # a cache that is not kept costs time, never a result
        log.warning("cannot publish to the compile cache %s: %s", cache, exc)
    finally:
        if staged.is_symlink():
            staged.unlink()
        else:
            shutil.rmtree(staged, ignore_errors=True)


def _infra(label: str, seed: int, reason: str) -> SeedResult:
    """A pair that could not run, through no fault of the submission."""
    return SeedResult(setting=label, seed=seed, status="infra_error", reason=reason)


def _load_record(path: Path, key: str | None) -> SeedResult | None:
    """A finished pair's record if valid (and for the same inputs when ``key`` is given)."""
    try:
        doc = json.loads(path.read_text())
        result = SeedResult.model_validate(doc["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if result.status == "infra_error" or (key is not None and doc.get("key") != key):
        return None
    return result


def _write_record(path: Path, key: str, result: SeedResult) -> None:
    write_atomic(path, json.dumps({"key": key, "result": result.model_dump(mode="json")}, indent=1))


def _safe(progress: ProgressCallback | None) -> ProgressCallback:
    def emit(event: ProgressEvent) -> None:
        if progress is not None:
            try:
                progress(event)
            except Exception:  # a display bug must not fail a test
                log.exception("progress callback failed")

    return emit
