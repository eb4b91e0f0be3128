"""`runner replay`: a recorded run's tool calls re-driven against a fresh session on the real
local sandbox (the torch-free fake codebase of `tests/_fixtures/runner.py`, tiny profile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner._display import QuietDisplay
from runner._run import RunConfig, start_run
from runner._transcript import read_transcript
from runner.cli import app
from tests._fixtures.runner import tool_call
from tests._fixtures.worlds import TaskWorld

pytestmark = pytest.mark.integration

cli = CliRunner()
FILE = "nanoGPT/custom_pretrain.py"


def _replay(run_dir: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    result = cli.invoke(
        app,
        ["replay", str(run_dir), "--run-dir", str(tmp_path / "replays"), "--json", *extra],
    )
    return result.exit_code, json.loads(result.stdout)


def test_replay_of_a_baseline_run_reproduces_every_observation(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    recorded = start_run(
        RunConfig(task="fake-lr", agent="baseline:constant", profile="tiny", seeds=[1, 2]),
        tmp_path / "runs",
        QuietDisplay(),
    )
    assert recorded.info.status == "finished", recorded.info.reason
    code, report = _replay(recorded.run_dir, tmp_path)
    assert code == 0, report
    steps = report["steps"]
    assert [s["tool"] for s in steps] == ["edit", "test", "submit"]
    assert all(s["same"] and s["diff"] == "" for s in steps)
    # really re-run (no cache): the test result carries the training numbers again
    assert "val_loss" in steps[1]["replayed"] and report["use_cache"] is False
    replay_dir = Path(report["replay_dir"])
    assert replay_dir.parent == tmp_path / "replays"
    info = json.loads((replay_dir / "run.json").read_text())
    assert info["config"]["seeds"] == [1, 2] and info["config"]["db"] is None
    assert info["config"]["profile"] == "tiny" and info["max_tests"] == 1


def test_replay_of_an_agent_run_and_a_changed_record(
    runner_env: TaskWorld, chat_server, tmp_path: Path
) -> None:
    get_lr = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
    edit = dict(op="replace", filename=FILE, start_line=10, end_line=14)
    server = chat_server(
        [
            {"tool_calls": [tool_call("view", '{"filename": "nanoGPT/custom_pretrain.py"', "c1")]},
            {"tool_calls": [tool_call("view", {"filename": FILE}, "c2")]},
            {
                "tool_calls": [
                    tool_call("edit", edit | {"content": get_lr + "    return 1e-3"}, "c3")
                ]
            },
            {"tool_calls": [tool_call("undo", {}, "c4")]},
            {"tool_calls": [tool_call("test", "", "c5")]},
            {"tool_calls": [tool_call("submit", {"n": 1}, "c6")]},
        ]
    )
    recorded = start_run(
        RunConfig(
            task="fake-lr",
            agent="openai:scripted",
            profile="tiny",
            base_url=server.base_url,
            max_tests=1,  # so that one test may be submitted
        ),
        tmp_path / "runs",
        QuietDisplay(),
        api_key="k",
    )
    assert recorded.info.reason == "submitted", recorded.info.reason
    code, report = _replay(recorded.run_dir, tmp_path)
    assert code == 0, [s["diff"] for s in report["steps"]]
    assert [s["tool"] for s in report["steps"]] == [
        "view",
        "view",
        "edit",
        "undo",
        "test",
        "submit",
    ]
    assert report["steps"][0]["replayed"].startswith("ERROR: Invalid arguments for 'view'")
    # the model's arguments as it sent them: JSON text (the malformed one above too)
    assert json.loads(report["steps"][1]["arguments"]) == {"filename": FILE}

    # the same record with one observation changed: reported as a difference, exit 1
    transcript = recorded.run_dir / "transcript.jsonl"
    lines = transcript.read_text().splitlines()
    events = read_transcript(recorded.run_dir)
    assert len(events) == len(lines)
    test_result = next(
        i for i, e in enumerate(events) if e["kind"] == "tool_result" and e["name"] == "test"
    )
    changed = dict(events[test_result])
    changed["text"] = str(changed["text"]).replace("val_loss", "val_lost", 1)
    lines[test_result] = json.dumps(changed)
    transcript.write_text("\n".join(lines) + "\n")
    code, report = _replay(recorded.run_dir, tmp_path, "--use-cache")
    assert code == 1
    assert [s["same"] for s in report["steps"]] == [True, True, True, True, False, True]
    diff = report["steps"][4]["diff"]
    assert "--- recorded/step-5" in diff and "-" in diff and "val_lost" in diff
    assert report["use_cache"] is True

    shown = cli.invoke(app, ["replay", str(recorded.run_dir), "--run-dir", str(tmp_path / "r2")])
    assert shown.exit_code == 1
    assert "step 5 test: differs" in shown.stdout and "5/6 observations" in shown.stdout


@pytest.mark.slow
def test_replay_of_a_real_tiny_baseline_run(tmp_path: Path) -> None:
    """The real codebase: training on CPU is deterministic for a seed, so a replay without
    the cache re-trains and reproduces the recorded numbers exactly."""
    import importlib.util

    from runner._components import pretrainbench_home
    from runner._setup import setup_ready

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install -e '.[train]')")
    if not setup_ready(pretrainbench_home()):
        pytest.skip(f"{pretrainbench_home()} is not prepared (run `runner setup`)")
    recorded = start_run(
        RunConfig(
            task="llm-pretrain-lr-schedule",
            agent="baseline:wsd",
            profile="tiny",
            final_seeds=[42],
        ),
        tmp_path / "runs",
        QuietDisplay(),
    )
    assert recorded.info.status == "finished", recorded.info.reason
    code, report = _replay(recorded.run_dir, tmp_path)
    assert code == 0, [s["diff"] for s in report["steps"]]
    test = next(s for s in report["steps"] if s["tool"] == "test")
    assert "val_loss" in test["replayed"] and "[cached" not in test["replayed"]
