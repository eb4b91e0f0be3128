"""An in-process executor for the env session tests (no subprocess, no torch).

It behaves like `sandbox.Executor` where a session can tell: it writes ``metrics.json`` and a
log into ``out_dir/<label>/seed_<seed>/``, reuses a pair whose ``metrics.json`` already exists
(resume, final evaluation), and returns a `TestResult`. The metric values are a deterministic
function of the submitted files and the seed, so different code gives different numbers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from sandbox import (
    ProgressCallback,
    ProgressEvent,
    SeedResult,
    TestRequest,
    TestResult,
)

Outcome = Literal["ok", "failed", "infra_error", "raise"]


def fake_metrics(files: dict[str, str], names: list[str], seed: int) -> dict[str, float]:
    """Numbers that depend on the code and the seed, like real ones would."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).digest()
    base = digest[0] / 255 + seed % 7 / 100
    return {name: round(3.0 + i + base, 4) for i, name in enumerate(names)}


class InProcessExecutor:
    """Runs nothing; writes fake results. `outcomes` are consumed one per `run` call that runs
    test jobs; a call with only preflight jobs gets `preflight` ("ok" or "failed") instead."""

    def __init__(
        self,
        outcomes: Iterable[Outcome] = (),
        *,
        delay_s: float = 0.0,
        preflight: Literal["ok", "failed"] = "ok",
    ) -> None:
        self.outcomes = list(outcomes)
        self.delay_s = delay_s
        self.preflight = preflight
        self.requests: list[TestRequest] = []  # the calls that ran test jobs
        self.preflight_requests: list[TestRequest] = []
        self.pairs_run: list[tuple[str, str, int]] = []

    def run(self, request: TestRequest, progress: ProgressCallback | None = None) -> TestResult:
        if all(job.stage == "preflight" for job in request.jobs):
            self.preflight_requests.append(request)
            return self._preflight(request)
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "raise":
            raise OSError("disk full (simulated)")
        if outcome == "infra_error":
            (request.out_dir).mkdir(parents=True, exist_ok=True)
            (request.out_dir / "infra.txt").write_text("node lost\n")
            return TestResult(status="infra_error", reason="node lost (simulated)")
        results: list[SeedResult] = []
        for job in request.jobs:
            for seed in request.seeds:
                out = request.out_dir / job.label / f"seed_{seed}"
                done_file = out / "metrics.json"
                if done_file.exists():
                    saved = json.loads(done_file.read_text())
                    results.append(
                        SeedResult(
                            setting=job.label,
                            seed=seed,
                            status="ok",
                            metrics=saved["metrics"],
                            elapsed_s=1.0,
                            cached=True,
                            log_path=str(out / "log.txt"),
                        )
                    )
                    continue
                out.mkdir(parents=True, exist_ok=True)
                if progress is not None:
                    progress(ProgressEvent(setting=job.label, seed=seed, step=0, max_steps=1))
                time.sleep(self.delay_s)
                self.pairs_run.append((request.test_id, job.label, seed))
                if outcome == "failed" and job.show_log:
                    (out / "log.txt").write_text("Traceback: boom\n")
                    results.append(
                        SeedResult(
                            setting=job.label,
                            seed=seed,
                            status="failed",
                            reason="exit code 1: boom",
                            log_tail="Traceback: boom",
                            log_path=str(out / "log.txt"),
                        )
                    )
                    continue
                if outcome == "failed":
                    results.append(
                        SeedResult(
                            setting=job.label,
                            seed=seed,
                            status="failed",
                            reason="needs train-tiny, which did not succeed: exit code 1: boom",
                        )
                    )
                    continue
                metrics = fake_metrics(request.files, job.metrics, seed)
                (out / "log.txt").write_text(
                    f"TRAIN_METRICS: step=80, train_loss=3.5, val_loss={metrics.get('val_loss', 0)}\n"
                )
                done_file.write_text(json.dumps({"metrics": metrics}))
                results.append(
                    SeedResult(
                        setting=job.label,
                        seed=seed,
                        status="ok",
                        metrics=metrics,
                        elapsed_s=1.0,
                        log_path=str(out / "log.txt"),
                    )
                )
        status = "failed" if outcome == "failed" else "ok"
        return TestResult(
            status=status,
            reason="training crashed" if status == "failed" else None,
            results=results,
            elapsed_s=1.0,
        )

    def _preflight(self, request: TestRequest) -> TestResult:
        if self.preflight == "ok":  # finished pairs, reused by the test as the executor does
            for job in request.jobs:
                for seed in request.seeds:
                    out = request.out_dir / job.label / f"seed_{seed}"
                    out.mkdir(parents=True, exist_ok=True)
                    (out / "metrics.json").write_text(json.dumps({"metrics": {}}))
        results = [
            SeedResult(
                setting=job.label,
                seed=seed,
                status=self.preflight,
                reason=(
                    "exit code 1: NameError: name 'mathh' is not defined"
                    if self.preflight == "failed"
                    else None
                ),
            )
            for job in request.jobs
            for seed in request.seeds
        ]
        return TestResult(status=self.preflight, results=results, elapsed_s=0.5)


# ── a small task folder of our own, so these tests need neither torch nor the real codebase ──

MINI_TASK_ID = "mini-lr"

MINI_CODE = '''"""A miniature training file with the two regions of the lr-schedule task."""

import math

LEARNING_RATE = 3e-4  # frozen


# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    ratio = min(1.0, (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)
# ── EDITABLE REGION END: get_lr ──


def train():
    return get_lr(0, 10, 100, LEARNING_RATE, 3e-5)


# ── EDITABLE REGION START: config_overrides ──
CONFIG_OVERRIDES = {}
# ── EDITABLE REGION END: config_overrides ──
'''

MINI_YAML = """
id: mini-lr
title: "Mini: learning-rate schedule"
description: description.md
codebase: minicode
package: nanoGPT
editable_files:
  - path: custom_pretrain.py
    regions: [get_lr, config_overrides]
read_only_files: []
allow_create: false
invariants:
  - kind: signature
    file: custom_pretrain.py
    function: get_lr
    params: [it, warmup_iters, lr_decay_iters, learning_rate, min_lr]
code_policy:
  allowed_imports: [math]
data_regions:
  config_overrides: {variable: CONFIG_OVERRIDES, env: PB_CONFIG_OVERRIDES}
profiles:
  tiny:
    jobs:
      - {label: schedule, script: scripts/schedule.sh, stage: preflight, code: edited, time_limit: "0:01:00"}
      - {label: train-tiny, script: scripts/train_tiny.sh, inputs: [train_data], needs: [schedule], show_log: true, time_limit: "0:10:00"}
      - {label: gpt-tiny, script: scripts/eval_tiny.sh, needs: [train-tiny], metrics: [val_loss, wikitext2_ppl], time_limit: "0:10:00"}
      - {label: lm-eval-tiny, script: scripts/lm_eval_tiny.sh, needs: [train-tiny], metrics: [arc_easy, piqa], hidden: true, time_limit: "0:10:00"}
    seeds: {test: [42], final: [42, 43]}
    recipe: {model: "4L/4H/128D", max_iters: 80, hardware: "CPU"}
metrics:
  - {name: val_loss, direction: lower, primary: true, bound: 0, weight: 2}
  - {name: wikitext2_ppl, direction: lower, bound: 1}
  - {name: arc_easy, direction: higher, bound: 100}
  - {name: piqa, direction: higher, bound: 100, hidden: true}
budgets: {max_steps: 20, max_tests: 3}
seeds: {test: [42], final: [42, 43, 44]}
baselines: [cosine, flat]
reference_baseline: cosine
"""

MINI_DESCRIPTION = """# Mini task

Change `get_lr` in `{file}` ({lines[get_lr]}) and `CONFIG_OVERRIDES`
({lines[config_overrides]}). Model: {recipe[model]}, {recipe[max_iters]} iterations,
profile `{profile}`, hardware {hardware}.

{jobs_table}

You have {max_steps} steps and {max_tests} tests.
"""

MINI_BASELINES = {
    "cosine": '"""cosine — the unmodified default.\n\nReference: Loshchilov & Hutter (2017).\n"""\n',
    "flat": (
        '"""flat — a constant learning rate with a lower floor.\n\nlr(it) = learning_rate\n"""\n\n'
        "# ── EDITABLE REGION START: get_lr ──\n"
        "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return learning_rate\n"
        "# ── EDITABLE REGION END: get_lr ──\n"
        "\n"
        "# ── EDITABLE REGION START: config_overrides ──\n"
        'CONFIG_OVERRIDES = {"min_lr": 1e-5}\n'
        "# ── EDITABLE REGION END: config_overrides ──\n"
    ),
}


def write_mini_task(root: Path) -> tuple[Path, Path]:
    """Write the mini task under ``root``; returns (task folder, baselines root)."""
    tasks = root / "tasks"
    code = tasks / "codebases" / "minicode"
    code.mkdir(parents=True)
    (code / "custom_pretrain.py").write_text(MINI_CODE)
    (code / "scripts").mkdir()
    for script in ("schedule.sh", "train_tiny.sh", "eval_tiny.sh", "lm_eval_tiny.sh"):
        (code / "scripts" / script).write_text("#!/bin/bash\nexit 1  # never run by these tests\n")
    task_dir = tasks / MINI_TASK_ID
    task_dir.mkdir()
    (task_dir / "task.yaml").write_text(MINI_YAML)
    (task_dir / "description.md").write_text(MINI_DESCRIPTION)
    baselines = root / "baselines"
    (baselines / MINI_TASK_ID).mkdir(parents=True)
    for name, text in MINI_BASELINES.items():
        (baselines / MINI_TASK_ID / f"{name}.py").write_text(text)
    return task_dir, baselines
