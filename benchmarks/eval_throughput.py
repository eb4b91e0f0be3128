"""Throughput of the lm-eval adapter: batch size 1 against a batched run, same model, same requests.

    python benchmarks/eval_throughput.py                         # tiny-profile GPT, random weights
    python benchmarks/eval_throughput.py --ckpt-dir RUN/gpt-tiny/seed_42 --batch-size 32

The requests are the real ones lm-eval builds from the offline tasks (the four multiple-choice
tasks: loglikelihood; WikiText: loglikelihood_rolling). Prints items/s for each batch size, the
speed-up, and the largest difference between the two runs' log-likelihoods (must be < 1e-4).
Exit code 1 if the results differ by more than that.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CODEBASE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "codebases" / "nanogpt"
EVAL_SETS_DIR = Path(__file__).resolve().parent.parent / "tasks" / "eval_sets" / "offline"
MC_TASKS = ["pb_arc_easy", "pb_hellaswag", "pb_piqa", "pb_winogrande"]
ROLLING_TASKS = ["pb_wikitext"]


def build_requests(names: list[str]) -> dict[str, list[Any]]:
    """lm-eval's Instances of the offline tasks, grouped by request type."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(
        include_path=str(CODEBASE_DIR / "lm_eval_tasks"),
        include_defaults=False,
        metadata={"pb_eval_data_dir": str(EVAL_SETS_DIR)},
    )
    by_type: dict[str, list[Any]] = {}
    for task in tm.load(names)["tasks"].values():
        task.build_all_requests()
        for inst in task.instances:
            by_type.setdefault(inst.request_type, []).append(inst)
    return by_type


def load_model(ckpt_dir: str | None, device: str) -> Any:
    """The checkpoint's model, or a tiny-profile GPT with fixed random weights."""
    import torch

    adapter = __import__("lm_eval_adapter")
    if ckpt_dir:
        model, _ = adapter.load_checkpoint_model(ckpt_dir, device=device)
        return model
    pb_config = __import__("pb_config")
    source = __import__("custom_pretrain")
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "tiny"})
    torch.manual_seed(0)
    return source.GPT(source.GPTConfig(**pb_config.model_config(cfg))).to(device).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", help="a training output dir (ckpt.pt + model_source.py)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--tokenizer-dir",
        default=os.environ.get("PB_TOKENIZER_DIR")
        or str(
            Path(os.environ.get("PRETRAINBENCH_HOME") or "~/.cache/pretrainbench").expanduser()
            / "tokenizer"
        ),
        help="directory holding gpt2.tiktoken",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: a fair, quiet measurement)"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(CODEBASE_DIR))
    import torch

    torch.set_num_threads(args.threads)
    adapter = __import__("lm_eval_adapter")
    pb_tokenizer = __import__("pb_tokenizer")
    model = load_model(args.ckpt_dir, args.device)
    lm = adapter.NanoGPTLM(
        model,
        encoding=pb_tokenizer.get_gpt2_encoding(args.tokenizer_dir),
        device=args.device,
        batch_size=args.batch_size,
    )
    requests = build_requests(MC_TASKS + ROLLING_TASKS)
    ll, rolling = requests["loglikelihood"], requests["loglikelihood_rolling"]
    print(
        f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, block {lm.block_size}, "
        f"device {args.device}, {args.threads} thread(s); position head: {lm._head is not None}"
    )
    print(
        f"requests: {len(ll)} loglikelihood (4 multiple-choice tasks), {len(rolling)} rolling documents"
    )

    # three ways to score the same requests: one at a time with full logits (what a plain
    # adapter does), one at a time with lm_head only where needed, and batched with both
    naive = adapter.NanoGPTLM(
        model, encoding=lm.enc, device=args.device, batch_size=1, select_head=False
    )
    configs = [
        ("bs=1 full logits", naive, 1),
        ("bs=1", lm, 1),
        (f"bs={args.batch_size}", lm, args.batch_size),
    ]
    worst = 0.0
    print(
        f"{'requests':<15}{'config':<18}{'n':>5}{'items/s wall':>14}{'items/s cpu':>13}{'speed-up':>10}{'max |diff|':>12}"
    )
    for kind, reqs in (("loglikelihood", ll), ("rolling", rolling)):
        base = None
        for label, scorer, bs in configs:
            scorer.batch_size = bs
            fn = scorer.loglikelihood if kind == "loglikelihood" else scorer.loglikelihood_rolling
            fn(reqs[:2])  # warm-up: first-call allocations are not throughput
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn(reqs)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            values = [o[0] if isinstance(o, tuple) else o for o in out]
            if base is None:
                base = (values, cpu)
            diff = max(abs(a - b) for a, b in zip(base[0], values, strict=True))
            worst = max(worst, diff)
            print(
                f"{kind:<15}{label:<18}{len(reqs):>5}{len(reqs) / wall:>14.1f}{len(reqs) / cpu:>13.1f}"
                f"{base[1] / cpu:>9.1f}x{diff:>12.2e}"
            )
    if worst > 1e-4:
        print(f"FAIL: batched and unbatched log-likelihoods differ by {worst:.2e} > 1e-4")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
