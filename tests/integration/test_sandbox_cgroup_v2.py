"""cgroup v2 in the local backend: where each controller is found, delegation under the
no-internal-processes rule, and limits enforced through the unified hierarchy.

Most hosts are pure v2; this project's development machine is hybrid v1 (its memory controller
is pinned to v1 by the session's own memory cgroup). The limit tests therefore run each limit on
v2 where the host has it there, and on a hybrid host move the ``pids`` controller from its v1
hierarchy to v2 for the duration of one test, restoring it afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Job, JobOutcome, LocalBackend, probe_host
from sandbox._cgroups import locate
from tests._fixtures.sandbox import job_processes, sandbox_cgroups

pytestmark = [pytest.mark.integration, pytest.mark.cgroupv2]

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"


def test_each_controller_is_located_on_its_own_hierarchy() -> None:
    """Pure: hybrid, pure v1 (co-mounted cpu,cpuacct), pure v2, and a container's view."""
    v2, v1 = locate(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert v2 == Path("/sys/fs/cgroup/unified")
    assert v1 == {
        "memory": Path("/sys/fs/cgroup/memory/process_api/abc"),
        "pids": Path("/sys/fs/cgroup/pids"),
        "cpu": Path("/sys/fs/cgroup/cpu"),
    }
    v1_only = "40 31 0:40 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    _, dirs = locate(v1_only, "3:cpu,cpuacct:/user.slice\n")
    assert dirs == {"cpu": Path("/sys/fs/cgroup/cpu,cpuacct/user.slice")}
    pure = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    v2, dirs = locate(pure, "0::/system.slice/runner.service\n")
    assert v2 == Path("/sys/fs/cgroup/system.slice/runner.service") and dirs == {}
    # a container without a cgroup namespace: the mount shows only its own subtree
    container = "50 40 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
    v2, _ = locate(container, "0::/docker/abc\n")
    assert v2 == Path("/sys/fs/cgroup")
    escaped = "41 31 0:38 / /mnt/cg\\040v2 rw - cgroup2 cgroup2 rw\n"
    assert locate(escaped, "0::/a\n")[0] == Path("/mnt/cg v2/a")


# -- on this host ------------------------------------------------------------------------------


def _unified_root() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"] and left.split()[3] == "/":
            return Path(left.split()[4])
    return None


def _dockerd_running() -> bool:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "dockerd":
                return True
        except OSError:
            continue
    return False


def _words(path: Path) -> set[str]:
    return set(path.read_text().split())


def test_jobs_are_tracked_and_killed_through_v2(
    tmp_path: Path, no_leftover_processes: None
) -> None:
    """Where the unified hierarchy is writable, every job gets a v2 cgroup (with or without
    controllers): its processes are members from the start and ``cgroup.kill`` ends them."""
    host = probe_host()
    if host.missing() or host.cgroups.unified is None:
        pytest.skip("no usable cgroup v2 hierarchy here")
    marker = f"pb-v2-{uuid.uuid4().hex[:8]}"
    job = _job(
        tmp_path,
        f"setsid python3 -c 'import time; time.sleep(60)' {marker} &\n"
        "sleep 2; grep '^0::' /proc/self/cgroup\n",
    )
    lines: list[str] = []
    box: dict[str, JobOutcome] = {}
    thread = threading.Thread(
        target=lambda: box.update(o=LocalBackend().run_job(job, lines.append))
    )
    thread.start()
    seen: list[str] = []
    while thread.is_alive() and not seen:
        for pid in job_processes(marker):
            with contextlib.suppress(OSError):
                seen += [
                    x
                    for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                    if x.startswith("0::")
                ]
    thread.join(30)
    assert box["o"].exit_code == 0 and box["o"].infra_error is None, box["o"]
    assert seen and "/pb-" in seen[0], seen  # a member of its v2 job cgroup on the host …
    assert "0::/" in lines  # … which the cgroup namespace hides from the job
    assert not job_processes(marker)  # the setsid'd process did not outlive the job
    assert not sandbox_cgroups(host.cgroups)


@pytest.fixture
def v2_test_cgroup() -> Iterator[tuple[Path, str]]:
    """A fresh cgroup right under the v2 root, with a controller available to it."""
    root = _unified_root()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a cgroup v2 mount")
    available = _words(root / "cgroup.controllers")
    controller = next((c for c in ("pids", "memory", "cpu", "hugetlb") if c in available), None)
    if controller is None:
        pytest.skip("no controller is available on the v2 root here")
    enabled_before = controller in _words(root / "cgroup.subtree_control")
    if not enabled_before:
        (root / "cgroup.subtree_control").write_text(f"+{controller}")
    test_cgroup = root / f"pb-delegation-{uuid.uuid4().hex[:8]}"
    test_cgroup.mkdir()
    try:
        yield test_cgroup, controller
    finally:
        for leaf in sorted(test_cgroup.glob("*/"), reverse=True):
            leaf.rmdir()
        test_cgroup.rmdir()
        if not enabled_before:
            (root / "cgroup.subtree_control").write_text(f"-{controller}")


def test_delegation_moves_the_supervisor_into_a_leaf_only_when_needed(
    v2_test_cgroup: tuple[Path, str],
) -> None:
    """A supervisor whose cgroup holds processes cannot enable controllers for its jobs (the
    no-internal-processes rule); it moves itself into ``pb-supervisor`` and then can."""
    test_cgroup, controller = v2_test_cgroup
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        from pathlib import Path
        # the module alone (it imports nothing of ours), as a supervisor process would run it
        spec = importlib.util.spec_from_file_location("cgroups", {str(Path(__file__).resolve().parents[2] / "sandbox" / "_cgroups.py")!r})
        cgroups = importlib.util.module_from_spec(spec)
        sys.modules["cgroups"] = cgroups
        spec.loader.exec_module(cgroups)
        own = Path({str(test_cgroup)!r})
        (own / "cgroup.procs").write_text("0")  # join it: now it has an internal process
        notes = []
        print(sorted(cgroups._enable_v2(own, {{{controller!r}}}, notes)[1]), notes)
        print(open("/proc/self/cgroup").read().splitlines()[-1])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"[{controller!r}]" in out and "pb-supervisor" in out, out
    assert controller in _words(test_cgroup / "cgroup.subtree_control")
    assert out.strip().endswith(f"{test_cgroup.name}/pb-supervisor")


# -- limits enforced through v2 ----------------------------------------------------------------


@pytest.fixture
def pids_on_v2() -> Iterator[None]:
    """The ``pids`` controller on cgroup v2: as the host has it, or moved there from v1 for the
    test (root only; skipped when another user of the v1 hierarchy would be disturbed)."""
    host = probe_host()
    if host.cgroups.version("pids") == "v2":
        yield
        return
    root, v1 = _unified_root(), Path("/sys/fs/cgroup/pids")
    if os.geteuid() != 0 or root is None or not os.path.ismount(v1):
        pytest.skip("pids is not on v2, and moving it there needs root and a v1 pids mount")
    if _dockerd_running():
        pytest.skip("a Docker daemon is running: its containers use the v1 pids hierarchy")
    children = [p.name for p in v1.iterdir() if p.is_dir()]
    if children:
        pytest.skip(f"the v1 pids hierarchy is in use (child cgroups: {', '.join(children)})")
    result = subprocess.run(["umount", str(v1)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot unmount the v1 pids hierarchy: {result.stderr.strip()}")
    try:
        try:
            (root / "cgroup.subtree_control").write_text("+pids")
        except OSError as exc:  # another mount of the v1 hierarchy keeps pids bound there
            pytest.skip(f"cannot enable pids on v2: {os.strerror(exc.errno or errno.EBUSY)}")
        assert probe_host(refresh=True).cgroups.version("pids") == "v2"
        yield
    finally:
        for leftover in root.glob("pb-*"):
            leftover.rmdir()
        if "pids" in _words(root / "cgroup.subtree_control"):
            (root / "cgroup.subtree_control").write_text("-pids")
        subprocess.run(["mount", "-t", "cgroup", "-o", "pids", "cgroup", str(v1)], check=True)
        probe_host(refresh=True)


def test_fork_bomb_is_bounded_by_v2_pids(
    pids_on_v2: None, tmp_path: Path, no_leftover_processes: None
) -> None:
    host = probe_host()
    assert host.cgroups.version("pids") == "v2"
    backend = LocalBackend(max_processes=32)
    assert backend.describe()["processes"].startswith("cgroup v2")
    bomb = 'exec python3 -c "\nimport os, time\nwhile True:\n    try: os.fork()\n    except OSError: time.sleep(0.01)\n"\n'
    outcome = backend.run_job(_job(tmp_path, bomb, time_limit_s=3))
    assert outcome.infra_error is None and outcome.timed_out, outcome
    assert any("forks refused" in note for note in outcome.notes), outcome.notes
    assert not sandbox_cgroups(host.cgroups)


def test_memory_limit_on_v2(tmp_path: Path, no_leftover_processes: None) -> None:
    host = probe_host()
    if host.cgroups.version("memory") != "v2":
        pytest.skip(
            f"memory is on cgroup {host.cgroups.version('memory') or 'nothing'} here; it cannot "
            "move to v2 while any memory cgroup (this session's own) pins the v1 hierarchy"
        )
    hog = 'exec python3 -c "\nhog = []\nwhile True:\n    hog.append(bytearray(16 << 20))\n"\n'
    outcome = LocalBackend(memory_limit_mb=200).run_job(_job(tmp_path, hog))
    assert outcome.infra_error is None and outcome.oom, outcome


def _job(tmp_path: Path, script: str, time_limit_s: float = 30.0) -> Job:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "run.sh").write_text(script)
    return Job(
        label="v2",
        seed=1,
        script="run.sh",
        codebase_dir=code,
        files={},
        out_dir=tmp_path / "out",
        log_path=tmp_path / "log.txt",
        time_limit_s=time_limit_s,
    )
