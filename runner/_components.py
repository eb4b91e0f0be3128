"""The runner's touch points with env, sandbox and leaderboard, each one small function.

env, sandbox and leaderboard are imported inside the functions (types under TYPE_CHECKING), so
that `runner --help` never pays for them.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import JsonValue

from runner._choices import DataSource, SandboxKind

if TYPE_CHECKING:
    from env import Baseline, Session, TaskSpec
    from leaderboard import Store
    from sandbox import DataPaths, Executor, ProgressCallback

REPO_ROOT = Path(__file__).resolve().parent.parent


def pretrainbench_home() -> Path:
    """$PRETRAINBENCH_HOME, default ~/.cache/pretrainbench."""
    return Path(os.environ.get("PRETRAINBENCH_HOME") or Path.home() / ".cache" / "pretrainbench")


def default_db_url() -> str:
    """$PRETRAINBENCH_DB, or the SQLite file ``pretrainbench.db`` in $PRETRAINBENCH_HOME: one
    home for every file, whatever the current directory."""
    value = os.environ.get("PRETRAINBENCH_DB")
    if value:
        return value if "://" in value else f"sqlite:///{Path(value).resolve()}"
    return f"sqlite:///{(pretrainbench_home() / 'pretrainbench.db').resolve()}"


def default_runs_dir() -> Path:
    """Where run directories go unless ``--run-dir`` says otherwise: $PRETRAINBENCH_HOME/runs."""
    return pretrainbench_home() / "runs"


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store URL when that file does not exist (else None): reading a
    store must never create an empty one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL: the Store says so when it opens it
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser()
    return None if path.exists() else path


def known_task_ids() -> list[str]:
    """The ids of the tasks under the task root (what an unknown ``--task`` is told)."""
    import env

    return env.list_tasks()


def load_task(task: str) -> TaskSpec:
    """`env.load_task` (a task id or a task folder)."""
    import env

    return env.load_task(task)


def task_codebases(task: str | None = None) -> list[Path]:
    """The codebase folders whose trusted scripts prepare the data: the task's, or every
    task's (each folder once)."""
    import env

    if task is not None:
        return [env.load_task(task).codebase_dir]
    folders: dict[Path, None] = {}
    for task_id in env.list_tasks():
        with contextlib.suppress(env.TaskSpecError):  # `runner tasks list` shows what is wrong
            folders[env.load_task(task_id).codebase_dir] = None
    return list(folders)


def data_paths(home: Path, *, source: DataSource = DataSource.OFFLINE) -> DataPaths:
    """The DataPaths of the prepared data under $PRETRAINBENCH_HOME; the offline evaluation
    sets live beside the tasks (data, outside the codebase that agent jobs get a copy of)."""
    from env import tasks_dir
    from sandbox import DataPaths

    if source is DataSource.FINEWEB:
        return DataPaths(
            data_dir=home / "data" / "fineweb",
            tokenizer_dir=home / "tokenizer",
            eval_source="hf",
            hf_home=home / "hf",
        )
    return DataPaths(
        data_dir=home / "data" / "offline",
        tokenizer_dir=home / "tokenizer",
        eval_data_dir=tasks_dir() / "eval_sets" / "offline",
        eval_source="offline",
    )


_LIVE_EXECUTORS: weakref.WeakSet[Executor] = weakref.WeakSet()


def make_executor(
    kind: SandboxKind, cache_dir: Path | None, *, allow_weak_isolation: bool = False
) -> Executor:
    """A sandbox Executor on the ``kind`` backend. ``allow_weak_isolation`` lets jobs run where
    the host cannot give every guarantee (recorded in the results); without it they refuse."""
    import sandbox as sb

    backend: sb.Backend
    match SandboxKind(kind):
        case SandboxKind.LOCAL:
            backend = sb.LocalBackend(allow_weak_isolation=allow_weak_isolation)
        case SandboxKind.DOCKER:
            backend = sb.DockerBackend()
        case SandboxKind.SLURM:
            backend = sb.SlurmBackend(allow_weak_isolation=allow_weak_isolation)
    executor = sb.Executor(backend, cache_dir=cache_dir)
    _LIVE_EXECUTORS.add(executor)
    return executor


def sandbox_description(executor: Executor) -> dict[str, JsonValue]:
    """What the executor's backend guarantees (``Backend.describe``), for the run record."""
    return {key: value for key, value in executor.backend.describe().items()}


def cancel_running_tests() -> None:
    """Stop every job of every executor made here (Ctrl-C / SIGTERM): a test in flight ends
    as an uncharged infrastructure failure and is re-run by `runner resume`."""
    for executor in list(_LIVE_EXECUTORS):
        with contextlib.suppress(Exception):
            executor.cancel()


def open_session(
    task: TaskSpec,
    run_dir: Path,
    *,
    executor: Executor,
    profile: str,
    data: DataPaths,
    max_steps: int,
    max_tests: int,
    seeds: list[int] | None,
    final_seeds: list[int] | None = None,
    progress: ProgressCallback | None = None,
) -> Session:
    """A new env.Session in ``run_dir``; ``seeds`` (if given) for tests and the final,
    ``final_seeds`` (if given) for the final only (winning over ``seeds``)."""
    import env

    budgets = env.Budgets(max_steps=max_steps, max_tests=max_tests)
    update: dict[str, list[int]] = {}
    if seeds:
        update = {"test": list(seeds), "final": list(seeds)}
    if final_seeds:
        update["final"] = list(final_seeds)
    plan = task.seeds(profile).model_copy(update=update) if update else None
    return env.Session(
        task,
        run_dir,
        executor=executor,
        profile=profile,
        data=data,
        budgets=budgets,
        seeds=plan,
        progress=progress,
    )


def resume_session(
    run_dir: Path,
    *,
    executor: Executor,
    data: DataPaths,
    progress: ProgressCallback | None = None,
) -> Session:
    """env.Session.resume: the state of ``run_dir/session.json`` (work in flight stays pending)."""
    import env

    return env.Session.resume(run_dir, executor=executor, data=data, progress=progress)


def observation_for_task(task_id: str, profile: str | None) -> str:
    """The initial observation of a task at a profile (the task's CPU one when None), from a
    throw-away workspace."""
    import tempfile

    import env

    task = env.load_task(task_id)
    with tempfile.TemporaryDirectory(prefix="pb-show-") as tmp:
        workspace = env.Workspace.create(task, Path(tmp) / "workspace")
        return env.render_observation(
            task,
            workspace,
            profile or task.default_profiles.cpu,
            baselines=load_baselines(task),
        )


def load_baselines(task: TaskSpec) -> list[Baseline]:
    """The task's baselines (reference default included)."""
    import env

    return list(env.load_baselines(task))


def open_store(url: str) -> Store:
    """The leaderboard Store at ``url``."""
    from leaderboard import Store

    return Store(url)


# Standalone SVGs (docs) carry their own style; on the web page the stylesheet provides it.
_SVG_STYLE = (
    "<style>.plot-title{font:600 13px sans-serif}.plot-frame{fill:none;stroke:#c9ced8}"
    ".plot-grid{stroke:#eef0f4}.plot-tick{font:10.5px sans-serif;fill:#555}"
    ".plot-axis,.plot-legend{font:11.5px sans-serif}</style>"
)


def plot_svg(task_id: str, plot_name: str | None, profile: str | None) -> str:
    """A plot the task declares (its first when ``plot_name`` is None), one curve per baseline
    drawn from the baseline's own code, at ``profile`` (the task's GPU default when None)."""
    import env
    from leaderboard import Series, line_plot

    task = env.load_task(task_id)
    plot = task.plot(plot_name)
    profile = profile or task.default_profiles.gpu
    curves = env.plot_series(task, plot.name, profile, env.load_baselines(task))
    if not curves:
        raise ValueError(f"task {task.id}: no baseline defines {plot.function}")
    svg = line_plot(
        [
            Series(name=c.name, points=c.points, dashed=c.name == task.reference_baseline)
            for c in curves
        ],
        title=f"{task.id}: {plot.title} ({profile} profile)",
        x_label=plot.x_label or plot.x,
        y_label=plot.y_label,
        width=720,
        height=320,
    )
    head, sep, rest = svg.partition(">")
    return head + sep + _SVG_STYLE + rest + "\n"
