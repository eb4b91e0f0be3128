"""The Slurm backend against a one-node cluster (started by the tests when the machine allows).

No container runtime is installable here (apptainer is not packaged for this Debian), so the
jobs run with ``allow_weak_isolation=True``: namespaces and dropped privileges, not a private
filesystem view. The apptainer command lines are checked as text in
tests/unit/test_sandbox_slurm_batch.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox._backend import BackendError, Job, JobOutcome, Workers
from sandbox._slurm import SlurmBackend
from tests._fixtures.sandbox import SANDBOX_STATE, probe_job, write_fake_codebase

pytestmark = [pytest.mark.integration, pytest.mark.slurm]


@pytest.fixture
def codebase(shared_run_root: Path) -> Path:
    return write_fake_codebase(shared_run_root / "codebase")


@pytest.fixture(scope="module")
def node_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ``python`` the sandbox uid can run. Without a container the job sees host paths with
    the sandbox uid's rights: an interpreter under root's private home (pyenv here) is out of
    its reach, so the fake codebase (standard library only) gets the system one instead."""
    probe = [
        *["setpriv", "--reuid=61000", "--regid=61000", "--clear-groups", "--inh-caps=-all"],
        *["--bounding-set=-all", "--no-new-privs"],
        # through env, as the batch script does: setpriv itself still resolves paths as root
        *("env", "-i", f"PATH={Path(sys.executable).parent}", "python", "-c", "import json"),
    ]
    if os.geteuid() != 0 or subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return sys.executable
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        pytest.skip("no interpreter the sandbox uid can run (this one is private to root)")
    bin_dir = SANDBOX_STATE / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.chmod(0o755)
    link = bin_dir / "python"
    if not link.is_symlink():
        link.symlink_to(system)
    return str(link)


@pytest.fixture
def backend(slurm_cluster: None, node_python: str) -> SlurmBackend:
    return SlurmBackend(
        allow_weak_isolation=True, poll_s=0.3, cpus_per_task=1, mem="256M", python=node_python
    )


def _run(backend: SlurmBackend, job: Job) -> tuple[JobOutcome, str]:
    outcome = backend.run_job(job)
    return outcome, job.log_path.read_text(errors="replace") if job.log_path.exists() else ""


def test_weak_isolation_must_be_asked_for(slurm_cluster: None) -> None:
    with pytest.raises(BackendError, match="no filesystem isolation"):
        SlurmBackend()
    described = SlurmBackend(allow_weak_isolation=True).describe()
    assert described["isolation"].startswith("WEAK") and described["container"] == "none"


def test_train_then_evaluate(backend: SlurmBackend, codebase: Path, shared_run_root: Path) -> None:
    run = shared_run_root / "run"
    data = shared_run_root / "data"
    data.mkdir()
    train = Job(
        label="train-tiny",
        seed=42,
        script="scripts/train_tiny.sh",
        codebase_dir=codebase,
        files={},
        out_dir=run / "train-tiny" / "seed_42",
        log_path=run / "train-tiny" / "seed_42.log",
        time_limit_s=60,
        inputs={"train_data": data},
        env={"PB_PROFILE": "tiny", "PB_MAX_ITERS": "5"},
    )
    lines: list[str] = []
    outcome = backend.run_job(train, lines.append)
    assert outcome.exit_code == 0 and outcome.infra_error is None, train.log_path.read_text()
    assert any(line.startswith("PB_PROGRESS ") for line in lines)
    evaluation = Job(
        label="gpt-tiny",
        seed=42,
        script="scripts/eval_tiny.sh",
        codebase_dir=codebase,
        files={},
        out_dir=run / "gpt-tiny" / "seed_42",
        log_path=run / "gpt-tiny" / "seed_42.log",
        time_limit_s=60,
        needs={"train-tiny": train.out_dir},
        env={"PB_CKPT_JOB": "train-tiny"},
    )
    outcome = backend.run_job(evaluation)
    assert outcome.exit_code == 0 and outcome.infra_error is None, evaluation.log_path.read_text()
    assert json.loads((evaluation.out_dir / "metrics.json").read_text())["seed"] == 42
    assert not list(run.glob("*/.work-*"))  # work directories removed


PROBE = textwrap.dedent(
    """
    import json, os, socket
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    def connect(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
            return "connected"
        except OSError as exc:
            return type(exc).__name__
    facts = {
        "uid": os.getuid(),
        "caps": [status[k].strip() for k in ("CapEff", "CapBnd", "CapPrm")],
        "no_new_privs": status["NoNewPrivs"].strip(),
        "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]),
        "loopback": connect(int(os.environ["PB_PROBE_PORT"])),
        "pid1": open("/proc/1/cmdline").read().split("\\0")[0],
        "env": sorted(os.environ),
    }
    try:
        open(os.path.join(os.getcwd(), "evaluate.py"), "a")
        facts["code"] = "writable"
    except OSError:
        facts["code"] = "read-only"
    json.dump(facts, open(os.path.join(os.environ["PB_OUT_DIR"], "facts.json"), "w"))
    """
)


def test_what_the_weak_sandbox_still_guarantees(
    backend: SlurmBackend, codebase: Path, shared_run_root: Path
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    job = probe_job(
        shared_run_root,
        codebase,
        "python probe.py",
        files={"probe.py": PROBE},
        env={"PB_PROBE_PORT": str(port)},
    )
    try:
        outcome, log = _run(backend, job)
    finally:
        server.close()
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    facts = json.loads((job.out_dir / "facts.json").read_text())
    if os.geteuid() == 0:
        assert facts["uid"] == 61000
        assert facts["caps"] == ["0000000000000000"] * 3
    assert facts["no_new_privs"] == "1"
    assert facts["interfaces"] == ["lo"] and facts["loopback"] == "ConnectionRefusedError"
    assert facts["pid1"] != "/sbin/init"  # a PID namespace of its own
    assert facts["code"] == "read-only"
    assert not any(name.startswith("SLURM_") for name in facts["env"])
    # the output is the harness's again afterwards
    assert (job.out_dir / "facts.json").stat().st_uid == os.getuid()


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("exit 137", 137),
        ("kill -KILL $$", 137),
        ("echo 'setup failed: node lost'; echo 'infrastructure error'; exit 199", 199),
        ("echo boom >&2; exit 3", 3),
    ],
    ids=["exit-137", "self-sigkill", "fake-setup-failed", "failure"],
)
def test_what_the_job_does_is_never_infra(
    backend: SlurmBackend, codebase: Path, shared_run_root: Path, script: str, code: int
) -> None:
    outcome, log = _run(backend, probe_job(shared_run_root, codebase, script))
    assert outcome.exit_code == code and outcome.infra_error is None, (outcome, log)
    assert not outcome.timed_out


def test_time_limit(backend: SlurmBackend, codebase: Path, shared_run_root: Path) -> None:
    outcome, _ = _run(backend, probe_job(shared_run_root, codebase, "sleep 60", time_limit_s=2))
    assert outcome.timed_out and outcome.infra_error is None, outcome


def _when_running(backend: SlurmBackend, action: Callable[[str], object]) -> threading.Thread:
    """Call ``action(job_id)`` from another thread once the backend's job runs."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for job_id in list(backend._jobs):
                if backend._state(job_id)[0] == "RUNNING":
                    time.sleep(0.5)
                    action(job_id)
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def test_cancel_by_the_supervisor_is_infra(
    backend: SlurmBackend, codebase: Path, shared_run_root: Path
) -> None:
    canceller = _when_running(backend, lambda _job_id: backend.cancel())
    outcome, _ = _run(backend, probe_job(shared_run_root, codebase, "sleep 60"))
    canceller.join()
    assert outcome.infra_error and "cancelled" in outcome.infra_error, outcome


def test_a_cancel_by_someone_else_is_not_infra(
    backend: SlurmBackend, codebase: Path, shared_run_root: Path
) -> None:
    # an administrator's scancel looks the same to us as the job cancelling itself
    canceller = _when_running(backend, lambda job_id: subprocess.run(["scancel", job_id]))
    outcome, _ = _run(backend, probe_job(shared_run_root, codebase, "sleep 60"))
    canceller.join()
    assert outcome.infra_error is None and outcome.notes, outcome


def test_node_failure_is_infra(
    backend: SlurmBackend, codebase: Path, shared_run_root: Path
) -> None:
    node = socket.gethostname().split(".")[0]

    def fail_node(_job_id: str) -> None:
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=pbtest"])

    failer = _when_running(backend, fail_node)
    try:
        outcome, _ = _run(backend, probe_job(shared_run_root, codebase, "sleep 60"))
    finally:
        failer.join()
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"])
    assert outcome.infra_error and "NODE_FAIL" in outcome.infra_error, outcome


def test_a_job_no_node_can_run_is_infra(
    slurm_cluster: None, codebase: Path, shared_run_root: Path
) -> None:
    huge = SlurmBackend(allow_weak_isolation=True, poll_s=0.3, cpus_per_task=4096)
    assert huge.describe()["user"].startswith("61000") == (os.geteuid() == 0)
    outcome = huge.run_job(probe_job(shared_run_root, codebase, "true"))
    assert outcome.infra_error and outcome.exit_code is None, outcome


WORKER = textwrap.dedent(
    """
    import json, os, socket
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.path.join(os.environ["PB_WORKER_DIR"], "sock"))
    server.listen()
    print("worker private line", flush=True)
    facts = {"index": os.environ["PB_WORKER_INDEX"], "marker": open("marker.txt").read(),
             "data": "PB_DATA_DIR" in os.environ}
    while True:
        conn, _ = server.accept()
        conn.sendall(json.dumps(facts).encode())
        conn.close()
    """
)

JOB = textwrap.dedent(
    """
    import json, os, socket, time
    replies = []
    for i in range(int(os.environ["PB_WORKERS"])):
        for _ in range(200):
            try:
                client = socket.socket(socket.AF_UNIX)
                client.connect(os.path.join(os.environ["PB_WORKERS_DIR"], str(i), "sock"))
                break
            except OSError:
                time.sleep(0.05)
        replies.append(json.loads(client.recv(65536)))
    json.dump(replies, open(os.path.join(os.environ["PB_OUT_DIR"], "workers.json"), "w"))
    print("job done", flush=True)
    """
)


def test_workers_start_before_and_die_after_the_job(
    backend: SlurmBackend, codebase: Path, shared_run_root: Path
) -> None:
    token = uuid.uuid4().hex
    (codebase / "marker.txt").write_text("original")
    (codebase / f"worker-{token}.sh").write_text(f"exec python worker.py {token}\n")
    (codebase / "worker.py").write_text(WORKER)
    data = shared_run_root / "data"
    data.mkdir()
    job = probe_job(
        shared_run_root,
        codebase,
        "python job.py",
        files={"job.py": JOB, "marker.txt": "edited"},
        inputs={"train_data": data},
        workers=Workers(f"worker-{token}.sh", 2),
    )
    outcome, log = _run(backend, job)
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    replies = json.loads((job.out_dir / "workers.json").read_text())
    assert [r["index"] for r in replies] == ["0", "1"]
    assert all(r["marker"] == "original" and not r["data"] for r in replies)
    assert "private line" not in log and "job done" in log
    assert "worker private line" in job.worker_log(1).read_text()
    time.sleep(1)
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and token.encode() in _cmdline(pid)]
    assert not left, f"workers left running: {left}"


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""
