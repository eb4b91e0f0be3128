"""The export → import round trip of a real tiny method run: `runner run --region` on
llm-pretrain-lr-schedule (real codebase, local sandbox, one final seed), `runner export`, then
`runner import` into a second store that holds an own run of the same comparable group; and a
tampered copy of the same record refused with the store unchanged. About a minute idle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from leaderboard import Store
from runner._record_export import rebuilt_sources
from runner._record_format import committed_schema
from tests.integration.test_runner_e2e import REPO, TASK, _prerequisites

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TRAPEZOID = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
    "    if it < warmup_iters:\n"
    "        return learning_rate * (it + 1) / (warmup_iters + 1)\n"
    "    cooldown_start = int(0.6 * lr_decay_iters)\n"
    "    if it < cooldown_start:\n"
    "        return learning_rate\n"
    "    frac = min(1.0, (it - cooldown_start) / max(1, lr_decay_iters - cooldown_start))\n"
    "    return learning_rate + frac * (min_lr - learning_rate)\n"
)


def _runner(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_real_method_run_exports_and_imports(tmp_path: Path) -> None:
    if (why := _prerequisites()) is not None:
        pytest.skip(why)
    (tmp_path / "trapezoid.py").write_text(TRAPEZOID, encoding="utf-8")
    ran = _runner(
        tmp_path,
        *("run", "--task", TASK, "--region", "get_lr=trapezoid.py", "--label", "trapezoid-rt"),
        *("--profile", "tiny", "--final-seeds", "42", "--run-dir", str(tmp_path / "runs")),
        *("--db", str(tmp_path / "a.db"), "--quiet"),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    with Store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        (run_id,) = store.run_ids()
        original = store.get_run(run_id)
    assert original is not None and original.result_status() == "ok"
    # a hand-written method at the real tiny profile: recorded as one, every setting evaluated
    assert original.type == "method" and original.method == "trapezoid-rt"
    assert original.final is not None and original.final.status == "ok"
    (row,) = [r for r in original.final.per_seed if r.setting == "gpt-tiny"]
    assert row.seed == 42 and 3.0 < row.metrics["val_loss_gpt-tiny"] < 8.0
    assert any(r.setting == "lm-eval-tiny" for r in original.final.per_seed)

    exported = _runner(
        tmp_path, "export", run_id, "--format", "record", "--out", "rec", "--db", "a.db"
    )
    assert exported.returncode == 0, exported.stderr
    record = tmp_path / "rec"
    data = json.loads((record / "submission.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, committed_schema())
    assert (record / "logs" / "train_seed42.log").stat().st_size > 0
    assert "TRAIN_METRICS" in (record / "logs" / "train_seed42.log").read_text(encoding="utf-8")
    assert (record / "code" / "get_lr.py").read_text(encoding="utf-8") == TRAPEZOID
    as_run = (record / "code" / "custom_pretrain.py").read_text(encoding="utf-8")
    assert "cooldown_start" in as_run
    # the session's snapshot and the file rebuilt from the regions (no run dir) agree
    assert rebuilt_sources(original) == {"custom_pretrain.py": as_run}
    readme = (record / "README.md").read_text(encoding="utf-8")
    assert (
        "runner run --task llm-pretrain-lr-schedule --region get_lr=code/get_lr.py "
        "--label trapezoid-rt --profile tiny --data offline --seeds 42 --final-seeds 42"
    ) in readme
    assert "regions changed from the original code: `get_lr`\n" in readme
    assert "| piqa † | lm-eval-tiny |" in readme  # hidden metrics shown after the run

    # the second store holds an own result of the same group (a copy of the real run's record)
    with Store(f"sqlite:///{tmp_path / 'b.db'}") as other:
        other.record(original.model_copy(update={"run_id": "own-copy", "method": "mine"}))
    imported = _runner(tmp_path, "import", "rec", "--db", "b.db")
    assert imported.returncode == 0, imported.stderr
    assert f"{run_id}: inserted" in imported.stdout
    again = _runner(tmp_path, "import", "rec", "--db", "b.db")
    assert f"{run_id}: unchanged" in again.stdout
    with Store(f"sqlite:///{tmp_path / 'b.db'}") as other:
        copy = other.get_run(run_id)
        results_before = other.count_results()
    assert copy is not None and copy.origin == "imported"
    assert [(r.setting, r.seed, r.metrics, r.stderr) for r in copy.result_rows()] == [
        (r.setting, r.seed, r.metrics, r.stderr) for r in original.result_rows()
    ]

    shown = _runner(tmp_path, "leaderboard", "show", "--db", "b.db", "--json")
    tables = json.loads(shown.stdout)
    (table,) = tables  # one comparable group: the import's fields match the own run's
    origins = {row["run_id"]: row["origin"] for row in table["rows"]}
    assert origins == {"own-copy": "own", run_id: "imported"}
    assert "(imported)" in _runner(tmp_path, "leaderboard", "show", "--db", "b.db").stdout

    # a tampered log: refused, exit 2, nothing stored
    tampered = tmp_path / "tampered"
    shutil.copytree(record, tampered)
    log = tampered / "logs" / "train_seed42.log"
    log.write_text(log.read_text(encoding="utf-8").replace("val_loss", "val_lost"))
    refused = _runner(tmp_path, "import", "tampered", "--db", "fresh.db")
    assert refused.returncode == 2
    assert "logs/train_seed42.log: sha256" in refused.stderr
    assert not (tmp_path / "fresh.db").exists()
    # an own run is never overwritten by an import of it
    back = _runner(tmp_path, "import", "rec", "--db", "a.db")
    assert back.returncode == 2 and "ran itself" in back.stderr
    with Store(f"sqlite:///{tmp_path / 'b.db'}") as other:
        assert other.count_results() == results_before
