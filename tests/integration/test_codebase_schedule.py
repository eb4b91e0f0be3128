"""The jobs that run agent code before training: the schedule job (get_lr -> schedule.json) and
the preflight job (import, overrides, a few micro steps, causality). Their failure.json reason is
all the agent sees of them: the error and the lines of custom_pretrain.py only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox import DataPaths
from tests._fixtures.codebase import (
    CODEBASE_DIR,
    baseline_regions,
    codebase_module,
    copy_codebase,
)

pytestmark = pytest.mark.integration

cp = codebase_module("custom_pretrain")
pb_config = codebase_module("pb_config")


def run_script(
    code: Path, script: str, out: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], str | None]:
    """(process, failure reason or None) of bash scripts/<script> in the copy `code`."""
    proc = subprocess.run(
        ["bash", f"scripts/{script}"],
        cwd=code,
        env={
            **os.environ,
            "PB_PROFILE": "tiny",
            "PB_OUT_DIR": str(out),
            "TMPDIR": str(out.parent),
            "PYTHON": sys.executable,
            "OMP_NUM_THREADS": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    failure = out / "failure.json"
    return proc, json.loads(failure.read_text())["reason"] if failure.is_file() else None


def schedule(tmp_path: Path, get_lr: str | None = None, **env: str) -> Any:
    code = copy_codebase(tmp_path / "code", {"get_lr": get_lr} if get_lr else None)
    return run_script(code, "schedule.sh", tmp_path / "out", **env)


def assert_agent_reason(reason: str | None, tmp_path: Path) -> str:
    """A reason an agent may read: capped, no absolute paths, no frames of our programs."""
    assert reason is not None
    assert len(reason) <= 2000
    assert str(tmp_path) not in reason and sys.prefix not in reason
    for ours in ("schedule.py", "preflight.py", "pb_jobs.py", "pb_config.py", "site-packages"):
        assert ours not in reason, reason
    return reason


# --- the schedule job ---------------------------------------------------------------------------


def test_the_table_is_get_lr_of_every_iteration_of_every_profile(tmp_path: Path) -> None:
    proc, reason = schedule(
        tmp_path, PB_MAX_ITERS="20", PB_CONFIG_OVERRIDES='{"learning_rate": 0.001}'
    )
    assert proc.returncode == 0 and reason is None, proc.stderr
    doc = json.loads((tmp_path / "out" / "schedule.json").read_text())
    assert doc["schema_version"] == 1 and list(doc["profiles"]) == ["tiny", "small", "full"]
    for profile, entry in doc["profiles"].items():
        environ = {"PB_PROFILE": profile, **({"PB_MAX_ITERS": "20"} if profile == "tiny" else {})}
        cfg = pb_config.apply_overrides(
            pb_config.resolve_run_config(environ), {"learning_rate": 0.001}
        )
        args = [cfg[k] for k in pb_config.SCHEDULE_ARGS]
        assert {k: entry[k] for k in ("max_iters", *pb_config.SCHEDULE_ARGS)} == {
            k: cfg[k] for k in ("max_iters", *pb_config.SCHEDULE_ARGS)
        }
        assert entry["lr"] == [cp.get_lr(it, *args) for it in range(cfg["max_iters"])]
        # what training reads back, checked, is exactly that table
        assert pb_config.load_lr_table(tmp_path / "out" / "schedule.json", cfg) == entry["lr"]
    assert len(doc["profiles"]["tiny"]["lr"]) == 20 and len(doc["profiles"]["full"]["lr"]) == 12030


STATEFUL = """_CALLS = []


def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # stateful: counts its calls, and insists on 0, 1, 2, ... in order
    if it != len(_CALLS):
        raise RuntimeError(f"called with it={it} after {len(_CALLS)} calls")
    _CALLS.append(it)
    return learning_rate * len(_CALLS) / lr_decay_iters
"""


def test_a_stateful_get_lr_is_called_in_order_from_a_fresh_start(tmp_path: Path) -> None:
    proc, reason = schedule(tmp_path, STATEFUL, PB_MAX_ITERS="20")
    assert proc.returncode == 0 and reason is None, proc.stderr
    doc = json.loads((tmp_path / "out" / "schedule.json").read_text())
    for entry in doc["profiles"].values():  # each profile starts over from call 0
        n = entry["max_iters"]
        assert entry["lr"] == [entry["learning_rate"] * (it + 1) / n for it in range(n)]


FAILS_IN_FULL = """def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if lr_decay_iters > 10000:
        return helper(learning_rate)
    return learning_rate


def helper(lr):
    return lr / 0
"""


def test_an_error_names_the_iteration_and_profile_with_the_agents_lines(tmp_path: Path) -> None:
    proc, reason = schedule(tmp_path, FAILS_IN_FULL, PB_MAX_ITERS="20")
    assert proc.returncode == 1 and not (tmp_path / "out" / "schedule.json").exists()
    reason = assert_agent_reason(reason, tmp_path)
    start = (
        (CODEBASE_DIR / "custom_pretrain.py")
        .read_text()
        .splitlines()
        .index("# ── EDITABLE REGION START: get_lr ──")
    )
    assert reason.splitlines() == [
        "get_lr raised ZeroDivisionError at iteration 0 (profile full): float division by zero",
        "Traceback (custom_pretrain.py only, most recent call last):",
        f'  File "custom_pretrain.py", line {start + 4}, in get_lr',
        "    return helper(learning_rate)",
        f'  File "custom_pretrain.py", line {start + 9}, in helper',
        "    return lr / 0",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"0.001"', "returned str '0.001', not a number"),
        ("None", "returned NoneType None, not a number"),
        ("it > 3", "returned bool False, not a number"),
        ('float("nan") if it == 7 else 1e-3', "get_lr(7, 0, 20, 0.002, 0.0002) returned nan"),
        ("-learning_rate", "returned -0.002 (profile tiny, max_iters 20)"),
        ("[learning_rate]", "returned list [0.002], not a number"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, value: str, message: str) -> None:
    body = f"def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return {value}\n"
    proc, reason = schedule(tmp_path, body, PB_MAX_ITERS="20")
    assert proc.returncode == 1
    assert message in assert_agent_reason(reason, tmp_path), reason


def test_a_number_like_value_is_accepted(tmp_path: Path) -> None:
    body = (
        "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return torch.tensor(learning_rate, dtype=torch.float64)  # float() takes it\n"
    )
    proc, reason = schedule(tmp_path, body, PB_MAX_ITERS="20")
    assert proc.returncode == 0 and reason is None, proc.stderr
    doc = json.loads((tmp_path / "out" / "schedule.json").read_text())
    assert doc["profiles"]["tiny"]["lr"] == [0.002] * 20


def test_import_errors_and_bad_overrides_are_the_agents_reason(tmp_path: Path) -> None:
    body = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return 1e-3\n\n\nundefined_name + 1\n"
    proc, reason = schedule(tmp_path / "a", body)
    assert proc.returncode == 1
    lines = assert_agent_reason(reason, tmp_path).splitlines()
    assert (
        lines[0]
        == "importing custom_pretrain.py raised NameError: name 'undefined_name' is not defined"
    )
    assert lines[-1] == "    undefined_name + 1"
    # a warmup longer than the tiny run, valid for the others: the tiny profile refuses it
    proc, reason = schedule(
        tmp_path / "b", PB_MAX_ITERS="20", PB_CONFIG_OVERRIDES='{"warmup_iters": 50}'
    )
    assert proc.returncode == 1
    assert assert_agent_reason(reason, tmp_path).endswith("(profile tiny, max_iters 20)")
    assert "warmup_iters" in reason


def test_the_schedule_job_is_fast(tmp_path: Path) -> None:
    import time

    t0 = time.monotonic()
    proc, _ = schedule(tmp_path)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    print(f"schedule job: {seconds:.2f} s (tiny 100 + small 4750 + full 12030 calls of get_lr)")
    assert seconds < 10  # about 1.2 s on an idle machine, nearly all of it importing torch


# --- the preflight job ----------------------------------------------------------------------------


def preflight(tmp_path: Path, regions: dict[str, str] | None = None, **env: str) -> Any:
    code = copy_codebase(tmp_path / "code", regions)
    return run_script(code, "preflight.sh", tmp_path / "out", **env)


@pytest.mark.parametrize("baseline", ["layernorm", "rmsnorm_parallel"])
def test_preflight_passes_the_baselines(tmp_path: Path, baseline: str) -> None:
    regions = baseline_regions("llm-pretrain-normalization", baseline)
    proc, reason = preflight(tmp_path, regions, PB_CONFIG_OVERRIDES='{"warmup_iters": 50}')
    assert proc.returncode == 0 and reason is None, proc.stderr[-3000:]
    assert "preflight: passed" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # its data went to TMPDIR
    assert not list(tmp_path.glob("pb_preflight_*"))  # and is gone


BLOCK = """class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)

    def forward(self, x):
{body}
"""


@pytest.mark.parametrize(
    ("case", "regions", "first_line"),
    [
        (
            "raises in forward",
            {"block": BLOCK.format(body="        return self.attn(self.ln_1(x)).view(-1, 7)")},
            "training at the micro profile raised RuntimeError: shape '[-1, 7]' is invalid",
        ),
        (
            "does not import",
            {"layernorm": "class LayerNorm(nn.Module, Undefined):\n    pass\n"},
            "importing custom_pretrain.py raised NameError: name 'Undefined' is not defined",
        ),
        (
            "not causal",
            {"block": BLOCK.format(body="        return x + self.attn(self.ln_1(x)).flip(1)")},
            "the model is not causal: with the tokens from position 1 on changed",
        ),
        (
            "diverges",
            {"block": BLOCK.format(body="        return x + self.attn(self.ln_1(x)) * math.inf")},
            "training at the micro profile stopped: non-finite loss at step 1",
        ),
        (
            "a bad override",
            {"config_overrides": 'CONFIG_OVERRIDES = {"learning_rate": 3}\n'},
            "CONFIG_OVERRIDES['learning_rate'] = 3: must be a finite number in (0, 1]",
        ),
    ],
)
def test_preflight_failures_are_the_agents_reason(
    tmp_path: Path, case: str, regions: dict[str, str], first_line: str
) -> None:
    proc, reason = preflight(tmp_path, regions)
    assert proc.returncode == 1, proc.stdout[-2000:]
    reason = assert_agent_reason(reason, tmp_path)
    assert reason.splitlines()[0].startswith(first_line), reason
    if case == "raises in forward":
        assert '  File "custom_pretrain.py", line' in reason and ".view(-1, 7)" in reason


# --- training with the table ---------------------------------------------------------------------


def train_micro(code: Path, out: Path, data: DataPaths, **env: str) -> Any:
    return subprocess.run(
        [sys.executable, "custom_pretrain.py"],
        cwd=code,
        env={
            **os.environ,
            "PB_PROFILE": "micro",
            "PB_MAX_ITERS": "4",
            "PB_DATA_DIR": str(data.data_dir),
            "PB_OUT_DIR": str(out),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_training_uses_the_table_and_never_calls_get_lr(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    needs = tmp_path / "needs"
    scheduled = copy_codebase(tmp_path / "edited", {"get_lr": STATEFUL})
    proc, _ = run_script(
        scheduled, "schedule.sh", needs / "schedule", PB_PROFILE="micro", PB_MAX_ITERS="4"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((needs / "schedule" / "schedule.json").read_text())
    table = doc["profiles"]["micro"]["lr"]
    assert len(table) == 4
    # the training copy's get_lr would raise: with the table it is never called
    raising = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    raise RuntimeError('called')\n"
    code = copy_codebase(tmp_path / "train_code", {"get_lr": raising})
    env = {"PB_NEEDS_DIR": str(needs), "PB_LR_SCHEDULE_JOB": "schedule"}
    proc = train_micro(code, tmp_path / "train", pb_data_paths, **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = [
        json.loads(line) for line in (tmp_path / "train" / "curve.jsonl").read_text().splitlines()
    ]
    assert [row["lr"] for row in curve] == table
    import torch

    tc = torch.load(tmp_path / "train" / "ckpt.pt", weights_only=True)["train_config"]
    assert tc["lr_schedule"] == str(needs / "schedule" / "schedule.json")
    # a table that does not fit the run stops training before its first step
    doc["profiles"]["micro"]["lr"] = table[:3]
    (needs / "schedule" / "schedule.json").write_text(json.dumps(doc))
    proc = train_micro(code, tmp_path / "bad", pb_data_paths, **env)
    assert proc.returncode == 1
    reason = json.loads((tmp_path / "bad" / "failure.json").read_text())["reason"]
    assert reason == (
        "the learning-rate table of job schedule: schedule.json: the micro table must hold 4 "
        "learning rates, one per iteration; it holds 3"
    )
    assert (
        not (tmp_path / "bad" / "curve.jsonl").exists()
        or not (tmp_path / "bad" / "curve.jsonl").read_text()
    )
    # and without the variable, get_lr is what it always was: called, here raising
    proc = train_micro(code, tmp_path / "plain", pb_data_paths)
    assert proc.returncode == 1 and "RuntimeError: called" in proc.stderr
