"""How an LLM agent run ends, and its settings and limits, against a chat server on loopback.

Everything but the model is real: env sessions, the preflight job, the Executor with
LocalBackend sandboxes, on the torch-free fake codebase of `tests/_fixtures/runner.py` (its
"training" is arithmetic, its evaluation writes the same metric files, lm-eval included).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from leaderboard import RunRecord
from leaderboard._scoring import RunResult, score_task
from runner._display import Display, QuietDisplay
from runner._llm import AgentSettings, LLMConfigError, read_agent_file, resolve_api_key
from runner._run import RunConfig, RunError, RunOutcome, start_run
from runner._transcript import read_transcript
from tests._fixtures.runner import tool_call

pytestmark = pytest.mark.integration

FILE = "nanoGPT/custom_pretrain.py"
CONSTANT = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
    "    return learning_rate if it >= warmup_iters else learning_rate * (it + 1) / (warmup_iters + 1)"
)
EDIT = {"op": "replace", "filename": FILE, "start_line": 10, "end_line": 14, "content": CONSTANT}


class NoteDisplay(Display):
    """Keeps the notes a run shows live."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def _run(base_url: str, tmp_path: Path, api_key: str | None = "k", **kw: object) -> RunOutcome:
    config = RunConfig(
        task="fake-lr", agent="openai:scripted-model", profile="tiny", base_url=base_url, **kw
    )  # type: ignore[arg-type]
    return start_run(config, tmp_path / "runs", QuietDisplay(), api_key=api_key)


def _events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in read_transcript(run_dir) if e["kind"] == kind]


def _score(record: RunRecord, tmp_path: Path) -> float | None:
    """``record``'s score among the fake task's two baselines, run here."""
    baselines = [
        start_run(
            RunConfig(task="fake-lr", agent=f"baseline:{name}", profile="tiny"),
            tmp_path / "baselines",
            QuietDisplay(),
        ).records[0]
        for name in ("cosine", "constant")
    ]
    result = RunResult.from_record(record)
    scores = score_task(
        [result, *(RunResult.from_record(b) for b in baselines)],
        record.metric_specs,
        group=result.group(),
        reference_as_anchor=True,
    )
    row = scores.by_run()[record.run_id]
    assert row.note is None, row.note
    return row.score


def test_agent_that_stops_after_one_test_is_auto_submitted(
    runner_env, chat_server, tmp_path: Path
) -> None:
    script = [
        {"tool_calls": [tool_call("edit", EDIT, "e1")]},
        {"tool_calls": [tool_call("test", "{}", "t1")]},
        {"tool_calls": [tool_call("submit", {"n": 1}, "s1")]},  # refused: the two-test rule
    ] + [{"content": "I am done."}] * 3
    server = chat_server(script)
    outcome = _run(server.base_url, tmp_path)
    assert not server.script
    # the test result and the refused submit tell the agent the rule
    results = _events(outcome.run_dir, "tool_result")
    assert "run at least one more test before you can submit" in results[1]["text"]
    assert results[2]["name"] == "submit" and "iterate at least once" in results[2]["text"]
    assert "iterate at least once" in next(
        t["function"]["description"]
        for t in server.requests[0]["tools"]
        if t["function"]["name"] == "submit"
    )
    [auto] = _events(outcome.run_dir, "auto_submit")
    assert auto["test_number"] == 1 and "3 replies without a tool call" in auto["reason"]
    assert outcome.info.status == "finished"
    [record] = outcome.records
    assert record.type == "agent" and record.status == "finished"
    assert record.final is not None and record.final.auto_submitted
    assert record.final.test_number == 1 and record.final.status == "ok"
    assert record.status_reason is not None
    assert record.status_reason == "auto-submitted test #1: 3 replies without a tool call"
    assert "return learning_rate if" in record.regions["get_lr"]
    score = _score(record, tmp_path)
    assert score is not None and score > 0


def test_agent_that_never_tests_is_incomplete_with_its_reason(
    runner_env, chat_server, tmp_path: Path
) -> None:
    server = chat_server(
        [{"tool_calls": [tool_call("edit", EDIT, "e1")]}] + [{"content": "Hmm."}] * 3
    )
    outcome = _run(server.base_url, tmp_path)
    assert outcome.info.status == "incomplete"
    [record] = outcome.records
    assert record.status == "incomplete" and record.final is None
    assert record.status_reason == "3 replies without a tool call"
    assert not _events(outcome.run_dir, "auto_submit")


def test_steps_exhausted_auto_submits_the_latest_test(
    runner_env, chat_server, tmp_path: Path
) -> None:
    server = chat_server(
        [
            {"tool_calls": [tool_call("test", "{}", "t1")]},
            {"tool_calls": [tool_call("edit", EDIT, "e1")]},
        ]
    )
    outcome = _run(server.base_url, tmp_path, max_steps=2)
    [record] = outcome.records
    assert outcome.info.status == "finished"
    assert record.final is not None and record.final.auto_submitted
    assert record.status_reason == "auto-submitted test #1: step budget spent (2)"


def test_vanilla_run_gets_the_final_evaluation_and_a_score(
    runner_env, chat_server, tmp_path: Path
) -> None:
    server = chat_server([{"tool_calls": [tool_call("edit", EDIT, "e1")]}])
    outcome = _run(server.base_url, tmp_path, mode="vanilla")
    assert len(server.requests) == 1
    [record] = outcome.records
    assert record.type == "vanilla" and record.status == "finished"
    assert record.final is not None and record.final.status == "ok"
    assert not record.final.auto_submitted
    # the final evaluation ran the hidden lm-eval setting: its metrics exist
    lm_eval = [r for r in record.final.per_seed if r.setting == "lm-eval-tiny"]
    assert lm_eval and all(r.metrics for r in lm_eval)
    assert any(s.setting == "lm-eval-tiny" for s in record.metric_specs)
    score = _score(record, tmp_path)
    assert score is not None and score > 0


def test_missing_api_key_fails_before_the_run(
    runner_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    start = time.monotonic()
    with pytest.raises(RunError, match="OPENAI_API_KEY") as caught:
        _run("https://llm.example.invalid/v1", tmp_path, api_key=None)
    assert time.monotonic() - start < 1.0
    assert "--api-key" in str(caught.value)
    assert not (tmp_path / "runs").exists()
    # a loopback endpoint, or one declared keyless, needs no key
    assert resolve_api_key(None, "http://127.0.0.1:8000/v1") == "none"
    assert resolve_api_key("none", "https://llm.example.invalid/v1") == "none"
    with pytest.raises(LLMConfigError):
        resolve_api_key(None, "https://llm.example.invalid/v1")


def test_missing_api_key_fails_the_cli_fast(
    runner_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from runner.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    start = time.monotonic()
    args = ["run", "--task", "fake-lr", "--agent", "openai:m", "--profile", "tiny"]
    args += ["--base-url", "https://llm.example.invalid/v1", "--run-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "OPENAI_API_KEY" in result.output
    assert time.monotonic() - start < 1.0
    assert not (tmp_path / "r").exists()


def test_unreachable_endpoint_fails_within_the_bound(runner_env, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    display = NoteDisplay()
    start = time.monotonic()
    config = RunConfig(
        task="fake-lr",
        agent="openai:m",
        profile="tiny",
        base_url=url,
        agent_settings=AgentSettings(llm_timeout=3),
    )
    outcome = start_run(config, tmp_path / "runs", display, api_key="k")
    assert time.monotonic() - start < 3 + 5  # the bound, plus the run's own setup
    assert outcome.info.status == "infra_error"
    [record] = outcome.records
    assert record.status == "infra_error"
    assert record.status_reason is not None and f"127.0.0.1:{port}" in record.status_reason
    retries = _events(outcome.run_dir, "llm_retry")
    assert retries and all("attempt" in r and "delay_s" in r for r in retries)
    # each retry was shown as it happened: attempt, error, wait
    shown = [n for n in display.notes if n.startswith("model endpoint retry")]
    assert len(shown) == len(retries)
    assert "retry 1: APIConnectionError" in shown[0] and "waiting" in shown[0]
    assert "llm_timeout=3.0" in display.notes[0]  # the settings, shown at the start


def test_token_limit_auto_submits_the_latest_test(runner_env, chat_server, tmp_path: Path) -> None:
    # the server reports about 110 tokens per reply: the limit is reached after the test
    script = [
        {"tool_calls": [tool_call("edit", EDIT, "e1")]},
        {"tool_calls": [tool_call("test", "{}", "t1")]},
        {"content": "never asked for"},
    ]
    server = chat_server(script)
    outcome = _run(server.base_url, tmp_path, agent_settings=AgentSettings(max_total_tokens=200))
    assert len(server.script) == 1, "no model call after the limit"
    [record] = outcome.records
    assert record.final is not None and record.final.auto_submitted
    assert record.status_reason is not None and "token limit reached" in record.status_reason
    assert record.agent_settings["max_total_tokens"] == 200


def test_cost_limit_without_a_test_is_incomplete(runner_env, chat_server, tmp_path: Path) -> None:
    server = chat_server([{"tool_calls": [tool_call("edit", EDIT, "e1")]}, {"content": "x"}])
    settings = AgentSettings(price_in=10.0, price_out=30.0, max_cost=0.0001)
    outcome = _run(server.base_url, tmp_path, agent_settings=settings)
    assert len(server.script) == 1
    [message] = [
        e for e in _events(outcome.run_dir, "message") if e["message"]["role"] == "assistant"
    ]
    # 101 prompt tokens at $10/M and 11 completion tokens at $30/M
    assert message["cost_usd"] == pytest.approx((101 * 10 + 11 * 30) / 1e6)
    assert set(message["usage"]) == {"prompt_tokens", "completion_tokens"}
    [record] = outcome.records
    assert record.status == "incomplete" and record.final is None
    assert record.status_reason is not None and "cost limit reached" in record.status_reason
    assert record.agent_settings["max_cost"] == 0.0001 and record.agent_settings["price_in"] == 10


def test_agent_time_limit(runner_env, chat_server, tmp_path: Path) -> None:
    server = chat_server([{"tool_calls": [tool_call("edit", EDIT, "e1")]}, {"content": "x"}])
    outcome = _run(server.base_url, tmp_path, agent_settings=AgentSettings(max_agent_time=0.000001))
    assert outcome.info.reason is not None and "agent time limit reached" in outcome.info.reason


def test_agent_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "model: gpt-4o\nbase_url: http://127.0.0.1:9/v1\ntemperature: 0.2\nmax_tokens: 512\n"
        "limits:\n  max_total_tokens: 100000\n  max_cost: 2.5\n  max_agent_time: 600\n"
    )
    agent = read_agent_file(path)
    assert agent.model == "gpt-4o" and agent.temperature == 0.2 and agent.max_tokens == 512
    assert (agent.max_total_tokens, agent.max_cost, agent.max_agent_time) == (100000, 2.5, 600)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("limits:\n  max_steps: 3\n", "unknown limits"),
        ("temprature: 0.2\n", "temprature"),
        ("- a list\n", "a mapping"),
        ("temperature: -1\n", "temperature"),
    ],
)
def test_agent_file_errors_name_the_file_and_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(LLMConfigError, match=error) as caught:
        read_agent_file(path)
    assert str(path) in str(caught.value)
