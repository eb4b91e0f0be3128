"""One leaderboard table: the web page, `runner leaderboard show`, its --json, the JSON API and
both CSV exports list the same runs, in the same order, with the same scores, the same (tied)
ranks and the same ties in words, for one store."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from runner.cli import app
from tests._fixtures.leaderboard import LiveServer

pytestmark = pytest.mark.integration

ROW = re.compile(r'<tr class="type-[^"]*" data-run="([^"]+)">(.*?)</tr>', re.S)
SCORE_CELL = re.compile(r'<td class="num strong">([^<]*)</td>')
RANK_CELL = re.compile(r'<td class="num rank[^"]*">([^<]*)</td>')
TIES = re.compile(r'<ul class="ties" id="ties">(.*?)</ul>', re.S)


def _web_rows(
    server: LiveServer, task_id: str, slug: str
) -> tuple[list[tuple[str, ...]], list[str]]:
    """(run id, rank text, score text) of each row of the task page's table for one group,
    and the page's ties in words."""
    page = httpx.get(f"{server.url}/tasks/{task_id}", params={"group": slug}, timeout=30)
    assert page.status_code == 200
    rows = []
    for run_id, cells in ROW.findall(page.text):
        score, rank = SCORE_CELL.search(cells), RANK_CELL.search(cells)
        assert score is not None and rank is not None, run_id
        rows.append((html.unescape(run_id), rank.group(1).strip(), score.group(1).strip()))
    ties = TIES.search(page.text)
    sentences = re.findall(r"<li>(.*?)</li>", ties.group(1)) if ties else []
    return rows, [html.unescape(t) for t in sentences]


def _cli_tables(output: str) -> dict[str, list[list[str]]]:
    """The rich tables `leaderboard show` printed, by title: the cells of each body row."""
    tables: dict[str, list[list[str]]] = {}
    title = ""
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith("│"):
            tables[title].append([c.strip() for c in line.strip("│").split("│")])
        elif line.startswith("A smoke test, not a ranking"):
            continue  # the note under a title whose baselines are inside seed noise
        elif line and line[0] not in "┏┃┡└":  # not a border or the header row: a title
            title = line
            tables[title] = []
    return {title: rows for title, rows in tables.items() if rows}  # not the footnotes


def test_cli_table_csv_and_web_page_rank_the_same_rows(
    lb_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = lb_server.store.url
    # A console wide enough that no cell is cut or wrapped (it writes to the captured stdout).
    monkeypatch.setattr("runner.cli.out", Console(width=1000))
    shown = CliRunner().invoke(app, ["leaderboard", "show", "--db", url])
    assert shown.exit_code == 0, shown.output
    cli_tables = _cli_tables(shown.output)
    exported = CliRunner().invoke(app, ["leaderboard", "export", "--db", url, "--format", "csv"])
    assert exported.exit_code == 0, exported.output
    web_csv = httpx.get(f"{lb_server.url}/api/export.csv", timeout=30).text
    assert exported.output == web_csv  # one CSV export
    csv_rows = list(csv.DictReader(io.StringIO(web_csv)))
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in csv_rows:
        slug = "|".join(
            row[k]
            for k in ("profile", "max_steps", "max_tests", "codebase_version", "dataset_source")
        )
        groups.setdefault((row["task_id"], slug), []).append(row)
    assert len(groups) == len(cli_tables) >= 3
    as_json = CliRunner().invoke(app, ["leaderboard", "show", "--db", url, "--json"])
    json_tables = {(t["task_id"], t["group"]): t for t in json.loads(as_json.stdout)}
    tied_groups = 0
    for (task_id, slug), rows in groups.items():
        expected = [
            (
                r["run_id"],
                ("=" if r["tied"] == "True" else "") + r["rank"],
                "—" if r["score"] == "" else f"{100 * float(r['score']):.1f}",
            )
            for r in rows
        ]
        web_rows, web_ties = _web_rows(lb_server, task_id, slug)
        assert web_rows == expected
        # the ties in words: one sentence per tie, the same on the page, in both JSONs and
        # on each tied row of the CSV
        csv_ties = list(dict.fromkeys(r["tie"] for r in rows if r["tie"]))
        api = httpx.get(f"{lb_server.url}/api/tasks/{task_id}", params={"group": slug}).json()
        assert web_ties == csv_ties == json_tables[(task_id, slug)]["ties"]
        assert [t["sentence"] for t in api["ties"]] == web_ties
        assert [r["rank"] for r in api["rows"]] == [
            int(r["rank"]) if r["rank"] else None for r in rows
        ]
        assert [r["tied"] for r in api["rows"]] == [r["tied"] == "True" for r in rows]
        tied_groups += bool(web_ties)
        cli = next(
            cells
            for title, cells in cli_tables.items()
            if title.startswith(task_id) and _label_matches(title, rows[0])
        )
        assert [(c[1], c[2], c[3]) for c in cli] == [
            (r["method"] + (" (reference)" if r["reference"] == "True" else ""), r["type"], s)
            for r, (_, _, s) in zip(rows, expected, strict=True)
        ]
        assert [c[0] for c in cli] == [rank for _, rank, _ in expected]
        cli_text = shown.output.replace("\n", " ")
        assert all(sentence in cli_text for sentence in web_ties)
    assert tied_groups >= 1  # the realistic runs hold gaps inside the seed noise


def _label_matches(title: str, row: dict[str, str]) -> bool:
    budget = (
        f"{row['max_steps']} steps / {row['max_tests']} tests"
        if row["max_steps"]
        else "no agent budgets"
    )
    return f"· {row['profile']} · {budget} · codebase {row['codebase_version']} ·" in title
