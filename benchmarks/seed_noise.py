"""How much of a ranking is seed noise: every baseline of the tasks over several seeds.

Runs (or reuses, from the result cache) each task's baselines with ``--seeds`` as test seeds
through the ordinary ``runner run`` path — every job sandboxed, the metrics the trusted
evaluator wrote — then reads the per-seed metrics back from the store and prints, per task and
metric:

* each baseline's mean and seed standard deviation;
* the pooled within-baseline seed standard deviation (what the leaderboard's noise band is
  built from: best baseline ± 2 × pooled std);
* each baseline's gap to the best, Welch's p over the seeds, and whether the gap is
  distinguishable (p < 0.05 and outside the noise band);
* the same comparison paired by seed: seed s of every baseline starts from the same
  initialisation and reads the same batches in the same order, so the per-seed differences
  carry much less noise than two independent samples (a paired t-test over the seeds);
* the gap the seeds could resolve: the smallest difference a two-sided test at α = 0.05 finds
  with 80 % power, 2.8 × σ × √(2/n), and the seeds a given gap needs, 15.7 σ² / gap².

    python benchmarks/seed_noise.py --profile tiny --seeds 42,43,44,45,46 \\
        --db /tmp/validity.db --run-dir /tmp/validity-runs --json docs/validity_tiny.json

Without ``--no-run`` it calls ``runner run`` first (cached pairs cost nothing); the markdown
tables go to stdout and ``--json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from leaderboard import Store  # noqa: E402
from leaderboard._stats import _t_sf as t_sf  # noqa: E402
from leaderboard._stats import seed_stats, welch_t_test  # noqa: E402

TASKS = ("llm-pretrain-lr-schedule", "llm-pretrain-normalization")
POWER_FACTOR = 2.8  # z_{0.975} + z_{0.80} = 1.96 + 0.84: 80 % power at alpha 0.05, two-sided


def run_baselines(task: str, args: argparse.Namespace) -> None:
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "--task",
        task,
        "--profile",
        args.profile,
        "--seeds",
        args.seeds,
        "--db",
        args.db,
        "--run-dir",
        args.run_dir,
        "--quiet",
    ]
    print(f"$ {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def per_seed_values(store: Store, task: str, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """{metric: {baseline: [value per seed]}} from the latest finished baseline run of each
    method whose test covered all ``seeds``."""
    found: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for run in sorted(store.iter_runs(task), key=lambda r: r.started_at):
        if run.type != "baseline":
            continue
        values: dict[str, dict[int, float]] = defaultdict(dict)
        for rec in run.result_rows():  # the final evaluation: every job, hidden ones too
            if rec.status == "ok" and rec.seed in seeds:
                for name, value in rec.metrics.items():
                    values[name][rec.seed] = value
        for name, by_seed in values.items():
            if set(by_seed) == set(seeds):
                found[name][run.method] = [by_seed[s] for s in seeds]
    return found


def analyse(found: dict[str, dict[str, list[float]]], directions: dict[str, str]) -> list[dict]:
    rows = []
    for metric, by_base in found.items():
        lower = directions.get(metric, "lower") == "lower"
        n = min(len(v) for v in by_base.values())
        ss = sum(sum((x - sum(v) / len(v)) ** 2 for x in v) for v in by_base.values())
        dof = sum(len(v) - 1 for v in by_base.values())
        pooled = math.sqrt(ss / dof) if dof else float("nan")
        means = {b: sum(v) / len(v) for b, v in by_base.items()}
        best = (min if lower else max)(means, key=means.__getitem__)
        band = 2.0 * pooled
        baselines = []
        for base, vals in sorted(by_base.items(), key=lambda kv: means[kv[0]], reverse=not lower):
            st = seed_stats(vals)
            gap = means[base] - means[best]
            welch = welch_t_test(vals, by_base[best]) if base != best else None
            p = welch.p_value if welch else None
            diffs = [a - b for a, b in zip(vals, by_base[best], strict=True)]
            dst = seed_stats(diffs) if base != best else None
            paired_p = None
            if dst is not None and dst.std is not None:
                if dst.std == 0:
                    paired_p = 1.0 if dst.mean == 0 else 0.0
                else:
                    t = dst.mean / (dst.std / math.sqrt(dst.n))
                    paired_p = 2.0 * t_sf(abs(t), dst.n - 1)
            baselines.append(
                {
                    "baseline": base,
                    "values": vals,
                    "mean": st.mean,
                    "std": st.std,
                    "ci95": [st.ci_low, st.ci_high],
                    "gap_to_best": gap,
                    "welch_p": p,
                    "outside_band": abs(gap) > band,
                    "paired_diff_std": dst.std if dst else None,
                    "paired_p": paired_p,
                    "paired_distinguishable": paired_p is not None and paired_p < 0.05,
                    "distinguishable": p is not None and p < 0.05 and abs(gap) > band,
                    "seeds_needed": (
                        math.ceil(2 * POWER_FACTOR**2 * pooled**2 / gap**2)
                        if abs(gap) > 1e-9 * max(1.0, abs(means[best]))
                        else None  # a gap below float noise: no number of seeds resolves it
                    ),
                }
            )
        gaps = sorted(abs(b["gap_to_best"]) for b in baselines if b["baseline"] != best)
        rows.append(
            {
                "metric": metric,
                "direction": "lower" if lower else "higher",
                "seeds": n,
                "pooled_std": pooled,
                "noise_band": band,
                "best": best,
                "resolvable_gap": POWER_FACTOR * pooled * math.sqrt(2.0 / n),
                "median_gap": gaps[len(gaps) // 2] if gaps else None,
                "baselines": baselines,
            }
        )
    return rows


def markdown(task: str, rows: list[dict]) -> str:
    out = [
        f"### {task}",
        "",
        "| metric | seeds | pooled seed σ | noise band (±2σ) | resolvable gap (80 % power) | baseline | mean ± σ | gap to best | Welch p | distinguishable | seeds for this gap | paired σ of the gap | paired p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x: float | None, d: int = 4) -> str:
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}g}"

    for r in rows:
        for i, b in enumerate(r["baselines"]):
            head = (
                [
                    r["metric"],
                    str(r["seeds"]),
                    f(r["pooled_std"]),
                    f(r["noise_band"]),
                    f(r["resolvable_gap"]),
                ]
                if i == 0
                else ["", "", "", "", ""]
            )
            best = b["baseline"] == r["best"]
            out.append(
                "| "
                + " | ".join(
                    [
                        *head,
                        b["baseline"] + (" (best)" if best else ""),
                        f"{f(b['mean'], 5)} ± {f(b['std'], 2)}",
                        "—" if best else f"{b['gap_to_best']:+.3g}",
                        f(b["welch_p"], 2),
                        "—" if best else ("yes" if b["distinguishable"] else "no"),
                        "—" if best or b["seeds_needed"] is None else str(b["seeds_needed"]),
                        f(b["paired_diff_std"], 2),
                        f(b["paired_p"], 2),
                    ]
                )
                + " |"
            )
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--seeds", default="42,43,44,45,46")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--db", default="/tmp/pretrainbench-validity.db")
    parser.add_argument("--run-dir", default="/tmp/pretrainbench-validity-runs")
    parser.add_argument("--no-run", action="store_true", help="only read the store")
    parser.add_argument("--json", dest="json_out", default=None, help="write every number here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {"profile": args.profile, "seeds": seeds, "tasks": {}}
    for task in args.tasks:
        if not args.no_run:
            run_baselines(task, args)
        store = Store(args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}")
        try:
            directions = {}
            for run in store.iter_runs(task):
                directions.update({m.name: m.direction for m in run.metric_specs})
            rows = analyse(per_seed_values(store, task, seeds), directions)
        finally:
            store.close()
        order = list(directions)
        rows.sort(key=lambda r: order.index(r["metric"]) if r["metric"] in order else 99)
        report["tasks"][task] = rows
        print(markdown(task, rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
