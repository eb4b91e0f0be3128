"""Kill `runner run` (SIGKILL) in the middle of a test; `runner resume` finishes the run with
nothing lost and no budget charged twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._fixtures.runner import build_fake_task_root, tool_call

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FILE = "nanoGPT/custom_pretrain.py"


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the runner and every process it started (a crash of the whole machine)."""
    tree = _descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(
    predicate,
    timeout: float,
    what: str,  # type: ignore[no-untyped-def]
    proc: subprocess.Popen[bytes],
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"runner exited ({proc.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _env(root) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update(
        PRETRAINBENCH_TASKS_DIR=str(root.tasks_dir),
        PRETRAINBENCH_BASELINES_DIR=str(root.baselines_dir),
        PRETRAINBENCH_HOME=str(root.home),
        OPENAI_API_KEY="k",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    return env


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "transcript.jsonl").read_text().splitlines()]


def _curve_started(run_dir: Path) -> bool:
    curve = run_dir / "tests" / "1" / "train-tiny" / "seed_42" / "curve.jsonl"
    return curve.is_file() and len(curve.read_text().splitlines()) >= 2


def test_kill_baseline_mid_test_then_resume(tmp_path: Path) -> None:
    root = build_fake_task_root(tmp_path / "root", sleep_s=0.4)  # ~5 s of "training"
    runs, db = tmp_path / "runs", tmp_path / "lb.db"
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "--task",
        "fake-lr",
        "--agent",
        "baseline:constant",
        "--profile",
        "tiny",
        "--run-dir",
        str(runs),
        "--db",
        str(db),
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(lambda: runs.exists() and any(runs.iterdir()), 60, "the run directory", proc)
        run_dir = next(runs.iterdir())
        _wait_for(lambda: _curve_started(run_dir), 60, "training to start", proc)
    finally:
        _kill_tree(proc)
    state = json.loads((run_dir / "session.json").read_text())
    assert state["pending"] is not None and state["pending"]["kind"] == "test"
    assert state["steps_used"] == 2 and state["tests_used"] == 0
    before = _events(run_dir)
    assert [e["name"] for e in before if e["kind"] == "tool_call"] == ["edit", "test"]
    assert [e["name"] for e in before if e["kind"] == "tool_result"] == ["edit"]

    resumed = subprocess.run(
        [sys.executable, "-m", "runner.cli", "resume", str(run_dir), "--quiet"],
        cwd=tmp_path,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "constant" in resumed.stdout  # the results table

    state = json.loads((run_dir / "session.json").read_text())
    assert state["pending"] is None
    assert state["steps_used"] == 2 and state["tests_used"] == 1  # charged once
    assert state["submission"]["test_number"] == 1
    assert len(state["tests"]) == 1 and state["final"]["status"] == "ok"
    curve = (run_dir / "tests" / "1" / "train-tiny" / "seed_42" / "curve.jsonl").read_text()
    assert len(curve.splitlines()) == 12  # the lost training was re-run to the end
    events = _events(run_dir)
    assert events[: len(before)] == before  # appended, nothing rewritten
    results = [e for e in events if e["kind"] == "tool_result"]
    assert [r["name"] for r in results] == ["edit", "test", "submit"]
    assert results[1].get("resumed") is True and results[1]["text"].startswith("[Test #1]")
    assert [e["kind"] for e in events].count("header") == 1
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["resumed"] == 1
    from leaderboard import Store

    record = Store(f"sqlite:///{db}").get_run(run_dir.name)
    assert record is not None and record.type == "baseline" and record.result_status() == "ok"


def test_kill_llm_agent_mid_test_then_resume(tmp_path: Path, chat_server) -> None:  # type: ignore[no-untyped-def]
    root = build_fake_task_root(tmp_path / "root", sleep_s=0.4)
    edit = {
        "op": "replace",
        "filename": FILE,
        "start_line": 10,
        "end_line": 14,
        "content": "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return learning_rate",
    }
    server = chat_server(
        [
            {"tool_calls": [tool_call("edit", edit, "e1")]},
            {"tool_calls": [tool_call("test", "{}", "t1")]},
            # after the resume:
            {"tool_calls": [tool_call("submit", {"n": 1}, "s1")]},
        ]
    )
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "--task",
        "fake-lr",
        "--agent",
        "openai:scripted",
        "--base-url",
        server.base_url,
        "--max-tests",
        "1",
        "--run-dir",
        str(runs),
        "--db",
        str(tmp_path / "lb.db"),
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(lambda: runs.exists() and any(runs.iterdir()), 60, "the run directory", proc)
        run_dir = next(runs.iterdir())
        _wait_for(lambda: _curve_started(run_dir), 60, "training to start", proc)
    finally:
        _kill_tree(proc)
    assert len(server.requests) == 2

    resumed = subprocess.run(
        [sys.executable, "-m", "runner.cli", "resume", str(run_dir), "--quiet", "--api-key", "k"],
        cwd=tmp_path,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(server.requests) == 3 and not server.script
    # the conversation was rebuilt: the model sees its edit, its test call and the test result
    messages = server.requests[2]["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert messages[5]["tool_call_id"] == "t1" and messages[5]["content"].startswith("[Test #1]")
    state = json.loads((run_dir / "session.json").read_text())
    assert state["steps_used"] == 2 and state["tests_used"] == 1
    assert state["submission"]["test_number"] == 1


def test_sigterm_stops_the_test_at_once_and_resume_finishes(tmp_path: Path) -> None:
    root = build_fake_task_root(tmp_path / "root", sleep_s=1.0)  # ~12 s of "training"
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "--task",
        "fake-lr",
        "--agent",
        "baseline:constant",
        "--profile",
        "tiny",
        "--run-dir",
        str(runs),
        "--db",
        str(tmp_path / "lb.db"),
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(lambda: runs.exists() and any(runs.iterdir()), 60, "the run directory", proc)
        run_dir = next(runs.iterdir())
        _wait_for(lambda: _curve_started(run_dir), 60, "training to start", proc)
        tree = _descendants(proc.pid)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            _kill_tree(proc)
    assert time.monotonic() - started < 10, "the runner waited for the training job"
    assert proc.returncode == 130, output
    assert f"runner resume {run_dir}" in output
    time.sleep(1)
    alive = [
        pid
        for pid in tree
        if Path(f"/proc/{pid}").exists()
        and "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:1])
    ]
    assert not alive, f"sandbox processes outlived the runner: {alive}"
    events = _events(run_dir)
    assert events[-1]["kind"] == "error" and "resume" in events[-1]["error"]
    resumed = subprocess.run(
        [sys.executable, "-m", "runner.cli", "resume", str(run_dir), "--quiet"],
        cwd=tmp_path,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = json.loads((run_dir / "session.json").read_text())
    assert state["steps_used"] == 2 and state["tests_used"] == 1
    assert state["submission"]["test_number"] == 1 and state["final"]["status"] == "ok"
