"""The CLI's results tables: the leaderboard's one scored view, printed, as JSON, or exported.

Every table the CLI prints (`leaderboard show` and the results at the end of `runner run` and
`runner resume`) is built from ``leaderboard.group_tables`` — the tables the web page shows, in
the same order with the same scores and ranks — so the CLI and the page never disagree. A wide
terminal gets one table per group; a narrow one (under the table's natural width, e.g. 80
columns) one block per run, so that nothing is cut to ``cosi…``. The JSON-lines export is the
stored records themselves (the data, not a ranking).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from runner._choices import ExportFormat

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from leaderboard import RunRecord, Store


class BoardMetric(BaseModel):
    """One metric of a run: the mean over its seeds, the 95 % interval when n ≥ 2, and its
    score (0–100: worst baseline 0, the best baseline on this metric 50, bound 100)."""

    model_config = ConfigDict(extra="forbid")

    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    score: float
    stderr: float | None  # the evaluator's standard error of a single-seed value


class BoardNoise(BaseModel):
    """A metric's noise band: the best baseline ± 2 × the baselines' pooled seed std."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float


class BoardColumn(BaseModel):
    """A metric column: its key, name, evaluation setting, direction, and whether it is hidden
    from the agent during its run (researchers still see it)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    name: str
    setting: str
    direction: str
    hidden: bool
    primary: bool


class BoardRow(BaseModel):
    """One run of a group: its rank among the group's ranked runs, score (0–100) and metrics."""

    model_config = ConfigDict(extra="forbid")

    rank: int | None
    tied: bool  # shares its rank with other rows the seed noise cannot tell apart
    ranked: int
    run_id: str
    method: str
    type: str
    reference: bool
    #: "imported": computed elsewhere (`runner import`), not verified by this store's sandbox
    origin: str
    status: str
    score: float | None
    note: str | None
    metrics: dict[str, BoardMetric]


class BoardTable(BaseModel):
    """One comparable group of one task (what `--json` prints, one object per group)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    group: str
    label: str
    columns: list[BoardColumn]
    rows: list[BoardRow]
    noise: dict[str, BoardNoise]
    ties: list[str]  # each tie in words: which ranks, on which metric, why
    smoke_test: str | None = None  # set when even the baselines differ by no more than noise


SCORE_LEGEND = (
    "score: per metric worst baseline 0, the best baseline on that metric 50, bound 100; a "
    "setting is the weighted mean of its metrics, the score the geometric mean over settings, "
    "so a baseline scores 50 only where it is the best baseline on every metric"
)

IMPORTED_LEGEND = (
    "(imported): computed elsewhere (runner import), not verified by this store's sandbox"
)


def check_stored_task(store: Store, task_id: str | None) -> None:
    """Raise ``NotFoundError`` naming the stored tasks when ``task_id`` has no runs stored."""
    from leaderboard import NotFoundError

    stored = [t.task_id for t in store.list_tasks()]
    if task_id is not None and task_id not in stored:
        raise NotFoundError(
            f"the store has no runs of task {task_id!r}; "
            f"it holds: {', '.join(stored) or 'no runs yet'}"
        )


def board_tables(store: Store, task_id: str | None = None) -> list[BoardTable]:
    """The scored view of ``leaderboard.group_tables`` as plain rows (one task, or all)."""
    from leaderboard import group_tables

    check_stored_task(store, task_id)
    tables: list[BoardTable] = []
    for table in group_tables(store, task_id):
        ranked = sum(1 for row in table.rows if row.rank is not None)
        rows = []
        for row in table.rows:
            s = row.scored
            metrics = {}
            for key, m in s.metrics.items():
                if m.stats is not None:
                    st = m.stats
                    metrics[key] = BoardMetric(
                        mean=st.mean,
                        std=st.std,
                        ci_low=st.ci_low,
                        ci_high=st.ci_high,
                        n=st.n,
                        score=100 * m.score,
                        stderr=m.stderr,
                    )
            rows.append(
                BoardRow(
                    rank=row.rank,
                    tied=row.tied,
                    ranked=ranked,
                    run_id=s.run_id,
                    method=s.result.method,
                    type=s.result.type,
                    reference=s.result.reference,
                    origin=s.result.origin,
                    status=s.result.status,
                    score=None if s.score is None else 100 * s.score,
                    note=s.note,
                    metrics=metrics,
                )
            )
        shown = {"name", "setting", "direction", "hidden", "primary"}
        columns = [
            BoardColumn(key=spec.key, **spec.model_dump(include=shown)) for spec in table.specs
        ]
        tables.append(
            BoardTable(
                task_id=table.data.task.task_id,
                group=table.group.slug(),
                label=table.group.label(),
                columns=columns,
                rows=rows,
                noise={
                    key: BoardNoise(low=band.low, high=band.high)
                    for key, band in table.scores.noise.items()
                },
                ties=table.tie_sentences(),
                smoke_test=table.smoke_note(),
            )
        )
    return tables


def load_board(
    url: str, task_id: str | None = None, run_ids: Collection[str] | None = None
) -> list[BoardTable]:
    """The tables of the store at ``url``; with ``run_ids``, only those runs' rows (their
    ranks still those of the whole group) and only the groups holding one."""
    from leaderboard import Store

    with Store(url) as store:
        tables = board_tables(store, task_id)
    if run_ids is None:
        return tables
    wanted = set(run_ids)
    kept = [
        t.model_copy(update={"rows": [r for r in t.rows if r.run_id in wanted]}) for t in tables
    ]
    return [t for t in kept if t.rows]


def board_json(tables: list[BoardTable]) -> str:
    """The tables as one JSON document (a list of groups) for scripts."""
    return json.dumps([t.model_dump(mode="json") for t in tables], indent=1) + "\n"


def print_board(console: Console, tables: list[BoardTable]) -> None:
    """Print each table: wide when it fits the console, else one block per run."""
    from rich.markup import escape

    for table in tables:
        console.print(f"[bold]{escape(table.task_id)}[/] · {escape(table.label)}", highlight=False)
        if table.smoke_test:
            console.print(escape(table.smoke_test), style="yellow", highlight=False)
        wide = _wide_table(table)
        # the table's natural width (rich's own measure is capped at the console's width)
        natural = console.measure(wide, options=console.options.update_width(10_000)).maximum
        if natural <= console.width:
            console.print(wide)
        else:
            _print_blocks(console, table)
        for sentence in table.ties:
            console.print(escape(sentence), highlight=False)
        if table.noise:
            bands = " · ".join(
                f"{_header(c).replace(chr(10), ' ')} {b.low:.4g}–{b.high:.4g}"
                for c in table.columns
                if (b := table.noise.get(c.key)) is not None
            )
            console.print(
                f"baselines' seed noise (best baseline ± 2 × pooled seed std): {escape(bands)}",
                style="dim",
                highlight=False,
            )
        if any(m.n >= 2 for row in table.rows for m in row.metrics.values()):
            console.print("± half-width of the 95 % interval over seeds", style="dim")
        if any(m.stderr is not None for row in table.rows for m in row.metrics.values()):
            console.print("(SE …) the evaluator's standard error of a one-seed value", style="dim")
        if any(row.tied for row in table.rows):
            console.print("=2: a rank shared by rows inside the seed noise", style="dim")
        console.print(SCORE_LEGEND, style="dim", highlight=False)
        if any(row.origin == "imported" for row in table.rows):
            console.print(IMPORTED_LEGEND, style="dim", highlight=False)
        if any(c.hidden for c in table.columns):
            console.print("† hidden from the agent during its run", style="dim", highlight=False)
        console.print()


def _wide_table(table: BoardTable) -> Table:
    from rich.markup import escape
    from rich.table import Table

    view = Table(show_lines=False)
    view.add_column("#", justify="right")
    view.add_column("method", no_wrap=True)
    view.add_column("type")
    view.add_column("score", justify="right")
    view.add_column("seeds", justify="right")
    for column in table.columns:
        view.add_column(escape(_header(column)), justify="right", no_wrap=True)
    view.add_column("status")
    view.add_column("run id", no_wrap=True)
    for row in table.rows:
        # Methods and notes can quote agent-written text: never let them be read as markup.
        view.add_row(
            _rank(row),
            escape(_method(row)),
            row.type,
            _score(row),
            _seeds(row),
            *[_metric(row.metrics.get(c.key)) for c in table.columns],
            escape(row.note or row.status),
            escape(row.run_id),
        )
    return view


def _print_blocks(console: Console, table: BoardTable) -> None:
    """The narrow layout: a heading line per run, then one ``name  value`` line per field."""
    from rich.markup import escape

    labels = [_header(c).replace("\n", " ") for c in table.columns]
    width = max(len(label) for label in ["score", "seeds", "status", "run id", *labels])
    for i, row in enumerate(table.rows):
        if i:
            console.print()
        console.print(
            f"[bold]#{_rank(row) or '–'}  {escape(_method(row))}[/]  ({row.type})",
            highlight=False,
        )
        fields = [("score", _score(row)), ("seeds", _seeds(row))]
        fields += [
            (label, _metric(row.metrics.get(c.key)))
            for label, c in zip(labels, table.columns, strict=True)
        ]
        fields += [("status", row.note or row.status), ("run id", row.run_id)]
        for label, value in fields:
            console.print(
                f"  {escape(label):<{width}}  {escape(value)}", highlight=False, soft_wrap=True
            )


def _header(column: BoardColumn) -> str:
    return f"{column.name}{'†' if column.hidden else ''}\n{column.setting}"


def _rank(row: BoardRow) -> str:
    if row.rank is None:
        return ""
    return f"={row.rank}" if row.tied else str(row.rank)


def _method(row: BoardRow) -> str:
    return (
        row.method
        + (" (reference)" if row.reference else "")
        + (" (imported)" if row.origin == "imported" else "")
    )


def _score(row: BoardRow) -> str:
    return "—" if row.score is None else f"{row.score:.1f}"


def _seeds(row: BoardRow) -> str:
    """How many seeds the run's metrics are over (``1–3`` when they differ)."""
    counts = sorted({m.n for m in row.metrics.values()})
    if not counts:
        return "—"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _metric(m: BoardMetric | None) -> str:
    """``mean``, ``mean ± half-width of the 95 % interval`` with several seeds, or
    ``mean (SE s)`` with one seed whose evaluator reported a standard error."""
    if m is None or m.mean is None:
        return "—"
    text = f"{m.mean:.4g}"
    if m.n >= 2 and m.ci_low is not None and m.ci_high is not None:
        text += f" ± {(m.ci_high - m.ci_low) / 2:.2g}"
    elif m.stderr is not None:
        text += f" (SE {m.stderr:.2g})"
    return text


def export_board(url: str, fmt: ExportFormat, task_id: str | None = None) -> str:
    """The CSV of the scored tables (``leaderboard.export_csv``, as the web page serves it) or
    JSON lines of the stored records without transcripts."""
    from leaderboard import Store, export_csv

    with Store(url) as store:
        check_stored_task(store, task_id)
        if fmt is ExportFormat.CSV:
            return export_csv(store, task_id)
        records = [store.get_run(run_id) for run_id in store.run_ids(task_id)]
    return "".join(_record_line(r) for r in records if r is not None)


def _record_line(record: RunRecord) -> str:
    return json.dumps(record.model_dump(mode="json", exclude={"transcript"})) + "\n"
