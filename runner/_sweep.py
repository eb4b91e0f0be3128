"""Hyper-parameter sweeps (`runner sweep`): one method's code, a grid of CONFIG_OVERRIDES
values, the same seeds at every point.

A sweep is a directory, ``<runs>/sweeps/<sweep-id>/``: ``sweep.json`` (the plan: the
leaderboard's SweepRecord and the run configuration every point shares), one run directory per
point under ``points/`` with a deterministic run id, a lock and a result file per point, and
the log of each point's process under ``logs/``. The id is a hash of what decides the results,
so the same command run again finds the same directory and runs only what has no result yet.

Each point is a ``method:`` run of its own (`start_run`, or `resume_run` for one killed
mid-way) in a process of its own, ``runner sweep-point DIR INDEX``: a crash of one point never
takes the others down, and the same entry point is what a Slurm array task runs on its node.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from leaderboard import SweepRecord
from runner import _components as comp
from runner._choices import SandboxKind
from runner._display import Display
from runner._run import RunConfig, RunStatus, read_run_info, resume_run, start_run

if TYPE_CHECKING:
    from env import TaskSpec
    from leaderboard import SweepTable
    from leaderboard._records import SweepValue

SWEEP_FORMAT_VERSION = 1
#: the data region a sweep writes its values into, and the codebase module that says which
#: keys it accepts and checks their values (trusted, frozen, standard library only)
OVERRIDES_REGION = "config_overrides"
CONFIG_MODULE = "pb_config.py"
#: CPU cores one CPU-profile point keeps busy (training uses every core it gets; two share)
CORES_PER_CPU_POINT = 2
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message says which option and why."""


class SweepPlan(BaseModel):
    """sweep.json: the sweep's record and what every point's run shares."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = SWEEP_FORMAT_VERSION
    record: SweepRecord
    #: the run configuration of every point but its regions, sweep point and run id
    base: RunConfig
    #: the assignment the config_overrides region holds (``CONFIG_OVERRIDES``)
    variable: str


class PointResult(BaseModel):
    """``points/<run-id>.result.json``: how a point's run ended, and the run holding its
    result (the run itself, or the stored identical run it was not recorded beside)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    run_id: str
    result_run_id: str | None
    status: RunStatus
    reason: str | None = None


# ── the grid ───────────────────────────────────────────────────────────────────────────────


def parse_value(text: str) -> SweepValue:
    """A grid value: an int, float or bool literal (``2``, ``1e-3``, ``True``/``true``), a
    quoted string, or else the bare text as a string."""
    import ast

    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(value, float) and not math.isfinite(value):
        raise SweepError(f"--grid value {text!r} is not a finite number")
    if isinstance(value, bool | int | float | str):
        return value
    return text


def parse_grid(specs: list[str]) -> dict[str, list[SweepValue]]:
    """``["learning_rate=1e-3,2e-3", "warmup_iters=2,4"]`` → {key: values}, in the order given.

    Raises `SweepError` for a malformed spec, a key given twice, an empty list of values or a
    value listed twice."""
    grid: dict[str, list[SweepValue]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise SweepError(f"--grid {spec!r}: expected KEY=V1,V2,…, e.g. learning_rate=1e-3,2e-3")
        if key in grid:
            raise SweepError(f"--grid names {key!r} twice; give all its values in one --grid")
        parsed = [parse_value(v) for v in values.split(",") if v.strip()]
        if not parsed:
            raise SweepError(f"--grid {spec!r}: no values")
        seen = [_canonical(v) for v in parsed]
        twice = sorted({s for s in seen if seen.count(s) > 1})
        if twice:
            raise SweepError(f"--grid {spec!r}: {', '.join(twice)} listed twice")
        grid[key] = parsed
    if not grid:
        raise SweepError("a sweep needs at least one --grid KEY=V1,V2,…")
    return grid


def _canonical(value: SweepValue) -> str:
    """A value as JSON: 1e-3 and 0.001 are one value, 1 and 1.0 and True are three."""
    return json.dumps(value)


def grid_points(grid: dict[str, list[SweepValue]]) -> list[dict[str, SweepValue]]:
    """Point 0, the default (no swept override), then the Cartesian product of the grid in the
    order of its keys and values."""
    keys = list(grid)
    return [{}] + [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())
    ]


def overrides_text(variable: str, overrides: dict[str, SweepValue]) -> str:
    """The config_overrides region's text: ``CONFIG_OVERRIDES = {"learning_rate": 0.001}``
    (JSON's spelling of each value is also a Python literal, except for True/False)."""

    def literal(value: SweepValue) -> str:
        return repr(value) if isinstance(value, bool) else json.dumps(value)

    items = ", ".join(f"{json.dumps(k)}: {literal(v)}" for k, v in overrides.items())
    return f"{variable} = {{{items}}}"


# ── validation against the codebase ────────────────────────────────────────────────────────


def _config_module(task: TaskSpec) -> ModuleType:
    """The task codebase's pb_config.py, loaded by path under a private name (never put in
    ``sys.modules``). It is frozen trusted code that imports only the standard library, so the
    runner checks overrides with the very code the training job will use, and no torch."""
    path = task.codebase_dir / CONFIG_MODULE
    if not path.is_file():
        raise SweepError(f"task {task.id}: its codebase has no {CONFIG_MODULE} to check overrides")
    spec = importlib.util.spec_from_file_location(f"_pb_sweep_config_{os.getpid()}", path)
    if spec is None or spec.loader is None:
        raise SweepError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def overridable_keys(task: TaskSpec, module: ModuleType | None = None) -> list[str]:
    """The keys CONFIG_OVERRIDES accepts (the codebase's ``OVERRIDABLE``; ``module``: its
    pb_config, when already loaded)."""
    keys: object = getattr(module or _config_module(task), "OVERRIDABLE", None)
    if not isinstance(keys, dict):
        raise SweepError(f"task {task.id}: {CONFIG_MODULE} defines no OVERRIDABLE table")
    return [str(k) for k in keys]


def check_sweep(
    task: TaskSpec,
    profile: str,
    grid: dict[str, list[SweepValue]],
    base_overrides: dict[str, SweepValue],
) -> None:
    """Refuse a grid the codebase would refuse, before anything runs: a key CONFIG_OVERRIDES
    does not accept, or a point whose values fail the codebase's own check
    (``apply_overrides`` on the profile's configuration, e.g. min_lr above learning_rate)."""
    if OVERRIDES_REGION not in task.data_regions:
        raise SweepError(
            f"task {task.id} has no {OVERRIDES_REGION} data region: there is nothing to sweep"
        )
    module = _config_module(task)
    known = overridable_keys(task, module)
    for key in [*grid, *base_overrides]:
        if key not in known:
            raise SweepError(
                f"{key!r} cannot be overridden; CONFIG_OVERRIDES accepts: {', '.join(known)}"
            )
    resolve: object = getattr(module, "resolve_run_config", None)
    apply: object = getattr(module, "apply_overrides", None)
    if not callable(resolve) or not callable(apply):
        return
    try:
        cfg = resolve({"PB_PROFILE": profile})
    except ValueError:
        return  # a profile the codebase names otherwise: the training job checks the values
    for point in grid_points(grid):
        overrides = base_overrides | point
        try:
            apply(cfg, overrides)
        except ValueError as e:
            where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the default point"
            raise SweepError(f"{where}: {e}") from None


def base_overrides_of(task: TaskSpec, regions: dict[str, str]) -> dict[str, SweepValue]:
    """The CONFIG_OVERRIDES of a ``--region config_overrides=FILE`` (parsed as data, as the
    edit path does), or {} without one."""
    from env._data_regions import DataRegionError, parse_data_region

    text = regions.get(OVERRIDES_REGION)
    if text is None:
        return {}
    variable = task.data_regions[OVERRIDES_REGION].variable
    try:
        value = parse_data_region(text, variable)
    except DataRegionError as e:
        raise SweepError(f"--region {OVERRIDES_REGION}: {e}") from None
    if not isinstance(value, dict):
        raise SweepError(f"--region {OVERRIDES_REGION}: {variable} must be a dict")
    out: dict[str, SweepValue] = {}
    for key, item in value.items():
        if not isinstance(item, int | float | str | bool):
            raise SweepError(f"--region {OVERRIDES_REGION}: {key!r} is not a number or string")
        out[str(key)] = item
    return out


# ── the plan ───────────────────────────────────────────────────────────────────────────────


def sweep_identity(
    *,
    task_id: str,
    codebase_version: str,
    profile: str,
    data_source: str,
    label: str,
    regions: dict[str, str],
    grid: dict[str, list[SweepValue]],
    seeds: list[int],
) -> str:
    """``<task>-sweep[-<label>]-<hash>``: the hash covers what decides the points' results, so
    the same command twice names the same sweep (and resumes it)."""
    identity = {
        "task": task_id,
        "codebase": codebase_version,
        "profile": profile,
        "data": data_source,
        "label": label,
        "regions": regions,
        "grid": [[k, [_canonical(v) for v in vs]] for k, vs in grid.items()],
        "seeds": seeds,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    name = "-".join(dict.fromkeys([task_id, "sweep", label]))  # "sweep" once when the label
    return f"{name[:180]}-{digest[:12]}"


def point_run_id(sweep_id: str, index: int) -> str:
    """The run id of point ``index``: the same on every resume."""
    return f"{sweep_id}-p{index}"


def make_plan(
    base: RunConfig,
    task: TaskSpec,
    *,
    label: str,
    grid: dict[str, list[SweepValue]],
    seeds: list[int],
    sandbox: SandboxKind,
    command: str,
) -> SweepPlan:
    """Validate and name the sweep. ``base.regions`` are the ``--region`` texts (a
    config_overrides one gives the base values the grid is merged into)."""
    from leaderboard import SweepPoint
    from sandbox import hash_tree

    if len(seeds) != len(set(seeds)) or not seeds:
        raise SweepError("--seeds must name at least one seed, each once")
    base_overrides = base_overrides_of(task, base.regions)
    check_sweep(task, base.profile, grid, base_overrides)
    sweep_id = sweep_identity(
        task_id=task.id,
        codebase_version=hash_tree(task.codebase_dir),
        profile=base.profile,
        data_source=str(base.data_source),
        label=label,
        regions=base.regions,
        grid=grid,
        seeds=seeds,
    )
    record = SweepRecord(
        sweep_id=sweep_id,
        task_id=task.id,
        label=label,
        profile=base.profile,
        sandbox=str(sandbox),
        grid=grid,
        seeds=seeds,
        base_regions={k: v for k, v in base.regions.items() if k != OVERRIDES_REGION},
        base_overrides=base_overrides,
        points=[SweepPoint(index=i, overrides=p) for i, p in enumerate(grid_points(grid))],
        command=command,
        created_at=datetime.now(UTC),
    )
    config = base.model_copy(
        update={
            "agent": f"method:{label}",
            # on Slurm a point's jobs run in the local sandbox of the node its task runs on
            "sandbox": SandboxKind.LOCAL if sandbox is SandboxKind.SLURM else sandbox,
            "seeds": seeds,
            "final_seeds": seeds,  # the final evaluation reuses the test's cached jobs
            "sweep_id": sweep_id,
        }
    )
    variable = task.data_regions[OVERRIDES_REGION].variable
    return SweepPlan(record=record, base=config, variable=variable)


def point_config(plan: SweepPlan, index: int) -> RunConfig:
    """Point ``index``'s run: the base regions and the merged CONFIG_OVERRIDES."""
    point = plan.record.points[index]
    overrides = plan.record.base_overrides | point.overrides
    regions = dict(plan.record.base_regions)
    regions[OVERRIDES_REGION] = overrides_text(plan.variable, overrides)
    return plan.base.model_copy(update={"regions": regions, "sweep_point": dict(point.overrides)})


def open_sweep_dir(plan: SweepPlan, runs_dir: Path) -> tuple[Path, SweepPlan]:
    """``<runs>/sweeps/<sweep-id>/``, created with sweep.json, or the existing one (a resume:
    its record keeps its creation time and the run ids its points already have)."""
    from sandbox import write_atomic

    sweep_dir = runs_dir / "sweeps" / plan.record.sweep_id
    if (sweep_dir / "sweep.json").is_file():
        old = read_plan(sweep_dir)
        record = plan.record.model_copy(
            update={"created_at": old.record.created_at, "points": old.record.points}
        )
        plan = plan.model_copy(update={"record": record})
    (sweep_dir / "points").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "logs").mkdir(exist_ok=True)
    write_atomic(sweep_dir / "sweep.json", plan.model_dump_json(indent=1) + "\n")
    return sweep_dir, plan


def read_plan(sweep_dir: Path) -> SweepPlan:
    """sweep.json of a sweep directory, validated."""
    path = sweep_dir / "sweep.json"
    try:
        return SweepPlan.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SweepError(f"{path} is not a sweep plan: {e}") from e


# ── one point (the `runner sweep-point` process) ───────────────────────────────────────────


def _result_path(sweep_dir: Path, run_id: str) -> Path:
    return sweep_dir / "points" / f"{run_id}.result.json"


def read_results(sweep_dir: Path, plan: SweepPlan) -> dict[int, PointResult]:
    """The results the points have written so far, by index."""
    out: dict[int, PointResult] = {}
    for point in plan.record.points:
        path = _result_path(sweep_dir, point_run_id(plan.record.sweep_id, point.index))
        if path.is_file():
            out[point.index] = PointResult.model_validate_json(path.read_text(encoding="utf-8"))
    return out


@contextmanager
def _point_lock(path: Path, say: Callable[[str], None]) -> Iterator[None]:
    """An exclusive lock on the point: two drivers (a resume racing a dying worker) never run
    the same point; the second waits, then finds the first one's result."""
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{path.name}: another process runs this point; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_point(sweep_dir: Path, index: int, display: Display) -> PointResult:
    """Run point ``index`` to its end, or continue it (killed mid-way: `resume_run`; ended by
    an infrastructure failure: a fresh run under the same id, the job cache keeping its
    finished jobs), or find it done; writes and returns its result."""
    from sandbox import write_atomic

    plan = read_plan(sweep_dir)
    if not 0 <= index < len(plan.record.points):
        raise SweepError(f"sweep {plan.record.sweep_id} has no point {index}")
    run_id = point_run_id(plan.record.sweep_id, index)
    points = sweep_dir / "points"
    run_dir = points / run_id
    with _point_lock(points / f"{run_id}.lock", display.note):
        result_path = _result_path(sweep_dir, run_id)
        if result_path.is_file():
            return PointResult.model_validate_json(result_path.read_text(encoding="utf-8"))
        status = read_run_info(run_dir).status if (run_dir / "run.json").is_file() else None
        if status in ("infra_error", "incomplete"):
            shutil.rmtree(run_dir)  # nothing of it counts; its finished jobs are cached
            status = None
        if status is None:
            outcome = start_run(point_config(plan, index), points, display, run_id=run_id)
        elif status == "running":
            outcome = resume_run(run_dir, display)
        else:  # finished or failed, but killed before its result file was written
            outcome = None
        info = outcome.info if outcome else read_run_info(run_dir)
        held_by = outcome.identical_to.get(run_id, run_id) if outcome else _stored_as(run_dir)
        result = PointResult(
            index=index,
            run_id=run_id,
            result_run_id=held_by,
            status=info.status,
            reason=info.reason,
        )
        if result.status not in ("infra_error", "incomplete"):  # those are tried again
            write_atomic(result_path, result.model_dump_json(indent=1) + "\n")
        return result


def _stored_as(run_dir: Path) -> str | None:
    """The stored run holding a finished run's result: itself, or its identical original."""
    from leaderboard import RunRecord

    info = read_run_info(run_dir)
    if not info.config.db:
        return info.run_id
    store = comp.open_store(info.config.db)
    try:
        if store.get_run(info.run_id) is not None:
            return info.run_id
        records = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
        return store.identical_run(RunRecord.model_validate(records[0])) or info.run_id
    finally:
        store.close()


# ── running the points ─────────────────────────────────────────────────────────────────────


def default_jobs(task: TaskSpec, profile: str, gpus: list[str] | None) -> tuple[int, str]:
    """How many points run at once when ``--jobs`` is not given, and why: one per
    `CORES_PER_CPU_POINT` cores for a CPU profile, one per set of the GPUs its biggest job
    needs for a GPU profile; at least one."""
    needed = max((j.gpus for j in task.jobs(profile)), default=0)
    if needed:
        from runner._hardware import visible_gpus

        seen = len(gpus if gpus is not None else visible_gpus())
        return max(1, seen // needed), f"{seen} visible GPU(s) / {needed} per point"
    cores = len(os.sched_getaffinity(0)) or 1
    return max(1, cores // CORES_PER_CPU_POINT), f"{cores} cores / {CORES_PER_CPU_POINT} per point"


def point_argv(sweep_dir: Path, index: int) -> list[str]:
    """The command of one point's process (local worker or Slurm array task)."""
    return [sys.executable, "-m", "runner.cli", "sweep-point", str(sweep_dir), str(index), "-q"]


_PR_SET_PDEATHSIG = 1


def _die_with_parent(driver: int) -> None:
    """In the child before exec: SIGTERM when the driver dies, SIGKILL included, so a resumed
    sweep never races orphaned workers (SIGTERM: the worker stops its jobs and leaves its run
    resumable). Popen is called from the driver's main thread, which lives as long as it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != driver:  # the driver died before prctl took effect
        os._exit(1)


def run_local(
    sweep_dir: Path,
    indices: list[int],
    jobs: int,
    *,
    on_start: Callable[[int, int], None],
    on_end: Callable[[int, int], None],
) -> dict[int, int]:
    """Run the points ``indices`` as ``jobs`` worker processes at a time; returns each one's
    exit status. On KeyboardInterrupt the workers get SIGTERM (they stop their jobs, their
    runs stay resumable) and are waited for before it propagates."""
    todo = list(indices)
    running: dict[int, subprocess.Popen[bytes]] = {}
    codes: dict[int, int] = {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(comp.REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    try:
        while todo or running:
            while todo and len(running) < jobs:
                index = todo.pop(0)
                log = (sweep_dir / "logs" / f"point-{index}.log").open("ab")
                with log:
                    running[index] = subprocess.Popen(
                        point_argv(sweep_dir, index),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                    )
                on_start(index, running[index].pid)
            for index, proc in list(running.items()):
                if proc.poll() is not None:
                    codes[index] = proc.returncode
                    del running[index]
                    on_end(index, proc.returncode)
            time.sleep(0.2)
    except BaseException:
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        for proc in running.values():
            proc.wait()
        raise
    return codes


def run_slurm(
    plan: SweepPlan,
    sweep_dir: Path,
    indices: list[int],
    jobs: int,
    *,
    on_state: Callable[[int, str], None],
) -> dict[int, int | None]:
    """Run the points ``indices`` as one Slurm array job, one task per point (``--jobs`` at
    a time), each running ``runner sweep-point`` on its node: the point's jobs run in that
    node's local sandbox (no nested sbatch, which would deadlock a small cluster). Returns each
    task's exit status (None: it never ran). The tasks' logs are ``logs/slurm/<index>.log``."""
    from runner._slurm_array import ArrayTask, SlurmArrayError, run_array

    task = comp.load_task(plan.base.task)
    jobs_of_point = task.jobs(plan.base.profile)
    if any(j.gpus for j in jobs_of_point):
        raise SweepError(
            f"profile {plan.base.profile} needs GPUs: a Slurm sweep runs CPU profiles for now"
        )
    # every seed runs each job of the profile in turn; twice that is the task's time limit
    seconds = 2 * len(plan.record.seeds) * sum(j.time_limit_s for j in jobs_of_point)
    env = {name: os.environ[name] for name in _SLURM_ENV if os.environ.get(name)}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(comp.REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    try:
        outcomes = run_array(
            [ArrayTask(index=i, argv=point_argv(sweep_dir, i)) for i in indices],
            job_name=f"pb-sweep-{plan.record.sweep_id[-12:]}",
            log_dir=sweep_dir / "logs" / "slurm",
            cpus_per_task=CORES_PER_CPU_POINT,
            mem_mb=None,  # each job's memory is capped by the node's local sandbox
            time_limit=f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}",
            max_parallel=jobs,
            env=env,
            on_state=on_state,
        )
    except SlurmArrayError as e:
        raise SweepError(str(e)) from e
    return {i: o.exit_code for i, o in outcomes.items()}


#: what an array task's environment carries over from the driver's (sbatch --export=NONE)
_SLURM_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "PRETRAINBENCH_HOME",
    "PRETRAINBENCH_DB",
    "PRETRAINBENCH_TASKS_DIR",
    "PRETRAINBENCH_BASELINES_DIR",
)


# ── the record and the table ───────────────────────────────────────────────────────────────


def update_record(plan: SweepPlan, sweep_dir: Path) -> SweepRecord:
    """The sweep's record with each point's result run, stored; sweep.json is kept level."""
    from sandbox import write_atomic

    results = read_results(sweep_dir, plan)
    points = [
        p.model_copy(update={"run_id": results[p.index].result_run_id}) if p.index in results else p
        for p in plan.record.points
    ]
    record = plan.record.model_copy(update={"points": points})
    write_atomic(
        sweep_dir / "sweep.json",
        plan.model_copy(update={"record": record}).model_dump_json(indent=1) + "\n",
    )
    if plan.base.db:
        store = comp.open_store(plan.base.db)
        try:
            store.record_sweep(record)
        finally:
            store.close()
    return record


def load_table(db: str, sweep: SweepRecord, metric: str | None) -> SweepTable:
    """`leaderboard.sweep_table` over the stored runs of ``sweep``."""
    import warnings

    from leaderboard import sweep_table

    store = comp.open_store(db)
    try:
        with warnings.catch_warnings():
            # scipy's note on near-identical paired differences would land amid the table
            warnings.simplefilter("ignore", RuntimeWarning)
            return sweep_table(sweep, store.sweep_runs(sweep), metric)
    finally:
        store.close()


class LineDisplay(Display):
    """A point process's log: one line when its run starts, for each note, and when it ends
    (no live bars: the log is a file)."""

    def start(self, title: str, max_steps: int = 1) -> None:
        self.console.print(title, markup=False, highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def stop(self, summary: str) -> None:
        self.console.print(summary, markup=False, highlight=False)
