"""Headless Chromium against a live leaderboard server (loopback uvicorn, realistic run set).

Loads every page, clicks a sort, a filter and a transcript expander, reads an agent run's
transcript (assistant text, tool calls, edit diffs, results, filters), checks that hostile
transcript text is shown literally and never executed, checks that a sweep page's plot shows
its table's numbers, and saves screenshots (under docs/screenshots/ with PB_SCREENSHOTS=1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.leaderboard import (
    AGENT_RUN,
    NO_RESULT_REASON,
    NO_RESULT_RUN,
    XSS_MARKER,
    LiveServer,
    agent_transcript_run,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LR = "llm-pretrain-lr-schedule"
NORM = "llm-pretrain-normalization"
HOSTILE_RUN = f"{LR}.gpt-5.4.agent"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        except Exception as exc:  # a Chromium that cannot start here is an environment limit
            pytest.skip(f"Chromium did not launch: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    context.close()


@pytest.fixture(scope="module")
def shots(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/screenshots/ with PB_SCREENSHOTS=1 (to refresh the committed
    ones), else a temporary folder, so that a test run leaves the worktree as it was."""
    if os.environ.get("PB_SCREENSHOTS") != "1":
        return tmp_path_factory.mktemp("screenshots")
    out = repo_root / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _no_external_requests(pg: Any, base: str) -> list[str]:
    seen: list[str] = []
    pg.on("request", lambda r: seen.append(r.url) if not r.url.startswith(base) else None)
    return seen


def test_home_lists_tasks_and_ranking(page: Any, lb_server: LiveServer, shots: Path) -> None:
    external = _no_external_requests(page, lb_server.url)
    resp = page.goto(lb_server.url + "/")
    assert resp.status == 200
    assert page.locator("#tasks a", has_text=LR).count() == 1
    assert page.locator("#tasks a", has_text=NORM).count() == 1
    ranking = page.locator("#ranking tbody tr")
    assert ranking.count() >= 10
    page.screenshot(path=str(shots / "home.png"), full_page=True)
    assert external == []
    assert page.errors == []


def test_task_page_sort_and_filter(page: Any, lb_server: LiveServer, shots: Path) -> None:
    page.goto(f"{lb_server.url}/tasks/{LR}")
    rows = page.locator("#results tbody tr")
    assert rows.count() == 16  # 4 baselines + 5 × (vanilla, agent) + incomplete + infra error
    # Best val_loss is highlighted direction-aware: the lowest value among ok rows.
    best_cells = page.locator("#results tbody td.best")
    assert best_cells.count() >= 7
    page.screenshot(path=str(shots / "task.png"), full_page=True)

    # Click the val_loss header: sorted ascending (lower is better), missing values last.
    page.locator('#results th a.sort[data-key="val_loss_gpt-345m"]').click()
    page.wait_for_load_state()
    assert "sort=val_loss_gpt-345m" in page.url
    col = (
        page.locator("#results thead tr")
        .first.locator("th")
        .evaluate_all("ths => ths.findIndex(th => th.classList.contains('sorted'))")
    )
    texts = page.locator(f"#results tbody tr td:nth-child({col + 1})").all_inner_texts()
    # a cell: "mean ±half-width ≈" then, on its own line, the metric's score
    values = [float(t.split("\n")[0].split("±")[0].strip(" ≈*")) for t in texts if t.strip() != "—"]
    assert values == sorted(values) and len(values) >= 14
    assert texts[-1].strip() == "—"  # the run without a result sorts last
    page.screenshot(path=str(shots / "task_sorted.png"), full_page=True)

    # Click again: descending.
    page.locator('#results th a.sort[data-key="val_loss_gpt-345m"]').click()
    page.wait_for_load_state()
    assert "order=desc" in page.url

    # Filter to agents only.
    page.locator("#type-filter a", has_text="agent").click()
    page.wait_for_load_state()
    badges = page.locator("#results tbody .badge").all_inner_texts()
    assert badges and set(badges) == {"agent"}
    page.screenshot(path=str(shots / "task_agents.png"), full_page=True)

    # Profile filter: the tiny group (baselines only) never mixes with the full one; the
    # type filter is kept, so first show all types again.
    page.locator("#profile-filter a", has_text="tiny").click()
    page.wait_for_load_state()
    assert page.locator("#results tbody tr.empty").count() == 1
    page.locator("#type-filter a", has_text="all").click()
    page.wait_for_load_state()
    assert "profile" not in page.url or "tiny" in page.url
    assert page.locator("#results tbody tr").count() == 3
    assert set(page.locator("#results tbody .badge").all_inner_texts()) == {"baseline"}
    assert page.errors == []


def test_run_page_shows_plots_diff_and_escaped_transcript(
    page: Any, lb_server: LiveServer, shots: Path
) -> None:
    page.goto(f"{lb_server.url}/runs/{HOSTILE_RUN}")
    assert page.locator("svg.plot").count() == 3  # lr, train loss, val loss
    assert page.locator("pre.diff .diff-add").count() > 3
    assert page.locator("#seed-metrics tbody tr").count() == 7
    # The hostile text is visible literally and did not run.
    assert page.get_by_text(XSS_MARKER, exact=False).count() >= 1
    assert page.evaluate("window.__pwned") is None
    assert page.title() != "pwned"
    assert page.locator("#transcript img").count() == 0
    assert page.locator("#transcript b").count() == 0

    # Each tool call is shown with its arguments; an edit without a recorded diff shows its
    # content, and a result can be folded away.
    edit = page.locator("#transcript li.is-tool").nth(1)
    assert "start_line=191" in edit.locator("code.call").inner_text()
    assert "decay_start = int(0.8 * lr_decay_iters)" in edit.locator("pre.arg-block").inner_text()
    result = edit.locator("details.tool-result")
    assert result.evaluate("d => d.open") is True
    result.locator("summary").click()
    assert result.evaluate("d => d.open") is False
    page.screenshot(path=str(shots / "run.png"), full_page=True)
    assert page.errors == []


@pytest.mark.parametrize(
    "run_id",
    [
        f"{LR}.baseline.cosine",
        f"{LR}.llama-4.agent",
        f"{LR}.mistral-large.agent",
        f"{NORM}.gpt-5.4.vanilla",
        f"{NORM}.deepseek-reasoner.agent",
    ],
)
def test_every_kind_of_run_page_loads(page: Any, lb_server: LiveServer, run_id: str) -> None:
    resp = page.goto(f"{lb_server.url}/runs/{run_id}")
    assert resp.status == 200
    assert page.locator("h1").inner_text().strip()
    assert page.errors == []


def test_normalization_task_and_not_found(page: Any, lb_server: LiveServer, shots: Path) -> None:
    resp = page.goto(f"{lb_server.url}/tasks/{NORM}")
    assert resp.status == 200
    assert page.locator("#results tbody tr").count() == 14
    # The diverged vanilla run is listed, scored 0 and marked failed.
    failed = page.locator("#results tbody tr", has_text="failed")
    assert failed.count() == 1
    page.screenshot(path=str(shots / "task_normalization.png"), full_page=True)
    resp = page.goto(f"{lb_server.url}/tasks/no-such-task")
    assert resp.status == 404


def _visible(locator: Any) -> int:
    return int(locator.evaluate_all("els => els.filter(e => e.offsetParent !== null).length"))


def test_agent_transcript_reads_step_by_step(page: Any, lb_server: LiveServer, shots: Path) -> None:
    lb_server.store.record(agent_transcript_run())
    try:
        external = _no_external_requests(page, lb_server.url)
        assert page.goto(f"{lb_server.url}/runs/{AGENT_RUN}").status == 200
        steps = page.locator("#transcript > li")
        # The assistant's markdown is rendered; its HTML is text, and none of it ran.
        plan = page.locator("#transcript .md").first
        assert plan.locator("h2").inner_text() == "Plan"
        assert plan.locator("strong").inner_text() == "cosine"
        assert plan.locator("ol li").count() == 2
        assert '<div id="injected">gotcha</div>' in plan.inner_text()
        assert "<script>window.__pwned = 1;" in plan.inner_text()
        assert page.locator("#injected").count() == 0
        assert page.locator("#transcript img, #transcript script").count() == 0
        assert page.evaluate("window.__pwned") is None and page.title() != "pwned"
        # Every tool call with its arguments, in order.
        calls = page.locator("#transcript code.call").all_inner_texts()
        assert [c.split("(")[0] for c in calls] == ["view", "edit", "edit", "test", "submit"]
        assert (
            calls[0] == 'view(filename="nanoGPT/custom_pretrain.py")' and calls[4] == "submit(n=1)"
        )
        # The rejected edit shows its content and its error; the accepted one its diff.
        rejected, accepted = (
            page.locator("#transcript li.is-tool").nth(1),
            page.locator("#transcript li.is-tool").nth(2),
        )
        assert "def get_lr(it warmup_iters):" in rejected.locator("pre.arg-block").inner_text()
        assert "syntax error" in rejected.locator("details.tool-result pre").inner_text()
        added = accepted.locator(".edit-diff .diff-add").all_inner_texts()
        assert "+    decay_start = int(0.8 * lr_decay_iters)" in added
        assert accepted.locator("pre.arg-block").is_visible() is False  # folded under the diff
        # The test result as a metrics table, and its full text.
        test = page.locator("#transcript li.is-tool").nth(3)
        cells = test.locator("table.metrics-table tbody tr").first.locator("td").all_inner_texts()
        assert cells == ["gpt-345m", "val_loss_gpt-345m", "2.2412"]
        assert "TRAIN_METRICS: step=12030" in test.locator("details.tool-result pre").inner_text()
        # Tokens, time and cost per reply and in total; the agent's settings.
        assert "5,210 in · 312 out · 4.2 s · $0.0203" in page.locator(".usage").first.inner_text()
        assert (
            "32,180 prompt + 1,057 completion tokens"
            in page.locator("#transcript-totals").inner_text()
        )
        assert "temperature=0.2" in page.locator("#agent-settings").inner_text()
        # An unknown event kind is shown as its kind and escaped fields.
        future = page.locator("#transcript li", has_text="a_kind_from_the_future")
        future.locator("summary").click()
        assert "<b>not bold</b>" in future.locator("pre").inner_text()
        page.locator("#transcript").screenshot(path=str(shots / "run_transcript.png"))

        # Filters (CSS only): tool calls, errors, everything.
        total = steps.count()
        page.locator('label[for="tf-tools"]').click()
        assert _visible(steps) == 5 == _visible(page.locator("#transcript > li.is-tool"))
        page.locator('label[for="tf-errors"]').click()
        assert _visible(steps) == 2  # the retried request and the rejected edit
        assert "RateLimitError" in page.locator("#transcript > li.kind-retry").inner_text()
        page.locator("#transcript").screenshot(path=str(shots / "run_transcript_errors.png"))
        page.locator('label[for="tf-all"]').click()
        assert _visible(steps) == total
        # A link per step.
        page.locator("#ev-11 a.anchor").click()
        assert page.url.endswith("#ev-11")
        assert external == [] and page.errors == []
    finally:
        lb_server.store.delete_run(AGENT_RUN)


def test_a_run_without_a_result_says_why(page: Any, lb_server: LiveServer, shots: Path) -> None:
    page.goto(f"{lb_server.url}/tasks/{LR}")
    listed = page.locator("#no-result tbody tr")
    assert listed.count() == 1 and NO_RESULT_REASON in listed.inner_text()
    assert page.locator("#results tbody tr", has_text="kimi-k3").count() == 0
    listed.locator("a").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/runs/{NO_RESULT_RUN}")
    assert NO_RESULT_REASON in page.locator("#status-reason").inner_text()
    page.screenshot(path=str(shots / "run_no_result.png"), full_page=True)
    assert page.errors == []


def _plotted(page: Any) -> dict[int, dict[str, float]]:
    """The sweep plot's dots: point index → its numbers and position."""
    dots = page.locator("#sweep-plots circle.plot-point").evaluate_all(
        """cs => cs.map(c => ({point: +c.dataset.point, mean: +c.dataset.mean,
                               x: +c.dataset.x, cx: +c.getAttribute('cx'),
                               cy: +c.getAttribute('cy'), title: c.textContent}))"""
    )
    return {d["point"]: d for d in dots}


def _table_means(page: Any) -> dict[int, float]:
    cells = page.locator("#sweep-table tbody tr").evaluate_all(
        "rs => rs.map(r => [+r.dataset.point, r.querySelector('td.mean').dataset.mean])"
    )
    return {i: float(m) for i, m in cells if m}


def test_sweep_page_plot_matches_its_table(page: Any, lb_server: LiveServer, shots: Path) -> None:
    """The dots sit where the table's numbers say (y linear in the mean, x on a log axis of
    the learning rate), the default is the dashed reference, and the metric selector switches
    table and plot together."""
    from tests._fixtures.leaderboard import SWEEP_GRID, SWEEP_LR

    external = _no_external_requests(page, lb_server.url)
    page.goto(f"{lb_server.url}/tasks/{LR}")
    page.locator("#sweeps a", has_text="lr-sweep").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/sweeps/{SWEEP_LR}")
    means = _table_means(page)
    dots = _plotted(page)
    assert sorted(dots) == [1, 2, 3] and set(means) == {0, 1, 2, 3}
    for i, dot in dots.items():
        assert dot["mean"] == means[i]
        shown = page.locator(f'#sweep-table tr[data-point="{i}"] td.mean').inner_text()
        assert shown.split("±")[0].strip() in dot["title"]
    # y: one pixel scale for every dot (lower on screen = smaller value)
    (a, b, c) = (dots[1], dots[2], dots[3])
    slope_ab = (a["cy"] - b["cy"]) / (a["mean"] - b["mean"])
    slope_bc = (b["cy"] - c["cy"]) / (b["mean"] - c["mean"])
    assert slope_ab < 0 and slope_ab == pytest.approx(slope_bc, rel=1e-3)
    # x: log axis, so the distance is proportional to log(lr)
    scale_ab = (b["cx"] - a["cx"]) / (math.log10(b["x"]) - math.log10(a["x"]))
    scale_bc = (c["cx"] - b["cx"]) / (math.log10(c["x"]) - math.log10(b["x"]))
    assert scale_ab == pytest.approx(scale_bc, rel=1e-3)
    ref = page.locator("#sweep-plots line.plot-ref")
    assert float(ref.get_attribute("data-mean")) == means[0]
    ref_y = float(ref.get_attribute("y1"))
    assert ref_y == pytest.approx(a["cy"] + slope_ab * (means[0] - a["mean"]), abs=0.2)
    page.screenshot(path=str(shots / "sweep.png"), full_page=True)

    # The selector: another metric, the table and the plot follow.
    page.select_option("#metric", "arc_easy_lm-eval-345m")
    page.locator("#metric-form button").click()
    page.wait_for_load_state()
    assert "metric=arc_easy_lm-eval-345m" in page.url
    assert "arc_easy" in page.locator("#sweep-plots text.plot-title").first.text_content()
    new_means, new_dots = _table_means(page), _plotted(page)
    assert new_means != means
    assert all(new_dots[i]["mean"] == new_means[i] for i in new_dots)

    # A 2 × 2 grid: a plot per key, a line per value of the other key.
    page.goto(f"{lb_server.url}/sweeps/{SWEEP_GRID}")
    assert page.locator("#sweep-plots figure").count() == 2
    legend = page.locator("#sweep-plots figure").first.locator("text.plot-legend")
    assert legend.all_text_contents() == ["default", "warmup_iters=200", "warmup_iters=400"]
    page.screenshot(path=str(shots / "sweep_grid.png"), full_page=True)
    assert external == [] and page.errors == []
