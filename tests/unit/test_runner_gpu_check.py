"""`runner gpu-check` on a machine without a GPU: the dry run's plan and JSON, and every way a
part can fail (a missing or broken memory planner, a part past its cap, no GPU) reported as a
reason with its log, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner._gpu_check import (
    CURVE_ITERS,
    PART_NAMES,
    CheckOptions,
    GpuCheckReport,
    ReferenceCurve,
    _run_capped,
    compare_curves,
    load_reference,
    read_curve,
    run_gpu_check,
)
from tests._fixtures.codebase import CODEBASE_DIR

REPO = Path(__file__).resolve().parents[2]
HAS_PLANNER = (CODEBASE_DIR / "pb_memory.py").is_file()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "gpu-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


def codebase_copy(tmp_path: Path, planner: str | None) -> Path:
    """The real codebase with pb_memory.py removed (planner None) or replaced by ``planner``."""
    code = tmp_path / "nanogpt"
    shutil.copytree(CODEBASE_DIR, code, ignore=shutil.ignore_patterns("__pycache__"))
    (code / "pb_memory.py").unlink(missing_ok=True)
    if planner is not None:
        (code / "pb_memory.py").write_text(planner)
    return code


def test_dry_run_prints_the_plan_and_writes_json(tmp_path: Path) -> None:
    proc = cli("--dry-run", "--out", str(tmp_path))
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    assert "GPUs it would use: none visible" in text
    for name in PART_NAMES:
        assert name in proc.stdout
    report = GpuCheckReport.model_validate_json((tmp_path / "gpu_check.json").read_text())
    assert report.dry_run and [p.name for p in report.parts] == list(PART_NAMES)
    assert (tmp_path / "gpu_check.txt").read_text().splitlines()[0].startswith("part")
    plan = next(p for p in report.parts if p.name == "memory-plan")
    assert {p.status for p in report.parts if p.name != "memory-plan"} == {"planned"}
    if not HAS_PLANNER:  # until issue 16's memory planner is merged: a reason, exit 1
        assert proc.returncode == 1 and plan.status == "failed"
        assert "pb_memory.py is missing" in plan.summary
        return
    assert proc.returncode == 0, text
    assert plan.status == "ok", plan.summary
    data = plan.data["plan"]
    assert isinstance(data, dict)
    assert data["gpus"] == 2 and data["gpu_memory_bytes"] == 80 * 2**30
    assert isinstance(data["fraction_of_gpu"], float) and data["fraction_of_gpu"] <= 0.9
    assert f"micro-batch {data['micro_batch']}" in proc.stdout
    assert "per GPU" in proc.stdout and "2 x 80 GiB" in proc.stdout


def test_missing_planner_is_a_reason_not_a_traceback(tmp_path: Path) -> None:
    code = codebase_copy(tmp_path, None)
    lines: list[str] = []
    report = run_gpu_check(
        CheckOptions(out_dir=tmp_path / "out", dry_run=True, codebase_dir=code), lines.append
    )
    plan = report.parts[1]
    assert plan.name == "memory-plan" and plan.status == "failed" and not report.ok
    assert f"{code / 'pb_memory.py'} is missing" in plan.summary
    stored = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert stored["parts"][1]["status"] == "failed"


@pytest.mark.parametrize(
    ("planner", "reason"),
    [
        ("import sys\nsys.exit('planner broke')\n", "planner broke"),
        ("print('not json')\n", "exit 0"),  # no JSON: reported with its output
        ("print('{\"micro_batch\": 8}')\n", "printed no grad_accum"),
        (
            'import json; print(json.dumps({"micro_batch": 96, "grad_accum": 6, '
            '"estimated_peak_bytes": 100 * 2**30, "fraction_of_gpu": 1.25}))\n',
            "above the 90 %",
        ),
    ],
)
def test_a_failing_planner_is_reported_with_its_output(
    tmp_path: Path, planner: str, reason: str
) -> None:
    code = codebase_copy(tmp_path, planner)
    report = run_gpu_check(
        CheckOptions(out_dir=tmp_path / "out", dry_run=True, codebase_dir=code), lambda _: None
    )
    plan = report.parts[1]
    assert plan.status == "failed" and reason in plan.summary, plan.summary
    assert plan.log and Path(plan.log).is_file()


def test_a_part_past_its_cap_is_stopped_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {marker}; wait"
    t0 = time.monotonic()
    ran = _run_capped(["bash", "-c", script], cwd=tmp_path, cap_s=1.0, log=tmp_path / "x.log")
    assert ran.returncode is None and time.monotonic() - t0 < 15
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"


def test_skip_names_are_checked_by_the_cli(tmp_path: Path) -> None:
    proc = cli("--dry-run", "--out", str(tmp_path), "--skip", "nonsense")
    assert proc.returncode == 1 and "unknown part(s) nonsense" in proc.stderr + proc.stdout


def test_curves_are_read_and_compared_with_the_reference(tmp_path: Path) -> None:
    curve = tmp_path / "curve.jsonl"
    rows = [{"step": s, "train_loss": 11.0 - s / 40} for s in (1, 10, 20, 30)]
    curve.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 40, "train_lo')
    steps, losses = read_curve(curve)
    assert steps == [1, 10, 20, 30] and losses[-1] == pytest.approx(11.0 - 30 / 40)

    def reference(shift: float) -> ReferenceCurve:
        return ReferenceCurve(
            profile="small",
            iterations=CURVE_ITERS,
            seed=42,
            gpus=1,
            device="NVIDIA H100 80GB HBM3",
            torch="2.13.0",
            recorded_at="2026-11-26T00:00:00+00:00",
            steps=[1, 10, 20, 30, 40, 200],
            train_loss=[11.0 - s / 40 + shift for s in (1, 10, 20, 30, 40, 200)],
        )

    close = compare_curves(steps, losses, reference(0.01))
    assert close["verdict"] == "matches" and close["last_common_step"] == 30
    assert close["common_steps"] == 4
    assert compare_curves(steps, losses, reference(0.2))["verdict"] == "differs"
    assert compare_curves([5], [1.0], reference(0))["verdict"] == "no common steps"

    path = tmp_path / "ref.json"
    assert "no reference yet" in str(load_reference(path))
    path.write_text(reference(0).model_dump_json())
    assert isinstance(load_reference(path), ReferenceCurve)
    path.write_text('{"profile": "small"}')
    assert "unreadable" in str(load_reference(path))


@pytest.mark.integration
def test_a_real_run_without_a_gpu_fails_with_reasons(tmp_path: Path) -> None:
    """Not a dry run, on this CPU machine: torch is probed (in a subprocess) and finds no CUDA
    device; every later part says it was skipped for want of a GPU; exit 1."""
    proc = cli("--out", str(tmp_path), timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in text
    report = GpuCheckReport.model_validate_json((tmp_path / "gpu_check.json").read_text())
    env = report.parts[0]
    assert env.name == "environment" and env.status == "failed"
    assert "torch sees no CUDA device" in env.summary and env.data["cuda_available"] is False
    assert isinstance(env.data["torch"], str) and env.data["torch"].startswith("2.")
    assert all(p.status == "skipped" and p.summary == "no GPU visible" for p in report.parts[1:])


def test_eval_throughput_rows_are_read_from_the_benchmarks_table() -> None:
    from runner._gpu_check import _EVAL_ROW

    # eval_throughput.py's own lines (a CPU run of `--batch-size 64 --threads 1`)
    table = (
        "loglikelihood  in process bs=1         512          59.0        148.0     1.00x    0.00e+00\n"
        "Tokenizing inputs: 100%|##########| 512/512\n"
        "loglikelihood  in process bs=64        512         163.8        412.7     2.78x    4.77e-06\n"
        "loglikelihood  worker bs=64            512         159.3        534.4     2.70x    4.77e-06\n"
        "rolling        in process bs=1           6           3.9          9.8     1.00x    0.00e+00\n"
    )
    assert _EVAL_ROW.findall(table) == [("1", "512", "59.0"), ("64", "512", "163.8")]
