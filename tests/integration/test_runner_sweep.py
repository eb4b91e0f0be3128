"""`runner sweep` on the local sandbox: a 3-point × 2-seed sweep SIGKILLed mid-way resumes
from the same command without re-running a finished point, and its table is right.

The task is the runner tests' torch-free stand-in of the nanoGPT codebase (`fake_task_root`:
real env sessions, real bubblewrap jobs, the real job cache and store; "training" is
arithmetic on the learning-rate table, so the learning rate moves val_loss)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._fixtures.runner import build_fake_task_root
from tests._fixtures.worlds import TaskWorld
from tests.integration.test_runner_resume import _descendants, _env, _wait_for

pytestmark = pytest.mark.integration


def _sweep_cmd(runs: Path, db: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runner.cli",
        "sweep",
        "--task",
        "fake-lr",
        "--grid",
        "learning_rate=0.001,0.004",
        "--seeds",
        "42,43",
        "--profile",
        "tiny",
        "--jobs",
        "2",
        "--run-dir",
        str(runs),
        "--db",
        str(db),
        *extra,
    ]


def _finish(cmd: list[str], cwd: Path, root: TaskWorld) -> subprocess.CompletedProcess[str]:
    """Run a sweep command to its end; it must succeed."""
    done = subprocess.run(cmd, cwd=cwd, env=_env(root), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _sweep_dir(runs: Path) -> Path | None:
    found = list((runs / "sweeps").glob("*/sweep.json")) if (runs / "sweeps").is_dir() else []
    return found[0].parent if found else None


def _finished(sweep_dir: Path) -> set[int]:
    return {
        int(p.name.removesuffix(".result.json").rsplit("-p", 1)[1])
        for p in (sweep_dir / "points").glob("*.result.json")
    }


def _training(sweep_dir: Path, index: int) -> bool:
    run = next((sweep_dir / "points").glob(f"*-p{index}"), None)
    curve = run / "tests" / "1" / "train-tiny" / "seed_42" / "curve.jsonl" if run else None
    return curve is not None and curve.is_file() and len(curve.read_text().splitlines()) >= 2


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file of a run directory: (size, mtime in ns)."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sweep_killed_mid_way_resumes_without_rerunning_finished_points(tmp_path: Path) -> None:
    root = build_fake_task_root(tmp_path / "root", sleep_s=0.3)  # ~4 s of "training" per seed
    runs, db = tmp_path / "runs", tmp_path / "lb.db"
    log = (tmp_path / "first.log").open("wb")
    proc = subprocess.Popen(
        _sweep_cmd(runs, db), cwd=tmp_path, env=_env(root), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(lambda: _sweep_dir(runs) is not None, 60, "the sweep directory", proc)
        sweep_dir = _sweep_dir(runs)
        assert sweep_dir is not None
        # point 2 starts when one of the first two has finished: kill while it trains
        _wait_for(lambda: _training(sweep_dir, 2), 240, "point 2 to train", proc)
        workers = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the driver only: its workers must follow it
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    deadline = time.monotonic() + 10  # SIGTERM: a worker cancels its jobs and exits
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived the killed driver"

    done = _finished(sweep_dir)
    assert done and 2 not in done, (tmp_path / "first.log").read_text()
    points = sweep_dir / "points"
    before = {i: _snapshot(next(points.glob(f"*-p{i}"))) for i in done}
    results_before = {i: next(points.glob(f"*-p{i}.result.json")).read_text() for i in done}
    logs_before = {i: (sweep_dir / "logs" / f"point-{i}.log").read_text() for i in done}
    killed = next(points.glob("*-p2"))
    started_at = json.loads((killed / "run.json").read_text())["started_at"]

    resumed = _finish(_sweep_cmd(runs, db, "--json"), tmp_path, root)
    table = json.loads(resumed.stdout)  # stdout is only JSON

    # finished points were not touched: no new job, log line, transcript event or result
    for i in done:
        assert _snapshot(next(points.glob(f"*-p{i}"))) == before[i], f"point {i} was re-run"
        assert next(points.glob(f"*-p{i}.result.json")).read_text() == results_before[i]
        assert (sweep_dir / "logs" / f"point-{i}.log").read_text() == logs_before[i]
        assert f"point {i}/2" in resumed.stderr and "done (finished" in resumed.stderr
    # the killed point was continued, not started again
    info = json.loads((killed / "run.json").read_text())
    assert info["status"] == "finished" and info["resumed"] == 1
    assert info["started_at"] == started_at

    assert table["sweep_id"] == sweep_dir.name and table["sweep_dir"] == str(sweep_dir)
    assert table["metric"] == "val_loss_gpt-tiny" and table["grid"] == {
        "learning_rate": [0.001, 0.004]
    }
    rows = table["points"]
    assert [r["overrides"] for r in rows] == [
        {},
        {"learning_rate": 0.001},
        {"learning_rate": 0.004},
    ]
    assert all(r["status"] == "ok" and r["seeds"] == [42, 43] for r in rows)
    default_mean = rows[0]["mean"]
    assert rows[0]["delta"] is None
    for row in rows[1:]:
        assert row["mean"] == pytest.approx(sum(row["values"]) / 2)
        assert row["delta"] == pytest.approx(row["mean"] - default_mean)
        assert row["delta"] != 0  # the learning rate reached the training job
        assert row["better"] is (row["delta"] < 0)  # paired over identical seeds: significant

    from leaderboard import Store

    store = Store(f"sqlite:///{db}")
    sweep = store.get_sweep(sweep_dir.name)
    assert sweep is not None and [p.run_id for p in sweep.points] == [r["run_id"] for r in rows]
    for point in sweep.points:
        run = store.sweep_runs(sweep)[point.run_id]  # type: ignore[index]
        assert run.type == "method" and run.sweep_id == sweep.sweep_id
        assert run.sweep_point == point.overrides
        assert run.regions["config_overrides"].startswith("CONFIG_OVERRIDES = {")
    store.close()

    again = _finish(_sweep_cmd(runs, db), tmp_path, root)
    assert "0 to run" in again.stderr
    lines = [line for line in again.stdout.splitlines() if line.startswith("│")]
    assert len(lines) == 3 and "default" in lines[0] and "0.004" in lines[2]
    assert "command: runner sweep --task fake-lr" in again.stdout
    assert f"sweep dir: {sweep_dir}" in " ".join(again.stdout.split())
    assert (
        "runner leaderboard serve" in again.stdout and f"/sweeps/{sweep_dir.name}" in again.stdout
    )
