"""Fast, pure tests of the runner's parts: transcript, retries, pricing, profile choice,
setup checks, conversation rebuild, the CLI's import cost."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from env import BaselineError, Budgets, Session, load_baselines, load_task
from env._baselines import parse_baseline
from runner._agents import BaselineAgent, Spend, ToolBox, conversation_from_transcript
from runner._hardware import choose_profile
from runner._llm import AgentSettings, ChatClient, Usage, price
from runner._setup import GPT2_TIKTOKEN_SHA256, shards_ready, tokenizer_ready
from runner._transcript import (
    TRANSCRIPT_FORMAT_VERSION,
    Transcript,
    TranscriptError,
    read_transcript,
)
from sandbox import DataPaths
from tests._fixtures.scripted_backend import scripted_executor
from tests._fixtures.worlds import mini_task_world

REPO = Path(__file__).resolve().parents[2]


def test_transcript_header_events_and_flush(tmp_path: Path) -> None:
    with Transcript(tmp_path, header={"run_id": "r1"}) as t:
        t.append("message", message={"role": "user", "content": "hi"})
        # written before close: another reader sees it at once
        assert len(read_transcript(tmp_path)) == 2
        t.snapshot(3, "custom_pretrain.py", "x = 1\n")
    events = read_transcript(tmp_path)
    assert events[0] == {
        **events[0],
        "kind": "header",
        "format_version": TRANSCRIPT_FORMAT_VERSION,
        "run_id": "r1",
    }
    assert events[1]["message"]["content"] == "hi" and "t" in events[1]
    assert (tmp_path / "snapshots" / "003_custom_pretrain.py").read_text() == "x = 1\n"


def test_transcript_survives_a_torn_last_line_and_appends(tmp_path: Path) -> None:
    Transcript(tmp_path).append("a").get("kind")
    path = tmp_path / "transcript.jsonl"
    with path.open("a") as f:
        f.write('{"kind": "tool_res')  # killed mid-write
    assert [e["kind"] for e in read_transcript(path)] == ["header", "a"]
    t = Transcript(tmp_path)  # reopening repairs the tail; no second header
    t.append("b")
    t.close()
    assert [e["kind"] for e in read_transcript(path)] == ["header", "a", "b"]


def test_transcript_rejects_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "transcript.jsonl"
    path.write_text('{"kind": "header", "format_version": 999}\n')
    with pytest.raises(TranscriptError, match="format 999"):
        read_transcript(path)
    path.write_text('not json\n{"kind": "x"}\n')
    with pytest.raises(TranscriptError, match="not JSON"):
        read_transcript(path)
    with pytest.raises(TranscriptError, match="no transcript"):
        read_transcript(tmp_path / "missing")


def test_conversation_rebuilt_from_events() -> None:
    events = [
        {"kind": "header", "format_version": 1},
        {"kind": "message", "message": {"role": "system", "content": "s"}},
        {
            "kind": "message",
            "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
        },
        {"kind": "tool_call", "name": "view", "call_id": "c1"},
        {"kind": "tool_result", "name": "view", "call_id": "c1", "text": "OK"},
        {"kind": "tool_result", "name": "test", "call_id": None, "text": "baseline call"},
        {"kind": "llm_retry", "attempt": 1},
    ]
    messages = conversation_from_transcript(events)
    assert messages == [
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "OK"},
    ]


def test_spend_is_counted_back_from_the_transcript_on_resume() -> None:
    """The run limits continue where a killed run stopped: replies and non-test tools count,
    tests and the final evaluation do not."""
    reply = {"role": "assistant", "content": ""}
    events = [
        {"kind": "message", "message": {"role": "user", "content": "task"}},
        {
            "kind": "message",
            "message": reply,
            "usage": {"prompt_tokens": 100, "completion_tokens": 20},
            "cost_usd": 0.25,
            "elapsed_s": 2.0,
        },
        {"kind": "tool_result", "name": "edit", "elapsed_s": 0.5},
        {"kind": "tool_result", "name": "test", "elapsed_s": 900.0},
        {"kind": "tool_result", "name": "submit", "elapsed_s": 900.0},
        {"kind": "message", "message": reply, "usage": {"prompt_tokens": 130}, "cost_usd": None},
    ]
    spend = Spend.of(events)
    assert (spend.tokens, spend.cost_usd, spend.agent_s) == (250, 0.25, 2.5)
    assert spend.exceeded(AgentSettings()) is None
    assert spend.exceeded(AgentSettings(max_total_tokens=300)) is None
    assert "token limit reached (250 >= 250" in str(
        spend.exceeded(AgentSettings(max_total_tokens=250))
    )
    assert "cost limit" in str(spend.exceeded(AgentSettings(max_cost=0.25)))
    assert "agent time limit" in str(spend.exceeded(AgentSettings(max_agent_time=2.5)))


def test_settings_prices_override_the_table() -> None:
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert price("gpt-4o", usage, AgentSettings(price_in=1.0).prices("gpt-4o")) == 1.0
    assert AgentSettings().prices("gpt-4o") == (2.5, 10.0)
    assert AgentSettings().prices("local-model") is None


def test_price_table() -> None:
    assert price("gpt-4o", Usage(prompt_tokens=1_000_000, completion_tokens=100_000)) == 3.5
    assert price("some-local-model", Usage(10, 10)) is None


def test_backoff_uses_retry_after_then_exponential() -> None:
    import httpx
    import openai

    client = ChatClient(
        "m", base_url="http://127.0.0.1:9/v1", api_key="k", backoff_s=1.0, max_backoff_s=8.0
    )

    def error(headers: dict[str, str]) -> openai.RateLimitError:
        request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
        response = httpx.Response(429, headers=headers, request=request)
        return openai.RateLimitError("rate limited", response=response, body=None)

    assert client._delay(1, error({"retry-after": "0.5"})) == 0.5
    assert client._delay(1, error({"retry-after": "600"})) == 8.0  # capped
    assert [client._delay(n, error({})) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_connection_errors_are_retried_then_fail_clearly() -> None:
    from runner._llm import AgentSettings, LLMError

    client = ChatClient(
        "m",
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        max_retries=2,
        backoff_s=0.0,
        settings=AgentSettings(llm_timeout=2.0),
    )
    seen: list[dict] = []
    with pytest.raises(LLMError, match=r"endpoint http://127.0.0.1:9/v1/ failed after 3 attempts"):
        client.complete(
            [{"role": "user", "content": "x"}],
            [],
            on_event=lambda kind, **data: seen.append({"kind": kind, **data}),
        )
    assert [e["attempt"] for e in seen] == [1, 2]


def test_choose_profile() -> None:
    assert choose_profile("small", "tiny", "full", 2, [])[0] == "small"
    assert choose_profile("auto", "tiny", "full", 2, ["H200", "H200"])[0] == "full"
    profile, why = choose_profile("auto", "tiny", "full", 2, ["H100"])
    assert profile == "tiny" and "1 GPU(s) visible" in why and "needs 2" in why
    assert choose_profile("auto", "tiny", "full", 2, [])[0] == "tiny"
    # the names are the task's: nothing here knows tiny or full
    assert choose_profile("auto", "cpu-mini", "gpu-big", 1, ["A100"])[0] == "gpu-big"
    assert choose_profile("auto", "cpu-mini", "gpu-big", 1, [])[0] == "cpu-mini"


def test_setup_checks(tmp_path: Path) -> None:
    assert not tokenizer_ready(tmp_path)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "gpt2.tiktoken").write_bytes(b"not the ranks")
    assert not tokenizer_ready(tmp_path)  # wrong sha256
    assert GPT2_TIKTOKEN_SHA256.startswith("306cd27f")
    data = tmp_path / "data"
    data.mkdir()
    assert not shards_ready(data)
    for name in ("train_000000.bin", "val_000000.bin"):
        (data / name).write_bytes(b"\0" * 8)
    meta = {
        "shards": {
            n: {"bytes": 8, "sha256": hashlib.sha256(b"\0" * 8).hexdigest()}
            for n in ("train_000000.bin", "val_000000.bin")
        }
    }
    (data / "meta.json").write_text(json.dumps(meta))
    assert shards_ready(data)
    (data / "val_000000.bin").write_bytes(b"\0" * 4)  # truncated shard
    assert not shards_ready(data)


def test_cli_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, runner.cli; heavy = [m for m in ('torch', 'env', 'sandbox', 'leaderboard',"
        " 'openai', 'mcp', 'fastapi', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    start = time.monotonic()
    help_out = subprocess.run(
        [sys.executable, "-m", "runner.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - start
    for command in ("run", "resume", "setup", "tasks", "leaderboard", "mcp", "serve"):
        assert command in help_out.stdout
    assert elapsed < 10, f"runner --help took {elapsed:.1f}s"


def _mini_session(tmp_path: Path) -> Session:
    world = mini_task_world(tmp_path / "src")
    return Session(
        load_task(world.task_dir),
        tmp_path / "run",
        executor=scripted_executor(),
        profile="tiny",
        data=DataPaths(data_dir=tmp_path),
        budgets=Budgets(max_steps=20, max_tests=3),
    )


def test_baseline_edits_go_through_the_recorded_edit_tool(tmp_path: Path) -> None:
    session = _mini_session(tmp_path)
    tools = ToolBox(session, Transcript(tmp_path / "run"))
    flat = load_baselines(session.task, tmp_path / "src" / "baselines")[1]
    texts = BaselineAgent(flat).apply(tools)
    assert [t[:22] for t in texts] == ["OK: Replaced lines 22.", "OK: Replaced lines 9.."]
    events = read_transcript(tmp_path / "run")
    calls = [e for e in events if e["kind"] == "tool_call"]
    assert [c["name"] for c in calls] == ["edit", "edit"]
    assert [e["kind"] for e in events].count("snapshot") == 2
    assert session.steps_left == 18  # charged like an agent's edits


def test_a_refused_baseline_edit_is_a_clear_error(tmp_path: Path) -> None:
    session = _mini_session(tmp_path)
    sneaky = parse_baseline(
        "sneaky",
        '"""d"""\n# ── EDITABLE REGION START: get_lr ──\nimport os\n'
        "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return float(os.environ['LR'])\n# ── EDITABLE REGION END: get_lr ──\n",
        {"get_lr", "config_overrides"},
    )
    tools = ToolBox(session, Transcript(tmp_path / "run"))
    with pytest.raises(BaselineError, match="baseline 'sneaky': the edit of region 'get_lr'") as e:
        BaselineAgent(sneaky).apply(tools)
    assert "ERROR:" in str(e.value)
    results = [e for e in read_transcript(tmp_path / "run") if e["kind"] == "tool_result"]
    assert [r["ok"] for r in results] == [False]  # the refusal is in the transcript
