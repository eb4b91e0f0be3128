"""A GPU job in the real local sandbox never runs under an address-space limit, even when the
supervisor inherited one; a CPU job keeps what it inherited. No GPU is needed: the job's kind
(``gpus``) decides, and the backend is told it has one GPU to hand out."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import LocalBackend
from sandbox._backend import GpuPool
from tests.integration.test_sandbox_local import (  # the local backend's tests' helpers
    backend,  # noqa: F401 (a fixture)
    charged,
    make_job,
    needs_sandbox,
    run,
)

pytestmark = pytest.mark.integration

SOFT_AS = 512 * 2**30  # far above what the jobs use: only CUDA's reservations would notice
SCRIPT = 'grep "Max address space" /proc/self/limits; echo done\n'


@pytest.fixture
def inherited_address_space_limit() -> Iterator[None]:
    """This process (the supervisor) under a soft ``ulimit -v``, as a shell profile would set."""
    before = resource.getrlimit(resource.RLIMIT_AS)
    if before[1] != resource.RLIM_INFINITY:
        pytest.skip("this process already has a hard address-space limit")
    resource.setrlimit(resource.RLIMIT_AS, (SOFT_AS, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, before)


@needs_sandbox
def test_gpu_job_lifts_an_inherited_address_space_limit(
    tmp_path: Path,
    backend: LocalBackend,  # noqa: F811 (the fixture imported above)
    inherited_address_space_limit: None,
) -> None:
    backend.gpu_capacity, backend._gpu_pool = 1, GpuPool(["0"])  # a device id; no CUDA runs
    outcome, text = run(backend, make_job(tmp_path, SCRIPT, label="gpu", gpus=1))
    charged(outcome)
    assert outcome.exit_code == 0 and "done" in text
    line = next(x for x in text.splitlines() if x.startswith("Max address space"))
    assert line.split()[3] == "unlimited", line

    outcome, text = run(backend, make_job(tmp_path, SCRIPT, label="cpu"))
    charged(outcome)
    line = next(x for x in text.splitlines() if x.startswith("Max address space"))
    assert line.split()[3] == str(SOFT_AS), line  # the CPU job kept it: the lift is per kind
