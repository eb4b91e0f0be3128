"""The leaderboard web app: server-rendered pages, a JSON API and CSV export.

Reading is public; ``POST /api/runs`` needs ``Authorization: Bearer <write_token>``. Every
page is rendered with Jinja2 autoescaping on, so agent-written text (transcripts, method
names, diffs) is always shown as text; a Content-Security-Policy that forbids scripts is a
second line of defence. Pages need no JavaScript and no network: plots are inline SVG and
the stylesheet is served from ``/static``.
"""

from __future__ import annotations

import hmac
import json
import math
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pydantic import ValidationError

from ._plots import Series, line_plot
from ._records import RunRecord
from ._scoring import ComparableGroup, RunResult
from ._store import Store
from ._views import (
    RUN_TYPES,
    NotFoundError,
    ScoreCache,
    build_task_table,
    cross_task_ranking,
    export_csv,
    format_score,
    format_std,
    format_value,
    scores_json,
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
    return env


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
    env = _environment()
    cache = ScoreCache()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def render(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(site_title=title, **ctx)
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if not request.url.path.startswith("/api/docs"):
            response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # ── pages ───────────────────────────────────────────────────────────────
    @app.get("/", response_class=HTMLResponse)
    def home(profile: str | None = None) -> HTMLResponse:
        tasks = store.list_tasks()
        task_ids, ranking, profiles, chosen = cross_task_ranking(
            store, profile, reference_as_anchor=reference_as_anchor
        )
        return render(
            "home.html",
            tasks=tasks,
            task_ids=task_ids,
            ranking=ranking,
            profiles=profiles,
            profile=chosen,
        )

    @app.get("/tasks/{task_id}", response_class=HTMLResponse)
    def task_page(
        task_id: str,
        group: str | None = None,
        profile: str | None = None,
        type: Annotated[list[str] | None, Query()] = None,
        sort: str = "score",
        order: str | None = None,
        limit: Annotated[int, Query(ge=0, le=100_000)] = PAGE_SIZE,
        page: Annotated[int, Query(ge=1)] = 1,
    ) -> HTMLResponse:
        try:
            table = build_task_table(
                store,
                task_id,
                group=group,
                profile=profile,
                types=type or (),
                sort=sort,
                order=order,
                limit=limit,
                page=page,
                reference_as_anchor=reference_as_anchor,
                cache=cache,
            )
        except NotFoundError as exc:
            return render("error.html", status=404, message=str(exc))
        return render("task.html", t=table, qs=_query_builder(table))

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str) -> HTMLResponse:
        run = store.get_run(run_id)
        if run is None:
            return render("error.html", status=404, message=f"no run {run_id!r}")
        return render("run.html", **_run_context(store, run, reference_as_anchor, cache))

    # ── JSON API ────────────────────────────────────────────────────────────
    @app.get("/api/tasks")
    def api_tasks() -> list[dict[str, Any]]:
        return [
            {"task_id": t.task_id, "title": t.title, "runs": t.n_runs} for t in store.list_tasks()
        ]

    @app.get("/api/tasks/{task_id}")
    def api_task(
        task_id: str,
        group: str | None = None,
        profile: str | None = None,
        type: Annotated[list[str] | None, Query()] = None,
    ) -> JSONResponse:
        try:
            table = build_task_table(
                store,
                task_id,
                group=group,
                profile=profile,
                types=type or (),
                reference_as_anchor=reference_as_anchor,
                cache=cache,
            )
        except NotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(scores_json(table))

    @app.get("/api/tasks/{task_id}/export.csv")
    def api_task_csv(task_id: str) -> Response:
        try:
            text = export_csv(store, task_id, reference_as_anchor=reference_as_anchor)
        except NotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return PlainTextResponse(
            text,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{task_id}.csv"'},
        )

    @app.get("/api/export.csv")
    def api_csv() -> Response:
        return PlainTextResponse(
            export_csv(store, reference_as_anchor=reference_as_anchor),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="leaderboard.csv"'},
        )

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Response:
        run = store.get_run(run_id)
        if run is None:
            return JSONResponse({"error": f"no run {run_id!r}"}, status_code=404)
        return Response(run.model_dump_json(), media_type="application/json")

    @app.post(
        "/api/runs",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": RunRecord.model_json_schema()}},
            }
        },
        responses={
            201: {"description": "recorded"},
            401: {"description": "no or wrong token"},
            422: {"description": "not a valid RunRecord"},
        },
    )
    async def api_record(request: Request) -> JSONResponse:
        if write_token is None:
            return JSONResponse(
                {"error": "this server is read-only (started without a write token)"},
                status_code=403,
            )
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), write_token.encode()
        ):
            return JSONResponse(
                {"error": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse(
                {"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse(
                {"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        try:
            run = RunRecord.model_validate_json(body)
        except ValidationError as exc:
            return JSONResponse(
                {
                    "error": f"invalid run record: {exc.error_count()} problem(s)",
                    "detail": [
                        {
                            "loc": ".".join(str(p) for p in e["loc"]) or "(body)",
                            "msg": e["msg"],
                            "type": e["type"],
                        }
                        for e in exc.errors(
                            include_url=False, include_context=False, include_input=False
                        )
                    ][:50],
                },
                status_code=422,
            )
        try:
            outcome = store.record(run)
        except RuntimeError as exc:
            return JSONResponse({"error": f"store unavailable: {exc}"}, status_code=503)
        return JSONResponse(
            {"run_id": run.run_id, "outcome": outcome},
            status_code=201 if outcome == "inserted" else 200,
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _query_builder(table: Any) -> Any:
    """A function for templates: the task page URL with some query parameters changed."""
    from urllib.parse import urlencode

    def qs(**changes: Any) -> str:
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
    for field, label, span in (
        ("train_loss", "Training loss", 1.2),
        ("val_loss", "Validation loss", 0.6),
    ):
        series = _series(own, field, run.method, emphasis=True)
        for b in baselines:
            series += _series(_train_curves(b), field, b.method, dashed=True)
        ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
        if ys:
            lo = min(ys)
            plots.append(
                Markup(
                    line_plot(
                        series,
                        title=f"{label} (vs baselines)",
                        x_label="step",
                        y_label=field,
                        y_range=(lo, lo + span),
                        width=PLOT_WIDTH,
                    )
                )
            )
    seeds = sorted({r.seed for r in run.result_rows()})
    per_seed: dict[str, dict[int, float]] = {}
    for r in run.result_rows():
        for k, v in r.metrics.items():
            per_seed.setdefault(k, {})[r.seed] = v
    diff_lines = [(_diff_class(line), line) for line in run.diff.splitlines()]
    return {
        "run": run,
        "scored": scored,
        "table": table,
        "plots": plots,
        "seeds": seeds,
        "per_seed": per_seed,
        "diff_lines": diff_lines,
        "transcript": [_entry_view(e) for e in (run.transcript or [])],
    }


def _group_slug_for(store: Store, run: RunRecord, group: ComparableGroup) -> str | None:
    if run.type != "baseline":
        return group.slug()
    data = store.task_data(run.task_id)
    if data is None:
        return None
    for g in data.groups():  # a baseline: its most populated group of the same anchor key
        if g.anchor_key == group.anchor_key:
            return g.slug()
    return None


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "diff-file"
    if line.startswith("@@"):
        return "diff-hunk"
    if line.startswith("+"):
        return "diff-add"
    if line.startswith("-"):
        return "diff-del"
    return ""


_KNOWN = {
    "step",
    "role",
    "content",
    "thinking",
    "tool_name",
    "tool_input",
    "tool_calls",
    "name",
    "arguments",
    "result",
}


def _entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A transcript entry for the template; every value stays plain text (escaped there)."""
    role = str(entry.get("role", "event"))
    tool = entry.get("tool_name") or entry.get("name")
    args = entry.get("tool_input", entry.get("arguments"))
    calls = entry.get("tool_calls") if isinstance(entry.get("tool_calls"), list) else []
    content = entry.get("content")
    if content is not None and not isinstance(content, str):
        content = json.dumps(content, indent=2, ensure_ascii=False, default=str)
    result = entry.get("result")
    if result is not None and not isinstance(result, str):
        result = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    extra = {k: v for k, v in entry.items() if k not in _KNOWN}
    # Multi-line string arguments (edit content) read better as code than as JSON escapes.
    blocks: dict[str, str] = {}
    if isinstance(args, dict):
        blocks = {k: v for k, v in args.items() if isinstance(v, str) and "\n" in v}
        args = {k: v for k, v in args.items() if k not in blocks}
    return {
        "step": entry.get("step"),
        "role": role,
        "tool": None if tool is None else str(tool),
        "args": args,
        "arg_blocks": blocks,
        "calls": calls,
        "content": content,
        "thinking": entry.get("thinking"),
        "result": result,
        "extra": extra,
        "is_tool_result": role == "tool",
    }


def serve(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    write_token: str | None = None,
    reference_as_anchor: bool = False,
    log_level: str = "info",
) -> None:
    """Serve the leaderboard with uvicorn until interrupted (the runner's ``leaderboard serve``)."""
    import uvicorn

    app = create_app(store, write_token, reference_as_anchor=reference_as_anchor)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
