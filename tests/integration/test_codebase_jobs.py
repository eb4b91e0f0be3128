"""The codebase's jobs chained by hand as the harness chains them (no sandbox), for the eight
baselines: the same seed and code must give the same metrics as before the split into jobs.

Learning-rate task: schedule.sh on the edited copy -> train_tiny.sh on the ORIGINAL codebase with
the schedule job's table and the overrides as JSON -> eval_tiny.sh and lm_eval_tiny.sh in process.
Normalisation task: train_tiny.sh on the edited copy -> eval_tiny.sh and lm_eval_tiny.sh with the
model in logits workers (the causality check included). Each job reads the jobs it needs under
``$PB_NEEDS_DIR/<label>/``. The reference numbers (tests/_fixtures/codebase_job_reference.json)
were recorded with the code before the split: ``gpt_tiny.sh`` (train + evaluate) then
``lm_eval_tiny.sh``, PB_MAX_ITERS=20, OMP_NUM_THREADS=1, and re-recorded with the job chain
whenever the training data changes on purpose (``PB_UPDATE_JOB_REFERENCE=1`` writes what the
chains give instead of comparing; review the diff).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
from tests._fixtures.evaluation import logits_workers

pytestmark = pytest.mark.integration

REFERENCE_FILE = Path(__file__).parents[1] / "_fixtures" / "codebase_job_reference.json"
REFERENCE = json.loads(REFERENCE_FILE.read_text())
LR_TASK, NORM_TASK = "llm-pretrain-lr-schedule", "llm-pretrain-normalization"
BASELINES = [(task, name) for task, names in REFERENCE["baselines"].items() for name in names]
WORKERS = 2  # the fewest that evaluate an agent architecture: worker 0 and one probe worker


def run_job(
    code: Path, script: str, out: Path, env: dict[str, str], timeout: int = 600
) -> dict[str, Any]:
    """bash scripts/<script> in the codebase copy `code`, writing to `out`; its outputs."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", f"scripts/{script}"],
        cwd=code,
        env={**os.environ, **env, "PB_OUT_DIR": str(out), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{script} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    metrics = out / "metrics.json"
    details = out / "eval_details.json"
    return {
        "seconds": time.monotonic() - t0,
        "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None,
        "details": json.loads(details.read_text()) if details.is_file() else None,
    }


def run_chain(task: str, name: str, root: Path, data: DataPaths) -> dict[str, Any]:
    root.mkdir(parents=True)
    needs = root / "needs"
    base = {
        **REFERENCE["env"],
        "PB_DATA_DIR": str(data.data_dir),
        "PB_TOKENIZER_DIR": str(data.tokenizer_dir),
        "HF_HOME": str(root / "hf"),
        "PB_NEEDS_DIR": str(needs),
        "PB_WORKER_TIMEOUT": "120",
    }
    edited = copy_codebase(root / "edited", baseline_regions(task, name))
    # what the harness sends every job: CONFIG_OVERRIDES parsed from the region, as JSON
    overrides = codebase_module("pb_config").read_overrides({}, edited / "custom_pretrain.py")
    base["PB_CONFIG_OVERRIDES"] = json.dumps(overrides)
    out: dict[str, Any] = {}
    train_env = {k: v for k, v in base.items() if k != "PB_TOKENIZER_DIR"}
    if task == LR_TASK:
        schedule_env = {k: v for k, v in train_env.items() if k != "PB_DATA_DIR"}
        out["schedule"] = run_job(edited, "schedule.sh", needs / "schedule", schedule_env)
        train_env["PB_LR_SCHEDULE_JOB"] = "schedule"
        out["train"] = run_job(CODEBASE_DIR, "train_tiny.sh", needs / "train-tiny", train_env)
    else:
        out["train"] = run_job(edited, "train_tiny.sh", needs / "train-tiny", train_env)
    eval_env = {**base, "PB_CKPT_JOB": "train-tiny", "PB_EVAL_DATA_DIR": str(data.eval_data_dir)}
    lm_env = {k: v for k, v in eval_env.items() if k != "PB_DATA_DIR"}  # no training data
    for label, script, env in (
        ("gpt", "eval_tiny.sh", eval_env),
        ("lm", "lm_eval_tiny.sh", lm_env),
    ):
        if task == LR_TASK:
            out[label] = run_job(CODEBASE_DIR, script, root / label, env)
        else:
            worker_env = {"PB_DEVICE": "cpu", **REFERENCE["env"]}
            with logits_workers(
                needs / "train-tiny", root / f"workers-{label}", WORKERS, worker_env
            ) as workers:
                out[label] = run_job(CODEBASE_DIR, script, root / label, {**env, **workers})
    return out


@pytest.fixture(scope="module")
def chains(
    tmp_path_factory: pytest.TempPathFactory, pb_data_paths: DataPaths
) -> dict[tuple[str, str], Any]:
    root = tmp_path_factory.mktemp("chains")

    def one(baseline: tuple[str, str]) -> Any:
        try:
            return run_chain(*baseline, root / "__".join(baseline), pb_data_paths)
        except Exception as e:  # reported by the baseline's own test
            return e

    with ThreadPoolExecutor(2) as pool:  # two chains at a time: one process each, mostly
        return dict(zip(BASELINES, pool.map(one, BASELINES), strict=True))


@pytest.mark.parametrize(("task", "name"), BASELINES)
def test_baseline_metrics_are_unchanged(
    chains: dict[tuple[str, str], Any], task: str, name: str
) -> None:
    chain = chains[(task, name)]
    if isinstance(chain, Exception):
        raise chain
    if os.environ.get("PB_UPDATE_JOB_REFERENCE") == "1":
        record_reference(task, name, chain)
    want = REFERENCE["baselines"][task][name]
    got_train, got_lm = chain["gpt"]["metrics"], chain["lm"]["metrics"]
    assert got_train["kind"] == "train" and got_lm["kind"] == "lm_eval"
    assert got_train["data_fingerprint"] == got_lm["data_fingerprint"]  # training + eval sets
    train_fps = (chain[j]["details"]["train_data_fingerprint"] for j in ("gpt", "lm"))
    assert set(train_fps) == {want["data_fingerprint"]}
    m = got_train["metrics"]
    assert abs(m["val_loss"] - want["train"]["val_loss"]) <= 1e-6, (m, want["train"])
    # lm-eval's numbers: identical
    assert {k: m[k] for k in ("wikitext2_ppl", "lambada_ppl")} == {
        k: want["train"][k] for k in ("wikitext2_ppl", "lambada_ppl")
    }
    assert got_lm["metrics"] == want["lm_eval"]

    # how the model was run: the original architecture in process, or the agent's in workers
    for label in ("gpt", "lm"):
        details = chain[label]["details"]
        if task == LR_TASK:
            assert details["model"].startswith("in process") and details["causality"] is None
        else:
            assert details["model"] == "logits workers"
            causality = details["causality"]
            assert causality["workers"] == WORKERS
            assert causality["probed"] == min(64, causality["sequences"]) > 0


def record_reference(task: str, name: str, chain: dict[str, Any]) -> None:
    """Write this chain's numbers into the reference file (PB_UPDATE_JOB_REFERENCE=1)."""
    doc = json.loads(REFERENCE_FILE.read_text())
    train = chain["gpt"]["metrics"]["metrics"]
    doc["baselines"][task][name] = {
        "train": {k: train[k] for k in ("val_loss", "wikitext2_ppl", "lambada_ppl")},
        "lm_eval": chain["lm"]["metrics"]["metrics"],
        "data_fingerprint": chain["gpt"]["details"]["train_data_fingerprint"],
    }
    REFERENCE_FILE.write_text(json.dumps(doc, indent=2) + "\n")
    REFERENCE["baselines"][task][name] = doc["baselines"][task][name]


def test_the_chains_take_reasonable_time(chains: dict[tuple[str, str], Any]) -> None:
    seconds = {
        f"{task}/{name}": {k: round(v["seconds"], 1) for k, v in chain.items()}
        for (task, name), chain in chains.items()
        if not isinstance(chain, Exception)
    }
    print(json.dumps(seconds, indent=1))
    schedules = [s["schedule"] for s in seconds.values() if "schedule" in s]
    assert schedules and max(schedules) < 10  # ~1.3 s on an idle machine: importing torch
