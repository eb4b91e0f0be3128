"""`runner mcp`: one task session's tools over the Model Context Protocol.

Built on the official SDK's low-level ``Server`` so that the tool list is exactly
``env.tool_schemas("mcp")`` (the same names, descriptions and JSON schemas as the OpenAI
dialect) and every call goes through the same `env.Session` — same texts, same budgets.
The initial observation is the server's ``instructions`` and the ``task://observation``
resource. While a tool call runs, the session's progress (the same events as the HTTP API's
stream, hidden settings withheld by `HostedRun`) goes to the client as MCP progress
notifications when the call carries a progress token.

Over streamable HTTP every request needs ``Authorization: Bearer <token>``: the server edits
a session and spends its test budget, so an anonymous client on the network must not reach it.
"""

from __future__ import annotations

import queue
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runner._components import default_runs_dir
from runner._host import HostedRun
from runner._run import RunConfig

if TYPE_CHECKING:  # the SDK is imported only when a server is made (`runner --help` stays fast)
    import anyio
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext

    #: what a handler gets: the session (for progress); no lifespan state, no HTTP request read
    Context = ServerRequestContext[object, object]

OBSERVATION_URI = "task://observation"
#: how often a running tool call looks for progress to forward (seconds)
_PROGRESS_POLL_S = 0.2


def progress_text(event: Mapping[str, object]) -> str:
    """One line for a progress event: setting, seed, phase, step, loss and ETA."""
    parts = [f"{event.get('setting')} seed {event.get('seed')}: {event.get('phase')}"]
    if event.get("step") is not None:
        parts.append(f"step {event['step']}/{event.get('max_steps') or '?'}")
    if event.get("loss") is not None:
        parts.append(f"loss {event['loss']:.3f}")
    eta = event.get("eta_s")
    if isinstance(eta, int | float):
        seconds = int(eta)
        parts.append(f"ETA {seconds // 60}:{seconds % 60:02d}")
    if event.get("message"):
        parts.append(str(event["message"])[:60])
    return "  ".join(parts)


async def _forward_progress(
    ctx: Context, events: queue.Queue[dict[str, object]], done: anyio.Event
) -> None:
    """Send each progress event of ``events`` as a notifications/progress of this request.

    A no-op for a client that sent no progress token (the SDK drops them). Runs until ``done``
    is set and every event queued before it has been sent, so a call that finishes between
    two polls still reports its progress before its result. A notification that cannot be
    sent ends the forwarding, never the call.
    """
    import anyio

    count = 0
    while True:
        finished = done.is_set()  # read first: every event queued before it is drained below
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                break
            if event.get("event") != "progress":
                continue
            count += 1  # MCP progress must increase with every notification
            try:
                await ctx.session.report_progress(count, None, progress_text(event))
            except Exception:
                return  # the client went away: the tool call still completes and is recorded
        if finished:
            return
        with anyio.move_on_after(_PROGRESS_POLL_S):
            await done.wait()


def create_mcp_server(run: HostedRun) -> Server[object]:
    """An MCP low-level Server exposing ``run``'s tools."""
    import anyio
    import mcp_types as types
    from mcp.server import Server

    import env

    schemas = env.tool_schemas("mcp")
    observation = run.observation()

    async def list_tools(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=str(s["name"]), description=str(s["description"]), input_schema=i)
                for s in schemas
                if isinstance(i := s["inputSchema"], dict)
            ]
        )

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        # Unknown tools and bad arguments reach the session too: it answers them with the
        # MLS-Bench ``ERROR: …`` texts and charges them like any other client's calls.
        name = params.name
        arguments = params.arguments if params.arguments is not None else {}
        events = run.events.subscribe()
        done = anyio.Event()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_forward_progress, ctx, events, done)
                try:
                    result = await anyio.to_thread.run_sync(lambda: run.call(name, arguments))
                finally:
                    done.set()  # the forwarder sends what is queued, then ends
        finally:
            run.events.unsubscribe(events)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result.text)], is_error=not result.ok
        )

    async def list_resources(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=OBSERVATION_URI,
                    name="observation",
                    mime_type="text/markdown",
                    description="The task: description, the numbered editable file, budgets.",
                )
            ]
        )

    async def read_resource(
        ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != OBSERVATION_URI:
            from mcp.shared.exceptions import MCPError

            raise MCPError(code=-32602, message=f"unknown resource {params.uri}")
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=OBSERVATION_URI, mime_type="text/markdown", text=observation
                )
            ]
        )

    return Server(
        "pretrainbench",
        version="1",
        instructions=observation,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def serve_mcp(
    *,
    task: str,
    transport: str,
    profile: str,
    run_dir: Path | None,
    sandbox: str,
    max_steps: int | None,
    max_tests: int | None,
    host: str,
    port: int,
    db: str | None,
    token: str | None = None,
    allow_weak_isolation: bool = False,
) -> None:
    """Create a session and serve it until the client disconnects (stdio) or Ctrl-C (http).

    Over HTTP every request needs ``Authorization: Bearer <token>``; without ``token`` one is
    generated and printed with the URL (as Jupyter does). stdio needs none: whoever can write
    to the process's stdin started it.
    """
    import anyio

    if run_dir is not None and (run_dir / "run.json").exists():
        run = HostedRun.reopen(run_dir)  # the same session again, after a restart
    else:
        runs_dir, run_id = (run_dir.parent, run_dir.name) if run_dir else (default_runs_dir(), None)
        config = RunConfig(
            task=task,
            agent="mcp:client",
            profile=profile,
            sandbox=sandbox,  # type: ignore[arg-type]
            max_steps=max_steps,
            max_tests=max_tests,
            db=db,
            allow_weak_isolation=allow_weak_isolation,
        )
        run = HostedRun(config, runs_dir, run_id=run_id)
    print(f"[runner mcp] run {run.run_id} in {run.active.run_dir}", file=sys.stderr)
    server = create_mcp_server(run)
    # SIGTERM ends the server like Ctrl-C, so that the run is recorded in `finally` below
    # (uvicorn re-raises the signals it captured once it has shut down).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if transport == "stdio":
            from mcp.server.stdio import stdio_server

            async def main() -> None:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())

            anyio.run(main)
        else:
            import uvicorn

            from leaderboard import BearerTokenGate
            from runner._api import MAX_BODY_BYTES

            secret = token or secrets.token_urlsafe(32)
            app = BearerTokenGate(
                server.streamable_http_app(host=host, max_request_body_size=MAX_BODY_BYTES),
                token=secret,
            )
            print(
                f"[runner mcp] streamable HTTP at http://{host}:{port}/mcp "
                '(every request needs "Authorization: Bearer <token>")',
                file=sys.stderr,
            )
            if token is None:
                print(
                    f"[runner mcp] token: {secret}  (generated; choose one with --token "
                    "or $PRETRAINBENCH_MCP_TOKEN)",
                    file=sys.stderr,
                )
            sys.stderr.flush()
            uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        if not run.finished:
            run.finish("incomplete", "the MCP client disconnected before submitting")
