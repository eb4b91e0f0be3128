"""Pure parts of the sandbox: overlays, cache keys, progress lines, metrics validation."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sandbox import JobSpec, job_levels, parse_progress
from sandbox._cache import cache_key
from sandbox._results import MetricsError, last_error_line, read_metrics, tail_text
from sandbox._workdir import (
    OverlayError,
    fingerprint_dir,
    hand_back_outputs,
    hash_tree,
    make_copy,
    safe_relative,
)

EVAL = JobSpec(
    label="gpt-tiny",
    script="scripts/eval_tiny.sh",
    needs=["train-tiny"],
    metrics=["val_loss", "wikitext2_ppl"],
    time_limit="0:10:00",
)


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x.py", "a/../../x", "."])
def test_overlay_paths_must_stay_inside(bad: str) -> None:
    with pytest.raises(OverlayError):
        safe_relative(bad)


def test_make_copy_overlays_and_hash_tree_tracks_content(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.py").write_text("a = 1\n")
    (src / "pkg" / "__pycache__").mkdir()
    (src / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    dest = make_copy(src, {"a.py": "a = 2\n", "pkg/new.py": "n = 1\n"}, tmp_path / "copy")
    assert (dest / "a.py").read_text() == "a = 2\n" and (dest / "pkg" / "new.py").is_file()
    assert not (dest / "pkg" / "__pycache__").exists()
    assert (src / "a.py").read_text() == "a = 1\n"
    before = hash_tree(src)
    (src / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"other junk")
    assert hash_tree(src) == before
    (src / "a.py").write_text("a = 3\n")
    assert hash_tree(src) != before


def test_hand_back_outputs_keeps_only_plain_files_and_directories(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub" / "deeper").mkdir(parents=True)
    (out / "data").write_text("x")
    (out / "data").chmod(0o6666)
    (out / "run.sh").write_text("#!/bin/sh\n")
    (out / "run.sh").chmod(0o777)
    (out / "sub" / "deeper" / "kept").write_text("y")
    (out / "link").symlink_to("/etc/passwd")
    (out / "sub" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(out / "pipe")
    (out / "sub").chmod(0o000)
    notes = hand_back_outputs(out, chown=False)
    assert sorted(p.name for p in out.rglob("*")) == ["data", "deeper", "kept", "run.sh", "sub"]
    assert sorted(notes) == [
        "removed a special file from the outputs: pipe",
        "removed a symbolic link from the outputs: dirlink",
        "removed a symbolic link from the outputs: link",
    ]
    assert stat.S_IMODE((out / "data").stat().st_mode) == 0o644  # no set-id, not writable
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o755


def test_fingerprint_dir_changes_with_data(tmp_path: Path) -> None:
    (tmp_path / "train_0.bin").write_bytes(b"1234")
    first = fingerprint_dir(tmp_path)
    assert first == fingerprint_dir(tmp_path)
    (tmp_path / "train_0.bin").write_bytes(b"12345")
    assert fingerprint_dir(tmp_path) != first
    assert fingerprint_dir(None) == "none"


def _key(**over: object) -> str:
    args: dict[str, object] = dict(
        files={"custom_pretrain.py": "x"},
        job=EVAL,
        seed=42,
        profile="tiny",
        codebase_version="sha256:a",
        data_fingerprint="sha256:b",
        env={},
        needs_keys=["k-train"],
    )
    args.update(over)
    return cache_key(**args)  # type: ignore[arg-type]


def test_cache_key_covers_every_input() -> None:
    base = _key()
    assert base == _key()
    variants = [
        _key(files={"custom_pretrain.py": "y"}),
        _key(seed=43),
        _key(profile="full"),
        _key(codebase_version="sha256:c"),
        _key(data_fingerprint="sha256:d"),
        _key(env={"PB_MAX_ITERS": "3"}),
        _key(needs_keys=["k-other"]),
        _key(job=EVAL.model_copy(update={"script": "scripts/other.sh"})),
        _key(job=EVAL.model_copy(update={"env": {"PB_CKPT_JOB": "x"}})),
        _key(job=EVAL.model_copy(update={"code": "edited", "metrics": []})),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    # who may see a result does not change the result
    changed = {"hidden": True, "show_log": True, "description": "words"}
    assert _key(job=EVAL.model_copy(update=changed)) == base


def test_a_job_that_reports_metrics_runs_only_the_original_code() -> None:
    with pytest.raises(ValueError, match="original code"):
        JobSpec(label="gpt-tiny", script="x.sh", code="edited", metrics=["val_loss"], time_limit=60)
    with pytest.raises(ValueError, match="preflight job cannot report"):
        JobSpec(label="p", script="x.sh", stage="preflight", metrics=["val_loss"], time_limit=60)


def test_agent_code_never_reaches_the_evaluation_sets() -> None:
    """A job on agent code is never granted the evaluation sets, nor needs (directly or through
    a trusted job in between) a job that was granted them or reported metrics."""
    for name in ("eval_data", "hf_home"):
        with pytest.raises(ValueError, match="never granted the evaluation sets"):
            JobSpec(label="train", script="x.sh", code="edited", inputs=[name], time_limit=60)
    JobSpec(label="train", script="x.sh", code="edited", inputs=["train_data"], time_limit=60)

    def job(label: str, *needs: str, **fields: object) -> JobSpec:
        return JobSpec.model_validate(
            {"label": label, "script": "x.sh", "needs": list(needs), "time_limit": 60, **fields}
        )

    sets = job("sets", inputs=["eval_data"])
    scored = job("scored", metrics=["val_loss"])
    for source in (sets, scored):
        with pytest.raises(ValueError, match="runs agent code"):
            job_levels([source, job("agent", source.label, code="edited")])
        with pytest.raises(ValueError, match="runs agent code"):
            job_levels([source, job("copy", source.label), job("agent", "copy", code="edited")])
    # the shipped shape: agent code first, the trusted evaluation after it
    assert job_levels([job("train", code="edited"), job("eval", "train", inputs=["eval_data"])])


def test_job_levels_follow_needs() -> None:
    def job(label: str, *needs: str) -> JobSpec:
        return JobSpec(label=label, script="x.sh", needs=list(needs), time_limit=60)

    levels = job_levels([job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c")])
    assert levels == {"a": 0, "b": 1, "c": 1, "d": 2}
    with pytest.raises(ValueError, match="cycle"):
        job_levels([job("a", "b"), job("b", "a")])
    with pytest.raises(ValueError, match="not a job here"):
        job_levels([job("a", "zz")])
    with pytest.raises(ValueError, match="duplicate"):
        job_levels([job("a"), job("a")])


def test_parse_progress_lines() -> None:
    event = parse_progress(
        'PB_PROGRESS {"step": 10, "max_steps": 100, "loss": 3.5, "tokens_per_s": 900}',
        "gpt-tiny",
        42,
        started=0.0,
    )
    assert event is not None and event.step == 10 and event.max_steps == 100 and event.loss == 3.5
    assert event.eta_s is not None and event.eta_s > 0
    assert parse_progress("TRAIN_METRICS: step=1", "gpt-tiny", 42, 0.0) is None
    assert parse_progress("PB_PROGRESS {not json", "gpt-tiny", 42, 0.0) is None
    assert (
        parse_progress('PB_PROGRESS {"step": true, "loss": "x"}', "gpt-tiny", 42, 0.0) is not None
    )


def _metrics(tmp_path: Path, doc: object) -> Path:
    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    return tmp_path


GOOD = {
    "schema_version": 1,
    "kind": "train",
    "profile": "tiny",
    "seed": 42,
    "metrics": {"val_loss": 3.2, "wikitext2_ppl": 800.0},
    "dataset_source": "offline",
}


def test_read_metrics_keeps_only_the_declared_names(tmp_path: Path) -> None:
    extra = {**GOOD, "metrics": {**GOOD["metrics"], "arc_easy": 99.0}}  # type: ignore[dict-item]
    metrics, _, _ = read_metrics(_metrics(tmp_path, extra), EVAL, 42, "tiny")
    assert metrics == {"val_loss": 3.2, "wikitext2_ppl": 800.0}


def test_read_metrics_reads_standard_errors_of_declared_metrics_only(tmp_path: Path) -> None:
    doc = {**GOOD, "stderr": {"wikitext2_ppl": 4.5, "arc_easy": 2.1}}
    _, stderr, _ = read_metrics(_metrics(tmp_path, doc), EVAL, 42, "tiny")
    assert stderr == {"wikitext2_ppl": 4.5}
    for bad in ({"val_loss": -1.0}, {"val_loss": float("nan")}, {"val_loss": "x"}, [1.0]):
        with pytest.raises(MetricsError):
            read_metrics(_metrics(tmp_path, {**GOOD, "stderr": bad}), EVAL, 42, "tiny")


def test_read_metrics_accepts_the_evaluator_format(tmp_path: Path) -> None:
    metrics, stderr, source = read_metrics(_metrics(tmp_path, GOOD), EVAL, 42, "tiny")
    assert stderr == {}
    assert metrics == {"val_loss": 3.2, "wikitext2_ppl": 800.0} and source == "offline"
    fingerprinted = {**GOOD, "data_fingerprint": "sha256:d8f66142a1b2c3d4e5f6"}
    _, _, source = read_metrics(_metrics(tmp_path, fingerprinted), EVAL, 42, "tiny")
    assert source == "offline@d8f66142a1b2"  # another corpus is another identity


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 2},
        {"metrics": {"val_loss": 3.2}},
        {"seed": 43},
        {"profile": "full"},
        {"metrics": {}},
        {"metrics": {"val_loss": "low"}},
        {"metrics": {"val_loss": True}},
    ],
)
def test_read_metrics_rejects_anything_else(tmp_path: Path, change: dict[str, object]) -> None:
    with pytest.raises(MetricsError):
        read_metrics(_metrics(tmp_path, {**GOOD, **change}), EVAL, 42, "tiny")


def test_read_metrics_rejects_nan_and_missing(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps(GOOD).replace("3.2", "NaN"))
    with pytest.raises(MetricsError, match="not finite"):
        read_metrics(tmp_path, EVAL, 42, "tiny")
    with pytest.raises(MetricsError, match=r"no metrics\.json"):
        read_metrics(tmp_path / "nowhere", EVAL, 42, "tiny")


def test_last_error_line() -> None:
    tail = (
        "step 1\nTraceback (most recent call last):\n  File x\nValueError: bad shape\nmore output\n"
    )
    assert last_error_line(tail) == "ValueError: bad shape"
    assert last_error_line("all good\n") is None


def test_tail_text_leaves_out_progress_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    lines = []
    for step in range(1, 61):
        lines.append(f"iter {step}/60: loss {10 - step / 10:.4f}")
        lines.append("PB_PROGRESS " + json.dumps({"step": step, "max_steps": 60}))
    lines.append("Traceback (most recent call last):")
    lines.append("ValueError: boom")
    log.write_text("\n".join(lines) + "\n")
    tail = tail_text(log, lines=10)
    assert "PB_PROGRESS" not in tail
    assert tail.splitlines()[-1] == "ValueError: boom"
    assert tail.splitlines()[0] == "iter 53/60: loss 4.7000"
    assert len(tail.splitlines()) == 10
