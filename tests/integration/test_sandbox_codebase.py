"""The real nanoGPT codebase through the sandbox: preflight, a tiny test, and the cache."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from sandbox import (
    DataPaths,
    EvaluationSetting,
    Executor,
    LocalBackend,
    TestRequest,
    preflight,
    render_feedback,
)

pytestmark = pytest.mark.integration

EDIT_MARK = "        x = x + self.mlp(self.ln_2(x))\n"


def _need(codebase_dir: Path, *names: str) -> None:
    missing = [n for n in names if not (codebase_dir / n).is_file()]
    if missing:
        pytest.skip(f"the nanoGPT codebase is not complete yet: missing {', '.join(missing)}")


def test_preflight_passes_the_unmodified_codebase(codebase_dir: Path) -> None:
    _need(codebase_dir, "custom_pretrain.py", "pb_config.py", "pb_data.py")
    result = preflight(codebase_dir, {})
    assert result.ok, result.error
    # a few seconds on an idle machine; generous because CI machines are shared
    assert result.elapsed_s < 30


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("        x = x + self.mlp(self.ln_2(x))[..., :-1]\n", "must match the size"),
        ("        x = x + self.mlp(self.ln_2(x)) * float('nan')\n", "non-finite loss"),
        (
            "        x = x + self.mlp(self.ln_2(x))\n        import not_a_module_pb\n",
            "ModuleNotFoundError",
        ),
    ],
)
def test_preflight_reports_a_crashing_edit_fast(
    codebase_dir: Path, edit: str, expected: str
) -> None:
    _need(codebase_dir, "custom_pretrain.py", "pb_config.py", "pb_data.py")
    source = (codebase_dir / "custom_pretrain.py").read_text()
    if EDIT_MARK not in source:
        pytest.skip("the Block.forward line this test edits has changed")
    start = time.monotonic()
    result = preflight(codebase_dir, {"custom_pretrain.py": source.replace(EDIT_MARK, edit)})
    assert not result.ok and expected in (result.error or ""), result.error
    assert time.monotonic() - start < 20
    assert "/tmp/" not in (result.error or "")  # paths are relative to the codebase


def test_preflight_checks_get_lr_over_the_real_range(codebase_dir: Path) -> None:
    _need(codebase_dir, "custom_pretrain.py", "pb_config.py", "pb_data.py")
    source = (codebase_dir / "custom_pretrain.py").read_text()
    header = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
    bad = source.replace(header, header + "    if it > 9000:\n        return float('inf')\n")
    result = preflight(codebase_dir, {"custom_pretrain.py": bad})
    assert (
        not result.ok and "get_lr(9001" in (result.error or "") and "full" in (result.error or "")
    )


def test_tiny_test_of_the_unmodified_codebase_then_cache(
    codebase_dir: Path, pb_data_paths: DataPaths, tmp_path: Path
) -> None:
    _need(codebase_dir, "custom_pretrain.py", "evaluate.py", "scripts/gpt_tiny.sh")
    settings = [
        EvaluationSetting(
            label="gpt-tiny", script="scripts/gpt_tiny.sh", kind="train", time_limit="0:10:00"
        )
    ]
    if (codebase_dir / "scripts" / "lm_eval_tiny.sh").is_file():
        settings.append(
            EvaluationSetting(
                label="lm-eval-tiny",
                script="scripts/lm_eval_tiny.sh",
                kind="lm_eval",
                time_limit="0:10:00",
                group=2,
                hidden=True,
                needs="gpt-tiny",
            )
        )
    # a snapshot: the codebase version is part of the cache key, and others may edit it meanwhile
    snapshot = tmp_path / "codebase"
    shutil.copytree(codebase_dir, snapshot, ignore=shutil.ignore_patterns("__pycache__"))
    request = TestRequest(
        run_id="sandbox-it",
        test_id="1",
        codebase_dir=snapshot,
        settings=settings,
        seeds=[42],
        profile="tiny",
        out_dir=tmp_path / "t1",
        data=pb_data_paths,
        env={"PB_MAX_ITERS": "30"},
    )
    executor = Executor(LocalBackend(), cache_dir=tmp_path / "cache")
    result = executor.run(request)
    assert result.status == "ok", f"{result.reason}\n{result.results[0].log_tail}"
    metrics = result.metrics(settings)
    for name in ("val_loss", "wikitext2_ppl", "lambada_ppl"):
        assert f"{name}_gpt-tiny" in metrics
    if len(settings) > 1:
        for name in ("arc_easy", "hellaswag", "piqa", "winogrande"):
            assert f"{name}_lm-eval-tiny" in metrics
    train = result.for_setting("gpt-tiny")[0]
    assert train.curve and train.resources.wall_s > 0
    text = render_feedback(result, settings, ["piqa_*", "winogrande_*"])
    assert "Final metrics (gpt-tiny): val_loss_gpt-tiny=" in text and "lm-eval" not in text

    start = time.monotonic()
    again = executor.run(request.model_copy(update={"out_dir": tmp_path / "t2"}))
    assert time.monotonic() - start < 1.0
    assert again.cached and again.metrics(settings) == metrics
