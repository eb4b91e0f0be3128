"""`runner import DIR`: check a record folder and store its results, marked imported.

The folder may come from anyone, so it is read as hostile: ``submission.json`` is read with a
size cap and strict JSON (no ``NaN`` literals), checked against the committed JSON Schema and
the pydantic models; every listed file must be a regular file under DIR (no symlink on the
way, no name outside it), of its stated size, within the caps, with its stated sha256. Only
then is anything stored: each run as a `RunRecord` with ``origin="imported"`` (its
comparable group — profile, budgets, codebase hash, data fingerprint — from the record), and
a sweep's `SweepRecord`. A run id this store ran itself is never overwritten.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pydantic import JsonValue, ValidationError

from runner._record_format import (
    MAX_FILE_BYTES,
    MAX_RECORD_BYTES,
    MAX_SUBMISSION_BYTES,
    RUN_FIELDS,
    SUBMISSION_FILE,
    RecordError,
    RunEntry,
    SeedEntry,
    Submission,
    file_sha256,
    validate_submission,
)

if TYPE_CHECKING:
    from leaderboard import RunRecord, SeedRecord, Store, SweepRecord
    from leaderboard._store import RecordOutcome


@dataclass(frozen=True)
class ImportOutcome:
    """Per stored run id its outcome (inserted / replaced / unchanged), and the sweep's."""

    runs: dict[str, RecordOutcome]
    sweep_id: str | None = None
    sweep: RecordOutcome | None = None


def read_record(folder: Path) -> tuple[Submission, list[RunRecord], SweepRecord | None]:
    """Check the record in ``folder`` and build what it would store; raises `RecordError`."""
    root = _root(folder)
    data = _read_submission(root)
    validate_submission(data, SUBMISSION_FILE)
    try:
        submission = Submission.model_validate(data)
    except ValidationError as e:
        _invalid(e, SUBMISSION_FILE)
    _check_files(root, submission)
    runs = [_run_record(submission, entry) for entry in submission.runs]
    sweep = _sweep_record(submission, runs) if submission.sweep is not None else None
    return submission, runs, sweep


def import_record(store: Store, folder: Path) -> ImportOutcome:
    """Check the record in ``folder`` and store it (nothing is stored when any check fails);
    refuses to replace a run or sweep this store ran itself."""
    _, runs, sweep = read_record(folder)
    return store_record(store, runs, sweep)


def store_record(store: Store, runs: list[RunRecord], sweep: SweepRecord | None) -> ImportOutcome:
    """Store a checked record's runs and sweep (`read_record`), unless one would replace a
    run or sweep of this store's own."""
    for run in runs:
        stored = store.get_run(run.run_id)
        if stored is not None and stored.origin == "own":
            raise RecordError(
                f"{SUBMISSION_FILE}: run {run.run_id} is a run this store ran itself; an "
                "import never replaces one"
            )
    if sweep is not None:
        stored_sweep = store.get_sweep(sweep.sweep_id)
        if stored_sweep is not None and stored_sweep.origin == "own":
            raise RecordError(
                f"{SUBMISSION_FILE}: sweep {sweep.sweep_id} is a sweep this store ran itself; "
                "an import never replaces one"
            )
    outcomes = {run.run_id: store.record(run) for run in runs}
    if sweep is None:
        return ImportOutcome(outcomes)
    before = store.get_sweep(sweep.sweep_id)
    if before == sweep:
        return ImportOutcome(outcomes, sweep.sweep_id, "unchanged")
    store.record_sweep(sweep)
    return ImportOutcome(outcomes, sweep.sweep_id, "inserted" if before is None else "replaced")


# ── reading the folder ───────────────────────────────────────────────────────────────────


def _root(folder: Path) -> Path:
    # DIR is the user's own choice (it may be a link); what is inside it is not
    try:
        info = folder.stat()
    except OSError as e:
        raise RecordError(f"{folder}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RecordError(f"{folder}: not a folder (a record is a folder with {SUBMISSION_FILE})")
    return folder.resolve()


def _read_submission(root: Path) -> JsonValue:
    raw = _read_bytes(root, SUBMISSION_FILE, MAX_SUBMISSION_BYTES)
    try:
        data: JsonValue = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise RecordError(f"{SUBMISSION_FILE}: not UTF-8 ({e.reason})") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise RecordError(f"{SUBMISSION_FILE}: not valid JSON ({e})") from None
    return data


def _no_constant(name: str) -> NoReturn:
    raise json.JSONDecodeError(f"{name} is not a JSON number (spell it as a string)", name, 0)


def _read_bytes(root: Path, name: str, limit: int) -> bytes:
    path = _inside(root, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO cannot hang
    except OSError as e:
        raise RecordError(f"{name}: cannot read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise RecordError(f"{name}: not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RecordError(f"{name}: larger than {limit:,} bytes")
    return data


def _inside(root: Path, name: str) -> Path:
    """``root/name`` when every part of it is a plain entry inside ``root`` (no ``..``, no
    absolute name, no symlink on the way)."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise RecordError(f"{name!r}: not a plain relative name inside the record")
    path = root
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink() or not path.is_dir():
            raise RecordError(f"{name}: {part} is not a folder of the record")
    path = path / parts[-1]
    if path.is_symlink():
        raise RecordError(f"{name}: a symbolic link (a record holds plain files)")
    return path


def _check_files(root: Path, submission: Submission) -> None:
    """Every listed file exists as a regular file of its stated size and sha256, and the whole
    record stays under MAX_RECORD_BYTES."""
    total = 0
    seen: set[str] = set()
    for i, entry in enumerate(submission.files):
        where = f"{SUBMISSION_FILE}: field files/{i}"
        if entry.path in seen or entry.path == SUBMISSION_FILE:
            raise RecordError(f"{where}/path: {entry.path} is listed twice")
        seen.add(entry.path)
        if entry.bytes > MAX_FILE_BYTES:
            raise RecordError(f"{where}/bytes: {entry.path} is over {MAX_FILE_BYTES:,} bytes")
        total += entry.bytes
        if total > MAX_RECORD_BYTES:
            raise RecordError(f"{where}: the record is over {MAX_RECORD_BYTES:,} bytes")
        path = _inside(root, entry.path)
        if not path.exists():
            raise RecordError(f"{entry.path}: missing (listed in {SUBMISSION_FILE} files/{i})")
        try:
            digest, size = file_sha256(path, entry.bytes)
        except RecordError as e:
            raise RecordError(f"{entry.path} ({SUBMISSION_FILE} files/{i}): {e}") from None
        except OSError as e:
            raise RecordError(f"{entry.path}: cannot read ({e.strerror or e})") from None
        if size != entry.bytes:
            raise RecordError(
                f"{entry.path}: {size:,} bytes, {SUBMISSION_FILE} files/{i} states {entry.bytes:,}"
            )
        if digest != entry.sha256:
            raise RecordError(
                f"{entry.path}: sha256 {digest[:12]}… does not match {SUBMISSION_FILE} "
                f"files/{i}/sha256 {entry.sha256[:12]}… (the file was changed)"
            )


# ── building what is stored ──────────────────────────────────────────────────────────────


def _run_record(submission: Submission, entry: RunEntry) -> RunRecord:
    from leaderboard import FinalRecord, RunRecord

    result = entry.result
    rows = [_seed_record(r, result.test_number) for r in result.per_seed] if result else []
    final = None
    if result is not None and result.source == "final":
        if result.status == "incomplete":
            raise RecordError(
                f"{SUBMISSION_FILE}: run {entry.run_id}: field result/status: a final "
                "evaluation is ok, failed or infra_error, not incomplete"
            )
        final = FinalRecord(
            test_number=result.test_number,
            status=result.status,
            reason=result.reason,
            per_seed=rows,
            auto_submitted=result.auto_submitted,
        )
    sweep_id = submission.sweep.record.sweep_id if submission.sweep is not None else None
    try:
        return RunRecord.model_validate(
            {
                **entry.model_dump(include=set(RUN_FIELDS)),
                "task_id": submission.task_id,
                "task_title": submission.task_title,
                "tests": rows if final is None else [],
                "final": final,
                "origin": "imported",
                "sweep_id": sweep_id,
            }
        )
    except ValidationError as e:
        _invalid(e, f"{SUBMISSION_FILE} run {entry.run_id}")


def _seed_record(entry: SeedEntry, number: int) -> SeedRecord:
    from leaderboard import SeedRecord

    # SeedRecord reads the "NaN" / "Infinity" spellings back as floats
    return SeedRecord.model_validate({**entry.model_dump(), "number": number})


def _sweep_record(submission: Submission, runs: list[RunRecord]) -> SweepRecord:
    assert submission.sweep is not None
    sweep = submission.sweep.record
    if sweep.task_id != submission.task_id:
        raise RecordError(
            f"{SUBMISSION_FILE}: field sweep/record/task_id: {sweep.task_id}, not the record's "
            f"task {submission.task_id}"
        )
    known = {r.run_id for r in runs}
    for point in sweep.points:
        if point.run_id is not None and point.run_id not in known:
            raise RecordError(
                f"{SUBMISSION_FILE}: field sweep/record/points/{point.index}/run_id: run "
                f"{point.run_id} is not in runs"
            )
    return sweep.model_copy(update={"origin": "imported"})


def _invalid(error: ValidationError, where: str) -> NoReturn:
    first = error.errors()[0]
    field = "/".join(str(p) for p in first["loc"]) or "(top level)"
    raise RecordError(f"{where}: field {field}: {first['msg']}") from None
