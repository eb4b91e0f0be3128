"""Sweeps, hand-written methods and imported results on the web site, the API, the CSV and the
command line's table, over a real SQLite store (HTTP on loopback and FastAPI's TestClient).

The sweep records are synthetic (``tests._fixtures.leaderboard.sweep_records``): a 3-point ×
2-seed learning-rate sweep and a 2 × 2 grid of learning rate × warmup with one point pending.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from leaderboard import RunRecord, Store, SweepPoint, SweepRecord, create_app, export_csv
from leaderboard._views import format_value
from tests._fixtures.leaderboard import (
    SWEEP_GRID,
    SWEEP_LR,
    LiveServer,
    realistic_runs,
)

pytestmark = pytest.mark.integration

LR = "llm-pretrain-lr-schedule"
VAL = "val_loss_gpt-345m"
ARC = "arc_easy_lm-eval-345m"
CIRCLE = re.compile(r"<circle class=\"plot-point\"([^>]*)>")


def _get(server: LiveServer, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30, **kw)


def _attrs(tag: str) -> dict[str, str]:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def _values(run: RunRecord, key: str) -> dict[int, float]:
    """A run's final value of ``key`` per seed, read straight from the record."""
    assert run.final is not None
    return {r.seed: r.metrics[key] for r in run.final.per_seed if key in r.metrics}


def test_the_sweep_api_reports_each_point_against_the_default(lb_server: LiveServer) -> None:
    """Means, deltas and paired p-values of ``/api/sweeps/{id}`` agree with the runs' own
    per-seed values (checked here with scipy, not with the leaderboard's code)."""
    body = _get(lb_server, f"/api/sweeps/{SWEEP_LR}").json()
    assert body["metric"] == VAL and body["direction"] == "lower"  # the primary metric
    assert body["grid"] == {"learning_rate": [1e-4, 1e-3, 3e-3]} and body["seeds"] == [42, 43]
    points = body["points"]
    assert [p["label"] for p in points] == [
        "default",
        "learning_rate=0.0001",
        "learning_rate=0.001",
        "learning_rate=0.003",
    ]
    runs = {p["run_id"]: lb_server.store.get_run(p["run_id"]) for p in points}
    default = _values(runs[points[0]["run_id"]], VAL)  # type: ignore[arg-type]
    for p in points:
        mine = _values(runs[p["run_id"]], VAL)  # type: ignore[arg-type]
        assert p["values"] == [mine[42], mine[43]] and p["status"] == "ok"
        assert p["mean"] == pytest.approx(sum(mine.values()) / 2)
        if p["index"] == 0:
            assert p["delta"] is None and p["p_value"] is None
            continue
        assert p["delta"] == pytest.approx(p["mean"] - sum(default.values()) / 2)
        expected = stats.ttest_rel([mine[42], mine[43]], [default[42], default[43]]).pvalue
        assert p["p_value"] == pytest.approx(expected)
        assert p["significant"] == (expected < 0.05)
    # lr 1e-4 is far worse than the default: significant, and flagged as not better
    assert points[1]["significant"] is True and points[1]["better"] is False

    other = _get(lb_server, f"/api/sweeps/{SWEEP_LR}", params={"metric": ARC}).json()
    assert other["metric"] == ARC and other["direction"] == "higher"
    run1 = runs[points[1]["run_id"]]
    assert other["points"][1]["values"] == list(_values(run1, ARC).values())  # type: ignore[arg-type]

    bad = _get(lb_server, f"/api/sweeps/{SWEEP_LR}", params={"metric": "accuracy"})
    assert bad.status_code == 400
    assert "no metric 'accuracy'" in bad.json()["error"] and VAL in bad.json()["error"]
    missing = _get(lb_server, "/api/sweeps/no-such-sweep")
    assert missing.status_code == 404 and missing.json() == {"error": "no sweep 'no-such-sweep'"}


def test_the_sweep_page_shows_the_table_and_a_plot_per_swept_key(lb_server: LiveServer) -> None:
    api = _get(lb_server, f"/api/sweeps/{SWEEP_LR}").json()
    page = _get(lb_server, f"/sweeps/{SWEEP_LR}").text
    table = page.split('id="sweep-table"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-point="(\d+)".*?</tr>', table, re.S)
    assert rows == ["0", "1", "2", "3"]
    for p in api["points"]:
        row = re.search(rf'<tr data-point="{p["index"]}".*?</tr>', table, re.S)
        assert row is not None
        assert f'<a href="/runs/{p["run_id"]}">' in row.group(0)
        assert f">{format_value(p['mean'])}<" in row.group(0)
        for v in p["values"]:
            assert f">{format_value(v)}<" in row.group(0)
    assert "reference" in table and "*" in table  # the default row; a significant point
    # The metric selector offers every metric the points report, the shown one selected.
    options = re.findall(r'<option value="([^"]+)"( selected)?>', page)
    assert len(options) == 7 and (VAL, " selected") in options
    # One plot (learning_rate) on a log axis (1e-4 … 3e-3), its dots the table's means.
    figures = re.findall(r'<figure data-key="([^"]+)">', page)
    assert figures == ["learning_rate"]
    assert "learning_rate (log scale)" in page
    circles = {int(a["data-point"]): a for a in map(_attrs, CIRCLE.findall(page))}
    assert sorted(circles) == [1, 2, 3]
    for p in api["points"][1:]:
        assert float(circles[p["index"]]["data-mean"]) == p["mean"]
        assert [
            float(circles[p["index"]]["data-ci-low"]),
            float(circles[p["index"]]["data-ci-high"]),
        ] == p["ci95"]
    ref = re.search(r'<line [^>]*class="plot-ref"[^>]*data-mean="([^"]+)"', page)
    assert ref is not None and float(ref.group(1)) == api["points"][0]["mean"]
    # Log axis: equal ratios of learning rate are equal distances.
    x = {i: float(circles[i]["cx"]) for i in circles}
    ratio = (x[2] - x[1]) / (x[3] - x[2])
    assert ratio == pytest.approx(math.log10(10) / math.log10(3), rel=1e-3)
    # Another metric: the page and the plot follow it.
    arc = _get(lb_server, f"/sweeps/{SWEEP_LR}", params={"metric": ARC}).text
    assert "arc_easy (lm-eval-345m) against learning_rate" in arc
    assert (ARC, " selected") in re.findall(r'<option value="([^"]+)"( selected)?>', arc)


def test_a_two_key_grid_plots_one_series_per_value_of_the_other_key(
    lb_server: LiveServer,
) -> None:
    api = _get(lb_server, f"/api/sweeps/{SWEEP_GRID}").json()
    assert [p["status"] for p in api["points"]] == ["ok", "ok", "ok", "ok", "pending"]
    page = _get(lb_server, f"/sweeps/{SWEEP_GRID}").text
    assert "4 of 5 have a result" in page and page.count(">pending<") == 2
    figures = page.split('id="sweep-plots"', 1)[1]
    parts = dict(re.findall(r'<figure data-key="([^"]+)">(.*?)</figure>', figures, re.S))
    assert set(parts) == {"learning_rate", "warmup_iters"}
    assert "(log scale)" not in figures  # 6e-4 … 1.2e-3 spans 2x: a linear axis
    legend = re.findall(r'class="plot-legend">([^<]*)<', parts["learning_rate"])
    assert legend == ["default", "warmup_iters=200", "warmup_iters=400"]
    legend = re.findall(r'class="plot-legend">([^<]*)<', parts["warmup_iters"])
    assert legend == ["default", "learning_rate=0.0006", "learning_rate=0.0012"]
    # each done, non-default point once per plot
    for svg in parts.values():
        assert sorted(int(_attrs(c)["data-point"]) for c in CIRCLE.findall(svg)) == [1, 2, 3]


def test_the_task_page_lists_sweeps_and_ranks_no_sweep_point(lb_server: LiveServer) -> None:
    page = _get(lb_server, f"/tasks/{LR}").text
    listed = page.split('id="sweeps"', 1)[1].split("</table>", 1)[0]
    assert f'<a href="/sweeps/{SWEEP_LR}">lr-sweep</a>' in listed
    assert f'<a href="/sweeps/{SWEEP_GRID}">lr-warmup-grid</a>' in listed
    assert "4 / 4" in listed and "4 / 5" in listed
    assert "learning_rate ∈ {0.0006, 0.0012} × warmup_iters ∈ {200, 400}" in listed
    results = page.split('id="results"', 1)[1].split("</table>", 1)[0]
    assert "sweep-" not in results
    api = _get(lb_server, f"/api/tasks/{LR}").json()
    assert not [r for r in api["rows"] if r["run_id"].startswith("sweep-")]
    assert "sweep-" not in export_csv(lb_server.store)
    from runner._board import board_tables

    assert not [r for t in board_tables(lb_server.store, LR) for r in t.rows if r.type == "method"]


def test_a_sweep_points_run_page_links_to_its_sweep(lb_server: LiveServer) -> None:
    page = _get(lb_server, f"/runs/{SWEEP_LR}.p1").text
    note = page.split('id="sweep-point"', 1)[1].split("</div>", 1)[0]
    assert f'<a href="/sweeps/{SWEEP_LR}">lr-sweep</a>' in note
    assert "<code>learning_rate=0.0001</code>" in note
    assert "not ranked on the task" in note
    default = _get(lb_server, f"/runs/{SWEEP_LR}.p0").text
    assert "the default point (no override)" in default
    assert _get(lb_server, "/sweeps/no-such-sweep").status_code == 404
    bad = _get(lb_server, f"/sweeps/{SWEEP_LR}", params={"metric": "<b>x</b>"})
    assert bad.status_code == 400 and "&lt;b&gt;x&lt;/b&gt;" in bad.text and "<b>x" not in bad.text


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'lb.db'}") as s:
        yield s


def test_sweep_keys_and_values_are_escaped_everywhere(store: Store) -> None:
    """Keys and values of a sweep come from the store: a hostile one is shown as text, on a
    categorical axis (the values are not numbers)."""
    key, value = '<img src=x onerror="alert(1)">', "<b>wide</b>"
    base = next(r for r in realistic_runs() if r.run_id == f"{LR}.baseline.cosine")
    sweep = SweepRecord(
        sweep_id="hostile",
        task_id=LR,
        label="hostile",
        profile="full",
        sandbox="local",
        grid={key: [value, "narrow"]},
        seeds=[42, 43, 44],
        points=[
            SweepPoint(index=0, run_id="hostile.p0"),
            SweepPoint(index=1, overrides={key: value}, run_id="hostile.p1"),
            SweepPoint(index=2, overrides={key: "narrow"}, run_id="hostile.p2"),
        ],
        created_at=datetime(2026, 11, 22, tzinfo=UTC),
    )
    for point in sweep.points:
        store.record(
            base.model_copy(
                update={
                    "run_id": point.run_id,
                    "type": "method",
                    "method": "hostile",
                    "reference": False,
                    "sweep_id": "hostile",
                    "sweep_point": point.overrides,
                    "regions": {"config_overrides": repr(point.overrides)},
                }
            )
        )
    store.record_sweep(sweep)
    client = TestClient(create_app(store))
    for path in ("/sweeps/hostile", "/runs/hostile.p1", f"/tasks/{LR}"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<img" not in page.text and "<b>wide" not in page.text, path
        assert "&lt;b&gt;wide&lt;/b&gt;" in page.text, path
    svg = client.get("/sweeps/hostile").text.split('id="sweep-plots"', 1)[1]
    assert "&lt;img src=x" in svg and len(CIRCLE.findall(svg)) == 2
    # categorical: the two values evenly placed at the ends of the axis, in the grid's order
    xs = [float(_attrs(c)["data-x"]) for c in CIRCLE.findall(svg)]
    assert xs == [0.0, 1.0]
    # every point runs the same metrics: the API answers them with the page's numbers
    assert client.get("/api/sweeps/hostile").json()["points"][1]["label"] == f"{key}={value}"


def test_a_sweep_without_results_yet(store: Store) -> None:
    store.record_sweep(
        SweepRecord(
            sweep_id="fresh",
            task_id=LR,
            label="fresh",
            profile="tiny",
            sandbox="local",
            grid={"learning_rate": [1e-3, 3e-3]},
            seeds=[42],
            points=[
                SweepPoint(index=0),
                SweepPoint(index=1, overrides={"learning_rate": 1e-3}),
                SweepPoint(index=2, overrides={"learning_rate": 3e-3}),
            ],
            created_at=datetime(2026, 11, 26, tzinfo=UTC),
        )
    )
    client = TestClient(create_app(store))
    page = client.get("/sweeps/fresh")
    assert page.status_code == 200 and "No point of this sweep has a result yet." in page.text
    api = client.get("/api/sweeps/fresh")
    assert api.status_code == 404 and "has a result yet" in api.json()["error"]


def _method_and_imported_runs() -> list[RunRecord]:
    """The LR task's baselines, a hand-written method better than all of them on val_loss,
    and an agent's result imported from another store."""
    runs = {r.run_id: r for r in realistic_runs()}
    baselines = [
        r for r in runs.values() if r.task_id == LR and r.type == "baseline" and r.profile == "full"
    ]
    best = min(baselines, key=lambda r: sum(_values(r, VAL).values()))
    assert best.final is not None
    better = [
        s.model_copy(update={"metrics": {**s.metrics, VAL: s.metrics[VAL] - 0.03}})
        if VAL in s.metrics
        else s
        for s in best.final.per_seed
    ]
    method = best.model_copy(
        update={
            "run_id": f"{LR}.method.linear-decay",
            "type": "method",
            "method": "linear-decay",
            "agent": "method:linear-decay",
            "reference": False,
            "regions": {"get_lr": "def get_lr(it, w, d, lr, m):\n    return lr * (1 - it / d)\n"},
            "final": best.final.model_copy(update={"per_seed": better}),
        }
    )
    imported = runs[f"{LR}.gpt-5.4.agent"].model_copy(
        update={"run_id": f"{LR}.elsewhere.agent", "origin": "imported", "transcript": None}
    )
    return [*baselines, method, imported]


def test_method_and_imported_rows_on_every_surface(store: Store) -> None:
    from rich.console import Console

    from runner._board import board_json, board_tables, print_board

    for run in _method_and_imported_runs():
        store.record(run)
    method_id, imported_id = f"{LR}.method.linear-decay", f"{LR}.elsewhere.agent"
    client = TestClient(create_app(store))
    page = client.get(f"/tasks/{LR}").text
    rows = dict(re.findall(r'<tr class="type-[^"]*" data-run="([^"]+)">(.*?)</tr>', page, re.S))
    assert 'class="badge badge-method">method<' in rows[method_id]
    assert 'class="tag imported"' in rows[imported_id] and "imported" not in rows[method_id]
    assert "a researcher's hand-written method" in page and "never a scoring anchor" in page
    assert "not verified by this store's sandbox" in page
    # the type filter: all four types, "all" active; method alone
    pills = page.split('id="type-filter"', 1)[1].split("</div>", 1)[0]
    assert re.findall(r">(\w+)</a>", pills) == ["all", "baseline", "method", "vanilla", "agent"]
    assert 'class="pill active" href="?' in pills.split("baseline")[0]
    only = client.get(f"/tasks/{LR}", params={"type": "method"}).text
    assert re.findall(r'data-run="([^"]+)"', only) == [method_id]

    api = client.get(f"/api/tasks/{LR}").json()
    by_id = {r["run_id"]: r for r in api["rows"]}
    assert by_id[imported_id]["origin"] == "imported" and by_id[method_id]["origin"] == "own"
    # better than every baseline on val_loss, yet never its anchor
    assert api["anchors"][VAL]["best_run_id"] != method_id
    assert by_id[method_id]["metrics"][VAL]["score"] > 0.5

    exported = {r["run_id"]: r for r in csv.DictReader(io.StringIO(export_csv(store, LR)))}
    assert exported[imported_id]["origin"] == "imported"
    assert exported[method_id]["origin"] == "own" and exported[method_id]["type"] == "method"

    tables = board_tables(store, LR)
    board_rows = {r.run_id: r for t in tables for r in t.rows}
    assert board_rows[imported_id].origin == "imported" and board_rows[method_id].type == "method"
    assert json.loads(board_json(tables))[0]["rows"][0]["origin"] in ("own", "imported")
    console = Console(record=True, width=250)
    print_board(console, tables)
    text = console.export_text()
    assert "gpt-5.4 (imported)" in text and "not verified by this store's sandbox" in text

    run_page = client.get(f"/runs/{imported_id}").text
    callout = run_page.split('id="imported"', 1)[1].split("</div>", 1)[0]
    assert "computed elsewhere" in callout and "not verified by this store's sandbox" in callout
    method_page = client.get(f"/runs/{method_id}").text
    assert 'id="method-note"' in method_page and "none (a hand-written method)" in method_page
    assert 'id="imported"' not in method_page and 'id="sweep-point"' not in method_page
