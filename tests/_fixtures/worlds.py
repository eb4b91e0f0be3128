"""Fake task worlds: task folders with their own codebase, built in a temporary directory.

One factory for all of them (`make_task_world`, or `write_codebase` and `write_task` where a
test writes several tasks over one codebase), one metric table, one job chain, one spec of the
learning-rate task that each area's world varies, and the one stand-in of the trusted evaluator
that every fake codebase uses. The worlds themselves stay with their areas (env: a torch-shaped
codebase for the workspace; runner: a runnable codebase; sandbox: jobs without a task); the
mini task here is the session tests' world (no job of it ever runs a script).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# ── the pieces every fake world shares ──────────────────────────────────────────────────────

#: The metrics of the fake tasks, as task.yaml declares them; `metric_specs` picks a subset.
METRICS: dict[str, dict[str, Any]] = {
    "val_loss": {
        "name": "val_loss",
        "direction": "lower",
        "primary": True,
        "bound": 0,
        "weight": 2,
    },
    "wikitext2_ppl": {"name": "wikitext2_ppl", "direction": "lower", "bound": 1},
    "lambada_ppl": {"name": "lambada_ppl", "direction": "lower", "bound": 1},
    "arc_easy": {"name": "arc_easy", "direction": "higher", "bound": 100},
    "hellaswag": {"name": "hellaswag", "direction": "higher", "bound": 100},
    "piqa": {"name": "piqa", "direction": "higher", "bound": 100, "hidden": True},
    "winogrande": {"name": "winogrande", "direction": "higher", "bound": 100, "hidden": True},
}
GPT_METRICS = ["val_loss", "wikitext2_ppl", "lambada_ppl"]
LM_EVAL_METRICS = ["arc_easy", "hellaswag", "piqa", "winogrande"]

#: get_lr as nanoGPT writes it (the default the fake codebases and records start from)
NANOGPT_GET_LR = """def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # 1) linear warmup for warmup_iters steps
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # 2) if it > lr_decay_iters, return min learning rate
    if it > lr_decay_iters:
        return min_lr
    # 3) in between, use cosine decay down to min learning rate
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)
"""

GET_LR_PARAMS = ["it", "warmup_iters", "lr_decay_iters", "learning_rate", "min_lr"]

# The stand-in of the trusted evaluator: metrics from the training job's "checkpoint".
EVALUATE = '''\
"""Stand-in for the trusted evaluator: metrics from the trained "checkpoint"."""
import json
import os
import sys

kind = sys.argv[sys.argv.index("--kind") + 1]
out = os.environ["PB_OUT_DIR"]
src = os.path.join(os.environ["PB_NEEDS_DIR"], os.environ["PB_CKPT_JOB"])
loss = json.load(open(os.path.join(src, "ckpt.json")))["final_loss"]
if kind == "train":
    metrics = {"val_loss": loss + 0.05, "wikitext2_ppl": 2.0 ** (loss + 1), "lambada_ppl": 3.0 ** loss}
else:
    metrics = {"arc_easy": 60 - loss, "hellaswag": 40 - loss, "piqa": 70 - loss, "winogrande": 55 - loss}
doc = {"schema_version": 1, "kind": kind, "profile": os.environ.get("PB_PROFILE", "tiny"),
       "seed": int(os.environ.get("PB_SEED", "42")), "metrics": metrics,
       "dataset_source": "offline", "data_fingerprint": "sha256:fake", "elapsed_s": 0.1}
json.dump(doc, open(os.path.join(out, "metrics.json"), "w"))
'''

PB_DATA = '''\
"""Stand-in for pb_data.py: the shard format (uint16 tokens)."""
import numpy as np


def write_shard(path, tokens):
    np.asarray(tokens, dtype=np.uint16).tofile(path)


def read_shard(path):
    return np.fromfile(path, dtype=np.uint16)
'''

EVAL_SCRIPT = "set -e\npython evaluate.py --kind train\n"
LM_EVAL_SCRIPT = "set -e\npython evaluate.py --kind lm_eval\n"


def metric_specs(*names: str) -> list[dict[str, Any]]:
    """The task.yaml entries of the named metrics (copies, so a test may change them)."""
    return [copy.deepcopy(METRICS[name]) for name in names]


def evaluation_jobs(
    train: str,
    labels: tuple[str, str],
    *,
    scripts: tuple[str, str] = ("scripts/eval.sh", "scripts/lm_eval.sh"),
    metrics: tuple[list[str], list[str]] = (GPT_METRICS, LM_EVAL_METRICS),
    inputs: tuple[list[str], list[str]] = ([], []),
    time_limit: str = "0:10:00",
    gpus: int = 0,
    wired: bool = True,
) -> list[dict[str, Any]]:
    """The trusted evaluation of ``train``'s checkpoint and the hidden lm-eval job beside it
    (``labels``); ``wired`` names the checkpoint's job in ``PB_CKPT_JOB`` (for codebases whose
    evaluator runs)."""
    jobs: list[dict[str, Any]] = []
    for label, script, names, granted, hidden in zip(
        labels, scripts, metrics, inputs, (False, True), strict=True
    ):
        job: dict[str, Any] = {"label": label, "script": script, "needs": [train]}
        if granted:
            job["inputs"] = granted
        if gpus:
            job["gpus"] = gpus
        job["metrics"] = names
        if hidden:
            job["hidden"] = True
        job["time_limit"] = time_limit
        if wired:
            job["env"] = {"PB_CKPT_JOB": train}
        jobs.append(job)
    return jobs


def lr_jobs(
    suffix: str,
    *,
    scripts: tuple[str, str, str, str] = (
        "scripts/schedule.sh",
        "scripts/train.sh",
        "scripts/eval.sh",
        "scripts/lm_eval.sh",
    ),
    time_limit: str = "0:10:00",
    eval_time_limit: str = "0:10:00",
    gpus: int = 0,
    eval_gpus: int = 0,
    train_inputs: list[str] | None = None,
    **evaluation: Any,
) -> list[dict[str, Any]]:
    """The learning-rate task's jobs of one profile: schedule (preflight, on the edited code)
    → ``train-<suffix>`` (``time_limit``) → its evaluations (`evaluation_jobs`, given
    ``evaluation``, ``eval_time_limit``, ``eval_gpus``)."""
    train = f"train-{suffix}"
    wired = evaluation.get("wired", True)
    train_job: dict[str, Any] = {
        "label": train,
        "script": scripts[1],
        "inputs": ["train_data"] if train_inputs is None else train_inputs,
        "needs": ["schedule"],
        "show_log": True,
        "gpus": gpus,
        "time_limit": time_limit,
    }
    if wired:
        train_job["env"] = {"PB_LR_SCHEDULE_JOB": "schedule"}
    schedule = {
        "label": "schedule",
        "script": scripts[0],
        "stage": "preflight",
        "code": "edited",
        "time_limit": "0:01:00",
    }
    return [
        schedule,
        train_job,
        *evaluation_jobs(
            train,
            (f"gpt-{suffix}", f"lm-eval-{suffix}"),
            scripts=scripts[2:],
            time_limit=eval_time_limit,
            gpus=eval_gpus,
            **evaluation,
        ),
    ]


def lr_task_spec(task_id: str, title: str, codebase: str, **fields: Any) -> dict[str, Any]:
    """task.yaml of a learning-rate task (regions ``get_lr`` and ``config_overrides`` of
    ``custom_pretrain.py``) on ``codebase``; ``fields`` add to or replace its keys."""
    spec: dict[str, Any] = {
        "id": task_id,
        "title": title,
        "description": "description.md",
        "codebase": codebase,
        "package": "nanoGPT",
        "editable_files": [
            {"path": "custom_pretrain.py", "regions": ["get_lr", "config_overrides"]}
        ],
        "read_only_files": [],
        "allow_create": False,
        "invariants": [
            {
                "kind": "signature",
                "file": "custom_pretrain.py",
                "function": "get_lr",
                "params": list(GET_LR_PARAMS),
            }
        ],
        "code_policy": {"allowed_imports": ["math"]},
        "data_regions": {
            "config_overrides": {"variable": "CONFIG_OVERRIDES", "env": "PB_CONFIG_OVERRIDES"}
        },
        "budgets": {"max_steps": 20, "max_tests": 3},
        "baselines": ["cosine"],
        "reference_baseline": "cosine",
    }
    spec.update(fields)
    return spec


# ── writing a world ─────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class TaskWorld:
    """Where a fake task, its codebase and its baselines live (``home``: the harness's data
    home, prepared only by the worlds that run jobs)."""

    root: Path
    tasks_dir: Path
    baselines_dir: Path
    codebase: Path
    task_dir: Path
    task_id: str

    @property
    def home(self) -> Path:
        return self.root / "home"


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path → text) under ``root``; returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def write_codebase(tasks_dir: Path, name: str, files: dict[str, str]) -> Path:
    """A codebase folder ``tasks_dir/codebases/<name>`` holding ``files``."""
    return write_files(tasks_dir / "codebases" / name, files)


def write_task(
    tasks_dir: Path,
    baselines_dir: Path,
    spec: dict[str, Any],
    *,
    description: str | None,
    baselines: dict[str, str],
    raw_yaml: str | None = None,
) -> Path:
    """The task folder of ``spec`` (``raw_yaml`` instead of it when given) with its
    description, and its baseline files; returns the task folder."""
    task_id = str(spec.get("id", "unnamed"))
    folder = tasks_dir / task_id
    folder.mkdir(parents=True, exist_ok=True)
    text = raw_yaml if raw_yaml is not None else yaml.safe_dump(spec, sort_keys=False)
    files = {"task.yaml": text}
    if description is not None:
        files["description.md"] = description
    write_files(folder, files)
    write_files(baselines_dir / task_id, {f"{name}.py": t for name, t in baselines.items()})
    (baselines_dir / task_id).mkdir(parents=True, exist_ok=True)
    return folder


def make_task_world(
    root: Path,
    spec: dict[str, Any],
    *,
    codebase: dict[str, str],
    description: str,
    baselines: dict[str, str],
) -> TaskWorld:
    """A whole task world under ``root``: ``tasks/codebases/<spec's codebase>``,
    ``tasks/<id>`` and ``baselines/<id>``."""
    tasks_dir, baselines_dir = root / "tasks", root / "baselines"
    code = write_codebase(tasks_dir, spec["codebase"], codebase)
    task_dir = write_task(
        tasks_dir, baselines_dir, spec, description=description, baselines=baselines
    )
    return TaskWorld(root, tasks_dir, baselines_dir, code, task_dir, spec["id"])


# ── the mini task: the session tests' world (its scripts never run) ─────────────────────────

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

MINI_SPEC = lr_task_spec(
    MINI_TASK_ID,
    "Mini: learning-rate schedule",
    "minicode",
    profiles={
        "tiny": {
            "jobs": lr_jobs(
                "tiny",
                scripts=(
                    "scripts/schedule.sh",
                    "scripts/train_tiny.sh",
                    "scripts/eval_tiny.sh",
                    "scripts/lm_eval_tiny.sh",
                ),
                train_inputs=[],
                metrics=(["val_loss", "wikitext2_ppl"], ["arc_easy", "piqa"]),
                wired=False,
            ),
            "seeds": {"test": [42], "final": [42, 43]},
            "recipe": {"model": "4L/4H/128D", "max_iters": 80, "hardware": "CPU"},
        }
    },
    metrics=metric_specs("val_loss", "wikitext2_ppl", "arc_easy", "piqa"),
    seeds={"test": [42], "final": [42, 43, 44]},
    baselines=["cosine", "flat"],
)

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

_NEVER_RUN = "#!/bin/bash\nexit 1  # never run by these tests\n"


def mini_task_world(root: Path) -> TaskWorld:
    """The mini task under ``root``."""
    scripts = ("schedule.sh", "train_tiny.sh", "eval_tiny.sh", "lm_eval_tiny.sh")
    return make_task_world(
        root,
        MINI_SPEC,
        codebase={"custom_pretrain.py": MINI_CODE} | {f"scripts/{s}": _NEVER_RUN for s in scripts},
        description=MINI_DESCRIPTION,
        baselines=MINI_BASELINES,
    )
