"""Start-up overhead of the local sandbox per job, against a plain subprocess.

    python benchmarks/sandbox_overhead.py            # 30 runs of each
    python benchmarks/sandbox_overhead.py -n 100

Each run starts a job whose script is ``true`` and waits for it, so the time is all overhead:
- ``plain``: ``bash run.sh`` as a subprocess (the floor);
- ``sandbox``: ``LocalBackend.run_job`` with the real nanoGPT codebase: work dir and codebase
  copy, cgroups made and joined, bwrap with the full view, setpriv, status pipe, log, teardown;
- ``sandbox, 2 workers``: the same with two workers started first and killed after.
Prints the median and 90th percentile of each, and the machine's load. Target: ≤ 0.5 s median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODEBASE_DIR = REPO / "tasks" / "codebases" / "nanogpt"
sys.path.insert(0, str(REPO))


def timed(fn: object, n: int) -> list[float]:
    """Wall seconds of ``n`` calls of ``fn`` (after one warm-up call)."""
    fn()  # type: ignore[operator]
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs of each (default 30)")
    args = parser.parse_args()

    from sandbox import Job, LocalBackend, Workers

    work = Path(tempfile.mkdtemp(prefix="pb-overhead-"))
    code = work / "code"
    code.mkdir()
    (code / "run.sh").write_text("true\n")
    backend = LocalBackend()
    if backend.describe()["weak"] != "no":
        print(f"warning: weakened sandbox here: {backend.describe()['weak']}")
    counter = iter(range(10**9))

    def plain() -> None:
        subprocess.run(["bash", "run.sh"], cwd=code, check=True)

    def sandboxed(workers: Workers | None = None) -> None:
        i = next(counter)
        outcome = backend.run_job(
            Job(
                label="overhead",
                seed=i,
                script="run.sh",
                codebase_dir=CODEBASE_DIR,
                files={"run.sh": "true\n"},
                out_dir=work / "out" / str(i),
                log_path=work / "logs" / f"{i}.log",
                time_limit_s=60,
                workers=workers,
            )
        )
        assert outcome.exit_code == 0 and outcome.infra_error is None, outcome

    load_before = os.getloadavg()
    results = {
        "plain subprocess": timed(plain, args.n),
        "sandbox (bwrap + cgroups + copy)": timed(sandboxed, args.n),
        "sandbox, 2 workers": timed(
            lambda: sandboxed(Workers(script="run.sh", count=2)), max(5, args.n // 3)
        ),
    }
    load_after = os.getloadavg()
    cpus = len(os.sched_getaffinity(0))
    print(
        f"machine: {cpus} CPUs, load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; {backend.describe()['isolation']}, "
        f"memory {backend.describe()['memory'].split(':')[0]}"
    )
    print(f"{'':36} {'median':>9} {'p90':>9}  runs")
    plain_median = statistics.median(results["plain subprocess"])
    for name, times in results.items():
        times.sort()
        p90 = times[int(0.9 * (len(times) - 1))]
        print(f"{name:36} {statistics.median(times):8.3f}s {p90:8.3f}s  {len(times)}")
    overhead = statistics.median(results["sandbox (bwrap + cgroups + copy)"]) - plain_median
    print(f"overhead per job (median, over plain): {overhead:.3f} s (target ≤ 0.5 s)")
    backend.close()
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0 if overhead <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
