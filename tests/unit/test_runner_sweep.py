"""`runner sweep` without running anything: the grid, its validation against the codebase's
own override check, the points and their CONFIG_OVERRIDES text, and the sweep's identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from env import load_task
from env._data_regions import parse_data_region
from runner._run import RunConfig
from runner._sweep import (
    SweepError,
    check_sweep,
    grid_points,
    make_plan,
    overridable_keys,
    overrides_text,
    parse_grid,
    parse_value,
    point_config,
    point_run_id,
    sweep_identity,
)

LR_TASK = "llm-pretrain-lr-schedule"


def test_values_are_typed_literals() -> None:
    assert parse_value("1e-3") == 0.001 and type(parse_value("1e-3")) is float
    assert parse_value("2") == 2 and type(parse_value("2")) is int
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("'x'") == "x" and parse_value("adamw") == "adamw"
    with pytest.raises(SweepError, match="finite"):
        parse_value("1e999")


def test_grid_keeps_command_line_order() -> None:
    grid = parse_grid(["warmup_iters=2,4", "learning_rate=1e-3,2e-3,3e-3"])
    assert list(grid) == ["warmup_iters", "learning_rate"]
    assert grid["learning_rate"] == [0.001, 0.002, 0.003]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "at least one --grid"),
        (["learning_rate"], "expected KEY=V1"),
        (["=1,2"], "expected KEY=V1"),
        (["learning_rate="], "no values"),
        (["learning_rate=1e-3", "learning_rate=2e-3"], "twice"),
        (["learning_rate=1e-3,0.001"], "listed twice"),
    ],
)
def test_bad_grids_are_refused(specs: list[str], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        parse_grid(specs)


def test_one_and_one_point_oh_are_different_values() -> None:
    assert parse_grid(["warmup_iters=1,1.0"])["warmup_iters"] == [1, 1.0]


def test_points_are_the_default_then_the_product_in_order() -> None:
    points = grid_points({"learning_rate": [0.001, 0.002], "warmup_iters": [2, 4]})
    assert points == [
        {},
        {"learning_rate": 0.001, "warmup_iters": 2},
        {"learning_rate": 0.001, "warmup_iters": 4},
        {"learning_rate": 0.002, "warmup_iters": 2},
        {"learning_rate": 0.002, "warmup_iters": 4},
    ]


def test_overrides_text_is_the_data_region_the_edit_path_parses() -> None:
    values = {"learning_rate": 0.001, "warmup_iters": 4, "flag": True, "name": 'a"b'}
    text = overrides_text("CONFIG_OVERRIDES", values)
    assert text.startswith("CONFIG_OVERRIDES = {")
    parsed = parse_data_region(text, "CONFIG_OVERRIDES")
    assert parsed == values and type(parsed["warmup_iters"]) is int  # type: ignore[index]
    assert overrides_text("CONFIG_OVERRIDES", {}) == "CONFIG_OVERRIDES = {}"


def test_keys_come_from_the_codebase_table() -> None:
    keys = overridable_keys(load_task(LR_TASK))
    assert {"learning_rate", "min_lr", "warmup_iters", "weight_decay", "grad_clip"} == set(keys)


@pytest.mark.parametrize(
    ("grid", "base", "message"),
    [
        ({"n_layer": [2]}, {}, "'n_layer' cannot be overridden"),
        ({"learning_rate": [0.001]}, {"max_iters": 5}, "'max_iters' cannot be overridden"),
        ({"warmup_iters": [101]}, {}, "warmup_iters=101"),  # tiny trains 100 iterations
        ({"warmup_iters": [2.5]}, {}, "warmup_iters=2.5"),
        ({"learning_rate": [1e-4]}, {}, "min_lr"),  # below tiny's min_lr 2e-4
        ({"learning_rate": [2.0]}, {}, "learning_rate=2.0"),
    ],
)
def test_values_the_codebase_refuses_are_refused_before_anything_runs(
    grid: dict, base: dict, message: str
) -> None:
    with pytest.raises(SweepError, match=message):
        check_sweep(load_task(LR_TASK), "tiny", grid, base)


def test_a_base_override_makes_a_point_valid() -> None:
    check_sweep(load_task(LR_TASK), "tiny", {"learning_rate": [1e-4]}, {"min_lr": 1e-5})


def _base(**update: object) -> RunConfig:
    return RunConfig.model_validate(
        {"task": LR_TASK, "agent": "method:x", "profile": "tiny", "sweep_point": {}} | update
    )


def _plan(base: RunConfig, grid: list[str], seeds: list[int], label: str = "sweep"):  # type: ignore[no-untyped-def]
    from runner._choices import SandboxKind

    return make_plan(
        base,
        load_task(LR_TASK),
        label=label,
        grid=parse_grid(grid),
        seeds=seeds,
        sandbox=SandboxKind.LOCAL,
        command="runner sweep …",
    )


def test_point_configs_merge_the_base_overrides_with_the_point() -> None:
    get_lr = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return 1e-3"
    base = _base(
        regions={"get_lr": get_lr, "config_overrides": 'CONFIG_OVERRIDES = {"min_lr": 1e-05}'}
    )
    plan = _plan(base, ["learning_rate=1e-3,3e-3", "warmup_iters=2"], [42, 43], "const")
    record = plan.record
    assert [p.overrides for p in record.points] == [
        {},
        {"learning_rate": 0.001, "warmup_iters": 2},
        {"learning_rate": 0.003, "warmup_iters": 2},
    ]
    assert record.base_overrides == {"min_lr": 1e-5}
    assert record.base_regions == {"get_lr": get_lr}
    default, second = point_config(plan, 0), point_config(plan, 2)
    assert default.regions == {
        "get_lr": get_lr,
        "config_overrides": plan.variable + ' = {"min_lr": 1e-05}',
    }
    assert parse_data_region(second.regions["config_overrides"], "CONFIG_OVERRIDES") == {
        "min_lr": 1e-5,
        "learning_rate": 0.003,
        "warmup_iters": 2,
    }
    assert second.agent == "method:const" and second.sweep_id == record.sweep_id
    assert second.sweep_point == {"learning_rate": 0.003, "warmup_iters": 2}
    assert default.sweep_point == {}
    assert second.seeds == second.final_seeds == [42, 43]
    assert second.sandbox == "local"
    assert point_run_id(record.sweep_id, 2) == f"{record.sweep_id}-p2"


def test_the_same_sweep_has_the_same_id_and_any_change_a_new_one() -> None:
    base = _base()
    first = _plan(base, ["learning_rate=1e-3,2e-3"], [42, 43]).record.sweep_id
    assert first == _plan(base, ["learning_rate=0.001,0.002"], [42, 43]).record.sweep_id
    assert first.startswith(f"{LR_TASK}-sweep-")
    others = {
        _plan(base, ["learning_rate=2e-3,1e-3"], [42, 43]).record.sweep_id,  # point order
        _plan(base, ["learning_rate=1e-3,2e-3"], [42]).record.sweep_id,
        _plan(base, ["learning_rate=1e-3,2e-3"], [42, 43], "other").record.sweep_id,
        _plan(
            base.model_copy(update={"data_source": "fineweb"}), ["learning_rate=1e-3"], [42]
        ).record.sweep_id,
    }
    assert first not in others and len(others) == 4
    kwargs = dict(
        task_id="t",
        codebase_version="c",
        profile="tiny",
        data_source="offline",
        label="sweep",
        regions={},
        grid={"learning_rate": [0.001]},
        seeds=[42],
    )
    same = sweep_identity(**kwargs)  # type: ignore[arg-type]
    assert same == sweep_identity(**kwargs) and same != sweep_identity(
        **kwargs | {"codebase_version": "d"}
    )  # type: ignore[arg-type]
    assert same != sweep_identity(**kwargs | {"regions": {"get_lr": "x"}})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "n_layer=2,4", "--seeds", "42"], "'n_layer' cannot be overridden"),
        (
            ["--grid", "learning_rate=1e-3", "--grid", "learning_rate=2e-3", "--seeds", "42"],
            "twice",
        ),
        (["--grid", "learning_rate=", "--seeds", "42"], "no values"),
        (["--grid", "learning_rate=1e-3", "--seeds", "42,x"], "comma-separated integers"),
        (["--grid", "learning_rate=1e-3", "--seeds", "42,42"], "seed twice"),
        (["--grid", "learning_rate=1e-3", "--seeds", "-1"], ">= 0"),
        (["--grid", "warmup_iters=500", "--seeds", "42"], "warmup_iters=500"),
        (["--grid", "warmup_iters=5", "--seeds", "42", "--metric", "loss"], "--metric 'loss'"),
        (["--grid", "warmup_iters=5", "--seeds", "42", "--region", "nope=x.py"], "no editable"),
    ],
)
def test_cli_refuses_a_bad_sweep_with_exit_2_and_creates_nothing(
    args: list[str], message: str, tmp_path: Path
) -> None:
    from runner.cli import app

    runs, db = tmp_path / "runs", tmp_path / "lb.db"
    base = ["sweep", "--task", LR_TASK, "--profile", "tiny", "--run-dir", str(runs)]
    result = CliRunner().invoke(app, [*base, "--db", str(db), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not runs.exists() and not db.exists()


def test_a_locked_point_waits_for_its_holder_and_takes_its_result(tmp_path: Path) -> None:
    """Two drivers never run one point: the second waits on the lock, then finds the result
    the first wrote, and starts nothing."""
    import fcntl
    import threading

    from runner._display import Display
    from runner._sweep import PointResult, open_sweep_dir, run_point

    sweep_dir, plan = open_sweep_dir(_plan(_base(), ["learning_rate=1e-3"], [42]), tmp_path)
    run_id = point_run_id(plan.record.sweep_id, 1)
    got: list[PointResult] = []
    with (sweep_dir / "points" / f"{run_id}.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: got.append(run_point(sweep_dir, 1, Display())))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not got  # blocked on the lock
        theirs = PointResult(index=1, run_id=run_id, result_run_id=run_id, status="finished")
        (sweep_dir / "points" / f"{run_id}.result.json").write_text(theirs.model_dump_json())
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(10)
    assert got == [theirs]
    assert not (sweep_dir / "points" / run_id).exists()  # nothing was started
