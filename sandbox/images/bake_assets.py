"""Bake the offline assets into a sandbox image at build time (run inside ``docker build``).

- ``--tokenizer-dir DIR``: write ``DIR/gpt2.tiktoken`` from tiktoken's GPT-2 encoding and check
  the sha256 the codebase's ``pb_tokenizer`` expects.
- ``--datasets``: download the lm-eval datasets of the six evaluation tasks into ``HF_HOME``.

Standard library + tiktoken + lm_eval only: this file runs in the image, not in the harness.
"""

import argparse
import base64
import hashlib
import os
import sys

GPT2_TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
LM_EVAL_TASKS = ["arc_easy", "hellaswag", "piqa", "winogrande", "lambada_openai", "wikitext"]


def bake_tokenizer(directory: str) -> None:
    import tiktoken

    ranks = tiktoken.get_encoding("gpt2")._mergeable_ranks
    blob = b"".join(
        base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != GPT2_TIKTOKEN_SHA256:
        sys.exit(f"gpt2.tiktoken sha256 {digest} != expected {GPT2_TIKTOKEN_SHA256}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "gpt2.tiktoken"), "wb") as fh:
        fh.write(blob)


def bake_datasets() -> None:
    from lm_eval.tasks import TaskManager, get_task_dict

    get_task_dict(LM_EVAL_TASKS, TaskManager())  # downloads and caches every dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokenizer-dir")
    parser.add_argument("--datasets", action="store_true")
    args = parser.parse_args()
    if args.tokenizer_dir:
        bake_tokenizer(args.tokenizer_dir)
    if args.datasets:
        bake_datasets()


if __name__ == "__main__":
    main()
