"""
Download the datasets of lm-eval's built-in tasks once, into a Hugging Face cache (HF_HOME), so
that the evaluator can later run them with PB_EVAL_SOURCE=hf and no network at all.

    python prepare_eval.py --hf-home ~/.cache/pretrainbench/hf           # online, once
    python prepare_eval.py --hf-home ~/.cache/pretrainbench/hf --check   # offline: is it all there?
    python prepare_eval.py --check-offline ../../eval_sets/offline       # the offline sets

Tasks: wikitext (EleutherAI/wikitext_document_level, wikitext-2-raw-v1), lambada_openai,
arc_easy (allenai/ai2_arc), hellaswag (Rowan/hellaswag), piqa (baber/piqa), winogrande
(allenai/winogrande, winogrande_xl). lm-eval itself decides which dataset, configuration and split
each task reads: building the task through lm-eval's TaskManager is what downloads it, so the
cache holds exactly what the evaluator will ask for. A manifest (pretrainbench_eval.json) records
each task's version and document count. The GPU image runs this at build time.

Without network (this repository's CI) only --check can run, and it fails with a clear message.

This is the PB_EVAL_SOURCE=hf side. The offline sets (PB_EVAL_SOURCE=offline) need no
preparation: they are files of the repository, tasks/eval_sets/offline/, outside this codebase
(a training job gets the codebase and must not get the answers). An evaluation job is granted
them read-only as PB_EVAL_DATA_DIR; `--check-offline DIR` checks such a directory.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

TASKS = ["wikitext", "lambada_openai", "arc_easy", "hellaswag", "piqa", "winogrande"]
MANIFEST = "pretrainbench_eval.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="cache lm-eval's datasets for offline evaluation")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--hf-home", help="the Hugging Face cache directory (HF_HOME)")
    parser.add_argument("--check", action="store_true",
                        help="offline: load every task from the cache only and compare with the manifest")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS, help="a subset of the tasks")
    where.add_argument("--check-offline", metavar="DIR",
                       help="check the offline evaluation sets in DIR (PB_EVAL_DATA_DIR) instead")
    return parser.parse_args(argv)


def check_offline(directory):
    """Every offline set in directory has rows in its dataset's schema (lm_eval_tasks/pb_tasks.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "lm_eval_tasks"))
    import pb_tasks

    failed = 0
    for name in pb_tasks.DATASETS:
        try:
            print(f"{name}: {len(pb_tasks.read_rows(name, directory))} rows")
        except pb_tasks.EvalDataError as e:
            print(f"{name}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(argv)
    if args.check_offline:
        return check_offline(args.check_offline)
    hf_home = Path(args.hf_home).expanduser().resolve()
    hf_home.mkdir(parents=True, exist_ok=True)
    # the Hugging Face libraries read these when they are imported, so they are set before lm_eval is
    os.environ["HF_HOME"] = str(hf_home)
    offline = "1" if args.check else "0"
    os.environ["HF_DATASETS_OFFLINE"] = offline
    os.environ["HF_HUB_OFFLINE"] = offline

    from lm_eval.tasks import TaskManager

    manifest_path = hf_home / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    tm = TaskManager()  # the built-in tasks (indexing them takes a few seconds)
    failed = []
    for name in args.tasks:
        t0 = time.time()
        try:
            task = tm.load([name])["tasks"][name]  # building the task loads (downloads) its dataset
            n_docs = len(task.eval_docs)
        except Exception as e:  # network and cache errors come in many types
            what = "not in the cache" if args.check else "download failed"
            print(f"{name}: {what}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        cfg = task.config
        entry = {"dataset_path": cfg.dataset_path, "dataset_name": cfg.dataset_name,
                 "version": (cfg.metadata or {}).get("version"), "eval_docs": n_docs}
        if args.check:
            want = manifest.get(name)
            if want and want.get("eval_docs") != n_docs:
                print(f"{name}: {n_docs} documents, the manifest says {want.get('eval_docs')}", file=sys.stderr)
                failed.append(name)
                continue
        else:
            manifest[name] = entry
        print(f"{name}: {n_docs} documents ({cfg.dataset_path}, {cfg.dataset_name}) in {time.time() - t0:.1f} s",
              flush=True)
    if not args.check:
        partial = manifest_path.with_name(MANIFEST + ".partial")
        partial.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, manifest_path)
    if failed:
        print(f"error: {len(failed)} task(s) unavailable: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'cached'} {len(args.tasks)} task(s) in {hf_home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
