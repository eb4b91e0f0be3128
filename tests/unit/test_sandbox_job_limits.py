"""Limits per job kind: the local and Docker backends give GPU jobs the same limits, sized for
2-rank torchrun with compile workers, docs/SECURITY.md states them, and a GPU job never runs
under an address-space limit."""

from __future__ import annotations

import resource
from pathlib import Path

from sandbox import Job, LocalBackend, probe_host
from sandbox._docker import CPU_JOB_LIMITS, GPU_JOB_LIMITS
from sandbox._local import address_space_refusal
from tests.integration.test_sandbox_local import make_job

SECURITY = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"


def job(tmp_path: Path, gpus: int) -> Job:
    return make_job(tmp_path, "true\n", gpus=gpus)


def table_row(limit: str) -> list[str]:
    text = SECURITY.read_text()
    section = text[text.index("### Limits per job kind") :]
    for line in section.splitlines():
        if line.startswith(f"| {limit}"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row {limit!r} in the limits table")


def gib(mb: int) -> str:
    return f"{mb // 1024} GiB"


def test_gpu_jobs_get_the_same_limits_in_both_backends(tmp_path: Path) -> None:
    backend = LocalBackend(host=probe_host(), allow_weak_isolation=True)
    for gpus in (1, 2):
        local, docker = backend.limits_for(job(tmp_path, gpus)), GPU_JOB_LIMITS.for_gpus(gpus)
        assert local.memory_mb == docker.memory_mb == 32768 * gpus
        assert local.max_processes == docker.pids == 8192
        assert local.shm_mb == docker.shm_mb == 8192
        assert local.tmp_mb == docker.tmp_mb == 16384
    assert GPU_JOB_LIMITS.for_gpus(0) == GPU_JOB_LIMITS  # never less than one GPU's share


def test_two_rank_limits_fit_the_full_profile() -> None:
    two = GPU_JOB_LIMITS.for_gpus(2)
    # two ranks at the compile peak (about 26 GiB each), with /dev/shm in use as well
    assert two.memory_mb >= 2 * 26 * 1024 + two.shm_mb
    # threads: two ranks of ~100 plus 32 compile workers of ~12 each, several times over
    assert two.pids >= 4 * 2 * (100 + 32 * 12)
    assert two.shm_mb >= 1024  # NCCL needs far more than Docker's default 64 MiB


def test_the_security_table_states_the_limits(tmp_path: Path) -> None:
    local_cpu = LocalBackend(host=probe_host(), allow_weak_isolation=True).limits_for(
        job(tmp_path, 0)
    )
    g = GPU_JOB_LIMITS
    memory = table_row("memory")
    assert memory[1] == f"{gib(local_cpu.memory_mb)} / {gib(CPU_JOB_LIMITS.memory_mb)}"
    assert memory[2].startswith(f"{gib(g.memory_mb)} per GPU ({gib(2 * g.memory_mb)} for 2 ranks)")
    processes = table_row("processes")
    assert processes[1] == f"{local_cpu.max_processes:,} / {CPU_JOB_LIMITS.pids:,}"
    assert processes[2] == f"{g.pids:,}"
    shm = table_row("`/dev/shm`")
    assert shm[1] == f"{gib(local_cpu.shm_mb)} / {CPU_JOB_LIMITS.shm_mb} MiB"
    assert shm[2] == gib(g.shm_mb)
    tmp = table_row("`/tmp`")
    assert tmp[1] == f"{gib(local_cpu.tmp_mb)} / {gib(CPU_JOB_LIMITS.tmp_mb)}"
    assert tmp[2] == gib(g.tmp_mb)
    assert table_row("address space")[2] == "never limited"


def test_a_hard_address_space_limit_refuses_a_gpu_job() -> None:
    inf = resource.RLIM_INFINITY
    assert address_space_refusal((inf, inf)) is None
    assert address_space_refusal((64 * 2**30, inf)) is None  # soft: the launcher lifts it
    why = address_space_refusal((64 * 2**30, 64 * 2**30))
    assert why is not None and "ulimit -v 67108864 KiB" in why and "CUDA" in why
