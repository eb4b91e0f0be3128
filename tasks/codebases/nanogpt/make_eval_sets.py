"""
The offline evaluation sets, generated from the held-out documents of the offline corpus.

offline_corpus.py holds 3 in 20 documents out of training (heldout.jsonl). This script turns
their prose into the six sets the offline lm-eval tasks read (lm_eval_tasks/pb_*.yaml), in the
exact row format of each Hugging Face dataset, so the evaluator scores them unchanged:

- hellaswag: the sentence before and the first two thirds of a sentence (all in ctx_a); the
  true last third against three last thirds of other held-out sentences
- piqa: a sentence (goal); the sentence that follows it against another item's
- arc_easy: a sentence with its longest word blanked, as a question; that word against three
  words blanked in other items
- winogrande: a sentence with a content word blanked; that word or another item's fills the
  blank, and the rest of the sentence is what is scored
- lambada_openai: a passage of consecutive sentences; its last word
- wikitext: whole held-out documents (perplexity)

Why the multiple-choice sets measure language modelling and nothing else: the items of a set
are put in groups of 2 or 4 whose answers have about the same length in characters (sorted by
length, then cut), and each item's wrong choices are the other items' right answers. Every
answer is the right one exactly once in its group, so any rule that ignores the context (pick
the longest, the shortest, the most likely text on its own) is right once per group: chance.
The right answer's position is spread evenly over the positions.

No item contains a sentence that also occurs in the training split: the training shard is
decoded and every held-out sentence found in it (the standard library repeats boilerplate
docstrings) is dropped before items are made. Same input gives byte-identical output (a fixed
seed, sorted orders, no time); manifest.json names the generator version, the inputs' sha256,
each set's count and sha256 and one fingerprint over all of it.

    python make_eval_sets.py --heldout ~/.cache/pretrainbench/data/offline-heldout \
        --train ~/.cache/pretrainbench/data/offline --out ~/.cache/pretrainbench/data/offline-eval
"""

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path

from pb_data import read_meta, read_shard, shard_paths
from pb_tokenizer import get_gpt2_encoding

# -----------------------------------------------------------------------------
# defaults

GENERATOR_VERSION = 1  # bump whenever the output for the same input changes
SEED = 1729  # the one seed of every random choice
HELDOUT_FILE = "heldout.jsonl"  # what offline_corpus.py --heldout writes
MANIFEST = "manifest.json"
# items per multiple-choice set (a multiple of 4 and of 2): lm-eval's standard error of an
# accuracy, sqrt(p (1 - p) / (n - 1)), is then at most 2.5 points even at p = 50 %; more items
# would cost time in every tiny-profile evaluation (lm-eval-tiny: 44 CPU s on these sets)
MC_ITEMS = 404
MIN_ITEMS = 402  # fewer and an accuracy's standard error can exceed 2.5 points: refuse
LAMBADA_ITEMS = 404  # passages
WIKITEXT_DOCS = 50  # documents (WikiText-2's test split has 62)
WIKITEXT_WORDS = (80, 800)  # shorter say little about long-range modelling; longer cost the most
SENTENCE_WORDS = (5, 60)  # shorter sentences are labels; longer ones are run-ons of the cleaner
LAMBADA_WORDS = (20, 90)  # a passage: enough context for its last word, not a whole page
PHRASE_WORDS = 4  # an answer this long that occurs in the training text is dropped
# the most tokens a scored continuation may have: half the tiny profile's 64-token context, so
# that the model sees at least as much context as it scores (the adapter refuses more than 64)
MAX_SCORED_TOKENS = 32
BLANK = "___"  # the blank of an arc_easy question
ARC_PROMPT = "Which word fills the blank in this sentence? "
# characters that a task's own processing would change (hellaswag drops [...], winogrande splits
# at "_") or that mark code rather than prose
NOT_PROSE = re.compile(r"[_\[\]{}<>|\\`@#$%^~=*]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")  # a split point between two sentences
WORD = re.compile(r"[A-Za-z]+")
# frequent function words: a blank on one of them tests grammar more than the passage
STOPWORDS = frozenset("""a an and are as at be been being but by can could did do does for from had
has have how if in into is it its may might must no not of on or should so such than that the
their them then there these they this those to was were what when where which while who whom
whose why will with would you your also other some any each more most only same very""".split())

# the sets, their files and their sizes (at most, for the multiple-choice ones)
SETS = ("arc_easy", "hellaswag", "piqa", "winogrande", "lambada_openai", "wikitext")


class EvalSetsError(RuntimeError):
    """The inputs are missing, or too small to give every set its minimum size."""


# -----------------------------------------------------------------------------
# the held-out prose, sentence by sentence


def read_heldout(heldout_dir):
    """The held-out documents [(id, text)] in id order, and the sha256 of heldout.jsonl."""
    path = Path(heldout_dir) / HELDOUT_FILE
    if not path.is_file():
        raise EvalSetsError(f"{path} is missing: run offline_corpus.py --heldout {heldout_dir}")
    raw = path.read_bytes()
    docs = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            docs.append((int(row["id"]), str(row["text"])))
        except (ValueError, KeyError, TypeError) as e:
            raise EvalSetsError(f"{path}:{n}: not a held-out document: {e}") from e
    docs.sort(key=lambda d: d[0])
    return docs, hashlib.sha256(raw).hexdigest()


def read_train_text(train_dir, enc):
    """The training split as text (its shards decoded), and the sha256 naming those shards."""
    paths = shard_paths(train_dir, "train")
    text = "".join(enc.decode(read_shard(p).tolist()) for p in paths)
    sha = read_meta(train_dir).get("sha256") or hashlib.sha256(text.encode()).hexdigest()
    return text, sha


def split_sentences(docs, train_text):
    """Per document, its paragraphs' sentences in order, "" after each paragraph; a sentence that
    is not usable (not prose, too short or long, seen before, or in the training text) becomes
    None, so that neighbours stay neighbours only where they were in the text."""
    seen = set()
    out = []
    for _, text in docs:
        sentences = []
        for paragraph in text.split("\n\n"):
            for s in SENTENCE_END.split(" ".join(paragraph.split())):
                n_words = len(s.split())
                usable = (SENTENCE_WORDS[0] <= n_words <= SENTENCE_WORDS[1] and not NOT_PROSE.search(s)
                          and s[-1:] in ".!?:" and s not in seen and s not in train_text)
                seen.add(s)
                sentences.append(s if usable else None)
            sentences.append("")  # a paragraph break: only piqa's two sentences may span one
        out.append(sentences)
    return out


def content_word(word):
    """A word worth blanking: letters only, four or more, not a function word."""
    return len(word) >= 4 and word.isalpha() and word.lower() not in STOPWORDS


# -----------------------------------------------------------------------------
# candidate items: (answer, fields of the row except the choices)


def hellaswag_candidates(doc_sentences):
    for sentences in doc_sentences:
        for i, s in enumerate(sentences):
            words = s.split() if s else []
            if len(words) < 8:
                continue
            cut = len(words) - max(3, len(words) // 3)  # the last third (three words or more) is scored
            before = sentences[i - 1] if i > 0 and sentences[i - 1] else ""
            # all of the context in ctx_a: lm-eval capitalises ctx_b, lowercasing names like CPython
            yield " ".join(words[cut:]), {"ctx_a": (before + " " + " ".join(words[:cut])).strip()}


def piqa_candidates(doc_sentences):
    for sentences in doc_sentences:
        # consecutive sentences, across a paragraph break too ("" marks one; None a gap)
        joined = [s for s in sentences if s != ""]
        for first, second in zip(joined, joined[1:]):
            if first and second:
                yield second, {"goal": first}


def arc_candidates(doc_sentences):
    for sentences in doc_sentences:
        for s in filter(None, sentences):
            words = s.split()
            best = max(range(len(words)), key=lambda k: (len(words[k].strip(".,;:!?\"'()")), -k))
            word = words[best].strip(".,;:!?\"'()")
            if not content_word(word) or words.count(words[best]) > 1:
                continue
            blanked = " ".join(words[:best] + [words[best].replace(word, BLANK, 1)] + words[best + 1:])
            yield word, {"question": ARC_PROMPT + blanked}


def winogrande_candidates(doc_sentences, n_tokens):
    for sentences in doc_sentences:
        for s in filter(None, sentences):
            words = s.split()
            # the last content word with at least three words after it: the scored continuation
            for k in range(len(words) - 4, 0, -1):
                if content_word(words[k]) and n_tokens(" ".join(words[k + 1:])) <= MAX_SCORED_TOKENS:
                    sentence = " ".join(words[:k] + ["_"] + words[k + 1:])
                    yield words[k], {"sentence": sentence}
                    break


def lambada_passages(doc_sentences):
    """Passages of consecutive sentences (none shared), each ending on a word of letters."""
    for sentences in doc_sentences:
        run = []
        for s in sentences:
            if not s:  # a gap or a paragraph break
                run = []
                continue
            run.append(s)
            words = " ".join(run).split()
            while len(words) > LAMBADA_WORDS[1] and len(run) > 1:
                run.pop(0)
                words = " ".join(run).split()
            last = words[-1].rstrip(".!?:")
            if len(words) >= LAMBADA_WORDS[0] and len(words) <= LAMBADA_WORDS[1] and WORD.fullmatch(last):
                yield " ".join(words[:-1] + [last])
                run = []


# -----------------------------------------------------------------------------
# groups of length-matched answers


def grouped_items(candidates, k, limit, rng, train_text, n_tokens):
    """Rows of a k-choice set: [(fields, choices, gold index)].

    An answer longer than MAX_SCORED_TOKENS is dropped, and so is one of PHRASE_WORDS or more
    words that occurs in the training text (half a sentence can be a phrase of another one).
    Answers are distinct (the first item of each
    answer is kept); shuffled, then sorted by
    length in characters (a stable sort, so equal lengths stay shuffled) and cut into groups of
    k neighbours; each item's choices are its group's answers. The gold positions are a shuffled
    list with each position equally often.
    """
    by_answer = {}
    for answer, fields in candidates:
        if n_tokens(answer) > MAX_SCORED_TOKENS:
            continue
        if len(answer.split()) < PHRASE_WORDS or answer not in train_text:
            by_answer.setdefault(answer, fields)
    answers = list(by_answer)
    rng.shuffle(answers)
    answers.sort(key=len)
    groups = [answers[i:i + k] for i in range(0, len(answers) - k + 1, k)]
    rng.shuffle(groups)
    groups = groups[: limit // k]
    positions = [i % k for i in range(len(groups) * k)]
    rng.shuffle(positions)
    rows = []
    for group in groups:
        for answer in group:
            others = [a for a in group if a != answer]
            rng.shuffle(others)
            gold = positions[len(rows)]
            rows.append((by_answer[answer], others[:gold] + [answer] + others[gold:], gold))
    return rows


def build_sets(doc_sentences, docs, train_text, enc):
    """{set name: [row dict]} in the Hugging Face datasets' schemas (pb_tasks.DATASETS)."""
    rng = random.Random(SEED)

    def n_tokens(text):  # as the adapter scores a continuation: after lm-eval's " " delimiter
        return len(enc.encode_ordinary(" " + text))

    sets = {}
    sets["arc_easy"] = [
        {"id": f"PB-ARCE-{n:04d}", "question": f["question"],
         "choices": {"text": choices, "label": list("ABCD")}, "answerKey": "ABCD"[gold]}
        for n, (f, choices, gold) in enumerate(grouped_items(arc_candidates(doc_sentences), 4, MC_ITEMS, rng, train_text, n_tokens))
    ]
    sets["hellaswag"] = [
        {"ind": n, "activity_label": "Python documentation", "ctx_a": f["ctx_a"], "ctx_b": "",
         "ctx": f["ctx_a"], "endings": choices, "source_id": f"pb-heldout-{n:04d}",
         "split": "val", "split_type": "indomain", "label": str(gold)}
        for n, (f, choices, gold) in enumerate(grouped_items(hellaswag_candidates(doc_sentences), 4, MC_ITEMS, rng, train_text, n_tokens))
    ]
    sets["piqa"] = [
        {"goal": f["goal"], "sol1": choices[0], "sol2": choices[1], "label": gold}
        for f, choices, gold in grouped_items(piqa_candidates(doc_sentences), 2, MC_ITEMS, rng, train_text, n_tokens)
    ]
    sets["winogrande"] = [
        {"sentence": f["sentence"], "option1": choices[0], "option2": choices[1], "answer": str(gold + 1)}
        for f, choices, gold in grouped_items(winogrande_candidates(doc_sentences, n_tokens), 2, MC_ITEMS, rng, train_text, n_tokens)
    ]
    passages = sorted(set(lambada_passages(doc_sentences)))
    rng.shuffle(passages)
    sets["lambada_openai"] = [{"text": p} for p in passages[:LAMBADA_ITEMS]]
    pages = []
    for _, text in docs:
        # whole documents none of whose sentences occurs in the training text
        pieces = [s for p in text.split("\n\n") for s in SENTENCE_END.split(" ".join(p.split()))]
        n_words = len(text.split())
        if WIKITEXT_WORDS[0] <= n_words <= WIKITEXT_WORDS[1] and not any(s in train_text for s in pieces):
            pages.append(text)
    sets["wikitext"] = [{"page": p} for p in pages[:WIKITEXT_DOCS]]
    return sets


# -----------------------------------------------------------------------------
# writing and checking


def jsonl(rows):
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")


def fingerprint(manifest):
    """"sha256:..." over the generator version, the inputs and every set's sha256."""
    core = {k: manifest[k] for k in ("generator_version", "heldout_sha256", "train_sha256")}
    core["sets"] = {name: manifest["sets"][name]["sha256"] for name in sorted(manifest["sets"])}
    return "sha256:" + hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def generate(heldout_dir, train_dir, out_dir, tokenizer_dir=None, min_items=MIN_ITEMS):
    """Write the six sets and manifest.json into out_dir; returns the manifest."""
    docs, heldout_sha = read_heldout(heldout_dir)
    enc = get_gpt2_encoding(tokenizer_dir)
    train_text, train_sha = read_train_text(train_dir, enc)
    sentences = split_sentences(docs, train_text)
    sets = build_sets(sentences, docs, train_text, enc)
    short = {n: len(rows) for n, rows in sets.items() if n != "wikitext" and len(rows) < min_items}
    if short or not sets["wikitext"]:
        raise EvalSetsError(f"the held-out text gives too few items (at least {min_items} each): "
                            f"{short or {'wikitext': 0}}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # no manifest while the sets are half written
    manifest = {"format": "pb-offline-eval", "generator": "make_eval_sets.py",
                "generator_version": GENERATOR_VERSION, "seed": SEED, "heldout_sha256": heldout_sha,
                "train_sha256": train_sha, "length_matched_by": "characters", "sets": {}}
    for name in SETS:
        data = jsonl(sets[name])
        tmp = out_dir / f"{name}.jsonl.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / f"{name}.jsonl")
        manifest["sets"][name] = {"file": f"{name}.jsonl", "items": len(sets[name]),
                                  "sha256": hashlib.sha256(data).hexdigest()}
    manifest["fingerprint"] = fingerprint(manifest)
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / MANIFEST)  # last: its presence means complete sets
    return manifest


def verify(out_dir):
    """The manifest of a generated directory, after checking every set against it."""
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EvalSetsError(f"{out_dir / MANIFEST}: {e}") from e
    if sorted(manifest.get("sets", {})) != sorted(SETS):
        raise EvalSetsError(f"{out_dir / MANIFEST}: the sets are not {', '.join(SETS)}")
    for info in manifest["sets"].values():
        path = out_dir / info["file"]
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != info["sha256"] or data.count(b"\n") != info["items"]:
            raise EvalSetsError(f"{path} is not the file the manifest names (sha256, items)")
    if fingerprint(manifest) != manifest.get("fingerprint"):
        raise EvalSetsError(f"{out_dir / MANIFEST}: the fingerprint does not match its content")
    return manifest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", required=True, help="the folder of heldout.jsonl (offline_corpus.py --heldout)")
    parser.add_argument("--train", required=True, help="the offline corpus's shard folder: its train split is excluded")
    parser.add_argument("--out", required=True, help="where to write the sets and manifest.json")
    parser.add_argument("--tokenizer-dir", default=None, help="directory with gpt2.tiktoken (default: PB_TOKENIZER_DIR)")
    args = parser.parse_args()
    if Path(args.out).resolve().is_relative_to(Path(args.train).resolve()):
        parser.error("--out must not be inside --train: a training job is granted --train")
    t0 = time.time()
    try:
        result = generate(args.heldout, args.train, args.out, args.tokenizer_dir)
    except EvalSetsError as e:
        sys.exit(f"error: {e}")
    counts = ", ".join(f"{n} {info['items']}" for n, info in result["sets"].items())
    print(f"{counts} -> {args.out} ({time.time() - t0:.1f} s); {result['fingerprint']}")
