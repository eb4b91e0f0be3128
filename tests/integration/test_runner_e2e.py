"""End to end with the real tiny profile: `runner run` with the openai: agent (a loopback chat
server) on llm-pretrain-lr-schedule — real codebase, real preflight, real training and
evaluation in the local sandbox, leaderboard record. Minutes on a CPU: marked slow."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runner._components import pretrainbench_home
from runner._setup import setup_ready
from tests._fixtures.runner import tool_call

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TASK = "llm-pretrain-lr-schedule"
WSD = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
    "    if it < warmup_iters:\n"
    "        return learning_rate * (it + 1) / (warmup_iters + 1)\n"
    "    decay_start = int(0.8 * lr_decay_iters)\n"
    "    if it < decay_start:\n"
    "        return learning_rate\n"
    "    frac = min(1.0, (it - decay_start) / max(1, lr_decay_iters - decay_start))\n"
    "    return learning_rate + frac * (min_lr - learning_rate)"
)


def _prerequisites() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install -e '.[train]')"
    if not setup_ready(pretrainbench_home()):
        return f"{pretrainbench_home()} is not prepared (run `runner setup`)"
    return None


def _runner(base_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`runner run` on the task at the tiny profile against ``base_url``, storing in
    ``tmp_path/lb.db``."""
    environ = dict(
        os.environ,
        OPENAI_API_KEY="k",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "runner.cli", "run", "--task", TASK, "--base-url", base_url]
    command += ["--profile", "tiny", "--run-dir", str(tmp_path / "runs")]
    command += ["--db", str(tmp_path / "lb.db"), "--quiet", *args]
    return subprocess.run(
        command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=3000
    )


def _wsd_edit() -> dict:
    """The edit of get_lr to WSD, at the line range the agent sees."""
    import env

    task = env.load_task(TASK)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = env.Workspace.create(task, Path(tmp) / "ws")
        first, last = workspace.editable_ranges("custom_pretrain.py")[0]
    arguments = {
        "op": "replace",
        "filename": "nanoGPT/custom_pretrain.py",
        "start_line": first,
        "end_line": last,
        "content": WSD,
    }
    return tool_call("edit", arguments, "e1")


def test_openai_agent_real_tiny_profile(chat_server, tmp_path: Path) -> None:
    missing = _prerequisites()
    if missing:
        pytest.skip(missing)
    server = chat_server(
        [
            {"tool_calls": [_wsd_edit()]},
            {"tool_calls": [tool_call("test", "{}", "t1")]},
            {"tool_calls": [tool_call("submit", {"n": 1}, "s1")]},
        ]
    )
    db = tmp_path / "lb.db"
    # one final seed: test_env_resume_real runs the profile's default three
    args = ["--agent", "openai:scripted", "--max-tests", "1", "--final-seeds", "42"]
    proc = _runner(server.base_url, tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "val_loss" in proc.stdout and "gpt-tiny" in proc.stdout
    run_dir = next((tmp_path / "runs").iterdir())
    state = json.loads((run_dir / "session.json").read_text())
    assert state["tests_used"] == 1 and state["submission"]["test_number"] == 1
    assert state["final"]["status"] == "ok"
    jobs = {r["setting"] for r in state["final"]["results"]}
    assert jobs == {"schedule", "train-tiny", "gpt-tiny", "lm-eval-tiny"}
    from leaderboard import Store

    record = Store(f"sqlite:///{db}").get_run(run_dir.name)
    assert record is not None and record.result_status() == "ok"
    assert any("val_loss_gpt-tiny" in row.metrics for row in record.result_rows())
    assert {row.seed for row in record.result_rows()} == {42}  # --final-seeds 42


def test_vanilla_run_real_tiny_profile(chat_server, tmp_path: Path) -> None:
    """MLS-Bench's vanilla: one reply, one test, then the final evaluation (lm-eval
    included), so every scored metric exists."""
    missing = _prerequisites()
    if missing:
        pytest.skip(missing)
    server = chat_server([{"tool_calls": [_wsd_edit()]}])
    args = ["--agent", "openai:scripted", "--mode", "vanilla", "--final-seeds", "42"]
    proc = _runner(server.base_url, tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = next((tmp_path / "runs").iterdir())
    from leaderboard import Store

    record = Store(f"sqlite:///{tmp_path / 'lb.db'}").get_run(run_dir.name)
    assert record is not None and record.type == "vanilla" and record.final is not None
    assert record.result_status() == "ok"
    lm_eval = [r for r in record.final.per_seed if r.setting == "lm-eval-tiny"]
    assert lm_eval and all(r.status == "ok" and r.metrics for r in lm_eval)
    present = {key for row in record.result_rows() for key in row.metrics}
    assert {spec.key for spec in record.metric_specs} <= present
