"""Shared pytest fixtures of the sandbox area: a fake codebase with the real contract.

The fake codebase follows docs/INTERFACES.md section 1 (env variables, ``curve.jsonl``,
``TRAIN_METRICS``/``PB_PROGRESS`` lines, ``failure.json``; a training job, and a trusted
``evaluate.py`` job that reads the training job's output through ``$PB_NEEDS_DIR`` and writes
``metrics.json``) with the standard library instead of torch, so sandbox tests run real
subprocesses in about a second each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import DataPaths, JobSpec, TestRequest
from tests._fixtures.worlds import (
    EVAL_SCRIPT,
    EVALUATE,
    LM_EVAL_SCRIPT,
    PB_DATA,
    evaluation_jobs,
    write_files,
)

FAKE_TRAIN = textwrap.dedent(
    '''
    """Fake training: a few steps of a decaying loss (the file submissions edit)."""
    import json, math, os, sys, time
    import pb_config

    # ── EDITABLE REGION START: get_lr ──
    def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
        if it < warmup_iters:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        if it > lr_decay_iters:
            return min_lr
        ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)
    # ── EDITABLE REGION END: get_lr ──

    def loss_at(step, lr):
        return 5.0 / (1.0 + 0.1 * step) + lr
    # ── EDITABLE REGION START: train_hook ──
    # ── EDITABLE REGION END: train_hook ──

    if __name__ == "__main__":
        cfg = pb_config.resolve_run_config(os.environ)
        out = os.environ["PB_OUT_DIR"]
        seed = cfg["seed"]
        n = cfg["max_iters"]
        with open(os.path.join(out, "curve.jsonl"), "w") as curve:
            for step in range(n):
                lr = get_lr(step, cfg["warmup_iters"], cfg["lr_decay_iters"], cfg["learning_rate"], cfg["min_lr"])
                loss = loss_at(step, lr) + seed * 1e-3
                if not math.isfinite(loss):
                    with open(os.path.join(out, "failure.json"), "w") as fh:
                        json.dump({"reason": f"non-finite loss at step {step} (lr={lr})"}, fh)
                    print(f"non-finite loss at step {step}", flush=True)
                    sys.exit(3)
                curve.write(json.dumps({"step": step, "train_loss": loss, "lr": lr, "tokens": step * 64}) + "\\n")
                print(f"TRAIN_METRICS: step={step}, train_loss={loss:.4f}, val_loss={loss + 0.1:.4f}", flush=True)
                print("PB_PROGRESS " + json.dumps({"step": step + 1, "max_steps": n, "loss": loss, "tokens_per_s": 1000.0}), flush=True)
                time.sleep(float(os.environ.get("PB_FAKE_STEP_S", "0.01")))
        with open(os.path.join(out, "ckpt.json"), "w") as fh:
            json.dump({"final_loss": loss, "seed": seed}, fh)
        with open(os.path.join(out, ".training_complete"), "w") as fh:
            json.dump({"iters": n}, fh)
    '''
)

FAKE_CONFIG = textwrap.dedent(
    '''
    """Fake profiles: the same keys as the real pb_config."""
    PROFILES = {
        "micro": dict(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=64, max_iters=3,
                      batch_size=2, grad_accum=1, learning_rate=1e-3, min_lr=1e-4, warmup_iters=1,
                      lr_decay_iters=3, weight_decay=0.1, grad_clip=1.0, eval_interval=1, val_windows=2),
        "tiny": dict(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=64, max_iters=20,
                     batch_size=4, grad_accum=1, learning_rate=1e-3, min_lr=1e-4, warmup_iters=2,
                     lr_decay_iters=20, weight_decay=0.1, grad_clip=1.0, eval_interval=5, val_windows=4),
        "full": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, vocab_size=50304, max_iters=12030,
                     batch_size=16, grad_accum=6, learning_rate=3e-4, min_lr=3e-5, warmup_iters=481,
                     lr_decay_iters=12030, weight_decay=0.1, grad_clip=1.0, eval_interval=250, val_windows=200),
    }

    def resolve_run_config(environ):
        profile = environ.get("PB_PROFILE", "tiny")
        cfg = dict(PROFILES[profile])
        cfg["profile"] = profile
        cfg["seed"] = int(environ.get("PB_SEED", "42"))
        if "PB_MAX_ITERS" in environ:
            cfg["max_iters"] = int(environ["PB_MAX_ITERS"])
        cfg["tokens_per_iter"] = cfg["batch_size"] * cfg["grad_accum"] * cfg["block_size"]
        return cfg
    '''
)

TRAIN_SCRIPT = "set -e\npython custom_pretrain.py\n"


def write_fake_codebase(root: Path) -> Path:
    """Write the fake codebase into ``root`` and return it."""
    files = {
        "custom_pretrain.py": FAKE_TRAIN,
        "evaluate.py": EVALUATE,
        "pb_config.py": FAKE_CONFIG,
        "pb_data.py": PB_DATA,
        "scripts/train_tiny.sh": TRAIN_SCRIPT,
        "scripts/eval_tiny.sh": EVAL_SCRIPT,
        "scripts/lm_eval_tiny.sh": LM_EVAL_SCRIPT,
    }
    return write_files(root, files)


@pytest.fixture
def fake_codebase(tmp_path: Path) -> Path:
    """A fresh fake codebase directory (numpy only) following the codebase contract."""
    return write_fake_codebase(tmp_path / "codebase")


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    """A data directory with one tiny train and val shard."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_000000.bin").write_bytes(bytes(range(64)) * 4)
    (data / "val_000000.bin").write_bytes(bytes(range(64)))
    return data


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


@pytest.fixture
def no_leftover_processes() -> Iterator[None]:
    """Fail the test if any process started during it (a descendant of pytest) is left running."""
    before = _descendants(os.getpid())
    yield
    left = _descendants(os.getpid()) - before
    # zombies reaped late are not running processes
    running = set()
    for pid in left:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    for pid in running:
        os.kill(pid, signal.SIGKILL)
    assert not running, f"processes left running after the test: {sorted(running)}"


# -- daemons: Docker and a one-node Slurm cluster, started here when the machine allows ---------

SANDBOX_STATE = Path(
    os.environ.get("PB_SANDBOX_TEST_STATE", "/var/lib/pretrainbench-sandbox-tests")
)


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[object]:
    """A Docker SDK client; starts ``dockerd`` when none runs (root only), else skips."""
    from sandbox._backend import BackendError
    from sandbox._docker import docker_client, start_docker_daemon

    try:
        proc = start_docker_daemon(Path("/var/lib/pretrainbench-docker"))
        client = docker_client()
    except BackendError as exc:
        pytest.skip(f"no Docker daemon: {exc}")
    yield client
    if proc is not None:  # only a daemon this session started is stopped again
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def docker_cpu_image(docker_daemon: object) -> str:
    """The CPU sandbox image (built once and cached by tag; the first build takes minutes)."""
    from sandbox._backend import BackendError
    from sandbox.images import build_cpu_image

    try:
        return build_cpu_image(client=docker_daemon, log=lambda _line: None)
    except BackendError as exc:
        pytest.skip(f"cannot build the CPU sandbox image here: {exc}")


_SLURM_CONF = """ClusterName=pbtest
SlurmctldHost={host}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={state}/slurmctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
EnforcePartLimits=ALL
MinJobAge=300
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
{node} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A Slurm controller to submit to: an existing one, or a one-node cluster started here."""
    import shutil
    import socket
    import time

    from sandbox._slurm import slurm_available

    if slurm_available() is None:
        yield
        return
    tools = ("munged", "slurmctld", "slurmd", "sbatch", "munge")
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if missing or os.geteuid() != 0:
        pytest.skip(f"cannot start a Slurm cluster here: missing {missing or 'root'}")
    state = SANDBOX_STATE / "slurm"
    state.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    node = _run(["slurmd", "-C"]).stdout.splitlines()
    node_line = next((line for line in node if line.startswith("NodeName=")), "")
    if not node_line:
        pytest.skip("slurmd -C did not describe this node")
    node_line = " ".join(
        tok for tok in node_line.split() if not tok.startswith(("RealMemory=", "UpTime="))
    )
    conf = state / "slurm.conf"
    conf.write_text(_SLURM_CONF.format(host=host, state=state, node=node_line, memory=4096))
    for sub in ("slurmctld", "slurmd"):
        (state / sub).mkdir(exist_ok=True)
    _run(["chown", "-R", "slurm:slurm", str(state / "slurmctld")])
    os.environ["SLURM_CONF"] = str(conf)
    started: list[Path] = []
    if _run(["sh", "-c", "munge -n | unmunge"]).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        _run(["chown", "munge:munge", "/run/munge"])
        _run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"])
        if _run(["sh", "-c", "munge -n | unmunge"]).returncode != 0:
            pytest.skip("munged could not be started")
        started.append(Path("/run/munge/munged.pid"))
    for daemon in ("slurmctld", "slurmd"):
        proc = _run([daemon])
        if proc.returncode != 0:
            pytest.skip(f"{daemon} failed to start: {proc.stderr.strip()[:300]}")
        started.append(state / f"{daemon}.pid")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and slurm_available() is not None:
        time.sleep(0.5)
    _run(["scontrol", "update", f"NodeName={host}", "State=RESUME"])
    if slurm_available() is not None:
        pytest.skip(f"the Slurm cluster did not come up: {slurm_available()}")
    yield
    for pidfile in reversed(started):  # only the daemons this session started
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


# -- requests against the fake codebase, shared by the local, Docker and Slurm backend tests ----

HOOK = "# ── EDITABLE REGION START: train_hook ──\n"


def fake_jobs(
    time_limit: str,
    train_label: str = "train-tiny",
    eval_label: str = "gpt-tiny",
    lm_eval_label: str = "lm-eval-tiny",
) -> tuple[JobSpec, JobSpec, JobSpec]:
    """A training job on the edited code, its trusted evaluation, and the hidden lm-eval job
    that reads the same checkpoint."""
    train = {
        "label": train_label,
        "script": "scripts/train_tiny.sh",
        "code": "edited",
        "inputs": ["train_data"],
        "show_log": True,
        "time_limit": time_limit,
    }
    evaluation, lm_eval = evaluation_jobs(
        train_label,
        (eval_label, lm_eval_label),
        scripts=("scripts/eval_tiny.sh", "scripts/lm_eval_tiny.sh"),
        inputs=(["train_data", "eval_data"], ["eval_data"]),
        time_limit=time_limit,
    )
    return (
        JobSpec.model_validate(train),
        JobSpec.model_validate(evaluation),
        JobSpec.model_validate(lm_eval),
    )


def fake_request(
    codebase: Path,
    data: DataPaths,
    out: Path,
    *,
    run_id: str,
    jobs: list[JobSpec],
    seeds: list[int],
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> TestRequest:
    """A tiny-profile `TestRequest` for the fake codebase."""
    return TestRequest(
        run_id=run_id,
        test_id="1",
        codebase_dir=codebase,
        files=files or {},
        jobs=jobs,
        seeds=seeds,
        profile="tiny",
        out_dir=out,
        data=data,
        env=env or {},
    )


# -- Docker: the image jobs run in during tests, and a job builder for backend-level tests -----

from sandbox._backend import Job, Workers  # noqa: E402 - additions below keep the file's head


@pytest.fixture(scope="session")
def docker_host_image(docker_daemon: object) -> tuple[str, tuple[Path, ...]]:
    """(tag, host runtime binds) of the test image: no runtime of its own, this machine's
    Python bound read-only. Imported in under a second, so Docker tests run in CI without the
    self-contained CPU image's ten-minute build; every sandbox guarantee is the same."""
    from sandbox._backend import BackendError
    from sandbox.images import build_host_runtime_image, host_runtime_paths

    try:
        return build_host_runtime_image(docker_daemon, log=lambda _line: None), host_runtime_paths()
    except BackendError as exc:
        pytest.skip(f"cannot import the host-runtime test image: {exc}")


@pytest.fixture(scope="session")
def docker_cpu_image_if_built(docker_daemon: object) -> str:
    """The self-contained CPU image when it is already built, or built here (about ten
    minutes) when ``PB_BUILD_DOCKER_IMAGE=1``; otherwise the test is skipped at once."""
    from sandbox._docker import CPU_IMAGE
    from sandbox.images import image_exists

    wanted = os.environ.get("PB_BUILD_DOCKER_IMAGE") == "1"
    if not wanted and not image_exists(docker_daemon, CPU_IMAGE):
        pytest.skip(
            f"{CPU_IMAGE} is not built; set PB_BUILD_DOCKER_IMAGE=1 to build it (~10 minutes)"
        )
    from sandbox._backend import BackendError
    from sandbox.images import build_cpu_image

    try:
        return build_cpu_image(client=docker_daemon, log=lambda _line: None)
    except BackendError as exc:
        pytest.skip(f"cannot build the CPU sandbox image here: {exc}")


def probe_job(
    root: Path,
    codebase: Path,
    script: str,
    *,
    label: str = "probe",
    time_limit_s: float = 60,
    files: dict[str, str] | None = None,
    inputs: dict[str, Path] | None = None,
    needs: dict[str, Path] | None = None,
    workers: Workers | None = None,
    env: dict[str, str] | None = None,
) -> Job:
    """A `sandbox.Job` that runs ``script`` (bash text, laid over ``codebase`` as
    ``probe.sh``) with its output in ``root/run/<label>/seed_1`` and its log beside it."""
    out = root / "run" / label / "seed_1"
    out.mkdir(parents=True, exist_ok=True)
    return Job(
        label=label,
        seed=1,
        script="probe.sh",
        codebase_dir=codebase,
        files={"probe.sh": script, **(files or {})},
        out_dir=out,
        log_path=out.parent / "seed_1.log",
        time_limit_s=time_limit_s,
        inputs=inputs or {},
        needs=needs or {},
        workers=workers,
        env=env or {},
    )


# -- the local bubblewrap backend: what a job left behind -------------------------------------


def job_processes(marker: str) -> set[int]:
    """Host pids of running processes whose command line contains ``marker``."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.add(int(entry))
    return found


def read_outputs(out_dir: Path) -> str:
    """Every regular file a job left in ``out_dir``, as text (symlinks not followed)."""
    texts: list[str] = []
    if out_dir.is_dir():
        for path in sorted(out_dir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def sandbox_cgroups(plan: object) -> list[Path]:
    """Job cgroups this test process made (``pb-<pid>-…``) that still exist."""
    from sandbox._cgroups import CgroupPlan

    assert isinstance(plan, CgroupPlan)
    bases = {d for d in (plan.unified, *plan.v1.values()) if d is not None}
    return sorted(p for base in bases for p in base.glob(f"pb-{os.getpid()}-*"))


@pytest.fixture
def shared_run_root() -> Iterator[Path]:
    """A directory every node and the sandbox uid can reach (pytest's own temp directories are
    private to root): Slurm jobs without a container read their inputs by host path."""
    import shutil
    import uuid

    root = SANDBOX_STATE / "runs" / uuid.uuid4().hex[:12]
    root.mkdir(parents=True)
    for path in (SANDBOX_STATE, SANDBOX_STATE / "runs", root):
        path.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)
