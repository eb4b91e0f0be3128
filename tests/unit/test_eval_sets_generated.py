"""The offline evaluation sets generated from the corpus's held-out documents
(make_eval_sets.py): big enough, balanced in length and position, deterministic, disjoint from
the training text, readable by the lm-eval tasks, and recognised by `runner setup`."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from runner._setup import eval_sets_ready
from tests._fixtures.codebase import CODEBASE_DIR, codebase_module, heldout_dir_of

MC_SETS = {"arc_easy": 4, "hellaswag": 4, "piqa": 2, "winogrande": 2}


def rows(directory: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / f"{name}.jsonl").read_text().splitlines()]


def choices_and_gold(name: str, row: dict[str, Any]) -> tuple[list[str], int]:
    if name == "arc_easy":
        return row["choices"]["text"], row["choices"]["label"].index(row["answerKey"])
    if name == "hellaswag":
        return row["endings"], int(row["label"])
    if name == "piqa":
        return [row["sol1"], row["sol2"]], row["label"]
    return [row["option1"], row["option2"]], int(row["answer"]) - 1


def pick(lengths: list[int], longest: bool) -> int:
    """The index a length rule picks; ties go to the first such choice."""
    best = max(lengths) if longest else min(lengths)
    return lengths.index(best)


@pytest.mark.parametrize("name", sorted(MC_SETS))
def test_neither_length_nor_position_beats_chance(
    pb_generated_eval_dir: Path, gpt2_encoding: Any, name: str
) -> None:
    k = MC_SETS[name]
    data = rows(pb_generated_eval_dir, name)
    n = len(data)
    assert n >= 400  # an accuracy's standard error is then at most 2.5 points
    chance = 1 / k
    se = math.sqrt(chance * (1 - chance) / n)
    positions = [0] * k
    for unit in ("characters", "tokens"):
        for longest in (True, False):
            right = 0
            for row in data:
                choices, gold = choices_and_gold(name, row)
                if unit == "characters":
                    lengths = [len(c) for c in choices]
                else:
                    lengths = [len(gpt2_encoding.encode_ordinary(" " + c)) for c in choices]
                right += pick(lengths, longest) == gold
            rule = f"pick the {'longest' if longest else 'shortest'} in {unit}"
            assert abs(right / n - chance) <= 2 * se, f"{name}: {rule} scores {right}/{n}"
    for row in data:
        choices, gold = choices_and_gold(name, row)
        assert len(set(choices)) == k and len(choices) == k  # distinct choices
        positions[gold] += 1
    assert max(positions) - min(positions) <= 1, positions  # each position equally often


def test_sizes_and_lm_eval_reads_every_row(pb_generated_eval_dir: Path) -> None:
    from lm_eval.tasks import TaskManager

    manifest = json.loads((pb_generated_eval_dir / "manifest.json").read_text())
    counts = {name: info["items"] for name, info in manifest["sets"].items()}
    assert all(counts[name] >= 400 for name in [*MC_SETS, "lambada_openai"]), counts
    assert 20 <= counts["wikitext"] <= 100, counts
    tm = TaskManager(
        include_path=str(CODEBASE_DIR / "lm_eval_tasks"),
        include_defaults=False,
        metadata={"pb_eval_data_dir": str(pb_generated_eval_dir)},
    )
    tasks = tm.load([f"pb_{name}" for name in counts])["tasks"]
    for name, count in counts.items():
        task = tasks[f"pb_{name}"]
        docs = list(task.eval_docs)
        assert len(docs) == count
        if name in MC_SETS:
            raw = rows(pb_generated_eval_dir, name)
            for doc, row in zip(docs, raw, strict=True):
                choices, gold = choices_and_gold(name, row)
                # winogrande (partial scoring): the choices are contexts, doc_to_text the gold
                scored = task.doc_to_text if name == "winogrande" else task.doc_to_target
                assert scored(doc) == gold
                assert len(task.doc_to_choice(doc)) == len(choices)
        if name == "lambada_openai":
            assert all(d["text"].split(" ")[-1].isalpha() for d in docs)
        if name == "winogrande":
            assert all(d["sentence"].count("_") == 1 for d in docs)


def gold_texts(name: str, row: dict[str, Any]) -> list[str]:
    """The texts of an item that come from held-out prose: its context with the right answer in
    place, and the answer alone where it is a phrase (four words or more)."""
    make = codebase_module("make_eval_sets")
    if name == "lambada_openai":
        return [row["text"]]
    if name == "wikitext":
        return [p for p in row["page"].split("\n\n") if len(p.split()) >= 5]
    choices, gold = choices_and_gold(name, row)
    answer = choices[gold]
    if name == "arc_easy":
        question = row["question"].removeprefix(make.ARC_PROMPT)
        return [question.replace(make.BLANK, answer)]
    if name == "winogrande":
        return [row["sentence"].replace("_", answer)]
    phrase = [answer] if len(answer.split()) >= 4 else []
    if name == "piqa":  # two whole sentences
        return [row["goal"] + " " + answer, row["goal"], *phrase]
    return [row["ctx_a"] + " " + answer, *phrase]


def test_no_item_occurs_in_the_training_text(
    pb_generated_eval_dir: Path, pb_offline_data_dir: Path, gpt2_encoding: Any
) -> None:
    pb_data = codebase_module("pb_data")
    train = "".join(
        gpt2_encoding.decode(pb_data.read_shard(p).tolist())
        for p in pb_data.shard_paths(pb_offline_data_dir, "train")
    )
    assert len(train) > 100_000
    found = []
    for name in [*MC_SETS, "lambada_openai", "wikitext"]:
        for row in rows(pb_generated_eval_dir, name):
            found += [(name, t) for t in gold_texts(name, row) if t in train]
    assert not found, found[:5]


def test_generation_is_deterministic_and_follows_its_input(
    pb_offline_data_dir: Path, pb_tokenizer_dir: Path, tmp_path: Path
) -> None:
    make = codebase_module("make_eval_sets")
    heldout = heldout_dir_of(pb_offline_data_dir)
    a = make.generate(heldout, pb_offline_data_dir, tmp_path / "a", pb_tokenizer_dir)
    b = make.generate(heldout, pb_offline_data_dir, tmp_path / "b", pb_tokenizer_dir)
    assert a == b and a["fingerprint"].startswith("sha256:")
    for name in [*make.SETS, "manifest"]:
        suffix = ".json" if name == "manifest" else ".jsonl"
        assert (tmp_path / "a" / (name + suffix)).read_bytes() == (
            tmp_path / "b" / (name + suffix)
        ).read_bytes()
    assert make.verify(tmp_path / "a") == a
    # other held-out text (one document less): other sets, another fingerprint
    other = tmp_path / "heldout"
    other.mkdir()
    lines = (heldout / "heldout.jsonl").read_text().splitlines(keepends=True)
    (other / "heldout.jsonl").write_text("".join(lines[1:]))
    c = make.generate(other, pb_offline_data_dir, tmp_path / "c", pb_tokenizer_dir)
    assert c["fingerprint"] != a["fingerprint"] and c["heldout_sha256"] != a["heldout_sha256"]
    # a changed file no longer matches its manifest
    path = tmp_path / "a" / "piqa.jsonl"
    path.write_text(path.read_text().replace('"label": 0', '"label": 1', 1))
    with pytest.raises(make.EvalSetsError, match=r"piqa\.jsonl"):
        make.verify(tmp_path / "a")


def test_too_little_held_out_text_is_refused(
    pb_offline_data_dir: Path, pb_tokenizer_dir: Path, tmp_path: Path
) -> None:
    make = codebase_module("make_eval_sets")
    small = tmp_path / "heldout"
    small.mkdir()
    lines = (heldout_dir_of(pb_offline_data_dir) / "heldout.jsonl").read_text().splitlines()
    (small / "heldout.jsonl").write_text("\n".join(lines[:100]) + "\n")
    with pytest.raises(make.EvalSetsError, match="too few items"):
        make.generate(small, pb_offline_data_dir, tmp_path / "out", pb_tokenizer_dir)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_runner_setup_recognises_generated_sets(
    pb_generated_eval_dir: Path, pb_offline_data_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "data" / "offline").mkdir(parents=True)
    shutil.copy(pb_offline_data_dir / "meta.json", home / "data" / "offline" / "meta.json")
    shutil.copytree(heldout_dir_of(pb_offline_data_dir), home / "data" / "offline-heldout")
    assert not eval_sets_ready(home)
    evals = home / "data" / "offline-eval"
    shutil.copytree(pb_generated_eval_dir, evals)
    assert eval_sets_ready(home)
    # a set changed after generation
    path = evals / "winogrande.jsonl"
    original = path.read_text()
    path.write_text(re.sub(r'"answer": "1"', '"answer": "2"', original, count=1))
    assert not eval_sets_ready(home)
    path.write_text(original)
    assert eval_sets_ready(home)
    # the corpus was rebuilt from other held-out documents: the sets are stale
    meta_path = home / "data" / "offline-heldout" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    assert not eval_sets_ready(home)
