"""The leaderboard web app: server-rendered pages, a JSON API and CSV export.

Reading is public; ``POST /api/runs`` needs ``Authorization: Bearer <write_token>``. Every
page is rendered with Jinja2 autoescaping on, so agent-written text (transcripts, method
names, diffs) is always shown as text; a Content-Security-Policy that forbids scripts is a
second line of defence. Pages need no JavaScript and no network: plots are inline SVG and
the stylesheet is served from ``/static``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, ValidationError

from ._auth import BEARER_SCHEME, MISSING_OR_WRONG, bearer_token_matches
from ._plots import Series, line_plot
from ._records import RunRecord
from ._scoring import UNBUDGETED, ComparableGroup, RunResult
from ._store import Store
from ._sweep_page import UnknownMetricError, sweep_summaries, sweep_view, value_text
from ._viewer import diff_lines, transcript_view
from ._views import (
    RUN_TYPES,
    NotFoundError,
    ScoreCache,
    TaskScoresBody,
    TaskSummary,
    TaskTable,
    build_task_table,
    cross_task_ranking,
    export_csv,
    format_score,
    format_std,
    format_value,
    task_scores_body,
)

HERE = Path(__file__).parent
MAX_BODY_BYTES = 64 * 1024 * 1024
PAGE_SIZE = 50  # rows per task page; ranks are those of the whole group
PLOT_WIDTH = 600  # two plots side by side in the 1320 px layout
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        fmt=format_value, fmt_std=format_std, fmt_score=format_score, RUN_TYPES=RUN_TYPES
    )
    env.filters["pretty_json"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.filters["diff_lines"] = diff_lines
    env.filters["sweep_value"] = value_text
    return env


# ── what every route depends on ─────────────────────────────────────────────
@dataclass(frozen=True)
class Site:
    """One served leaderboard: its store, write token, scoring option and templates."""

    store: Store
    write_token: str | None
    reference_as_anchor: bool
    title: str
    templates: Environment = field(default_factory=_environment)
    cache: ScoreCache = field(default_factory=ScoreCache)

    def table(
        self,
        task_id: str,
        *,
        group: str | None,
        profile: str | None,
        types: list[str] | None,
        sort: str = "score",
        order: str | None = None,
        limit: int = 0,
        page: int = 1,
    ) -> TaskTable:
        """A task's table, scored with this site's anchors and kept in its cache."""
        return build_task_table(
            self.store,
            task_id,
            group=group,
            profile=profile,
            types=types or (),
            sort=sort,
            order=order,
            limit=limit,
            page=page,
            reference_as_anchor=self.reference_as_anchor,
            cache=self.cache,
        )

    def render(self, name: str, status: int = 200, **ctx: object) -> HTMLResponse:
        """A page from ``templates/`` (autoescaped)."""
        html = self.templates.get_template(name).render(site_title=self.title, **ctx)
        return HTMLResponse(html, status_code=status)


def get_site(request: Request) -> Site:
    """The ``Site`` the app was created for."""
    site: Site = request.app.state.site
    return site


def get_store(site: Annotated[Site, Depends(get_site)]) -> Store:
    """The store the app serves."""
    return site.store


SiteDep = Annotated[Site, Depends(get_site)]
StoreDep = Annotated[Store, Depends(get_store)]


class WebError(Exception):
    """An API error, answered as ``{"error": message, **extra}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.headers, self.extra = headers, extra or {}


async def _web_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WebError)
    return JSONResponse(
        {"error": exc.message, **exc.extra}, status_code=exc.status, headers=exc.headers
    )


def require_writer(
    request: Request,
    site: SiteDep,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)],
) -> None:
    """Writes need ``Authorization: Bearer <write_token>``; without a token the app is
    read-only. ``_scheme`` only documents the scheme in the OpenAPI schema."""
    if site.write_token is None:
        raise WebError(403, "this server is read-only (started without a write token)")
    authorization = request.headers.get("authorization")
    # Headers arrive as latin-1 text: encoding it back gives the bytes the client sent.
    raw = None if authorization is None else authorization.encode("latin-1")
    if not bearer_token_matches(raw, site.write_token):
        raise WebError(401, MISSING_OR_WRONG, headers={"WWW-Authenticate": "Bearer"})


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    if not request.url.path.startswith("/api/docs"):
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


# ── pages ───────────────────────────────────────────────────────────────────
pages = APIRouter(default_response_class=HTMLResponse)


@pages.get("/")
def home(site: SiteDep, profile: str | None = None) -> HTMLResponse:
    """The task list and the cross-task ranking of one profile."""
    task_ids, ranking, profiles, chosen = cross_task_ranking(
        site.store, profile, reference_as_anchor=site.reference_as_anchor
    )
    return site.render(
        "home.html",
        tasks=site.store.list_tasks(),
        task_ids=task_ids,
        ranking=ranking,
        profiles=profiles,
        profile=chosen,
    )


@pages.get("/tasks/{task_id}")
def task_page(
    site: SiteDep,
    task_id: str,
    group: str | None = None,
    profile: str | None = None,
    type: Annotated[list[str] | None, Query()] = None,
    sort: str = "score",
    order: str | None = None,
    limit: Annotated[int, Query(ge=0, le=100_000)] = PAGE_SIZE,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """A task's ranked table in one comparable group."""
    try:
        table = site.table(
            task_id,
            group=group,
            profile=profile,
            types=type,
            sort=sort,
            order=order,
            limit=limit,
            page=page,
        )
    except NotFoundError as exc:
        data = site.store.task_data(task_id) if not (group or profile) else None
        sweeps = sweep_summaries(site.store, task_id) if data is not None else []
        if data is None or data.results or not (data.no_result or sweeps):
            return site.render("error.html", status=404, message=str(exc))
        # Nothing to rank (every run failed before a test, or all are sweep points): their
        # causes and the sweeps.
        return site.render("task.html", t=None, data=data, sweeps=sweeps)
    return site.render(
        "task.html",
        t=table,
        data=table.data,
        qs=_query_builder(table),
        sweeps=sweep_summaries(site.store, task_id),
    )


@pages.get("/runs/{run_id}")
def run_page(site: SiteDep, run_id: str) -> HTMLResponse:
    """One run: scores, plots, per-seed values, the diff and the transcript."""
    run = site.store.get_run(run_id)
    if run is None:
        return site.render("error.html", status=404, message=f"no run {run_id!r}")
    return site.render(
        "run.html", **_run_context(site.store, run, site.reference_as_anchor, site.cache)
    )


@pages.get("/sweeps/{sweep_id}")
def sweep_page(site: SiteDep, sweep_id: str, metric: str | None = None) -> HTMLResponse:
    """A sweep: its table for one metric and that metric against each swept key."""
    try:
        view = sweep_view(site.store, sweep_id, metric, plot_width=PLOT_WIDTH)
    except NotFoundError as exc:
        return site.render("error.html", status=404, message=str(exc))
    except UnknownMetricError as exc:
        return site.render("error.html", status=400, heading="Unknown metric", message=str(exc))
    return site.render("sweep.html", v=view)


# ── JSON API and CSV ────────────────────────────────────────────────────────
class ErrorBody(BaseModel):
    """An API error."""

    model_config = ConfigDict(extra="allow")  # a 422 adds ``detail``: the problems found

    error: str


class RecordedRun(BaseModel):
    """What ``POST /api/runs`` did with a run."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    outcome: Literal["inserted", "replaced", "unchanged"]


class Health(BaseModel):
    """Liveness."""

    status: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "unknown"}}
api = APIRouter(prefix="/api")


@api.get("/tasks")
def api_tasks(store: StoreDep) -> list[TaskSummary]:
    """Every task with its number of runs."""
    return [
        TaskSummary(task_id=t.task_id, title=t.title, runs=t.n_runs) for t in store.list_tasks()
    ]


@api.get("/tasks/{task_id}", responses=NOT_FOUND)
def api_task(
    site: SiteDep,
    task_id: str,
    group: str | None = None,
    profile: str | None = None,
    type: Annotated[list[str] | None, Query()] = None,
) -> TaskScoresBody:
    """A task's scored table in one comparable group."""
    try:
        table = site.table(task_id, group=group, profile=profile, types=type)
    except NotFoundError as exc:
        raise WebError(404, str(exc)) from exc
    return task_scores_body(table)


def _csv(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@api.get("/tasks/{task_id}/export.csv", response_class=PlainTextResponse, responses=NOT_FOUND)
def api_task_csv(site: SiteDep, task_id: str) -> PlainTextResponse:
    """One task's ranked tables, every comparable group, as CSV."""
    try:
        text = export_csv(site.store, task_id, reference_as_anchor=site.reference_as_anchor)
    except NotFoundError as exc:
        raise WebError(404, str(exc)) from exc
    return _csv(text, f"{task_id}.csv")


@api.get("/export.csv", response_class=PlainTextResponse)
def api_csv(site: SiteDep) -> PlainTextResponse:
    """Every task's ranked tables as CSV."""
    return _csv(
        export_csv(site.store, reference_as_anchor=site.reference_as_anchor), "leaderboard.csv"
    )


@api.get(
    "/sweeps/{sweep_id}",
    responses={
        **NOT_FOUND,
        400: {"model": ErrorBody, "description": "a metric the sweep's points do not report"},
    },
)
def api_sweep(store: StoreDep, sweep_id: str, metric: str | None = None) -> dict[str, Any]:
    """A sweep's table for one metric (default: the primary one): per point its values per
    seed, mean and 95 % interval, delta against the default and paired t-test."""
    try:
        view = sweep_view(store, sweep_id, metric)
    except NotFoundError as exc:
        raise WebError(404, str(exc)) from exc
    except UnknownMetricError as exc:
        raise WebError(400, str(exc)) from exc
    if view.table is None:
        raise WebError(
            404,
            f"no point of sweep {sweep_id!r} has a result yet",
            extra={"points": len(view.sweep.points), "done": 0},
        )
    return view.table.to_json()


@api.get("/runs/{run_id}", response_model=RunRecord, responses=NOT_FOUND)
def api_run(store: StoreDep, run_id: str) -> Response:
    """One stored run record, transcript included."""
    run = store.get_run(run_id)
    if run is None:
        raise WebError(404, f"no run {run_id!r}")
    # The record's own JSON, as stored: no second serialisation through FastAPI's encoder.
    return Response(run.model_dump_json(), media_type="application/json")


@api.post(
    "/runs",
    dependencies=[Depends(require_writer)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RunRecord.model_json_schema()}},
        }
    },
    responses={
        201: {"model": RecordedRun, "description": "recorded"},
        401: {"model": ErrorBody, "description": "no or wrong token"},
        403: {"model": ErrorBody, "description": "the server is read-only"},
        413: {"model": ErrorBody, "description": f"body over {MAX_BODY_BYTES} bytes"},
        422: {"model": ErrorBody, "description": "not a valid RunRecord"},
        503: {"model": ErrorBody, "description": "the store is unavailable"},
    },
)
async def api_record(store: StoreDep, request: Request, response: Response) -> RecordedRun:
    """Record a run (201 when new, 200 when it replaced or matched a stored one).

    The body is read by hand, not declared: its size is checked before it is parsed.
    """
    too_large = WebError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    try:
        run = RunRecord.model_validate_json(body)
    except ValidationError as exc:
        raise WebError(
            422,
            f"invalid run record: {exc.error_count()} problem(s)",
            extra={"detail": _problems(exc)},
        ) from exc
    try:
        outcome = store.record(run)
    except RuntimeError as exc:
        raise WebError(503, f"store unavailable: {exc}") from exc
    response.status_code = 201 if outcome == "inserted" else 200
    return RecordedRun(run_id=run.run_id, outcome=outcome)


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    """Where and what, never the rejected input (the caller's own data), at most 50."""
    return [
        {
            "loc": ".".join(str(p) for p in e["loc"]) or "(body)",
            "msg": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ][:50]


health = APIRouter()


@health.get("/healthz")
def healthz() -> Health:
    """Liveness."""
    return Health(status="ok")


def create_app(
    store: Store,
    write_token: str | None = None,
    *,
    reference_as_anchor: bool = False,
    title: str = "PretrainBench",
) -> FastAPI:
    """The web page + JSON API + CSV export over ``store``.

    ``write_token`` enables ``POST /api/runs`` for callers presenting it as a bearer token;
    without one, the app is read-only.
    """
    app = FastAPI(
        title=f"{title} leaderboard",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.site = Site(store, write_token, reference_as_anchor, title)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(_security_headers)
    app.add_exception_handler(WebError, _web_error)
    for router in (pages, api, health):
        app.include_router(router)
    return app


def _query_builder(table: TaskTable) -> Callable[..., str]:
    """A function for templates: the task page URL with some query parameters changed."""
    from urllib.parse import urlencode

    def qs(**changes: object) -> str:
        params: dict[str, Any] = {
            "group": table.group.slug(),
            "sort": table.sort,
            "order": table.order,
        }
        if table.limit != PAGE_SIZE:
            params["limit"] = table.limit
        if set(table.types) != set(RUN_TYPES):
            params["type"] = list(table.types)
        params.update(changes)
        if "profile" in changes:
            params.pop("group", None)
        pairs = []
        for k, v in params.items():
            if v is None:
                continue
            for item in v if isinstance(v, list) else [v]:
                pairs.append((k, item))
        return "?" + urlencode(pairs)

    return qs


def _train_curves(run: RunRecord) -> list[Any]:
    rows = run.result_rows() or run.tests
    return [r for r in rows if r.curve and any("train_loss" in p or "lr" in p for p in r.curve)]


def _series(
    rows: list[Any], field: str, name: str, *, emphasis: bool = False, dashed: bool = False
) -> list[Series]:
    out = []
    for r in rows[:1]:  # one seed per method keeps the plot readable
        pts = [
            (p["step"], p.get(field)) for p in r.curve if p.get("step") is not None and field in p
        ]
        if pts:
            out.append(Series(name, pts, emphasis=emphasis, dashed=dashed))
    return out


def _run_context(
    store: Store, run: RunRecord, reference_as_anchor: bool, cache: ScoreCache | None = None
) -> dict[str, Any]:
    result = RunResult.from_record(run)
    group: ComparableGroup = result.group()
    scored = None
    table = None
    baselines: list[RunRecord] = []
    try:
        table = build_task_table(
            store,
            run.task_id,
            group=_group_slug_for(store, run, group),
            reference_as_anchor=reference_as_anchor,
            cache=cache,
        )
        scored = table.scores.by_run().get(run.run_id)
        baselines = [
            b
            for rid in (r.run_id for r in table.scores.rows if r.result.type == "baseline")
            if rid != run.run_id and (b := store.get_run(rid)) is not None
        ]
    except NotFoundError:
        pass

    own = _train_curves(run)
    plots: list[Markup] = []
    if any("lr" in p for r in own for p in r.curve):
        lr_series = _series(own, "lr", run.method, emphasis=True)
        for b in baselines:
            lr_series += _series(_train_curves(b), "lr", b.method, dashed=True)
        plots.append(
            Markup(
                line_plot(
                    lr_series, title="Learning rate", x_label="step", y_label="lr", width=PLOT_WIDTH
                )
            )
        )
    for curve, label, span in (
        ("train_loss", "Training loss", 1.2),
        ("val_loss", "Validation loss", 0.6),
    ):
        series = _series(own, curve, run.method, emphasis=True)
        for b in baselines:
            series += _series(_train_curves(b), curve, b.method, dashed=True)
        ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
        if ys:
            lo = min(ys)
            plots.append(
                Markup(
                    line_plot(
                        series,
                        title=f"{label} (vs baselines)",
                        x_label="step",
                        y_label=curve,
                        y_range=(lo, lo + span),
                        width=PLOT_WIDTH,
                    )
                )
            )
    seeds = sorted({r.seed for r in run.result_rows()})
    per_seed: dict[str, dict[int, float]] = {}
    per_seed_stderr: dict[str, dict[int, float]] = {}
    for r in run.result_rows():
        for k, v in r.metrics.items():
            per_seed.setdefault(k, {})[r.seed] = v
        for k, se in r.stderr.items():
            per_seed_stderr.setdefault(k, {})[r.seed] = se
    return {
        "run": run,
        "scored": scored,
        "table": table,
        "plots": plots,
        "seeds": seeds,
        "per_seed": per_seed,
        "per_seed_stderr": per_seed_stderr,
        "repeats": store.repeats_of(run.run_id),
        "sweep": store.get_sweep(run.sweep_id) if run.sweep_id else None,
        "diff_lines": diff_lines(run.diff),
        "transcript": transcript_view(run.transcript or []),
    }


def _group_slug_for(store: Store, run: RunRecord, group: ComparableGroup) -> str | None:
    if run.type not in UNBUDGETED:
        return group.slug()
    data = store.task_data(run.task_id)
    if data is None:
        return None
    for g in data.groups():  # unbudgeted: its most populated group of the same anchor key
        if g.anchor_key == group.anchor_key:
            return g.slug()
    return None
