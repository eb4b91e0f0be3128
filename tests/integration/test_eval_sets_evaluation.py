"""The trusted evaluator on the generated offline evaluation sets (make_eval_sets.py): lm-eval's
standard errors in metrics.json, a dataset identity that names the sets, and an untrained model
at chance.

The checkpoint is the tiny profile's model with fixed random weights (``make_checkpoint``): it
knows nothing of the text, so on sets whose wrong answers are as long as the right ones it must
score chance, and its accuracies say whether the sets reward anything but language modelling.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.codebase import EVAL_SETS_DIR
from tests._fixtures.evaluation import make_checkpoint, run_evaluator

pytestmark = pytest.mark.integration

CHANCE = {"arc_easy": 25.0, "hellaswag": 25.0, "piqa": 50.0, "winogrande": 50.0}


@pytest.fixture(scope="module")
def untrained_dir(eval_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("untrained")
    make_checkpoint(out, eval_env, seed=1)
    return out


def evaluate(kind: str, env: dict[str, str], ckpt: Path, sets: Path, out: Path) -> dict[str, Any]:
    environ = {**env, "PB_CKPT_DIR": str(ckpt), "PB_OUT_DIR": str(out)}
    proc = run_evaluator(kind, {**environ, "PB_EVAL_DATA_DIR": str(sets)}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    doc["details"] = json.loads((out / "eval_details.json").read_text())
    return doc


def test_lm_eval_job_reports_standard_errors_and_chance(
    eval_env: dict[str, str], untrained_dir: Path, pb_generated_eval_dir: Path, tmp_path: Path
) -> None:
    manifest = json.loads((pb_generated_eval_dir / "manifest.json").read_text())
    doc = evaluate("lm_eval", eval_env, untrained_dir, pb_generated_eval_dir, tmp_path / "lm")
    assert set(doc["stderr"]) == set(CHANCE)
    for name, chance in CHANCE.items():
        n = manifest["sets"][name]["items"]
        acc, se = doc["metrics"][name], doc["stderr"][name]
        # lm-eval's closed form for a mean (sample standard deviation / sqrt(n)), in points
        p = acc / 100
        assert se == pytest.approx(100 * math.sqrt(p * (1 - p) / (n - 1)), rel=1e-6)
        assert se <= 2.5, (name, se)
        # an untrained model has nothing but length and position to go on: chance
        assert abs(acc - chance) <= 3 * se, (name, acc, se)
    assert doc["details"]["eval_data_fingerprint"] == manifest["fingerprint"]


def test_train_job_identity_covers_the_evaluation_sets(
    eval_env: dict[str, str], untrained_dir: Path, pb_generated_eval_dir: Path, tmp_path: Path
) -> None:
    new = evaluate("train", eval_env, untrained_dir, pb_generated_eval_dir, tmp_path / "new")
    old = evaluate("train", eval_env, untrained_dir, EVAL_SETS_DIR, tmp_path / "old")
    assert set(new["stderr"]) == {"lambada_ppl"}  # bootstrapped; word perplexity has none
    assert new["stderr"]["lambada_ppl"] > 0
    # same training data, other evaluation sets: another dataset identity
    assert new["details"]["train_data_fingerprint"] == old["details"]["train_data_fingerprint"]
    assert new["data_fingerprint"] != old["data_fingerprint"]
    assert new["metrics"]["val_loss"] == old["metrics"]["val_loss"]
