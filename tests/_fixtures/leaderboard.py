"""Shared pytest fixtures of the leaderboard area.

``realistic_runs()`` builds a run set shaped like the public MLS-Bench task pages (seeds 000 and
003): the 345M numbers of the baselines and of five agents (vanilla + submitted), spread over
three final seeds with seed noise of the size the reference reports, plus the edge cases a
page must survive: a diverged (NaN) run, an agent that never submitted, an infrastructure
failure of a final evaluation, a run that failed before any test, a tiny-profile group, and a
transcript full of HTML and ``<script>``. ``agent_transcript_run()`` is an agent run with the
transcript events the runner writes.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._fixtures.worlds import NANOGPT_GET_LR

if TYPE_CHECKING:  # imported lazily: a broken leaderboard must not break other areas' tests
    from leaderboard import MetricInfo, RunRecord, SeedRecord, Store, SweepRecord
    from leaderboard._records import SweepValue

TRAIN, LM_EVAL = "gpt-345m", "lm-eval-345m"
SEEDS = [42, 43, 44]
MAX_ITERS = 12030
XSS_MARKER = "<script>window.__pwned = 1; document.title = 'pwned'</script>"
AGENT_RUN = "llm-pretrain-lr-schedule.claude-opus.agent"
NO_RESULT_RUN = "llm-pretrain-lr-schedule.kimi-k3.agent"
NO_RESULT_REASON = (
    "the model endpoint http://127.0.0.1:9/v1 did not answer: APIConnectionError after 3 "
    "attempts in 30 s"
)


def specs_345m() -> list[MetricInfo]:
    """The metric specs of the 345M tasks (as in task.yaml)."""
    from leaderboard import MetricInfo

    return [
        MetricInfo(
            name="val_loss", setting=TRAIN, direction="lower", bound=0, weight=2, primary=True
        ),
        MetricInfo(name="wikitext2_ppl", setting=TRAIN, direction="lower", bound=1),
        MetricInfo(name="lambada_ppl", setting=TRAIN, direction="lower", bound=1),
        MetricInfo(name="arc_easy", setting=LM_EVAL, direction="higher", bound=100),
        MetricInfo(name="hellaswag", setting=LM_EVAL, direction="higher", bound=100),
        MetricInfo(name="piqa", setting=LM_EVAL, direction="higher", bound=100, hidden=True),
        MetricInfo(name="winogrande", setting=LM_EVAL, direction="higher", bound=100, hidden=True),
    ]


# val_loss, wikitext2_ppl, lambada_ppl, arc_easy, hellaswag, piqa, winogrande (seed-42 table
# values of the task pages; piqa/winogrande of agents and the reference rows are made up).
LR_BASELINES = {
    "cosine": (2.2535, 42.52, 66.31, 56.10, 34.02, 63.71, 51.93),
    "trapezoidal": (2.2512, 42.31, 65.96, 55.77, 34.09, 63.98, 52.09),
    "wsd": (2.2474, 41.58, 64.62, 58.25, 34.41, 64.15, 51.62),
    "wsd_sqrt": (2.2451, 41.89, 64.99, 57.28, 34.37, 64.74, 52.57),
}
LR_AGENTS = {  # model: (vanilla, agent)
    "claude-opus-4.6": (
        (2.269, 42.47, 66.62, 55.22, 33.40, 63.2, 51.1),
        (2.257, 42.44, 66.52, 57.03, 34.14, 64.0, 52.0),
    ),
    "deepseek-reasoner": (
        (2.215, 39.52, 61.54, 57.66, 35.22, 65.1, 53.0),
        (2.278, 43.45, 67.36, 55.77, 33.29, 63.0, 51.0),
    ),
    "gemini-3.1-pro-preview": (
        (2.260, 42.41, 66.62, 56.27, 34.07, 63.9, 51.8),
        (2.243, 41.60, 64.22, 56.99, 34.17, 64.5, 52.3),
    ),
    "gpt-5.4": (
        (2.257, 42.45, 66.09, 56.48, 34.18, 63.8, 51.7),
        (2.254, 41.82, 66.14, 55.56, 34.03, 63.9, 51.9),
    ),
    "qwen3.6-plus": (
        (2.254, 41.99, 66.88, 56.61, 34.05, 64.1, 52.2),
        (2.247, 41.95, 65.22, 55.77, 34.32, 64.2, 52.1),
    ),
}
NORM_BASELINES = {
    "layernorm": (2.3050, 45.40, 69.80, 54.60, 33.10, 63.0, 51.5),
    "rmsnorm": (2.2950, 44.75, 68.29, 54.97, 33.25, 63.4, 51.9),
    "rmsnorm_parallel": (2.3112, 45.98, 70.96, 54.76, 32.93, 62.9, 51.2),
    "rmsnorm_post": (2.3104, 46.80, 72.08, 54.76, 33.03, 62.7, 51.0),
}
NORM_AGENTS = {
    "claude-opus-4.6": (
        (2.308, 45.78, 70.82, 55.30, 32.79, 62.8, 51.3),
        (2.308, 45.78, 70.82, 55.30, 32.79, 62.8, 51.3),
    ),
    "deepseek-reasoner": (
        (2.259, 41.78, 64.48, 56.86, 34.40, 64.6, 52.6),
        (2.259, 41.78, 64.48, 56.86, 34.40, 64.6, 52.6),
    ),
    "gemini-3.1-pro-preview": (
        (2.286, 44.38, 67.87, 54.29, 33.23, 63.1, 51.6),
        (2.280, 44.12, 67.07, 56.19, 33.79, 63.6, 51.8),
    ),
    "gpt-5.4": (None, (2.322, 46.00, 70.25, 53.49, 32.82, 62.5, 51.0)),  # vanilla diverged
    "qwen3.6-plus": (
        (2.305, 45.91, 70.51, 54.46, 33.00, 62.9, 51.4),
        (2.296, 45.47, 69.11, 55.18, 33.78, 63.4, 51.7),
    ),
}
SEED_STD = (0.0015, 0.12, 0.25, 0.45, 0.12, 0.35, 0.55)  # per-metric seed noise
TASKS = {
    "llm-pretrain-lr-schedule": (
        "LLM pretraining: learning-rate schedule",
        "Design an improved learning rate schedule for GPT-2 language model pretraining. Your "
        "modifications should reduce validation loss compared to the standard cosine annealing "
        "schedule with linear warmup.\n\nYou may edit get_lr (and CONFIG_OVERRIDES) in "
        "nanoGPT/custom_pretrain.py. GPT-2 Medium (24L/16H/1024D), FineWeb 10B, 12030 "
        "iterations, 2-GPU DDP.",
        LR_BASELINES,
        LR_AGENTS,
        "cosine",
        "get_lr",
    ),
    "llm-pretrain-normalization": (
        "LLM pretraining: normalization and block architecture",
        "Design improved normalization and/or transformer block architecture for GPT-2 language "
        "model pretraining. You may edit the LayerNorm and Block classes in "
        "nanoGPT/custom_pretrain.py.",
        NORM_BASELINES,
        NORM_AGENTS,
        "layernorm",
        "block",
    ),
}


def _lr_at(schedule: str, it: int) -> float:
    lr, min_lr, warmup = 3e-4, 3e-5, int(0.04 * MAX_ITERS)
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    frac = (it - warmup) / (MAX_ITERS - warmup)
    if schedule in ("wsd", "wsd_sqrt", "agent"):
        if frac < 0.8:
            return lr
        d = (frac - 0.8) / 0.2
        shape = math.sqrt(d) if schedule == "wsd_sqrt" else d
        return lr - (lr - min_lr) * shape
    if schedule == "trapezoidal":
        return lr if frac < 0.7 else lr - (lr - min_lr) * (frac - 0.7) / 0.3
    return min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (lr - min_lr)


def _curve(
    final_val: float, schedule: str, rng: random.Random, nan_after: int | None = None
) -> list[dict[str, float | None]]:
    points: list[dict[str, float | None]] = []
    for it in range(0, MAX_ITERS + 1, 250):
        base = final_val + 7.8 * math.exp(-it / 260) + 0.35 * (1 - it / MAX_ITERS) ** 2
        train = base + rng.gauss(0, 0.02) - 0.02
        point: dict[str, float | None] = {
            "step": it,
            "lr": _lr_at(schedule, it),
            "train_loss": train,
            "tokens": it * 96 * 6 * 1024,
            "tokens_per_s": 350_000 + rng.gauss(0, 5000),
        }
        if it % 1000 == 0 or it == MAX_ITERS:
            point["val_loss"] = base + rng.gauss(0, 0.004)
        if nan_after is not None and it > nan_after:
            point["train_loss"] = math.nan
            point.pop("val_loss", None)
        points.append(point)
    return points


def _seed_rows(
    number: int,
    values: tuple[float, ...] | None,
    schedule: str,
    rng: random.Random,
    seeds: list[int],
) -> list[SeedRecord]:
    from leaderboard import SeedRecord

    rows: list[SeedRecord] = []
    names = [s.name for s in specs_345m()]
    for seed in seeds:
        if values is None:  # a diverged run: NaN loss, lm-eval at chance
            rows.append(
                SeedRecord(
                    number=number,
                    setting=TRAIN,
                    seed=seed,
                    status="failed",
                    reason="non-finite loss at step 3412 (lr=3.0e-03)",
                    metrics={f"val_loss_{TRAIN}": math.nan},
                    elapsed_s=7400.0,
                    curve=_curve(2.3, schedule, rng, nan_after=3412),
                )
            )
            rows.append(
                SeedRecord(
                    number=number,
                    setting=LM_EVAL,
                    seed=seed,
                    status="ok",
                    metrics={
                        f"arc_easy_{LM_EVAL}": 25.08,
                        f"hellaswag_{LM_EVAL}": 25.04,
                        f"piqa_{LM_EVAL}": 50.1,
                        f"winogrande_{LM_EVAL}": 49.6,
                    },
                    elapsed_s=420.0,
                )
            )
            continue
        noisy = [v + rng.gauss(0, sd) for v, sd in zip(values, SEED_STD, strict=True)]
        train = {f"{n}_{TRAIN}": round(v, 4) for n, v in zip(names[:3], noisy[:3], strict=True)}
        lm = {f"{n}_{LM_EVAL}": round(v, 2) for n, v in zip(names[3:], noisy[3:], strict=True)}
        rows.append(
            SeedRecord(
                number=number,
                setting=TRAIN,
                seed=seed,
                status="ok",
                metrics=train,
                elapsed_s=20_700 + rng.gauss(0, 300),
                curve=_curve(noisy[0], schedule, rng),
            )
        )
        rows.append(
            SeedRecord(
                number=number,
                setting=LM_EVAL,
                seed=seed,
                status="ok",
                metrics=lm,
                stderr={k: _accuracy_stderr(k, v) for k, v in lm.items()},
                elapsed_s=480 + rng.gauss(0, 40),
            )
        )
    return rows


# items per task in the real lm-eval sets (ARC-Easy test, HellaSwag / PIQA / WinoGrande val)
EVAL_ITEMS = {"arc_easy": 2376, "hellaswag": 10042, "piqa": 1838, "winogrande": 1267}


def _accuracy_stderr(key: str, accuracy: float) -> float:
    """lm-eval's standard error of an accuracy (in points): sqrt(p (1 - p) / (N - 1))."""
    items = EVAL_ITEMS[key.removesuffix(f"_{LM_EVAL}")]
    p = accuracy / 100
    return round(100 * math.sqrt(p * (1 - p) / (items - 1)), 4)


_DEFAULT_GET_LR = NANOGPT_GET_LR
_WSD_GET_LR = '''def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    """Warmup-stable-decay: hold the peak for 80% of training, then decay linearly."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    decay_start = int(0.8 * lr_decay_iters)
    if it < decay_start:
        return learning_rate
    frac = min(1.0, (it - decay_start) / max(1, lr_decay_iters - decay_start))
    return learning_rate - frac * (learning_rate - min_lr)
'''


def _diff(old: str, new: str) -> str:
    import difflib

    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            "a/nanoGPT/custom_pretrain.py",
            "b/nanoGPT/custom_pretrain.py",
        )
    )


def _transcript(model: str, task_id: str, hostile: bool) -> list[dict[str, object]]:
    thought = (
        "The default cosine schedule decays early; a warmup-stable-decay schedule keeps "
        "the peak learning rate longer."
    )
    if hostile:
        thought = (
            f"Let me try something. {XSS_MARKER} <b>bold?</b> <img src=x "
            'onerror="window.__pwned=2"> & done'
        )
    return [
        {"step": 0, "role": "system", "content": "You are an ML research agent."},
        {"step": 0, "role": "user", "content": f"Task: {task_id}\n\nDesign a better method."},
        {
            "step": 1,
            "role": "assistant",
            "content": thought,
            "thinking": "Check the file first.",
            "tool_name": "view",
            "tool_input": {"filename": "nanoGPT/custom_pretrain.py"},
        },
        {
            "step": 1,
            "role": "tool",
            "tool_name": "view",
            "content": "nanoGPT/custom_pretrain.py [EDITABLE — lines 191–201]\n   191: def get_lr(...):",
        },
        {
            "step": 2,
            "role": "assistant",
            "content": "Replacing get_lr with WSD.",
            "tool_name": "edit",
            "tool_input": {
                "op": "replace",
                "start_line": 191,
                "end_line": 201,
                "content": _WSD_GET_LR,
            },
        },
        {
            "step": 2,
            "role": "tool",
            "tool_name": "edit",
            "content": "OK: Replaced lines 191..201 with 9 line(s) in nanoGPT/custom_pretrain.py.",
        },
        {
            "step": 3,
            "role": "assistant",
            "content": "Testing.",
            "tool_name": "test",
            "tool_input": {},
        },
        {
            "step": 3,
            "role": "tool",
            "tool_name": "test",
            "content": "### gpt-345m (scripts/gpt_345m.sh)\nTRAIN_METRICS: step=12000, train_loss=2.21, "
            "val_loss=2.247\nFinal metrics (gpt-345m): val_loss_gpt-345m=2.2470",
        },
        {
            "step": 4,
            "role": "assistant",
            "content": f"Submitting test 1 ({model}).",
            "tool_name": "submit",
            "tool_input": {"n": 1},
        },
    ]


def _base(
    run_id: str,
    task_id: str,
    agent: str,
    model: str | None,
    kind: str,
    method: str,
    started: datetime,
    profile: str = "full",
) -> dict[str, object]:
    title, desc = TASKS[task_id][0], TASKS[task_id][1]
    return dict(
        run_id=run_id,
        task_id=task_id,
        task_title=title,
        task_description=desc,
        agent=agent,
        model=model,
        type=kind,
        method=method,
        profile=profile,
        max_steps=20,
        max_tests=3,
        codebase_version="nanogpt-2026.11",
        dataset_source="fineweb-10B",
        hardware={"gpus": 2, "gpu_type": "H200", "nodes": 1},
        library_versions={"torch": "2.13.0", "lm_eval": "0.4.13"},
        git_commit="3f2c1a9",
        started_at=started,
        finished_at=started + timedelta(hours=6),
    )


def realistic_runs() -> list[RunRecord]:
    """The fixture run set (deterministic)."""
    from leaderboard import FinalRecord, RunRecord, SeedRecord

    SPECS_345M = specs_345m()
    rng = random.Random(20261123)
    runs: list[RunRecord] = []
    t0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    for task_id, (_, _, baselines, agents, reference, region) in TASKS.items():
        for i, (name, values) in enumerate(baselines.items()):
            started = t0 + timedelta(hours=i)
            schedule = name if task_id.endswith("lr-schedule") else "cosine"
            rows = _seed_rows(1, values, schedule, rng, SEEDS)
            runs.append(
                RunRecord(
                    **_base(
                        f"{task_id}.baseline.{name}",
                        task_id,
                        f"baseline:{name}",
                        None,  # type: ignore[arg-type]
                        "baseline",
                        name,
                        started,
                    ),
                    reference=name == reference,
                    status="finished",
                    tests=[r for r in rows if r.seed == 42],
                    final=FinalRecord(test_number=1, status="ok", per_seed=rows),
                    regions={region: _DEFAULT_GET_LR if name == reference else _WSD_GET_LR},
                    diff="" if name == reference else _diff(_DEFAULT_GET_LR, _WSD_GET_LR),
                    metric_specs=SPECS_345M,
                )
            )
        for j, (model, (vanilla, agent)) in enumerate(agents.items()):
            started = t0 + timedelta(days=1, hours=j)
            hostile = model == "gpt-5.4" and task_id.endswith("lr-schedule")
            schedule = "agent" if task_id.endswith("lr-schedule") else "cosine"
            v_rows = _seed_rows(1, vanilla, schedule, rng, [42])
            a_rows = _seed_rows(2, agent, schedule, rng, SEEDS)
            common = dict(
                regions={region: _WSD_GET_LR},
                diff=_diff(_DEFAULT_GET_LR, _WSD_GET_LR),
                metric_specs=SPECS_345M,
                transcript=_transcript(model, task_id, hostile),
            )
            runs.append(
                RunRecord(
                    **_base(
                        f"{task_id}.{model}.vanilla",
                        task_id,
                        f"openai:{model}",
                        model,  # type: ignore[arg-type]
                        "vanilla",
                        model,
                        started,
                    ),
                    status="finished" if vanilla else "failed",
                    tests=v_rows,
                    **common,  # type: ignore[arg-type]
                )
            )
            runs.append(
                RunRecord(
                    **_base(
                        f"{task_id}.{model}.agent",
                        task_id,
                        f"openai:{model}",
                        model,  # type: ignore[arg-type]
                        "agent",
                        model,
                        started,
                    ),
                    status="finished",
                    tests=v_rows + [r for r in a_rows if r.seed == 42],
                    final=FinalRecord(test_number=2, status="ok", per_seed=a_rows),
                    **common,  # type: ignore[arg-type]
                )
            )
    lr = "llm-pretrain-lr-schedule"
    # An agent that ran out of steps without submitting, and an infrastructure failure.
    runs.append(
        RunRecord(
            **_base(
                f"{lr}.llama-4.agent",
                lr,
                "openai:llama-4",
                "llama-4",
                "agent",
                "llama-4",  # type: ignore[arg-type]
                t0 + timedelta(days=2),
            ),
            status="incomplete",
            tests=[],
            transcript=_transcript("llama-4", lr, False),
            metric_specs=SPECS_345M,
        )
    )
    runs.append(
        RunRecord(
            **_base(
                f"{lr}.mistral-large.agent",
                lr,
                "openai:mistral-large",
                "mistral-large",  # type: ignore[arg-type]
                "agent",
                "mistral-large",
                t0 + timedelta(days=2, hours=1),
            ),
            status="infra_error",
            metric_specs=SPECS_345M,
            # Its test ran; the final evaluation was lost: listed among the ranked runs, unranked.
            tests=_seed_rows(1, LR_AGENTS["gpt-5.4"][1], "agent", random.Random(4121), [42]),
            final=FinalRecord(
                test_number=1, status="infra_error", reason="node lost (slurm job 4121)"
            ),
        )
    )
    # A run that failed before any test (an unreachable model endpoint, and a budget nobody else
    # used): listed with its cause, never ranked, never a comparison group of its own.
    unreachable = _base(
        NO_RESULT_RUN,
        lr,
        "openai:kimi-k3",
        "kimi-k3",
        "agent",
        "kimi-k3",
        t0 + timedelta(days=2, hours=2),
    )
    unreachable.update(max_steps=1, finished_at=t0 + timedelta(days=2, hours=2, seconds=31))
    runs.append(
        RunRecord(
            **unreachable,  # type: ignore[arg-type]
            status="infra_error",
            status_reason=NO_RESULT_REASON,
            agent_settings={"temperature": 0.0, "max_tokens": 2048, "timeout_s": 30.0},
            metric_specs=SPECS_345M,
            transcript=[
                {"kind": "start", "run_id": NO_RESULT_RUN, "t": 1.0},
                {
                    "kind": "llm_retry",
                    "attempt": 1,
                    "status": None,
                    "error": "APIConnectionError: Connection error.",
                    "delay_s": 4.0,
                    "t": 5.0,
                },
                {"kind": "llm_error", "error": NO_RESULT_REASON, "t": 31.0},
                {"kind": "end", "status": "infra_error", "reason": NO_RESULT_REASON, "t": 31.0},
            ],
        )
    )
    # A tiny-profile group: never ranked with the full-profile runs.
    tiny_specs = [s.model_copy(update={"setting": "gpt-tiny"}) for s in SPECS_345M[:3]]
    for k, (name, val) in enumerate([("cosine", 5.91), ("wsd", 5.84), ("wsd_sqrt", 5.86)]):
        rows = [
            SeedRecord(
                number=1,
                setting="gpt-tiny",
                seed=s,
                status="ok",
                metrics={
                    "val_loss_gpt-tiny": val + rng.gauss(0, 0.01),
                    "wikitext2_ppl_gpt-tiny": 812 + rng.gauss(0, 5) + 10 * k,
                    "lambada_ppl_gpt-tiny": 3021 + rng.gauss(0, 20),
                },
                elapsed_s=60.0,
            )
            for s in (42, 43)
        ]
        runs.append(
            RunRecord(
                **_base(
                    f"{lr}.tiny.baseline.{name}",
                    lr,
                    f"baseline:{name}",
                    None,
                    "baseline",  # type: ignore[arg-type]
                    name,
                    t0 + timedelta(days=3, hours=k),
                    profile="tiny",
                ),
                reference=name == "cosine",
                status="finished",
                tests=rows,
                final=FinalRecord(test_number=1, status="ok", per_seed=rows),
                metric_specs=tiny_specs,
            )
        )
    return runs


INJECTED = '<img src=x onerror="window.__pwned=3"><div id="injected">gotcha</div>'


def _view_text() -> str:
    lines = [f"   {191 + i}  {line}" for i, line in enumerate(_DEFAULT_GET_LR.splitlines())]
    return (
        "[File: nanoGPT/custom_pretrain.py | lines 188–203 of 492 | editable: 191–201]\n"
        "   188| # the learning-rate schedule: called once per iteration\n"
        "   190| # ── EDITABLE REGION START: get_lr ──\n"
        + "\n".join(lines)
        + "\n(editable lines are numbered 'N  ', frozen lines 'N| ')"
    )


def agent_transcript_run() -> RunRecord:
    """An agent run as the runner records it: the transcript's events as written (messages with
    usage, tool calls, results, a snapshot with the edit's diff, a retry, a rejected edit), the
    assistant's markdown with an HTML injection in it, and the agent's settings."""
    from leaderboard import FinalRecord, RunRecord

    rng = random.Random(14)
    a_rows = _seed_rows(2, LR_AGENTS["gpt-5.4"][1], "agent", rng, SEEDS)
    t = 1_764_150_000.0
    final_line = (
        f"Final metrics ({TRAIN}): val_loss_{TRAIN}=2.2412, wikitext2_ppl_{TRAIN}=41.7702, "
        f"lambada_ppl_{TRAIN}=66.0100, broken_metric, note_{TRAIN}=n/a"
    )
    test_text = (
        "[Test #1] (2 tests remaining; call submit(n=N) to choose which test result to submit "
        f"as final)\n\n### {TRAIN} (scripts/gpt_345m.sh)\nTraining metrics (last steps):\n"
        f"TRAIN_METRICS: step=12030, train_loss=2.19\n{final_line}\n"
    )
    edit_ok = (
        "OK: Replaced lines 191..201 with 9 line(s) in nanoGPT/custom_pretrain.py. "
        "Editable range: 191–199."
    )

    def usage(prompt: int, completion: int, seconds: float) -> dict[str, object]:
        cost = round(prompt * 3e-6 + completion * 15e-6, 6)
        return {
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            "elapsed_s": seconds,
            "cost_usd": cost,
            "model": "claude-opus",
        }

    def assistant(content: str, *calls: tuple[str, str, dict[str, object]]) -> dict[str, object]:
        return {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for call_id, name, args in calls
            ],
        }

    bad_edit = {
        "op": "replace",
        "filename": "nanoGPT/custom_pretrain.py",
        "start_line": 191,
        "end_line": 201,
        "content": "def get_lr(it warmup_iters):\n    return 1\n",
    }
    good_edit = {**bad_edit, "content": _WSD_GET_LR}
    events: list[dict[str, object]] = [
        {"kind": "header", "format_version": 1, "run_id": AGENT_RUN},
        {"kind": "start", "run_id": AGENT_RUN},
        {"kind": "message", "message": {"role": "system", "content": "You are an ML researcher."}},
        {"kind": "message", "message": {"role": "user", "content": "# Task\n" + "x" * 900}},
        {
            "kind": "message",
            "message": assistant(
                "## Plan\n\nThe **cosine** schedule decays too early. I will:\n\n"
                "1. read `get_lr`\n2. try *warmup-stable-decay*\n\n"
                f"Ignore this: {XSS_MARKER} {INJECTED}",
                ("call_1", "view", {"filename": "nanoGPT/custom_pretrain.py"}),
            ),
            **usage(5210, 312, 4.2),
        },
        {
            "kind": "tool_call",
            "name": "view",
            "call_id": "call_1",
            "step": 1,
            "arguments": {"filename": "nanoGPT/custom_pretrain.py"},
        },
        {
            "kind": "tool_result",
            "name": "view",
            "call_id": "call_1",
            "text": _view_text(),
            "ok": True,
            "cost_step": 1,
            "cost_test": 0,
            "elapsed_s": 0.01,
            "steps_used": 1,
            "tests_used": 0,
        },
        {
            "kind": "llm_retry",
            "attempt": 1,
            "status": 429,
            "error": "RateLimitError: slow down",
            "delay_s": 2.0,
        },
        {
            "kind": "message",
            "message": assistant("Replacing `get_lr` with WSD.", ("call_2", "edit", bad_edit)),
            **usage(6120, 240, 3.1),
        },
        {
            "kind": "tool_call",
            "name": "edit",
            "call_id": "call_2",
            "step": 2,
            "arguments": bad_edit,
        },
        {
            "kind": "tool_result",
            "name": "edit",
            "call_id": "call_2",
            "text": "ERROR: The edit leaves the file with a syntax error; nothing was changed:\n"
            "  - line 191 (line 1 of your content): syntax error: invalid syntax",
            "ok": False,
            "cost_step": 1,
            "cost_test": 0,
            "elapsed_s": 0.02,
            "steps_used": 2,
            "tests_used": 0,
        },
        {
            "kind": "message",
            "message": assistant(
                "A typo. Again, with the full function.", ("call_3", "edit", good_edit)
            ),
            **usage(6480, 410, 5.0),
        },
        {
            "kind": "tool_call",
            "name": "edit",
            "call_id": "call_3",
            "step": 3,
            "arguments": good_edit,
        },
        {
            "kind": "tool_result",
            "name": "edit",
            "call_id": "call_3",
            "text": edit_ok,
            "ok": True,
            "cost_step": 1,
            "cost_test": 0,
            "elapsed_s": 0.03,
            "steps_used": 3,
            "tests_used": 0,
        },
        {
            "kind": "snapshot",
            "step": 3,
            "files": {
                "nanoGPT/custom_pretrain.py": "runs/x/snapshots/003_nanoGPT__custom_pretrain.py"
            },
            "diffs": {"nanoGPT/custom_pretrain.py": _diff(_DEFAULT_GET_LR, _WSD_GET_LR)},
        },
        {
            "kind": "message",
            "message": assistant("Testing.", ("call_4", "test", {})),
            **usage(6950, 35, 1.2),
        },
        {"kind": "tool_call", "name": "test", "call_id": "call_4", "step": 4, "arguments": {}},
        {
            "kind": "tool_result",
            "name": "test",
            "call_id": "call_4",
            "text": test_text,
            "ok": True,
            "cost_step": 1,
            "cost_test": 1,
            "elapsed_s": 7412.5,
            "steps_used": 4,
            "tests_used": 1,
        },
        {
            "kind": "message",
            "message": assistant(
                "val_loss 2.2412 beats cosine. Submitting test 1.", ("call_5", "submit", {"n": 1})
            ),
            **usage(7420, 60, 1.9),
        },
        {
            "kind": "tool_call",
            "name": "submit",
            "call_id": "call_5",
            "step": 5,
            "arguments": {"n": 1},
        },
        {
            "kind": "tool_result",
            "name": "submit",
            "call_id": "call_5",
            "text": "[submit] Submitting result from test #1 as final.",
            "ok": True,
            "cost_step": 0,
            "cost_test": 0,
            "elapsed_s": 9650.0,
            "steps_used": 4,
            "tests_used": 1,
        },
        {"kind": "a_kind_from_the_future", "payload": {"note": "<b>not bold</b>"}},
        {
            "kind": "end",
            "status": "finished",
            "reason": None,
            "steps_used": 4,
            "tests_used": 1,
            "submitted": True,
        },
    ]
    for i, event in enumerate(events):
        event.setdefault("t", t + 10 * i)
    return RunRecord(
        **_base(
            AGENT_RUN,
            "llm-pretrain-lr-schedule",
            "openai:claude-opus",
            "claude-opus",
            "agent",
            "claude-opus",
            datetime(2026, 11, 4, 8, 0, tzinfo=UTC),
        ),  # type: ignore[arg-type]
        status="finished",
        agent_settings={
            "temperature": 0.2,
            "max_tokens": 4096,
            "max_cost_usd": 5.0,
            "max_agent_time_s": None,
        },
        tests=[r for r in a_rows if r.seed == 42],
        final=FinalRecord(test_number=1, status="ok", per_seed=a_rows),
        regions={"get_lr": _WSD_GET_LR},
        diff=_diff(_DEFAULT_GET_LR, _WSD_GET_LR),
        transcript=events,
        metric_specs=specs_345m(),
    )


LR_TASK = "llm-pretrain-lr-schedule"
SWEEP_LR = "sweep-lr-20261120"
SWEEP_GRID = "sweep-grid-20261121"


def _sweep_values(lr: float, warmup: int = 400) -> tuple[float, ...]:
    """Plausible 345M metrics at a learning rate: best near 1e-3, worse on either side on a
    log scale; a short warmup costs a little."""
    penalty = 0.09 * math.log10(lr / 1e-3) ** 2 + (0.004 if warmup < 400 else 0.0)
    val = 2.262 + penalty
    return (
        val,
        9.6 * math.exp(val - 2.262) + 17,
        27 * math.exp(val - 2.262) + 8,
        45.1 - 30 * penalty,
        36.4 - 25 * penalty,
        64.8 - 20 * penalty,
        52.0 - 10 * penalty,
    )


def sweep_records() -> tuple[list[SweepRecord], list[RunRecord]]:
    """Two sweeps of the LR task with their points' runs (type ``method``, ``sweep_id`` set):
    a 3-point × 2-seed learning-rate sweep (1e-4 … 3e-3, a log axis) and a 2 × 2 grid of
    learning rate × warmup with one point still pending."""
    from leaderboard import FinalRecord, RunRecord, SweepPoint, SweepRecord

    rng = random.Random(20261120)
    seeds = [42, 43]
    base_lr = 3e-4  # the 345M default
    plans: list[tuple[str, str, dict[str, list[SweepValue]], int]] = [
        (SWEEP_LR, "lr-sweep", {"learning_rate": [1e-4, 1e-3, 3e-3]}, 4),
        (
            SWEEP_GRID,
            "lr-warmup-grid",
            {"learning_rate": [6e-4, 1.2e-3], "warmup_iters": [200, 400]},
            4,
        ),
    ]
    sweeps: list[SweepRecord] = []
    runs: list[RunRecord] = []
    for n, (sweep_id, label, grid, done) in enumerate(plans):
        created = datetime(2026, 11, 20 + n, 9, 0, tzinfo=UTC)
        combos = [dict(zip(grid, vs, strict=True)) for vs in itertools.product(*grid.values())]
        points = []
        for i, overrides in enumerate([{}, *combos]):
            run_id = f"{sweep_id}.p{i}" if i < done else None
            points.append(SweepPoint(index=i, overrides=overrides, run_id=run_id))
            if run_id is None:
                continue
            lr = float(overrides.get("learning_rate", base_lr))
            values = _sweep_values(lr, int(overrides.get("warmup_iters", 400)))
            rows = _seed_rows(1, values, "cosine", rng, seeds)
            body = "CONFIG_OVERRIDES = " + repr(overrides)
            runs.append(
                RunRecord(
                    **_base(
                        run_id,
                        LR_TASK,
                        f"method:{label}",
                        None,
                        "method",
                        label,  # type: ignore[arg-type]
                        created + timedelta(hours=i),
                    ),
                    status="finished",
                    tests=[r for r in rows if r.seed == 42],
                    final=FinalRecord(test_number=1, status="ok", per_seed=rows),
                    regions={"config_overrides": body},
                    diff=_diff("CONFIG_OVERRIDES = {}\n", body + "\n"),
                    metric_specs=specs_345m(),
                    sweep_id=sweep_id,
                    sweep_point=overrides,
                )
            )
        sweeps.append(
            SweepRecord(
                sweep_id=sweep_id,
                task_id=LR_TASK,
                label=label,
                profile="full",
                sandbox="local",
                grid=grid,
                seeds=seeds,
                points=points,
                command=f"runner sweep --task {LR_TASK} "
                + " ".join(f"--grid {k}={','.join(map(str, v))}" for k, v in grid.items())
                + " --seeds 42,43",
                created_at=created,
            )
        )
    return sweeps, runs


# ── fixtures ────────────────────────────────────────────────────────────────
@pytest.fixture
def lb_store(tmp_path: Path) -> Iterator[Store]:
    """An empty store in a real SQLite file."""
    from leaderboard import Store

    store = Store(f"sqlite:///{tmp_path / 'lb.db'}")
    yield store
    store.close()


@pytest.fixture(scope="session")
def lb_runs() -> list[RunRecord]:
    """The realistic run set."""
    return realistic_runs()


@dataclass
class LiveServer:
    """A uvicorn server on loopback serving a leaderboard app."""

    url: str
    store: Store
    write_token: str


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def lb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The web app over the realistic run set, served by uvicorn in a thread."""
    import uvicorn

    from leaderboard import Store, create_app

    db = tmp_path_factory.mktemp("lb") / "lb.db"
    store = Store(f"sqlite:///{db}")
    for run in realistic_runs():
        store.record(run)
    sweeps, points = sweep_records()
    for run in points:
        store.record(run)
    for sweep in sweeps:
        store.record_sweep(sweep)
    token = "test-token-" + os.urandom(4).hex()
    port = free_port()
    config = uvicorn.Config(
        create_app(store, write_token=token), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", store, token)
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL 15 server (initdb + pg_ctl as the ``postgres`` user)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found under {PG_BIN}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="pb-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    init = run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "pb", "--auth=trust", "-E", "UTF8")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr[-500:]}")
    start = run(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    if start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"pg_ctl start failed: {start.stderr[-500:]}")
    try:
        created = run(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "pb",
            "pretrainbench",
        )
        if created.returncode != 0:
            pytest.skip(f"createdb failed: {created.stderr[-500:]}")
        yield f"postgresql://pb@127.0.0.1:{port}/pretrainbench"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
