"""The offline evaluation sets and their lm-eval tasks: the schemas of the real datasets, and
task definitions with the built-in tasks' semantics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.codebase import CODEBASE_DIR, EVAL_SETS_DIR, codebase_module

TASKS_DIR = CODEBASE_DIR / "lm_eval_tasks"
DATA_DIR = EVAL_SETS_DIR
BUILTIN = ["arc_easy", "hellaswag", "piqa", "winogrande", "wikitext", "lambada_openai"]
# fields whose meaning must be the built-in task's (the dataset source is what differs)
SEMANTIC_FIELDS = [
    "output_type",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "process_docs",
    "process_results",
    "target_delimiter",
    "fewshot_delimiter",
]


def rows(name: str) -> list[dict[str, Any]]:
    path = DATA_DIR / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", BUILTIN)
def test_offline_sets_have_the_dataset_schema(name: str) -> None:
    data = rows(name)
    lo = 5 if name == "wikitext" else 40  # wikitext: a few whole documents
    assert lo <= len(data) <= 60
    for r in data:
        if name == "arc_easy":
            assert set(r) == {"id", "question", "choices", "answerKey"}
            assert r["answerKey"] in r["choices"]["label"]
            assert len(r["choices"]["text"]) == len(r["choices"]["label"]) >= 3
        elif name == "hellaswag":
            assert {"activity_label", "ctx_a", "ctx_b", "endings", "label"} <= set(r)
            assert len(r["endings"]) == 4 and r["label"] in {"0", "1", "2", "3"}
        elif name == "piqa":
            assert set(r) == {"goal", "sol1", "sol2", "label"} and r["label"] in (0, 1)
        elif name == "winogrande":
            assert set(r) == {"sentence", "option1", "option2", "answer"}
            assert r["sentence"].count("_") == 1 and r["answer"] in ("1", "2")
        elif name == "wikitext":
            assert set(r) == {"page"}
            assert (
                r["page"].startswith(" = ")
                and " = = " in r["page"]
                and " @" in "".join(x["page"] for x in data)
            )
        else:
            assert set(r) == {"text"}
            last = r["text"].split(" ")[-1]
            assert last.isalpha(), r["text"]
    if name == "lambada_openai":
        # the last word is predictable from the passage: mostly it was named there already
        named = [
            r["text"].split(" ")[-1].lower() in r["text"].lower().rsplit(" ", 1)[0] for r in data
        ]
        assert sum(named) >= 0.8 * len(data)
    if name in ("hellaswag", "piqa", "arc_easy"):
        key = {"hellaswag": "label", "piqa": "label", "arc_easy": "answerKey"}[name]
        assert len({r[key] for r in data}) > 1, "the answer must not always be in the same position"


def load_config(path: Path) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return dict(load_yaml(path, resolve_func=True))


def same(a: Any, b: Any) -> bool:
    if callable(a) and callable(b):
        return bool(a.__name__ == b.__name__ and a.__code__.co_code == b.__code__.co_code)
    return bool(a == b)


@pytest.mark.parametrize("name", BUILTIN)
def test_local_task_has_builtin_semantics(name: str) -> None:
    import lm_eval

    builtin_dir = Path(lm_eval.__file__).parent / "tasks"
    builtin_path = {
        "arc_easy": "arc/arc_easy.yaml",
        "hellaswag": "hellaswag/hellaswag.yaml",
        "piqa": "piqa/piqa.yaml",
        "winogrande": "winogrande/default.yaml",
        "wikitext": "wikitext/wikitext.yaml",
        "lambada_openai": "lambada/lambada_openai.yaml",
    }[name]
    builtin = load_config(builtin_dir / builtin_path)
    local = load_config(TASKS_DIR / f"pb_{name}.yaml")
    assert local["task"] == f"pb_{name}"
    for field in SEMANTIC_FIELDS:
        assert same(local.get(field), builtin.get(field)), field
    assert local["metric_list"] == builtin["metric_list"]
    # the evaluated split is the built-in one's (test if it has one, else validation)
    want_split = "test" if builtin.get("test_split") else "validation"
    assert local.get(f"{want_split}_split") == want_split
    assert not local.get("training_split") and not local.get("fewshot_split")


def test_bad_offline_file_is_a_clear_error(tmp_path: Path) -> None:
    codebase_module("pb_config")
    import importlib.util

    spec = importlib.util.spec_from_file_location("pb_tasks_under_test", TASKS_DIR / "pb_tasks.py")
    assert spec is not None and spec.loader is not None
    pb_tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb_tasks)
    (tmp_path / "piqa.jsonl").write_text('{"goal": "g", "sol1": "a"}\n')
    with pytest.raises(
        pb_tasks.EvalDataError, match=r"piqa.jsonl:1: missing field\(s\) \['sol2', 'label'\]"
    ):
        pb_tasks.load_piqa(pb_eval_data_dir=str(tmp_path))
    with pytest.raises(pb_tasks.EvalDataError, match="missing"):
        pb_tasks.load_arc_easy(pb_eval_data_dir=str(tmp_path))
    ds = pb_tasks.load_piqa(pb_eval_data_dir=str(DATA_DIR))
    assert list(ds) == ["validation"] and len(ds["validation"]) == len(rows("piqa"))
