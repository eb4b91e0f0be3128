"""The `runner` CLI in-process (typer's CliRunner) on the fake task root."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
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
    assert "cosine (reference)" in result.output and "constant" in result.output, result.output
    assert "val_loss" in result.output and "gpt-tiny" in result.output
    # researchers see the metrics hidden from agents, marked as such
    assert "piqa†" in result.output and "hidden from the agent during its run" in result.output
    assert "runner leaderboard serve" in result.output
    runs = sorted((runner_env.home / "runs").iterdir())  # $PRETRAINBENCH_HOME/runs
    assert not Path("runs").exists()
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


def test_final_seeds_apply_to_the_final_evaluation_only(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    from leaderboard import Store

    db = tmp_path / "lb.db"
    args = ["--agent", "baseline:constant", "--seeds", "5", "--final-seeds", "5,6,7"]
    ran = cli.invoke(app, ["run", "--task", "fake-lr", *args, "--db", str(db), "--quiet"])
    assert ran.exit_code == 0, ran.output
    [run_dir] = (runner_env.home / "runs").iterdir()
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["seeds"] == [5] and config["final_seeds"] == [5, 6, 7]
    with Store(f"sqlite:///{db}") as store:
        record = store.get_run(run_dir.name)
    assert record is not None and record.final is not None
    assert {t.seed for t in record.tests} == {5}
    assert {r.seed for r in record.final.per_seed} == {5, 6, 7}


def test_an_identical_result_is_one_row_and_force_records_a_labelled_repeat(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    from leaderboard import Store, create_app

    db = tmp_path / "lb.db"  # each command opens the file anew: the check survives restarts
    args = ["run", "--task", "fake-lr", "--agent", "baseline:constant", "--db", str(db)]
    first = cli.invoke(app, [*args, "--quiet"])
    assert first.exit_code == 0, first.output
    with Store(f"sqlite:///{db}") as store:
        [original] = store.run_ids()
    again = cli.invoke(app, [*args, "--quiet"])
    assert again.exit_code == 0, again.output
    said = re.sub(r"\s+", " ", again.output)
    assert f"identical to run {original}, not recorded; --force records a repeat" in said
    assert "constant" in again.output  # the original's row is shown instead
    with Store(f"sqlite:///{db}") as store:
        assert store.run_ids() == [original]
    forced = cli.invoke(app, [*args, "--quiet", "--force"])
    assert forced.exit_code == 0, forced.output
    with Store(f"sqlite:///{db}") as store:
        [repeat] = [r for r in store.run_ids() if r != original]
        record = store.get_run(repeat)
        assert record is not None and record.repeat_of == original
        assert store.repeats_of(original) == [repeat]
        data = store.task_data("fake-lr")
        assert data is not None and [r.run_id for r in data.results] == [original]
        from fastapi.testclient import TestClient

        client = TestClient(create_app(store))
        assert f'data-run="{repeat}"' not in client.get("/tasks/fake-lr").text
        assert f'href="/runs/{repeat}"' in client.get(f"/runs/{original}").text
        assert f'href="/runs/{original}"' in client.get(f"/runs/{repeat}").text
    exported = cli.invoke(app, ["leaderboard", "export", "--db", str(db), "--format", "csv"])
    assert len(exported.output.strip().splitlines()) == 1 + 1  # the header and one row


def test_run_rejects_bad_input_clearly(runner_env: TaskWorld) -> None:
    bad_agent = cli.invoke(app, ["run", "--task", "fake-lr", "--agent", "nonsense", "--quiet"])
    assert bad_agent.exit_code == 1 and "unknown agent 'nonsense'" in bad_agent.output
    bad_seeds = cli.invoke(app, ["run", "--task", "fake-lr", "--seeds", "4x", "--quiet"])
    assert bad_seeds.exit_code == 1 and "--seeds" in bad_seeds.output
    twice = cli.invoke(app, ["run", "--task", "fake-lr", "--final-seeds", "1,1", "--quiet"])
    assert twice.exit_code == 1 and "--final-seeds names a seed twice" in twice.output
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
    assert "offline evaluation sets: present" in result.output


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
    from leaderboard import Store

    Store(f"sqlite:///{tmp_path / 'lb.db'}").close()  # serving reads an existing store
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


def test_results_tables_from_the_scored_view_wide_narrow_and_json(
    runner_env: TaskWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "lb.db"
    ran = cli.invoke(
        app,
        ["run", "--task", "fake-lr", "--seeds", "1,2", "--db", str(db), "--quiet", "--json"],
    )
    assert ran.exit_code == 0, ran.output
    # --json: stdout is one JSON document (progress went to stderr, which CliRunner mixes in)
    start = ran.stdout.index("[")
    [table] = json.loads(ran.stdout[start : ran.stdout.rindex("]") + 1])
    assert table["task_id"] == "fake-lr" and "no agent budgets" in table["label"]
    rows = {row["method"]: row for row in table["rows"]}
    assert set(rows) == {"cosine", "constant"}
    assert sorted(r["rank"] for r in rows.values()) == [1, 2]
    val = rows["cosine"]["metrics"]["val_loss_gpt-tiny"]
    assert val["n"] == 2 and val["ci_low"] < val["mean"] < val["ci_high"]
    assert rows["cosine"]["score"] is not None and rows["cosine"]["run_id"].startswith("fake-lr-")

    shown = cli.invoke(app, ["leaderboard", "show", "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == [table]

    shown_at = {}
    for columns in (80, 200, 250):
        monkeypatch.setattr("runner.cli.out", Console(width=columns))
        shown_at[columns] = cli.invoke(app, ["leaderboard", "show", "--db", str(db)])
    run_id = rows["cosine"]["run_id"]
    for columns, result in shown_at.items():
        out = result.output
        assert result.exit_code == 0, out
        assert run_id in out and "cosine (reference)" in out
        assert "± " in out and "seeds" in out and "95 % interval" in out
        # readable: no line over the width, nothing cut with an ellipsis
        assert all(len(line) <= columns for line in out.splitlines()), out
        assert "…" not in out
    # seven metrics with intervals and the run id need ~225 columns: one table at 250, blocks
    # (one per run) at 200 and 80
    assert "┃ score ┃ seeds ┃" in shown_at[250].output
    assert "┃ score" not in shown_at[200].output
    narrow = shown_at[80]
    assert re.search(r"^#1  \S+.*\(baseline\)$", narrow.output, re.M), narrow.output
    assert re.search(rf"^  run id +{run_id}$", narrow.output, re.M), narrow.output
    assert re.search(r"^  seeds +2$", narrow.output, re.M), narrow.output


def test_version_names_the_package_and_commit() -> None:
    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("pretrainbench 0.")
    if (Path(__file__).resolve().parents[2] / ".git").exists():
        assert "(git " in result.output


def test_one_home_for_files_and_clear_errors(runner_env: TaskWorld) -> None:
    """Store and runs default under $PRETRAINBENCH_HOME (said at the start), never the current
    directory; reading a store that does not exist, or an unknown task, exits non-zero."""
    home = runner_env.home
    ran = cli.invoke(app, ["run", "--task", "fake-lr", "--agent", "baseline:constant", "--quiet"])
    assert ran.exit_code == 0, ran.output
    store = home / "pretrainbench.db"
    assert f"home {home} · runs {home / 'runs'} · store sqlite:///{store}" in ran.output
    assert store.is_file() and len(list((home / "runs").iterdir())) == 1
    assert list(Path.cwd().iterdir()) == []  # nothing written where the command ran
    shown = cli.invoke(app, ["leaderboard", "show"])
    assert shown.exit_code == 0 and "constant" in shown.output

    unknown = cli.invoke(app, ["leaderboard", "show", "--task", "nope"])
    assert unknown.exit_code == 1
    assert "no runs of task 'nope'" in unknown.output and "fake-lr" in unknown.output
    exported = cli.invoke(app, ["leaderboard", "export", "--task", "nope"])
    assert exported.exit_code == 1 and "'nope'" in exported.output
    bad_task = cli.invoke(app, ["run", "--task", "nope", "--quiet"])
    assert bad_task.exit_code == 1
    assert "unknown task 'nope'" in bad_task.output and "fake-lr" in bad_task.output

    absent = home / "elsewhere.db"
    for args in (["show"], ["export"], ["export", "--format", "csv"], ["serve"]):
        result = cli.invoke(app, ["leaderboard", *args, "--db", str(absent)])
        assert result.exit_code == 1, (args, result.output)
        assert f"no leaderboard store at {absent}" in result.output
        assert "runner run" in result.output  # the hint
    assert not absent.exists()  # never created by reading
    store.unlink()
    default = cli.invoke(app, ["leaderboard", "show"])
    assert default.exit_code == 1 and str(store) in default.output
