"""The Docker backend against a real daemon (started by the tests when the machine allows).

Jobs run in the host-runtime test image (`docker_host_image`: imported in under a second, this
machine's Python bound read-only), so these tests need no image build; one test runs the real
codebase in the self-contained CPU image when that is built.
"""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox._backend import BackendError, Job, JobOutcome, Workers
from sandbox._docker import ContainerLimits, DockerBackend, docker_runtimes
from tests._fixtures.sandbox import probe_job, write_fake_codebase

pytestmark = [pytest.mark.integration, pytest.mark.docker]

SMALL = ContainerLimits(memory_mb=256, pids=48, shm_mb=16, tmp_mb=16)


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    return write_fake_codebase(tmp_path / "codebase")


@pytest.fixture
def backend(docker_daemon: Any, docker_host_image: tuple[str, tuple[Path, ...]]) -> DockerBackend:
    image, runtime = docker_host_image
    return DockerBackend(image, host_runtime=runtime, cpu_limits=SMALL, client=docker_daemon)


def _leftovers(client: Any) -> list[str]:
    return [
        c.name for c in client.containers.list(all=True, filters={"label": "pretrainbench.job"})
    ]


def _run(backend: DockerBackend, job: Job) -> tuple[JobOutcome, str]:
    outcome = backend.run_job(job)
    log = job.log_path.read_text(errors="replace") if job.log_path.exists() else ""
    return outcome, log


# -- a real job pair: training on the fake codebase, then its evaluation ---------------------


def test_train_then_evaluate_through_needs(
    backend: DockerBackend, docker_daemon: Any, codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train = Job(
        label="train-tiny",
        seed=42,
        script="scripts/train_tiny.sh",
        codebase_dir=codebase,
        files={},
        out_dir=run / "train-tiny" / "seed_42",
        log_path=run / "train-tiny" / "seed_42.log",
        time_limit_s=60,
        inputs={"train_data": fake_data},
        env={"PB_PROFILE": "tiny", "PB_MAX_ITERS": "5"},
    )
    lines: list[str] = []
    outcome = backend.run_job(train, lines.append)
    assert outcome.exit_code == 0 and outcome.infra_error is None, train.log_path.read_text()
    assert any(line.startswith("PB_PROGRESS ") for line in lines)
    assert "TRAIN_METRICS: step=4" in train.log_path.read_text()
    # the outputs are the harness's again, readable by the next job's sandbox user
    assert all(p.stat().st_uid == 0 for p in [train.out_dir, *train.out_dir.iterdir()])

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
    metrics = json.loads((evaluation.out_dir / "metrics.json").read_text())
    assert metrics["seed"] == 42 and "val_loss" in metrics["metrics"]
    assert not _leftovers(docker_daemon)


# -- what a job can see and do ---------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import errno, json, os, socket
    facts = {"uid": os.getuid(), "gid": os.getgid()}
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    for key in ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs", "Seccomp"):
        facts[key] = status[key].strip()
    def try_write(path):
        try:
            open(path, "w").write("x")
            return "written"
        except OSError as exc:
            return errno.errorcode[exc.errno]
    facts["write_etc"] = try_write("/etc/escaped")
    facts["write_code"] = try_write("/pb/code/evaluate.py")
    facts["write_root"] = try_write("/escaped")
    facts["write_out"] = try_write("/pb/out/written.txt")
    facts["mounts"] = sorted(
        line.split()[4] for line in open("/proc/self/mountinfo") if line.split()[4].startswith("/pb")
    )
    facts["interfaces"] = sorted(
        line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]
    )
    def connect(host, port):
        try:
            socket.create_connection((host, port), timeout=3).close()
            return "connected"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
    port = int(os.environ["PB_PROBE_PORT"])
    facts["net"] = {h: connect(h, port) for h in os.environ["PB_PROBE_HOSTS"].split(",")}
    found = []
    for top in ("/", ):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in
                           ("/proc", "/sys", "/usr", "/dev") and "pyenv" not in d and ".venv" not in d]
            found += [os.path.join(dirpath, f) for f in filenames if "canary" in f]
    facts["canaries"] = found
    facts["env"] = dict(os.environ)
    json.dump(facts, open("/pb/out/facts.json", "w"))
    """
)


def _host_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (its interfaces and the bridge)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout
    return [a for a in out.split() if "." in a and not a.startswith("127.")]


def test_the_job_sees_only_its_sandbox(
    backend: DockerBackend, codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    # a listener on every host address, loopback included: a job must reach none of them
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    port = server.getsockname()[1]
    hosts = ["127.0.0.1", *_host_addresses()]
    need = tmp_path / "run" / "train" / "seed_1"
    need.mkdir(parents=True)
    (need / "ckpt.json").write_text("{}")
    # canaries: next to the job's output directory and in a sibling run
    (tmp_path / "run" / "probe").mkdir(parents=True)
    (tmp_path / "run" / "probe" / "canary-next-to-out.txt").write_text("secret")
    (tmp_path / "other-run").mkdir()
    (tmp_path / "other-run" / "canary-sibling.txt").write_text("secret")
    (fake_data.parent / "canary-data-home.txt").write_text("secret")
    job = probe_job(
        tmp_path,
        codebase,
        "python probe.py",
        files={"probe.py": PROBE},
        inputs={"train_data": fake_data},
        needs={"train": need},
        env={"PB_PROBE_PORT": str(port), "PB_PROBE_HOSTS": ",".join(hosts)},
    )
    try:
        outcome, log = _run(backend, job)
    finally:
        server.close()
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    facts = json.loads((job.out_dir / "facts.json").read_text())
    assert facts["uid"] == 61000 and facts["gid"] == 61000
    assert facts["CapEff"] == facts["CapBnd"] == facts["CapPrm"] == "0000000000000000"
    assert facts["NoNewPrivs"] == "1" and facts["Seccomp"] == "2"
    assert facts["write_etc"] == facts["write_code"] == facts["write_root"] == "EROFS"
    assert facts["write_out"] == "written"
    assert facts["mounts"] == [
        "/pb/code",
        "/pb/data/train_data",
        "/pb/needs/train",
        "/pb/out",
    ]
    assert facts["interfaces"] == ["lo"]
    assert set(facts["net"].values()) <= {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"}, facts
    assert facts["canaries"] == []
    env = facts["env"]
    assert env["PB_DATA_DIR"] == "/pb/data/train_data" and env["PB_NEEDS_DIR"] == "/pb/needs"
    assert "PB_EVAL_DATA_DIR" not in env and "HF_HOME" not in env
    assert not any(str(tmp_path) in value for value in env.values())


LIMITS_PROBE = textwrap.dedent(
    """
    import errno, subprocess
    children = []
    try:
        for _ in range(100):
            children.append(subprocess.Popen(["sleep", "30"]))
    except OSError as exc:
        print("fork refused:", errno.errorcode[exc.errno])
    print("started", len(children), flush=True)
    for child in children:
        child.kill()
        child.wait()
    for path in ("/tmp/fill", "/dev/shm/fill"):
        try:
            with open(path, "wb") as fh:
                for _ in range(64):
                    fh.write(b"x" * 2**20)
            print(path, "took 64 MiB")
        except OSError as exc:
            print(path, errno.errorcode[exc.errno])
    """
)


def test_limits_hold(backend: DockerBackend, codebase: Path, tmp_path: Path) -> None:
    forks = probe_job(
        tmp_path, codebase, "python limits.py", files={"limits.py": LIMITS_PROBE}, label="forks"
    )
    outcome, log = _run(backend, forks)
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    assert "fork refused: EAGAIN" in log, log
    assert int(log.split("started ")[1].split()[0]) < SMALL.pids, log
    assert "/tmp/fill ENOSPC" in log and "/dev/shm/fill ENOSPC" in log, log  # both capped

    hog = probe_job(
        tmp_path,
        codebase,
        "python -c \"_h = []\nwhile True: _h.append(b'x' * 2**24)\"\n",
        label="hog",
    )
    outcome, log = _run(backend, hog)
    assert outcome.oom and outcome.exit_code == 137 and outcome.infra_error is None, outcome


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("exit 137", 137),
        ("kill -KILL $$", 137),
        ("python -c 'import os, signal; os.kill(1, signal.SIGKILL); os.kill(os.getpid(), 9)'", 137),
        (
            "echo 'setup failed: the sandbox could not start'; echo 'infrastructure error'; exit 199",
            199,
        ),
    ],
    ids=["exit-137", "self-sigkill", "python-sigkill", "fake-setup-failed"],
)
def test_what_the_job_does_is_never_infra(
    backend: DockerBackend,
    docker_daemon: Any,
    codebase: Path,
    tmp_path: Path,
    script: str,
    code: int,
) -> None:
    outcome, log = _run(backend, probe_job(tmp_path, codebase, script))
    assert outcome.exit_code == code and outcome.infra_error is None, (outcome, log)
    assert not outcome.timed_out and not outcome.oom
    assert not _leftovers(docker_daemon)


def test_time_limit(backend: DockerBackend, codebase: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    outcome, _ = _run(backend, probe_job(tmp_path, codebase, "sleep 60", time_limit_s=2))
    assert outcome.timed_out and outcome.infra_error is None
    assert time.monotonic() - start < 20


# -- workers -------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, os, socket
    path = os.path.join(os.environ["PB_WORKER_DIR"], "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    print("worker", os.environ["PB_WORKER_INDEX"], "private line", flush=True)
    facts = {
        "index": os.environ["PB_WORKER_INDEX"],
        "hostname": socket.gethostname(),
        "uid": os.getuid(),
        "pb": sorted(os.listdir("/pb")),
        "needs": sorted(os.listdir("/pb/needs")),
        "marker": open("/pb/code/marker.txt").read(),
        "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]),
        "env": sorted(k for k in os.environ if k.startswith("PB_")),
    }
    while True:
        conn, _ = server.accept()
        conn.sendall(json.dumps(facts).encode())
        conn.close()
    """
)

JOB_WITH_WORKERS = textwrap.dedent(
    """
    import json, os, socket, time
    replies = []
    for i in range(int(os.environ["PB_WORKERS"])):
        path = os.path.join(os.environ["PB_WORKERS_DIR"], str(i), "sock")
        for _ in range(200):
            try:
                client = socket.socket(socket.AF_UNIX)
                client.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        replies.append(json.loads(client.recv(65536)))
    json.dump({"hostname": socket.gethostname(), "workers": replies,
               "sockets": sorted(os.listdir(os.environ["PB_WORKERS_DIR"]))},
              open("/pb/out/workers.json", "w"))
    print("job done", flush=True)
    """
)


def test_workers_run_apart(
    backend: DockerBackend,
    docker_daemon: Any,
    codebase: Path,
    fake_data: Path,
    tmp_path: Path,
) -> None:
    (codebase / "marker.txt").write_text("original")
    (codebase / "worker.sh").write_text("exec python worker.py\n")
    (codebase / "worker.py").write_text(WORKER)
    need = tmp_path / "run" / "train" / "seed_1"
    need.mkdir(parents=True)
    job = probe_job(
        tmp_path,
        codebase,
        "python job.py",
        files={"job.py": JOB_WITH_WORKERS, "marker.txt": "edited by the submission"},
        inputs={"eval_data": fake_data},
        needs={"train": need},
        workers=Workers("worker.sh", 2),
    )
    outcome, log = _run(backend, job)
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    seen = json.loads((job.out_dir / "workers.json").read_text())
    workers = seen["workers"]
    assert seen["sockets"] == ["0", "1"] and [w["index"] for w in workers] == ["0", "1"]
    hostnames = {w["hostname"] for w in workers} | {seen["hostname"]}
    assert len(hostnames) == 3  # three containers
    for worker in workers:
        assert worker["uid"] == 61000 and worker["interfaces"] == ["lo"]
        assert worker["pb"] == ["code", "needs", "worker"]  # no data, no out, no other worker
        assert worker["needs"] == ["train"] and worker["marker"] == "original"
        assert "PB_EVAL_DATA_DIR" not in worker["env"] and "PB_OUT_DIR" in worker["env"]
    # worker output goes to the supervisor's worker logs, never into the job's log
    assert "private line" not in log and "job done" in log
    for index in range(2):
        assert f"worker {index} private line" in job.worker_log(index).read_text()
    assert not _leftovers(docker_daemon)


# -- infrastructure: only what the supervisor observed ---------------------------------------


def test_a_container_that_cannot_be_created_is_infra(
    backend: DockerBackend, docker_daemon: Any, codebase: Path, tmp_path: Path
) -> None:
    job = probe_job(tmp_path, codebase, "true", inputs={"train_data": tmp_path / "missing"})
    outcome = backend.run_job(job)
    assert outcome.infra_error and outcome.exit_code is None, outcome
    assert not _leftovers(docker_daemon)


def test_images_that_weaken_the_sandbox_are_refused(
    docker_daemon: Any, docker_host_image: tuple[str, tuple[Path, ...]]
) -> None:
    with pytest.raises(BackendError, match="not present"):
        DockerBackend("pretrainbench/no-such-image:0", client=docker_daemon)
    # an image without a USER runs as root; one with data variables leaks them to every job
    for tag, changes, reason in [
        ("pretrainbench/test-root:0", [], "root"),
        ("pretrainbench/test-leak:0", ["USER 61000:61000", "ENV HF_HOME=/opt/hf"], "HF_HOME"),
    ]:
        _import_empty_image(docker_daemon, tag, changes)
        with pytest.raises(BackendError, match=reason):
            DockerBackend(tag, client=docker_daemon)
    image, runtime = docker_host_image
    with pytest.raises(BackendError, match="no runtime"):
        DockerBackend(image, host_runtime=runtime, runtime="no-runtime", client=docker_daemon)


def _import_empty_image(client: Any, tag: str, changes: list[str]) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    repository, version = tag.split(":")
    client.api.import_image_from_data(
        buf.getvalue(), repository=repository, tag=version, changes=changes
    )


def _when_running(client: Any, action: Any) -> threading.Thread:
    """Call ``action(container)`` once the job's container runs (from another thread)."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            running = client.containers.list(
                filters={"label": "pretrainbench.role=job", "status": "running"}
            )
            if running:
                time.sleep(0.5)
                action(running[0])
                return
            time.sleep(0.1)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def test_docker_kill_from_outside_is_infra(
    backend: DockerBackend, docker_daemon: Any, codebase: Path, tmp_path: Path
) -> None:
    killer = _when_running(docker_daemon, lambda c: c.kill())
    outcome, _ = _run(backend, probe_job(tmp_path, codebase, "sleep 30"))
    killer.join()
    assert outcome.exit_code == 137 and outcome.infra_error, outcome
    assert "Docker API" in outcome.infra_error
    assert not _leftovers(docker_daemon)


class _DaemonLostOnWait:
    """A real Docker client whose containers lose the daemon's connection once started."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.containers = self

    def create(self, **spec: Any) -> Any:
        return _LostContainer(self._client.containers.create(**spec))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _LostContainer:
    def __init__(self, container: Any) -> None:
        self._container = container

    def wait(self, **_kw: Any) -> Any:
        import requests

        raise requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


def test_losing_the_daemon_mid_run_is_infra(
    docker_daemon: Any,
    docker_host_image: tuple[str, tuple[Path, ...]],
    codebase: Path,
    tmp_path: Path,
) -> None:
    image, runtime = docker_host_image
    backend = DockerBackend(
        image, host_runtime=runtime, cpu_limits=SMALL, client=_DaemonLostOnWait(docker_daemon)
    )
    outcome = backend.run_job(probe_job(tmp_path, codebase, "sleep 30"))
    assert outcome.infra_error and "lost the Docker daemon" in outcome.infra_error, outcome
    assert not _leftovers(docker_daemon)


def test_cancel_is_infra(
    backend: DockerBackend, docker_daemon: Any, codebase: Path, tmp_path: Path
) -> None:
    canceller = _when_running(docker_daemon, lambda _c: backend.cancel())
    start = time.monotonic()
    outcome, _ = _run(backend, probe_job(tmp_path, codebase, "sleep 30"))
    canceller.join()
    assert outcome.infra_error and "cancelled" in outcome.infra_error, outcome
    assert time.monotonic() - start < 20
    # a cancelled backend starts nothing more
    again = backend.run_job(probe_job(tmp_path, codebase, "true", label="after"))
    assert again.infra_error and again.exit_code is None
    assert not _leftovers(docker_daemon)


# -- runtimes and images ---------------------------------------------------------------------


def test_gvisor_runtime(
    docker_daemon: Any,
    docker_host_image: tuple[str, tuple[Path, ...]],
    codebase: Path,
    tmp_path: Path,
) -> None:
    if "runsc" not in docker_runtimes(docker_daemon):
        pytest.skip("the Docker daemon has no runsc runtime (gVisor not installed or registered)")
    image, runtime = docker_host_image
    # gVisor's own kernel threads run in the container's cgroup and count against its pids
    limits = ContainerLimits(memory_mb=512, pids=512, shm_mb=16, tmp_mb=16)
    backend = DockerBackend(
        image, host_runtime=runtime, runtime="auto", cpu_limits=limits, client=docker_daemon
    )
    assert backend.runtime == "runsc" and backend.describe()["runtime"] == "runsc"
    job = probe_job(tmp_path, codebase, "id -u; dmesg 2>/dev/null | head -1; echo ok > /pb/out/ok")
    outcome, log = _run(backend, job)
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    assert log.startswith("61000\n") and "gVisor" in log, log
    assert (job.out_dir / "ok").read_text() == "ok\n"
    # job-to-worker Unix sockets cross gVisor sandboxes through the bind-mounted socket dirs
    (codebase / "marker.txt").write_text("original")
    (codebase / "worker.sh").write_text("exec python worker.py\n")
    (codebase / "worker.py").write_text(WORKER)
    (tmp_path / "need").mkdir()
    job = probe_job(
        tmp_path,
        codebase,
        "python job.py",
        label="workers",
        files={"job.py": JOB_WITH_WORKERS},
        needs={"train": tmp_path / "need"},
        workers=Workers("worker.sh", 2),
    )
    outcome, log = _run(backend, job)
    assert outcome.exit_code == 0 and outcome.infra_error is None, log
    assert len(json.loads((job.out_dir / "workers.json").read_text())["workers"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("image_kind", ["host-runtime", "cpu"])
def test_real_codebase_tiny_training(
    request: pytest.FixtureRequest,
    image_kind: str,
    docker_daemon: Any,
    codebase_dir: Path,
    pb_data_paths: Any,
    tmp_path: Path,
) -> None:
    if not (codebase_dir / "scripts" / "train_tiny.sh").is_file():
        pytest.skip("the nanoGPT codebase has no scripts/train_tiny.sh yet")
    if image_kind == "cpu":
        image, runtime = request.getfixturevalue("docker_cpu_image_if_built"), ()
    else:
        image, runtime = request.getfixturevalue("docker_host_image")
    backend = DockerBackend(
        image,
        host_runtime=runtime,
        cpu_limits=ContainerLimits(memory_mb=6144, pids=1024, shm_mb=256, tmp_mb=2048),
        client=docker_daemon,
    )
    run = tmp_path / "run"
    train = Job(
        label="train-tiny",
        seed=42,
        script="scripts/train_tiny.sh",
        codebase_dir=codebase_dir,
        files={},
        out_dir=run / "train-tiny" / "seed_42",
        log_path=run / "train-tiny" / "seed_42.log",
        time_limit_s=900,
        inputs={"train_data": pb_data_paths.data_dir, "tokenizer": pb_data_paths.tokenizer_dir},
        env={"PB_PROFILE": "tiny", "PB_MAX_ITERS": "20"},
    )
    outcome = backend.run_job(train)
    tail = train.log_path.read_text()[-3000:]
    assert outcome.exit_code == 0 and outcome.infra_error is None, tail
    assert (train.out_dir / ".training_complete").is_file()
