"""The openai: agent against a real chat-completions server on loopback, on a real session.

The session runs the real env, the real sandbox preflight and Executor with LocalBackend
subprocesses, on the torch-free fake codebase of `tests/_fixtures/runner.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner._display import QuietDisplay
from runner._run import RunConfig, read_run_info, start_run
from runner._transcript import TRANSCRIPT_FORMAT_VERSION, read_transcript
from tests._fixtures.runner import tool_call

pytestmark = pytest.mark.integration

FILE = "nanoGPT/custom_pretrain.py"
CONSTANT = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
    "    return learning_rate if it >= warmup_iters else learning_rate * (it + 1) / (warmup_iters + 1)"
)


def _config(server_url: str, db: str, **kw: object) -> RunConfig:
    return RunConfig(
        task="fake-lr",
        agent="openai:scripted-model",
        profile="tiny",
        base_url=server_url,
        db=db,
        **kw,
    )  # type: ignore[arg-type]


def _events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in read_transcript(run_dir) if e["kind"] == kind]


def test_openai_agent_full_loop(runner_env, chat_server, tmp_path: Path) -> None:
    script = [
        {"status": 429},  # rate limited: retried, not charged
        {
            "content": "Let me look.",
            "tool_calls": [tool_call("view", '{"filename": "nanoGPT/custom_pretrain.py"', "c1")],
        },
        {
            "tool_calls": [
                tool_call(
                    "edit",
                    {
                        "op": "replace",
                        "filename": FILE,
                        "start_line": 10,
                        "end_line": 14,
                        "content": CONSTANT,
                    },
                    "c2",
                )
            ]
        },
        {"tool_calls": [tool_call("test", "", "c3")]},
        {"content": "Hmm, thinking without acting."},
        {
            "tool_calls": [
                tool_call(
                    "edit",
                    {
                        "op": "replace",
                        "filename": FILE,
                        "start_line": 15,
                        "end_line": 15,
                        "content": 'CONFIG_OVERRIDES = {"learning_rate": 0.02}',
                    },
                    "c4",
                )
            ]
        },
        {"tool_calls": [tool_call("test", "{}", "c5")]},
        {"tool_calls": [tool_call("submit", {"n": 1}, "c6")]},
    ]
    server = chat_server(script)
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    outcome = start_run(
        _config(server.base_url, db), tmp_path / "runs", QuietDisplay(), api_key="test-key"
    )
    run_dir = outcome.run_dir
    assert outcome.info.status == "finished", outcome.info.reason
    assert outcome.info.reason == "submitted"
    assert not server.script, "every scripted reply was consumed"
    assert len(server.requests) == 8

    events = read_transcript(run_dir)
    assert events[0]["kind"] == "header"
    assert events[0]["format_version"] == TRANSCRIPT_FORMAT_VERSION
    retries = _events(run_dir, "llm_retry")
    assert len(retries) == 1 and retries[0]["status"] == 429
    results = _events(run_dir, "tool_result")
    assert [r["name"] for r in results] == ["view", "edit", "test", "edit", "test", "submit"]
    assert results[0]["text"].startswith("ERROR: Invalid arguments for 'view'")
    assert results[0]["ok"] is False and results[0]["cost_step"] == 1
    assert results[1]["text"].startswith("OK: Replaced lines 10..14")
    assert results[2]["text"].startswith("[Test #1]")
    assert results[5]["text"].startswith("[submit] Submitting result from test #1")
    assert [r["call_id"] for r in results] == ["c1", "c2", "c3", "c4", "c5", "c6"]
    # budgets: 5 step-costing calls, 2 tests; the retry and the text-only reply cost nothing
    assert results[-1]["steps_used"] == 5 and results[-1]["tests_used"] == 2
    session = json.loads((run_dir / "session.json").read_text())
    assert session["steps_used"] == 5 and session["tests_used"] == 2
    assert session["submission"]["test_number"] == 1
    # token usage per call, the nudge after the text-only reply, file snapshots per edit
    assistant = [e for e in _events(run_dir, "message") if e["message"]["role"] == "assistant"]
    assert len(assistant) == 7 and all(e["usage"]["prompt_tokens"] > 0 for e in assistant)
    assert all(e["usage"]["completion_tokens"] > 0 for e in assistant)
    assert all(e["elapsed_s"] >= 0 and e["cost_usd"] is None for e in assistant)  # no price
    assert any(
        "[Harness] Your reply contained no tool call" in str(e["message"]["content"])
        for e in _events(run_dir, "message")
    )
    snapshots = _events(run_dir, "snapshot")
    assert len(snapshots) == 2
    # each snapshot carries the diff of the edit it follows, before → after
    [first_diff] = snapshots[0]["diffs"].values()
    assert "+    return learning_rate if it >= warmup_iters" in first_diff
    assert "-    if it < warmup_iters:" in first_diff
    [second_diff] = snapshots[1]["diffs"].values()
    assert '+CONFIG_OVERRIDES = {"learning_rate": 0.02}' in second_diff
    assert "+    return learning_rate if" not in second_diff  # the first edit is not repeated
    second = Path(next(iter(snapshots[1]["files"].values()))).read_text()
    assert (
        'CONFIG_OVERRIDES = {"learning_rate": 0.02}' in second
        and "return learning_rate if" in second
    )
    # the model saw the tools and every tool result, in order
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == [
        "view",
        "edit",
        "undo",
        "test",
        "submit",
    ]
    last = server.requests[-1]["messages"]
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == [
        "c1",
        "c2",
        "c3",
        "c4",
        "c5",
    ]
    assert last[0]["role"] == "system" and "nanoGPT/custom_pretrain.py" in last[1]["content"]

    # leaderboard: the submitted result only; a vanilla row comes from a vanilla run
    types = {r.type: r for r in outcome.records}
    assert set(types) == {"agent"}
    assert types["agent"].final is not None and types["agent"].final.test_number == 1
    assert types["agent"].final.auto_submitted is False
    assert types["agent"].status_reason == "submitted"
    assert {row.setting for row in types["agent"].final.per_seed} == {
        "schedule",
        "train-tiny",
        "gpt-tiny",
        "lm-eval-tiny",
    }
    from leaderboard import Store

    store = Store(db)
    stored = store.get_run(outcome.info.run_id)
    assert stored is not None and stored.type == "agent" and stored.model == "scripted-model"
    info = read_run_info(run_dir)
    assert info.git_commit is None or len(info.git_commit) >= 7
    assert info.codebase_version.startswith("sha256:")


def test_reminder_and_three_replies_without_tools(runner_env, chat_server, tmp_path: Path) -> None:
    view = {"filename": FILE, "start_line": 1, "end_line": 3}
    script = [{"tool_calls": [tool_call("view", view, f"v{i}")]} for i in range(2)]
    script += [{"content": "I will think."}] * 3
    server = chat_server(script)
    outcome = start_run(
        _config(server.base_url, None, max_steps=4), tmp_path / "runs", QuietDisplay(), api_key="k"
    )
    assert outcome.info.status == "incomplete"
    assert "3 replies without a tool call" in (outcome.info.reason or "")
    reminders = [
        e
        for e in _events(outcome.run_dir, "message")
        if str(e["message"]["content"]).startswith("[Reminder]")
    ]
    assert len(reminders) == 1 and "2 step(s) remain" in reminders[0]["message"]["content"]
    assert [r.type for r in outcome.records] == ["agent"]
    assert outcome.records[0].final is None


def test_vanilla_mode_one_response_one_test(runner_env, chat_server, tmp_path: Path) -> None:
    script = [
        {
            "tool_calls": [
                tool_call(
                    "edit",
                    {
                        "op": "replace",
                        "filename": FILE,
                        "start_line": 10,
                        "end_line": 14,
                        "content": CONSTANT,
                    },
                    "e1",
                ),
                tool_call("test", "{}", "t1"),  # the harness tests; this call is skipped
            ]
        }
    ]
    server = chat_server(script)
    outcome = start_run(
        _config(server.base_url, None, mode="vanilla"),
        tmp_path / "runs",
        QuietDisplay(),
        api_key="k",
    )
    assert outcome.info.status == "finished"
    assert len(server.requests) == 1
    names = [e["name"] for e in _events(outcome.run_dir, "tool_result")]
    assert names == ["edit", "test", "submit"]
    assert [r.type for r in outcome.records] == ["vanilla"]
    assert outcome.records[0].final is not None
    assert "return learning_rate if" in outcome.records[0].regions.get("get_lr", "")


def test_endpoint_failure_is_recorded(runner_env, chat_server, tmp_path: Path) -> None:
    server = chat_server([{"status": 400}])
    outcome = start_run(
        _config(server.base_url, None), tmp_path / "runs", QuietDisplay(), api_key="k"
    )
    # it failed before any test: the endpoint's failure, not the agent's (not ranked)
    assert outcome.info.status == "infra_error"
    assert "HTTP 400" in (outcome.info.reason or "")
    assert server.base_url in (outcome.records[0].status_reason or "")
    assert _events(outcome.run_dir, "llm_error")
    from runner._run import summary_rows

    [row] = summary_rows(outcome.records)
    assert row["status"] == "incomplete" and row["note"] == "no submitted result"


def test_an_agent_run_with_an_identical_result_is_kept_as_a_repeat(
    runner_env, chat_server, tmp_path: Path
) -> None:
    """One result, one row — but an agent's run is data of its own (its transcript): a
    second run that lands on the same code is stored, labelled a repeat, never ranked twice."""
    from leaderboard import Store

    edit = {"op": "replace", "filename": FILE, "start_line": 10, "end_line": 14}
    script = [{"tool_calls": [tool_call("edit", {**edit, "content": CONSTANT}, "e1")]}]
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    outcomes = []
    for _ in range(2):
        server = chat_server(list(script))
        outcomes.append(
            start_run(
                _config(server.base_url, db, mode="vanilla"),
                tmp_path / "runs",
                QuietDisplay(),
                api_key="k",
            )
        )
    first, second = (o.records[0] for o in outcomes)
    assert second.repeat_of == first.run_id and first.repeat_of is None
    assert not outcomes[1].identical_to  # recorded, not left out
    with Store(db) as store:
        assert sorted(store.run_ids()) == sorted([first.run_id, second.run_id])
        data = store.task_data("fake-lr")
        assert data is not None and [r.run_id for r in data.results] == [first.run_id]
