"""
The offline English corpus for the tiny profile, built on a machine without network.

Source: the text of the Python standard library that ships with the interpreter running this
script: the language reference topics of pydoc_data, then the docstrings and comment blocks of
every module, harvested with `ast` (no code is imported or run), in a fixed file order. Each
text is cleaned (indentation removed; doctest examples, option tables and other non-prose
paragraphs dropped) and becomes one document; documents are joined by <|endoftext|>. Every
20th document goes to the validation split, and three more in every 20 are held out of
training altogether: they are the text the offline evaluation sets are generated from
(make_eval_sets.py), written with --heldout to a folder of their own, never beside the shards
that a training job is granted. The same Python version gives the same corpus; meta.json records
the Python version and the sha256 of the text and of every shard.

    python offline_corpus.py --out ~/.cache/pretrainbench/data/offline \
        --heldout ~/.cache/pretrainbench/data/offline-heldout
"""

import argparse
import ast
import hashlib
import inspect
import json
import re
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

from pb_data import write_meta, write_shard
from pb_tokenizer import EOT_TOKEN, GPT2_TIKTOKEN_SHA256, get_gpt2_encoding

# -----------------------------------------------------------------------------
# defaults

SOURCE = "python-stdlib-docstrings"
VAL_EVERY = 20  # document i goes to the validation split when i % VAL_EVERY == 0
HELDOUT = (5, 10, 15)  # ... and is held out of training (evaluation text) when i % VAL_EVERY is one of these
HELDOUT_FILE = "heldout.jsonl"  # one {"id": i, "text": ...} per held-out document
MIN_WORDS = 8  # shorter paragraphs are mostly signatures and labels, not prose
# parts of the standard library that are not documentation: tests, vendored code, encodings tables
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "encodings",
             "__pycache__", "lib2to3", "turtledemo", "ensurepip"}
TOPICS_FILE = "pydoc_data/topics.py"  # the language reference as text, one string per topic
BULLET = re.compile(r"^\s*([-*+]|\d+[.)]|[a-z][.)])\s")
CODE_HINT = re.compile(r"(>>>|\.\.\. |::$|^\s{4,}\S|[{};]\s*$|==|!=|->|\w\(.*\)\s*$)")


# -----------------------------------------------------------------------------
# harvesting


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list:
    """The standard library's .py files in a fixed order (sorted relative POSIX paths)."""
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        files.append(rel)
    return [root / rel for rel in sorted(files, key=lambda r: r.as_posix())]


def docstrings(source: str) -> list:
    """Module, class and function docstrings and comment blocks of one file, in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = comment_blocks(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((getattr(node, "lineno", 0), doc))
    out.sort(key=lambda t: t[0])  # ast.walk is breadth-first; keep reading order
    return [d for _, d in out]


def comment_blocks(source: str) -> list:
    """(line, text) of each run of whole-line comments: programmers' prose about the code."""
    blocks, current, start = [], [], 0
    for lineno, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") and not stripped.startswith("#!"):
            if not current:
                start = lineno
            current.append(stripped.lstrip("#").strip() or "")
        elif current:
            blocks.append((start, "\n".join(current)))
            current = []
    if current:
        blocks.append((start, "\n".join(current)))
    return blocks


def reference_topics(root: Path) -> list:
    """The language reference topics shipped in pydoc_data (a dict of strings), in key order."""
    path = root / TOPICS_FILE
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            topics = ast.literal_eval(node.value)
            return [topics[k] for k in sorted(topics) if isinstance(topics[k], str)]
    return []


def is_prose(paragraph: str) -> bool:
    """A paragraph of running English text, not code, a table or an argument list."""
    lines = paragraph.splitlines()
    if any(CODE_HINT.search(line) for line in lines) or any(BULLET.match(line) for line in lines):
        return False
    words = paragraph.split()
    if len(words) < MIN_WORDS:
        return False
    letters = sum(c.isalpha() or c.isspace() for c in paragraph)
    if letters / len(paragraph) < 0.85:  # mostly letters and spaces
        return False
    return paragraph.rstrip()[-1:] in ".!?:" and paragraph.lstrip()[:1].isupper()


def clean(doc: str) -> str:
    """The prose paragraphs of a docstring, each joined onto one line."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc))
    kept = [" ".join(p.split()) for p in paragraphs if is_prose(p)]
    return "\n\n".join(kept)


def harvest(root=None) -> list:
    """All prose documents of the standard library, in a fixed order, without duplicates."""
    root = Path(root) if root else stdlib_dir()
    seen, docs = set(), []
    raw = list(reference_topics(root))
    for path in stdlib_files(root):
        if path.relative_to(root).as_posix() == TOPICS_FILE:
            continue
        try:
            raw.extend(docstrings(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    for doc in raw:
        text = clean(doc)
        if text and text not in seen:
            seen.add(text)
            docs.append(text)
    return docs


# -----------------------------------------------------------------------------
# building the shards


def split_of(i: int) -> str:
    """Which split document i belongs to: val, heldout (never trained on) or train."""
    if i % VAL_EVERY == 0:
        return "val"
    return "heldout" if i % VAL_EVERY in HELDOUT else "train"


def write_heldout(heldout_dir, docs, text_hash) -> Path:
    """The held-out documents as JSON lines, then a meta.json naming their corpus and sha256."""
    heldout_dir = Path(heldout_dir)
    heldout_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs) if split_of(i) == "heldout")
    tmp = heldout_dir / (HELDOUT_FILE + ".tmp")
    tmp.write_text(lines, encoding="utf-8")
    tmp.replace(heldout_dir / HELDOUT_FILE)
    meta = {"source": SOURCE, "python_version": sys.version.split()[0], "corpus_text_sha256": text_hash,
            "documents": lines.count("\n"), "sha256": hashlib.sha256(lines.encode()).hexdigest()}
    (heldout_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return heldout_dir / HELDOUT_FILE


def build(out_dir, tokenizer_dir=None, root=None, quiet=False, heldout_dir=None) -> dict:
    """Write train_000000.bin, val_000000.bin and meta.json into out_dir (and the held-out
    documents into heldout_dir when given); returns the meta."""
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    enc = get_gpt2_encoding(tokenizer_dir)
    docs = harvest(root)
    if len(docs) < 2 * VAL_EVERY:
        raise RuntimeError(f"found only {len(docs)} documents under {root or stdlib_dir()}")
    text_hash = hashlib.sha256("\x00".join(docs).encode()).hexdigest()
    splits = {"train": [], "val": []}
    for i, ids in enumerate(enc.encode_ordinary_batch(docs, num_threads=2)):
        # <|endoftext|> precedes every document, as in GPT-2's training data
        if split_of(i) != "heldout":
            splits[split_of(i)].append(np.array([EOT_TOKEN, *ids], dtype=np.uint16))
    for stale in [*out_dir.glob("train_*.bin"), *out_dir.glob("val_*.bin")]:
        stale.unlink()  # shards of an earlier build must not mix with these
    for split, parts in splits.items():
        write_shard(out_dir / f"{split}_000000.bin", np.concatenate(parts))
    meta = write_meta(
        out_dir,
        source=SOURCE,
        python_version=sys.version.split()[0],
        documents=len(docs),
        characters=sum(len(d) for d in docs),
        text_sha256=text_hash,
        tokenizer="gpt2",
        tokenizer_sha256=GPT2_TIKTOKEN_SHA256,
        builder="offline_corpus.py",
        heldout_documents=sum(split_of(i) == "heldout" for i in range(len(docs))),
    )
    if heldout_dir is not None:
        write_heldout(heldout_dir, docs, text_hash)
    if not quiet:
        print(f"{len(docs)} documents, {meta['characters'] / 1e6:.2f} M characters, "
              f"train {meta['splits']['train']['tokens']:,} tokens, val {meta['splits']['val']['tokens']:,} tokens "
              f"-> {out_dir} ({time.time() - t0:.1f} s); {meta['sha256']}")
    return meta


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for the shards and meta.json")
    parser.add_argument("--heldout", default=None, metavar="DIR",
                        help="write the held-out documents (the evaluation sets' source) here; never inside --out")
    parser.add_argument("--tokenizer-dir", default=None, help="directory with gpt2.tiktoken (default: PB_TOKENIZER_DIR)")
    parser.add_argument("--print-sample", type=int, default=0, metavar="N", help="print the first N documents and exit")
    args = parser.parse_args()
    if args.print_sample:
        for doc in harvest()[: args.print_sample]:
            print(doc, end="\n\n---\n\n")
        sys.exit(0)
    if args.heldout and Path(args.heldout).resolve().is_relative_to(Path(args.out).resolve()):
        parser.error("--heldout must not be inside --out: a training job is granted --out")
    meta = build(args.out, args.tokenizer_dir, heldout_dir=args.heldout)
    json.dump({k: meta[k] for k in ("source", "sha256", "splits")}, sys.stdout, indent=2)
    print()
