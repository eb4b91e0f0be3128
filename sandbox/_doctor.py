"""`runner doctor`: which guarantees of the local sandbox this host gives, measured.

Every row that can be is checked by running a real (tiny) job through ``LocalBackend`` and
observing what it could do; the rest (GPUs, Docker, Slurm) are asked of the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import socket
import tempfile
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

from sandbox._backend import Job, JobOutcome
from sandbox._bwrap import userns_seccomp
from sandbox._cgroups import CgroupPlan
from sandbox._local import LocalBackend, probe_host

_CANARY = "pb-doctor-canary"

# What the probe job reports about itself, as one JSON line; the doctor plants a canary file
# outside the view and listens on a loopback port of the host for it to try.
_PROBE = textwrap.dedent(
    """
    import json, os, socket, sys
    def caps():
        out = {}
        for line in open("/proc/self/status"):
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapBnd", "NoNewPrivs"):
                out[key] = value.strip()
        return out
    def readable(path):
        try:
            open(path).read()
            return True
        except OSError:
            return False
    def connects(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False
    def nested_userns():
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(0x10000000) == 0  # CLONE_NEWUSER
    print("PB_DOCTOR " + json.dumps({
        "uid": os.getuid(), **caps(),
        "canary": readable(sys.argv[1]),
        "sys": os.path.exists("/sys/fs/cgroup") or os.path.exists("/sys/kernel"),
        "connects": connects(int(sys.argv[2])),
        "nested_userns": nested_userns(),
    }))
    """
)


@dataclass(frozen=True)
class HostCheck:
    """One guarantee and whether this host gives it; ``group`` is ``"sandbox"`` for what the
    local backend promises every job, ``"host"`` for what else this machine offers (GPUs,
    Docker, Slurm)."""

    guarantee: str
    holds: bool
    detail: str
    group: str = "sandbox"
    measured: bool = True  # False: as the probe found it configured, no job tried it


def _run(
    backend: LocalBackend, work: Path, name: str, script: str, **job: object
) -> tuple[JobOutcome, list[str]]:
    code = work / f"code-{name}"
    code.mkdir()
    (code / "probe.py").write_text(_PROBE)
    (code / "run.sh").write_text(script)
    lines: list[str] = []
    outcome = backend.run_job(
        Job(
            label=f"doctor-{name}",
            seed=0,
            script="run.sh",
            codebase_dir=code,
            files={},
            out_dir=work / f"out-{name}",
            log_path=work / f"{name}.log",
            time_limit_s=float(job.pop("time_limit_s", 30.0)),  # type: ignore[arg-type]
            **job,  # type: ignore[arg-type]
        ),
        lines.append,
    )
    return outcome, lines


def check_host(*, measure: bool = True, refresh: bool = True) -> list[HostCheck]:
    """Probe this host once and report, per guarantee, whether it holds and how (cgroup v1 or
    v2), or why not. ``measure``: run small real jobs in the local sandbox and report what they
    could do (a few seconds); without it, what the probe found is reported as configured (no
    jobs, well under a second: for ``runner run`` to print before every run)."""
    host = probe_host(refresh=refresh)
    rows: list[HostCheck] = []
    if host.bwrap is None:
        rows.append(HostCheck("bubblewrap", False, "not installed (apt-get install bubblewrap)"))
    elif host.sandbox_error:
        rows.append(HostCheck("bubblewrap", False, f"{host.bwrap.version}: {host.sandbox_error}"))
    else:
        how = "root: setpriv to a sandbox uid" if host.mode == "root" else "user namespace"
        rows.append(
            HostCheck("bubblewrap", True, f"{host.bwrap.version} at {host.bwrap.path} ({how})")
        )
    if measure:
        work = Path(tempfile.mkdtemp(prefix="pb-doctor-"))
        try:
            rows += _job_checks(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    else:
        rows += _configured_checks()
    rows += _host_checks()
    return rows


def _configured_checks() -> list[HostCheck]:
    """The guarantees as the probe found them configured, without running a job."""
    host = probe_host()
    sandboxed = host.bwrap is not None and host.sandbox_error is None
    why = "no sandbox (see bubblewrap)"
    rows = [
        HostCheck(
            "unprivileged job",
            sandboxed,
            ("a uid of its own, no capabilities" if host.mode == "root" else "the invoking uid")
            if sandboxed
            else why,
        ),
        HostCheck("filesystem view", sandboxed, "minimal view" if sandboxed else why),
        HostCheck("no network", sandboxed, "network namespace" if sandboxed else why),
        HostCheck(
            "no nested user namespaces",
            sandboxed and userns_seccomp() is not None,
            "seccomp filter" if sandboxed else why,
        ),
    ]
    for name, controller in (("memory", "memory"), ("process", "pids"), ("cpu", "cpu")):
        version = host.cgroups.version(controller)
        rows.append(
            HostCheck(
                f"{name} limit",
                version is not None,
                f"cgroup {version}" if version else f"no {controller} cgroup",
            )
        )
    rows.append(
        HostCheck(
            "output size limit",
            True,
            "polled" + (" + RLIMIT_FSIZE" if host.prlimit else " (no prlimit: no per-file cap)"),
        )
    )
    rows.append(HostCheck("wall-time limit", True, "enforced by the supervisor"))
    return [dataclasses.replace(row, measured=False) for row in rows]


def _job_checks(work: Path) -> list[HostCheck]:
    """Run small jobs through the local backend and report what its sandbox held back."""
    host = probe_host()
    backend = LocalBackend(
        allow_weak_isolation=True,
        memory_limit_mb=96,
        max_processes=32,
        cpus=0.25,
        max_output_mb=1,
        tmp_root=work,
    )
    rows, probed = _isolation_checks(backend, work)
    if not probed:  # the probe job itself failed: its row says why
        return rows
    rows += _limit_checks(backend, work, host.cgroups)
    backend.close()
    return rows


def _isolation_checks(backend: LocalBackend, work: Path) -> tuple[list[HostCheck], bool]:
    """Privileges, filesystem view, network and user namespaces, as one probe job saw them;
    false when the probe produced no report."""
    rows: list[HostCheck] = []
    canary = work / "canary" / "secret.txt"
    canary.parent.mkdir()
    canary.write_text(_CANARY)
    canary.parent.chmod(0o755)
    canary.chmod(0o644)  # readable by anyone on the host: only the view can hide it
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                listener.accept()[0].close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        outcome, lines = _run(backend, work, "probe", f"python3 probe.py {canary} {port}\n")
    finally:
        stop.set()
        thread.join()
        listener.close()
    report = next(
        (json.loads(line[len("PB_DOCTOR ") :]) for line in lines if line.startswith("PB_DOCTOR ")),
        None,
    )
    if report is None:
        why = outcome.infra_error or f"the probe job printed no report (exit {outcome.exit_code})"
        return [HostCheck("sandboxed job", False, why)], False
    unprivileged = report["uid"] != 0 and report.get("CapEff") == report.get("CapBnd") == ("0" * 16)
    rows.append(
        HostCheck(
            "unprivileged job",
            unprivileged,
            f"uid {report['uid']}, CapEff {report.get('CapEff')}, CapBnd {report.get('CapBnd')}, "
            f"NoNewPrivs {report.get('NoNewPrivs')}",
        )
    )
    rows.append(
        HostCheck(
            "filesystem view",
            not report["canary"] and not report["sys"],
            ("a canary file outside the view was readable; " if report["canary"] else "")
            + (
                "/sys is visible"
                if report["sys"]
                else "no /sys, canary outside the view unreadable"
            ),
        )
    )
    rows.append(
        HostCheck(
            "no network",
            not report["connects"],
            "reached a host loopback port" if report["connects"] else "host loopback unreachable",
        )
    )
    rows.append(
        HostCheck(
            "no nested user namespaces",
            not report["nested_userns"],
            "the job can create a user namespace (kernel attack surface)"
            if report["nested_userns"]
            else "the job cannot create a user namespace",
        )
    )
    return rows, True


def _limit_checks(backend: LocalBackend, work: Path, plan: CgroupPlan) -> list[HostCheck]:
    """Memory, processes, CPU, output size and wall time: one job pushing each limit."""
    rows: list[HostCheck] = []

    def via(controller: str) -> str:
        version = plan.version(controller)
        return f"cgroup {version}" if version else "no cgroup"

    bomb = 'python3 -c "\nimport os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n"\n'
    hog = 'python3 -c "x = [bytearray(1 << 20) for _ in range(400)]"\n'
    spin = (
        'python3 -c "\nimport time\nt = time.time()\nwhile time.time() - t < 1.5: pass\n'
        "print('PB_CPU', time.process_time() / (time.time() - t))\"\n"
    )
    big = 'head -c 3000000 /dev/zero > "$PB_OUT_DIR/big"\n'
    mem, _ = _run(backend, work, "memory", hog)
    rows.append(
        HostCheck(
            "memory limit",
            mem.oom,
            f"{via('memory')}: a job allocating 400 MiB under 96 MiB was "
            + ("OOM-killed" if mem.oom else f"not stopped (exit {mem.exit_code})"),
        )
    )
    forks, _ = _run(backend, work, "pids", bomb, time_limit_s=3.0)
    refused = any("forks refused" in n for n in forks.notes)
    rows.append(
        HostCheck(
            "process limit",
            refused,
            f"{via('pids')}: a fork bomb under 32 processes was "
            + ("bounded" if refused else "not bounded"),
        )
    )
    _, cpu_lines = _run(backend, work, "cpu", spin)
    share = next((float(x.split()[1]) for x in cpu_lines if x.startswith("PB_CPU ")), None)
    rows.append(
        HostCheck(
            "cpu limit",
            share is not None and share < 0.5,
            f"{via('cpu')}: a busy loop under 0.25 CPUs got "
            + (f"{share:.2f} CPUs" if share is not None else "no measurement"),
        )
    )
    out, _ = _run(backend, work, "output", big)
    stopped = out.exit_code not in (0, None) or out.limit is not None
    rows.append(
        HostCheck(
            "output size limit",
            stopped,
            "a 3 MB file under a 1 MiB cap was "
            + ("refused (RLIMIT_FSIZE, polled total)" if stopped else "written"),
        )
    )
    slow, _ = _run(backend, work, "time", "sleep 30\n", time_limit_s=1.0)
    rows.append(
        HostCheck(
            "wall-time limit",
            slow.timed_out,
            "a 30 s sleep under 1 s was " + ("stopped" if slow.timed_out else "not stopped"),
        )
    )
    return rows


def _host_checks() -> list[HostCheck]:
    from sandbox._bwrap import gpu_devices
    from sandbox._docker import docker_client
    from sandbox._local import _visible_gpus
    from sandbox._slurm import slurm_available

    rows: list[HostCheck] = []
    gpus = _visible_gpus()
    devices = gpu_devices()
    rows.append(
        HostCheck(
            "GPU access",
            bool(gpus) and bool(devices),
            f"{len(gpus)} GPU(s): {', '.join(n for _, n in gpus)}; {len(devices)} /dev/nvidia* nodes"
            if gpus
            else "no GPU (nvidia-smi finds none)",
            "host",
        )
    )
    try:
        client = docker_client(timeout=3)
        version = client.version().get("Version", "?")
        rows.append(HostCheck("Docker", True, f"daemon {version} reachable", "host"))
    except Exception as exc:  # the SDK raises its own types; any failure means no daemon
        rows.append(HostCheck("Docker", False, str(exc), "host"))
    why = slurm_available()
    rows.append(HostCheck("Slurm", why is None, why or "a controller answers", "host"))
    return rows
