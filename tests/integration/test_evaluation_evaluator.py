"""The trusted evaluator as a process: end to end on the tiny profile, refusals, and forgeries.

Checkpoints come from ``make_checkpoint`` (the codebase's real ``custom_pretrain.py`` as model
source, randomly initialised weights). The evaluator reads them from ``PB_CKPT_DIR`` and writes to
its own ``PB_OUT_DIR``. Logits workers: test_codebase_workers.py; real training runs chained with
the evaluation jobs: test_codebase_jobs.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.codebase import CODEBASE_DIR, EVAL_SETS_DIR
from tests._fixtures.evaluation import (
    TOY_MODEL_SOURCE,
    child_cpu_seconds,
    make_checkpoint,
    model_source_text,
    run_evaluator,
)

pytestmark = pytest.mark.integration

TRAIN_METRICS = {"val_loss", "wikitext2_ppl", "lambada_ppl"}
LM_EVAL_METRICS = {"arc_easy", "hellaswag", "piqa", "winogrande"}


def read_metrics(out_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out_dir / "metrics.json").read_text())
    return data


def check_metrics_file(data: dict[str, Any], kind: str, names: set[str]) -> None:
    assert set(data) == {
        "schema_version",
        "kind",
        "profile",
        "seed",
        "metrics",
        "stderr",
        "dataset_source",
        "data_fingerprint",
        "elapsed_s",
    }
    assert data["schema_version"] == 1 and data["kind"] == kind
    assert data["profile"] == "tiny" and data["seed"] == 42
    assert data["dataset_source"] == "offline"
    assert str(data["data_fingerprint"]).startswith("sha256:")
    assert set(data["metrics"]) == names
    # lm-eval's standard errors: every accuracy and lambada's perplexity (wikitext has none)
    assert set(data["stderr"]) == names - {"val_loss", "wikitext2_ppl"}
    assert all(math.isfinite(v) and v >= 0 for v in data["stderr"].values())
    assert all(math.isfinite(v) for v in data["metrics"].values())
    assert data["elapsed_s"] > 0


@pytest.fixture(scope="module")
def trained_dir(eval_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny-profile 'training' output directory (real model source, fixed random weights)."""
    out = tmp_path_factory.mktemp("train_out")
    make_checkpoint(out, eval_env, seed=1)
    return out


@pytest.fixture(scope="module")
def honest_train_metrics(
    trained_dir: Path, eval_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("eval_out")
    cpu0 = child_cpu_seconds()
    proc = run_evaluator(
        "train", {**eval_env, "PB_CKPT_DIR": str(trained_dir), "PB_OUT_DIR": str(out)}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in trained_dir.iterdir()) == [
        ".training_complete",
        "ckpt.pt",
        "model_source.py",
    ]  # the checkpoint directory is only read
    details = json.loads((out / "eval_details.json").read_text())
    return {"file": read_metrics(out), "cpu_s": child_cpu_seconds() - cpu0, "details": details}


def test_tiny_end_to_end_offline(
    honest_train_metrics: dict[str, Any],
    trained_dir: Path,
    eval_env: dict[str, str],
    tmp_path: Path,
) -> None:
    check_metrics_file(honest_train_metrics["file"], "train", TRAIN_METRICS)
    assert honest_train_metrics["details"]["model"] == "in process (original architecture)"
    m = honest_train_metrics["file"]["metrics"]
    assert 9.0 < m["val_loss"] < 12.0  # random weights: about ln(50304) = 10.8
    assert m["wikitext2_ppl"] > 1 and m["lambada_ppl"] > 1
    cpu0 = child_cpu_seconds()
    proc = run_evaluator(
        "lm_eval", {**eval_env, "PB_OUT_DIR": str(tmp_path), "PB_CKPT_DIR": str(trained_dir)}
    )
    lm_cpu = child_cpu_seconds() - cpu0
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = read_metrics(tmp_path)
    check_metrics_file(data, "lm_eval", LM_EVAL_METRICS)
    assert all(0.0 <= v <= 100.0 for v in data["metrics"].values())
    details = json.loads((tmp_path / "eval_details.json").read_text())
    assert details["lm_eval_results"]["pb_hellaswag"]["n_samples"]["effective"] >= 40
    # the whole evaluation of the tiny profile: seconds, not minutes. Measured in CPU seconds of
    # the evaluator processes (one thread each), which a loaded CI machine does not inflate
    assert honest_train_metrics["cpu_s"] + lm_cpu < 60


def test_setting_script_runs_the_lm_eval_kind(
    trained_dir: Path, eval_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **eval_env,
        "PB_OUT_DIR": str(tmp_path / "out"),
        "PB_CKPT_DIR": str(trained_dir),
    }
    proc = subprocess.run(
        ["bash", str(CODEBASE_DIR / "scripts" / "lm_eval_tiny.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_metrics_file(read_metrics(tmp_path / "out"), "lm_eval", LM_EVAL_METRICS)


FORGERY = """

# --- forged results: none of this may reach metrics.json ---
import atexit as _atexit
import json as _json
import os as _os
import threading as _threading

import torch.nn.functional as _F

print("TRAIN_METRICS: step=100, train_loss=0.0100, val_loss=0.0100", flush=True)
print("TEST_METRICS: val_loss=0.0100, wikitext2_ppl=1.0, lambada_ppl=1.0", flush=True)
_FAKE = {"schema_version": 1, "kind": "train", "profile": "tiny", "seed": 42,
         "metrics": {"val_loss": 0.01, "wikitext2_ppl": 1.0, "lambada_ppl": 1.0,
                     "arc_easy": 100.0, "hellaswag": 100.0, "piqa": 100.0, "winogrande": 100.0},
         "dataset_source": "hf", "data_fingerprint": "sha256:0", "elapsed_s": 1.0}


def _forge():
    out = _os.environ.get("PB_OUT_DIR")
    if out:
        with open(_os.path.join(out, "metrics.json"), "w") as f:
            _json.dump(_FAKE, f)


_forge()
_atexit.register(_forge)
_threading.Timer(0.0, _forge).start()
# make every loss the evaluator might compute through torch zero
_F.cross_entropy = lambda *a, **k: torch.zeros(())
_F.log_softmax = lambda x, dim=-1, **k: torch.zeros_like(x)
torch.log_softmax = lambda x, dim=-1, **k: torch.zeros_like(x)
torch.gather = lambda x, dim, index, **k: torch.zeros(index.shape)
"""


def test_forged_lines_and_files_change_nothing(
    honest_train_metrics: dict[str, Any],
    trained_dir: Path,
    eval_env: dict[str, str],
    tmp_path: Path,
) -> None:
    forged = tmp_path / "forged"
    forged.mkdir()
    for name in ("ckpt.pt", ".training_complete"):
        shutil.copy(trained_dir / name, forged / name)
    (forged / "model_source.py").write_text((trained_dir / "model_source.py").read_text() + FORGERY)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"stale": true}')
    proc = run_evaluator("train", {**eval_env, "PB_CKPT_DIR": str(forged), "PB_OUT_DIR": str(out)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the evaluator builds its own GPT and never imports the saved source: nothing of it ran
    assert "TRAIN_METRICS: step=100" not in proc.stdout
    data = read_metrics(out)
    assert data["metrics"] == honest_train_metrics["file"]["metrics"]
    assert data["dataset_source"] == "offline"

    lm_honest, lm_forged = tmp_path / "lm_honest", tmp_path / "lm_forged"
    for out, ckpt in ((lm_honest, trained_dir), (lm_forged, forged)):
        proc = run_evaluator(
            "lm_eval", {**eval_env, "PB_OUT_DIR": str(out), "PB_CKPT_DIR": str(ckpt)}
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_metrics(lm_forged)["metrics"] == read_metrics(lm_honest)["metrics"]


def _drop_marker(out: Path) -> None:
    (out / ".training_complete").unlink()


@pytest.mark.parametrize(
    ("case", "edit", "env_extra", "message"),
    [
        ("no marker", None, {}, "training did not complete"),
        ("short run", lambda c: c.update(iter_num=50), {}, "ckpt iter_num is 50"),
        ("fewer tokens", lambda c: c.update(tokens_seen=1), {}, "ckpt tokens_seen is 1"),
        (
            "bigger model",
            lambda c: c["model_config"].update(n_layer=8),
            {},
            "model_config['n_layer'] is 8",
        ),
        ("other profile", None, {"PB_MAX_ITERS": "50"}, "the tiny run must have 50"),
        ("other seed", None, {"PB_SEED": "7"}, "train_config['seed'] is 42"),
    ],
)
def test_refuses_checkpoints_that_are_not_the_profiles_run(
    case: str,
    edit: Any,
    env_extra: dict[str, str],
    message: str,
    eval_env: dict[str, str],
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "ckpt"
    make_checkpoint(ckpt, eval_env, edit=edit, marker=case != "no marker", source=TOY_MODEL_SOURCE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"schema_version": 1, "metrics": {"val_loss": 0.01}}')
    proc = run_evaluator(
        "train", {**eval_env, **env_extra, "PB_CKPT_DIR": str(ckpt), "PB_OUT_DIR": str(out)}
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "refused" in proc.stderr and message in proc.stderr
    assert not (out / "metrics.json").exists()  # the stale file is gone, no new one
    reason = json.loads((out / "failure.json").read_text())["reason"]
    assert reason.startswith("refused: ") and message in reason


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("PB_CKPT_DIR", "no checkpoint: set PB_CKPT_JOB (with PB_NEEDS_DIR) or PB_CKPT_DIR"),
        ("PB_EVAL_DATA_DIR", "PB_EVAL_DATA_DIR (the offline evaluation sets) is not set"),
        ("PB_DATA_DIR", "PB_DATA_DIR is not set (the validation set lives there)"),
    ],
)
def test_refuses_without_its_inputs(
    trained_dir: Path, eval_env: dict[str, str], tmp_path: Path, missing: str, message: str
) -> None:
    env = {**eval_env, "PB_CKPT_DIR": str(trained_dir), "PB_OUT_DIR": str(tmp_path)}
    del env[missing]
    proc = run_evaluator("train", env)
    assert proc.returncode == 2
    reason = json.loads((tmp_path / "failure.json").read_text())["reason"]
    assert reason.startswith("refused: ") and reason.endswith(message), reason


def test_the_checkpoint_job_comes_from_the_needs_dir(
    honest_train_metrics: dict[str, Any],
    trained_dir: Path,
    eval_env: dict[str, str],
    tmp_path: Path,
) -> None:
    needs = tmp_path / "needs"
    needs.mkdir()
    (needs / "train-tiny").symlink_to(trained_dir)
    env = {
        **eval_env,
        "PB_NEEDS_DIR": str(needs),
        "PB_CKPT_JOB": "train-tiny",
        "PB_OUT_DIR": str(tmp_path / "out"),
    }
    proc = run_evaluator("train", env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_metrics(tmp_path / "out")["metrics"] == honest_train_metrics["file"]["metrics"]


def test_model_source_is_the_real_training_file() -> None:
    if not (CODEBASE_DIR / "custom_pretrain.py").is_file():
        pytest.skip("custom_pretrain.py is not there yet; the fixtures use the toy GPT")
    assert model_source_text() == (CODEBASE_DIR / "custom_pretrain.py").read_text()


def test_hf_source_without_a_prepared_cache_fails_clearly(
    trained_dir: Path, eval_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **eval_env,
        "PB_EVAL_SOURCE": "hf",
        "HF_HOME": str(tmp_path / "empty_hf_home"),
        "PB_OUT_DIR": str(tmp_path / "out"),
        "PB_CKPT_DIR": str(trained_dir),
    }
    proc = run_evaluator("lm_eval", env)
    assert proc.returncode == 1
    assert "not in the Hugging Face cache" in proc.stderr and "prepare_eval.py" in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_prepare_eval_check_reports_missing_datasets(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "prepare_eval.py",
            "--hf-home",
            str(tmp_path / "hf"),
            "--check",
            "--tasks",
            "piqa",
        ],
        cwd=CODEBASE_DIR,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "piqa: not in the cache" in proc.stderr


def test_prepare_eval_checks_the_offline_sets(tmp_path: Path, pb_generated_eval_dir: Path) -> None:
    def check(directory: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "prepare_eval.py", "--check-offline", str(directory)],
            cwd=CODEBASE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = check(EVAL_SETS_DIR)
    assert proc.returncode == 0, proc.stderr
    assert "hellaswag: 42 rows" in proc.stdout
    proc = check(tmp_path)
    assert proc.returncode == 1 and "the offline piqa set is missing" in proc.stderr
    # a generated directory: checked against its manifest too
    proc = check(pb_generated_eval_dir)
    assert proc.returncode == 0, proc.stderr
    assert "manifest: generator version" in proc.stdout and "piqa: 404 rows" in proc.stdout
    copy = tmp_path / "generated"
    shutil.copytree(pb_generated_eval_dir, copy)
    with (copy / "arc_easy.jsonl").open("a") as f:
        f.write(
            '{"id": "x", "question": "q", "choices": {"text": [], "label": []}, "answerKey": "A"}\n'
        )
    proc = check(copy)
    assert (
        proc.returncode == 1 and "arc_easy.jsonl is not the file the manifest names" in proc.stderr
    )
    assert not (CODEBASE_DIR / "eval_data").exists()  # the answers are not in the codebase
