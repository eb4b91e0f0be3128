"""`runner serve`: the HTTP API — sessions, tool calls, live test progress (SSE), transcripts.

Every write call (POST) needs ``Authorization: Bearer <token>``. Bodies are pydantic models
with ``extra="forbid"``: a malformed request gets a 4xx that says what is wrong, never a 5xx.
Tool calls go through the same `env.Session` as every other agent, so texts and budgets are
identical; an agent mistake is a 200 whose ``ok`` is false and whose ``text`` is the
``ERROR: …`` observation.
"""

# No `from __future__ import annotations`: FastAPI resolves the closures' annotations at runtime.

import json
import queue
import secrets
import threading
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from runner._host import BusyError, HostedRun
from runner._run import RunConfig, RunError
from runner._transcript import TranscriptError, read_transcript

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"
_TASK = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class ToolName(StrEnum):
    """The agent-facing tools."""

    view = "view"
    edit = "edit"
    undo = "undo"
    test = "test"
    submit = "submit"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSession(_Body):
    """A new session of a task."""

    task: str = Field(pattern=_TASK, description="Task id, e.g. llm-pretrain-lr-schedule.")
    profile: Literal["tiny", "small", "full"] = "tiny"
    max_steps: int | None = Field(default=None, ge=1, le=1000)
    max_tests: int | None = Field(default=None, ge=1, le=100)
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None, min_length=1, max_length=8
    )
    agent: str = Field(
        default="http:client",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,99}$",
        description="How the run is labelled on the leaderboard.",
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


class CreatedSession(SessionInfo):
    """A new session and the agent's initial observation."""

    observation: str


class ToolCallResult(_Body):
    """The observation of one tool call and what it cost."""

    tool: str
    text: str
    ok: bool
    cost_step: int
    cost_test: int
    steps_left: int
    tests_left: int
    done: bool


class Observation(_Body):
    """The agent's initial observation."""

    text: str


class Problem(_Body):
    """An error: what was wrong with the request."""

    detail: Any


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong bearer token"},
    404: {"model": Problem, "description": "no such session or task"},
}


def create_api(
    *,
    runs_dir: Path,
    token: str,
    sandbox: str = "local",
    db: str | None = None,
    executor: Any = None,
    preflight: Any = None,
    max_sessions: int = 64,
) -> FastAPI:
    """The FastAPI app. ``executor``/``preflight`` replace the sandbox's (tests, embedding)."""
    if not token:
        raise ValueError("the HTTP API needs a write token")
    app = FastAPI(
        title="PretrainBench runner API",
        version="1",
        description="Drive PretrainBench task sessions over HTTP: the same tools, "
        "texts and budgets as the CLI, MCP and OpenAI agents.",
    )
    sessions: dict[str, HostedRun] = {}
    lock = threading.Lock()
    bearer = HTTPBearer(auto_error=False)

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if (
            credentials is None
            or credentials.scheme.lower() != "bearer"
            or not secrets.compare_digest(credentials.credentials.encode(), token.encode())
        ):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    def get_run(session_id: str) -> HostedRun:
        run = sessions.get(session_id)
        if run is None:
            raise HTTPException(404, f"no session {session_id!r}")
        return run

    def info(run: HostedRun) -> dict[str, Any]:
        return {
            "session_id": run.run_id,
            "task_id": run.active.task.id,
            "profile": run.active.info.config.profile,
            "run_dir": str(run.active.run_dir),
            "budget": run.budget(),
            "busy_with": run.busy_with,
        }

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only the locations and messages: the rejected input is the caller's own data.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @app.get("/tasks")
    def tasks() -> list[str]:
        """Task ids."""
        import env

        return list(env.list_tasks())

    @app.get("/tools")
    def tools(dialect: Literal["openai", "mcp"] = "openai") -> list[dict[str, Any]]:
        """The tool schemas (OpenAI function-calling or MCP dialect)."""
        from runner import _components as comp

        return comp.tool_schemas(dialect)

    @app.post(
        "/sessions",
        status_code=201,
        response_model=CreatedSession,
        dependencies=[Depends(require_token)],
        responses={**_ERRORS, 429: {"model": Problem, "description": "too many sessions"}},
    )
    def create_session(body: CreateSession) -> dict[str, Any]:
        """Create a session for a task; returns its id and the initial observation."""
        import env

        if body.task not in env.list_tasks():
            raise HTTPException(404, f"no task {body.task!r}")
        with lock:
            if len(sessions) >= max_sessions:
                raise HTTPException(429, f"at most {max_sessions} sessions per server")
        config = RunConfig.model_validate(
            {
                "task": body.task,
                "agent": body.agent,
                "profile": body.profile,
                "sandbox": sandbox,
                "seeds": body.seeds,
                "max_steps": body.max_steps,
                "max_tests": body.max_tests,
                "db": db,
            }
        )
        try:
            run = HostedRun(config, runs_dir, executor=executor, preflight=preflight)
        except (RunError, ValueError) as e:
            raise HTTPException(422, f"cannot create a session: {e}") from e
        with lock:
            sessions[run.run_id] = run
        return {**info(run), "observation": run.observation()}

    @app.get("/sessions", response_model=list[SessionInfo])
    def list_sessions() -> list[dict[str, Any]]:
        """The sessions of this server."""
        return [info(run) for run in list(sessions.values())]

    @app.get("/sessions/{session_id}", response_model=SessionInfo, responses=_ERRORS)
    def get_session(session_id: Annotated[str, PathParam(pattern=_ID)]) -> dict[str, Any]:
        """A session's budget use and state."""
        return info(get_run(session_id))

    @app.get("/sessions/{session_id}/observation", response_model=Observation, responses=_ERRORS)
    def observation(session_id: Annotated[str, PathParam(pattern=_ID)]) -> dict[str, str]:
        """The agent's initial observation."""
        return {"text": get_run(session_id).observation()}

    @app.post(
        "/sessions/{session_id}/tools/{tool}",
        response_model=ToolCallResult,
        dependencies=[Depends(require_token)],
        responses={**_ERRORS, 409: {"model": Problem, "description": "a call is running"}},
    )
    def call_tool(
        session_id: Annotated[str, PathParam(pattern=_ID)],
        tool: ToolName,
        arguments: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> dict[str, Any]:
        """Call a tool with its arguments (a JSON object); returns the observation.

        `test` blocks until the test finishes; follow it live on the events stream.
        """
        run = get_run(session_id)
        try:
            result = run.call(tool.value, arguments or {}, wait=False)
        except BusyError as e:
            raise HTTPException(409, str(e)) from e
        return {
            "tool": tool.value,
            "text": result.text,
            "ok": bool(result.ok),
            "cost_step": result.cost_step,
            "cost_test": result.cost_test,
            "steps_left": result.steps_left,
            "tests_left": result.tests_left,
            "done": bool(result.done),
        }

    @app.get(
        "/sessions/{session_id}/events",
        responses={
            **_ERRORS,
            200: {
                "content": {"text/event-stream": {}},
                "description": "server-sent events: state, tool, progress, result",
            },
        },
    )
    def events(session_id: Annotated[str, PathParam(pattern=_ID)]) -> StreamingResponse:
        """Live events of the call in flight (test progress with step, loss and ETA).

        The stream starts with the session's state and ends when the call in flight ends
        (at once when none is running).
        """
        run = get_run(session_id)
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

    @app.get("/sessions/{session_id}/transcript", responses=_ERRORS)
    def transcript(session_id: Annotated[str, PathParam(pattern=_ID)]) -> list[dict[str, Any]]:
        """Every event of the session so far (transcript.jsonl)."""
        run = get_run(session_id)
        try:
            return read_transcript(run.active.run_dir)
        except TranscriptError as e:
            raise HTTPException(409, str(e)) from e

    return app


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
