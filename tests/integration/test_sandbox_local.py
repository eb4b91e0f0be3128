"""The local backend against hostile jobs: real bubblewrap sandboxes, real cgroups, no mocks.

Each attack is a small shell or Python job run through ``LocalBackend.run_job``. Every one
must be blocked or charged to the job (never an infrastructure failure), and no canary secret
planted outside the job may show up in its log or outputs.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from sandbox import Job, JobOutcome, LocalBackend, Workers, probe_host
from sandbox._bwrap import userns_seccomp
from sandbox._local import sweep_stale_work_dirs
from tests._fixtures.sandbox import (
    job_processes,
    read_outputs,
    sandbox_cgroups,
)

pytestmark = pytest.mark.integration

HOST = probe_host()
needs_sandbox = pytest.mark.skipif(
    bool(HOST.missing()), reason=f"this host cannot isolate jobs: {'; '.join(HOST.missing())}"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="root mode needs root")
T = TypeVar("T")


def make_job(tmp_path: Path, script: str, *, label: str = "job", **fields: object) -> Job:
    """A job running ``script`` (bash) in a one-file codebase, writing under tmp_path/runs."""
    code = tmp_path / f"code-{label}"
    code.mkdir(exist_ok=True)
    (code / "run.sh").write_text(script)
    run_dir = tmp_path / "runs" / f"run-{label}" / label
    return Job(
        label=label,
        seed=1,
        script="run.sh",
        codebase_dir=code,
        files=fields.pop("files", {}),  # type: ignore[arg-type]
        out_dir=run_dir / "seed_1",
        log_path=run_dir / "seed_1.log",
        time_limit_s=float(fields.pop("time_limit_s", 30.0)),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def run(backend: LocalBackend, job: Job) -> tuple[JobOutcome, str]:
    """Run ``job``; its outcome and everything it left: the log and its output files."""
    lines: list[str] = []
    outcome = backend.run_job(job, lines.append)
    text = job.log_path.read_text(errors="replace") if job.log_path.exists() else ""
    assert "\n".join(lines).strip() in text  # on_line saw what the log holds
    return outcome, text + read_outputs(job.out_dir)


def charged(outcome: JobOutcome) -> None:
    assert outcome.infra_error is None, outcome.infra_error


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """A secret planted outside every job: world-readable under a tmp dir, and under /root."""
    secret = f"PB-CANARY-{uuid.uuid4().hex}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    planted = [elsewhere / "secret.txt"]
    if os.geteuid() == 0:
        planted.append(Path("/root") / f"pb-canary-{uuid.uuid4().hex[:8]}.txt")
    for path in planted:
        path.write_text(secret)
        path.chmod(0o644)
    yield secret, planted
    for path in planted:
        path.unlink(missing_ok=True)


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend(memory_limit_mb=1024, max_processes=128)
    yield b
    b.close()


# -- who the job is ----------------------------------------------------------------------------


@needs_sandbox
def test_job_is_unprivileged_and_holds_no_inherited_fds(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    probe = (
        "import os\n"
        "print('uid', os.getuid(), os.getgid(), os.getgroups())\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith(('Cap', 'NoNewPrivs')): print(line.strip())\n"
        "fds = [int(x) for x in os.listdir('/proc/self/fd')]\n"
        "extra = []\n"
        "for fd in fds:\n"
        "    try: target = os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError: continue\n"
        "    if fd > 2 and not target.startswith('/proc'): extra.append((fd, target))\n"
        "print('extra fds', extra)\n"
        "for path in ('/proc/1/environ', '/proc/1/fd/0'):\n"
        "    try: open(path).read(); print('OPENED', path)\n"
        "    except OSError as e: print('denied', path, e.errno)\n"
    )
    job = make_job(tmp_path, f'exec python3 -c "{probe}"\n')
    outcome, text = run(backend, job)
    charged(outcome)
    assert outcome.exit_code == 0, text
    uid_line = next(line for line in text.splitlines() if line.startswith("uid "))
    assert not uid_line.startswith("uid 0 ") and " 0," not in uid_line
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert f"{cap}:\t0000000000000000" in text, text
    assert "NoNewPrivs:\t1" in text
    assert "extra fds []" in text  # neither bwrap's status pipe nor anything of the supervisor
    assert "OPENED" not in text


# -- what the job can see ----------------------------------------------------------------------


@needs_sandbox
def test_files_outside_the_view_cannot_be_read(
    backend: LocalBackend,
    tmp_path: Path,
    canary: tuple[str, list[Path]],
    no_leftover_processes: None,
) -> None:
    secret, planted = canary
    other_run = tmp_path / "runs" / "run-other" / "train" / "seed_1"
    other_run.mkdir(parents=True)
    (other_run / "ckpt.json").write_text(secret)
    reads = "\n".join(f"cat {p} || true" for p in [*planted, other_run / "ckpt.json"])
    job = make_job(
        tmp_path,
        f"{reads}\n"
        "echo LIST $(ls /pb/out/..)\n"
        "ls -la / /pb /root /home /sys 2>&1 || true\n"
        f"ls {tmp_path} {tmp_path / 'runs'} 2>&1 || true\n"
        "grep -r PB-CANARY / --include='*.txt' -s -l 2>/dev/null | head || true\n"
        "echo done\n",
    )
    outcome, text = run(backend, job)
    charged(outcome)
    assert "done" in text
    assert secret not in text
    assert "LIST code out\n" in text  # the parent of the output dir holds no other runs
    assert "No such file or directory" in text


@needs_sandbox
def test_training_job_sees_its_inputs_and_not_the_evaluation_data(
    backend: LocalBackend, tmp_path: Path, canary: tuple[str, list[Path]]
) -> None:
    secret, _ = canary
    home = tmp_path / "pretrainbench-home"
    train, evaluation = home / "data" / "train", home / "eval"
    train.mkdir(parents=True)
    evaluation.mkdir(parents=True)
    (train / "train_000000.bin").write_bytes(b"tokens")
    (evaluation / "arc_easy.jsonl").write_text(f'{{"answer": "{secret}"}}\n')
    job = make_job(
        tmp_path,
        'ls /pb/data; cat "$PB_DATA_DIR/train_000000.bin"; echo\n'
        'echo "eval var: ${PB_EVAL_DATA_DIR:-unset}"\n'
        f"cat {evaluation}/arc_easy.jsonl || true\n"
        "ls /pb/data/eval_data 2>&1 || true\n"
        "touch $PB_DATA_DIR/forged 2>&1 || echo read-only\n",
        inputs={"train_data": train},
    )
    outcome, text = run(backend, job)
    charged(outcome)
    assert "train_data" in text and "tokens" in text
    assert "eval var: unset" in text
    assert secret not in text
    assert "read-only" in text and not (train / "forged").exists()


@needs_sandbox
def test_writes_outside_the_output_dir_fail(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    marker = f"pb-escape-{uuid.uuid4().hex}"
    job = make_job(
        tmp_path,
        f"for p in /pb/code/{marker} /usr/{marker} /etc/{marker} /{marker} /pb/{marker}; do\n"
        '  (echo x > "$p") 2>/dev/null && echo "WROTE $p" || echo "refused $p"\n'
        "done\n"
        "echo forged >> /pb/code/run.sh 2>/dev/null && echo WROTE-CODE\n"
        f"echo private > /tmp/{marker} && echo private > /dev/shm/{marker}\n"
        "echo fine > /pb/out/result.txt\n",
    )
    original = (job.codebase_dir / "run.sh").read_text()
    outcome, text = run(backend, job)
    charged(outcome)
    assert "WROTE" not in text and text.count("refused") == 5
    assert (job.out_dir / "result.txt").read_text() == "fine\n"
    assert (job.codebase_dir / "run.sh").read_text() == original
    assert not (Path("/tmp") / marker).exists() and not (Path("/dev/shm") / marker).exists()


@needs_sandbox
def test_cgroups_proc_sys_and_devices_are_out_of_reach(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    job = make_job(
        tmp_path,
        "echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE-CORE\n"
        "mkdir -p /sys/fs/cgroup/escape 2>/dev/null && echo MADE-CGROUP\n"
        "echo $$ > /sys/fs/cgroup/cgroup.procs 2>/dev/null && echo LEFT-CGROUP\n"
        "mount -t cgroup2 none /tmp 2>/dev/null && echo MOUNTED\n"
        "mount -t proc proc /tmp 2>/dev/null && echo MOUNTED\n"
        "ls /dev; ls /sys 2>&1 | head -1\n"
        "cat /proc/self/cgroup\n",
    )
    outcome, text = run(backend, job)
    charged(outcome)
    for forbidden in ("WROTE-CORE", "MADE-CGROUP", "LEFT-CGROUP", "MOUNTED", "vda", "sda", "nvme"):
        assert forbidden not in text, text
    assert "No such file or directory" in text  # no /sys at all
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern


@needs_sandbox
def test_every_job_process_is_in_its_cgroups_from_the_start(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    marker = f"pb-member-{uuid.uuid4().hex[:8]}"
    job = make_job(
        tmp_path,
        f"python3 -c 'import time; time.sleep(60)' {marker} &\n"
        f"setsid python3 -c 'import time; time.sleep(60)' {marker} &\nwait\n",
        time_limit_s=60,
    )
    box: dict[str, JobOutcome] = {}
    thread = threading.Thread(target=lambda: box.update(outcome=backend.run_job(job)))
    thread.start()
    try:
        pids = _wait_for(lambda: job_processes(marker) if len(job_processes(marker)) == 2 else None)
        for pid in pids:
            groups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            for controller in ("memory", "pids", "cpu"):
                version = HOST.cgroups.version(controller)
                line = next(
                    x for x in groups if (x.split(":")[1] == "" if version == "v2" else
                                          controller in x.split(":")[1].split(","))
                )  # fmt: skip
                assert "/pb-" in line, (controller, groups)
    finally:
        backend.cancel()
        thread.join(30)
    assert box["outcome"].infra_error == "the supervisor cancelled the job"
    assert not job_processes(marker)  # the setsid'd one too: the cgroup kill reached it
    assert not sandbox_cgroups(HOST.cgroups)


@needs_sandbox
def test_network_is_unreachable(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(0.1)
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        job = make_job(
            tmp_path,
            'exec python3 -c "\n'
            "import socket\n"
            f"for host in ('127.0.0.1', '{_host_address()}', '1.1.1.1'):\n"
            "    try:\n"
            f"        socket.create_connection((host, {port}), timeout=3); print('CONNECTED', host)\n"
            "    except OSError as e: print('unreachable', host, e)\n"
            "import os; print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'no sysfs')\n"
            '"\n',
        )
        outcome, text = run(backend, job)
    finally:
        stop.set()
        thread.join()
        listener.close()
    charged(outcome)
    lines = text.splitlines()
    assert not any(x.startswith("CONNECTED") for x in lines), text
    assert sum(x.startswith("unreachable") for x in lines) == 3, text
    assert not accepted


# -- limits ------------------------------------------------------------------------------------


@needs_sandbox
def test_fork_bomb_is_bounded_and_everything_killed(
    tmp_path: Path, no_leftover_processes: None
) -> None:
    backend = LocalBackend(max_processes=48)
    job = make_job(
        tmp_path,
        'exec python3 -c "\nimport os, time\nwhile True:\n    try: os.fork()\n'
        '    except OSError: time.sleep(0.01)\n"\n',
        time_limit_s=3,
    )
    outcome, _ = run(backend, job)
    charged(outcome)
    assert outcome.timed_out
    assert any("forks refused" in note for note in outcome.notes), outcome.notes
    assert not sandbox_cgroups(HOST.cgroups)


@needs_sandbox
def test_memory_exhaustion_is_oom_and_charged(tmp_path: Path, no_leftover_processes: None) -> None:
    backend = LocalBackend(memory_limit_mb=200)
    job = make_job(
        tmp_path,
        'exec python3 -c "\nhog = []\nwhile True:\n    hog.append(bytearray(16 << 20))\n"\n',
    )
    outcome, _ = run(backend, job)
    charged(outcome)
    assert outcome.oom and outcome.exit_code == 137
    assert outcome.peak_mem_mb is not None and 150 < outcome.peak_mem_mb <= 201


@needs_sandbox
def test_tmpfs_counts_against_its_cap(tmp_path: Path, no_leftover_processes: None) -> None:
    backend = LocalBackend(tmp_mb=8, shm_mb=8)
    job = make_job(
        tmp_path,
        "head -c 20000000 /dev/zero 2>&1 > /tmp/big; echo tmp-status $?\n"
        "head -c 20000000 /dev/zero 2>&1 > /dev/shm/big; echo shm-status $?\n",
    )
    outcome, text = run(backend, job)
    charged(outcome)
    assert "tmp-status 1" in text and "shm-status 1" in text and "No space left" in text


@needs_sandbox
def test_output_size_cap(tmp_path: Path, no_leftover_processes: None) -> None:
    backend = LocalBackend(max_output_mb=2)
    # many files under the per-file limit: the supervisor's poll stops the job
    many = make_job(
        tmp_path,
        "for i in $(seq 1 20); do head -c 1000000 /dev/zero > /pb/out/part$i; done\nsleep 30\n",
        label="many",
    )
    outcome, _ = run(backend, many)
    charged(outcome)
    assert outcome.limit and outcome.limit.startswith("output size"), outcome
    assert not outcome.timed_out and outcome.wall_s < 10
    # one file past the cap: RLIMIT_FSIZE stops the writer (SIGXFSZ)
    one = make_job(tmp_path, "head -c 5000000 /dev/zero > /pb/out/big\n", label="one")
    outcome, _ = run(backend, one)
    charged(outcome)
    assert outcome.exit_code == 128 + 25, outcome
    assert (one.out_dir / "big").stat().st_size <= 2 * 2**20


@needs_sandbox
def test_sleeping_past_the_wall_time_is_a_timeout(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    job = make_job(tmp_path, "sleep 60 & sleep 60\n", time_limit_s=1)
    start = time.monotonic()
    outcome, _ = run(backend, job)
    charged(outcome)
    assert outcome.timed_out and time.monotonic() - start < 10


# -- infrastructure failure is what the supervisor saw ---------------------------------------


@needs_sandbox
@pytest.mark.parametrize(
    ("script", "exit_code"),
    [
        ("echo 'Killed' >&2\nexit 137\n", 137),
        ("kill -9 $$\n", 137),
        ("sleep 5 &\nkill -9 0\n", 137),
        ("echo 'pb-sandbox: setup failed: cannot join cgroup' >&2\nexit 199\n", 199),
        ('echo "bwrap: Can\'t find source path /x" >&2\nexit 1\n', 1),
    ],
    ids=["exit-137", "sigkill-self", "sigkill-group", "fake-setup-failure", "fake-bwrap-error"],
)
def test_faked_infrastructure_failures_are_the_jobs_own(
    script: str,
    exit_code: int,
    backend: LocalBackend,
    tmp_path: Path,
    no_leftover_processes: None,
) -> None:
    outcome, _ = run(backend, make_job(tmp_path, script))
    charged(outcome)
    assert outcome.exit_code == exit_code
    assert not outcome.timed_out and not outcome.oom


@needs_sandbox
def test_sandbox_that_cannot_start_is_infra_error(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    job = make_job(tmp_path, "echo never\n", inputs={"train_data": tmp_path / "missing"})
    outcome, text = run(backend, job)
    assert outcome.infra_error and "could not be set up" in outcome.infra_error, outcome
    assert "missing" in outcome.infra_error  # bwrap's own words, since no job code ran
    assert "never" not in text


@needs_sandbox
def test_cancel_from_another_thread_is_infra_error(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    job = make_job(tmp_path, "echo started\nsleep 60\n", time_limit_s=60)
    box: dict[str, JobOutcome] = {}
    thread = threading.Thread(target=lambda: box.update(outcome=backend.run_job(job)))
    thread.start()
    _wait_for(lambda: (job.log_path.exists() and "started" in job.log_path.read_text()) or None)
    backend.cancel()
    thread.join(30)
    assert box["outcome"].infra_error == "the supervisor cancelled the job"
    # final: the backend refuses new jobs afterwards
    later = backend.run_job(make_job(tmp_path, "echo again\n", label="later"))
    assert later.infra_error == "the supervisor cancelled the job"


def test_missing_isolation_refuses_jobs_unless_weak_is_allowed(
    tmp_path: Path, no_leftover_processes: None
) -> None:
    without = dataclasses.replace(HOST, bwrap=None)
    strict = LocalBackend(host=without)
    refused = strict.run_job(make_job(tmp_path, "echo ran\n", label="strict"))
    assert refused.infra_error and "bubblewrap is not installed" in refused.infra_error
    assert "allow weaker isolation" in refused.infra_error
    weak = LocalBackend(host=without, allow_weak_isolation=True)
    assert "bubblewrap is not installed" in weak.describe()["weak"]
    assert weak.describe()["filesystem"] == "the whole host"
    outcome, text = run(weak, make_job(tmp_path, 'echo ran in "$PB_OUT_DIR"\n', label="weak"))
    charged(outcome)
    assert outcome.exit_code == 0 and "ran in" in text


# -- workers -----------------------------------------------------------------------------------

_WORKER = """
import json, os, socket
me = int(os.environ["PB_WORKER_INDEX"])
report = {"index": me, "uid": os.getuid(), "pb": sorted(os.listdir("/pb")),
          "code": open("/pb/code/model.py").read(), "env": sorted(k for k in os.environ if k.startswith("PB_"))}
for path in ("/pb/out", "/pb/workers", "/pb/data"):
    report[path] = os.path.exists(path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(os.path.join(os.environ["PB_WORKER_DIR"], "logits.sock"))  # no chmod: like pb_logits
server.listen(1)
conn, _ = server.accept()
conn.sendall(json.dumps(report).encode())
conn.close()
"""

_CLIENT = """
import json, os, socket, time
base = os.environ["PB_WORKERS_DIR"]
for i in range(int(os.environ["PB_WORKERS"])):
    path = os.path.join(base, str(i), "logits.sock")
    for _ in range(200):
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(path); break
        except OSError:
            time.sleep(0.05)
    print("WORKER", s.makefile().read())
print("JOB uid", os.getuid())
try:
    open(os.path.join(base, "0", "planted"), "w")
    print("WROTE-INTO-WORKER")
except OSError:
    pass
"""


@needs_sandbox
def test_workers_are_isolated_from_the_job_and_each_other(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    secret = f"PB-EDIT-{uuid.uuid4().hex}"
    job = make_job(
        tmp_path,
        "exec python3 client.py\n",
        files={"model.py": f"SECRET = {secret!r}\n", "client.py": _CLIENT},
        workers=Workers(script="worker.sh", count=2),
    )
    (job.codebase_dir / "model.py").write_text("ORIGINAL = True\n")
    (job.codebase_dir / "worker.py").write_text(_WORKER)
    (job.codebase_dir / "worker.sh").write_text("exec python3 worker.py\n")
    outcome, text = run(backend, job)
    charged(outcome)
    assert outcome.exit_code == 0, text
    reports = [
        __import__("json").loads(line[len("WORKER ") :])
        for line in text.splitlines()
        if line.startswith("WORKER ")
    ]
    assert [r["index"] for r in reports] == [0, 1]
    job_uid = int(
        next(line for line in text.splitlines() if line.startswith("JOB uid")).split()[-1]
    )
    uids = {r["uid"] for r in reports}
    if HOST.mode == "root":
        assert len(uids | {job_uid}) == 3  # each sandbox its own uid
    for r in reports:
        assert r["code"] == "ORIGINAL = True\n"  # the original codebase, not the job's files
        assert r["pb"] == ["code", "worker"]
        assert not r["/pb/out"] and not r["/pb/workers"] and not r["/pb/data"]
    assert secret not in job.worker_log(0).read_text() + job.worker_log(1).read_text()
    assert "WROTE-INTO-WORKER" not in text


@needs_sandbox
def test_worker_that_cannot_start_fails_the_job_as_infrastructure(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    job = make_job(
        tmp_path,
        "sleep 1\nexit 3\n",
        workers=Workers(script="worker.sh", count=1),
        needs={"train": tmp_path / "no-such-output"},
    )
    outcome, _ = run(backend, job)
    # the job's own sandbox binds the same missing path: whichever failure is seen first
    assert outcome.infra_error, outcome
    assert "could not be" in outcome.infra_error and "no-such-output" in outcome.infra_error


@needs_sandbox
def test_jobs_from_several_threads_keep_apart(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    """The executor runs jobs from a thread pool: each keeps its own status, uid and log."""
    jobs = [
        make_job(tmp_path, f"echo I am {i} as $(id -u); sleep 0.5; exit {10 + i}\n", label=f"j{i}")
        for i in range(4)
    ]
    outcomes: dict[int, JobOutcome] = {}
    threads = [
        threading.Thread(target=lambda i=i, j=j: outcomes.update({i: backend.run_job(j)}))
        for i, j in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    uids = set()
    for i, job in enumerate(jobs):
        charged(outcomes[i])
        assert outcomes[i].exit_code == 10 + i
        text = job.log_path.read_text()
        assert text.startswith(f"I am {i} as ") and text.count("I am") == 1
        uids.add(text.split()[-1])
    if HOST.mode == "root":
        assert len(uids) == 4


# -- the supervisor's side ---------------------------------------------------------------------


@needs_sandbox
def test_outputs_are_handed_back_to_the_supervisor(
    backend: LocalBackend, tmp_path: Path, no_leftover_processes: None
) -> None:
    job = make_job(
        tmp_path,
        "cd /pb/out; echo x > data; chmod 4755 data; mkfifo pipe; mkdir -p sub; chmod 000 sub\n"
        "ln -s /etc/shadow link; echo ok\n",
    )
    outcome, text = run(backend, job)
    charged(outcome)
    assert "ok" in text
    data = (job.out_dir / "data").lstat()
    assert not data.st_mode & (stat.S_ISUID | stat.S_ISGID | 0o022)
    assert data.st_uid == os.getuid()
    assert not (job.out_dir / "pipe").exists() and any("pipe" in n for n in outcome.notes)
    assert (job.out_dir / "sub").stat().st_mode & 0o777 == 0o755
    # A link could send a trusted reader to a host file: removed, as by every backend.
    assert not (job.out_dir / "link").is_symlink() and any("link" in n for n in outcome.notes)


def test_limits_are_sized_per_job_kind(tmp_path: Path) -> None:
    backend = LocalBackend(host=HOST, allow_weak_isolation=True, parallel_cpu_jobs=2)
    cpu = backend.limits_for(make_job(tmp_path, "true\n"))
    gpu = backend.limits_for(make_job(tmp_path, "true\n", gpus=2))
    assert (cpu.memory_mb, cpu.max_processes, cpu.shm_mb) == (8192, 1024, 1024)
    assert (gpu.memory_mb, gpu.max_processes, gpu.shm_mb) == (2 * 32768, 8192, 8192)
    assert cpu.cpus == max(1.0, len(os.sched_getaffinity(0)) / 2)
    if backend.gpu_capacity < 2:
        refused = backend.run_job(make_job(tmp_path, "true\n", gpus=2))
        assert refused.infra_error and "GPUs requested" in refused.infra_error


def test_stale_work_dirs_of_killed_supervisors_are_swept(tmp_path: Path) -> None:
    import fcntl

    stale, live, foreign = tmp_path / "pb-a-s1-x", tmp_path / "pb-b-s1-y", tmp_path / "pb-c-s1-z"
    for d in (stale, live, foreign):
        (d / "code").mkdir(parents=True)
    (stale / ".pb-sandbox.lock").touch()
    held = (live / ".pb-sandbox.lock").open("wb")
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert sweep_stale_work_dirs(tmp_path) == [stale]
    finally:
        held.close()
    assert not stale.exists() and live.exists() and foreign.exists()  # no lock file: not ours


# -- user-namespace mode (an unprivileged harness) ----------------------------------------------

_UNPRIVILEGED = """
import sys
sys.path[:0] = [{repo!r}, {site!r}]
from pathlib import Path
from sandbox import Job, LocalBackend
backend = LocalBackend(allow_weak_isolation=True, tmp_root=Path({work!r}))
print("DESCRIBE", backend.describe())
root = Path({work!r})
(root / "code").mkdir()
(root / "code" / "run.sh").write_text(
    "id -u; grep -E '^Cap(Eff|Bnd)' /proc/self/status; cat {canary} || true; "
    "unshare -U true 2>/dev/null && echo NESTED-USERNS; ls /pb\\n")
out = backend.run_job(Job(label="u", seed=1, script="run.sh", codebase_dir=root / "code",
    files={{}}, out_dir=root / "out", log_path=root / "log.txt", time_limit_s=30))
print("OUTCOME", out)
print((root / "log.txt").read_text())
"""


@needs_root
def test_user_namespace_mode_as_an_unprivileged_harness(
    tmp_path: Path, canary: tuple[str, list[Path]]
) -> None:
    """The harness as uid 65534: bwrap in a user namespace, the job keeps that uid."""
    secret, planted = canary
    python = Path("/usr/bin/python3")
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = site / "site-packages"
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() if python.exists() else ""  # fmt: skip
    if version != str(sys.version_info[:2]):
        pytest.skip("needs a system Python of this version that uid 65534 can run")
    work = Path(tempfile.mkdtemp(prefix="pb-userns-"))
    work.chmod(0o777)
    try:
        script = _UNPRIVILEGED.format(
            repo=str(Path(__file__).resolve().parents[2]),
            site=str(site),
            work=str(work),
            canary=planted[0],
        )
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
             str(python), "-c", script],
            capture_output=True, text=True, timeout=120, check=False, cwd=str(work),
        )  # fmt: skip
        if "ModuleNotFoundError" in proc.stderr or "ImportError" in proc.stderr:
            pytest.skip(f"uid 65534 cannot import the harness here: {proc.stderr[-300:]}")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        if "bubblewrap cannot create a sandbox" in out:
            pytest.skip("unprivileged user namespaces are disabled on this host")
        assert "'isolation': 'bubblewrap" in out and "userns mode" in out, out
        assert "infra_error=None" in out and "exit_code=0" in out, out
        assert "\n65534\n" in out
        assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out
        assert secret not in out
        bwrap = probe_host().bwrap
        if userns_seccomp() is not None or (bwrap is not None and bwrap.disable_userns):
            assert "NESTED-USERNS" not in out
        assert "code\nout" in out
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


# -- helpers -----------------------------------------------------------------------------------


def _wait_for(check: Callable[[], T | None], timeout: float = 20.0) -> T:
    """The first truthy value ``check`` returns, polling for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _host_address() -> str:
    """A non-loopback address of this host (the loopback one if it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


# -- runner doctor -----------------------------------------------------------------------------


@needs_sandbox
def test_doctor_measures_every_guarantee_on_this_host(no_leftover_processes: None) -> None:
    from runner._doctor import doctor_table, summary
    from sandbox import check_host

    rows = check_host()
    sandbox_rows = {r.guarantee: r for r in rows if r.group == "sandbox"}
    assert set(sandbox_rows) >= {
        "bubblewrap",
        "unprivileged job",
        "filesystem view",
        "no network",
        "no nested user namespaces",
        "memory limit",
        "process limit",
        "cpu limit",
        "output size limit",
        "wall-time limit",
    }
    failing = {name: r.detail for name, r in sandbox_rows.items() if not r.holds}
    assert not failing
    assert all(r.measured for r in rows)
    for controller, name in (("memory", "memory limit"), ("pids", "process limit")):
        assert sandbox_rows[name].detail.startswith(f"cgroup {HOST.cgroups.version(controller)}")
    assert summary(rows).startswith(f"local sandbox: all {len(sandbox_rows)} guarantees hold; GPUs")
    assert doctor_table(rows).row_count == len(rows)
    configured = check_host(measure=False)
    assert "as configured" in summary(configured)
