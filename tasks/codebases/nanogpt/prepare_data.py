"""
Text -> GPT-2 tokens -> uint16 shards (the format of pb_data.py), with a train/val split.

FineWeb sample-10BT from Hugging Face (needs network, or a warm HF cache):
$ python prepare_data.py --out ~/.cache/pretrainbench/data/fineweb10B
Local files instead (JSONL, JSONL.gz or parquet; one document per row, in the "text" field):
$ python prepare_data.py --out data/mine --files a.jsonl b.parquet --val-tokens 100000

Every document is preceded by <|endoftext|>. Documents go to the validation split until it
holds --val-tokens tokens, then to the train split; shards hold --shard-tokens tokens each
(a document may continue in the next shard). Tokenization runs in a pool of processes.
meta.json records the source, the token counts and the sha256 of every shard.
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from pb_data import META_FILE, write_meta, write_shard
from pb_tokenizer import EOT_TOKEN, GPT2_TIKTOKEN_SHA256, get_gpt2_encoding

# -----------------------------------------------------------------------------
# defaults

FINEWEB_REPO = "HuggingFaceFW/fineweb"  # Hugging Face dataset
FINEWEB_NAME = "sample-10BT"  # a 10B-token random sample of FineWeb
SHARD_TOKENS = 100_000_000  # tokens per shard (200 MB of uint16)
VAL_TOKENS = 12_000_000  # covers the full profile's 10240 validation windows of 1025 tokens


class PrepareError(Exception):
    """Bad input (a missing file, a row without text, too little text): a clear message, no shards."""
    # an Exception, not SystemExit: Pool.imap passes Exceptions raised by the input iterator on
    # to the consumer, but a SystemExit would silently kill its feeder thread and hang the pool


# -----------------------------------------------------------------------------
# documents


def iter_jsonl(path, text_field):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PrepareError(f"{path}:{lineno} is not JSON: {e}") from e
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                raise PrepareError(f"{path}:{lineno} has no string field {text_field!r}")
            yield row[text_field]


def iter_parquet(path, text_field):
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise PrepareError(f"{path} has no column {text_field!r} (columns: {pf.schema_arrow.names})")
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if text:
                yield text


def iter_local_files(paths, text_field):
    """Documents of local files, in the order given."""
    for path in map(Path, paths):
        if not path.is_file():
            raise PrepareError(f"{path} does not exist")
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
            yield from iter_jsonl(path, text_field)
        elif name.endswith(".parquet"):
            yield from iter_parquet(path, text_field)
        else:
            raise PrepareError(f"{path}: expected .jsonl, .jsonl.gz or .parquet")


def iter_fineweb(text_field):
    """FineWeb sample-10BT, streamed from Hugging Face (or read from the local HF cache)."""
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise PrepareError("FineWeb needs the `datasets` package (pip install datasets)") from e
    ds = load_dataset(FINEWEB_REPO, name=FINEWEB_NAME, split="train", streaming=True)
    for row in ds:
        yield row[text_field]


# -----------------------------------------------------------------------------
# tokenization (one encoder per worker process)

_enc = None


def _init_worker(tokenizer_dir):
    global _enc
    _enc = get_gpt2_encoding(tokenizer_dir)


def tokenize(text):
    """<|endoftext|> followed by the document's GPT-2 tokens, as uint16."""
    ids = _enc.encode_ordinary(text)
    tokens = np.empty(len(ids) + 1, dtype=np.uint16)
    tokens[0] = EOT_TOKEN
    tokens[1:] = ids
    return tokens


# -----------------------------------------------------------------------------
# shard writing


class ShardWriter:
    """Fills fixed-size buffers and writes them as <split>_NNNNNN.bin."""

    def __init__(self, out_dir, split, shard_tokens):
        self.out_dir, self.split, self.shard_tokens = out_dir, split, shard_tokens
        self.buffer = np.empty(shard_tokens, dtype=np.uint16)
        self.fill, self.index, self.total = 0, 0, 0

    def add(self, tokens):
        while len(tokens):
            take = min(len(tokens), self.shard_tokens - self.fill)
            self.buffer[self.fill:self.fill + take] = tokens[:take]
            self.fill += take
            self.total += take
            tokens = tokens[take:]
            if self.fill == self.shard_tokens:
                self.flush()

    def flush(self):
        if self.fill:
            write_shard(self.out_dir / f"{self.split}_{self.index:06d}.bin", self.buffer[:self.fill])
            self.index += 1
            self.fill = 0


def prepare(docs, out_dir, source, tokenizer_dir=None, val_tokens=VAL_TOKENS, shard_tokens=SHARD_TOKENS,
            max_tokens=None, workers=None, quiet=False):
    """Tokenize docs into out_dir; returns the meta.json contents."""
    out_dir = Path(out_dir)
    get_gpt2_encoding(tokenizer_dir)  # fail here, clearly, rather than in every worker
    # build next to out_dir and swap in at the end: bad input leaves an existing dataset intact
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    writers = {"val": ShardWriter(work, "val", shard_tokens), "train": ShardWriter(work, "train", shard_tokens)}
    n_docs, t0 = 0, time.time()
    bar = None
    if not quiet:
        try:
            from tqdm import tqdm
            bar = tqdm(total=max_tokens, unit="tok", unit_scale=True, desc="tokenizing")
        except ImportError:
            bar = None
    try:
        with Pool(workers, initializer=_init_worker, initargs=(tokenizer_dir,)) as pool:
            for tokens in pool.imap(tokenize, docs, chunksize=16):
                split = "val" if writers["val"].total < val_tokens else "train"
                writers[split].add(tokens)
                n_docs += 1
                if bar is not None:
                    bar.update(len(tokens))
                if max_tokens and writers["val"].total + writers["train"].total >= max_tokens:
                    break
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    for w in writers.values():
        w.flush()
    if writers["train"].total == 0:
        shutil.rmtree(work, ignore_errors=True)
        raise PrepareError(f"all {writers['val'].total} tokens went to the validation split; "
                         f"lower --val-tokens (now {val_tokens}) or give more text")
    meta = write_meta(work, source=source, documents=n_docs, tokenizer="gpt2",
                      tokenizer_sha256=GPT2_TIKTOKEN_SHA256, builder="prepare_data.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("train_*.bin"), *out_dir.glob("val_*.bin"), out_dir / META_FILE]:
        stale.unlink(missing_ok=True)  # never mix shards of two preparations
    for path in sorted(work.iterdir()):
        os.replace(path, out_dir / path.name)
    work.rmdir()
    if not quiet:
        print(f"{n_docs:,} documents -> train {writers['train'].total:,} tokens, val {writers['val'].total:,} "
              f"tokens in {out_dir} ({time.time() - t0:.1f} s); {meta['sha256']}")
    return meta


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory for shards and meta.json")
    parser.add_argument("--files", nargs="+", help="local .jsonl/.jsonl.gz/.parquet files instead of FineWeb")
    parser.add_argument("--text-field", default="text", help="the field/column holding the document text")
    parser.add_argument("--tokenizer-dir", default=None, help="directory with gpt2.tiktoken (default: PB_TOKENIZER_DIR)")
    parser.add_argument("--val-tokens", type=int, default=VAL_TOKENS, help="tokens in the validation split")
    parser.add_argument("--shard-tokens", type=int, default=SHARD_TOKENS, help="tokens per shard")
    parser.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens in all")
    parser.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: cores - 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    if args.files:
        docs, source = iter_local_files(args.files, args.text_field), "local:" + ",".join(Path(f).name for f in args.files)
    else:
        docs, source = iter_fineweb(args.text_field), f"hf:{FINEWEB_REPO}/{FINEWEB_NAME}"
    try:
        prepare(docs, args.out, source, args.tokenizer_dir, args.val_tokens, args.shard_tokens, args.max_tokens,
                args.workers, args.quiet)
    except PrepareError as e:
        sys.exit(f"error: {e}")
