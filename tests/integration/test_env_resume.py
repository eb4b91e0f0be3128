"""Resume after a crash: a real subprocess drives a session and is SIGKILLed, between calls
and in the middle of a test; the session restored from its directory is exactly the one that
was written, and finishing the run gives the same state as a run that never died."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from env import Session, load_task
from sandbox import DataPaths
from tests._fixtures.scripted_backend import RecordingExecutor, scripted_executor
from tests._fixtures.worlds import mini_task_world

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FILE = "nanoGPT/custom_pretrain.py"
HEAD = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"

# The scripted agent: (tool, arguments); edit line numbers are filled in from the workspace.
SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("edit", {"content": HEAD + "    return learning_rate * 0.5"}),
    ("test", {}),
    ("edit", {"content": HEAD + "    return min_lr"}),
    ("test", {}),
    ("submit", {"n": 1}),
]

DRIVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from env import Session, load_task
    from sandbox import DataPaths
    from tests._fixtures.scripted_backend import scripted_executor
    from tests.integration.test_env_resume import SCRIPT, run_script_call

    task_dir, run_dir, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])

    def progress(event):
        print("PROGRESS", event.setting, event.seed, flush=True)

    session = Session(load_task(task_dir), run_dir, executor=scripted_executor(delay_s=delay),
                      profile="tiny", data=DataPaths(data_dir=run_dir.parent / "data"), progress=progress)
    for index in range(len(SCRIPT)):
        run_script_call(session, index)
        print("CALLED", index, flush=True)
        if sys.stdin.readline().strip() != "go":  # wait until the parent allows the next call
            break
    print("END", flush=True)
    """
)


def run_script_call(session: Session, index: int) -> Any:
    """Make call `index` of SCRIPT (shared by the driver and the in-process continuation)."""
    tool, arguments = SCRIPT[index]
    arguments = dict(arguments)
    if tool == "edit":
        first, last = session.workspace.editable_ranges(FILE)[0]
        arguments.update(op="replace", filename=FILE, start_line=first, end_line=last)
    return session.call(tool, arguments)


def _start(tmp_path: Path, task_dir: Path, run_dir: Path, delay: float) -> subprocess.Popen[str]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, str(driver), str(task_dir), str(run_dir), str(delay)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"driver ended before printing {prefix!r} (rc={proc.wait()})")


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _normalised(run_dir: Path) -> dict[str, Any]:
    """session.json with the run's own directory and the executor's wall-clock timings
    replaced, so two runs can be compared."""
    text = (run_dir / "session.json").read_text().replace(str(run_dir.parent), "<root>")
    state: dict[str, Any] = json.loads(text, object_hook=_untimed)
    return state


def _untimed(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: "<time>" if k in ("elapsed_s", "wall_s") else v for k, v in doc.items()}


def _reference(tmp_path: Path, task_dir: Path, upto: int) -> dict[str, Any]:
    """The state after SCRIPT[:upto] in a run that never died."""
    run_dir = tmp_path / f"reference-{upto}" / "run"
    session = Session(
        load_task(task_dir),
        run_dir,
        executor=scripted_executor(),
        profile="tiny",
        data=DataPaths(data_dir=run_dir.parent / "data"),
    )
    for index in range(upto):
        run_script_call(session, index)
    return _normalised(run_dir)


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    return mini_task_world(tmp_path / "src").task_dir


def _resume(run_dir: Path) -> tuple[Session, RecordingExecutor]:
    executor = scripted_executor()
    return Session.resume(run_dir, executor=executor), executor


def test_killed_between_calls(tmp_path: Path, task_dir: Path) -> None:
    run_dir = tmp_path / "killed" / "run"
    proc = _start(tmp_path, task_dir, run_dir, delay=0.0)
    assert proc.stdin is not None
    for index in range(3):
        assert _read_until(proc, "CALLED") == f"CALLED {index}\n"
        if index < 2:
            proc.stdin.write("go\n")
            proc.stdin.flush()
    _kill(proc)  # after the third call, before the fourth
    written = json.loads((run_dir / "session.json").read_text())
    session, executor = _resume(run_dir)
    assert executor.requests == []  # resuming runs nothing
    assert session.state.model_dump(mode="json") == written
    assert _normalised(run_dir) == _reference(tmp_path, task_dir, 3)
    assert session.pending is None and session.tests_left == 2 and session.steps_left == 17
    for index in range(3, len(SCRIPT)):
        assert run_script_call(session, index).ok
    assert session.done and session.final is not None
    assert _normalised(run_dir) == _reference(tmp_path, task_dir, len(SCRIPT))


def test_killed_in_the_middle_of_a_test(tmp_path: Path, task_dir: Path) -> None:
    run_dir = tmp_path / "killed" / "run"
    proc = _start(tmp_path, task_dir, run_dir, delay=60.0)
    assert proc.stdin is not None
    assert _read_until(proc, "CALLED") == "CALLED 0\n"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    _read_until(proc, "PROGRESS train-tiny 42")  # the test is running (and sleeping)
    _kill(proc)
    written = json.loads((run_dir / "session.json").read_text())
    assert written["pending"]["kind"] == "test" and written["tests_used"] == 0
    assert written["steps_used"] == 2
    session, executor = _resume(run_dir)
    assert session.state.model_dump(mode="json") == written
    result = session.complete_pending()
    assert result is not None and result.text.startswith("[Test #1] (2 tests remaining;")
    assert session.state.tests_used == 1 and session.state.steps_used == 2  # charged once
    assert len(executor.requests) == 1
    for index in range(2, len(SCRIPT)):
        assert run_script_call(session, index).ok
    assert _normalised(run_dir) == _reference(tmp_path, task_dir, len(SCRIPT))
