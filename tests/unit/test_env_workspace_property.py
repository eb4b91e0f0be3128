"""Property-based tests: random edit/undo sequences never change frozen text, ranges always
match the markers, and the workspace behaves like a plain list of lines (a reference model)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from env._errors import EditError
from env._regions import find_regions
from env._spec import load_task
from env._workspace import Workspace
from tests._fixtures.env import BASE_TASK, DESCRIPTION, write_task_root

F = "nanoGPT/custom_pretrain.py"
OPEN = ("get_lr", "config_overrides")

SIG = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):"
SAFE_TOP = [
    "CONFIG_OVERRIDES = {}",
    "Y = 2",
    "# c",
    "",
    "W = [1, 2]",
    "def helper(t):\n    return t",
]

LINES = st.sampled_from(
    [
        "    x = 1",
        "    return learning_rate",
        "    if it < 3:",
        "        return min_lr",
        "",
        "# a comment",
        "CONFIG_OVERRIDES = {}",
        "Y = 2",
        "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):",
        "# ── EDITABLE REGION END: get_lr ──",
        "# ── EDITABLE REGION START: config_overrides ──",
        "# -- editable region end --",
        "import os",
        "    return eval('1')",
        "x = 1\u2028import os",
        "\u202e# reversed",
        "math.cos = None",
        "get_lr = None",
    ]
) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r\n"),
    max_size=12,
)


@pytest.fixture(scope="module")
def mini_task(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pb-env-prop") / "tasks"
    write_task_root(root)
    folder = root / "mini-lr"
    folder.mkdir()
    data = {**BASE_TASK, "baselines": [], "reference_baseline": None}
    (folder / "task.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    (folder / "description.md").write_text(DESCRIPTION, encoding="utf-8")
    return load_task(folder)


def _split(content: str) -> list[str]:
    """The documented line semantics: one trailing newline is dropped; "" is no lines."""
    if content == "":
        return []
    return (content[:-1] if content.endswith("\n") else content).split("\n")


def _frozen_and_ranges(text: str) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """Independent of the workspace: split the text at the markers of the open regions."""
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    spans = {s.name: s for s in find_regions(lines)}
    frozen, ranges, cursor = [], [], 0
    for span in sorted((spans[n] for n in OPEN), key=lambda s: s.start_marker):
        frozen.append(lines[cursor : span.start_marker])
        ranges.append((span.start_marker + 1, span.end_marker - 1))
        cursor = span.end_marker - 1
    frozen.append(lines[cursor:])
    return frozen, ranges


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_edit_sequences_keep_frozen_text(mini_task, data) -> None:
    with tempfile.TemporaryDirectory(prefix="pb-env-ws-") as tmp:
        _run_sequence(mini_task, data, Path(tmp))


def _run_sequence(mini_task, data, root: Path) -> None:
    ws = Workspace.create(mini_task, root)
    original = ws.text(F)
    frozen0, _ = _frozen_and_ranges(original)
    model: list[str] = original[:-1].split("\n")
    undo_stack: list[list[str]] = []
    accepted = 0
    for _ in range(data.draw(st.integers(1, 8), label="steps")):
        total = len(model)
        ranges = ws.editable_ranges(F)
        near = [n for s, e in ranges for n in (s - 1, s, e, e + 1)]
        pick = st.sampled_from(near) | st.integers(-1, total + 2)
        op = data.draw(
            st.sampled_from(["replace", "insert", "undo", "lr", "lr_insert", "config"]), label="op"
        )
        content = "\n".join(data.draw(st.lists(LINES, max_size=4), label="lines"))
        (lr_start, lr_end), (cfg_start, cfg_end) = ranges
        if op == "lr":  # a valid new get_lr of random length
            size = data.draw(st.integers(0, 30), label="size")
            body = [f"    x{i} = {i}" for i in range(size)] + ["    return learning_rate"]
            op, fixed = "replace", (lr_start, lr_end, "\n".join([SIG, *body]))
        elif op == "lr_insert":  # a valid line right after the def line
            op, fixed = "insert", (lr_start, None, "    y = 1")
        elif op == "config":  # valid module-level lines, replacing or after the START marker
            safe = "\n".join(
                data.draw(st.lists(st.sampled_from(SAFE_TOP), max_size=5), label="cfg")
            )
            if cfg_end >= cfg_start and data.draw(st.booleans(), label="replace cfg"):
                op, fixed = "replace", (cfg_start, cfg_end, safe)
            else:
                op, fixed = "insert", (cfg_start - 1, None, safe or "Z = 3")
        else:
            fixed = None
        before_state = ws.state().model_dump_json()
        try:
            if op == "replace":
                if fixed:
                    start, end, content = fixed  # type: ignore[misc]
                else:
                    start = data.draw(pick, label="start")
                    end = data.draw(
                        st.sampled_from([start, start + 1, start + 3]) | pick, label="end"
                    )
                out = ws.replace(F, start, end, content)
                expected_new = _split(content)
                undo_stack.append(list(model))
                model[start - 1 : end] = expected_new
            elif op == "insert":
                if fixed:
                    after, _, content = fixed  # type: ignore[misc]
                else:
                    after = data.draw(pick, label="after")
                out = ws.insert(F, after, content)
                undo_stack.append(list(model))
                model[after:after] = _split(content)
            else:
                n = data.draw(st.integers(1, 3), label="n")
                out = ws.undo(n)
                for _ in range(min(n, len(undo_stack))):
                    model = undo_stack.pop()
            assert out.startswith(("OK: ", "Undo complete:"))
            accepted += op != "undo"
        except EditError as e:
            assert str(e).startswith("ERROR: ")
            assert ws.state().model_dump_json() == before_state  # a refused call changes nothing
        text = ws.text(F)
        assert text == "\n".join(model) + "\n"  # the workspace behaves like a list of lines
        frozen, marker_ranges = _frozen_and_ranges(text)
        assert frozen == frozen0  # frozen text never changes
        assert ws.editable_ranges(F) == marker_ranges  # ranges always match the markers
        assert (root / "custom_pretrain.py").read_text(encoding="utf-8") == text
    event(f"accepted edits: {min(accepted, 3)}")
    ws.check()
    again = Workspace.load(mini_task, root / "again", ws.state().model_dump(mode="json"))
    assert again.text(F) == ws.text(F) and again.state() == ws.state()
