"""Task knowledge as data: default profiles, each profile's training data, and declared plots."""

from __future__ import annotations

import copy

import pytest

from env import load_baselines, load_task, plot_series
from env._spec import validate_task_dir
from tests._fixtures.env import BASE_TASK

RECIPE = {"max_iters": 10, "warmup_iters": 2, "learning_rate": 0.01, "min_lr": 0.001}
PLOT = {
    "name": "lr",
    "title": "schedules",
    "function": "get_lr",
    "x": "it",
    "x_range": "max_iters",
    "args": {
        "warmup_iters": "warmup_iters",
        "lr_decay_iters": "max_iters",
        "learning_rate": "learning_rate",
        "min_lr": "min_lr",
    },
    "y_label": "learning rate",
}


def _profiles(**tiny: object) -> dict:
    profiles = copy.deepcopy(BASE_TASK["profiles"])
    profiles["tiny"] = {**profiles["tiny"], "recipe": RECIPE, **tiny}
    profiles["full"] = {**profiles["full"], "recipe": RECIPE, "data": "fineweb"}
    return profiles


def test_defaults_and_data_come_from_the_task(make_env_task) -> None:
    plain = load_task(make_env_task())
    assert (plain.default_profiles.cpu, plain.default_profiles.gpu) == ("tiny", "full")
    assert plain.profile("full").data == "offline"  # undeclared: the local corpus
    task = load_task(
        make_env_task({"profiles": _profiles(), "default_profile": {"cpu": "full", "gpu": "tiny"}})
    )
    assert (task.default_profiles.cpu, task.default_profiles.gpu) == ("full", "tiny")
    assert task.profile("full").data == "fineweb"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"default_profile": {"cpu": "tiny", "gpu": "huge"}}, "default_profile.gpu: 'huge' is not"),
        ({"profiles": _profiles(data="s3")}, "profiles.tiny.data: Input should be 'offline' or"),
        ({"plots": [PLOT]}, "plots[0]: profile 'tiny' has no recipe 'warmup_iters'"),
        (
            {"profiles": _profiles(), "plots": [{**PLOT, "function": "get_wd"}]},
            "plots[0].function: no open region defines 'get_wd'",
        ),
        (
            {"profiles": _profiles(), "plots": [PLOT, PLOT]},
            "plots[1].name: duplicate plot 'lr'",
        ),
        (
            {"profiles": _profiles(), "plots": [{**PLOT, "args": {"it": "max_iters"}}]},
            "plots[0].args: 'it' is the swept parameter x",
        ),
    ],
)
def test_validate_names_each_problem(make_env_task, changes: dict, problem: str) -> None:
    problems = validate_task_dir(make_env_task(changes))
    assert any(problem in p for p in problems), problems


def test_plot_series_runs_each_baselines_own_function(make_env_task, env_tasks_root) -> None:
    folder = make_env_task({"profiles": _profiles(), "plots": [PLOT]}, baselines=["cosine", "wsd"])
    task = load_task(folder)
    curves = plot_series(task, "lr", "tiny", load_baselines(task))
    assert [c.name for c in curves] == ["cosine", "wsd"]
    xs = [x for x, _ in curves[0].points]
    assert xs == [float(i) for i in range(11)]
    assert curves[0].points[0][1] < curves[0].points[2][1]  # warmup rises
    assert all(y >= RECIPE["min_lr"] - 1e-12 for _, y in curves[0].points)
    assert plot_series(task, None, "tiny", []) == []
