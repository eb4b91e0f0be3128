"""The `runner` command line: run, resume, setup, tasks, leaderboard, mcp, serve.

Heavy modules (env, sandbox, leaderboard, openai, mcp, fastapi) are imported inside the
commands, so `runner --help` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from runner._choices import (
    DataSource,
    ExportFormat,
    RecordFormat,
    RunMode,
    SandboxKind,
    Transport,
)

if TYPE_CHECKING:
    from rich.table import Table

    from env import TaskSpec
    from leaderboard import RunRecord, SweepTable
    from leaderboard._records import SweepValue
    from runner._display import Display
    from runner._llm import AgentFile, AgentSettings
    from runner._run import RunConfig
    from runner._sweep import SweepPlan

app = typer.Typer(
    help="PretrainBench: evaluate AI research agents on LLM-pretraining science.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="List, show and validate tasks.", no_args_is_help=True)
board_app = typer.Typer(help="Show, serve or export the leaderboard.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(board_app, name="leaderboard")


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib import metadata

    from runner._components import REPO_ROOT
    from runner._hardware import git_commit

    try:
        version = metadata.version("pretrainbench")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    commit = git_commit(REPO_ROOT)
    out.print(f"pretrainbench {version}" + (f" (git {commit})" if commit else ""), highlight=False)
    raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the package version (and the git commit in a checkout) and exit.",
        ),
    ] = False,
) -> None:
    """PretrainBench: evaluate AI research agents on LLM-pretraining science."""


def _console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr). Piped output (scripts, CI logs) gets $COLUMNS, or a wide
    200 columns, instead of rich's 80-column default."""
    if (sys.stderr if stderr else sys.stdout).isatty():
        return Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=int(columns) if columns.isdigit() else 200)


out = _console()
err = _console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store URL or SQLite file "
        "(default: $PRETRAINBENCH_DB or $PRETRAINBENCH_HOME/pretrainbench.db).",
    ),
]


def _db_url(db: str | None) -> str:
    from runner._components import default_db_url

    if db is None:
        return default_db_url()
    return db if "://" in db else f"sqlite:///{Path(db).resolve()}"


def _existing_db_url(db: str | None) -> str:
    """The URL of a store to read; a SQLite file that does not exist exits with a hint
    (reading never creates an empty store)."""
    from runner._components import missing_sqlite_file, pretrainbench_home

    url = _db_url(db)
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise _fail(
            f"no leaderboard store at {missing}: `runner run` records there first, or point "
            f"--db / $PRETRAINBENCH_DB at an existing one (files live in $PRETRAINBENCH_HOME "
            f"= {pretrainbench_home()})"
        )
    return url


def _stop_cleanly_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the sandbox jobs first, then unwind as KeyboardInterrupt, so
    the run is left resumable instead of waiting for a training job to finish."""
    import signal

    from runner._components import cancel_running_tests

    def handler(signum: int, frame: FrameType | None) -> None:
        cancel_running_tests()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


WeakIsolationOption = Annotated[
    bool,
    typer.Option(
        "--allow-weak-isolation",
        help="Run jobs even where the host cannot give every sandbox guarantee (see `runner "
        "doctor`); the guarantees that held are recorded in each result and shown on its page.",
    ),
]

SandboxOption = Annotated[SandboxKind, typer.Option(help="The sandbox backend.")]
RunDirOption = Annotated[
    Path | None,
    typer.Option(help="Directory of run directories (default $PRETRAINBENCH_HOME/runs)."),
]
DataOption = Annotated[
    DataSource | None,
    typer.Option(help="Training data; default: what the task's profile declares."),
]
ApiKeyOption = Annotated[str | None, typer.Option(help="API key (default $OPENAI_API_KEY).")]
RegionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--region",
        "-r",
        help="NAME=FILE: evaluate a hand-written method whose region NAME is FILE's text "
        "(the body between the region markers), edited in like an agent's edit; repeatable.",
    ),
]
LabelOption = Annotated[
    str | None,
    typer.Option(
        help="The hand-written method's name on the leaderboard (default: the first "
        "region file's stem)."
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the results as JSON on stdout (progress stays on stderr)."),
]


def _prepare_home_before_serving(task: str | None = None) -> None:
    """Prepare $PRETRAINBENCH_HOME (or exit) before an agent can call a tool: missing data is
    the harness's fault and must never fail an agent's first test. stderr only (stdout is the
    stdio transport's channel). ``task``'s codebase prepares it (every task's when None)."""
    from runner._components import pretrainbench_home, task_codebases
    from runner._setup import SetupError, ensure_home_ready

    try:
        ensure_home_ready(
            pretrainbench_home(),
            say=lambda t: err.print(t, markup=False, highlight=False, soft_wrap=True),
            codebases=task_codebases(task),
        )
    except SetupError as e:
        raise _fail(str(e)) from e


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
# `run` is over 80 lines only because typer declares each of its ~25 options as a parameter; its
# body is a short list of named steps.
def run(
    task: Annotated[str, typer.Option("--task", "-t", help="Task id or task folder.")],
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent",
            "-a",
            help="baseline:<name>, baseline:all or openai:<model>; repeatable. "
            "Default: all the task's baselines.",
        ),
    ] = None,
    region: RegionOption = None,
    label: LabelOption = None,
    mode: Annotated[
        RunMode, typer.Option(help="agent (tool loop) or vanilla (one shot).")
    ] = RunMode.AGENT,
    profile: Annotated[
        str,
        typer.Option(
            help="A profile of the task, or auto: the task's GPU default where its GPUs are "
            "visible, else its CPU default."
        ),
    ] = "auto",
    sandbox: SandboxOption = SandboxKind.LOCAL,
    seeds: Annotated[
        str | None,
        typer.Option(help="Comma-separated seeds of tests and the final evaluation, e.g. 42,43."),
    ] = None,
    final_seeds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated seeds of the final evaluation only (default: the task "
            "profile's, e.g. 42,43,44 at tiny); fewer seeds, quicker, wider intervals."
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Step budget.")] = None,
    max_tests: Annotated[int | None, typer.Option(min=1, help="Test budget.")] = None,
    run_dir: RunDirOption = None,
    db: DbOption = None,
    data: DataOption = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL).")
    ] = None,
    api_key: ApiKeyOption = None,
    agent_file: Annotated[
        Path | None,
        typer.Option(
            help="YAML agent file: model, base_url, temperature, max_tokens, price_in, "
            "price_out, llm_timeout and limits (max_total_tokens, max_cost, max_agent_time); "
            "flags given on the command line win."
        ),
    ] = None,
    temperature: Annotated[float | None, typer.Option(min=0, help="LLM temperature.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Most tokens per LLM reply.")
    ] = None,
    max_total_tokens: Annotated[
        int | None, typer.Option(min=1, help="Run limit: prompt + completion tokens.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(min=0, help="Run limit: LLM cost in USD (needs a price).")
    ] = None,
    max_agent_time: Annotated[
        float | None,
        typer.Option(min=0, help="Run limit: the agent's own seconds (tests excluded)."),
    ] = None,
    price_in: Annotated[
        float | None, typer.Option(min=0, help="USD per million input tokens.")
    ] = None,
    price_out: Annotated[
        float | None, typer.Option(min=0, help="USD per million output tokens.")
    ] = None,
    llm_timeout: Annotated[
        float | None,
        typer.Option(
            min=0, help="Seconds an LLM call may spend failing, retries included (default 60)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Record a result identical to a stored one (same code, profile, seeds, data) "
            "as a repeat of it; without it such a result is not recorded.",
        ),
    ] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    allow_weak_isolation: WeakIsolationOption = False,
) -> None:
    """Run agents, a hand-written method (--region) or, by default, the task's baselines on a
    task, and record the results."""
    from runner._components import default_runs_dir, pretrainbench_home
    from runner._display import LiveDisplay, QuietDisplay
    from runner._run import RunConfig, RunError, check_agent

    settings, from_file = _agent_settings(
        agent_file,
        temperature=temperature,
        max_tokens=max_tokens,
        max_total_tokens=max_total_tokens,
        max_cost=max_cost,
        max_agent_time=max_agent_time,
        price_in=price_in,
        price_out=price_out,
        llm_timeout=llm_timeout,
    )
    if from_file is not None:
        base_url = base_url or from_file.base_url
        if agent is None and from_file.model:
            agent = [f"openai:{from_file.model}"]
    db_url = _db_url(db)
    run_dir = run_dir or default_runs_dir()
    seed_list = _parse_seeds(seeds, "--seeds")
    final_seed_list = _parse_seeds(final_seeds, "--final-seeds")
    spec = _load_task(task)
    regions: dict[str, str] = {}
    if region:
        if agent:
            raise _fail("--region evaluates a hand-written method: leave out --agent")
        regions, method = _method(spec, region, label)
        agents = [f"method:{method}"]
    elif label is not None:
        raise _fail("--label names a hand-written method: give its --region NAME=FILE too")
    else:
        agents = _expand_agents(spec, agent or ["baseline:all"])
    try:  # a missing API key fails now, before any data or run is prepared
        for item in agents:
            check_agent(item, base_url, api_key)
    except RunError as e:
        raise _fail(str(e)) from e
    home = pretrainbench_home()
    err.print(f"home {home} · runs {run_dir} · store {db_url}", highlight=False, soft_wrap=True)
    chosen, gpus = _choose_profile(spec, profile)
    data_source = data or spec.profile(chosen).data
    _prepare_data(spec, chosen, DataSource(data_source), home)
    if sandbox is SandboxKind.LOCAL:
        _print_host_summary()
    configs = [
        RunConfig(
            task=task,
            agent=item,
            mode=mode,
            profile=chosen,
            sandbox=sandbox,
            seeds=seed_list,
            final_seeds=final_seed_list,
            max_steps=max_steps,
            max_tests=max_tests,
            base_url=base_url,
            agent_settings=settings,
            db=db_url,
            home=str(home),
            data_source=DataSource(data_source),
            allow_weak_isolation=allow_weak_isolation,
            force=force,
            regions=regions,
        )
        for item in agents
    ]
    display = QuietDisplay(err) if quiet else LiveDisplay(err)
    _stop_cleanly_on_signals()
    failures = _run_each(
        configs, run_dir, display, gpus=gpus, api_key=api_key, db=db_url, as_json=json_output
    )
    raise typer.Exit(1 if failures else 0)


def _agent_settings(
    agent_file: Path | None, **flags: float | int | None
) -> tuple[AgentSettings, AgentFile | None]:
    """The LLM agent's settings and limits: the agent file's, overridden by the flags given."""
    from runner._llm import AgentSettings, LLMConfigError, read_agent_file

    try:
        from_file = read_agent_file(agent_file) if agent_file else None
    except LLMConfigError as e:
        raise _fail(str(e)) from e
    try:
        settings = AgentSettings.model_validate(
            (from_file.model_dump(include=set(flags), exclude_none=True) if from_file else {})
            | {k: v for k, v in flags.items() if v is not None}
        )
    except ValueError as e:
        raise _fail(f"agent settings: {e}") from e
    return settings, from_file


def _method(
    spec: TaskSpec, region: list[str], label: str | None, *, code: int = 1
) -> tuple[dict[str, str], str]:
    """The region texts of ``--region NAME=FILE`` and the method's label; bad ones exit."""
    from runner._methods import MethodError, method_label, read_region_files

    try:
        return read_region_files(spec, region), method_label(label, region)
    except MethodError as e:
        raise _fail(str(e), code) from e


def _parse_seeds(seeds: str | None, flag: str, *, code: int = 1) -> list[int] | None:
    try:
        parsed = [int(s) for s in seeds.split(",") if s.strip()] if seeds else None
    except ValueError as e:
        raise _fail(f"{flag} must be comma-separated integers: {e}", code) from e
    if parsed is not None and len(parsed) != len(set(parsed)):
        raise _fail(f"{flag} names a seed twice: {seeds}", code)
    if parsed is not None and any(s < 0 for s in parsed):
        raise _fail(f"{flag}: seeds are integers >= 0: {seeds}", code)
    return parsed


def _load_task(task: str) -> TaskSpec:
    """The task (an id or a folder); an unknown one exits listing the known tasks."""
    from runner._components import known_task_ids, load_task

    try:
        return load_task(task)
    except Exception as e:
        known = known_task_ids()
        if task not in known and not Path(task).is_dir():
            raise _fail(
                f"unknown task {task!r}; the tasks are: {', '.join(known) or 'none'} "
                "(or pass a task folder)"
            ) from e
        raise _fail(f"cannot load task {task!r}: {e}") from e


def _expand_agents(spec: TaskSpec, requested: list[str]) -> list[str]:
    """``baseline:all`` → one agent per baseline; an unknown agent or baseline exits."""
    from runner._components import load_baselines
    from runner._run import AGENT_SPEC

    baselines = [b.name for b in load_baselines(spec)]
    agents: list[str] = []
    for item in requested:
        name = item.partition(":")[2]
        if item == "baseline:all":
            agents += [f"baseline:{b}" for b in baselines]
        elif not re.match(AGENT_SPEC, item):
            raise _fail(
                f"unknown agent {item!r}; use baseline:<name>, baseline:all or openai:<model>"
            )
        elif item.startswith("baseline:") and name not in baselines:
            raise _fail(
                f"task {spec.id} has no baseline {name!r}; it has: {', '.join(baselines) or 'none'}"
            )
        else:
            agents.append(item)
    return agents


def _choose_profile(spec: TaskSpec, requested: str) -> tuple[str, list[str] | None]:
    """The profile to run (``auto``: the task's GPU default where its GPUs are visible, else its
    CPU default) and the GPUs seen, said on stderr; a profile the task lacks exits."""
    from runner._hardware import choose_profile, visible_gpus

    defaults = spec.default_profiles
    gpus = visible_gpus() if requested == "auto" else None
    needed = max((j.gpus for j in spec.jobs(defaults.gpu)), default=1)
    chosen, why = choose_profile(requested, defaults.cpu, defaults.gpu, needed, gpus)
    if chosen not in spec.profiles:
        raise _fail(
            f"task {spec.id} has no profile {chosen!r} "
            f"(profiles: {', '.join(sorted(spec.profiles))})"
        )
    err.print(why, highlight=False)
    return chosen, gpus


def _prepare_data(spec: TaskSpec, profile: str, source: DataSource, home: Path) -> None:
    """Build the offline data on first use; FineWeb needs `runner setup --fineweb` (network)."""
    from runner._setup import SetupError, run_setup, setup_ready, shards_ready

    if source is DataSource.OFFLINE and not setup_ready(home):
        err.print(f"preparing {home} (first run) …", highlight=False)
        try:
            for step in run_setup(
                home, spec.codebase_dir, say=lambda t: err.print(t, highlight=False)
            ):
                err.print(f"  {step.name}: {step.action} ({step.path})", highlight=False)
        except SetupError as e:
            raise _fail(str(e)) from e
    if source is DataSource.FINEWEB and not shards_ready(home / "data" / "fineweb"):
        raise _fail(
            f"profile {profile} trains on FineWeb, which is not prepared in "
            f"{home / 'data' / 'fineweb'}: run `runner setup --fineweb` (needs network) "
            "or pass --data offline"
        )


def _print_host_summary() -> None:
    from runner._doctor import summary
    from sandbox import check_host

    err.print(escape(summary(check_host(measure=False))), highlight=False)


def _run_each(
    configs: list[RunConfig],
    run_dir: Path,
    display: Display,
    *,
    gpus: list[str] | None,
    api_key: str | None,
    db: str,
    as_json: bool = False,
) -> int:
    """Run each config in turn (a run that fails to start is reported and the others go on),
    then print the results; returns how many runs did not finish."""
    from runner._run import RunError, start_run

    records: list[RunRecord] = []
    shown: set[str] = set()  # stored runs whose identical result a run of this command repeated
    task_id: str | None = None
    failures = 0
    for config in configs:
        try:
            outcome = start_run(config, run_dir, display, gpus=gpus, api_key=api_key)
        except KeyboardInterrupt as e:
            where = getattr(e, "run_dir", None) or f"{run_dir}/<run-id>"
            raise _fail(f"interrupted; continue with `runner resume {where}`", 130) from None
        except RunError as e:
            failures += 1
            err.print(f"[red]{config.agent}: {escape(str(e))}[/]", highlight=False)
            continue
        except Exception as e:  # the run could not even start (session, sandbox, store)
            failures += 1
            err.print(
                f"[red]{config.agent}: {type(e).__name__}: {escape(str(e))}[/]", highlight=False
            )
            continue
        records += outcome.records
        for run_id, original in outcome.identical_to.items():
            err.print(
                f"run {run_id}: identical to run {original}, not recorded; "
                "--force records a repeat",
                highlight=False,
                soft_wrap=True,
            )
            shown.add(original)
        task_id = outcome.info.task_id
        if outcome.info.status != "finished":
            failures += 1
            err.print(
                f"[red]{escape(config.agent)}: {outcome.info.status}: "
                f"{escape(str(outcome.info.reason))}[/]",
                highlight=False,
            )
    _print_results(db, records, as_json=as_json, also=shown, task_id=task_id)
    (err if as_json else out).print(
        f"\nOpen the leaderboard: [bold]runner leaderboard serve --db {db}[/]", highlight=False
    )
    return failures


@app.command()
# `sweep` is long only because typer declares each option as a parameter; the body is a short
# list of named steps (validate, prepare, run the points, print the table).
def sweep(
    task: Annotated[str, typer.Option("--task", "-t", help="Task id or task folder.")],
    grid: Annotated[
        list[str],
        typer.Option(
            "--grid",
            "-g",
            help="KEY=V1,V2,…: CONFIG_OVERRIDES values to sweep (e.g. learning_rate=1e-3,2e-3); "
            "repeatable: the points are the default plus the product of the grids, in order.",
        ),
    ],
    seeds: Annotated[
        str, typer.Option(help="Comma-separated seeds every point runs, e.g. 42,43,44.")
    ],
    region: RegionOption = None,
    label: LabelOption = None,
    profile: Annotated[
        str, typer.Option(help="A profile of the task, or auto (as `runner run`).")
    ] = "auto",
    sandbox: Annotated[
        SandboxKind,
        typer.Option(
            help="local or docker: --jobs worker processes here; slurm: one Slurm array job whose tasks use each node's local sandbox."
        ),
    ] = SandboxKind.LOCAL,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Points run at once (default: cores / 2 for a CPU profile, visible GPUs / "
            "the GPUs a point needs for a GPU profile; at least 1).",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="The metric of the table, e.g. val_loss_gpt-tiny (default: primary)."),
    ] = None,
    run_dir: RunDirOption = None,
    db: DbOption = None,
    data: DataOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Record a point identical to a stored result as a repeat of it."
        ),
    ] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
    allow_weak_isolation: WeakIsolationOption = False,
) -> None:
    """Sweep CONFIG_OVERRIDES values over seeds: each grid point (and the default) is a test of
    the same code; prints mean ± 95 % interval per point and the delta against the default with
    a paired t-test. The same command again resumes the sweep (finished points are not re-run).
    """
    import shlex

    from runner._components import default_runs_dir, pretrainbench_home
    from runner._run import RunConfig, metric_specs
    from runner._sweep import SweepError, default_jobs, make_plan, parse_grid

    seed_list = _parse_seeds(seeds, "--seeds", code=2) or []
    spec = _load_task(task)
    regions: dict[str, str] = {}
    if region:
        regions, _ = _method(spec, region, label, code=2)
    try:
        parsed = parse_grid(grid)
        method = _sweep_label(label, region or [])
    except (SweepError, ValueError) as e:
        raise _fail(str(e), 2) from e
    db_url = _db_url(db)
    runs = run_dir or default_runs_dir()
    home = pretrainbench_home()
    chosen, gpus = _choose_profile(spec, profile)
    data_source = DataSource(data or spec.profile(chosen).data)
    base = RunConfig(
        task=task if not Path(task).is_dir() else str(Path(task).resolve()),
        agent=f"method:{method}",
        profile=chosen,
        sandbox=SandboxKind.LOCAL,
        db=db_url,
        home=str(home),
        data_source=data_source,
        allow_weak_isolation=allow_weak_isolation,
        force=force,
        regions=regions,
        sweep_point={},
    )
    try:
        plan = make_plan(
            base,
            spec,
            label=method,
            grid=parsed,
            seeds=seed_list,
            sandbox=sandbox,
            command=shlex.join(["runner", *sys.argv[1:]]),
        )
    except SweepError as e:
        raise _fail(str(e), 2) from e
    known = [m.key for m in metric_specs(spec, chosen)]
    if metric is not None and metric not in known:
        raise _fail(
            f"--metric {metric!r}: the metrics at profile {chosen} are {', '.join(known)}", 2
        )
    if jobs is None:
        jobs, why = default_jobs(spec, chosen, gpus)
        err.print(f"--jobs {jobs} ({why})", highlight=False)
    err.print(f"home {home} · runs {runs} · store {db_url}", highlight=False, soft_wrap=True)
    _prepare_data(spec, chosen, data_source, home)
    failed = _run_sweep(plan, runs, sandbox, jobs, metric=metric, quiet=quiet, as_json=json_output)
    raise typer.Exit(1 if failed else 0)


def _sweep_label(label: str | None, region: list[str]) -> str:
    from runner._methods import method_label

    return method_label(label if label or region else "sweep", region)


def _run_sweep(
    plan: SweepPlan,
    runs: Path,
    sandbox: SandboxKind,
    jobs: int,
    *,
    metric: str | None,
    quiet: bool,
    as_json: bool,
) -> bool:
    """Run the sweep's unfinished points, store its record and print its table; returns
    whether a point failed."""
    from runner._sweep import (
        SweepError,
        load_table,
        open_sweep_dir,
        read_results,
        run_local,
        run_slurm,
        update_record,
    )

    sweep_dir, plan = open_sweep_dir(plan, runs)
    record = update_record(plan, sweep_dir)
    done = read_results(sweep_dir, plan)
    todo = [p.index for p in record.points if p.index not in done]
    slurm = sandbox is SandboxKind.SLURM

    def say(index: int, text: str, *, always: bool = False) -> None:
        if always or not quiet:
            name = _point_name(record.points[index].overrides)
            err.print(
                f"point {index}/{len(record.points) - 1} {name}: {text}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    for index, result in sorted(done.items()):
        say(index, f"done ({result.status}, run {result.result_run_id})")
    err.print(
        f"sweep {record.sweep_id}: {len(record.points)} points × {len(record.seeds)} "
        f"seed(s), {len(todo)} to run ({sweep_dir})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )

    def on_start(index: int, pid: int) -> None:
        say(index, f"started (pid {pid}, log {sweep_dir / 'logs' / f'point-{index}.log'})")

    def on_end(index: int, code: int) -> None:
        result = read_results(sweep_dir, plan).get(index)
        log = sweep_dir / "logs" / (f"slurm/{index}.log" if slurm else f"point-{index}.log")
        say(
            index,
            f"ended ({result.status}, run {result.result_run_id})"
            if result
            else f"ended (exit {code}, see {log})",
            always=True,
        )
        update_record(plan, sweep_dir)

    def on_state(index: int, state: str) -> None:
        if state in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            say(index, f"{state.lower()} (Slurm)")
        else:
            on_end(index, 0 if state == "COMPLETED" else 1)

    _stop_cleanly_on_signals()
    try:
        if todo and slurm:
            run_slurm(plan, sweep_dir, todo, jobs, on_state=on_state)
        elif todo:
            run_local(sweep_dir, todo, jobs, on_start=on_start, on_end=on_end)
    except KeyboardInterrupt:
        update_record(plan, sweep_dir)
        raise _fail(f"interrupted; the same command resumes sweep {record.sweep_id}", 130) from None
    except SweepError as e:
        raise _fail(str(e)) from e
    record = update_record(plan, sweep_dir)
    results = read_results(sweep_dir, plan)
    try:
        table = load_table(plan.base.db or "", record, metric)
    except KeyError as e:
        raise _fail(str(e.args[0])) from e
    if as_json:
        sys.stdout.write(
            json.dumps({**table.to_json(), "sweep_dir": str(sweep_dir)}, indent=1) + "\n"
        )
    else:
        out.print(_sweep_rich_table(table))
        out.print(f"command: {escape(record.command)}", highlight=False, soft_wrap=True)
        out.print(f"sweep dir: {escape(str(sweep_dir))}", highlight=False, soft_wrap=True)
    (err if as_json else out).print(
        f"Open the sweep page: [bold]runner leaderboard serve --db {escape(plan.base.db or '')}"
        f"[/], then /sweeps/{record.sweep_id}",
        highlight=False,
        soft_wrap=True,
    )
    return any(
        p.index not in results or results[p.index].status != "finished" or r.status != "ok"
        for p, r in zip(record.points, table.rows, strict=True)
    )


def _point_name(overrides: dict[str, SweepValue]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "default"


def _sweep_rich_table(table: SweepTable) -> Table:
    """One row per point: swept values, seeds done, mean ± 95 % half-width, delta against the
    default, paired p and a mark where the delta is significant."""
    from rich.table import Table

    sweep = table.sweep
    direction = "lower" if table.metric.direction == "lower" else "higher"
    out_table = Table(
        title=f"{sweep.task_id} · {'sweep' if sweep.label == 'sweep' else f'sweep of {sweep.label}'}"
        f" · {table.metric.key} ({direction} is better) · profile {sweep.profile}",
    )
    out_table.add_column("#", justify="right")
    for key in sweep.grid:
        out_table.add_column(key, justify="right")
    for name in ("seeds", "mean ± 95 %", "Δ vs default", "paired p", ""):
        out_table.add_column(name, justify="right" if name else "left")
    for row in table.rows:
        values = [
            str(row.point.overrides[k]) if k in row.point.overrides else "default"
            for k in sweep.grid
        ]
        stats = row.stats
        cell: str = row.status
        if stats is not None:
            low, high = stats.ci_low, stats.ci_high
            cell = f"{stats.mean:.4f}"
            if low is not None and high is not None:
                cell += f" ± {(high - low) / 2:.4f}"
        if stats is not None and row.status != "ok":
            cell += f" ({row.status})"
        delta = "—" if row.delta is None else f"{row.delta:+.4f}"
        p = "—" if row.test is None else f"{row.test.p_value:.3g}"
        mark = "" if row.better is None else ("better" if row.better else "worse")
        style = "green" if row.better else ("red" if row.better is False else None)
        out_table.add_row(
            str(row.point.index),
            *values,
            f"{len(row.seeds)}/{len(sweep.seeds)}",
            cell,
            delta,
            p,
            mark,
            style=style,
        )
    return out_table


@app.command("sweep-point", hidden=True)
def sweep_point(
    sweep_dir: Annotated[Path, typer.Argument(help="The sweep directory.")],
    index: Annotated[int, typer.Argument(help="The point's index.")],
    quiet: QuietOption = False,
) -> None:
    """Run one point of a sweep (the worker `runner sweep` starts, and a Slurm array task)."""
    from runner._run import RunError
    from runner._sweep import LineDisplay, SweepError, run_point

    _stop_cleanly_on_signals()
    try:
        result = run_point(sweep_dir, index, LineDisplay(err))
    except KeyboardInterrupt:
        raise _fail(f"point {index} interrupted; `runner sweep` resumes it", 130) from None
    except (RunError, SweepError) as e:
        raise _fail(str(e)) from e
    out.print(f"point {index}: {result.status} (run {result.result_run_id})", highlight=False)
    raise typer.Exit(0 if result.status == "finished" else 1)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to continue.")],
    api_key: ApiKeyOption = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Continue a killed run from its directory (nothing finished is re-run or re-charged)."""
    from runner._display import LiveDisplay, QuietDisplay
    from runner._run import RunError, resume_run

    display = QuietDisplay(err) if quiet else LiveDisplay(err)
    _stop_cleanly_on_signals()
    try:
        outcome = resume_run(run_dir, display, api_key=api_key)
    except KeyboardInterrupt:
        raise _fail(f"interrupted; continue with `runner resume {run_dir}`", 130) from None
    except RunError as e:
        raise _fail(str(e)) from e
    _print_results(outcome.info.config.db, outcome.records, as_json=json_output)
    raise typer.Exit(0 if outcome.info.status == "finished" else 1)


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="The recorded run directory to replay.")],
    runs: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Where the replay's run directory goes (default $PRETRAINBENCH_HOME/runs).",
        ),
    ] = None,
    use_cache: Annotated[
        bool,
        typer.Option(
            "--use-cache",
            help="Reuse cached results of identical tests (default: a fresh cache, so every "
            "test really re-runs).",
        ),
    ] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Re-drive a recorded run's tool calls against a fresh session of the same task, profile,
    budgets and seeds, and report every observation that differs from the recorded one (a
    unified diff per step). Exits 0 when all match, 1 otherwise."""
    from runner._components import default_runs_dir
    from runner._display import LiveDisplay, QuietDisplay
    from runner._replay import replay_run
    from runner._run import RunError

    display = QuietDisplay(err) if quiet or json_output else LiveDisplay(err)
    _stop_cleanly_on_signals()
    try:
        report = replay_run(run_dir, runs or default_runs_dir(), display, use_cache=use_cache)
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    except RunError as e:
        raise _fail(str(e)) from e
    if json_output:
        sys.stdout.write(report.model_dump_json(indent=1) + "\n")
    else:
        for step in report.steps:
            verdict = "same" if step.same else "[bold red]differs[/]"
            out.print(f"step {step.step} {step.tool}: {verdict}", highlight=False)
            if step.diff:
                out.print(step.diff, markup=False, highlight=False, end="")
        same = sum(step.same for step in report.steps)
        out.print(
            f"{same}/{len(report.steps)} observations of {report.run_id} reproduced in "
            f"{report.replay_dir} ({'cached results reused' if use_cache else 'no cache'})",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(0 if report.matches else 1)


@app.command()
def setup(
    fineweb: Annotated[
        bool, typer.Option(help="Also download and tokenize FineWeb (network).")
    ] = False,
    eval_datasets: Annotated[
        bool,
        typer.Option(
            "--eval-datasets",
            help="Also download the lm-eval datasets into the HF cache (network).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Redo steps whose output is already valid.")] = False,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            help="Prepare with this task's codebase (default: the first task's that can).",
        ),
    ] = None,
) -> None:
    """Prepare $PRETRAINBENCH_HOME: tokenizer and offline corpus (idempotent)."""
    from runner._components import pretrainbench_home, task_codebases
    from runner._setup import SetupError, run_setup, setup_codebase

    home = pretrainbench_home()
    try:
        steps = run_setup(
            home,
            setup_codebase(task_codebases(task)),
            fineweb=fineweb,
            eval_datasets=eval_datasets,
            force=force,
            say=lambda t: err.print(t, highlight=False),
        )
    except SetupError as e:
        raise _fail(str(e)) from e
    for step in steps:
        out.print(f"{step.name}: {step.action}  {step.path}  {step.detail}", highlight=False)
    out.print(f"ready: {home}", highlight=False)


@tasks_app.command("list")
def tasks_list() -> None:
    """List the tasks."""
    from rich.table import Table

    import env

    table = Table("id", "title", "regions", "baselines")
    for task_id in env.list_tasks():
        try:
            spec = env.load_task(task_id)
        except Exception as e:  # a broken task is listed with its problem, not fatal
            table.add_row(task_id, f"[red]invalid: {escape(str(e).splitlines()[0])}[/]", "", "")
            continue
        regions = ", ".join(r for f in spec.editable_files for r in f.regions)
        table.add_row(spec.id, escape(spec.title), regions, ", ".join(spec.baselines))
    out.print(table)


@tasks_app.command("show")
def tasks_show(
    task_id: Annotated[str, typer.Argument(help="Task id or folder.")],
    profile: Annotated[
        str | None, typer.Option(help="Scale profile to describe (default: the task's CPU one).")
    ] = None,
) -> None:
    """Print the agent's initial observation for a task."""
    from runner._components import observation_for_task

    try:
        text = observation_for_task(task_id, profile)
    except Exception as e:
        raise _fail(f"cannot show {task_id!r}: {e}") from e
    out.print(text, markup=False, highlight=False)


@tasks_app.command("plot")
def tasks_plot(
    task_id: Annotated[str, typer.Argument(help="Task id or folder.")],
    plot: Annotated[
        str | None, typer.Option("--plot", help="A plot the task declares (default: its first).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Scale profile whose recipe to plot (default: the task's GPU one)."),
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="Where to write the SVG.")] = Path(
        "plot.svg"
    ),
) -> None:
    """Plot a function of the task's code for each baseline, from the baselines' own code
    (the learning-rate task: each get_lr against the iteration)."""
    from runner._components import plot_svg

    try:
        svg = plot_svg(task_id, plot, profile)
    except Exception as e:
        raise _fail(f"cannot plot {task_id!r}: {e}") from e
    output.write_text(svg, encoding="utf-8")
    out.print(f"wrote {output}", highlight=False)


@tasks_app.command("schedules", hidden=True)
def tasks_schedules(
    task_id: Annotated[str, typer.Argument(help="Task id or folder.")],
    profile: Annotated[str | None, typer.Option(help="Scale profile whose recipe to plot.")] = None,
    output: Annotated[Path, typer.Option("--out", help="Where to write the SVG.")] = Path(
        "lr_schedules.svg"
    ),
) -> None:
    """The former name of `runner tasks plot` (the task's first plot)."""
    tasks_plot(task_id, None, profile, output)


@tasks_app.command("validate")
def tasks_validate(task_dir: Annotated[Path, typer.Argument(help="A task folder.")]) -> None:
    """Check a task folder; prints every problem and exits 1 when there is one."""
    import env

    problems = env.validate_task_dir(task_dir)
    if problems:
        for problem in problems:
            err.print(f"- {problem}", markup=False, highlight=False)
        raise typer.Exit(1)
    out.print(f"{task_dir}: OK", highlight=False)


@board_app.command("show")
def leaderboard_show(
    task: Annotated[str | None, typer.Option("--task", "-t", help="Only this task.")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the leaderboard as on the web page: one ranked table per comparable group, with
    score, rank, mean ± 95 % interval over seeds and run id (one block per run when narrow)."""
    from leaderboard import NotFoundError
    from runner._board import board_json, load_board, print_board

    try:
        tables = load_board(_existing_db_url(db), task)
    except NotFoundError as e:
        raise _fail(str(e)) from e
    if json_output:
        sys.stdout.write(board_json(tables))
    elif tables:
        print_board(out, tables)
    else:
        out.print("no runs stored yet: try `runner run --task llm-pretrain-lr-schedule`")


@board_app.command("serve")
def leaderboard_serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    token: Annotated[
        str | None, typer.Option(help="Bearer token for writes (default $PRETRAINBENCH_API_TOKEN).")
    ] = None,
) -> None:
    """Serve the leaderboard web page."""
    import uvicorn

    from leaderboard import Store, create_app

    web = create_app(
        Store(_existing_db_url(db)), write_token=token or os.environ.get("PRETRAINBENCH_API_TOKEN")
    )
    out.print(f"leaderboard at http://{host}:{port}/", highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="warning")


@board_app.command("export")
def leaderboard_export(
    db: DbOption = None,
    task: Annotated[str | None, typer.Option("--task", "-t")] = None,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="File (default stdout).")
    ] = None,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="Output format.")
    ] = ExportFormat.JSONL,
) -> None:
    """Export the leaderboard: a CSV of the ranked tables (as the web page's export), or the
    stored runs as JSON lines."""
    from leaderboard import NotFoundError
    from runner._board import export_board

    try:
        text = export_board(_existing_db_url(db), fmt, task)
    except NotFoundError as e:
        raise _fail(str(e)) from e
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}", highlight=False)


@app.command()
def mcp(
    task: Annotated[str, typer.Option("--task", "-t", help="Task id or folder.")],
    transport: Annotated[
        Transport, typer.Option(help="stdio or http (streamable HTTP).")
    ] = Transport.STDIO,
    profile: Annotated[
        str | None, typer.Option(help="A profile of the task (default: its CPU one).")
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Run directory (default $PRETRAINBENCH_HOME/runs/<new id>)."),
    ] = None,
    sandbox: SandboxOption = SandboxKind.LOCAL,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    max_tests: Annotated[int | None, typer.Option(min=1)] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
    db: DbOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token every HTTP request must carry (default $PRETRAINBENCH_MCP_TOKEN; "
            "generated and printed when neither is set). stdio needs none."
        ),
    ] = None,
    allow_weak_isolation: WeakIsolationOption = False,
) -> None:
    """Serve one task session's tools over MCP (stdio or streamable HTTP)."""
    from runner._mcp import serve_mcp

    spec = _load_task(task)
    _prepare_home_before_serving(task)
    serve_mcp(
        task=task,
        transport=transport,
        profile=profile or spec.default_profiles.cpu,
        run_dir=run_dir,
        sandbox=sandbox,
        max_steps=max_steps,
        max_tests=max_tests,
        host=host,
        port=port,
        db=_db_url(db),
        token=token or os.environ.get("PRETRAINBENCH_MCP_TOKEN") or None,
        allow_weak_isolation=allow_weak_isolation,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    runs: Annotated[
        Path | None,
        typer.Option(
            "--run-dir", help="Directory of run directories (default $PRETRAINBENCH_HOME/runs)."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token every request but GET /health must carry "
            "(default $PRETRAINBENCH_API_TOKEN)."
        ),
    ] = None,
    sandbox: SandboxOption = SandboxKind.LOCAL,
    db: DbOption = None,
    allow_weak_isolation: WeakIsolationOption = False,
) -> None:
    """Serve the HTTP API: sessions, tool calls, test progress (SSE), transcripts."""
    import uvicorn

    from runner._api import MAX_BODY_BYTES, create_api

    secret = token or os.environ.get("PRETRAINBENCH_API_TOKEN")
    if not secret:
        raise _fail("set a token: --token or $PRETRAINBENCH_API_TOKEN")
    _prepare_home_before_serving()
    from runner._components import default_runs_dir

    api = create_api(
        runs_dir=runs or default_runs_dir(),
        token=secret,
        sandbox=sandbox,
        db=_db_url(db),
        allow_weak_isolation=allow_weak_isolation,
    )
    out.print(
        f"API at http://{host}:{port}/ (OpenAPI: /openapi.json); every route but /health needs "
        f'"Authorization: Bearer <token>"; bodies over {MAX_BODY_BYTES} bytes get 413',
        highlight=False,
    )
    uvicorn.run(api, host=host, port=port, log_level="warning")


@app.command()
def doctor(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Report the guarantees as configured, without test jobs."),
    ] = False,
) -> None:
    """Check which sandbox guarantees this host gives (runs a few tiny jobs: seconds).

    Exits 1 when a guarantee of the local sandbox does not hold: jobs then refuse to start
    unless `--allow-weak-isolation` is given.
    """
    from runner._doctor import doctor_table, summary
    from sandbox import check_host

    rows = check_host(measure=not quick)
    out.print(doctor_table(rows))
    out.print(escape(summary(rows)), highlight=False)
    if not all(row.holds for row in rows if row.group == "sandbox"):
        raise typer.Exit(1)


@app.command("gpu-check")
def gpu_check(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan and the full profile's memory estimate per GPU (80 GB, 2 GPUs).",
        ),
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where gpu_check.json, the table and the logs go."),
    ] = None,
    record_reference: Annotated[
        bool,
        typer.Option(help="Store this run's small-profile loss curve as the reference."),
    ] = False,
    skip: Annotated[
        list[str] | None, typer.Option(help="A part to leave out (repeatable).")
    ] = None,
) -> None:
    """Check a GPU machine in about 8 minutes: environment, memory plan, full-profile
    throughput, a small-profile loss curve against the reference, evaluation throughput, Docker.

    Exits 1 when a part failed; each part says why and where its log is.
    """
    from datetime import UTC, datetime

    from runner._components import pretrainbench_home
    from runner._gpu_check import PART_NAMES, CheckOptions, render_table, run_gpu_check

    unknown = sorted(set(skip or []) - set(PART_NAMES))
    if unknown:
        raise _fail(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PART_NAMES)}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = out_dir or pretrainbench_home() / "gpu-check" / stamp
    opts = CheckOptions(
        out_dir=target, dry_run=dry_run, record_reference=record_reference, skip=tuple(skip or [])
    )
    report = run_gpu_check(opts, lambda line: out.print(escape(line), highlight=False))
    out.print(escape(render_table(report)), highlight=False)
    out.print(f"report: {escape(str(target / 'gpu_check.json'))}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def export(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="A run id or a sweep id.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="The folder to write.")],
    fmt: Annotated[
        RecordFormat, typer.Option("--format", help="What to write (a record folder).")
    ] = RecordFormat.RECORD,
    db: DbOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier record in --out.")
    ] = False,
) -> None:
    """Export a stored run or sweep as a record anyone can check: README.md, submission.json
    (validated against docs/record.schema.json), one log per seed, the code as run, the diff.

    Exits 2 when the store has no such run or sweep, or --out is a non-empty folder (--force
    replaces an earlier record there, never other contents).
    """
    from leaderboard import Store
    from runner._record_export import export_record
    from runner._record_format import RecordError

    assert fmt is RecordFormat.RECORD
    with Store(_existing_db_url(db)) as store:
        try:
            outcome = export_record(store, record_id, output, force=force)
        except RecordError as e:
            raise _fail(str(e), 2) from e
    for note in outcome.notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    out.print(
        f"wrote the {outcome.kind} record {escape(record_id)} to {escape(str(outcome.out))} "
        f"({outcome.files} files)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A record folder.")],
    db: DbOption = None,
) -> None:
    """Check a record folder (JSON Schema, sha256 of every file, no name outside it) and store
    its results marked imported: ranked only beside results of their own comparable group, never
    an anchor where the store has baselines of its own, never replacing a run it ran itself.

    Exits 2, storing nothing, when the record is malformed; the message names file and field.
    """
    from leaderboard import Store
    from runner._record_format import RecordError
    from runner._record_import import read_record, store_record

    try:
        _, runs, sweep = read_record(folder)  # checked before the store is opened (or made)
        with Store(_db_url(db)) as store:
            outcome = store_record(store, runs, sweep)
    except RecordError as e:
        raise _fail(f"import refused: {e}", 2) from e
    for run_id, result in outcome.runs.items():
        out.print(f"{escape(run_id)}: {result}", highlight=False, soft_wrap=True)
    if outcome.sweep_id is not None:
        out.print(
            f"sweep {escape(outcome.sweep_id)}: {outcome.sweep}", highlight=False, soft_wrap=True
        )


def _print_results(
    db: str | None,
    records: list[RunRecord],
    *,
    as_json: bool = False,
    also: set[str] | None = None,
    task_id: str | None = None,
) -> None:
    """The scored rows of this command's runs (and of the stored runs in ``also``), ranked
    within their groups as on the web page (the store at ``db`` holds them: `ActiveRun.finish`
    recorded them there)."""
    from runner._board import board_json, load_board, print_board

    run_ids = {r.run_id for r in records} | (also or set())
    task_id = records[0].task_id if records else task_id
    tables = load_board(db, task_id, run_ids=run_ids) if db and run_ids and task_id else []
    if as_json:
        sys.stdout.write(board_json(tables))
    elif tables:
        print_board(out, tables)
    else:
        out.print("no results")


def main() -> None:
    """Entry point of the `runner` console script."""
    app()


if __name__ == "__main__":
    main()
