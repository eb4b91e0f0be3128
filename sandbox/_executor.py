"""The executor: every (setting, seed) of a test, in group order, with resume and cache."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from sandbox._backend import Backend, JobOutcome, SettingJob
from sandbox._cache import ResultCache, cache_key, link_tree
from sandbox._models import (
    EvaluationSetting,
    ProgressCallback,
    ProgressEvent,
    Resources,
    SeedResult,
    Status,
    TestRequest,
    TestResult,
    format_duration,
)
from sandbox._results import (
    LOG_FILE,
    MetricsError,
    last_error_line,
    read_curve,
    read_failure,
    read_metrics,
    tail_text,
)
from sandbox._workdir import fingerprint_dir, hash_tree

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "PB_PROGRESS "


def parse_progress(line: str, setting: str, seed: int, started: float) -> ProgressEvent | None:
    """A ``PB_PROGRESS {json}`` log line as a display-only event (``None`` for other lines)."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        doc = json.loads(line[len(PROGRESS_PREFIX) :])
    except json.JSONDecodeError:
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
    phase: Literal["train", "eval"] = "eval" if doc.get("phase") == "eval" else "train"
    return ProgressEvent(
        setting=setting,
        seed=seed,
        phase=phase,
        step=int(step) if step is not None else None,
        max_steps=int(max_steps) if max_steps is not None else None,
        loss=num("loss"),
        tokens_per_s=num("tokens_per_s"),
        eta_s=eta,
    )


def pair_dir(out_dir: Path, label: str, seed: int) -> Path:
    """Where a (setting, seed)'s outputs live inside a test directory."""
    return out_dir / label / f"seed_{seed}"


def record_path(out_dir: Path, label: str, seed: int) -> Path:
    """The executor's record of a finished pair, beside (not inside) the dir the job may write."""
    return out_dir / label / f"seed_{seed}.result.json"


class Executor:
    """Runs tests on a backend; see ``docs/INTERFACES.md`` section 2.

    ``time_grace_s`` is added to each setting's time limit (start-up slack, as MLS-Bench adds
    300 s); ``max_parallel`` caps jobs running at once within a group (default: what the
    backend's GPUs / CPU slots allow); a pair does not start (``infra_error``) with less than
    ``min_free_disk_mb`` free where its outputs go.
    """

    def __init__(
        self,
        backend: Backend,
        cache_dir: Path | None = None,
        *,
        time_grace_s: float = 0.0,
        max_parallel: int | None = None,
        min_free_disk_mb: float = 256.0,
    ) -> None:
        self.backend = backend
        self.min_free_disk_mb = min_free_disk_mb
        self.cache = ResultCache(cache_dir) if cache_dir is not None else None
        self.time_grace_s = time_grace_s
        self.max_parallel = max_parallel
        self._slots = threading.Condition()
        self._free_gpus = backend.gpu_capacity
        self._free_cpu = backend.cpu_slots

    def cancel(self) -> None:
        """Stop every job in flight; their pairs, and any not started yet, end as ``infra_error``.

        Final: the backend refuses new jobs afterwards (make a new one to run again).
        """
        self.backend.cancel()

    # -- the whole test -----------------------------------------------------------------
    def run(self, request: TestRequest, progress: ProgressCallback | None = None) -> TestResult:
        """Run (or resume, or serve from the cache) every (setting, seed) of ``request``."""
        start = time.monotonic()
        _check_settings(request.settings)
        try:
            request.out_dir.mkdir(parents=True, exist_ok=True)
            codebase_version = hash_tree(request.codebase_dir)
        except OSError as exc:
            return TestResult(
                status="infra_error",
                reason=f"cannot prepare {request.out_dir}: {exc}",
                elapsed_s=time.monotonic() - start,
            )
        data_fp = (
            "|".join(
                fingerprint_dir(p)
                for p in (
                    request.data.data_dir,
                    request.data.eval_data_dir,
                    request.data.tokenizer_dir,
                )
            )
            + "|"
            + request.data.eval_source
        )
        keys: dict[tuple[str, int], str] = {}
        results: dict[tuple[str, int], SeedResult] = {}
        by_label = {s.label: s for s in request.settings}
        # in group order, so that a setting's `needs` key exists before its own is made
        for setting in sorted(request.settings, key=lambda s: s.group):
            for seed in request.seeds:
                needs = keys.get((setting.needs, seed)) if setting.needs else None
                keys[(setting.label, seed)] = cache_key(
                    files=request.files,
                    setting=setting,
                    seed=seed,
                    profile=request.profile,
                    codebase_version=codebase_version,
                    data_fingerprint=data_fp,
                    env=request.env,
                    needs_key=needs,
                )
        for group in sorted({s.group for s in request.settings}):
            pairs = [
                (s, seed) for s in request.settings if s.group == group for seed in request.seeds
            ]
            workers = self.max_parallel or max(
                1, self.backend.cpu_slots + self.backend.gpu_capacity
            )
            with ThreadPoolExecutor(max_workers=min(workers, len(pairs)) or 1) as pool:
                futures = {
                    (s.label, seed): pool.submit(
                        self._run_pair,
                        request,
                        s,
                        seed,
                        keys[(s.label, seed)],
                        results,
                        by_label,
                        progress,
                    )
                    for s, seed in pairs
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
                            reason=f"executor error: {exc}",
                        )
        ordered = [results[(s.label, seed)] for s in request.settings for seed in request.seeds]
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
        setting: EvaluationSetting,
        seed: int,
        key: str,
        results: dict[tuple[str, int], SeedResult],
        by_label: dict[str, EvaluationSetting],
        progress: ProgressCallback | None,
    ) -> SeedResult:
        label = setting.label
        out = pair_dir(request.out_dir, label, seed)
        record = record_path(request.out_dir, label, seed)
        emit = _safe(progress)

        previous = _load_record(record, key)
        if previous is not None:
            emit(
                ProgressEvent(
                    setting=label, seed=seed, phase="done", message="finished earlier, reused"
                )
            )
            return previous
        if self.cache is not None and (hit := self.cache.lookup(key)) is not None:
            cached, cached_out = hit
            shutil.rmtree(out, ignore_errors=True)
            link_tree(cached_out, out)
            result = cached.model_copy(update={"cached": True, "log_path": str(out / LOG_FILE)})
            _write_record(record, key, result)
            emit(
                ProgressEvent(
                    setting=label, seed=seed, phase="done", message="served from the cache"
                )
            )
            return result

        ckpt_dir: Path | None = None
        if setting.needs:
            needed = results.get((setting.needs, seed))
            if needed is None:
                needed = _load_record(record_path(request.out_dir, setting.needs, seed), None)
            if needed is None or needed.status != "ok":
                status: Status = needed.status if needed is not None else "infra_error"
                why = needed.reason if needed is not None else "it did not run"
                return SeedResult(
                    setting=label,
                    seed=seed,
                    status=status,
                    reason=f"needs {setting.needs} (seed {seed}), which did not succeed: {why}",
                )
            ckpt_dir = pair_dir(request.out_dir, setting.needs, seed)

        shutil.rmtree(out, ignore_errors=True)  # a half-finished earlier attempt
        try:
            out.mkdir(parents=True, exist_ok=True)
            free_mb = shutil.disk_usage(out).free / 2**20
        except OSError as exc:
            return SeedResult(
                setting=label,
                seed=seed,
                status="infra_error",
                reason=f"infrastructure: cannot create {out}: {exc}",
            )
        if free_mb < self.min_free_disk_mb:
            return SeedResult(
                setting=label,
                seed=seed,
                status="infra_error",
                reason=f"infrastructure: disk almost full ({free_mb:.0f} MB free at {out})",
            )
        job = SettingJob(
            label=label,
            seed=seed,
            script=setting.script,
            codebase_dir=request.codebase_dir,
            files=request.files,
            out_dir=out,
            log_path=out / LOG_FILE,
            data=request.data,
            time_limit_s=setting.time_limit_s + self.time_grace_s,
            gpus=setting.gpus,
            ckpt_dir=ckpt_dir,
            env={**request.env, "PB_PROFILE": request.profile},
        )
        emit(ProgressEvent(setting=label, seed=seed, phase="queued"))
        with self._slot(setting.gpus):
            started = time.monotonic()
            emit(ProgressEvent(setting=label, seed=seed, phase="train", message="started"))

            def on_line(line: str) -> None:
                if (
                    progress is not None
                    and (event := parse_progress(line, label, seed, started)) is not None
                ):
                    emit(event)

            try:
                outcome = self.backend.run_setting(job, on_line)
            except Exception as exc:
                log.exception("backend %s failed on %s seed %s", self.backend.name, label, seed)
                outcome = JobOutcome(
                    None, time.monotonic() - started, infra_error=f"backend error: {exc}"
                )
        result = self._classify(request, setting, seed, out, outcome)
        try:
            _write_record(record, key, result)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else str(exc)
            result = result.model_copy(
                update={"status": "infra_error", "reason": f"cannot record the result: {reason}"}
            )
        if self.cache is not None and result.status != "infra_error" and not outcome.timed_out:
            with contextlib.suppress(OSError):
                self.cache.store(key, result, out)
        emit(ProgressEvent(setting=label, seed=seed, phase="done", message=result.status))
        return result

    def _classify(
        self,
        request: TestRequest,
        setting: EvaluationSetting,
        seed: int,
        out: Path,
        outcome: JobOutcome,
    ) -> SeedResult:
        log_path = out / LOG_FILE
        tail = tail_text(log_path)
        resources = Resources(
            wall_s=round(outcome.wall_s, 3),
            gpus=setting.gpus,
            gpu_type=outcome.gpu_type,
            peak_mem_mb=outcome.peak_mem_mb,
        )
        base: dict[str, Any] = {
            "setting": setting.label,
            "seed": seed,
            "elapsed_s": round(outcome.wall_s, 3),
            "log_path": str(log_path),
            "log_tail": tail,
            "curve": read_curve(out),
            "resources": resources,
        }
        notes = "; ".join(outcome.notes)
        if outcome.infra_error:
            return SeedResult(
                status="infra_error", reason=f"infrastructure: {outcome.infra_error}", **base
            )
        failure = read_failure(out)
        reason: str | None = None
        if outcome.timed_out:
            reason = f"timeout: exceeded the time limit of {format_duration(setting.time_limit_s)}"
            if "forks refused" in notes:
                reason += f" ({notes})"
        elif outcome.oom:
            reason = f"out of memory: the job exceeded the sandbox memory limit (peak {outcome.peak_mem_mb or 0:.0f} MB)"
        elif outcome.exit_code != 0:
            detail = failure or last_error_line(tail) or "no error message in the log"
            reason = f"exit code {outcome.exit_code}: {detail}"
            if "forks refused" in notes:
                reason += f" ({notes})"
        if reason is not None:
            return SeedResult(status="failed", reason=reason, **base)
        try:
            metrics, source = read_metrics(out, setting, seed, request.profile)
        except MetricsError as exc:
            return SeedResult(status="failed", reason=f"no valid metrics: {exc}", **base)
        return SeedResult(status="ok", metrics=metrics, dataset_source=source, **base)

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


def _check_settings(settings: list[EvaluationSetting]) -> None:
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate setting labels in {labels}")
    by_label = {s.label: s for s in settings}
    for s in settings:
        if s.needs is not None:
            if s.needs not in by_label:
                raise ValueError(
                    f"setting {s.label} needs {s.needs!r}, which is not in the request"
                )
            if by_label[s.needs].group >= s.group:
                raise ValueError(
                    f"setting {s.label} needs {s.needs}, which must be in an earlier group"
                )


def _overall(results: list[SeedResult]) -> tuple[Status, str | None]:
    for status in ("infra_error", "failed"):
        bad = [r for r in results if r.status == status]
        if bad:
            return bad[0].status, f"{bad[0].setting} (seed {bad[0].seed}): {bad[0].reason}"
    return "ok", None


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
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": result.model_dump(mode="json")}, indent=1))
    tmp.replace(path)


def _safe(progress: ProgressCallback | None) -> ProgressCallback:
    def emit(event: ProgressEvent) -> None:
        if progress is not None:
            try:
                progress(event)
            except Exception:  # a display bug must not fail a test
                log.exception("progress callback failed")

    return emit
