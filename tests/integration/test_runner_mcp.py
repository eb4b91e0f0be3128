"""`runner mcp` driven by the official MCP client, over stdio (edit → test → submit) and over
streamable HTTP behind its bearer token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from runner.cli import app as cli_app
from tests._fixtures.worlds import TaskWorld

pytestmark = pytest.mark.integration

FILE = "nanoGPT/custom_pretrain.py"
HIDDEN = "lm-eval-tiny"  # the fake task's hidden setting
REPO = Path(__file__).resolve().parents[2]
CONSTANT = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return learning_rate"
)


def test_mcp_stdio_edit_test_submit(runner_env: TaskWorld, tmp_path: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from env import tool_schemas

    run_dir = tmp_path / "runs" / "mcp-run-1"
    db = tmp_path / "lb.db"
    env = {k: v for k, v in os.environ.items() if k.startswith(("PRETRAINBENCH_", "PATH", "HOME"))}
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "runner.cli",
            "mcp",
            "--task",
            "fake-lr",
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "6",
            "--max-tests",
            "1",
            "--db",
            str(db),
        ],
        env=env,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    seen: dict[str, object] = {}
    test_progress: list[str | None] = []
    submit_progress: list[str | None] = []

    async def on_test_progress(progress: float, total: float | None, message: str | None) -> None:
        test_progress.append(message)

    async def on_submit_progress(progress: float, total: float | None, message: str | None) -> None:
        submit_progress.append(message)

    async def drive() -> None:
        with anyio.fail_after(120):
            await session(params)

    async def session(params: StdioServerParameters) -> None:
        async with Client(params, mode="legacy") as client:
            tools = await client.list_tools()
            seen["tools"] = [(t.name, t.description, t.input_schema) for t in tools.tools]
            seen["instructions"] = client.instructions
            res = await client.call_tool(
                "edit",
                {
                    "op": "replace",
                    "filename": FILE,
                    "start_line": 10,
                    "end_line": 14,
                    "content": CONSTANT,
                },
            )
            seen["edit"] = (res.is_error, res.content[0].text)
            res = await client.call_tool("edit", {"op": "replace", "filename": FILE})
            seen["bad"] = (res.is_error, res.content[0].text)
            res = await client.call_tool("submit", {"n": 1})
            seen["early_submit"] = (res.is_error, res.content[0].text)
            res = await client.call_tool("test", {}, progress_callback=on_test_progress)
            seen["test"] = (res.is_error, res.content[0].text)
            res = await client.call_tool("submit", {}, progress_callback=on_submit_progress)
            seen["submit"] = (res.is_error, res.content[0].text)
            res = await client.call_tool("view", {"filename": FILE})
            seen["after"] = (res.is_error, res.content[0].text)

    anyio.run(drive)

    expected = [(s["name"], s["description"], s["inputSchema"]) for s in tool_schemas("mcp")]
    assert seen["tools"] == expected
    assert "Fake learning-rate task" in str(seen["instructions"])
    assert seen["edit"] == (False, seen["edit"][1]) and str(seen["edit"][1]).startswith(
        "OK: Replaced"
    )
    bad_error, bad_text = seen["bad"]  # type: ignore[misc]
    assert bad_error and "ERROR: Invalid arguments for 'edit'" in bad_text
    early_error, early_text = seen["early_submit"]  # type: ignore[misc]
    assert early_error and early_text.startswith("ERROR: No test results yet")
    test_error, test_text = seen["test"]  # type: ignore[misc]
    assert not test_error and test_text.startswith("[Test #1]")
    assert "lm-eval-tiny" not in test_text and "piqa" not in test_text  # hidden setting
    submit_error, submit_text = seen["submit"]  # type: ignore[misc]
    assert not submit_error and "[submit] Submitting result from test #1" in submit_text
    # the test's training progress arrives as MCP progress notifications; the final
    # evaluation of the submit ran the hidden setting, whose progress never does
    assert any(m and "seed 42" in m for m in test_progress), test_progress
    assert all(HIDDEN not in (m or "") for m in [*test_progress, *submit_progress])
    assert HIDDEN not in (run_dir / "transcript.jsonl").read_text()
    after_error, after_text = seen["after"]  # type: ignore[misc]
    assert after_error and "Already submitted" in after_text

    state = json.loads((run_dir / "session.json").read_text())
    assert state["steps_used"] == 3 and state["tests_used"] == 1  # edit, bad edit, test
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished"
    names = [
        json.loads(line)["kind"] for line in (run_dir / "transcript.jsonl").read_text().splitlines()
    ]
    assert names[0] == "header" and names.count("tool_result") == 6
    assert names.index("end") > max(
        i for i, n in enumerate(names) if n == "tool_result" and i < names.index("end")
    )
    from leaderboard import Store

    record = Store(f"sqlite:///{db}").get_run("mcp-run-1")
    assert record is not None and record.type == "agent" and record.final is not None


class McpHttpServer:
    """`runner mcp --transport http` in a subprocess on a free loopback port; its merged
    stdout and stderr lines are collected as they come."""

    def __init__(self, cwd: Path, run_dir: Path, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "runner.cli", "mcp", "--task", "fake-lr"),
                *("--transport", "http", "--port", str(self.port), "--run-dir", str(run_dir)),
            ],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError("runner mcp --transport http did not start:\n" + self.output)
            time.sleep(0.2)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything the server printed so far."""
        return "\n".join(self.lines)

    def printed_token(self) -> str | None:
        """The token the server generated and printed, if it did."""
        prefix = "[runner mcp] token: "
        found = [line[len(prefix) :].split()[0] for line in self.lines if line.startswith(prefix)]
        return found[0] if found else None

    def close(self) -> None:
        """Stop the server (SIGTERM: it records the run first) and wait for it."""
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=5)


@asynccontextmanager
async def authorized_client(url: str, token: str) -> AsyncIterator[Any]:
    """The official MCP client over streamable HTTP, sending ``Authorization: Bearer``."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)
        ) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def leaf_errors(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as the SDK's task groups raise them."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_errors(inner)]
    return [error]


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "anonymous", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def assert_refused(url: str, headers: dict[str, str]) -> None:
    """Every way into the server answers 401 with ``WWW-Authenticate: Bearer``."""
    root = url.removesuffix("/mcp")
    with httpx.Client(timeout=10) as http:
        for method, target in (("POST", url), ("GET", url), ("DELETE", url), ("GET", root + "/")):
            response = http.request(
                method, target, headers={**MCP_HEADERS, **headers}, json=INITIALIZE
            )
            assert response.status_code == 401, (method, target, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


def test_mcp_streamable_http(runner_env: TaskWorld, tmp_path: Path) -> None:
    """No token given: the server generates one and prints it with the URL; without it, or
    with a wrong one, every request gets 401; with it the official client works."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PRETRAINBENCH_MCP_TOKEN", None)
    server = McpHttpServer(tmp_path, tmp_path / "runs" / "mcp-http", env)
    port = server.port
    seen: dict[str, object] = {}
    try:
        token = server.printed_token()
        assert token and len(token) >= 40, server.output  # token_urlsafe(32): 43 characters
        assert f"http://127.0.0.1:{port}/mcp" in server.output
        assert_refused(server.url, {})
        assert_refused(server.url, {"Authorization": "Bearer wrong"})
        assert_refused(server.url, {"Authorization": f"Bearer {token}x"})
        assert_refused(server.url, {"Authorization": token})

        async def refused() -> None:
            with anyio.fail_after(60):
                async with authorized_client(server.url, "wrong") as client:
                    await client.list_tools()

        from mcp.shared.exceptions import MCPError

        with pytest.raises((MCPError, ExceptionGroup)) as refusal:
            anyio.run(refused)
        assert any(isinstance(e, MCPError) for e in leaf_errors(refusal.value)), refusal.value

        async def drive() -> None:
            with anyio.fail_after(60):
                async with authorized_client(server.url, token) as client:
                    seen["tools"] = [t.name for t in (await client.list_tools()).tools]
                    res = await client.call_tool(
                        "view", {"filename": FILE, "start_line": 9, "end_line": 11}
                    )
                    seen["view"] = (res.is_error, res.content[0].text)
                    res = await client.call_tool("read", {})
                    seen["unknown"] = (res.is_error, res.content[0].text)

        anyio.run(drive)
    finally:
        server.close()
    assert seen["tools"] == ["view", "edit", "undo", "test", "submit"]
    view_error, view_text = seen["view"]  # type: ignore[misc]
    assert not view_error and "get_lr" in view_text
    unknown_error, unknown_text = seen["unknown"]  # type: ignore[misc]
    assert unknown_error and unknown_text.startswith("ERROR: Unknown tool 'read'")
    state = json.loads((tmp_path / "runs" / "mcp-http" / "session.json").read_text())
    assert state["steps_used"] == 2  # the refused requests cost nothing; the unknown tool does
    assert (
        json.loads((tmp_path / "runs" / "mcp-http" / "run.json").read_text())["status"]
        == "incomplete"
    )

    # the same --run-dir serves the same session again (stdio this time: no token needed)
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "runner.cli",
            "mcp",
            "--task",
            "fake-lr",
            "--run-dir",
            str(tmp_path / "runs" / "mcp-http"),
        ],
        env=env,
        cwd=str(tmp_path),
    )

    async def again() -> None:
        with anyio.fail_after(60):
            async with Client(params, mode="legacy") as client:
                res = await client.call_tool("undo", {})
                seen["undo"] = (res.is_error, res.content[0].text)

    anyio.run(again)
    undo_error, undo_text = seen["undo"]  # type: ignore[misc]
    assert undo_error and undo_text.startswith("ERROR: Nothing to undo")
    state = json.loads((tmp_path / "runs" / "mcp-http" / "session.json").read_text())
    assert state["steps_used"] == 3
    kinds = [
        json.loads(line)["kind"]
        for line in (tmp_path / "runs" / "mcp-http" / "transcript.jsonl").read_text().splitlines()
    ]
    assert kinds.count("header") == 1 and "resume" in kinds


def test_mcp_http_token_from_the_environment(runner_env: TaskWorld, tmp_path: Path) -> None:
    """$PRETRAINBENCH_MCP_TOKEN is the token (none is generated or printed)."""
    chosen = "a-token-chosen-by-the-researcher"
    env = dict(os.environ, PYTHONPATH=str(REPO), PRETRAINBENCH_MCP_TOKEN=chosen)
    server = McpHttpServer(tmp_path, tmp_path / "runs" / "mcp-env", env)
    try:
        assert server.printed_token() is None and chosen not in server.output
        assert_refused(server.url, {})
        assert_refused(server.url, {"Authorization": "Bearer " + chosen[:-1]})

        async def drive() -> list[str]:
            with anyio.fail_after(60):
                async with authorized_client(server.url, chosen) as client:
                    return [t.name for t in (await client.list_tools()).tools]

        assert anyio.run(drive) == ["view", "edit", "undo", "test", "submit"]
    finally:
        server.close()


def test_mcp_refuses_a_home_it_cannot_prepare(runner_env: TaskWorld, tmp_path: Path) -> None:
    """An unprepared home that cannot be prepared stops `runner mcp` before it serves, with
    an error that says to run `runner setup` (not at the agent's first test)."""
    home = tmp_path / "not-a-directory"
    home.write_text("a file where the home should be\n")
    run_dir = tmp_path / "runs" / "never"
    for transport in ("stdio", "http"):
        result = CliRunner().invoke(
            cli_app,
            ["mcp", "--task", "fake-lr", "--transport", transport, "--run-dir", str(run_dir)],
            env={"PRETRAINBENCH_HOME": str(home)},
        )
        assert result.exit_code == 1, result.output
        assert "runner setup" in result.output and str(home) in result.output
        assert not run_dir.exists()
