"""`runner serve`: the HTTP API — sessions, tool calls, live test progress (SSE), transcripts.

Every request needs ``Authorization: Bearer <token>`` except ``GET /health`` and the API's
own description (``/openapi.json``, ``/docs``, ``/redoc``), which say nothing about any
session. The check is the leaderboard's ``BearerTokenGate`` (the one bearer-auth
implementation, shared with the leaderboard's writes and MCP over HTTP), an ASGI middleware in
front of routing, so a route added later is covered without anyone remembering to, and a
request without the token is refused before a byte of its body is read. A body over the cap (``MAX_BODY_BYTES``, 1 MiB) is refused with
413 before it is parsed.

Bodies are pydantic models with ``extra="forbid"``: a malformed request gets a 4xx that says
what is wrong, never a 5xx. Tool calls go through the same `env.Session` as every other
agent, so texts and budgets are identical; an agent mistake is a 200 whose ``ok`` is false
and whose ``text`` is the ``ERROR: …`` observation.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations at runtime.

import json
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from env import TOOL_NAMES, ToolResult
from leaderboard import BEARER_SCHEME, BearerTokenGate, send_problem
from runner._host import BusyError, HostedRun
from runner._run import RunConfig, RunError
from runner._transcript import TranscriptError, read_transcript

if TYPE_CHECKING:
    from sandbox import Executor

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"
_TASK = r"^[a-z0-9][a-z0-9._-]{0,99}$"

#: the largest request body `runner serve` and `runner mcp --transport http` read (1 MiB):
#: an edit replaces a region, not a data set; a whole training script is about 30 KB.
MAX_BODY_BYTES = 1 << 20
#: what `runner serve` answers without the token: liveness and the API's own description.
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


# ── ASGI middleware: the body cap, before any routing or parsing ───────────────────────────


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app reads any of them.

    A declared ``Content-Length`` over the cap is refused without reading a byte; a body
    without one (chunked) is counted as it arrives and refused the moment it passes the
    cap. Only a body within the cap is handed on, so nothing larger is ever buffered or
    parsed.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body (at most ``max_bytes``), then serve ``scope`` with it replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body larger than {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_problem(send, 400, "Content-Length is not a number", {})
                return
            if size > self.max_bytes:
                await send_problem(send, 413, too_large, {"Connection": "close"})
                return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body was complete: nobody to answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await send_problem(send, 413, too_large, {"Connection": "close"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            # The whole body once, then the real channel (a streaming response listens on it
            # for the client's disconnect).
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)


# ── request and response bodies ─────────────────────────────────────────────────────────────


# The agent-facing tools, as a path parameter the OpenAPI schema lists: env's one list of names.
ToolName = StrEnum("ToolName", {name: name for name in TOOL_NAMES})  # type: ignore[misc]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSession(_Body):
    """A new session of a task."""

    task: str = Field(pattern=_TASK, description="Task id, e.g. llm-pretrain-lr-schedule.")
    profile: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="A profile the task declares; default: the task's CPU profile.",
    )
    max_steps: int | None = Field(default=None, ge=1, le=1000)
    max_tests: int | None = Field(default=None, ge=1, le=100)
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None, min_length=1, max_length=8
    )
    agent: str = Field(
        default="http:client",
        pattern=r"^http:[A-Za-z0-9][A-Za-z0-9._:@+-]{0,94}$",
        description="How the run is labelled on the leaderboard: http:<name> (a client's run "
        "is never labelled as a baseline or as a model the harness drives).",
    )


class Budget(_Body):
    """Budget use of a session."""

    steps_used: int
    max_steps: int
    tests_used: int
    max_tests: int
    submitted_test: int | None
    done: bool


class SessionInfo(_Body):
    """A session (its id is the run id)."""

    session_id: str
    task_id: str
    profile: str
    run_dir: str
    budget: Budget
    busy_with: str | None = None

    @classmethod
    def of(cls, run: HostedRun) -> "SessionInfo":
        """The state of a served run."""
        return cls(
            session_id=run.run_id,
            task_id=run.active.task.id,
            profile=run.active.info.config.profile,
            run_dir=str(run.active.run_dir),
            budget=Budget.model_validate(run.budget()),
            busy_with=run.busy_with,
        )


class CreatedSession(SessionInfo):
    """A new session and the agent's initial observation."""

    observation: str


class Observation(_Body):
    """The agent's initial observation."""

    text: str


class Health(_Body):
    """Liveness."""

    status: str


class Problem(_Body):
    """An error: what was wrong with the request."""

    detail: JsonValue


_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "no such session or task"},
}


# ── the sessions a server holds (what every session route depends on) ─────────────────────


@dataclass
class Sessions:
    """The sessions of one server and how new ones are made."""

    runs_dir: Path
    sandbox: str
    db: str | None
    executor: "Executor | None"
    allow_weak_isolation: bool
    max_sessions: int
    runs: dict[str, HostedRun] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, session_id: str) -> HostedRun:
        """The session, or 404."""
        run = self.runs.get(session_id)
        if run is None:
            raise HTTPException(404, f"no session {session_id!r}")
        return run

    def create(self, body: CreateSession) -> HostedRun:
        """A new session (404 for an unknown task, 429 when full, 422 when it cannot start)."""
        import env

        if body.task not in env.list_tasks():
            raise HTTPException(404, f"no task {body.task!r}")
        with self.lock:
            if len(self.runs) >= self.max_sessions:
                raise HTTPException(429, f"at most {self.max_sessions} sessions per server")
        task = env.load_task(body.task)
        profile = body.profile or task.default_profiles.cpu
        if profile not in task.profiles:
            raise HTTPException(
                422, f"task {task.id} has no profile {profile!r} ({', '.join(task.profiles)})"
            )
        config = RunConfig.model_validate(
            {
                "task": body.task,
                "agent": body.agent,
                "profile": profile,
                "sandbox": self.sandbox,
                "seeds": body.seeds,
                "max_steps": body.max_steps,
                "max_tests": body.max_tests,
                "db": self.db,
                "allow_weak_isolation": self.allow_weak_isolation,
            }
        )
        try:
            run = HostedRun(config, self.runs_dir, executor=self.executor)
        except (RunError, ValueError) as e:
            raise HTTPException(422, f"cannot create a session: {e}") from e
        with self.lock:
            self.runs[run.run_id] = run
        return run


def get_sessions(request: Request) -> Sessions:
    """The server's sessions."""
    sessions: Sessions = request.app.state.sessions
    return sessions


def session_in_path(
    sessions: Annotated[Sessions, Depends(get_sessions)],
    session_id: Annotated[str, PathParam(pattern=_ID)],
) -> HostedRun:
    """The session named in the path, or 404."""
    return sessions.get(session_id)


SessionsDep = Annotated[Sessions, Depends(get_sessions)]
SessionDep = Annotated[HostedRun, Depends(session_in_path)]


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    # Only the locations and messages: the rejected input is the caller's own data.
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


# ── routes ──────────────────────────────────────────────────────────────────────────────────

open_routes = APIRouter()
#: Every route here sits behind the gate; the dependency only declares the bearer scheme in
#: the OpenAPI schema (so /docs offers "Authorize").
routes = APIRouter(dependencies=[Depends(BEARER_SCHEME)])


@open_routes.get("/health")
def health() -> Health:
    """Liveness."""
    return Health(status="ok")


@routes.get("/tasks")
def tasks() -> list[str]:
    """Task ids."""
    import env

    return list(env.list_tasks())


@routes.get("/tools")
def tools(dialect: Literal["openai", "mcp"] = "openai") -> list[dict[str, JsonValue]]:
    """The tool schemas (OpenAI function-calling or MCP dialect)."""
    import env

    return env.tool_schemas(dialect)


@routes.post(
    "/sessions",
    status_code=201,
    responses={**_ERRORS, 429: {"model": Problem, "description": "too many sessions"}},
)
def create_session(sessions: SessionsDep, body: CreateSession) -> CreatedSession:
    """Create a session for a task; returns its id and the initial observation."""
    run = sessions.create(body)
    return CreatedSession(**dict(SessionInfo.of(run)), observation=run.observation())


@routes.get("/sessions")
def list_sessions(sessions: SessionsDep) -> list[SessionInfo]:
    """The sessions of this server."""
    return [SessionInfo.of(run) for run in list(sessions.runs.values())]


@routes.get("/sessions/{session_id}", responses=_ERRORS)
def get_session(run: SessionDep) -> SessionInfo:
    """A session's budget use and state."""
    return SessionInfo.of(run)


@routes.get("/sessions/{session_id}/observation", responses=_ERRORS)
def observation(run: SessionDep) -> Observation:
    """The agent's initial observation."""
    return Observation(text=run.observation())


@routes.post(
    "/sessions/{session_id}/tools/{tool}",
    responses={**_ERRORS, 409: {"model": Problem, "description": "a call is running"}},
)
def call_tool(
    run: SessionDep,
    tool: ToolName,
    arguments: Annotated[dict[str, JsonValue] | None, Body()] = None,
) -> ToolResult:
    """Call a tool with its arguments (a JSON object); returns the observation and its cost
    (the session's own ``env.ToolResult``).

    `test` blocks until the test finishes; follow it live on the events stream.
    """
    try:
        result: ToolResult = run.call(tool.value, dict(arguments or {}), wait=False)
    except BusyError as e:
        raise HTTPException(409, str(e)) from e
    return result


@routes.get(
    "/sessions/{session_id}/events",
    response_class=StreamingResponse,
    responses={
        **_ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "server-sent events: state, tool, progress, result",
        },
    },
)
def events(run: SessionDep) -> StreamingResponse:
    """Live events of the call in flight (test progress with step, loss and ETA).

    The stream starts with the session's state and ends when the call in flight ends
    (at once when none is running). Nothing about a hidden setting is ever sent (the
    session's event fan-out withholds it), not even during a submit's final evaluation.
    """
    q = run.events.subscribe()

    def stream() -> Iterator[str]:
        try:
            yield _sse("state", {**run.budget(), "busy_with": run.busy_with})
            while run.busy_with is not None:
                try:
                    event = q.get(timeout=1.0)
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(str(event.get("event", "message")), event)
                if event.get("event") == "result":
                    break
        finally:
            run.events.unsubscribe(q)

    return StreamingResponse(stream(), media_type="text/event-stream")


@routes.get("/sessions/{session_id}/transcript", responses=_ERRORS)
def transcript(run: SessionDep) -> list[dict[str, object]]:
    """Every event of the session so far (transcript.jsonl)."""
    try:
        return read_transcript(run.active.run_dir)
    except TranscriptError as e:
        raise HTTPException(409, str(e)) from e


def _sse(kind: str, data: Mapping[str, object]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


def create_api(
    *,
    runs_dir: Path,
    token: str,
    sandbox: str = "local",
    db: str | None = None,
    executor: "Executor | None" = None,
    allow_weak_isolation: bool = False,
    max_sessions: int = 64,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app, behind the bearer-token gate and the body cap.

    ``token`` is required on every request but ``OPEN_PATHS``; bodies over
    ``max_body_bytes`` get 413 unread. ``executor`` replaces the sandbox's (tests,
    embedding).
    """
    if not token:
        raise ValueError("the HTTP API needs a token")
    app = FastAPI(
        title="PretrainBench runner API",
        version="1",
        description="Drive PretrainBench task sessions over HTTP: the same tools, "
        "texts and budgets as the CLI, MCP and OpenAI agents. Every route but /health "
        "needs `Authorization: Bearer <token>`.",
    )
    app.state.sessions = Sessions(
        runs_dir, sandbox, db, executor, allow_weak_isolation, max_sessions
    )
    # add_middleware wraps outside-in in reverse order: the gate runs first, so a caller
    # without the token cannot even make the server read its body.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(BearerTokenGate, token=token, open_paths=OPEN_PATHS)
    app.add_exception_handler(RequestValidationError, _invalid)
    refused: dict[int | str, dict[str, object]] = {
        401: {"model": Problem, "description": "missing or wrong bearer token"},
        413: {"model": Problem, "description": f"body over {max_body_bytes} bytes"},
    }
    app.include_router(open_routes)
    app.include_router(routes, responses=refused)
    return app
