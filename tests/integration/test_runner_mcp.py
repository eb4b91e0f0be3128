"""`runner mcp` driven by the official MCP client over stdio: edit → test → submit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from tests._fixtures.runner import FakeTaskRoot

pytestmark = pytest.mark.integration

FILE = "nanoGPT/custom_pretrain.py"
CONSTANT = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return learning_rate"
)


def test_mcp_stdio_edit_test_submit(runner_env: FakeTaskRoot, tmp_path: Path) -> None:
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
            res = await client.call_tool("test", {})
            seen["test"] = (res.is_error, res.content[0].text)
            res = await client.call_tool("submit", {})
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


def test_mcp_streamable_http(runner_env: FakeTaskRoot, tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    from mcp import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "mcp",
            "--task",
            "fake-lr",
            "--transport",
            "http",
            "--port",
            str(port),
            "--run-dir",
            str(tmp_path / "runs" / "mcp-http"),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"runner mcp --transport http did not start:\n{out}")
            time.sleep(0.2)
        seen: dict[str, object] = {}

        async def drive() -> None:
            with anyio.fail_after(60):
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    seen["tools"] = [t.name for t in (await client.list_tools()).tools]
                    res = await client.call_tool(
                        "view", {"filename": FILE, "start_line": 9, "end_line": 11}
                    )
                    seen["view"] = (res.is_error, res.content[0].text)
                    res = await client.call_tool("read", {})
                    seen["unknown"] = (res.is_error, res.content[0].text)

        anyio.run(drive)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen["tools"] == ["view", "edit", "undo", "test", "submit"]
    view_error, view_text = seen["view"]  # type: ignore[misc]
    assert not view_error and "get_lr" in view_text
    unknown_error, unknown_text = seen["unknown"]  # type: ignore[misc]
    assert unknown_error and unknown_text.startswith("ERROR: Unknown tool 'read'")
    state = json.loads((tmp_path / "runs" / "mcp-http" / "session.json").read_text())
    assert state["steps_used"] == 2  # the unknown tool costs a step, as in MLS-Bench
    assert (
        json.loads((tmp_path / "runs" / "mcp-http" / "run.json").read_text())["status"]
        == "incomplete"
    )

    # the same --run-dir serves the same session again (stdio this time)
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
