"""`runner sweep --sandbox slurm`: a 2-point × 1-seed sweep as one array job on the one-node
test cluster gives exactly the values the same sweep gives on the local sandbox.

Each side has a home of its own, so neither reuses the other's cached jobs: both compute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._fixtures.runner import build_fake_task_root
from tests.integration.test_runner_resume import _env

pytestmark = [pytest.mark.integration, pytest.mark.slurm]


def _sweep(tmp_path: Path, sandbox: str) -> tuple[dict, Path]:
    root = build_fake_task_root(tmp_path / sandbox / "root")
    runs = tmp_path / sandbox / "runs"
    cmd = [
        *[sys.executable, "-m", "runner.cli", "sweep", "--task", "fake-lr"],
        *["--grid", "learning_rate=0.004", "--seeds", "42", "--profile", "tiny"],
        *["--sandbox", sandbox, "--run-dir", str(runs), "--db", str(tmp_path / sandbox / "lb.db")],
        "--json",
    ]
    done = subprocess.run(
        cmd, cwd=tmp_path, env=_env(root), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = json.loads(done.stdout)
    return table, Path(table["sweep_dir"])


def test_a_slurm_array_sweep_matches_the_local_sweep(slurm_cluster: None, tmp_path: Path) -> None:
    local, _ = _sweep(tmp_path, "local")
    slurm, sweep_dir = _sweep(tmp_path, "slurm")
    assert slurm["sweep_id"] == local["sweep_id"]  # the backend is not part of the identity
    assert [p["overrides"] for p in slurm["points"]] == [{}, {"learning_rate": 0.004}]
    assert all(p["status"] == "ok" and p["seeds"] == [42] for p in slurm["points"])
    assert [p["values"] for p in slurm["points"]] == [p["values"] for p in local["points"]]
    assert slurm["points"][1]["delta"] == local["points"][1]["delta"] != 0
    # one array job ran both points, each as `runner sweep-point` on the node
    script = (sweep_dir / "logs" / "slurm" / "array.sbatch").read_text()
    assert script.count("sweep-point") == 2
    for index in (0, 1):
        log = (sweep_dir / "logs" / "slurm" / f"{index}.log").read_text()
        assert f"point {index}: finished" in log, log
    assert not list((sweep_dir / "logs").glob("point-*.log"))  # no local worker ran
