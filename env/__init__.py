"""The agent's world: task specs, the workspace with its editable regions, the tools, budgets,
session state, baselines and the initial observation. Pure Python (no torch).

`runner → env → sandbox`: env calls the sandbox to run tests and imports nothing else of ours.
"""

from env._baselines import Baseline, BaselineEdit, BaselineError, baseline_edits, load_baselines
from env._errors import EditError, IntegrityError, TaskSpecError
from env._listing import file_diff
from env._observation import ObservationError, render_observation
from env._paths import tasks_dir
from env._plots import PlotSeries, plot_series
from env._session import Session, SessionError
from env._spec import TaskSpec, list_tasks, load_task, validate_task_dir
from env._state import Budgets, SessionState, TestEntry, ToolResult
from env._texts import (
    NO_TOOL_NUDGE,
    SYSTEM_PROMPT,
    VANILLA_INSTRUCTION,
    mask_timings,
    steps_reminder,
)
from env._tools import TOOL_NAMES, tool_schemas
from env._workspace import Workspace

__all__ = [
    "NO_TOOL_NUDGE",
    "SYSTEM_PROMPT",
    "TOOL_NAMES",
    "VANILLA_INSTRUCTION",
    "Baseline",
    "BaselineEdit",
    "BaselineError",
    "Budgets",
    "EditError",
    "IntegrityError",
    "ObservationError",
    "PlotSeries",
    "Session",
    "SessionError",
    "SessionState",
    "TaskSpec",
    "TaskSpecError",
    "TestEntry",
    "ToolResult",
    "Workspace",
    "baseline_edits",
    "file_diff",
    "list_tasks",
    "load_baselines",
    "load_task",
    "mask_timings",
    "plot_series",
    "render_observation",
    "steps_reminder",
    "tasks_dir",
    "tool_schemas",
    "validate_task_dir",
]
