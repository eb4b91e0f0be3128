"""Does a warm compile cache make torch.compile pay for a training job? Eager vs cold vs warm.

    python benchmarks/compile_cache.py                      # tiny profile, one round
    python benchmarks/compile_cache.py --rounds 2 --json out.json

Runs the real training job (``scripts/train_<profile>.sh``, the same script a sandboxed job
runs) three ways, round after round, in the order eager, cold, warm:

- ``eager``: ``PB_COMPILE=0``.
- ``cold``: ``PB_COMPILE=1`` with an empty working cache; what it compiled is kept (as the
  supervisor publishes a baseline job's) and becomes the cache.
- ``warm``: ``PB_COMPILE=1`` with that cache granted the way the sandbox grants it: a directory
  in ``PB_COMPILE_CACHE_DIR`` that the script copies into a fresh working cache at the same
  path the cold run compiled in (``TORCHINDUCTOR_CACHE_DIR``) before it trains (the copy is part
  of the time).

Per run: the job's wall time end to end, the first iteration (which includes compiling), the
median of the other iterations, and from these the per-step speed-up over eager. Run it on an
otherwise idle machine; it prints the load average before and after, to be quoted with it.
Needs the prepared training data (``runner setup``; ``--data`` to point elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODEBASE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "codebases" / "nanogpt"
SCRIPTS = {"tiny": "train_tiny.sh", "small": "train_124m.sh", "full": "train_345m.sh"}
MODES = ("eager", "cold", "warm")


def default_data_dir() -> Path:
    home = os.environ.get("PRETRAINBENCH_HOME") or str(Path.home() / ".cache" / "pretrainbench")
    return Path(home) / "data" / "offline"


def run_job(
    profile: str, data_dir: Path, work: Path, mode: str, cache: Path, max_iters: int | None
) -> dict[str, float | str]:
    """One training job in ``mode``; its wall time and iteration times from ``curve.jsonl``."""
    out = work / f"out-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    inductor = work / "inductor"  # the job's own working cache: one path, fresh every run
    shutil.rmtree(inductor, ignore_errors=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "PYTHON": sys.executable,
        "PB_PROFILE": profile,
        "PB_DATA_DIR": str(data_dir),
        "PB_OUT_DIR": str(out),
        "PB_DEVICE": "cpu" if profile == "tiny" else "",
        "PB_COMPILE": "0" if mode == "eager" else "1",
        "TORCHINDUCTOR_CACHE_DIR": str(inductor),
        "TRITON_CACHE_DIR": str(inductor / "triton"),
    }
    if max_iters:
        env["PB_MAX_ITERS"] = str(max_iters)
    if mode == "warm":
        env["PB_COMPILE_CACHE_DIR"] = str(cache)
    script = CODEBASE_DIR / "scripts" / SCRIPTS[profile]
    start, cpu_start = time.monotonic(), _children_cpu_s()
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    wall, cpu = time.monotonic() - start, _children_cpu_s() - cpu_start
    if mode == "cold":  # kept, as the supervisor publishes a trusted job's compiled files
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(inductor, cache, ignore=shutil.ignore_patterns("locks"))
    if proc.returncode != 0:
        raise SystemExit(
            f"{mode} run failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    rows = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    steps = [r["dt_ms"] / 1000 for r in rows if "dt_ms" in r]
    return {
        "mode": mode,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "first_iter_s": round(steps[0], 2),
        "median_iter_ms": round(statistics.median(steps[1:]) * 1000, 1),
        "iters": len(steps),
    }


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of every finished child process so far: a cost that a
    loaded machine inflates far less than the wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny", choices=sorted(SCRIPTS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-iters", type=int, default=None, help="default: the profile's")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    data_dir = args.data or default_data_dir()
    if not (data_dir / "meta.json").is_file():
        raise SystemExit(f"no prepared training data in {data_dir} (run `runner setup`)")
    load_before = os.getloadavg()
    runs: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory(prefix="pb-compile-bench-") as tmp:
        work = Path(tmp)
        for round_no in range(args.rounds):
            for mode in MODES:
                row = run_job(args.profile, data_dir, work, mode, work / "cache", args.max_iters)
                row["round"] = round_no + 1
                runs.append(row)
                print(json.dumps(row), flush=True)
        cache_mb = sum(f.stat().st_size for f in (work / "cache").rglob("*") if f.is_file()) / 2**20
    load_after = os.getloadavg()

    def median(mode: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in runs if r["mode"] == mode)

    eager_step = median("eager", "median_iter_ms")
    print(
        f"\n{args.profile}: {args.rounds} round(s), cache {cache_mb:.1f} MiB, "
        f"load {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"{'mode':<6} {'job wall s':>10} {'job cpu s':>9} {'1st iter s':>10} {'iter ms':>8} {'step speed-up':>13}"
    )
    for mode in MODES:
        step = median(mode, "median_iter_ms")
        print(
            f"{mode:<6} {median(mode, 'wall_s'):>10.1f} {median(mode, 'cpu_s'):>9.1f} "
            f"{median(mode, 'first_iter_s'):>10.1f} "
            f"{step:>8.1f} {eager_step / step:>12.2f}x"
        )
    # the warm start-up (cache copy, tracing, loading) against the time each compiled step saves
    overhead = median("warm", "first_iter_s") - median("eager", "first_iter_s")
    saving = (eager_step - median("warm", "median_iter_ms")) / 1000
    if saving > 0:
        print(
            f"warm: the first iteration costs {overhead:.1f} s more than eager's, each later one "
            f"saves {saving * 1000:.0f} ms: compile pays after {max(0.0, overhead) / saving:.0f} "
            "iterations"
        )
    else:
        print("warm: compiled iterations are not faster than eager ones here")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "profile": args.profile,
                    "load": [load_before[0], load_after[0]],
                    "cache_mib": round(cache_mb, 1),
                    "runs": runs,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
