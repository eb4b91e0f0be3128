"""CONFIG_OVERRIDES as data with exact types, the learning-rate table training reads, and the
paths of needed jobs (pb_config.py, trusted code of the codebase)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.codebase import CODEBASE_DIR, codebase_module, splice_regions

pb_config = codebase_module("pb_config")


class RiggedFloat(float):
    """A float whose comparisons always pass: today's isinstance checks let it through."""

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return True


class SneakyInt(int):
    pass


def full() -> dict[str, Any]:
    cfg: dict[str, Any] = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    return cfg


# --- exact types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": RiggedFloat(50.0)}, "learning_rate"),
        ({"min_lr": RiggedFloat("nan")}, "min_lr"),
        ({"warmup_iters": SneakyInt(5)}, "warmup_iters"),
        ({"grad_clip": True}, "grad_clip"),
        ({"weight_decay": False}, "weight_decay"),
        ({"learning_rate": "1e-3"}, "learning_rate"),
        ({"learning_rate": None}, "learning_rate"),
        ({"max_iters": 10}, "only"),
        ({1: 0.1}, "only"),
    ],
)
def test_overrides_refuse_anything_but_exact_numbers(
    overrides: dict[Any, Any], message: str
) -> None:
    with pytest.raises(pb_config.ConfigError, match=message):
        pb_config.apply_overrides(full(), overrides)


def test_overrides_must_be_a_plain_dict() -> None:
    class Rigged(dict[str, Any]):
        def items(self):  # type: ignore[override]
            return iter(())

    with pytest.raises(pb_config.ConfigError, match="must be a dict"):
        pb_config.apply_overrides(full(), Rigged(learning_rate=50.0))
    with pytest.raises(pb_config.ConfigError, match="must be a dict"):
        pb_config.apply_overrides(full(), [("learning_rate", 1e-3)])


def test_overrides_accept_ints_and_floats() -> None:
    out = pb_config.apply_overrides(
        full(), {"learning_rate": 1, "min_lr": 0, "warmup_iters": 100, "grad_clip": 0.5}
    )
    assert (out["learning_rate"], out["min_lr"], out["warmup_iters"], out["grad_clip"]) == (
        1,
        0,
        100,
        0.5,
    )


# --- where the overrides come from: JSON from the harness, else the region as a literal ----


def source_with(region: str) -> str:
    text = (CODEBASE_DIR / "custom_pretrain.py").read_text()
    return splice_regions(text, {"config_overrides": region})


@pytest.mark.parametrize(
    "region",
    [
        'CONFIG_OVERRIDES = {"learning_rate": 1e-3, "warmup_iters": 10}\n',
        'CONFIG_OVERRIDES = {"min_lr": 0, "grad_clip": 2}\n',
        'CONFIG_OVERRIDES = {"weight_decay": True}\n',
        'CONFIG_OVERRIDES = {"learning_rate": float("inf")}\n',
        "CONFIG_OVERRIDES = {}\n",
        'CONFIG_OVERRIDES = {"unknown": 1}\n',
    ],
)
def test_json_and_literal_paths_agree(tmp_path: Path, region: str) -> None:
    source = tmp_path / "custom_pretrain.py"
    source.write_text(source_with(region))
    outcomes = []
    for environ in ({}, None):
        try:
            literal = pb_config.read_overrides({}, source)
            if environ is None:  # what the harness sends: the same value as JSON
                environ = {pb_config.OVERRIDES_ENV: json.dumps(literal)}
            value = pb_config.read_overrides(environ, source)
            cfg = pb_config.apply_overrides(full(), value)
            outcomes.append(("ok", {k: (type(cfg[k]), cfg[k]) for k in value}))
        except pb_config.ConfigError as e:
            outcomes.append(("refused", str(e).split(":")[0]))
    assert outcomes[0] == outcomes[1]


def test_the_literal_region_is_never_executed(tmp_path: Path) -> None:
    source = tmp_path / "custom_pretrain.py"
    for region, message in (
        ("CONFIG_OVERRIDES = {'learning_rate': __import__('os').getpid()}\n", "literal"),
        ("CONFIG_OVERRIDES = dict(learning_rate=1e-3)\n", "literal"),
        ("CONFIG_OVERRIDES = {}\nCONFIG_OVERRIDES['learning_rate'] = 1.0\n", "exactly one"),
        ("CONFIG_OVERRIDES = [('learning_rate', 1e-3)]\n", "must be a dict"),
    ):
        source.write_text(source_with(region))
        with pytest.raises(pb_config.ConfigError, match=message):
            pb_config.read_overrides({}, source)


def test_the_harness_json_wins_over_the_region(tmp_path: Path) -> None:
    source = tmp_path / "custom_pretrain.py"
    source.write_text(source_with('CONFIG_OVERRIDES = {"learning_rate": 0.5}\n'))
    got = pb_config.read_overrides({pb_config.OVERRIDES_ENV: '{"min_lr": 1e-5}'}, source)
    assert got == {"min_lr": 1e-5}
    for bad, message in (("[1, 2]", "must be a dict"), ("{nope", "not valid JSON")):
        with pytest.raises(pb_config.ConfigError, match=message):
            pb_config.read_overrides({pb_config.OVERRIDES_ENV: bad}, source)
    # JSON's NaN and Infinity parse, and are refused as values
    value = pb_config.read_overrides({pb_config.OVERRIDES_ENV: '{"learning_rate": NaN}'}, source)
    with pytest.raises(pb_config.ConfigError, match="learning_rate"):
        pb_config.apply_overrides(full(), value)


# --- the learning-rate table of a schedule job ----------------------------------------------


def tiny(**env: str) -> dict[str, Any]:
    cfg: dict[str, Any] = pb_config.resolve_run_config({"PB_PROFILE": "tiny", **env})
    return cfg


def write_table(path: Path, cfg: dict[str, Any], **changes: Any) -> Path:
    entry = {key: cfg[key] for key in ("max_iters", *pb_config.SCHEDULE_ARGS)}
    entry["lr"] = [
        cfg["learning_rate"] * (1 - it / cfg["max_iters"]) for it in range(cfg["max_iters"])
    ]
    entry.update(changes)
    doc = {"schema_version": 1, "profiles": {cfg["profile"]: entry}}
    path.write_text(json.dumps(doc))
    return path


def test_a_good_table_is_read_as_floats(tmp_path: Path) -> None:
    cfg = tiny(PB_MAX_ITERS="10")
    lrs = pb_config.load_lr_table(write_table(tmp_path / "schedule.json", cfg), cfg)
    assert len(lrs) == 10 and lrs[0] == cfg["learning_rate"]
    assert all(type(x) is float for x in lrs)
    ints = write_table(tmp_path / "ints.json", cfg, lr=[0] * 10)  # ints are numbers too
    assert pb_config.load_lr_table(ints, cfg) == [0.0] * 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": [1e-3] * 9}, "must hold 10 learning rates"),
        ({"lr": [1e-3] * 11}, "must hold 10 learning rates"),
        ({"lr": "1e-3"}, "must hold 10 learning rates"),
        ({"lr": [1e-3] * 9 + [float("nan")]}, "iteration 9 is nan"),
        ({"lr": [1e-3] * 9 + [float("inf")]}, "iteration 9 is inf"),
        ({"lr": [-1e-3] + [1e-3] * 9}, "iteration 0 is -0.001"),
        ({"lr": [True] + [1e-3] * 9}, "iteration 0 is True"),
        ({"lr": [1e-3] * 5 + ["1e-3"] + [1e-3] * 4}, "iteration 5 is '1e-3'"),
        ({"lr": [1e-3] * 5 + [None] + [1e-3] * 4}, "iteration 5 is None"),
        ({"lr": [[1e-3]] * 10}, "iteration 0 is"),
        ({"max_iters": 100}, "max_iters=100"),
        ({"warmup_iters": 3}, "warmup_iters=3"),
        ({"lr_decay_iters": 11}, "lr_decay_iters=11"),
        ({"learning_rate": 1e-3}, "learning_rate=0.001"),
        ({"min_lr": 0}, "min_lr=0"),  # an int where the run has the float 0.0002
        ({"warmup_iters": False}, "warmup_iters=False"),  # False == 0, but not an int
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    cfg = tiny(PB_MAX_ITERS="10")
    assert cfg["warmup_iters"] == 0  # int(0.04 * 10)
    path = write_table(tmp_path / "schedule.json", cfg, **changes)
    with pytest.raises(pb_config.ConfigError, match=re.escape(message)):
        pb_config.load_lr_table(path, cfg)


def test_the_table_must_be_for_this_profile_and_schema(tmp_path: Path) -> None:
    cfg = tiny(PB_MAX_ITERS="10")
    path = write_table(tmp_path / "schedule.json", cfg)
    with pytest.raises(pb_config.ConfigError, match="no entry for the small profile"):
        pb_config.load_lr_table(path, {**cfg, "profile": "small"})
    path.write_text(json.dumps({"schema_version": 2, "profiles": {}}))
    with pytest.raises(pb_config.ConfigError, match="schema_version 1"):
        pb_config.load_lr_table(path, cfg)
    path.write_text("[1, 2")
    with pytest.raises(pb_config.ConfigError, match="not valid JSON"):
        pb_config.load_lr_table(path, cfg)
    with pytest.raises(pb_config.ConfigError, match="missing"):
        pb_config.load_lr_table(tmp_path / "nothing.json", cfg)


def test_the_overrides_must_be_the_ones_the_table_was_computed_with(tmp_path: Path) -> None:
    cfg = tiny(PB_MAX_ITERS="10")
    overridden = pb_config.apply_overrides(cfg, {"learning_rate": 1e-3})
    path = write_table(tmp_path / "schedule.json", cfg)
    with pytest.raises(pb_config.ConfigError, match=r"learning_rate=0\.002"):
        pb_config.load_lr_table(path, overridden)
    path = write_table(tmp_path / "schedule.json", overridden)
    assert pb_config.load_lr_table(path, overridden)[0] == 1e-3


def test_a_too_large_table_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny(PB_MAX_ITERS="10")
    path = write_table(tmp_path / "schedule.json", cfg)
    monkeypatch.setattr(pb_config, "MAX_SCHEDULE_BYTES", path.stat().st_size - 1)
    with pytest.raises(pb_config.ConfigError, match="more than"):
        pb_config.load_lr_table(path, cfg)
    # the real limit: 64 MiB, a sparse file of that size plus one byte is refused by its size
    monkeypatch.undo()
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)
    with pytest.raises(pb_config.ConfigError, match="67108865 bytes"):
        pb_config.load_lr_table(big, cfg)


# --- the outputs of needed jobs -------------------------------------------------------------


def test_needed_job_dirs() -> None:
    env = {"PB_NEEDS_DIR": "/needs", "PB_CKPT_JOB": "train-tiny"}
    assert pb_config.checkpoint_dir(env) == Path("/needs/train-tiny")
    assert pb_config.checkpoint_dir({"PB_CKPT_DIR": "/out"}) == Path("/out")
    assert pb_config.needed_job_dir({}, "PB_LR_SCHEDULE_JOB") is None
    for bad in ("../etc", "a/b", ".hidden", "UPPER", "train-tiny\n"):
        with pytest.raises(pb_config.ConfigError, match="not a job label"):
            pb_config.needed_job_dir(
                {"PB_NEEDS_DIR": "/n", "PB_LR_SCHEDULE_JOB": bad}, "PB_LR_SCHEDULE_JOB"
            )
    with pytest.raises(pb_config.ConfigError, match="PB_NEEDS_DIR"):
        pb_config.needed_job_dir({"PB_LR_SCHEDULE_JOB": "schedule"}, "PB_LR_SCHEDULE_JOB")
    with pytest.raises(pb_config.ConfigError, match="no checkpoint"):
        pb_config.checkpoint_dir({})


def test_real_profiles_are_the_benchmarks() -> None:
    assert pb_config.REAL_PROFILES == ("tiny", "small", "full")
    assert all(p in pb_config.PROFILES for p in pb_config.REAL_PROFILES)
    assert math.isclose(pb_config.PROFILES["full"]["learning_rate"], 3e-4)
