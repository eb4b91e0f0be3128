"""Slurm for researchers: array jobs of runner commands against the one-node test cluster.

The tasks run as the submitting user (root here, like the runner), so they reach this
interpreter and pytest's private temp directories on the one node.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner._slurm_array import ArrayTask, ArrayTaskOutcome, SlurmArrayError, run_array
from sandbox import scontrol_jobs
from tests._fixtures.sandbox import SANDBOX_STATE

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


# -- researchers on Slurm: the same baseline on the local backend, on Slurm, and in an array ---

TASK = "llm-pretrain-lr-schedule"


@pytest.fixture(scope="module")
def node_python() -> str:
    """An interpreter with torch that a Slurm job's uid can run. Root's jobs drop to the
    sandbox uid (61000), which cannot enter root's private home, where this machine's
    interpreter lives (pyenv): a venv of the system Python of the same minor version, with
    this venv's packages hard-linked in, stands in for a cluster's shared software tree."""
    if os.geteuid() != 0 or _usable_by_the_sandbox_uid(sys.executable):
        return sys.executable
    system = "/usr/bin/python3"
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not _runs(
        [system, "-c", f"import sys; assert sys.version_info[:2] == {sys.version_info[:2]}"]
    ):
        pytest.skip(f"no system {minor} to build an interpreter the sandbox uid can run")
    venv = SANDBOX_STATE / f"node-venv-{minor}"
    python = venv / "bin" / "python"
    if not _usable_by_the_sandbox_uid(str(python)):
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = Path(sys.prefix) / "lib" / minor / "site-packages"
        subprocess.run(["cp", "-al", f"{site}/.", f"{venv}/lib/{minor}/site-packages/"], check=True)
    if not _usable_by_the_sandbox_uid(str(python)):
        pytest.skip("could not build an interpreter with torch that the sandbox uid can run")
    return str(python)


def _runs(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _usable_by_the_sandbox_uid(python: str) -> bool:
    drop = ["setpriv", "--reuid=61000", "--regid=61000", "--clear-groups", "--no-new-privs"]
    return _runs([*drop, "env", "-i", python, "-c", "import torch, numpy, tiktoken, lm_eval"])


@pytest.fixture(scope="module")
def researcher_home(node_python: str) -> Iterator[Path]:
    """A prepared $PRETRAINBENCH_HOME every node and the sandbox uid can read."""
    home = SANDBOX_STATE / "runs" / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    for path in (SANDBOX_STATE, SANDBOX_STATE / "runs", home):
        path.chmod(0o755)
    subprocess.run(
        [node_python, "-m", "runner.cli", "setup"], env=_runner_env(node_python, home), check=True
    )
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _runner_env(python: str, home: Path) -> dict[str, str]:
    env = {
        "PATH": f"{Path(python).parent}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "PRETRAINBENCH_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "LANG": "C.UTF-8",
        # the shell's thread setting reaches no job (the local backend used to pass it on and
        # Slurm did not, so the two disagreed): each job's spec decides
        "OMP_NUM_THREADS": "3",
    }
    if "SLURM_CONF" in os.environ:  # the test cluster's (set by the slurm_cluster fixture)
        env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    return env


def _baseline_argv(python: str, home: Path, name: str, sandbox: str) -> list[str]:
    """`runner run` of the cosine baseline, its store and runs named ``name`` in ``home``.
    The result cache, shared by every backend (a result does not depend on one), is removed
    first so that the jobs really run where the test says."""
    shutil.rmtree(home / "cache", ignore_errors=True)
    return [
        *[python, "-m", "runner.cli", "run", "--task", TASK, "--agent", "baseline:cosine"],
        *["--sandbox", sandbox, "--final-seeds", "42", "-q"],
        *["--db", str(home / f"{name}.db"), "--run-dir", str(home / f"runs-{name}")],
    ]


def _ran_on(home: Path, name: str) -> str:
    """The backend of the run named ``name``, checking that none of its jobs came from a cache."""
    (run_dir,) = (home / f"runs-{name}").iterdir()
    results = [json.loads(p.read_text())["result"] for p in run_dir.glob("tests/*/*/*.result.json")]
    assert results and not any(r["cached"] for r in results)
    return str(json.loads((run_dir / "run.json").read_text())["hardware"]["sandbox"]["backend"])


def _final_metrics(home: Path, name: str) -> dict[tuple[str, int], dict[str, float]]:
    """Every (setting, seed)'s metrics of the one run in the store named ``name``."""
    from leaderboard import Store

    with Store(f"sqlite:///{home / name}.db") as store:
        (run,) = list(store.iter_runs(TASK))
    assert run.final is not None and run.final.status == "ok", run.final
    return {(s.setting, s.seed): s.metrics for s in run.final.per_seed}


@pytest.fixture(scope="module")
def local_reference(
    slurm_cluster: None, node_python: str, researcher_home: Path
) -> dict[tuple[str, int], dict[str, float]]:
    """The baseline on the local backend outside Slurm (the same interpreter as on the node)."""
    argv = _baseline_argv(node_python, researcher_home, "local", "local")
    proc = subprocess.run(argv, env=_runner_env(node_python, researcher_home), cwd="/")
    assert proc.returncode == 0
    assert _ran_on(researcher_home, "local") == "local"
    return _final_metrics(researcher_home, "local")


@pytest.mark.slow
def test_a_baseline_on_slurm_matches_the_local_backend_exactly(
    slurm_cluster: None,
    node_python: str,
    researcher_home: Path,
    local_reference: dict[tuple[str, int], dict[str, float]],
) -> None:
    """``runner run --sandbox slurm``: the test and its final evaluation through the Slurm
    backend (weak isolation: no container runtime here), against the local backend's run.

    Every metric of every setting is bit-identical: each job's thread count is its spec's
    (``JobSpec.threads`` → OMP_NUM_THREADS) under every backend, so float reductions split the
    same way (with 1 and 2 threads the same run's val_loss differed in the second decimal).
    Measured on the 2-core development machine shared with three other sessions (load 2-3):
    the local run 75 s, the Slurm run 81 s (test + final evaluation, four jobs each; the
    same seed, so the final reuses the test's jobs), plus ~10 s of data preparation.
    """
    argv = [
        *_baseline_argv(node_python, researcher_home, "slurm", "slurm"),
        "--allow-weak-isolation",
    ]
    proc = subprocess.run(argv, env=_runner_env(node_python, researcher_home), cwd="/")
    assert proc.returncode == 0
    assert _ran_on(researcher_home, "slurm") == "slurm"
    on_slurm = _final_metrics(researcher_home, "slurm")
    assert on_slurm.keys() == local_reference.keys()
    assert on_slurm == local_reference  # exact float equality


@pytest.mark.slow
def test_the_local_sandbox_runs_inside_an_array_task(
    slurm_cluster: None,
    node_python: str,
    researcher_home: Path,
    local_reference: dict[tuple[str, int], dict[str, float]],
) -> None:
    """What `runner sweep --sandbox slurm` does per point: a 1-task array runs `runner run
    --sandbox local` on the node (bubblewrap and cgroup v1 limits inside the Slurm job, every
    guarantee held: no --allow-weak-isolation), with the same results as outside Slurm.
    74 s on the shared 2-core machine (load 2-3). The task runs as the submitter (root), as
    the local sandbox needs here: bubblewrap's uid switch and cgroup v1 directories."""
    outcomes = run_array(
        [ArrayTask(0, _baseline_argv(node_python, researcher_home, "array", "local"))],
        job_name="pb-local-in-slurm",
        log_dir=researcher_home / "array-logs",
        cpus_per_task=1,
        mem_mb=2048,
        time_limit="30",
        max_parallel=None,
        env=_runner_env(node_python, researcher_home),
        poll_s=1.0,
    )
    log = outcomes[0].log_path.read_text(errors="replace")
    assert (outcomes[0].state, outcomes[0].exit_code) == ("COMPLETED", 0), log
    assert "all 10 guarantees hold" in log
    assert _ran_on(researcher_home, "array") == "local"
    assert _final_metrics(researcher_home, "array") == local_reference
