"""A third task, written here as data only: its own codebase, a region that is not ``get_lr``,
its own profile names and jobs. It validates, shows, preflights and runs a test and its final
evaluation through the real executor on the local backend, with no change to harness code.

The codebase "trains" a one-parameter model with the agent's ``score_fn`` as its loss; the
trusted evaluation (original code) scores the trained weight on fixed points and writes
``metrics.json``. Nothing of nanoGPT, ``get_lr`` or the profiles tiny/small/full is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from env import Budgets, Session, Workspace, load_task, render_observation, validate_task_dir
from sandbox import DataPaths, Executor, LocalBackend, probe_host
from tests._fixtures.runner import prepare_fake_home
from tests._fixtures.worlds import TaskWorld, make_task_world

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = probe_host()
needs_sandbox = pytest.mark.skipif(
    bool(HOST.missing()), reason=f"this host cannot isolate jobs: {'; '.join(HOST.missing())}"
)

TASK_ID = "score-fit"
FILE = "scorer/fit.py"  # the agent's name: the task's package + the codebase path

FIT = '''"""Fit one weight w so that w * x matches y, with the loss the agent writes."""
import json
import os

POINTS = [(1.0, 3.0), (2.0, 6.0), (3.0, 9.0)]
STEPS = {"mini": 40, "maxi": 4000}  # iterations per profile
STEP_SIZE = 0.01


# ── EDITABLE REGION START: score_fn ──
def score_fn(prediction, target):
    return (prediction - target) ** 2
# ── EDITABLE REGION END: score_fn ──


def loss(w):
    return sum(score_fn(w * x, y) for x, y in POINTS) / len(POINTS)


if __name__ == "__main__":
    out = os.environ["PB_OUT_DIR"]
    w, eps = 0.0, 1e-4
    for step in range(STEPS[os.environ["PB_PROFILE"]]):
        grad = (loss(w + eps) - loss(w - eps)) / (2 * eps)
        w -= STEP_SIZE * grad
        print(f"step {step}: loss {loss(w):.6f}", flush=True)
    with open(os.path.join(out, "weight.json"), "w") as fh:
        json.dump({"w": w}, fh)
'''

CHECK = '''"""Preflight: the edited score_fn must return a finite number >= 0 on a few pairs."""
import json
import math
import os
import traceback

out = os.environ["PB_OUT_DIR"]
try:
    from fit import score_fn

    for pair in [(0.0, 0.0), (1.0, 3.0), (-2.0, 5.0)]:
        value = float(score_fn(*pair))
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"score_fn{pair} = {value}, not a finite number >= 0")
except Exception as e:
    reason = traceback.format_exception_only(type(e), e)[-1].strip()
    with open(os.path.join(out, "failure.json"), "w") as fh:
        json.dump({"reason": reason}, fh)
    raise SystemExit(1)
'''

EVALUATE = '''"""Trusted evaluation: the squared error of the trained weight on fixed points."""
import json
import os
import sys

held_out = sys.argv[1] == "held-out"
points = [(4.0, 12.0), (5.0, 15.0)] if held_out else [(1.0, 3.0), (2.0, 6.0), (3.0, 9.0)]
src = os.path.join(os.environ["PB_NEEDS_DIR"], os.environ["PB_FIT_JOB"], "weight.json")
w = json.load(open(src))["w"]
error = sum((w * x - y) ** 2 for x, y in points) / len(points)
doc = {"schema_version": 1, "profile": os.environ["PB_PROFILE"],
       "seed": int(os.environ["PB_SEED"]),
       "metrics": {"holdout_error" if held_out else "fit_error": error}}
json.dump(doc, open(os.path.join(os.environ["PB_OUT_DIR"], "metrics.json"), "w"))
'''


def _jobs(profile: str, time_limit: str) -> list[dict[str, object]]:
    fit = f"fit-{profile}"
    return [
        {"label": "check", "script": "scripts/check.sh", "stage": "preflight",
         "code": "edited", "time_limit": "0:01:00",
         "description": "calls your score_fn on a few pairs"},
        {"label": fit, "script": "scripts/fit.sh", "code": "edited", "needs": ["check"],
         "show_log": True, "time_limit": time_limit},
        {"label": f"score-{profile}", "script": "scripts/score.sh", "needs": [fit],
         "metrics": ["fit_error"], "env": {"PB_FIT_JOB": fit}, "time_limit": "0:01:00"},
        {"label": f"holdout-{profile}", "script": "scripts/holdout.sh", "needs": [fit],
         "metrics": ["holdout_error"], "hidden": True, "env": {"PB_FIT_JOB": fit},
         "time_limit": "0:01:00"},
    ]  # fmt: skip


SPEC: dict[str, object] = {
    "id": TASK_ID,
    "title": "Score function: fit one weight",
    "description": "description.md",
    "codebase": "scorecode",
    "package": "scorer",
    "editable_files": [{"path": "fit.py", "regions": ["score_fn"]}],
    "read_only_files": ["evaluate.py"],
    "invariants": [
        {"kind": "signature", "file": "fit.py", "function": "score_fn",
         "params": ["prediction", "target"]}
    ],
    "code_policy": {"allowed_imports": ["math"]},
    "profiles": {
        "mini": {"jobs": _jobs("mini", "0:02:00"), "seeds": {"test": [1], "final": [1, 2]},
                 "recipe": {"steps": 40, "hardware": "one CPU core"}},
        "maxi": {"jobs": _jobs("maxi", "1:00:00"), "recipe": {"steps": 4000}},
    },
    "metrics": [
        {"name": "fit_error", "direction": "lower", "primary": True, "bound": 0},
        {"name": "holdout_error", "direction": "lower", "hidden": True, "bound": 0},
    ],
    "budgets": {"max_steps": 10, "max_tests": 2},
    "seeds": {"test": [1], "final": [1, 2]},
    "baselines": ["absolute"],
}  # fmt: skip

DESCRIPTION = """# Score function

Write the loss `score_fn` in `{file}` ({lines[score_fn]}) that fitting minimises.
Profile `{profile}`: {recipe[steps]} steps on {hardware}.
You have {max_steps} steps and {max_tests} tests.

{jobs_table}
"""

ABSOLUTE = '''"""absolute — the absolute error."""

# ── EDITABLE REGION START: score_fn ──
def score_fn(prediction, target):
    return abs(prediction - target)
# ── EDITABLE REGION END: score_fn ──
'''


def build_score_task(root: Path) -> TaskWorld:
    """The third task's world under ``root``."""
    scripts = {
        "check.sh": "set -e\npython check.py\n",
        "fit.sh": "set -e\npython fit.py\n",
        "score.sh": "set -e\npython evaluate.py train\n",
        "holdout.sh": "set -e\npython evaluate.py held-out\n",
    }
    codebase = {"fit.py": FIT, "check.py": CHECK, "evaluate.py": EVALUATE}
    codebase |= {f"scripts/{name}": text for name, text in scripts.items()}
    return make_task_world(
        root, SPEC, codebase=codebase, description=DESCRIPTION, baselines={"absolute": ABSOLUTE}
    )


@pytest.fixture
def world(tmp_path: Path) -> TaskWorld:
    return build_score_task(tmp_path / "third")


def _cli(world: TaskWorld, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PRETRAINBENCH_TASKS_DIR": str(world.tasks_dir),
        "PRETRAINBENCH_BASELINES_DIR": str(world.baselines_dir),
        "PRETRAINBENCH_HOME": str(world.home),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=world.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _session(world: TaskWorld, tmp_path: Path) -> Session:
    return Session(
        load_task(world.task_dir),
        tmp_path / "runs" / "run-1",
        executor=Executor(LocalBackend(), min_free_disk_mb=16),
        profile="mini",
        data=DataPaths(data_dir=tmp_path),
        budgets=Budgets(max_steps=10, max_tests=2),
    )


def _edit_score_fn(session: Session, body: str) -> None:
    first, last = session.workspace.editable_ranges(FILE)[0]
    result = session.call(
        "edit",
        {
            "op": "replace",
            "filename": FILE,
            "start_line": first,
            "end_line": last,
            "content": "def score_fn(prediction, target):\n" + body,
        },
    )
    assert result.ok, result.text


# ── validate ────────────────────────────────────────────────────────────────────────────────


def test_it_validates(world: TaskWorld) -> None:
    assert validate_task_dir(world.task_dir) == []
    done = _cli(world, "tasks", "validate", str(world.task_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": OK")


def test_validation_names_a_broken_region_of_its_codebase(world: TaskWorld) -> None:
    fit = world.codebase / "fit.py"
    fit.write_text(fit.read_text().replace("# ── EDITABLE REGION END: score_fn ──\n", ""))
    assert any("score_fn" in p or "fit.py" in p for p in validate_task_dir(world.task_dir))
    assert _cli(world, "tasks", "validate", str(world.task_dir)).returncode == 1


# ── show ────────────────────────────────────────────────────────────────────────────────────


def test_it_shows(world: TaskWorld, tmp_path: Path) -> None:
    task = load_task(world.task_dir)
    workspace = Workspace.create(task, tmp_path / "workspace")
    text = render_observation(task, workspace, "mini")
    first, last = workspace.editable_ranges(FILE)[0]
    assert text.startswith("# Score function")
    assert f"`{FILE}` (lines {first}–{last})" in text
    assert "Profile `mini`: 40 steps on one CPU core.\nYou have 10 steps and 2 tests." in text
    assert "| `score-mini` |" in text and "holdout" not in text
    assert "Read-only context files (use view to read them): scorer/evaluate.py" in text
    shown = _cli(world, "tasks", "show", str(world.task_dir), "--profile", "mini")
    assert shown.returncode == 0, shown.stderr
    assert (
        "# Score function" in shown.stdout and "def score_fn(prediction, target):" in shown.stdout
    )
    assert "absolute" in shown.stdout  # its baseline
    assert "holdout" not in shown.stdout and "get_lr" not in shown.stdout


def test_it_shows_without_naming_a_profile(world: TaskWorld) -> None:
    shown = _cli(world, "tasks", "show", str(world.task_dir))
    assert shown.returncode == 0, shown.stderr
    assert "# Score function" in shown.stdout


# ── preflight, a test and the final evaluation, on the local backend ──────────────────────────


@needs_sandbox
def test_preflight_refuses_a_bad_edit_without_charging_a_test(
    world: TaskWorld, tmp_path: Path
) -> None:
    session = _session(world, tmp_path)
    _edit_score_fn(session, "    return prediction - target")  # negative: not a loss
    result = session.call("test")
    assert result.text.startswith("ERROR: Preflight failed"), result.text
    assert (
        "check: exit code 1: ValueError: score_fn(1.0, 3.0) = -2.0, not a finite number >= 0"
        in result.text
    )
    assert result.cost_test == 0 and session.tests_left == 2
    assert session.state.uncounted[0].kind == "preflight"


@needs_sandbox
def test_a_test_and_its_final_evaluation_run(world: TaskWorld, tmp_path: Path) -> None:
    session = _session(world, tmp_path)
    first = session.call("test")
    assert first.ok, first.text
    assert first.text.startswith("[Test #1] (1 test remaining;")
    squared = session.tests[0].result.metrics()["fit_error_score-mini"]
    assert squared < 1.0  # 40 steps of gradient descent on the squared error got close to w=3
    _edit_score_fn(session, "    return abs(prediction - target)")
    second = session.call("test")
    assert second.ok, second.text
    assert session.tests[1].result.metrics()["fit_error_score-mini"] != squared
    submitted = session.call("submit", {"n": 1})
    assert submitted.ok and submitted.done, submitted.text
    final = session.final
    assert final is not None and final.status == "ok", final
    assert {(r.setting, r.seed) for r in final.results} == {
        (job, seed)
        for job in ("check", "fit-mini", "score-mini", "holdout-mini")
        for seed in (1, 2)
    }
    assert "holdout_error_holdout-mini" in final.metrics()  # kept for the leaderboard ...
    assert "holdout" not in submitted.text  # ... never shown to the agent
    assert "'fit_error_score-mini'" in submitted.text


@needs_sandbox
def test_the_runner_runs_its_baseline(world: TaskWorld, tmp_path: Path) -> None:
    prepare_fake_home(world.home)
    done = _cli(
        world,
        "run",
        "--task",
        str(world.task_dir),
        "--profile",
        "mini",
        "--data",
        "offline",
        "--agent",
        "baseline:absolute",
        "--db",
        str(tmp_path / "lb.db"),
        "--quiet",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "absolute" in done.stdout and "fit_error" in done.stdout
    assert "holdout_error†" in done.stdout  # researchers see the hidden metric, marked
