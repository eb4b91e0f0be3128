"""Records: the Markdown fences, the reproducing command, the committed schema, a sweep's
record, and the importer's refusals of hostile folders (real SQLite stores, synthetic runs).

The export → import round trip of a real tiny run is in tests/integration/test_runner_records.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from markdown_it import MarkdownIt

from env import load_task
from leaderboard import (
    FinalRecord,
    MetricInfo,
    RunRecord,
    SeedRecord,
    Store,
    SweepRecord,
)
from runner._choices import SandboxKind
from runner._record_export import (
    changed_regions,
    export_record,
    rebuilt_sources,
    reproduce_command,
)
from runner._record_format import (
    SCHEMA_PATH,
    RecordError,
    committed_schema,
    fence,
    inline_code,
    schema_text,
)
from runner._record_import import import_record, read_record
from runner._run import RunConfig
from runner._sweep import make_plan, parse_grid
from tests.unit.test_leaderboard_records import run as record_of

REPO = Path(__file__).resolve().parents[2]
UPDATE = os.environ.get("PB_UPDATE_SNAPSHOTS") == "1"
LOSS = MetricInfo(name="val_loss", setting="gpt-tiny", direction="lower", bound=0, primary=True)
ACC = MetricInfo(name="piqa", setting="lm-eval-tiny", direction="higher", bound=100, hidden=True)
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TASK = "llm-pretrain-lr-schedule"
GET_LR = (
    "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return learning_rate"
)


# ── fences ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "```\n# not a heading\n```\n<script>alert(1)</script>",
        "````` five\n```` four\n",
        "ends with backticks ``",
        "",
    ],
)
def test_fence_keeps_untrusted_text_one_code_block(text: str) -> None:
    document = "# Title\n\n" + fence(text, "diff") + "\nafter\n"
    tokens = MarkdownIt("commonmark").parse(document)
    blocks = [t for t in tokens if t.type == "fence"]
    assert len(blocks) == 1
    expected = text if text.endswith("\n") or not text else text + "\n"
    assert blocks[0].content == expected
    assert [t.type for t in tokens if t.type in ("html_block", "heading_open")] == ["heading_open"]


@pytest.mark.parametrize("text", ["a`b", "``x``", "line\nbreak | pipe", "`lead"])
def test_inline_code_is_one_span(text: str) -> None:
    html = MarkdownIt("commonmark").render(inline_code(text))
    assert html.count("<code>") == 1
    assert "line break" in html or "\n" not in text
    table = "| a | b |\n|---|---|\n| " + inline_code(text, in_table=True) + " | x |\n"
    cells = MarkdownIt("commonmark").enable("table").render(table)
    assert cells.count("<td>") == 2


# ── the command that reproduces a run ────────────────────────────────────────────────────


def _run(run_id: str = "r1", **changes: object) -> RunRecord:
    rows = [
        SeedRecord(
            number=1,
            setting=spec.setting,
            seed=seed,
            status="ok",
            metrics={spec.key: value + seed / 100},
            elapsed_s=10.0,
        )
        for seed in (42, 43)
        for spec, value in ((LOSS, 6.5), (ACC, 50.0))
    ]
    fields: dict[str, object] = {
        "run_id": run_id,
        "task_id": "llm-pretrain-lr-schedule",
        "task_title": "LLM pretraining: learning-rate schedule",
        "agent": "method:const",
        "type": "method",
        "method": "const",
        "max_tests": 1,
        "codebase_version": "sha256:abc",
        "dataset_source": "offline@1c7dac206447",
        "started_at": T0,
        "finished_at": T0 + timedelta(minutes=3),
        "model": None,
        "tests": [r.model_copy() for r in rows if r.seed == 42],
        "final": FinalRecord(test_number=1, status="ok", per_seed=rows),
        "regions": {"get_lr": GET_LR, "config_overrides": "CONFIG_OVERRIDES = {}"},
        "diff": "--- a\n+++ b\n@@\n-old\n+new ``` breakout\n",
        "metric_specs": [LOSS, ACC],
    }
    return record_of(**{**fields, **changes})


def test_command_of_a_method_names_its_region_files_label_and_seeds() -> None:
    assert reproduce_command(_run()) == (
        "runner run --task llm-pretrain-lr-schedule --region get_lr=code/get_lr.py "
        "--region config_overrides=code/config_overrides.py --label const --profile tiny "
        "--data offline --seeds 42 --final-seeds 42,43"
    )


def test_command_of_a_baseline_and_of_an_agent() -> None:
    baseline = _run(agent="baseline:wsd", type="baseline", method="wsd")
    assert reproduce_command(baseline).startswith(
        "runner run --task llm-pretrain-lr-schedule --agent baseline:wsd --profile tiny"
    )
    agent = _run(
        agent="openai:gpt-x",
        type="agent",
        method="gpt-x",
        model="gpt-x",
        max_tests=3,
        agent_settings={"temperature": 0.2, "base_url": "http://127.0.0.1:9/v1"},
    )
    command = reproduce_command(agent)
    assert "--agent openai:gpt-x --max-steps 20 --max-tests 3" in command
    assert "--temperature 0.2 --base-url http://127.0.0.1:9/v1" in command


# ── the committed schema ─────────────────────────────────────────────────────────────────


def test_committed_schema_is_the_generated_one() -> None:
    path = REPO / SCHEMA_PATH
    if UPDATE:
        path.write_text(schema_text(), encoding="utf-8")
    assert path.is_file(), f"no {SCHEMA_PATH}; create it with PB_UPDATE_SNAPSHOTS=1"
    assert path.read_text(encoding="utf-8") == schema_text(), (
        f"{SCHEMA_PATH} is stale: regenerate it with PB_UPDATE_SNAPSHOTS=1 "
        "python -m pytest tests/unit/test_runner_records.py"
    )
    jsonschema.Draft202012Validator.check_schema(committed_schema())


# ── export and import of a run (no run directory: no logs) ──────────────────────────────


def _store(path: Path, *runs: RunRecord) -> Store:
    store = Store(f"sqlite:///{path}")
    for run in runs:
        store.record(run)
    return store


def test_run_record_without_run_dir_says_so_and_round_trips(tmp_path: Path) -> None:
    with _store(tmp_path / "a.db", _run()) as store:
        outcome = export_record(store, "r1", tmp_path / "rec")
    readme = (tmp_path / "rec" / "README.md").read_text(encoding="utf-8")
    assert "no logs (its run directory is not on this machine)" in readme
    assert "| val_loss (primary) | gpt-tiny | 6.92 | 6.93 | 6.925 ± 0.0635 |" in readme
    assert "| piqa † | lm-eval-tiny | 50.42 | 50.43 |" in readme
    # the diff's ``` cannot close the block it is shown in
    assert "\n````diff\n" in readme
    assert outcome.notes and not (tmp_path / "rec" / "logs").exists()
    data = json.loads((tmp_path / "rec" / "submission.json").read_text())
    jsonschema.validate(data, committed_schema())
    with _store(tmp_path / "b.db") as other:
        assert import_record(other, tmp_path / "rec").runs == {"r1": "inserted"}
        assert import_record(other, tmp_path / "rec").runs == {"r1": "unchanged"}
        got = other.get_run("r1")
    assert got is not None and got.origin == "imported"
    assert [r.metrics for r in got.result_rows()] == [r.metrics for r in _run().result_rows()]
    assert got.result_identity() == _run().result_identity()


def test_export_refuses_unknown_ids_and_non_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with _store(tmp_path / "a.db", _run()) as store:
        with pytest.raises(RecordError, match="no run or sweep 'nope'"):
            export_record(store, "nope", tmp_path / "x")
        for force in (False, True):  # a folder that is not a record is never replaced
            with pytest.raises(RecordError, match="not empty and holds no record"):
                export_record(store, "r1", tmp_path / "busy", force=force)
        export_record(store, "r1", tmp_path / "rec")
        (tmp_path / "rec" / "stale.txt").write_text("x")
        with pytest.raises(RecordError, match="holds a record"):
            export_record(store, "r1", tmp_path / "rec")
        export_record(store, "r1", tmp_path / "rec", force=True)
    assert (tmp_path / "busy" / "keep.txt").exists()
    assert (tmp_path / "rec" / "README.md").exists()
    assert not (tmp_path / "rec" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    """An exported record with a log: the run's directory (run.json, a job log) exists."""
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "tests" / "1" / "gpt-tiny").mkdir(parents=True)
    (run_dir / "run.json").write_text("{}")
    for seed in (42, 43):
        (run_dir / "tests" / "1" / "gpt-tiny" / f"seed_{seed}.log").write_text(f"log {seed}\n")
    run = _run(transcript_ref=str(run_dir / "transcript.jsonl"))
    with _store(tmp_path / "a.db", run) as store:
        export_record(store, "r1", tmp_path / "rec")
    return tmp_path / "rec"


def _refused(folder: Path, tmp_path: Path, match: str) -> None:
    db = tmp_path / "victim.db"
    with _store(db) as store:
        before = store.count_results()
        with pytest.raises(RecordError, match=match):
            import_record(store, folder)
        assert store.count_results() == before and store.run_ids() == []


def _edit_submission(folder: Path, edit: object) -> None:
    path = folder / "submission.json"
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))


def test_logs_are_listed_and_hashed(record_dir: Path) -> None:
    submission, runs, _ = read_record(record_dir)
    logs = [f for f in submission.files if f.kind == "log"]
    assert [(f.path, f.job, f.seed) for f in logs] == [
        ("logs/gpt-tiny_seed42.log", "gpt-tiny", 42),
        ("logs/gpt-tiny_seed43.log", "gpt-tiny", 43),
    ]
    assert runs[0].origin == "imported"


def test_tampered_log_is_refused(record_dir: Path, tmp_path: Path) -> None:
    (record_dir / "logs" / "gpt-tiny_seed42.log").write_text("log 41\n")
    _refused(record_dir, tmp_path, r"logs/gpt-tiny_seed42.log: sha256 .* does not match")


def test_missing_file_is_refused(record_dir: Path, tmp_path: Path) -> None:
    (record_dir / "code" / "get_lr.py").unlink()
    _refused(record_dir, tmp_path, r"code/get_lr.py: missing")


def test_schema_invalid_submission_is_refused(record_dir: Path, tmp_path: Path) -> None:
    _edit_submission(record_dir, lambda d: d["runs"][0].update(max_steps=-1))
    _refused(record_dir, tmp_path, r"submission.json: field runs/0/max_steps: -1 is less than")


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "logs/../../x", ".hidden"])
def test_path_traversal_names_are_refused(record_dir: Path, tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    _edit_submission(record_dir, lambda d: d["files"][0].update(path=name))
    _refused(record_dir, tmp_path, r"field files/0/path")


def test_symlinked_file_is_refused(record_dir: Path, tmp_path: Path) -> None:
    log = record_dir / "logs" / "gpt-tiny_seed42.log"
    (tmp_path / "elsewhere.log").write_bytes(log.read_bytes())
    log.unlink()
    log.symlink_to(tmp_path / "elsewhere.log")
    _refused(record_dir, tmp_path, "symbolic link")
    shutil.rmtree(record_dir / "logs")
    (record_dir / "logs").symlink_to(tmp_path)
    _refused(record_dir, tmp_path, "not a folder of the record")


def test_non_finite_and_bad_json_are_refused(record_dir: Path, tmp_path: Path) -> None:
    path = record_dir / "submission.json"
    text = path.read_text()
    path.write_text(text.replace('"total_elapsed_s": 40.0', '"total_elapsed_s": NaN'))
    _refused(record_dir, tmp_path, "not valid JSON .*NaN is not a JSON number")
    path.write_text(text[:-10])
    _refused(record_dir, tmp_path, "submission.json: not valid JSON")
    path.write_text(text.replace('"val_loss_gpt-tiny": 6.92', '"val_loss_gpt-tiny": "big"', 1))
    _refused(record_dir, tmp_path, "field runs/0/result/per_seed")


def test_oversized_file_is_refused_without_reading_it_all(record_dir: Path, tmp_path: Path) -> None:
    _edit_submission(record_dir, lambda d: d["files"][0].update(bytes=10**12))
    _refused(record_dir, tmp_path, r"field files/0/bytes: .* is over")


def test_import_never_replaces_an_own_run(record_dir: Path, tmp_path: Path) -> None:
    with _store(tmp_path / "own.db", _run()) as store:
        with pytest.raises(RecordError, match="a run this store ran itself"):
            import_record(store, record_dir)
        stored = store.get_run("r1")
    assert stored is not None and stored.origin == "own"


# ── a sweep ──────────────────────────────────────────────────────────────────────────────


def _sweep_runs() -> tuple[SweepRecord, list[RunRecord]]:
    runs = []
    for i, (lr, shift) in enumerate([(None, 0.0), (0.001, -0.05), (0.004, 0.2)]):
        point = {} if lr is None else {"learning_rate": lr}
        rows = [
            SeedRecord(
                number=1,
                setting="gpt-tiny",
                seed=seed,
                status="ok",
                metrics={LOSS.key: 6.5 + shift + (seed - 42) * 0.01},
                elapsed_s=5.0,
            )
            for seed in (42, 43, 44)
        ]
        runs.append(
            _run(
                f"sw-p{i}",
                tests=[],
                final=FinalRecord(test_number=1, status="ok", per_seed=rows),
                metric_specs=[LOSS],
                sweep_id="sw1",
                sweep_point=point,
                regions={"get_lr": GET_LR, "config_overrides": f"CONFIG_OVERRIDES = {point}"},
            )
        )
    # the sweep as `runner sweep` plans it, its points given the runs above
    plan = make_plan(
        RunConfig(task=TASK, agent="method:lr-sweep", profile="tiny", regions={"get_lr": GET_LR}),
        load_task(TASK),
        label="lr-sweep",
        grid=parse_grid(["learning_rate=0.001,0.004"]),
        seeds=[42, 43, 44],
        sandbox=SandboxKind.LOCAL,
        command=f"runner sweep --task {TASK} --grid learning_rate=0.001,0.004",
    )
    points = [p.model_copy(update={"run_id": f"sw-p{p.index}"}) for p in plan.record.points]
    sweep = plan.record.model_copy(update={"sweep_id": "sw1", "points": points})
    return sweep, runs


def test_sweep_record_has_a_row_per_point_and_imports(tmp_path: Path) -> None:
    sweep, runs = _sweep_runs()
    with _store(tmp_path / "a.db", *runs) as store:
        store.record_sweep(sweep)
        outcome = export_record(store, "sw1", tmp_path / "rec")
    assert outcome.kind == "sweep"
    readme = (tmp_path / "rec" / "README.md").read_text(encoding="utf-8")
    assert "| 0 | `default` | 42,43,44 | 6.51 ± 0.0248 | — | — |" in readme
    assert "| 1 | `learning_rate=0.001` | 42,43,44 | 6.46 ± 0.0248 | -0.05 (better) | 0 |" in readme
    assert "| 2 | `learning_rate=0.004` | 42,43,44 | 6.71 ± 0.0248 | +0.2 (worse) | 0 |" in readme
    assert "runner sweep --task llm-pretrain-lr-schedule --grid learning_rate=0.001,0.004" in readme
    data = json.loads((tmp_path / "rec" / "submission.json").read_text())
    jsonschema.validate(data, committed_schema())
    assert data["kind"] == "sweep" and data["command"] == sweep.command
    points = data["sweep"]["table"]
    assert [p["delta"] for p in points] == [None, pytest.approx(-0.05), pytest.approx(0.2)]
    assert [p["better"] for p in points] == [None, True, False]
    assert [r["run_id"] for r in data["runs"]] == ["sw-p0", "sw-p1", "sw-p2"]
    with _store(tmp_path / "b.db") as other:
        result = import_record(other, tmp_path / "rec")
        stored = other.get_sweep("sw1")
        point_run = other.get_run("sw-p1")
        again = import_record(other, tmp_path / "rec")
    assert result.sweep_id == "sw1" and set(result.runs.values()) == {"inserted"}
    assert result.sweep == "inserted" and again.sweep == "unchanged"
    assert set(again.runs.values()) == {"unchanged"}
    assert stored is not None and stored.origin == "imported"
    assert [p.run_id for p in stored.points] == ["sw-p0", "sw-p1", "sw-p2"]
    assert point_run is not None and point_run.sweep_id == "sw1"
    assert point_run.sweep_point == {"learning_rate": 0.001}


def test_a_nan_metric_travels_as_its_spelling(tmp_path: Path) -> None:
    run = _run()
    assert run.final is not None
    rows = list(run.final.per_seed)
    rows[1] = rows[1].model_copy(
        update={"status": "failed", "reason": "loss diverged", "metrics": {LOSS.key: math.nan}}
    )
    run = run.model_copy(update={"final": run.final.model_copy(update={"per_seed": rows})})
    with _store(tmp_path / "a.db", run) as store:
        export_record(store, "r1", tmp_path / "rec")
    data = json.loads((tmp_path / "rec" / "submission.json").read_text())
    assert data["runs"][0]["result"]["per_seed"][1]["metrics"] == {LOSS.key: "NaN"}
    assert "| failed |" in (tmp_path / "rec" / "README.md").read_text(encoding="utf-8")
    _, (back,), _ = read_record(tmp_path / "rec")
    assert math.isnan(back.result_rows()[1].metrics[LOSS.key])


def test_command_passes_only_the_regions_that_changed() -> None:
    from runner import _components as comp
    from sandbox import hash_tree

    codebase = hash_tree(comp.load_task("llm-pretrain-lr-schedule").codebase_dir)
    run = _run(
        codebase_version=codebase,
        regions={"get_lr": GET_LR + "\n", "config_overrides": "CONFIG_OVERRIDES = {}\n"},
    )
    assert changed_regions(run) == ["get_lr"]
    command = reproduce_command(run, changed_regions(run))
    assert "--region get_lr=code/get_lr.py --label const" in command
    assert "config_overrides" not in command
    assert changed_regions(_run()) is None  # another codebase: cannot tell


def test_without_its_run_dir_the_edited_file_is_rebuilt_through_the_edit_path(
    tmp_path: Path,
) -> None:
    from runner import _components as comp
    from sandbox import hash_tree

    task = comp.load_task("llm-pretrain-lr-schedule")
    run = _run(codebase_version=hash_tree(task.codebase_dir), regions={"get_lr": GET_LR})
    with _store(tmp_path / "a.db", run) as store:
        export_record(store, "r1", tmp_path / "rec")
    rebuilt = (tmp_path / "rec" / "code" / "custom_pretrain.py").read_text(encoding="utf-8")
    original = (task.codebase_dir / "custom_pretrain.py").read_text(encoding="utf-8")
    assert GET_LR in rebuilt and GET_LR not in original
    # everything outside the region is the original text
    assert (
        rebuilt.split("# ── EDITABLE REGION END: get_lr ──")[1]
        == original.split("# ── EDITABLE REGION END: get_lr ──")[1]
    )
    assert "rebuilt from the original code" in (tmp_path / "rec" / "README.md").read_text()
    assert rebuilt_sources(_run()) == {}  # another codebase: nothing to rebuild from


def test_a_fifo_in_place_of_a_file_is_refused_without_hanging(
    record_dir: Path, tmp_path: Path
) -> None:
    log = record_dir / "logs" / "gpt-tiny_seed42.log"
    log.unlink()
    os.mkfifo(log)
    _refused(
        record_dir,
        tmp_path,
        r"logs/gpt-tiny_seed42.log \(submission.json files/\d\): not a regular file",
    )
    (record_dir / "submission.json").unlink()
    os.mkfifo(record_dir / "submission.json")
    _refused(record_dir, tmp_path, "submission.json: not a regular file")


def test_a_file_longer_than_listed_is_refused_reading_no_further(
    record_dir: Path, tmp_path: Path
) -> None:
    with open(record_dir / "logs" / "gpt-tiny_seed43.log", "a") as log:
        log.write("x" * 100_000)
    _refused(record_dir, tmp_path, r"logs/gpt-tiny_seed43.log .*: larger than 7 bytes")
