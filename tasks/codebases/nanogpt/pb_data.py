"""
Token shards on disk, training batches, and the fixed validation set.

A data directory holds GPT-2 token shards named train_NNNNNN.bin and val_NNNNNN.bin, plus a
meta.json written by prepare_data.py / offline_corpus.py. A shard is a 1024-byte header of
256 little-endian int32 (magic, version, token count, then zeros) followed by the tokens as
little-endian uint16. This is the layout llm.c and modded-nanogpt use, so their FineWeb shards
can be read as they are.

    write_shard(path, tokens)                    -> writes one shard (atomically)
    read_shard(path)                             -> np.ndarray[uint16] (memory-mapped)
    val_windows(data_dir, block_size, n)         -> the fixed validation set, (n, block_size+1)
    TrainBatches(data_dir, block_size, B, seed, rank).next() -> (x, y) int64 arrays (B, T)
    data_fingerprint(data_dir)                   -> "sha256:..." naming the data
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

# -----------------------------------------------------------------------------
# the shard format

SHARD_MAGIC = 20240520  # llm.c / modded-nanogpt token shard magic
SHARD_VERSION = 1  # version 1: uint16 tokens (GPT-2 vocab fits in 16 bits)
HEADER_INTS = 256  # header size in int32s
HEADER_BYTES = HEADER_INTS * 4
META_FILE = "meta.json"
SPLITS = ("train", "val")


class DataError(RuntimeError):
    """A data directory or shard is missing, malformed, or too small for what was asked."""


def write_shard(path, tokens) -> None:
    """Write tokens (ints in [0, 65535]) as one shard; the file appears complete or not at all."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise DataError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() > 65535):
        raise DataError(f"tokens must lie in [0, 65535] to fit uint16, got [{tokens.min()}, {tokens.max()}]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    os.replace(partial, path)


def read_shard(path) -> np.ndarray:
    """The tokens of a shard as a read-only uint16 array (memory-mapped, so big shards are cheap)."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise DataError(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte shard header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != SHARD_MAGIC:
        raise DataError(f"{path}: bad magic {header[0]} (expected {SHARD_MAGIC}); not a token shard")
    if header[1] != SHARD_VERSION:
        raise DataError(f"{path}: unsupported shard version {header[1]} (expected {SHARD_VERSION})")
    count = int(header[2])
    if size != HEADER_BYTES + 2 * count:
        raise DataError(f"{path}: header says {count} tokens but the file holds {(size - HEADER_BYTES) / 2}")
    if count == 0:
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))


def shard_paths(data_dir, split) -> list:
    """The shards of one split ("train" or "val"), in name order."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    paths = sorted(data_dir.glob(f"{split}_*.bin"))
    if not paths:
        raise DataError(f"{data_dir} holds no {split}_*.bin shards (run prepare_data.py or offline_corpus.py)")
    return paths


# -----------------------------------------------------------------------------
# the fixed validation set


def val_windows(data_dir, block_size, n_windows) -> np.ndarray:
    """The first n_windows consecutive, non-overlapping windows of block_size+1 validation tokens.

    Fixed by the data alone (no randomness), so every run and the evaluator see the same set.
    Returns int64 of shape (n_windows, block_size + 1); x = w[:, :-1], y = w[:, 1:].
    """
    if block_size < 1 or n_windows < 1:
        raise DataError(f"block_size and n_windows must be positive, got {block_size}, {n_windows}")
    need = n_windows * (block_size + 1)
    parts, have = [], 0
    for path in shard_paths(data_dir, "val"):
        tokens = read_shard(path)
        take = min(need - have, tokens.size)
        parts.append(np.asarray(tokens[:take], dtype=np.int64))
        have += take
        if have == need:
            break
    if have < need:
        raise DataError(
            f"{data_dir}: the validation split has {have} tokens, fewer than the {need} needed for "
            f"{n_windows} windows of {block_size + 1}; lower PB_VAL_WINDOWS or prepare more data"
        )
    return np.concatenate(parts).reshape(n_windows, block_size + 1)


# -----------------------------------------------------------------------------
# training batches


class TrainBatches:
    """Random (x, y) windows from the train shards, drawn from a numpy Generator seeded by
    (seed, rank): the same seed and world size give the same data order, run after run.

    A window starts at a uniformly random token position over all shards (a shard is chosen with
    probability proportional to its number of possible starts).
    """

    def __init__(self, data_dir, block_size, batch_size, seed, rank=0):
        self.block_size, self.batch_size = int(block_size), int(batch_size)
        self.shards = [read_shard(p) for p in shard_paths(data_dir, "train")]
        starts = np.array([max(0, s.size - self.block_size - 1) for s in self.shards], dtype=np.float64)
        if starts.sum() <= 0:
            raise DataError(f"{data_dir}: no train shard is longer than block_size+1 = {self.block_size + 1} tokens")
        self.weights = starts / starts.sum()
        self.n_starts = starts.astype(np.int64)
        self.rng = np.random.default_rng([int(seed), int(rank)])

    def next(self):
        """The next batch: x, y int64 arrays of shape (batch_size, block_size)."""
        B, T = self.batch_size, self.block_size
        shard_ids = self.rng.choice(len(self.shards), size=B, p=self.weights)
        offsets = self.rng.integers(0, self.n_starts[shard_ids])  # one start per row
        rows = np.stack([np.asarray(self.shards[s][o:o + T + 1], dtype=np.int64) for s, o in zip(shard_ids, offsets, strict=True)])
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])


# -----------------------------------------------------------------------------
# meta.json and the data fingerprint


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _combined_hash(shards: dict) -> str:
    # the data's name: a hash over (shard name, shard sha256) in name order
    h = hashlib.sha256()
    for name in sorted(shards):
        h.update(f"{name}\t{shards[name]['sha256']}\n".encode())
    return "sha256:" + h.hexdigest()


def write_meta(data_dir, **info) -> dict:
    """Hash every shard of data_dir and write meta.json (info + per-shard tokens/sha256)."""
    data_dir = Path(data_dir)
    shards, splits = {}, {}
    for split in SPLITS:
        paths = shard_paths(data_dir, split)
        for p in paths:
            shards[p.name] = {"tokens": int(read_shard(p).size), "sha256": file_sha256(p)}
        splits[split] = {"shards": len(paths), "tokens": sum(shards[p.name]["tokens"] for p in paths)}
    meta = {"format": "pb-token-shards", "shard_version": SHARD_VERSION, **info,
            "splits": splits, "shards": shards, "sha256": _combined_hash(shards)}
    partial = data_dir / (META_FILE + ".partial")
    partial.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(partial, data_dir / META_FILE)
    return meta


def read_meta(data_dir) -> dict:
    """meta.json of a data directory ({} if there is none)."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e


def verify_data_dir(data_dir) -> dict:
    """Re-hash every shard and compare with meta.json; returns the meta or raises DataError."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    if not meta.get("shards"):
        raise DataError(f"{data_dir} has no {META_FILE} with shard hashes")
    present = {p.name for split in SPLITS for p in shard_paths(data_dir, split)}
    if present != set(meta["shards"]):
        raise DataError(f"{data_dir}: shards on disk {sorted(present)} differ from {META_FILE}")
    for name, info in meta["shards"].items():
        digest = file_sha256(data_dir / name)
        if digest != info.get("sha256"):
            raise DataError(f"{data_dir / name}: sha256 {digest} differs from {META_FILE} ({info.get('sha256')})")
    if _combined_hash(meta["shards"]) != meta.get("sha256"):
        raise DataError(f"{data_dir / META_FILE}: the combined sha256 does not match its shard list")
    return meta


def data_fingerprint(data_dir) -> str:
    """"sha256:..." naming the shards of data_dir.

    Taken from meta.json when it lists every shard with a matching size (hashing 20 GB of
    FineWeb on every evaluation would take minutes); otherwise every shard is hashed.
    """
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    paths = [p for split in SPLITS for p in shard_paths(data_dir, split)]
    listed = meta.get("shards") or {}
    if set(listed) == {p.name for p in paths} and all(
        p.stat().st_size == HEADER_BYTES + 2 * int(listed[p.name].get("tokens", -1)) for p in paths
    ):
        return _combined_hash(listed)
    return _combined_hash({p.name: {"sha256": file_sha256(p)} for p in paths})
