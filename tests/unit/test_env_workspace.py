"""Workspace texts and mechanics: view, replace, insert, create, undo, state, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from env._errors import EditError, IntegrityError
from env._workspace import Workspace

F = "nanoGPT/custom_pretrain.py"
NEW_LR = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return learning_rate\n"


def _err(call, *args) -> str:
    with pytest.raises(EditError) as err:
        call(*args)
    text = str(err.value)
    assert text.startswith("ERROR: ")
    return text


def test_initial_ranges_follow_markers(lr_workspace) -> None:
    text = lr_workspace.text("custom_pretrain.py").split("\n")
    (s1, e1), (s2, e2) = lr_workspace.editable_ranges(F)
    assert text[s1 - 2] == "# ── EDITABLE REGION START: get_lr ──"
    assert text[e1] == "# ── EDITABLE REGION END: get_lr ──"
    assert text[s2 - 1] == "CONFIG_OVERRIDES = {}" and s2 == e2


def test_render_file_header_and_marks(lr_workspace) -> None:
    (s1, e1), (s2, _) = lr_workspace.editable_ranges(F)
    out = lr_workspace.render_file(F)
    # One line is "line N", and frozen lines are numbered "N| " as in every other tool text.
    assert out.startswith(f"{F} [EDITABLE — lines {s1}–{e1}, line {s2} only]\n")
    assert '     1| """Mini pretraining script' in out
    assert f"{s1:>6}  def get_lr(" in out
    ro = lr_workspace.render_file("nanoGPT/train_notes.py")
    assert ro.startswith("nanoGPT/train_notes.py [READ-ONLY]")


def test_replace_ok_text_and_shift(lr_workspace) -> None:
    (s1, e1), (s2, e2) = lr_workspace.editable_ranges(F)
    out = lr_workspace.replace(F, s1, e1, NEW_LR)
    delta = 2 - (e1 - s1 + 1)
    assert out.startswith(
        f"OK: Replaced lines {s1}..{e1} with 2 line(s) in {F}. "
        f"Editable range: {s1}–{s1 + 1}, {s2 + delta}.\n\n"
    )
    total = len(lr_workspace.text(F).split("\n")) - 1
    assert (
        f"[Current file: {F} | editable: {s1}–{s1 + 1}, {s2 + delta} | total: {total} lines]" in out
    )
    assert f"{s1 - 1:>6}| # ── EDITABLE REGION START: get_lr ──" in out
    assert f"{s1:>6}  def get_lr(" in out
    assert lr_workspace.editable_ranges(F) == [(s1, s1 + 1), (s2 + delta, e2 + delta)]


def test_snapshot_elides_long_regions(lr_workspace) -> None:
    (s1, _e1), _ = lr_workspace.editable_ranges(F)
    out = lr_workspace.insert(F, s1, "    # a comment")
    assert f"{'...':>6}  (" in out and "more lines)" in out
    shown = [ln for ln in out.split("\n") if ln[:6].strip().isdigit() and ln[6:8] == "  "]
    assert len(shown) == 3 + 3 + 1  # first 3 + last 3 of get_lr, the one-line config region


def test_insert_after_start_marker_and_inside_and_at_end(lr_workspace) -> None:
    (s1, e1), _ = lr_workspace.editable_ranges(F)
    out = lr_workspace.insert(F, s1 - 1, "# top")
    assert out.startswith(
        f"OK: Inserted 1 line(s) after line {s1 - 1} in {F}. Editable range: {s1}–{e1 + 1}"
    )
    assert lr_workspace.text(F).split("\n")[s1 - 1] == "# top"
    out = lr_workspace.insert(F, e1 + 1, "# bottom\n# bottom 2\n")
    assert f"Inserted 2 line(s) after line {e1 + 1}" in out
    lines = lr_workspace.text(F).split("\n")
    assert lines[e1 + 1 : e1 + 4] == [
        "# bottom",
        "# bottom 2",
        "# ── EDITABLE REGION END: get_lr ──",
    ]


def test_emptied_region_accepts_insert_after_start(code_only_workspace) -> None:
    ws = code_only_workspace
    _, (s2, e2) = ws.editable_ranges(F)
    out = ws.replace(F, s2, e2, "")
    assert f"Replaced lines {s2}..{e2} with 0 line(s)" in out
    assert f"empty, after line {s2 - 1}" in out
    assert ws.editable_ranges(F)[1] == (s2, s2 - 1)
    msg = _err(ws.replace, F, s2, s2, "x = 1")
    assert "region config_overrides is empty: insert after line" in msg
    out = ws.insert(F, s2 - 1, "CONFIG_OVERRIDES = {'learning_rate': 1e-3}")
    assert ws.editable_ranges(F)[1] == (s2, s2)
    assert "OK: Inserted 1 line(s)" in out


@pytest.mark.parametrize(
    "content",
    [
        "",
        "x = 1",
        "CONFIG_OVERRIDES = dict(learning_rate=1e-3)",
        "CONFIG_OVERRIDES = {'learning_rate': 2 * 1e-3}",
        "CONFIG_OVERRIDES = {'learning_rate': LR}",
        "CONFIG_OVERRIDES = {}\nCONFIG_OVERRIDES['learning_rate'] = 1e-3",
        "CONFIG_OVERRIDES = {'learning_rate': float('nan')}",
        "CONFIG_OVERRIDES = {'learning_rate': 1e999}",
        "CONFIG_OVERRIDES = {1: 2}",
        "CONFIG_OVERRIDES = {'a': {1, 2}}",
        "CONFIG_OVERRIDES: dict = {}",
        "CONFIG_OVERRIDES = OTHER = {}",
    ],
)
def test_a_data_region_takes_one_literal_assignment_only(lr_workspace, content: str) -> None:
    _, (s2, e2) = lr_workspace.editable_ranges(F)
    msg = _err(lr_workspace.replace, F, s2, e2, content)
    assert msg.startswith("ERROR: The edit breaks the code policy")
    assert "CONFIG_OVERRIDES" in msg


def test_a_data_region_takes_a_literal_dict(lr_workspace) -> None:
    _, (s2, e2) = lr_workspace.editable_ranges(F)
    content = (
        "CONFIG_OVERRIDES = {\n    'learning_rate': 1e-3,  # faster\n    'warmup_iters': 2,\n}"
    )
    assert lr_workspace.replace(F, s2, e2, content).startswith("OK: Replaced")


def test_range_errors(lr_workspace) -> None:
    (s1, e1), (s2, e2) = lr_workspace.editable_ranges(F)
    total = len(lr_workspace.text(F).split("\n")) - 1
    msg = _err(lr_workspace.replace, F, s1 - 1, e1, "x")
    assert msg.startswith(
        f"ERROR: Lines {s1 - 1}..{e1} exceed the editable range. You may only edit lines "
        f"{s1}–{e1}, {s2}."
    )
    assert s2 == e2
    assert f"[Current file: {F} |" in msg
    msg = _err(lr_workspace.replace, F, s1, s2, "x")  # spans two regions and frozen text
    assert "exceed the editable range" in msg
    for start, end in ((0, 3), (5, 4), (1, total + 1), ("3", 4), (True, 2)):
        msg = _err(lr_workspace.replace, F, start, end, "x")
        assert msg.startswith(f"ERROR: Invalid line range {start}..{end}"), msg
        assert "[Current file:" in msg
    msg = _err(lr_workspace.insert, F, 3, "x")
    assert msg.startswith(
        "ERROR: Cannot insert after line 3 — target is outside the editable range"
    )
    assert f"{s1 - 1}–{e1}" in msg
    msg = _err(lr_workspace.insert, F, e1 + 1, "x")  # the END marker line
    assert "Cannot insert after line" in msg
    assert _err(lr_workspace.insert, F, -1, "x").startswith("ERROR: Invalid line range")
    assert "nothing to insert" in _err(lr_workspace.insert, F, s1, "")


def test_file_name_errors(lr_workspace) -> None:
    msg = _err(lr_workspace.replace, "custom_pretrain.py", 1, 1, "x")
    assert msg.startswith("ERROR: Package 'custom_pretrain.py' is not in allowed packages")
    assert "nanoGPT/custom_pretrain.py" in msg
    assert _err(lr_workspace.view, "nanogpt/custom_pretrain.py").startswith(
        "ERROR: Package 'nanogpt' is not in allowed packages"
    )
    assert _err(lr_workspace.replace, "nanoGPT/train_notes.py", 1, 1, "x").startswith(
        "ERROR: File not editable: nanoGPT/train_notes.py"
    )
    assert _err(lr_workspace.insert, "nanoGPT/pb_config.py", 1, "x").startswith(
        "ERROR: File not editable: nanoGPT/pb_config.py"
    )
    assert _err(lr_workspace.view, "nanoGPT/../etc/passwd").startswith("ERROR: Invalid file name")
    assert _err(lr_workspace.view, "nanoGPT/nope.py").startswith("ERROR: File not found")
    assert _err(lr_workspace.create_file, "nanoGPT/new.py", "x = 1") == (
        "ERROR: allow_create is false; cannot create new files"
    )


def test_view(lr_workspace) -> None:
    (s1, _e1), _ = lr_workspace.editable_ranges(F)
    out = lr_workspace.view(F, s1 - 1, s1 + 1)
    lines = out.split("\n")
    assert lines[0].startswith(f"[File: {F} | lines {s1 - 1}–{s1 + 1} of ")
    assert lines[1] == f"{s1 - 1:>6}| # ── EDITABLE REGION START: get_lr ──"
    assert lines[2].startswith(f"{s1:>6}  def get_lr(")
    whole = lr_workspace.view(F)
    assert whole.count("\n") >= 70
    assert (
        lr_workspace.view(F, 1, 10_000)
        .split("\n")[0]
        .endswith("| editable: " + whole.split("editable: ")[1].split("]")[0] + "]")
    )
    for start, end in ((0, 5), (10, 5), (10_000, None)):
        assert _err(lr_workspace.view, F, start, end).startswith(
            f"ERROR: Invalid line range {start}..{end}"
        )
    assert "read-only" in lr_workspace.view("nanoGPT/train_notes.py").split("\n")[0]


def test_undo_restores_content_and_ranges(lr_workspace) -> None:
    original = lr_workspace.text(F)
    ranges = lr_workspace.editable_ranges(F)
    assert _err(lr_workspace.undo) == "ERROR: Nothing to undo"
    (s1, e1), _ = ranges
    lr_workspace.replace(F, s1, e1, NEW_LR)
    lr_workspace.insert(F, s1, "    # note")
    out = lr_workspace.undo()
    assert out.startswith(f"Undo complete:\nRestored: {F}\n\n[Current file: {F}")
    out = lr_workspace.undo(5)  # more than there is: undoes what exists
    assert out.startswith(f"Undo complete:\nRestored: {F}")
    assert lr_workspace.text(F) == original and lr_workspace.editable_ranges(F) == ranges
    assert (lr_workspace.root / "custom_pretrain.py").read_text() == original
    assert _err(lr_workspace.undo, 0).startswith("ERROR: Invalid n for undo")


def test_rejected_edit_changes_nothing(lr_workspace) -> None:
    state = lr_workspace.state().model_dump_json()
    (s1, e1), _ = lr_workspace.editable_ranges(F)
    _err(lr_workspace.replace, F, s1, e1, "import os\n" + NEW_LR)
    _err(lr_workspace.replace, F, s1, e1, "def get_lr(:\n")
    assert lr_workspace.state().model_dump_json() == state
    assert _err(lr_workspace.undo) == "ERROR: Nothing to undo"


def test_syntax_error_names_the_line(lr_workspace) -> None:
    (s1, e1), _ = lr_workspace.editable_ranges(F)
    msg = _err(lr_workspace.replace, F, s1, e1, NEW_LR + "    return (\n")
    assert "syntax error" in msg and "nothing was changed" in msg


def test_state_round_trip_and_results(lr_workspace, lr_task, tmp_path: Path) -> None:
    (s1, e1), (s2, e2) = lr_workspace.editable_ranges(F)
    lr_workspace.replace(F, s1, e1, NEW_LR)
    lr_workspace.replace(
        F, s2 - (e1 - s1 - 1), e2 - (e1 - s1 - 1), "CONFIG_OVERRIDES = {'min_lr': 0.0}"
    )
    state = lr_workspace.state().model_dump(mode="json")
    again = Workspace.load(lr_task, tmp_path / "again", state)
    assert again.state() == lr_workspace.state()
    assert again.text(F) == lr_workspace.text(F)
    assert (tmp_path / "again" / "custom_pretrain.py").read_text() == lr_workspace.text(F)
    assert again.undo().startswith("Undo complete")
    assert again.region_texts()["config_overrides"] == "CONFIG_OVERRIDES = {}\n"
    regions = lr_workspace.region_texts()
    assert regions == {"get_lr": NEW_LR, "config_overrides": "CONFIG_OVERRIDES = {'min_lr': 0.0}\n"}
    files = lr_workspace.edited_files()
    assert set(files) == {"custom_pretrain.py"} and files[
        "custom_pretrain.py"
    ] == lr_workspace.text(F)
    diff = lr_workspace.diff()
    assert diff.startswith(f"--- a/{F}\n+++ b/{F}\n")
    assert "+    return learning_rate\n" in diff and "-    # 1) linear warmup" in diff


def test_load_rejects_tampered_state(lr_workspace, lr_task, tmp_path: Path) -> None:
    good = lr_workspace.state().model_dump(mode="json")
    bad_marker = json.loads(json.dumps(good))
    bad_marker["files"]["custom_pretrain.py"]["regions"]["config_overrides"] = [
        "# ── EDITABLE REGION END: config_overrides ──",
        "import os",
    ]
    bad_policy = json.loads(json.dumps(good))
    bad_policy["files"]["custom_pretrain.py"]["regions"]["config_overrides"] = ["import os"]
    bad_sha = json.loads(json.dumps(good))
    bad_sha["files"]["custom_pretrain.py"]["original_sha256"] = "0" * 64
    bad_version = {**good, "schema_version": 99}
    bad_shape = {**good, "files": {"custom_pretrain.py": {"regions": 3}}}
    for state in (bad_marker, bad_policy, bad_sha, bad_version, bad_shape):
        with pytest.raises(IntegrityError):
            Workspace.load(lr_task, tmp_path / "x", state)


def test_check_detects_disk_tampering(lr_workspace) -> None:
    lr_workspace.check()
    path = lr_workspace.root / "custom_pretrain.py"
    path.write_text(path.read_text().replace("import math", "import math, os"))
    with pytest.raises(IntegrityError, match="differs from the workspace"):
        lr_workspace.check()


def test_region_grows_to_300_lines_and_back(lr_workspace) -> None:
    (s1, e1), (s2, e2) = lr_workspace.editable_ranges(F)
    body = (
        [NEW_LR.split("\n")[0]]
        + [f"    x{i} = {i}" for i in range(298)]
        + ["    return learning_rate"]
    )
    out = lr_workspace.replace(F, s1, e1, "\n".join(body))
    assert "with 300 line(s)" in out
    grow = 300 - (e1 - s1 + 1)
    assert lr_workspace.editable_ranges(F) == [(s1, s1 + 299), (s2 + grow, e2 + grow)]
    lr_workspace.replace(F, s1 + 1, s1 + 298, "")
    assert lr_workspace.editable_ranges(F)[0] == (s1, s1 + 1)


def test_created_files_when_allowed(make_env_task, tmp_path: Path) -> None:
    from env._spec import load_task

    task = load_task(make_env_task({"allow_create": True}))
    ws = Workspace.create(task, tmp_path / "ws")
    out = ws.create_file(
        "nanoGPT/helpers.py", "import math\n\ndef warm(x):\n    return math.sqrt(x)\n"
    )
    assert out.startswith("Created: nanoGPT/helpers.py")
    assert (tmp_path / "ws" / "helpers.py").is_file()
    assert ws.editable_ranges("nanoGPT/helpers.py") == [(1, 4)]
    assert _err(ws.create_file, "nanoGPT/helpers.py", "x = 1").startswith(
        "ERROR: File already exists"
    )
    assert _err(ws.create_file, "nanoGPT/evil.py", "import os\n").startswith("ERROR: ")
    for shadow in ("torch.py", "math.py", "sitecustomize.py", "pb_data2.py", "sub/dir.py", "x.pth"):
        assert _err(ws.create_file, f"nanoGPT/{shadow}", "X = 1").startswith(
            "ERROR: Invalid file name"
        ), shadow
    ws.insert("nanoGPT/helpers.py", 4, "Y = 2")
    assert "helpers.py" in ws.edited_files() and "/dev/null" in ws.diff()
    again = Workspace.load(task, tmp_path / "ws2", ws.state())
    assert again.text("helpers.py") == ws.text("helpers.py")
    assert (
        ws.undo(2)
        == "Undo complete:\nRestored: nanoGPT/helpers.py\nDeleted (created file): nanoGPT/helpers.py"
    )
    assert not (tmp_path / "ws" / "helpers.py").exists()


@pytest.mark.parametrize("task_id", ["llm-pretrain-lr-schedule", "llm-pretrain-normalization"])
def test_real_codebase(task_id: str, repo_root: Path, tmp_path: Path) -> None:
    """The real task on the real codebase: ranges come from the markers, the original passes."""
    from env._regions import find_regions
    from env._spec import _parse_spec

    real = repo_root / "tasks" / "codebases" / "nanogpt" / "custom_pretrain.py"
    if not real.is_file():
        pytest.skip("tasks/codebases/nanogpt/custom_pretrain.py not written yet")
    spec, problems = _parse_spec(repo_root / "tasks" / task_id)  # the shape, not other files
    assert spec is not None, problems
    ws = Workspace.create(spec, tmp_path / "ws")
    lines = real.read_text(encoding="utf-8").split("\n")
    spans = {s.name: s for s in find_regions(lines)}
    expected = [spans[name].body for name in spec.editable_files[0].regions]
    assert ws.editable_ranges(F) == sorted(expected)
    shown = ", ".join(f"lines {s}–{e}" if e > s else f"line {s}" for s, e in sorted(expected))
    assert ws.render_file(F).startswith(f"{F} [EDITABLE — {shown} only]\n")
    assert ws.text(F) == real.read_text(encoding="utf-8")
    assert ws.diff() == ""


def test_render_with_an_emptied_region_and_bad_content_types(code_only_workspace) -> None:
    ws = code_only_workspace
    _, (s2, e2) = ws.editable_ranges(F)
    ws.replace(F, s2, e2, "")
    assert f"an empty region after line {s2 - 1}" in ws.render_file(F).split("\n")[0]
    (s1, e1), _ = ws.editable_ranges(F)
    assert "Invalid content: a string is required" in _err(ws.replace, F, s1, e1, None)
    assert "Invalid content: a string is required" in _err(ws.insert, F, s1, 3)
    assert _err(ws.replace, None, 1, 1, "x").startswith("ERROR: Invalid file name")


def test_multi_line_undo_of_several_edits(lr_workspace) -> None:
    original = lr_workspace.text(F)
    for i in range(3):
        (s1, _), _ = lr_workspace.editable_ranges(F)
        lr_workspace.insert(F, s1, f"    v{i} = {i}")
    out = lr_workspace.undo(3)
    assert out.startswith(f"Undo complete:\nRestored: {F}\nRestored: {F}\nRestored: {F}\n\n")
    assert lr_workspace.text(F) == original


def test_load_rejects_tampered_history(lr_workspace, lr_task, tmp_path: Path) -> None:
    (s1, _), _ = lr_workspace.editable_ranges(F)
    lr_workspace.insert(F, s1, "    z = 1")
    good = lr_workspace.state().model_dump(mode="json")
    assert Workspace.load(lr_task, tmp_path / "ok", good).undo().startswith("Undo complete")
    forged = json.loads(json.dumps(good))
    forged["history"][0]["before"]["get_lr"] = ["# ── EDITABLE REGION END: get_lr ──"]
    unknown = json.loads(json.dumps(good))
    unknown["history"][0]["file"] = "pb_config.py"
    shape = json.loads(json.dumps(good))
    shape["history"][0] = ["not", "a", "dict"]
    for state in (forged, unknown, shape):
        with pytest.raises(IntegrityError):
            Workspace.load(lr_task, tmp_path / "bad", state)


@pytest.mark.parametrize(
    "line,marker",
    [
        ("# ── EDITABLE REGION END: get_lr ──", True),
        ("# REGION END: get_lr", True),
        ("＃ region start", True),
        ("x = 1  # ── EDITABLE REGION END ──", True),
        ("# region—end", True),
        ("# ── ЕDITАBLE REGIОN END: get_lr ──", True),  # Cyrillic Е, А, О
        ("decay_region_end = 3", False),
        ("    # the region ends here", False),
        ("# a warmup region", False),
    ],
)
def test_marker_look_alikes(line: str, marker: bool) -> None:
    from env._regions import looks_like_marker

    assert looks_like_marker(line) is marker


def test_content_lines_semantics() -> None:
    from env._regions import content_lines

    assert content_lines("") == []
    assert content_lines("\n") == [""]
    assert (
        content_lines("a\nb")
        == content_lines("a\nb\n")
        == content_lines("a\r\nb\r\n")
        == ["a", "b"]
    )
    assert content_lines("\ta") == ["\ta"]  # tabs are fine
    for bad in ("a\rb", "a\u2028b", "a\x00", "a\u202eb", "\ufeffa", "a\x0bb"):
        with pytest.raises(ValueError, match="content line 1"):
            content_lines(bad)


@pytest.mark.parametrize(
    "text,message",
    [
        ("# ── EDITABLE REGION START: a ──\n", "no END marker"),
        ("# ── EDITABLE REGION END: a ──\n", "without its START"),
        (
            "# ── EDITABLE REGION START: a ──\n# ── EDITABLE REGION START: b ──\n",
            "inside region 'a'",
        ),
        (
            "# ── EDITABLE REGION START: a ──\n# ── EDITABLE REGION END: a ──\n" * 2,
            "duplicate region",
        ),
        ("# -- EDITABLE REGION START: a --\n", "malformed region marker"),
    ],
)
def test_find_regions_errors(text: str, message: str) -> None:
    from env._regions import RegionSyntaxError, find_regions

    with pytest.raises(RegionSyntaxError, match=message):
        find_regions(text.split("\n"))


def test_state_written_before_the_state_model_still_loads(lr_task, tmp_path: Path) -> None:
    """The JSON shape of format version 1, spelled out as the old code wrote it: a session
    saved before the workspace had a pydantic state model resumes, and saves the same JSON."""
    import hashlib

    original = (lr_task.codebase_dir / "custom_pretrain.py").read_text(encoding="utf-8")
    ws = Workspace.create(lr_task, tmp_path / "fresh")
    (s1, e1), (s2, _) = ws.editable_ranges(F)
    lines = original.split("\n")
    get_lr, overrides = lines[s1 - 1 : e1], lines[s2 - 1 : s2]
    old = {
        "schema_version": 1,
        "task_id": lr_task.id,
        "files": {
            "custom_pretrain.py": {
                "original_sha256": hashlib.sha256(original.encode()).hexdigest(),
                "regions": {"get_lr": ["# mine", *get_lr], "config_overrides": overrides},
            }
        },
        "created": {},
        "history": [
            {
                "file": "custom_pretrain.py",
                "created": False,
                "before": {"get_lr": get_lr, "config_overrides": overrides},
            }
        ],
    }
    again = Workspace.load(lr_task, tmp_path / "old", json.loads(json.dumps(old)))
    assert again.state().model_dump(mode="json") == old
    assert again.text(F).split("\n")[s1 - 1] == "# mine"
    assert again.undo().startswith(f"Undo complete:\nRestored: {F}")
    assert again.text(F) == original
