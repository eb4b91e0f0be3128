"""`runner leaderboard show|export`: the leaderboard's one scored view, printed or exported.

The text table and the CSV are the rows of ``leaderboard.group_tables`` — the tables the web
page shows, in the same order with the same scores — so the CLI and the page never disagree.
The JSON-lines export is the stored records themselves (the data, not a ranking).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from runner._choices import ExportFormat

if TYPE_CHECKING:
    from rich.console import Console

    from leaderboard import RunRecord


def show_board(console: Console, url: str, task_id: str | None = None) -> int:
    """Print one table per comparable group (of one task, or all); returns how many."""
    from rich.markup import escape
    from rich.table import Table

    from leaderboard import Store, group_tables

    with Store(url) as store:
        tables = group_tables(store, task_id)
    for table in tables:
        headers, cells = table.text_rows()
        view = Table(title=escape(f"{table.data.task.task_id} · {table.group.label()}"))
        for i, header in enumerate(headers):
            text_column = i in (1, 2) or i == len(headers) - 1  # method, type, status
            view.add_column(escape(header), justify="left" if text_column else "right")
        for line in cells:
            # Methods and notes can quote agent-written text: never let them be read as markup.
            view.add_row(*[escape(cell) for cell in line])
        console.print(view)
    return len(tables)


def export_board(url: str, fmt: ExportFormat, task_id: str | None = None) -> str:
    """The CSV of the scored tables (``leaderboard.export_csv``, as the web page serves it) or
    JSON lines of the stored records without transcripts."""
    from leaderboard import Store, export_csv

    with Store(url) as store:
        if fmt is ExportFormat.CSV:
            return export_csv(store, task_id)
        records = [store.get_run(run_id) for run_id in store.run_ids(task_id)]
    return "".join(_record_line(r) for r in records if r is not None)


def _record_line(record: RunRecord) -> str:
    return json.dumps(record.model_dump(mode="json", exclude={"transcript"})) + "\n"
