"""The MCP progress forwarder sends every event queued before the call ended, in order."""

from __future__ import annotations

import queue

import anyio

from runner import _mcp


class _Session:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[float, str | None]] = []
        self.fail_after = fail_after

    async def report_progress(
        self, progress: float, total: float | None, message: str | None
    ) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("client went away")
        self.sent.append((progress, message))


class _Ctx:
    def __init__(self, session: _Session) -> None:
        self.session = session


def _event(step: int) -> dict[str, object]:
    return {"event": "progress", "setting": "s", "seed": 42, "phase": "train", "step": step}


def _run(session: _Session, events: queue.Queue[dict[str, object]]) -> None:
    async def main() -> None:
        done = anyio.Event()
        done.set()  # the call ended before the forwarder first looked: nothing may be lost
        with anyio.fail_after(5):
            await _mcp._forward_progress(_Ctx(session), events, done)  # type: ignore[arg-type]

    anyio.run(main)


def test_a_call_that_ends_between_polls_still_reports_all_its_progress() -> None:
    events: queue.Queue[dict[str, object]] = queue.Queue()
    for step in range(5):
        events.put(_event(step))
    events.put({"event": "tool", "name": "test"})  # not progress: skipped, not counted
    session = _Session()
    _run(session, events)
    assert [p for p, _ in session.sent] == [1, 2, 3, 4, 5]
    assert [m for _, m in session.sent][-1] == "s seed 42: train  step 4/?"


def test_a_client_that_went_away_ends_the_forwarding_not_the_call() -> None:
    events: queue.Queue[dict[str, object]] = queue.Queue()
    for step in range(5):
        events.put(_event(step))
    session = _Session(fail_after=2)
    _run(session, events)
    assert len(session.sent) == 2


def test_the_forwarder_waits_for_the_call_and_sends_events_as_they_come() -> None:
    events: queue.Queue[dict[str, object]] = queue.Queue()
    session = _Session()

    async def main() -> None:
        done = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_mcp._forward_progress, _Ctx(session), events, done)  # type: ignore[arg-type]
            events.put(_event(1))
            with anyio.fail_after(5):
                while not session.sent:
                    await anyio.sleep(0.01)
            events.put(_event(2))
            done.set()

    anyio.run(main)
    assert [p for p, _ in session.sent] == [1, 2]
