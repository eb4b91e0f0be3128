"""`runner run --region NAME=FILE`: a researcher's hand-written method, edited in through the
same edit path as an agent's edits, tested, submitted and recorded as type ``method``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from leaderboard import Store
from runner.cli import app
from tests._fixtures.worlds import TaskWorld

pytestmark = pytest.mark.integration

cli = CliRunner()

LINEAR = """\
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # warmup, then a straight line down to min_lr
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    frac = min(1.0, (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters))
    return learning_rate + frac * (min_lr - learning_rate)
"""


def _only_run(home: Path) -> dict[str, Any]:
    (run,) = sorted((home / "runs").iterdir())
    return json.loads((run / "run.json").read_text())


def test_a_hand_written_schedule_is_edited_in_tested_and_recorded_as_a_method(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    schedule = tmp_path / "linear_decay.py"
    schedule.write_text(LINEAR)
    overrides = tmp_path / "overrides.py"
    overrides.write_text("CONFIG_OVERRIDES = {'learning_rate': 0.02}\n")
    db = tmp_path / "lb.db"
    args = ["run", "--task", "fake-lr", "--region", f"get_lr={schedule}"]
    args += ["--region", f"config_overrides={overrides}", "--db", str(db), "--quiet"]
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    info = _only_run(runner_env.home)
    assert info["config"]["agent"] == "method:linear_decay"  # the first file's stem
    assert info["status"] == "finished" and info["max_tests"] == 1
    with Store(f"sqlite:///{db}") as store:
        (run_id,) = store.run_ids()
        record = store.get_run(run_id)
    assert record is not None
    assert record.type == "method" and record.method == "linear_decay" and not record.reference
    assert record.model is None and record.origin == "own"
    assert record.regions["get_lr"].rstrip("\n") == LINEAR.rstrip("\n")
    assert "{'learning_rate': 0.02}" in record.regions["config_overrides"]
    assert "+    return learning_rate + frac * (min_lr - learning_rate)" in record.diff
    assert record.result_status() == "ok" and record.final is not None
    # the edits went through the edit tool: charged, in the transcript, like an agent's
    tools = [e["name"] for e in record.transcript or [] if e["kind"] == "tool_call"]
    assert tools == ["edit", "edit", "test", "submit"]
    # the same method again is the same result: not recorded twice
    again = cli.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"identical to run {run_id}, not recorded" in again.output
    with Store(f"sqlite:///{db}") as store:
        assert store.run_ids() == [run_id]


def test_a_method_whose_edit_is_refused_fails_with_the_edit_tools_words(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def get_lr(it):\n    return 1.0\n")
    db = tmp_path / "lb.db"
    result = cli.invoke(
        app,
        [
            "run",
            "--task",
            "fake-lr",
            "--region",
            f"get_lr={wrong}",
            "--label",
            "wrong-sig",
            "--db",
            str(db),
            "--quiet",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "method:wrong-sig: failed: method 'wrong-sig': the edit of region 'get_lr'" in (
        result.output
    )
    assert "the signature must stay get_lr(it, warmup_iters" in result.output
    info = _only_run(runner_env.home)
    assert info["status"] == "failed"  # the method's fault, not the harness's


def test_a_method_that_escapes_its_region_is_refused_by_the_code_policy(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "import os\n\ndef get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return float(os.environ.get('LR', learning_rate))\n"
    )
    result = cli.invoke(
        app, ["run", "--task", "fake-lr", "--region", f"get_lr={sneaky}", "--quiet"]
    )
    assert result.exit_code == 1, result.output
    assert "method 'sneaky': the edit of region 'get_lr'" in result.output
    assert _only_run(runner_env.home)["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--region", "lr=X"],
            "has no editable region 'lr'; its regions are: get_lr, config_overrides",
        ),
        (["--region", "get_lr"], "expected NAME=FILE"),
        (["--region", "get_lr=/no/such/file.py"], "cannot read /no/such/file.py"),
        (["--region", "get_lr=X", "--region", "get_lr=X"], "names region 'get_lr' twice"),
        (["--region", "get_lr=X", "--agent", "baseline:cosine"], "leave out --agent"),
        (["--label", "x"], "give its --region NAME=FILE too"),
        (["--region", "get_lr=X", "--label", "../etc"], "--label '../etc'"),
        (["--region", "get_lr=EMPTY"], "is empty"),
    ],
)
def test_bad_regions_and_labels_are_refused_before_anything_runs(
    runner_env: TaskWorld, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "s.py").write_text(LINEAR)
    (tmp_path / "e.py").write_text("\n\n")
    args = [
        a.replace("=X", f"={tmp_path / 's.py'}").replace("=EMPTY", f"={tmp_path / 'e.py'}")
        for a in args
    ]
    result = cli.invoke(app, ["run", "--task", "fake-lr", *args, "--quiet"])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert not (runner_env.home / "runs").exists() or not any((runner_env.home / "runs").iterdir())


# The real codebase at the tiny profile: tests/integration/test_runner_records.py evaluates a
# hand-written schedule with --region and exports it (one run serves both checks).
