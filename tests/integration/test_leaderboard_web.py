"""The web app over HTTP on loopback: pages, JSON API, CSV export and authenticated writes."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any

import httpx
import pytest

from leaderboard import Store, create_app, export_csv
from tests._fixtures.leaderboard import (
    NO_RESULT_REASON,
    NO_RESULT_RUN,
    XSS_MARKER,
    LiveServer,
    realistic_runs,
)

pytestmark = pytest.mark.integration

LR = "llm-pretrain-lr-schedule"


def _get(server: LiveServer, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30, **kw)


def test_pages_are_served_escaped_and_offline(lb_server: LiveServer) -> None:
    for path in ["/", f"/tasks/{LR}", f"/runs/{LR}.gpt-5.4.agent", "/static/style.css"]:
        r = _get(lb_server, path)
        assert r.status_code == 200, path
        assert "script-src 'none'" in r.headers["content-security-policy"]
        # No CDN: every referenced URL is local.
        assert not re.search(r'(src|href)="(https?:)?//', r.text), path
    page = _get(lb_server, f"/runs/{LR}.gpt-5.4.agent").text
    assert XSS_MARKER not in page
    assert "&lt;script&gt;window.__pwned = 1;" in page
    assert "<img src=x" not in page


def test_task_page_sorting_and_filters_by_query(lb_server: LiveServer) -> None:
    page = _get(lb_server, f"/tasks/{LR}", params={"sort": "val_loss_gpt-345m"}).text
    order = re.findall(r'data-run="([^"]+)"', page)
    data = httpx.get(f"{lb_server.url}/api/tasks/{LR}", timeout=30).json()
    means = {r["run_id"]: r["metrics"]["val_loss_gpt-345m"] for r in data["rows"]}
    vals = [means[rid]["mean"] for rid in order if means[rid]]
    assert vals == sorted(vals)  # lower is better: ascending by default
    desc = _get(lb_server, f"/tasks/{LR}", params={"sort": "arc_easy_lm-eval-345m"}).text
    order = re.findall(r'data-run="([^"]+)"', desc)
    accs = [
        data_row["metrics"]["arc_easy_lm-eval-345m"]["mean"]
        for rid in order
        for data_row in data["rows"]
        if data_row["run_id"] == rid and data_row["metrics"]["arc_easy_lm-eval-345m"]
    ]
    assert accs == sorted(accs, reverse=True)  # higher is better: descending by default
    only_baselines = _get(lb_server, f"/tasks/{LR}", params={"type": "baseline"}).text
    assert only_baselines.count('class="badge badge-baseline"') == 4
    assert 'class="badge badge-agent"' not in only_baselines
    tiny = _get(lb_server, f"/tasks/{LR}", params={"profile": "tiny"}).text
    assert len(re.findall(r'data-run="', tiny)) == 3
    assert _get(lb_server, f"/tasks/{LR}", params={"profile": "huge"}).status_code == 404
    assert _get(lb_server, f"/tasks/{LR}", params={"group": "bad"}).status_code == 404
    assert _get(lb_server, "/runs/nope").status_code == 404


def test_best_value_highlight_is_direction_aware(lb_server: LiveServer) -> None:
    data = _get(lb_server, f"/api/tasks/{LR}").json()
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    best_loss = min(r["metrics"]["val_loss_gpt-345m"]["mean"] for r in ok)
    best_acc = max(r["metrics"]["arc_easy_lm-eval-345m"]["mean"] for r in ok)
    page = _get(lb_server, f"/tasks/{LR}").text
    best_cells = re.findall(r'class="num best"[^>]*>\s*([0-9.]+)', page)
    assert f"{best_loss:.4f}" in best_cells
    assert f"{best_acc:.2f}" in best_cells


def test_json_api_and_csv_export(lb_server: LiveServer) -> None:
    tasks = _get(lb_server, "/api/tasks").json()
    assert {t["task_id"] for t in tasks} == {LR, "llm-pretrain-normalization"}
    data = _get(lb_server, f"/api/tasks/{LR}").json()
    assert data["group"]["profile"] == "full"
    assert data["anchors"]["val_loss_gpt-345m"]["best_run_id"].endswith("wsd_sqrt")
    assert "cosine" not in data["anchors"]["val_loss_gpt-345m"]["best_run_id"]
    run = _get(lb_server, f"/api/runs/{LR}.gpt-5.4.agent").json()
    assert run["transcript"][2]["content"].count("<script>") == 1
    r = _get(lb_server, f"/api/tasks/{LR}/export.csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 16 + 3  # the full group and the tiny group
    assert {row["profile"] for row in rows} == {"full", "tiny"}
    assert r.text == export_csv(lb_server.store, LR)
    assert _get(lb_server, "/api/tasks/nope").status_code == 404


def test_writes_need_the_bearer_token_and_valid_bodies(lb_server: LiveServer) -> None:
    run = realistic_runs()[5].model_copy(update={"run_id": "posted-run"})
    body = run.model_dump_json()
    url = lb_server.url + "/api/runs"
    headers = {"content-type": "application/json"}
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    bad = {**headers, "authorization": "Bearer wrong"}
    assert httpx.post(url, content=body, headers=bad).status_code == 401
    auth = {**headers, "authorization": f"Bearer {lb_server.write_token}"}
    r = httpx.post(url, content=body, headers=auth, timeout=30)
    assert r.status_code == 201 and r.json() == {"run_id": "posted-run", "outcome": "inserted"}
    r = httpx.post(url, content=body, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["outcome"] == "unchanged"
    assert _get(lb_server, "/api/runs/posted-run").json() == json.loads(body)

    for broken, where in [
        ("{not json", "(body)"),
        (json.dumps({**json.loads(body), "type": "wizard"}), "type"),
        (json.dumps({**json.loads(body), "surprise": 1}), "surprise"),
        (json.dumps({**json.loads(body), "run_id": "../../etc"}), "run_id"),
        (json.dumps({k: v for k, v in json.loads(body).items() if k != "task_id"}), "task_id"),
        (json.dumps([1, 2, 3]), "(body)"),
        ("", "(body)"),
    ]:
        r = httpx.post(url, content=broken, headers=auth, timeout=30)
        assert r.status_code == 422, broken[:40]
        err = r.json()
        assert err["error"].startswith("invalid run record")
        assert any(d["loc"] == where or d["loc"].startswith(where) for d in err["detail"]), err
    dup = json.loads(body)
    dup["tests"] = dup["tests"] + dup["tests"][:1]
    r = httpx.post(url, content=json.dumps(dup), headers=auth, timeout=30)
    assert r.status_code == 422 and "duplicate test result" in r.text


def test_read_only_app_refuses_writes(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    store = Store(f"sqlite:///{tmp_path / 'ro.db'}")
    client = TestClient(create_app(store))
    r = client.post("/api/runs", content=b"{}", headers={"authorization": "Bearer x"})
    assert r.status_code == 403
    assert client.get("/").status_code == 200  # an empty store still renders
    store.close()


def test_text_table_rows_for_the_command_line(lb_store: Store, lb_runs: list[Any]) -> None:
    """The command line prints the page's table (`runner._board`, from the same scored view)."""
    from leaderboard._views import build_task_table
    from runner._board import _wide_table, board_tables

    for run in lb_runs:
        lb_store.record(run)
    table = build_task_table(lb_store, LR)
    board = next(b for b in board_tables(lb_store, LR) if b.group == table.group.slug())
    headers = [str(c.header) for c in _wide_table(board).columns]
    assert headers[:4] == ["#", "method", "type", "score"]
    assert "val_loss_gpt-345m" in [c.key for c in board.columns]
    assert len(board.rows) == 16 and len(board.rows) == len(table.rows)
    assert board.rows[0].rank == 1
    assert any(r.method == "cosine" and r.reference for r in board.rows)
    infra = next(r for r in board.rows if r.method == "mistral-large")
    assert infra.rank is None and infra.score is None and "infra error" in (infra.note or "")
    page2 = build_task_table(lb_store, LR, limit=5, page=2)
    # ranks are those of the whole group; ranks 9–12 share one (a tie inside the seed noise)
    assert [r.rank_label for r in page2.rows] == ["6", "7", "8", "=9", "=9"]
    assert page2.pages == 4


def test_run_page_shows_the_sandbox_guarantees(tmp_path: Any) -> None:
    """What the sandbox guaranteed is on every run page; weaker isolation stands out, escaped."""
    from fastapi.testclient import TestClient

    store = Store(f"sqlite:///{tmp_path / 'sbx.db'}")
    run = realistic_runs()[0]
    strict = {"backend": "local", "isolation": "bubblewrap 0.8.0 (root mode)", "weak": "no"}
    weak = {"backend": "local", "isolation": "none (plain subprocess)", "weak": "<b>bwrap</b>"}
    for run_id, sandbox in (("strict-run", strict), ("weak-run", weak)):
        store.record(
            run.model_copy(
                update={"run_id": run_id, "hardware": {**run.hardware, "sandbox": sandbox}}
            )
        )
    client = TestClient(create_app(store))
    page = client.get("/runs/strict-run").text
    assert "isolation: bubblewrap 0.8.0 (root mode)" in page and "weaker isolation" not in page
    page = client.get("/runs/weak-run").text
    assert "weaker isolation was allowed for this run (&lt;b&gt;bwrap&lt;/b&gt;)" in page
    store.close()


def test_a_run_that_failed_before_any_test_is_listed_with_its_cause(lb_server: LiveServer) -> None:
    """Not ranked, no comparison group of its own (its budget differs from every other run's),
    and its reason on the task page and on its run page."""
    page = _get(lb_server, f"/tasks/{LR}").text
    results, _, rest = page.partition('id="no-result"')
    assert NO_RESULT_RUN not in results
    assert "full · 1 steps" not in results  # the group chooser offers no group of its own
    assert NO_RESULT_RUN in rest and NO_RESULT_REASON in rest
    data = lb_server.store.task_data(LR)
    assert data is not None and all(g.max_steps != 1 for g in data.groups())
    rows = list(csv.DictReader(io.StringIO(_get(lb_server, f"/api/tasks/{LR}/export.csv").text)))
    assert NO_RESULT_RUN not in {row["run_id"] for row in rows}
    run_page = _get(lb_server, f"/runs/{NO_RESULT_RUN}").text
    callout = run_page.split('id="status-reason"', 1)[1].split("</div>", 1)[0]
    assert "Infra error." in callout and NO_RESULT_REASON in callout
    assert "temperature=0.0, max_tokens=2048, timeout_s=30.0" in run_page


def test_a_task_whose_runs_all_failed_before_a_test_shows_why(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    run = next(r for r in realistic_runs() if r.run_id == NO_RESULT_RUN)
    with Store(f"sqlite:///{tmp_path / 'one.db'}") as store:
        store.record(run.model_copy(update={"status_reason": "<b>no key</b> set"}))
        client = TestClient(create_app(store))
        page = client.get(f"/tasks/{LR}")
        assert page.status_code == 200
        assert "No run of this task produced a result yet." in page.text
        assert "&lt;b&gt;no key&lt;/b&gt; set" in page.text and "<b>no key" not in page.text
        assert client.get(f"/tasks/{LR}", params={"profile": "tiny"}).status_code == 404


def test_auto_submitted_and_incomplete_runs_say_so(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    runs = {r.run_id: r for r in realistic_runs()}
    agent = runs[f"{LR}.qwen3.6-plus.agent"]
    assert agent.final is not None
    stopped = "the agent replied 3 times in a row without a tool call"
    auto = agent.model_copy(
        update={
            "final": agent.final.model_copy(update={"auto_submitted": True}),
            "status_reason": stopped,
        }
    )
    never = runs[f"{LR}.llama-4.agent"].model_copy(
        update={"status_reason": "the agent stopped before any completed test"}
    )
    with Store(f"sqlite:///{tmp_path / 'auto.db'}") as store:
        mistral = runs[f"{LR}.mistral-large.agent"]
        for run in (*(r for r in runs.values() if r.type == "baseline"), auto, never, mistral):
            store.record(run)
        client = TestClient(create_app(store))
        page = client.get(f"/runs/{auto.run_id}").text
        assert 'id="auto-submitted"' in page and "<strong>auto-submitted</strong>" in page
        assert f"finished: {stopped}" in page and 'id="status-reason"' not in page
        assert 'id="auto-submitted"' not in client.get(f"/runs/{mistral.run_id}").text
        rows = client.get(f"/tasks/{LR}").text.split('id="results"', 1)[1].split("<tr")
        marked = [r for r in rows if 'class="tag auto-submitted"' in r]
        assert len(marked) == 1 and f"/runs/{auto.run_id}" in marked[0]
        page = client.get(f"/runs/{never.run_id}").text
        callout = page.split('id="status-reason"', 1)[1].split("</div>", 1)[0]
        assert "Incomplete." in callout and "before any completed test" in callout


ROW_CELLS = re.compile(r'<tr class="type-[^"]*" data-run="([^"]+)">(.*?)</tr>', re.S)
METRIC_CELL = re.compile(r'<td class="num(?: best)?"\s+title="n=.*?</td>', re.S)
MSCORE = re.compile(r'<span class="mscore"[^>]*>([^<]*)</span>')


@pytest.mark.parametrize("profile", ["full", "tiny"])
def test_the_score_legend_holds_for_the_rendered_numbers(
    lb_server: LiveServer, profile: str
) -> None:
    """The legend: each metric's best baseline scores 50 on it, the worst 0, and the Score is
    the geometric mean over settings of the weighted mean of the metric scores shown."""
    page = _get(lb_server, f"/tasks/{LR}", params={"profile": profile}).text
    assert "<em>the best baseline on that metric</em> 50" in page
    assert "a baseline scores 50 only where it is the best baseline on every metric" in page
    group = re.search(r'<option value="([^"]+)" selected>', page)
    params = {"profile": profile} if group is None else {"group": group.group(1)}
    api = _get(lb_server, f"/api/tasks/{LR}", params=params).json()
    specs, anchors = api["metrics"], api["anchors"]
    shown: dict[str, tuple[float, list[float]]] = {}
    for run_id, cells in ROW_CELLS.findall(page):
        score = re.search(r'<td class="num strong">([^<]*)</td>', cells)
        metric_scores = [MSCORE.search(c) for c in METRIC_CELL.findall(cells)]
        if score is None or score.group(1).strip() in ("—", "0.0") or None in metric_scores:
            continue
        assert len(metric_scores) == len(specs), run_id
        shown[run_id] = (float(score.group(1)), [float(m.group(1)) for m in metric_scores])  # type: ignore[union-attr]
    assert len(shown) >= 3
    for i, spec in enumerate(specs):
        key = f"{spec['name']}_{spec['setting']}"
        assert shown[anchors[key]["best_run_id"]][1][i] == 50.0, key
    for run_id, (score, metric) in shown.items():
        settings: dict[str, list[tuple[float, float]]] = {}
        for spec, value in zip(specs, metric, strict=True):
            settings.setdefault(spec["setting"], []).append((value, spec["weight"]))
        means = [
            sum(v * w for v, w in pairs) / sum(w for _, w in pairs) for pairs in settings.values()
        ]
        gmean = math.exp(sum(math.log(m / 100 + 0.01) for m in means) / len(means)) - 0.01
        # from figures rounded to 0.1: the Score agrees within the rounding
        assert score == pytest.approx(100 * gmean, abs=0.2), run_id
    # the legend's example: a baseline best on some metrics only scores below 50
    baselines = [r for r in api["rows"] if r["type"] == "baseline" and not r["reference"]]
    assert any(r["run_id"] in shown and 0 < shown[r["run_id"]][0] < 50 for r in baselines)


def test_standard_errors_beside_single_seed_accuracies(lb_server: LiveServer) -> None:
    """lm-eval's standard error is shown beside each accuracy of a one-seed row (page, run
    page, JSON API, CSV), and not where several seeds give an interval."""
    vanilla, agent = f"{LR}.deepseek-reasoner.vanilla", f"{LR}.gemini-3.1-pro-preview.agent"
    key = "arc_easy_lm-eval-345m"
    api = _get(lb_server, f"/api/tasks/{LR}").json()
    rows = {r["run_id"]: r for r in api["rows"]}
    se = rows[vanilla]["metrics"][key]["stderr"]
    mean = rows[vanilla]["metrics"][key]["mean"]
    # lm-eval's sqrt(p (1 - p) / (N - 1)) over ARC-Easy's 2376 items, in points
    assert se == pytest.approx(100 * math.sqrt(mean / 100 * (1 - mean / 100) / 2375), abs=1e-3)
    assert rows[vanilla]["metrics"]["val_loss_gpt-345m"]["stderr"] is None  # none reported
    assert rows[agent]["metrics"][key]["stderr"] is None  # three seeds: the interval instead
    page = _get(lb_server, f"/tasks/{LR}").text
    cells = dict(ROW_CELLS.findall(page))
    assert f"(SE {se:.2g})" in cells[vanilla] and "(SE" not in cells[agent]
    run_page = _get(lb_server, f"/runs/{vanilla}").text
    assert f"(SE {se:.2g})" in run_page
    exported = {r["run_id"]: r for r in csv.DictReader(io.StringIO(export_csv(lb_server.store)))}
    assert float(exported[vanilla][f"{key}_stderr"]) == se
    assert exported[agent][f"{key}_stderr"] == ""


def test_a_group_of_inseparable_baselines_is_labelled_a_smoke_test(
    tmp_path: Any, lb_runs: list[Any]
) -> None:
    """Two baselines whose val_loss spread is seed noise (the tiny profile's, measured in
    docs/VALIDITY.md): the page, the command line's table and its JSON all say "smoke test";
    the realistic full-profile group, whose baselines differ, does not."""
    from fastapi.testclient import TestClient

    from leaderboard._views import build_task_table
    from runner._board import board_tables

    bases = [r for r in lb_runs if r.task_id == LR and r.type == "baseline"][:2]
    noisy = [[6.47, 6.61, 6.50], [6.30, 6.75, 6.45]]
    store = Store(f"sqlite:///{tmp_path / 'smoke.db'}")
    for run in lb_runs:
        store.record(run)
    assert build_task_table(store, LR).smoke_note() is None
    key = "val_loss_gpt-345m"
    for run, values in zip(bases, noisy, strict=True):
        assert run.final is not None
        by_seed = dict(zip((42, 43, 44), values, strict=True))
        seeds = [
            s.model_copy(update={"metrics": {**s.metrics, key: by_seed[s.seed]}})
            if key in s.metrics
            else s
            for s in run.final.per_seed
        ]
        store.record(
            run.model_copy(
                update={
                    "run_id": run.run_id + "-tiny",
                    "profile": "tiny",
                    "final": run.final.model_copy(update={"per_seed": seeds}),
                }
            )
        )
    table = build_task_table(store, LR, profile="tiny")
    note = table.smoke_note()
    assert note is not None and note.startswith("A smoke test, not a ranking")
    [board] = [b for b in board_tables(store, LR) if b.group == table.group.slug()]
    assert board.smoke_test == note
    page = TestClient(create_app(store)).get(f"/tasks/{LR}", params={"group": table.group.slug()})
    assert page.status_code == 200 and 'id="smoke-test"' in page.text
    store.close()
