"""TaskSpec loading, its methods, and validate_task_dir on malformed task folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from env._errors import TaskSpecError
from env._spec import list_tasks, load_task, validate_task_dir
from tests._fixtures.env import BASE_TASK


def test_load_by_id_and_profile_methods(make_env_task) -> None:
    make_env_task()
    spec = load_task("mini-lr")
    assert spec.id == "mini-lr"
    labels = ["schedule", "train-tiny", "gpt-tiny", "lm-eval-tiny"]
    assert [j.label for j in spec.jobs("tiny")] == labels
    assert [j.label for j in spec.visible_jobs("tiny")] == labels[:3]
    assert spec.jobs("tiny")[1].time_limit_s == 600
    assert spec.metric_job("piqa", "tiny").label == "lm-eval-tiny"
    assert spec.data_regions["config_overrides"].env == "PB_CONFIG_OVERRIDES"
    assert spec.seeds("tiny").final == [42, 43]
    assert spec.seeds("full").final == [42, 43, 44]  # task default when the profile has none
    assert spec.metric_key("val_loss", "tiny") == "val_loss_gpt-tiny"
    assert spec.metric_key("arc_easy", "full") == "arc_easy_lm-eval-345m"
    assert spec.hidden_metric_patterns("tiny") == ["piqa_*", "*_lm-eval-tiny"]
    assert spec.primary_metric.name == "val_loss"
    assert spec.budgets.max_steps == 20 and spec.budgets.max_tests == 3
    assert spec.agent_path("custom_pretrain.py") == "nanoGPT/custom_pretrain.py"
    assert "{lines[get_lr]}" in spec.description_template
    assert list_tasks() == ["mini-lr"]
    with pytest.raises(TaskSpecError, match=r"no profile 'huge'.*full, tiny"):
        spec.jobs("huge")


def test_unknown_task_lists_known_ones(make_env_task) -> None:
    make_env_task()
    with pytest.raises(TaskSpecError, match=r"unknown task 'nope'.*mini-lr"):
        load_task("nope")


def test_load_refuses_an_invalid_task_with_every_problem(make_env_task) -> None:
    folder = make_env_task({"budgets": {"max_steps": 0}, "colour": "red"})
    with pytest.raises(TaskSpecError) as err:
        load_task(folder)
    text = str(err.value)
    assert "budgets.max_steps" in text and "colour: unknown field" in text


def _profile_with(jobs) -> dict:
    profiles = {k: dict(v) for k, v in BASE_TASK["profiles"].items()}
    profiles["tiny"] = {**profiles["tiny"], "jobs": jobs}
    return profiles


def _tiny_jobs() -> list[dict]:
    return [dict(j) for j in BASE_TASK["profiles"]["tiny"]["jobs"]]


def _changed_job(index: int, **change) -> dict:
    jobs = _tiny_jobs()
    jobs[index].update(change)
    return {"profiles": _profile_with(jobs)}


def _no_lm_eval() -> dict:
    return {"profiles": {"tiny": {"jobs": _tiny_jobs()[:3]}}}


def _two_reporters() -> dict:
    jobs = _tiny_jobs()
    jobs[3]["metrics"] = ["arc_easy", "piqa", "val_loss"]
    return {"profiles": _profile_with(jobs)}


MALFORMED = {
    "time limit minutes": (
        _changed_job(1, time_limit="1:61:00"),
        "profiles.tiny.jobs[1].time_limit",
        "minutes",
    ),
    "unknown field": ({"colour": "red"}, "task.yaml: colour: unknown field", ""),
    "missing field": ({"title": ...}, "task.yaml: title: Field required", ""),
    "needs unknown label": (
        _changed_job(2, needs=["gpt-huge"]),
        "profiles.tiny.jobs",
        "'gpt-huge', which is not a job here",
    ),
    "needs in a cycle": (_changed_job(0, needs=["gpt-tiny"]), "profiles.tiny.jobs", "cycle"),
    "duplicate label": (_changed_job(3, label="gpt-tiny"), "profiles.tiny.jobs", "duplicate"),
    "missing script": (
        _changed_job(0, script="scripts/nope.sh"),
        "profiles.tiny.jobs[0].script",
        "nope.sh",
    ),
    "missing worker script": (
        _changed_job(2, workers={"script": "scripts/worker.sh", "count": 3}),
        "profiles.tiny.jobs[2].workers.script",
        "worker.sh",
    ),
    "agent code reports metrics": (
        _changed_job(2, code="edited"),
        "profiles.tiny.jobs[2]",
        "must run the original code",
    ),
    "metric without a job": (_no_lm_eval(), "metrics[2]", "exactly one job must report"),
    "metric with two jobs": (_two_reporters(), "metrics[0]", "found 2"),
    "job metric unknown": (
        _changed_job(2, metrics=["val_loss", "wikitext2_ppl", "bleu"]),
        "profiles.tiny.jobs[2].metrics",
        "'bleu'",
    ),
    "data region not open": (
        {"data_regions": {"optimizer": {"variable": "OPT", "env": "PB_OPT"}}},
        "data_regions.optimizer",
        "not an open region",
    ),
    "two primaries": (
        {
            "metrics": [
                {"name": "val_loss", "direction": "lower", "primary": True},
                {"name": "wikitext2_ppl", "direction": "lower", "primary": True},
            ]
        },
        "metrics: exactly one metric must be primary",
        "found 2",
    ),
    "no primary": (
        {"metrics": [{"name": "val_loss", "direction": "lower"}]},
        "exactly one metric must be primary",
        "found 0",
    ),
    "missing codebase": ({"codebase": "ghost"}, "codebase: no codebase folder", "ghost"),
    "region not in file": (
        {"editable_files": [{"path": "custom_pretrain.py", "regions": ["get_lr", "optimizer"]}]},
        "editable_files[0].regions[1]: region 'optimizer' has no markers",
        "get_lr",
    ),
    "invariant names absent function": (
        {
            "invariants": [
                {
                    "kind": "signature",
                    "file": "custom_pretrain.py",
                    "function": "get_lr_v2",
                    "params": ["it"],
                }
            ]
        },
        "invariants[0].function",
        "get_lr_v2",
    ),
    "invariant params differ": (
        {
            "invariants": [
                {
                    "kind": "signature",
                    "file": "custom_pretrain.py",
                    "function": "get_lr",
                    "params": ["it"],
                }
            ]
        },
        "invariants[0].params",
        "get_lr(it, warmup_iters",
    ),
    "class invariant method": (
        {
            "invariants": [
                {
                    "kind": "class",
                    "file": "custom_pretrain.py",
                    "name": "Block",
                    "methods": {"backward": ["self"]},
                }
            ]
        },
        "invariants[0].methods.backward",
        "must define Block.backward(self)",
    ),
    "invariant kind unknown": (
        {"invariants": [{"kind": "vibes", "file": "custom_pretrain.py"}]},
        "invariants[0]",
        "",
    ),
    "reference baseline not listed": (
        {"reference_baseline": "linear"},
        "reference_baseline: 'linear' is not in baselines",
        "",
    ),
    "path escapes": (
        {"read_only_files": ["../secrets.py"]},
        "read_only_files[0]",
        "plain relative path",
    ),
    "id differs from folder": ({"id": "other-id"}, "id: 'other-id' differs", ""),
    "bad metric direction": (
        {"metrics": [{"name": "val_loss", "direction": "down", "primary": True}]},
        "metrics[0].direction",
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_reports_precise_problems(case: str, make_env_task, env_tasks_root) -> None:
    changes, expected, detail = MALFORMED[case]
    folder = make_env_task(changes)
    if case == "id differs from folder":
        shutil.move(str(folder), str(env_tasks_root / "mini-lr"))
        folder = env_tasks_root / "mini-lr"
    problems = validate_task_dir(folder)
    joined = "\n".join(problems)
    assert any(expected in p and detail in p for p in problems), joined
    assert all(p.startswith(("tasks/", str(env_tasks_root.parent))) for p in problems), joined


def test_validate_valid_folder_is_clean(make_env_task) -> None:
    assert validate_task_dir(make_env_task()) == []


def test_validate_missing_description_and_bad_template(make_env_task) -> None:
    problems = validate_task_dir(make_env_task(description=None))
    assert any("description: no file" in p and "description.md" in p for p in problems)
    problems = validate_task_dir(make_env_task(description="{lines[block]} {budget}\n"))
    assert any("slot {lines[block]} names no open region" in p for p in problems)
    assert any("unknown slot {budget}" in p for p in problems)
    problems = validate_task_dir(
        make_env_task(description="# T\n\n## Your budget\n\nMany steps.\n")
    )
    assert any("has a budget section; it is generated" in p for p in problems)


def test_validate_missing_and_unlisted_baseline_files(make_env_task, env_tasks_root) -> None:
    folder = make_env_task(baselines=["cosine", "extra"])
    problems = validate_task_dir(folder)
    assert any("baselines[1]: no baseline file" in p and "wsd.py" in p for p in problems)
    assert any("extra.py is not listed in baselines" in p for p in problems)


def test_validate_not_yaml_and_not_mapping(make_env_task) -> None:
    folder = make_env_task(raw_yaml="id: [unclosed\n")
    assert "not valid YAML" in validate_task_dir(folder)[0]
    folder = make_env_task(raw_yaml="- just\n- a list\n")
    assert "must be a mapping" in validate_task_dir(folder)[0]


def test_validate_broken_markers_in_codebase(make_env_task, env_tasks_root: Path) -> None:
    path = env_tasks_root / "codebases" / "mini" / "custom_pretrain.py"
    path.write_text(path.read_text().replace("# ── EDITABLE REGION END: get_lr ──\n", ""))
    problems = validate_task_dir(make_env_task())
    assert any("custom_pretrain.py" in p and "region" in p for p in problems), problems


def test_real_tasks_parse(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRETRAINBENCH_TASKS_DIR", raising=False)
    for task in ("llm-pretrain-lr-schedule", "llm-pretrain-normalization"):
        folder = repo_root / "tasks" / task
        if not (folder / "task.yaml").is_file():
            pytest.skip(f"{folder} not written yet")
        problems = validate_task_dir(folder)
        # Files written by other engineers may still be missing; the schema itself must hold.
        assert not [p for p in problems if "no file" not in p and "no baseline file" not in p], (
            problems
        )
