"""Unit tests of the codebase's trusted helpers: tokenizer, shard format, batches, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sandbox import DataPaths
from tests._fixtures.codebase import codebase_module

pb_tokenizer = codebase_module("pb_tokenizer")
pb_data = codebase_module("pb_data")
pb_config = codebase_module("pb_config")


# --- tokenizer ----------------------------------------------------------------------------


def test_tokenizer_from_dir_is_gpt2(pb_tokenizer_dir: Path) -> None:
    enc = pb_tokenizer.get_gpt2_encoding(pb_tokenizer_dir)
    assert enc.encode_ordinary("Hello world, this is GPT-2!") == [
        15496,
        995,
        11,
        428,
        318,
        402,
        11571,
        12,
        17,
        0,
    ]
    assert enc.eot_token == 50256
    assert enc.n_vocab == 50257
    assert (
        enc.decode(enc.encode_ordinary("A sentence, round-tripped."))
        == "A sentence, round-tripped."
    )


def test_tokenizer_env_var_is_used(pb_tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_TOKENIZER_DIR", str(pb_tokenizer_dir))
    assert pb_tokenizer.get_gpt2_encoding().encode_ordinary("Hello") == [15496]


def test_tokenizer_rejects_a_wrong_file(tmp_path: Path) -> None:
    (tmp_path / "gpt2.tiktoken").write_bytes(b"SGVsbG8= 0\n")
    with pytest.raises(pb_tokenizer.TokenizerError, match="sha256"):
        pb_tokenizer.get_gpt2_encoding(tmp_path)


def test_tokenizer_missing_file_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(pb_tokenizer.TokenizerError, match="--fetch"):
        pb_tokenizer.get_gpt2_encoding(tmp_path / "nowhere")


# --- shards -------------------------------------------------------------------------------


def test_shard_round_trip_and_header(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 50256, 65535, 7], dtype=np.int64)
    path = tmp_path / "train_000000.bin"
    pb_data.write_shard(path, tokens)
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [20240520, 1, 5]
    assert path.stat().st_size == 1024 + 2 * 5
    back = pb_data.read_shard(path)
    assert back.dtype == np.uint16
    assert back.tolist() == tokens.tolist()
    assert not list(tmp_path.glob("*.partial"))


def test_shard_rejects_out_of_range_tokens(tmp_path: Path) -> None:
    with pytest.raises(pb_data.DataError, match="uint16"):
        pb_data.write_shard(tmp_path / "x.bin", [1, 65536])
    assert not (tmp_path / "x.bin").exists()


def test_read_shard_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(pb_data.DataError, match="magic"):
        pb_data.read_shard(bad)
    short = tmp_path / "short.bin"
    short.write_bytes(b"\x00" * 10)
    with pytest.raises(pb_data.DataError, match="header"):
        pb_data.read_shard(short)
    truncated = tmp_path / "trunc.bin"
    pb_data.write_shard(truncated, np.arange(100))
    truncated.write_bytes(truncated.read_bytes()[:-2])
    with pytest.raises(pb_data.DataError, match="header says 100 tokens"):
        pb_data.read_shard(truncated)


def _make_data_dir(root: Path, n_train: int = 5000, n_val: int = 700) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pb_data.write_shard(root / "train_000000.bin", np.arange(n_train) % 50000)
    pb_data.write_shard(root / "train_000001.bin", (np.arange(n_train) * 7) % 50000)
    pb_data.write_shard(root / "val_000000.bin", np.arange(n_val) + 100)
    pb_data.write_meta(root, source="unit-test")
    return root


def test_val_windows_are_fixed_consecutive_windows(tmp_path: Path) -> None:
    data_dir = _make_data_dir(tmp_path / "d")
    w = pb_data.val_windows(data_dir, block_size=15, n_windows=4)
    assert w.shape == (4, 16) and w.dtype == np.int64
    assert w.reshape(-1).tolist() == list(range(100, 100 + 64))
    with pytest.raises(pb_data.DataError, match="PB_VAL_WINDOWS"):
        pb_data.val_windows(data_dir, block_size=15, n_windows=1000)


def test_train_batches_are_seeded(tmp_path: Path) -> None:
    data_dir = _make_data_dir(tmp_path / "d")

    def draw(seed: int, rank: int = 0) -> list[np.ndarray]:
        batches = pb_data.TrainBatches(data_dir, block_size=8, batch_size=4, seed=seed, rank=rank)
        return [np.concatenate(batches.next(), axis=1) for _ in range(3)]

    a, b, c, r1 = draw(1), draw(1), draw(2), draw(1, rank=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, r1, strict=True))
    x, y = pb_data.TrainBatches(data_dir, 8, 4, seed=0).next()
    assert x.shape == y.shape == (4, 8)
    assert np.array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one token


def test_meta_fingerprint_and_verification(tmp_path: Path) -> None:
    data_dir = _make_data_dir(tmp_path / "d")
    meta = json.loads((data_dir / "meta.json").read_text())
    assert meta["splits"]["train"]["tokens"] == 10000
    fingerprint = pb_data.data_fingerprint(data_dir)
    assert fingerprint == meta["sha256"] and fingerprint.startswith("sha256:")
    assert pb_data.verify_data_dir(data_dir)["sha256"] == fingerprint
    # a changed shard of the same size: the fast fingerprint trusts meta, verification does not
    pb_data.write_shard(data_dir / "val_000000.bin", np.arange(700) + 101)
    with pytest.raises(pb_data.DataError, match="differs"):
        pb_data.verify_data_dir(data_dir)
    (data_dir / "meta.json").unlink()
    assert pb_data.data_fingerprint(data_dir) != fingerprint


# --- profiles -----------------------------------------------------------------------------


def test_full_profile_is_the_benchmark_recipe() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["block_size"]) == (24, 16, 1024, 1024)
    assert (cfg["max_iters"], cfg["batch_size"], cfg["grad_accum"]) == (12030, 96, 6)
    assert cfg["tokens_per_iter"] == 96 * 6 * 1024
    assert (cfg["learning_rate"], cfg["min_lr"]) == (3e-4, 3e-5)
    assert cfg["warmup_iters"] == int(0.04 * 12030) == 481
    assert cfg["lr_decay_iters"] == 12030
    assert (cfg["eval_interval"], cfg["weight_decay"], cfg["grad_clip"]) == (1000, 0.1, 1.0)
    assert (cfg["vocab_size"], cfg["dropout"], cfg["bias"]) == (50304, 0.0, False)
    assert cfg["seed"] == 42 and cfg["val_windows"] == 10240


def test_env_overrides_and_batch_split() -> None:
    env = {"PB_PROFILE": "full", "PB_SEED": "7", "PB_MAX_ITERS": "100", "PB_BATCH_SIZE": "48"}
    cfg = pb_config.resolve_run_config(env)
    assert (cfg["seed"], cfg["max_iters"], cfg["warmup_iters"], cfg["lr_decay_iters"]) == (
        7,
        100,
        4,
        100,
    )
    assert (cfg["batch_size"], cfg["grad_accum"], cfg["tokens_per_iter"]) == (48, 12, 96 * 6 * 1024)
    with pytest.raises(pb_config.ConfigError, match="sequences per iteration"):
        pb_config.resolve_run_config(
            {"PB_PROFILE": "full", "PB_BATCH_SIZE": "96", "PB_GRAD_ACCUM": "1"}
        )
    with pytest.raises(pb_config.ConfigError, match="PB_MAX_ITERS"):
        pb_config.resolve_run_config({"PB_MAX_ITERS": "ten"})
    with pytest.raises(pb_config.ConfigError, match="PB_PROFILE"):
        pb_config.resolve_run_config({"PB_PROFILE": "huge"})
    assert pb_config.resolve_run_config({})["profile"] == "tiny"


def test_compile_defaults() -> None:
    # None lets the training script decide: compiled on CUDA, eager on CPU
    assert pb_config.resolve_run_config({"PB_PROFILE": "full"})["compile"] is None
    # preflight never waits for a compiler
    assert pb_config.resolve_run_config({"PB_PROFILE": "micro"})["compile"] is False
    assert (
        pb_config.resolve_run_config({"PB_PROFILE": "micro", "PB_COMPILE": "1"})["compile"] is True
    )
    assert (
        pb_config.resolve_run_config({"PB_PROFILE": "full", "PB_COMPILE": "0"})["compile"] is False
    )
    with pytest.raises(pb_config.ConfigError, match="PB_COMPILE"):
        pb_config.resolve_run_config({"PB_COMPILE": "yes"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_iters": 10}, "only"),
        ({"batch_size": 1}, "only"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": "3e-4"}, "learning_rate"),
        ({"warmup_iters": 2.5}, "warmup_iters"),
        ({"warmup_iters": True}, "warmup_iters"),
        ({"warmup_iters": 10**9}, "warmup_iters"),
        ({"grad_clip": -1}, "grad_clip"),
        ({"weight_decay": float("inf")}, "weight_decay"),
        ({"learning_rate": 1e-4, "min_lr": 1e-3}, "min_lr"),
    ],
)
def test_bad_config_overrides_are_clear_errors(overrides: dict, message: str) -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    with pytest.raises(pb_config.ConfigError, match=message):
        pb_config.apply_overrides(cfg, overrides)


def test_good_config_overrides_apply() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    out = pb_config.apply_overrides(
        cfg, {"learning_rate": 6e-4, "warmup_iters": 700, "grad_clip": 0}
    )
    assert (out["learning_rate"], out["warmup_iters"], out["grad_clip"]) == (6e-4, 700, 0)
    assert cfg["learning_rate"] == 3e-4  # the input is not modified


# --- the shared fixture -------------------------------------------------------------------


def test_pb_data_paths_fixture_is_usable(pb_data_paths: DataPaths) -> None:
    meta = pb_data.verify_data_dir(pb_data_paths.data_dir)
    assert meta["source"] == "python-stdlib-docstrings"
    assert meta["splits"]["train"]["tokens"] > 100_000
    assert pb_data_paths.tokenizer_dir is not None
    assert (pb_data_paths.tokenizer_dir / "gpt2.tiktoken").is_file()
    assert pb_data_paths.eval_source == "offline"
    # the tiny profile's validation set fits in the corpus
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "tiny"})
    w = pb_data.val_windows(pb_data_paths.data_dir, cfg["block_size"], cfg["val_windows"])
    assert w.max() <= 50256
