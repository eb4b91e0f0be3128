"""`runner leaderboard show|export`: stored runs, read through the leaderboard Store."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def board_records(url: str, task_id: str | None = None) -> list[Any]:
    """Every stored RunRecord (of one task, if given), in store order."""
    from leaderboard import Store

    store = Store(url)
    try:
        records = [store.get_run(run_id) for run_id in store.run_ids(task_id)]
    finally:
        store.close()
    return [r for r in records if r is not None]


def export_text(records: list[Any], fmt: str) -> str:
    """JSON lines (one RunRecord each, without transcripts) or a CSV of result rows: the rows
    of the jobs that report metrics, and of any job that did not succeed (its reason)."""
    if fmt == "jsonl":
        return "".join(
            json.dumps(r.model_dump(mode="json", exclude={"transcript"})) + "\n" for r in records
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    keys = sorted({k for r in records for row in r.result_rows() for k in row.metrics})
    writer.writerow(
        ["run_id", "task_id", "profile", "type", "method", "status", "setting", "seed", *keys]
    )
    for r in records:
        for row in r.result_rows():
            if not row.metrics and row.status == "ok":
                continue  # a job that reports nothing (schedule, training) and succeeded
            writer.writerow(
                [
                    r.run_id,
                    r.task_id,
                    r.profile,
                    r.type,
                    r.method,
                    row.status,
                    row.setting,
                    row.seed,
                    *[row.metrics.get(k, "") for k in keys],
                ]
            )
    return buffer.getvalue()
