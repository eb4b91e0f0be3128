"""Slurm for researchers: array jobs of runner commands against the one-node test cluster.

The tasks run as the submitting user (root here, like the runner), so they reach this
interpreter and pytest's private temp directories on the one node.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner._slurm_array import ArrayTask, ArrayTaskOutcome, SlurmArrayError, run_array
from sandbox import scontrol_jobs

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PB_MARK": "a b $(touch nope) 'q'",
    }


def _run(tmp_path: Path, tasks: list[ArrayTask], **kw: object) -> dict[int, ArrayTaskOutcome]:
    options: dict[str, object] = {
        "job_name": "pb-test",
        "log_dir": tmp_path / "logs",
        "cpus_per_task": 1,
        "mem_mb": 200,  # the node has 4 GiB: two tasks side by side on its two CPUs
        "time_limit": "5",
        "max_parallel": None,
        "env": _env(tmp_path),
        "poll_s": 0.3,
    }
    return run_array(tasks, **{**options, **kw})  # type: ignore[arg-type]


WRITE_INDEX = textwrap.dedent(
    """
    import json, os, sys
    out = sys.argv[1]
    json.dump({"index": int(sys.argv[2]), "task_id": os.environ["SLURM_ARRAY_TASK_ID"],
               "argv": sys.argv[3:], "mark": os.environ["PB_MARK"],
               "leak": os.environ.get("PB_NOT_EXPORTED")}, open(out, "w"))
    print("task", sys.argv[2], "done")
    """
)


def _writer(tmp_path: Path, index: int, *extra: str) -> ArrayTask:
    out = tmp_path / f"out-{index}.json"
    return ArrayTask(index, [sys.executable, "-c", WRITE_INDEX, str(out), str(index), *extra])


def test_three_tasks_complete_with_their_own_index(
    slurm_cluster: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PB_NOT_EXPORTED", "1")
    states: list[tuple[int, str]] = []
    tasks = [_writer(tmp_path, i) for i in (0, 1, 4)]
    outcomes = _run(tmp_path, tasks, on_state=lambda i, s: states.append((i, s)))
    assert sorted(outcomes) == [0, 1, 4]
    for index, outcome in outcomes.items():
        assert (outcome.state, outcome.exit_code, outcome.infra) == ("COMPLETED", 0, False)
        assert outcome.log_path == tmp_path / "logs" / f"{index}.log"
        assert f"task {index} done" in outcome.log_path.read_text()
        written = json.loads((tmp_path / f"out-{index}.json").read_text())
        assert written["index"] == index and written["task_id"] == str(index)
        assert written["leak"] is None  # --export=NONE: only the given environment
    assert {i for i, s in states if s == "COMPLETED"} == {0, 1, 4}


def test_a_failing_task_is_its_own_outcome(slurm_cluster: None, tmp_path: Path) -> None:
    fails = ArrayTask(
        1, [sys.executable, "-c", "print('infrastructure error: node lost'); exit(3)"]
    )
    outcomes = _run(tmp_path, [_writer(tmp_path, 0), fails])
    assert (outcomes[0].state, outcomes[0].exit_code, outcomes[0].infra) == ("COMPLETED", 0, False)
    assert (outcomes[1].state, outcomes[1].exit_code, outcomes[1].infra) == ("FAILED", 3, False)


def test_argv_and_environment_arrive_verbatim(slurm_cluster: None, tmp_path: Path) -> None:
    planted = tmp_path / "injected"
    words = [
        "two words",
        'it\'s "quoted"',
        f"$(touch {planted})",
        f"`touch {planted}`",
        f"; touch {planted}",
        "line\nbreak",
        "*",
        "",
        "${HOME}",
        "\\",
    ]
    outcomes = _run(tmp_path, [_writer(tmp_path, 0, *words)])
    assert outcomes[0].state == "COMPLETED", outcomes[0].log_path.read_text()
    written = json.loads((tmp_path / "out-0.json").read_text())
    assert written["argv"] == words
    assert written["mark"] == _env(tmp_path)["PB_MARK"]
    assert not planted.exists() and not (tmp_path / "nope").exists()


def test_max_parallel_throttles_the_array(slurm_cluster: None, tmp_path: Path) -> None:
    stamp = "import sys, time; t0 = time.time(); time.sleep(1.5); open(sys.argv[1], 'w').write(f'{t0} {time.time()}')"
    tasks = [ArrayTask(i, [sys.executable, "-c", stamp, str(tmp_path / f"t{i}")]) for i in range(3)]
    job_ids: list[str] = []

    def remember(_index: int, _state: str) -> None:
        if not job_ids:
            found = subprocess.run(
                ["squeue", "-h", "-n", "pb-throttle", "-o", "%F"], capture_output=True, text=True
            ).stdout.split()
            job_ids.extend(found[:1])

    outcomes = _run(tmp_path, tasks, job_name="pb-throttle", max_parallel=1, on_state=remember)
    assert all(o.state == "COMPLETED" for o in outcomes.values())
    records = scontrol_jobs(job_ids[0])
    assert records and all(r["ArrayTaskThrottle"] == "1" for r in records), records
    spans = sorted(tuple(map(float, (tmp_path / f"t{i}").read_text().split())) for i in range(3))
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), spans


CANCEL = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from runner._slurm_array import ArrayTask, run_array
    log_dir, python = Path(sys.argv[1]), sys.argv[2]
    tasks = [ArrayTask(i, ["sleep", "120"]) for i in range(3)]
    def said(index, state):
        print(index, state, flush=True)
    try:
        run_array(tasks, job_name="pb-cancel", log_dir=log_dir, cpus_per_task=1, mem_mb=200,
                  time_limit="5", max_parallel=2, env={"PATH": "/usr/bin:/bin"}, poll_s=0.3,
                  on_state=said)
    except KeyboardInterrupt as e:
        print("OUTCOMES " + json.dumps({i: [o.state, o.exit_code, o.infra]
                                        for i, o in e.outcomes.items()}), flush=True)
        sys.exit(130)
    """
)


def test_sigterm_cancels_the_whole_array(slurm_cluster: None, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CANCEL, str(tmp_path / "logs"), sys.executable],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    running = 0
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        running += line.split()[1:] == ["RUNNING"]
        if running == 2 or time.monotonic() > deadline:
            break
    assert running == 2, "two tasks (max_parallel) never ran"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    outcomes = json.loads(rest.split("OUTCOMES ", 1)[1])
    assert {k: v[0] for k, v in outcomes.items()} == {
        "0": "CANCELLED",
        "1": "CANCELLED",
        "2": "CANCELLED",
    }
    assert all(infra for _state, _code, infra in outcomes.values())
    # the pending one never ran (Slurm records the killed ones as 0:15 or 0:0, by timing)
    assert sorted(code is None for _state, code, _infra in outcomes.values()) == [
        False,
        False,
        True,
    ]
    squeue = subprocess.run(["squeue", "-h", "-n", "pb-cancel"], capture_output=True, text=True)
    assert squeue.stdout.strip() == ""


def test_a_task_slurm_cannot_place_is_refused_at_submission(
    slurm_cluster: None, tmp_path: Path
) -> None:
    with pytest.raises(SlurmArrayError, match="sbatch refused"):
        _run(tmp_path, [_writer(tmp_path, 0)], cpus_per_task=4096)
