"""Fake task worlds: task folders with their own codebase, built in a temporary directory."""

from __future__ import annotations

from pathlib import Path

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
      - {label: train-tiny, script: scripts/train_tiny.sh, needs: [schedule], show_log: true, time_limit: "0:10:00"}
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

Change `get_lr` in `{file}` (lines {lines[get_lr]}) and `CONFIG_OVERRIDES`
(lines {lines[config_overrides]}). Model: {recipe[model]}, {recipe[max_iters]} iterations,
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
