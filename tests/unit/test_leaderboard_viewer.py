"""The transcript viewer: events become readable steps; agent text never becomes markup."""

from __future__ import annotations

from leaderboard._viewer import parse_final_metrics, render_markdown, transcript_view
from tests._fixtures.leaderboard import INJECTED, XSS_MARKER, agent_transcript_run, realistic_runs


def test_markdown_renders_but_no_html_of_the_author_survives() -> None:
    html = render_markdown(
        f"**bold** `x<1` [ok](https://example.org) [bad](javascript:alert(1)) "
        f"![img](https://example.org/a.png) {XSS_MARKER} {INJECTED}"
    )
    assert "<strong>bold</strong>" in html and "<code>x&lt;1</code>" in html
    assert '<a href="https://example.org" rel="nofollow noopener noreferrer">ok</a>' in html
    assert "javascript:" not in html.replace("(javascript:alert(1))", "")
    assert "<img" not in html and "<script" not in html and "<div" not in html
    assert "&lt;script&gt;" in html and "&lt;div id=&quot;injected&quot;&gt;" in html


def test_final_metrics_lines_parse_robustly() -> None:
    text = (
        "noise Final metrics (x): not=at-start-of-line\n"
        "Final metrics (gpt-tiny): val_loss_gpt-tiny=3.8471, wikitext2_ppl_gpt-tiny=nan,"
        " junk, =1, bad name=2, note=n/a\n"
        "  Final metrics (lm-eval-tiny): arc_easy_lm-eval-tiny=0.41\n"
        "Final metrics (unclosed: a=1\n"
    )
    rows = [(r.job, r.name, r.value) for r in parse_final_metrics(text)]
    assert rows[0] == ("gpt-tiny", "val_loss_gpt-tiny", 3.8471)
    assert rows[1][1] == "wikitext2_ppl_gpt-tiny" and rows[1][2] != rows[1][2]  # NaN
    assert rows[2:] == [
        ("gpt-tiny", "note", "n/a"),
        ("lm-eval-tiny", "arc_easy_lm-eval-tiny", 0.41),
    ]
    many = "Final metrics (j): " + ", ".join(f"m{i}={i}" for i in range(1000))
    assert len(parse_final_metrics(many)) == 200


def test_runner_events_become_steps_with_calls_results_diffs_and_usage() -> None:
    view = transcript_view(agent_transcript_run().transcript or [])
    kinds = [s.kind for s in view.steps]
    assert kinds.count("assistant") == 5 and kinds.count("tool") == 5
    assert [s.anchor for s in view.steps] == [f"ev-{i}" for i in range(1, len(view.steps) + 1)]
    tools = [s.tool for s in view.steps if s.tool is not None]
    assert [t.name for t in tools] == ["view", "edit", "edit", "test", "submit"]
    assert tools[0].signature == 'view(filename="nanoGPT/custom_pretrain.py")'
    bad, good = tools[1], tools[2]
    assert (
        bad.ok is False and not bad.diffs and "def get_lr(it warmup_iters)" in bad.blocks["content"]
    )
    assert good.ok is True and good.signature.endswith("content=…)")
    diff = good.diffs["nanoGPT/custom_pretrain.py"]
    assert ("diff-add", "+    decay_start = int(0.8 * lr_decay_iters)") in diff
    assert [(m.name, m.value) for m in tools[3].metrics][:1] == [("val_loss_gpt-345m", 2.2412)]
    assert "snapshot" not in [s.label for s in view.steps]  # folded into its edit
    assert view.n_tool_calls == 5 and view.n_errors == 2  # the rejected edit and the retry
    assert (view.prompt_tokens, view.completion_tokens) == (32180, 1057)
    first = next(s for s in view.steps if s.kind == "assistant")
    assert first.usage is not None and first.usage.elapsed_s == 4.2 and first.calls == ["view"]
    unknown = next(s for s in view.steps if s.label == "a_kind_from_the_future")
    assert (
        unknown.kind == "event" and unknown.data is not None and "<b>not bold</b>" in unknown.data
    )


def test_role_based_entries_and_stray_events_still_render() -> None:
    legacy = next(r for r in realistic_runs() if r.transcript).transcript or []
    view = transcript_view(legacy)
    tools = [s.tool for s in view.steps if s.tool is not None]
    assert [t.name for t in tools] == ["view", "edit", "test", "submit"]
    assert tools[1].result is not None and tools[1].result.startswith("OK: Replaced")
    assert tools[2].metrics and tools[3].result is None
    stray = transcript_view(
        [
            {"kind": "tool_result", "name": "test", "text": "ERROR: nope", "call_id": "c9"},
            {"kind": "snapshot", "step": 2, "diffs": {"f.py": "+x"}},
            {"kind": "error", "error": "sandbox died", "traceback": "..."},
            {
                "kind": "message",
                "message": {"role": "assistant", "content": None, "tool_calls": "junk"},
                "prompt_tokens": 10,
                "completion_tokens": 2,
                "latency_s": 1.5,
                "cost_usd": float("nan"),
            },
            {"no": "kind at all"},
        ]
    )
    assert [s.kind for s in stray.steps] == ["tool", "event", "error", "assistant", "event"]
    usage = stray.steps[3].usage
    assert usage is not None and (usage.prompt_tokens, usage.elapsed_s) == (10, 1.5)
    assert usage.cost_usd is None and stray.steps[3].text is None and stray.steps[3].calls == []
    assert (
        stray.steps[0].is_error
        and stray.steps[2].is_error
        and stray.steps[2].plain == "sandbox died"
    )
