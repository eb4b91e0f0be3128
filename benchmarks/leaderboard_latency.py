"""Task-page latency of the leaderboard with many recorded results.

Fills a fresh SQLite store with ``--results`` per-seed results for one task (baselines plus
agent runs shaped like the 345M task: 3 tests × 2 settings, final 2 settings × 3 seeds = 12
results per agent run), serves it with uvicorn on loopback, and times ``GET /tasks/<id>`` over
HTTP (the full server path: revision check, query, scoring, template). Prints the median and
p90 of warm requests (the scored group is cached until a run of the task is recorded) and the
median of cold ones (each right after a write).

    python benchmarks/leaderboard_latency.py            # 10,000 results, 50 requests
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leaderboard import FinalRecord, RunRecord, Store, TestRecord, create_app
from tests._fixtures.leaderboard import free_port, specs_345m

TASK = "llm-pretrain-lr-schedule"
BASE = {
    "val_loss": 2.25,
    "wikitext2_ppl": 42.0,
    "lambada_ppl": 65.5,
    "arc_easy": 56.5,
    "hellaswag": 34.1,
    "piqa": 64.0,
    "winogrande": 52.0,
}
SPREAD = {
    "val_loss": 0.01,
    "wikitext2_ppl": 0.5,
    "lambada_ppl": 0.8,
    "arc_easy": 0.8,
    "hellaswag": 0.3,
    "piqa": 0.5,
    "winogrande": 0.8,
}


def _rows(rng: random.Random, number: int, seeds: list[int], shift: float) -> list[TestRecord]:
    rows = []
    for seed in seeds:
        for setting, names in (
            ("gpt-345m", ("val_loss", "wikitext2_ppl", "lambada_ppl")),
            ("lm-eval-345m", ("arc_easy", "hellaswag", "piqa", "winogrande")),
        ):
            metrics = {
                f"{n}_{setting}": BASE[n] + SPREAD[n] * (shift + rng.gauss(0, 0.3)) for n in names
            }
            curve = (
                [
                    {"step": float(s), "lr": 3e-4, "train_loss": 3.0 - s / 20000}
                    for s in range(0, 12001, 1000)
                ]
                if setting == "gpt-345m"
                else []
            )
            rows.append(
                TestRecord(
                    number=number,
                    setting=setting,
                    seed=seed,
                    status="ok",
                    metrics=metrics,
                    elapsed_s=20000.0,
                    curve=curve,
                )
            )
    return rows


def build_runs(n_results: int, seed: int = 0) -> list[RunRecord]:
    """Baselines, then agent runs until ``n_results`` results are reached."""
    rng = random.Random(seed)
    specs = specs_345m()
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    runs: list[RunRecord] = []
    total = 0
    i = 0
    while total < n_results:
        kind = "baseline" if i < 4 else ("agent" if i % 2 else "vanilla")
        method = ["cosine", "trapezoidal", "wsd", "wsd_sqrt"][i] if i < 4 else f"model-{i % 40}"
        shift = rng.gauss(0, 1)
        tests = [r for n in (1, 2, 3) for r in _rows(rng, n, [42], shift)]
        final_rows = _rows(rng, 3, [42, 43, 44], shift)
        runs.append(
            RunRecord(
                run_id=f"bench-{i:05d}",
                task_id=TASK,
                task_title="LLM pretraining: learning-rate schedule",
                agent=f"baseline:{method}" if kind == "baseline" else f"openai:{method}",
                model=None if kind == "baseline" else method,
                type=kind,
                method=method,  # type: ignore[arg-type]
                reference=method == "cosine",
                profile="full",
                max_steps=20,
                max_tests=3,
                codebase_version="v1",
                dataset_source="fineweb-10B",
                status="finished",
                started_at=t0 + timedelta(minutes=i),
                tests=tests,
                final=FinalRecord(test_number=3, status="ok", per_seed=final_rows),
                metric_specs=specs,
            )
        )
        total += len(tests) + len(final_rows)
        i += 1
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: a temp dir)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    db = args.db or Path(tmp.name) / "bench.db"
    store = Store(f"sqlite:///{db}")
    t = time.perf_counter()
    runs = build_runs(args.results)
    for run in runs:
        store.record(run)
    fill_s = time.perf_counter() - t
    n_results = store.count_results(TASK)
    print(f"recorded {len(runs)} runs / {n_results} results in {fill_s:.1f} s")

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/tasks/{TASK}"
    with httpx.Client(timeout=60) as client:
        # Cold: right after a write the page re-reads and re-scores the whole group.
        cold = []
        for k in range(5):
            store.record(runs[-1].model_copy(update={"git_commit": f"cold-{k}"}))
            t = time.perf_counter()
            first = client.get(url)
            cold.append((time.perf_counter() - t) * 1000)
            first.raise_for_status()
        times = []
        for _ in range(args.requests):
            t = time.perf_counter()
            r = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
    server.should_exit = True
    thread.join(timeout=10)
    store.close()
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))]
    print(
        f"task page with {n_results} results ({len(runs)} runs, {len(first.content) // 1024} KiB): "
        f"median {statistics.median(times):.1f} ms, p90 {p90:.1f} ms, "
        f"min {times[0]:.1f} ms over {len(times)} requests (warm: no write in between)"
    )
    print(
        f"cold (first request after a write, re-scoring everything): median "
        f"{statistics.median(cold):.1f} ms over {len(cold)} requests"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
