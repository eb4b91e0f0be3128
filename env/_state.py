"""The session's persistent state: budgets, test records, the submission, the workspace.

Everything here crosses a file boundary (``run_dir/session.json``), so every model is a pydantic
model with ``extra="forbid"``; a session restored from the file is exactly the one that wrote it.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from env._spec import Budgets, SeedPlan
from env._workspace_state import WorkspaceState
from sandbox import DataPaths, TestResult

__all__ = [
    "Budgets",
    "CallRecord",
    "PendingWork",
    "SeedPlan",
    "SessionState",
    "Submission",
    "TestEntry",
    "ToolResult",
    "UncountedAttempt",
    "UncountedKind",
]

STATE_FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolResult(_Model):
    """What one tool call returned: the observation text and what it cost."""

    tool: str
    text: str
    ok: bool
    cost_step: int = 0
    cost_test: int = 0
    steps_left: int
    tests_left: int
    done: bool = False


class TestEntry(_Model):
    """A counted test: the code it ran, the visible result, and (once submitted) the final one."""

    __test__ = False

    number: int
    step: int
    status: Literal["ok", "failed"]
    files: dict[str, str]
    regions: dict[str, str] = Field(default_factory=dict)
    diff: str = ""
    result: TestResult
    final: TestResult | None = None


UncountedKind = Literal["preflight", "infra_error"]


class UncountedAttempt(_Model):
    """A test call that cost no test: refused by a preflight job, or lost to an infrastructure
    failure (the sandbox's, or a workspace that fails its own integrity check)."""

    step: int
    kind: UncountedKind
    reason: str
    out_dir: str | None = None


class PendingWork(_Model):
    """Work in flight when the state was written; a resumed session finishes it, uncharged."""

    kind: Literal["test", "final"]
    number: int
    step: int
    files: dict[str, str]
    auto: bool = False


class Submission(_Model):
    """The test chosen as final; ``auto`` when chosen because the steps ran out."""

    test_number: int
    step: int
    auto: bool = False


class CallRecord(_Model):
    """One tool call as the budget saw it (the runner keeps the full transcript)."""

    tool: str
    ok: bool
    cost_step: int
    cost_test: int


class SessionState(_Model):
    """Everything needed to restore a session exactly (written to ``session.json``)."""

    format_version: int = STATE_FORMAT_VERSION
    run_id: str
    task_id: str
    task_source: str
    profile: str
    budgets: Budgets
    seeds: SeedPlan
    data: DataPaths
    env: dict[str, str] = Field(default_factory=dict)  # harness overrides for every test
    steps_used: int = 0
    tests_used: int = 0
    failed_submits: int = 0
    calls: list[CallRecord] = Field(default_factory=list)
    tests: list[TestEntry] = Field(default_factory=list)
    uncounted: list[UncountedAttempt] = Field(default_factory=list)
    workspace: WorkspaceState
    pending: PendingWork | None = None
    submission: Submission | None = None
    final: TestResult | None = None


def state_json(state: SessionState) -> str:
    """The canonical JSON text of a state (sorted keys, so equal states give equal text)."""
    return json.dumps(state.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
