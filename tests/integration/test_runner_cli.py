"""The `runner` CLI in-process (typer's CliRunner) on the fake task root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli import app
from tests._fixtures.worlds import TaskWorld

pytestmark = pytest.mark.integration

cli = CliRunner()


def test_tasks_list_show_validate(runner_env: TaskWorld, tmp_path: Path) -> None:
    listed = cli.invoke(app, ["tasks", "list"])
    assert listed.exit_code == 0, listed.output
    assert "fake-lr" in listed.output
    shown = cli.invoke(app, ["tasks", "show", "fake-lr"])
    assert shown.exit_code == 0, shown.output
    assert "Fake learning-rate task" in shown.output and "get_lr" in shown.output
    ok = cli.invoke(app, ["tasks", "validate", str(runner_env.tasks_dir / "fake-lr")])
    assert ok.exit_code == 0 and "OK" in ok.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "task.yaml").write_text("id: broken\ntitle: x\nnonsense_field: 1\n")
    bad = cli.invoke(app, ["tasks", "validate", str(broken)])
    assert bad.exit_code == 1
    assert "nonsense_field" in bad.output
    missing = cli.invoke(app, ["tasks", "show", "no-such-task"])
    assert missing.exit_code == 1 and "no-such-task" in missing.output


def test_run_default_baselines_then_leaderboard(runner_env: TaskWorld, tmp_path: Path) -> None:
    db = tmp_path / "lb.db"
    result = cli.invoke(
        app, ["run", "--task", "fake-lr", "--profile", "auto", "--db", str(db), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "profile tiny (CPU)" in result.output
    assert "cosine (reference)" in result.output and "constant" in result.output
    assert "val_loss" in result.output and "gpt-tiny" in result.output
    # researchers see the metrics hidden from agents, marked as such
    assert "piqa†" in result.output and "hidden from the agent during its run" in result.output
    assert "runner leaderboard serve" in result.output
    runs = sorted(Path("runs").iterdir())
    assert len(runs) == 2
    info = json.loads((runs[0] / "run.json").read_text())
    assert info["config"]["profile"] == "tiny" and info["max_tests"] == 1
    assert info["hardware"]["cpus"] and "pydantic" in info["library_versions"]

    shown = cli.invoke(app, ["leaderboard", "show", "--db", str(db)])
    assert shown.exit_code == 0 and "constant" in shown.output
    exported = cli.invoke(app, ["leaderboard", "export", "--db", str(db), "--format", "csv"])
    assert exported.exit_code == 0
    lines = exported.output.strip().splitlines()
    assert lines[0].startswith("task_id,profile,max_steps,max_tests,codebase_version")
    assert len(lines) == 1 + 2  # the web page's export: one ranked row per run
    jsonl = cli.invoke(app, ["leaderboard", "export", "--db", str(db)])
    records = [json.loads(line) for line in jsonl.output.strip().splitlines()]
    assert {r["method"] for r in records} == {"cosine", "constant"}
    assert all(r["type"] == "baseline" for r in records)
    assert [r["reference"] for r in sorted(records, key=lambda r: r["method"])] == [False, True]


def test_run_rejects_bad_input_clearly(runner_env: TaskWorld) -> None:
    bad_agent = cli.invoke(app, ["run", "--task", "fake-lr", "--agent", "nonsense", "--quiet"])
    assert bad_agent.exit_code == 1 and "unknown agent 'nonsense'" in bad_agent.output
    bad_seeds = cli.invoke(app, ["run", "--task", "fake-lr", "--seeds", "4x", "--quiet"])
    assert bad_seeds.exit_code == 1 and "--seeds" in bad_seeds.output
    bad_baseline = cli.invoke(
        app, ["run", "--task", "fake-lr", "--agent", "baseline:nope", "--quiet"]
    )
    assert bad_baseline.exit_code == 1 and "no baseline 'nope'" in bad_baseline.output
    resume = cli.invoke(app, ["resume", "not-a-run-dir"])
    assert resume.exit_code == 1 and "not a run directory" in resume.output


def test_setup_is_idempotent(runner_env: TaskWorld) -> None:
    if not (runner_env.home / "tokenizer" / "gpt2.tiktoken").exists():
        pytest.skip("no GPT-2 tokenizer on this machine to copy (run `runner setup` once)")
    result = cli.invoke(app, ["setup"])
    assert result.exit_code == 0, result.output
    assert "tokenizer: present" in result.output and "offline corpus: present" in result.output


def test_leaderboard_serve_answers(runner_env: TaskWorld, tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "leaderboard",
            "serve",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "lb.db"),
        ],
        env=dict(os.environ, PYTHONPATH=str(repo)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"leaderboard serve did not start:\n{out}") from None
                time.sleep(0.3)
        assert response.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
