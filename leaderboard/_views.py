"""What the pages, the JSON API, the CSV export and the runner's text table show.

One place turns the store's data into ranked, filtered, sorted tables, so the web page and
the command line never disagree about a ranking.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from ._records import MetricInfo
from ._scoring import (
    ComparableGroup,
    MetricResult,
    ScoredRun,
    TaskScores,
    Tie,
    baselines_inseparable,
    goodness,
    rank_with_ties,
    score_task,
)
from ._store import Store, TaskData

RUN_TYPES = ("baseline", "method", "vanilla", "agent")


class NotFoundError(LookupError):
    """A task, run or group that the store does not hold."""


@dataclass(frozen=True)
class TableRow:
    """One ranked row of a task table."""

    rank: int | None
    scored: ScoredRun
    started_at: str
    tied: bool = False  # shares its rank with other rows (see ``leaderboard._scoring``)

    @property
    def rank_label(self) -> str:
        """The rank as shown: ``3``, ``=2`` when tied, empty when not ranked."""
        if self.rank is None:
            return ""
        return f"={self.rank}" if self.tied else str(self.rank)


@dataclass(frozen=True)
class TaskTable:
    """A task's ranking in one comparable group, filtered and sorted."""

    data: TaskData
    group: ComparableGroup
    groups: list[ComparableGroup]
    scores: TaskScores
    specs: list[MetricInfo]
    rows: list[TableRow]
    sort: str
    order: str
    types: tuple[str, ...]
    best: dict[str, float] = field(default_factory=dict)
    ties: list[Tie] = field(default_factory=list)
    total_rows: int = 0
    matching_rows: int = 0
    page: int = 1
    pages: int = 1
    limit: int = 0

    @property
    def profiles(self) -> list[str]:
        return sorted({g.profile for g in self.groups})

    def smoke_note(self) -> str | None:
        """Said above every table whose baselines cannot be told apart from seed noise."""
        found = baselines_inseparable(self.scores)
        if found is None:
            return None
        spec, how = found
        test = "Welch's t-test, p ≥ 0.05" if how == "welch" else "inside the noise band"
        return (
            f"A smoke test, not a ranking: the best and the worst baseline of this group differ "
            f"by no more than seed noise on {spec.name} ({spec.setting}) ({test}), so ranks here "
            f"cannot tell methods like them apart (docs/VALIDITY.md measures the noise)."
        )

    def tie_sentences(self) -> list[str]:
        """Each tie in words, e.g. "ranks 1–3 are tied: their val_loss (gpt-tiny) differs by
        less than the baselines' seed noise ±0.012"."""
        specs = {s.key: s for s in self.specs}
        return [tie_sentence(tie, specs[tie.key]) for tie in self.ties]


def tie_sentence(tie: Tie, spec: MetricInfo) -> str:
    """One tie in words: which ranks, on which metric, and by which test of the noise."""
    metric = f"{spec.name} ({spec.setting})"
    band = None if tie.band is None else f"the baselines' seed noise ±{format_std(tie.band)}"
    if tie.welch and band:
        why = (
            f"their {metric} differs by no more than seed noise (Welch's t-test p ≥ 0.05, "
            f"or within {band} where a row has one seed)"
        )
    elif tie.welch:
        why = f"their {metric} differs by no more than seed noise (Welch's t-test, p ≥ 0.05)"
    else:
        why = f"their {metric} differs by less than {band}"
    return f"ranks {tie.rank}–{tie.last} are tied: {why}"


def format_value(v: float | None) -> str:
    """A metric value for display: four significant decimals for small numbers."""
    if v is None:
        return "—"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if abs(v) >= 100:
        return f"{v:.2f}"
    if abs(v) >= 10:
        return f"{v:.2f}"
    return f"{v:.4f}"


def format_std(v: float | None) -> str:
    """A seed standard deviation: two significant digits."""
    if v is None or not math.isfinite(v):
        return format_value(v)
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.2g}"


def format_score(v: float | None) -> str:
    """A [0, 1] score as a 0–100 figure."""
    return "—" if v is None else f"{100 * v:.1f}"


def choose_group(
    data: TaskData, group: str | None = None, profile: str | None = None
) -> tuple[ComparableGroup, list[ComparableGroup]]:
    """The requested group (by slug, or the most populated one of ``profile``) and all groups."""
    groups = data.groups()
    if not groups:
        raise NotFoundError(f"task {data.task.task_id} has no runs")
    if group:
        try:
            wanted = ComparableGroup.from_slug(data.task.task_id, group)
        except ValueError as exc:
            raise NotFoundError(str(exc)) from exc
        if wanted not in groups:
            raise NotFoundError(f"task {data.task.task_id} has no group {group!r}")
        return wanted, groups
    if profile:
        matching = [g for g in groups if g.profile == profile]
        if not matching:
            raise NotFoundError(f"task {data.task.task_id} has no runs with profile {profile!r}")
        return matching[0], groups
    return groups[0], groups


@dataclass(frozen=True)
class ScoredGroup:
    """One scored comparable group with its ranked rows and best values (cacheable)."""

    data: TaskData
    group: ComparableGroup
    groups: list[ComparableGroup]
    scores: TaskScores
    rows: list[TableRow]
    best: dict[str, float]
    ties: list[Tie]


class ScoreCache:
    """Scored groups kept between requests, valid while the task's runs are unchanged.

    A task page re-scores nothing when nobody has recorded a run since the last request: the
    key includes ``Store.task_revision`` (run count and last recording time), which any writer
    — in this process or another — changes.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[Any, ...], ScoredGroup] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> ScoredGroup | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: tuple[Any, ...], value: ScoredGroup) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = value


def score_group(
    store: Store,
    task_id: str,
    *,
    group: str | None = None,
    profile: str | None = None,
    reference_as_anchor: bool = False,
    cache: ScoreCache | None = None,
) -> ScoredGroup:
    """Load and score one comparable group of a task (through ``cache`` when given)."""
    key: tuple[Any, ...] | None = None
    if cache is not None:
        key = (task_id, group, profile, reference_as_anchor, store.task_revision(task_id))
        hit = cache.get(key)
        if hit is not None:
            return hit
    data = store.task_data(task_id)
    if data is None:
        raise NotFoundError(f"no task {task_id!r}")
    chosen, groups = choose_group(data, group, profile)
    specs = data.specs_for(chosen)
    scores = score_task(data.results, specs, group=chosen, reference_as_anchor=reference_as_anchor)
    ranking = rank_with_ties(scores)
    rows = [
        TableRow(
            ranking.ranks.get(sr.run_id),
            sr,
            data.started_at[sr.run_id].strftime("%Y-%m-%d %H:%M"),
            ranking.tied(sr.run_id),
        )
        for sr in scores.rows
    ]
    best: dict[str, float] = {}
    for spec in specs:
        vals = [
            m.stats.mean
            for sr in scores.rows
            if sr.result.status == "ok"
            and (m := sr.metrics.get(spec.key)) is not None
            and m.stats is not None
            and math.isfinite(m.stats.mean)
        ]
        if vals:
            best[spec.key] = max(vals, key=lambda v, d=spec.direction: goodness(v, d))  # type: ignore[misc]
    value = ScoredGroup(data, chosen, groups, scores, rows, best, list(ranking.ties))
    if cache is not None and key is not None:
        cache.put(key, value)
    return value


def build_task_table(
    store: Store,
    task_id: str,
    *,
    group: str | None = None,
    profile: str | None = None,
    types: Sequence[str] = (),
    sort: str = "score",
    order: str | None = None,
    reference_as_anchor: bool = False,
    cache: ScoreCache | None = None,
    limit: int = 0,
    page: int = 1,
) -> TaskTable:
    """Score a task's group and return its rows, filtered by type and sorted by ``sort``.

    ``sort`` is ``score``, ``method``, ``type`` or a metric key; ``order`` defaults to the
    metric's better-first direction. Rows without a value always sort last. ``limit`` > 0
    shows one page of that many rows (ranks stay those of the whole group).
    """
    sg = score_group(
        store,
        task_id,
        group=group,
        profile=profile,
        reference_as_anchor=reference_as_anchor,
        cache=cache,
    )
    specs = list(sg.scores.specs)
    by_key = {s.key: s for s in specs}
    if sort not in ("score", "method", "type", "started") and sort not in by_key:
        sort = "score"
    if order not in ("asc", "desc"):
        order = (
            "asc"
            if (
                sort in ("method", "type") or (sort in by_key and by_key[sort].direction == "lower")
            )
            else "desc"
        )
    wanted_types = tuple(t for t in types if t in RUN_TYPES) or RUN_TYPES
    rows = [r for r in sg.rows if r.scored.result.type in wanted_types]

    present = [r for r in rows if _sort_value(r, sort) is not None]
    missing = [r for r in rows if _sort_value(r, sort) is None]
    present.sort(key=lambda r: _sort_value(r, sort), reverse=order == "desc")
    ordered = present + missing
    page = max(1, page)
    pages = max(1, math.ceil(len(ordered) / limit)) if limit > 0 else 1
    page = min(page, pages)
    shown = ordered[(page - 1) * limit : page * limit] if limit > 0 else ordered
    return TaskTable(
        data=sg.data,
        group=sg.group,
        groups=sg.groups,
        scores=sg.scores,
        specs=specs,
        rows=shown,
        sort=sort,
        order=order,
        types=wanted_types,
        best=sg.best,
        ties=sg.ties,
        total_rows=len(sg.scores.rows),
        matching_rows=len(ordered),
        page=page,
        pages=pages,
        limit=limit,
    )


def _sort_value(row: TableRow, sort: str) -> Any:
    """The value a row is sorted by (``None``: no value, sorted last)."""
    s = row.scored
    if sort == "score":
        return s.score
    if sort == "method":
        return s.result.method.lower()
    if sort == "type":
        return RUN_TYPES.index(s.result.type)
    if sort == "started":
        return row.started_at
    m = s.metrics.get(sort)
    if m is None or m.stats is None or not math.isfinite(m.stats.mean):
        return None
    return m.stats.mean


def group_tables(
    store: Store, task_id: str | None = None, *, reference_as_anchor: bool = False
) -> list[TaskTable]:
    """The table of every comparable group (of one task, or all tasks), ranked as on the web
    page: the one scored view the CLI table and the CSV export are printed from."""
    task_ids = [task_id] if task_id else [t.task_id for t in store.list_tasks()]
    tables = []
    for tid in task_ids:
        data = store.task_data(tid)
        if data is None:
            raise NotFoundError(f"no task {tid!r}")
        tables += [
            build_task_table(store, tid, group=g.slug(), reference_as_anchor=reference_as_anchor)
            for g in data.groups()
        ]
    return tables


def export_csv(
    store: Store, task_id: str | None = None, *, reference_as_anchor: bool = False
) -> str:
    """Every run of every comparable group (of one task, or all tasks) as CSV, one row per run.

    Columns: the group's identity, the run's identity (``origin``: ``own`` or ``imported``),
    its rank (``tied``: shared with other rows, ``tie``: the tie in words), score and setting
    scores, and per metric its mean, std, 95 % interval, number of seeds, the evaluator's
    standard error of a single-seed value and the group's noise band (the same on every row).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fixed = [
        "task_id",
        "profile",
        "max_steps",
        "max_tests",
        "codebase_version",
        "dataset_source",
        "run_id",
        "type",
        "method",
        "agent",
        "model",
        "reference",
        "origin",
        "status",
        "rank",
        "tied",
        "tie",
        "score",
        "note",
    ]
    tables = group_tables(store, task_id, reference_as_anchor=reference_as_anchor)
    metric_keys: list[str] = []
    settings: list[str] = []
    for table in tables:
        for spec in table.specs:
            if spec.key not in metric_keys:
                metric_keys.append(spec.key)
            if spec.setting not in settings:
                settings.append(spec.setting)
    header = fixed + [f"score_{s}" for s in settings]
    for key in metric_keys:
        header += [key, f"{key}_std", f"{key}_ci_low", f"{key}_ci_high", f"{key}_n"]
        header += [f"{key}_stderr"]
        header += [f"{key}_noise_low", f"{key}_noise_high"]
    writer.writerow(header)
    for table in tables:
        g = table.group
        specs = {spec.key: spec for spec in table.specs}
        tie_text = {
            run_id: tie_sentence(tie, specs[tie.key])
            for tie in table.ties
            for run_id in tie.run_ids
        }
        for row in table.rows:
            s = row.scored
            r = s.result
            line: list[Any] = [
                r.task_id,
                g.profile,
                "" if g.max_steps is None else g.max_steps,
                "" if g.max_tests is None else g.max_tests,
                g.codebase_version,
                g.dataset_source,
                r.run_id,
                r.type,
                r.method,
                r.agent,
                r.model or "",
                r.reference,
                r.origin,
                r.status,
                row.rank or "",
                row.tied,
                tie_text.get(r.run_id, ""),
                "" if s.score is None else f"{s.score:.6f}",
                s.note or "",
            ]
            line += [
                "" if st not in s.setting_scores else f"{s.setting_scores[st]:.6f}"
                for st in settings
            ]
            for key in metric_keys:
                m = s.metrics.get(key)
                if m is None or m.stats is None:
                    line += ["", "", "", "", "", ""]
                else:
                    st = m.stats
                    line += [repr(st.mean), *map(_csv_number, (st.std, st.ci_low, st.ci_high))]
                    line += [st.n, _csv_number(m.stderr)]
                band = table.scores.noise.get(key)
                line += ["", ""] if band is None else [repr(band.low), repr(band.high)]
            writer.writerow(line)
    return buf.getvalue()


def _csv_number(v: float | None) -> str:
    return "" if v is None else repr(v)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: JSON has no NaN or infinity: such a value travels as the text "NaN", "Infinity", "-Infinity".
JsonNumber = float | str | None


def _num(v: float | None) -> JsonNumber:
    if v is None or math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


class TaskSummary(_Body):
    """A task in ``GET /api/tasks``."""

    task_id: str
    title: str | None
    runs: int


class MetricScoreBody(_Body):
    """One metric of one ranked run: seed summary, score and comparison with the best baseline."""

    mean: JsonNumber
    std: JsonNumber
    n: int
    ci95: list[JsonNumber] | None
    score: float | None
    p_vs_best_baseline: JsonNumber
    within_baseline_noise: bool | None
    stderr: float | None  # the evaluator's standard error of a single-seed value


class ScoreRowBody(_Body):
    """One ranked run of a task table."""

    rank: int | None
    tied: bool
    run_id: str
    type: str
    method: str
    agent: str
    model: str | None
    reference: bool
    origin: str  # "imported": computed elsewhere (`runner import`), not verified here
    status: str
    score: JsonNumber
    note: str | None
    setting_scores: dict[str, JsonNumber]
    metrics: dict[str, MetricScoreBody | None]


class GroupBody(_Body):
    """A comparable group's identity."""

    slug: str
    profile: str
    max_steps: int | None
    max_tests: int | None
    codebase_version: str
    dataset_source: str


class AnchorBody(_Body):
    """A metric's normalisation anchors."""

    worst: float
    best: float
    bound: float | None
    gamma: float | None
    best_run_id: str


class NoiseBody(_Body):
    """The best baseline's seed-noise band of a metric."""

    center: float
    half_width: float


class TieBody(_Body):
    """Rows sharing a rank because the baselines' seed noise cannot tell them apart."""

    rank: int
    last: int
    metric: str
    run_ids: list[str]
    sentence: str


class TaskScoresBody(_Body):
    """A task table as JSON (the ``GET /api/tasks/{id}`` body)."""

    task_id: str
    title: str | None
    group: GroupBody
    groups: list[str]
    metrics: list[MetricInfo]
    anchors: dict[str, AnchorBody]
    noise: dict[str, NoiseBody]
    ties: list[TieBody]
    rows: list[ScoreRowBody]


def _metric_body(m: MetricResult) -> MetricScoreBody | None:
    if m.stats is None:
        return None
    return MetricScoreBody(
        mean=_num(m.stats.mean),
        std=_num(m.stats.std),
        n=m.stats.n,
        ci95=None if m.stats.ci_low is None else [_num(m.stats.ci_low), _num(m.stats.ci_high)],
        score=m.score,
        p_vs_best_baseline=None if m.vs_best is None else _num(m.vs_best.p_value),
        within_baseline_noise=m.within_noise,
        stderr=m.stderr,
    )


def task_scores_body(table: TaskTable) -> TaskScoresBody:
    """A task table as the JSON API's response model."""
    rows = [
        ScoreRowBody(
            rank=row.rank,
            tied=row.tied,
            run_id=s.run_id,
            type=s.result.type,
            method=s.result.method,
            agent=s.result.agent,
            model=s.result.model,
            reference=s.result.reference,
            origin=s.result.origin,
            status=s.result.status,
            score=_num(s.score),
            note=s.note,
            setting_scores={k: _num(v) for k, v in s.setting_scores.items()},
            metrics={k: _metric_body(m) for k, m in s.metrics.items()},
        )
        for row in table.rows
        for s in [row.scored]
    ]
    g = table.group
    return TaskScoresBody(
        task_id=table.data.task.task_id,
        title=table.data.task.title,
        group=GroupBody(
            slug=g.slug(),
            profile=g.profile,
            max_steps=g.max_steps,
            max_tests=g.max_tests,
            codebase_version=g.codebase_version,
            dataset_source=g.dataset_source,
        ),
        groups=[x.slug() for x in table.groups],
        metrics=list(table.specs),
        anchors={
            k: AnchorBody(
                worst=a.worst, best=a.best, bound=a.bound, gamma=a.gamma, best_run_id=a.best_run_id
            )
            for k, a in table.scores.anchors.items()
        },
        noise={
            k: NoiseBody(center=b.center, half_width=b.half_width)
            for k, b in table.scores.noise.items()
        },
        ties=[
            TieBody(
                rank=tie.rank,
                last=tie.last,
                metric=tie.key,
                run_ids=list(tie.run_ids),
                sentence=sentence,
            )
            for tie, sentence in zip(table.ties, table.tie_sentences(), strict=True)
        ],
        rows=rows,
    )


@dataclass(frozen=True)
class CrossTaskRow:
    """One method's scores across tasks (the home page ranking)."""

    method: str
    type: str
    scores: dict[str, float | None]
    mean: float | None
    wins: int


def cross_task_ranking(
    store: Store, profile: str | None = None, *, reference_as_anchor: bool = False
) -> tuple[list[str], list[CrossTaskRow], list[str], str | None]:
    """Per (agent method, type): the score in each task's most populated group of ``profile``.

    A missing task counts as 0 in the mean. A "win" is a task where the method's primary metric
    beats the best baseline's mean (direction-aware) by more than the baselines' seed noise.
    Returns (task ids, rows best first, available profiles, chosen profile).
    """
    tasks = store.list_tasks()
    datas = {t.task_id: store.task_data(t.task_id) for t in tasks}
    counts: dict[str, int] = {}
    for d in datas.values():
        if d is not None:
            for g in d.groups():
                counts[g.profile] = counts.get(g.profile, 0) + 1
    profiles = sorted(counts, key=lambda p: (-counts[p], p))
    if profile is None or profile not in counts:
        profile = profiles[0] if profiles else None
    per: dict[tuple[str, str], dict[str, float | None]] = {}
    wins: dict[tuple[str, str], int] = {}
    task_ids: list[str] = []
    for tid, data in datas.items():
        if data is None or profile is None:
            continue
        try:
            table = build_task_table(
                store, tid, profile=profile, reference_as_anchor=reference_as_anchor
            )
        except NotFoundError:
            continue
        task_ids.append(tid)
        primary = next(
            (s for s in table.specs if s.primary), table.specs[0] if table.specs else None
        )
        for row in table.scores.rows:
            if row.result.type == "baseline":
                continue  # baselines are task-specific; 50 already means "the best baseline"
            key = (row.result.method, row.result.type)
            best = per.setdefault(key, {}).get(tid)
            if best is None or (row.score is not None and row.score > best):
                per[key][tid] = row.score
            if primary is not None and row.result.status == "ok" and row.result.type != "baseline":
                m = row.metrics.get(primary.key)
                anchor = table.scores.anchors.get(primary.key)
                if m is not None and m.stats is not None and anchor is not None:
                    better = goodness(m.stats.mean, primary.direction) > goodness(
                        anchor.best, primary.direction
                    )
                    if better and m.within_noise is not True:
                        wins[key] = wins.get(key, 0) + 1
    rows = []
    for (method, kind), scores in per.items():
        vals = [scores.get(t) or 0.0 for t in task_ids]
        mean = (
            sum(vals) / len(vals) if vals and any(v is not None for v in scores.values()) else None
        )
        rows.append(CrossTaskRow(method, kind, scores, mean, wins.get((method, kind), 0)))
    rows.sort(key=lambda r: (r.mean is None, -(r.mean or 0.0), r.method))
    return task_ids, rows, profiles, profile
