"""Live progress on the terminal: the current step and tool, and a training bar."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:
    from runner._agents import BudgetView, ToolArguments
    from sandbox import ProgressEvent


class Display:
    """What the orchestration reports to; the base class prints nothing (``--quiet``)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def start(self, title: str, max_steps: int = 1) -> None:
        """A run begins, with a budget of ``max_steps``."""

    def note(self, text: str) -> None:
        """A one-line message worth showing."""

    def on_tool(self, name: str, arguments: ToolArguments, budget: BudgetView) -> None:
        """A tool call is about to run."""

    def on_progress(self, event: ProgressEvent) -> None:
        """A sandbox ProgressEvent arrived."""

    def stop(self, summary: str) -> None:
        """The run ended."""


class QuietDisplay(Display):
    """Prints nothing but errors (the orchestration raises those)."""


class LiveDisplay(Display):
    """rich Live: a step line and a training progress bar with loss and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(console)
        self._progress = self._new_progress()
        self._live: Live | None = None
        self._step_task: TaskID | None = None
        self._train_tasks: dict[tuple[str, int], TaskID] = {}
        self._last_refresh = 0.0

    def start(self, title: str, max_steps: int = 1) -> None:
        """Open the live area for a run."""
        self.console.rule(title)
        self._progress = self._new_progress()
        self._train_tasks = {}
        self._step_task = self._progress.add_task(
            f"step 0/{max_steps}", total=max_steps, extra="starting"
        )
        self._live = Live(self._progress, console=self.console, refresh_per_second=4)
        self._live.start()

    def _new_progress(self) -> Progress:
        """The step line and the training bars: description, bar, k/N, loss and ETA, time."""
        return Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>5.0f}/{task.total:<5.0f}"),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            console=self.console,
        )

    def note(self, text: str) -> None:
        """Print a line above the live area."""
        self.console.print(text, markup=False, highlight=False)

    def on_tool(self, name: str, arguments: ToolArguments, budget: BudgetView) -> None:
        """Show 'step k/N · tool'."""
        if self._step_task is None:
            return
        self._progress.update(
            self._step_task,
            total=budget.max_steps,
            completed=min(budget.steps_used + (name != "submit"), budget.max_steps),
            description=f"step {budget.steps_used + (name != 'submit')}/{budget.max_steps}",
            extra=f"{name}  tests {budget.tests_used}/{budget.max_tests}",
        )

    def on_progress(self, event: ProgressEvent) -> None:
        """One bar per (setting, seed): step/max_steps, loss and ETA."""
        key = (event.setting, event.seed)
        task = self._train_tasks.get(key)
        if task is None:
            task = self._progress.add_task(
                f"{event.setting} seed {event.seed}", total=event.max_steps or 1, extra=event.phase
            )
            self._train_tasks[key] = task
        parts: list[str] = [event.phase]
        if event.loss is not None:
            parts.append(f"loss {event.loss:.3f}")
        if event.tokens_per_s:
            parts.append(f"{event.tokens_per_s:,.0f} tok/s")
        if event.eta_s is not None:
            parts.append(f"ETA {int(event.eta_s) // 60}:{int(event.eta_s) % 60:02d}")
        if event.message:
            parts.append(event.message[:60])
        completed: float | None = event.step
        if event.phase == "done":
            completed = event.max_steps or self._progress.tasks[task].total or 1
        self._progress.update(
            task, total=event.max_steps or None, completed=completed, extra="  ".join(parts)
        )
        now = time.monotonic()
        if now - self._last_refresh > 0.25 and self._live is not None:
            self._live.refresh()
            self._last_refresh = now

    def stop(self, summary: str) -> None:
        """Close the live area and print the run's one-line summary."""
        if self._live is not None:
            self._live.stop()
            self._live = None
            if not self.console.is_terminal:
                self.console.line()  # the last non-terminal render ends without a newline
        self._step_task = None
        self.console.print(summary, markup=False, highlight=False)
