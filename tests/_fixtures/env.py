"""Shared pytest fixtures of the env area: a small synthetic codebase with named regions and
task folders built in a temporary task root (``PRETRAINBENCH_TASKS_DIR``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.worlds import (
    NANOGPT_GET_LR,
    lr_jobs,
    lr_task_spec,
    metric_specs,
    write_codebase,
    write_task,
)

# A small nanoGPT-shaped file: the four regions of the real codebase, frozen code around them,
# a training loop under `if __name__ == "__main__":` (whose names are run-time state).
MINI_CODEBASE = (
    '''"""Mini pretraining script (test fixture)."""

import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

# ── EDITABLE REGION START: layernorm ──
class LayerNorm(nn.Module):
    """LayerNorm but with an optional bias."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)
# ── EDITABLE REGION END: layernorm ──


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)

    def forward(self, x):
        return self.fc(x)


# ── EDITABLE REGION START: block ──
class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.mlp(self.ln_1(x))
        return x
# ── EDITABLE REGION END: block ──


def get_batch(split):
    return split


# ── EDITABLE REGION START: get_lr ──
'''
    + NANOGPT_GET_LR
    + """# ── EDITABLE REGION END: get_lr ──

# ── EDITABLE REGION START: config_overrides ──
CONFIG_OVERRIDES = {}
# ── EDITABLE REGION END: config_overrides ──

ALLOWED_OVERRIDES = ("learning_rate", "min_lr", "warmup_iters", "weight_decay", "grad_clip")


if __name__ == "__main__":
    out_dir = os.environ["PB_OUT_DIR"]
    model = Block(None)
    optimizer = torch.optim.AdamW(model.parameters())
    for iter_num in range(10):
        lr = get_lr(iter_num, 2, 10, 1e-3, 1e-4)
        for group in optimizer.param_groups:
            group["lr"] = lr
"""
)

DESCRIPTION = """# Mini task

Edit `get_lr` in `{file}` ({lines[get_lr]}). Budget: {max_steps} steps, {max_tests} tests.
Profile `{profile}`, model {recipe[model]}.

{jobs_table}
"""


def _jobs(suffix: str, gpus: int, time_limit: str) -> list[dict[str, Any]]:
    """The mini task's jobs of one profile: schedule (preflight) → train → eval, lm-eval."""
    metrics = (["val_loss", "wikitext2_ppl"], ["arc_easy", "piqa"])
    return lr_jobs(suffix, gpus=gpus, time_limit=time_limit, metrics=metrics, wired=False)


BASE_TASK: dict[str, Any] = lr_task_spec(
    "mini-lr",
    "Mini: learning-rate schedule",
    "mini",
    read_only_files=["train_notes.py"],
    profiles={
        "tiny": {
            "jobs": _jobs("tiny", 0, "0:10:00"),
            "seeds": {"test": [42], "final": [42, 43]},
            "recipe": {"model": "2L/2H/32D", "max_iters": 10},
        },
        "full": {"jobs": _jobs("345m", 2, "12:00:00")},
    },
    metrics=metric_specs("val_loss", "wikitext2_ppl", "arc_easy", "piqa"),
    seeds={"test": [42], "final": [42, 43, 44]},
    baselines=["cosine", "wsd"],
)

NORM_TASK_CHANGES: dict[str, Any] = {
    "id": "mini-norm",
    "editable_files": [
        {"path": "custom_pretrain.py", "regions": ["layernorm", "block", "config_overrides"]}
    ],
    "invariants": [
        {
            "kind": "class",
            "file": "custom_pretrain.py",
            "name": "LayerNorm",
            "methods": {"__init__": ["self", "ndim", "bias"]},
        },
        {
            "kind": "class",
            "file": "custom_pretrain.py",
            "name": "Block",
            "methods": {"__init__": ["self", "config"], "forward": ["self", "x"]},
        },
    ],
    "code_policy": {"allowed_imports": ["math", "torch", "torch.nn", "torch.nn.functional"]},
    "baselines": [],
    "reference_baseline": None,
}

TaskFactory = Callable[..., Path]


def write_task_root(root: Path) -> None:
    """The codebase, its scripts and a read-only context file under ``root/codebases/mini``."""
    scripts = ("schedule.sh", "train.sh", "eval.sh", "lm_eval.sh")
    files = {
        "custom_pretrain.py": MINI_CODEBASE,
        "train_notes.py": "# read-only context\nNOTES = 1\n",
    }
    write_codebase(root, "mini", files | {f"scripts/{s}": "#!/bin/bash\nexit 0\n" for s in scripts})


@pytest.fixture
def env_tasks_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary task root (tasks + codebases + baselines) set as PRETRAINBENCH_TASKS_DIR."""
    root = tmp_path / "tasks"
    write_task_root(root)
    monkeypatch.setenv("PRETRAINBENCH_TASKS_DIR", str(root))
    monkeypatch.setenv("PRETRAINBENCH_BASELINES_DIR", str(tmp_path / "baselines"))
    return root


@pytest.fixture
def make_env_task(env_tasks_root: Path) -> TaskFactory:
    """Write a task folder: ``make_env_task(changes={...}, description=..., baselines=[...])``.

    ``changes`` are merged over the mini learning-rate task; a value of ``...`` deletes a key.
    Returns the task folder.
    """

    def make(
        changes: dict[str, Any] | None = None,
        *,
        description: str | None = DESCRIPTION,
        baselines: list[str] | None = None,
        raw_yaml: str | None = None,
    ) -> Path:
        data = copy.deepcopy(BASE_TASK)
        for key, value in (changes or {}).items():
            if value is ...:
                data.pop(key, None)
            else:
                data[key] = value
        names = data.get("baselines", []) if baselines is None else baselines
        return write_task(
            env_tasks_root,
            env_tasks_root.parent / "baselines",
            data,
            description=description,
            baselines={name: f'"""{name}"""\n' for name in names},
            raw_yaml=raw_yaml,
        )

    return make


@pytest.fixture
def lr_task(make_env_task: TaskFactory) -> Any:
    """The mini learning-rate task (regions get_lr + config_overrides), loaded."""
    from env._spec import load_task

    return load_task(make_env_task())


@pytest.fixture
def norm_task(make_env_task: TaskFactory) -> Any:
    """The mini normalisation task (regions layernorm + block + config_overrides), loaded."""
    from env._spec import load_task

    return load_task(make_env_task(NORM_TASK_CHANGES, description="# {file}\n"))


@pytest.fixture
def lr_workspace(lr_task: Any, tmp_path: Path) -> Any:
    """A fresh workspace of the mini learning-rate task under ``tmp_path/run/workspace``."""
    from env._workspace import Workspace

    return Workspace.create(lr_task, tmp_path / "run" / "workspace")


@pytest.fixture
def code_only_workspace(make_env_task: TaskFactory, tmp_path: Path) -> Any:
    """The mini learning-rate task with ``config_overrides`` as a code region (no data regions):
    for the mechanics of a region that may be emptied."""
    from env._spec import load_task
    from env._workspace import Workspace

    task = load_task(make_env_task({"data_regions": {}}))
    return Workspace.create(task, tmp_path / "run" / "workspace")


@pytest.fixture
def norm_workspace(norm_task: Any, tmp_path: Path) -> Any:
    """A fresh workspace of the mini normalisation task."""
    from env._workspace import Workspace

    return Workspace.create(norm_task, tmp_path / "run" / "workspace")
