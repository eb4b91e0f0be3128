"""Throughput of the lm-eval adapter: batch size 1 against batched, and the model in this process
(the trusted, original architecture) against the model in a logits worker (an agent's
architecture), same model, same requests.

    python benchmarks/eval_throughput.py                         # tiny-profile GPT, random weights
    python benchmarks/eval_throughput.py --ckpt-dir RUN/train-tiny/seed_42 --batch-size 32

The requests are the real ones lm-eval builds from the offline tasks (the four multiple-choice
tasks: loglikelihood; WikiText: loglikelihood_rolling). The worker path starts logits_worker.py as
a process of its own on the same checkpoint and scores through evaluate.py's WorkerModel (the
requests pipelined, the sequences sampled for the causality check); the check itself (64 probes to
a second, fresh worker) is timed on its own. Prints items/s for each configuration, the ratio to
the first, and the largest difference between the runs' log-likelihoods: batching may move them
by < 1e-4, the worker path by nothing at all. Exit code 1 if either bound is broken.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CODEBASE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "codebases" / "nanogpt"
EVAL_SETS_DIR = (
    Path(__file__).resolve().parent.parent / "tests" / "_fixtures" / "eval_sets" / "offline"
)
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


def checkpoint_dir(ckpt_dir: str | None, scratch: Path) -> Path:
    """The checkpoint's directory, or one written for a tiny-profile GPT with fixed random weights."""
    if ckpt_dir:
        return Path(ckpt_dir)
    import torch

    pb_config = __import__("pb_config")
    source = __import__("custom_pretrain")
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "tiny"})
    torch.manual_seed(0)
    model = source.GPT(source.GPTConfig(**pb_config.model_config(cfg)))
    ckpt = {"model": model.state_dict(), "model_config": pb_config.model_config(cfg)}
    torch.save(ckpt, scratch / "ckpt.pt")
    (scratch / "model_source.py").write_text((CODEBASE_DIR / "custom_pretrain.py").read_text())
    return scratch


def start_worker(ckpt: Path, directory: Path, device: str, threads: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True)
    env = {
        **os.environ,
        "PB_WORKER_DIR": str(directory),
        "PB_CKPT_DIR": str(ckpt),
        "PB_DEVICE": device,
        "OMP_NUM_THREADS": str(threads),
    }
    return subprocess.Popen(
        [sys.executable, "logits_worker.py"], cwd=CODEBASE_DIR, env=env, stdout=subprocess.DEVNULL
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads of this process and of each worker (1: a fair, quiet measurement)",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(CODEBASE_DIR))
    import torch

    torch.set_num_threads(args.threads)
    adapter = __import__("lm_eval_adapter")
    evaluate = __import__("evaluate")
    pb_checkpoint = __import__("pb_checkpoint")
    pb_logits = __import__("pb_logits")
    pb_tokenizer = __import__("pb_tokenizer")
    scratch = Path(tempfile.mkdtemp(prefix="pb_eval_throughput_"))
    ckpt_dir = checkpoint_dir(args.ckpt_dir, scratch)
    ckpt = pb_checkpoint.load_checkpoint(ckpt_dir)
    mc = ckpt["model_config"]
    workers = [
        start_worker(ckpt_dir, scratch / "workers" / str(i), args.device, args.threads)
        for i in range(2)
    ]
    try:
        model = adapter.load_trusted_model(device=args.device, ckpt=ckpt)
        enc = pb_tokenizer.get_gpt2_encoding(args.tokenizer_dir)
        local = adapter.LocalModel(model)
        head = pb_checkpoint.head_weight(ckpt, mc["vocab_size"], mc["n_embd"]).to(args.device)
        clients = [
            pb_logits.WorkerClient(
                scratch / "workers" / str(i),
                i,
                (mc["n_embd"], mc["block_size"], mc["vocab_size"]),
                600,
            ).connect()
            for i in range(2)
        ]
        probes = evaluate.CausalityProbes(64, random.Random(0))
        remote = evaluate.WorkerModel(clients[0], head, probes)
        requests = build_requests(MC_TASKS + ROLLING_TASKS)
        ll, rolling = requests["loglikelihood"], requests["loglikelihood_rolling"]
        print(
            f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
            f"block {mc['block_size']}, device {args.device}, {args.threads} thread(s) per process"
        )
        print(
            f"requests: {len(ll)} loglikelihood (4 multiple-choice tasks), {len(rolling)} rolling documents"
        )
        configs = [
            ("in process bs=1", local, 1),
            (f"in process bs={args.batch_size}", local, args.batch_size),
            (f"worker bs={args.batch_size}", remote, args.batch_size),
        ]
        worst_batching = worst_worker = 0.0
        print(
            f"{'requests':<15}{'config':<22}{'n':>5}{'items/s wall':>14}{'items/s cpu':>13}{'vs first':>10}{'max |diff|':>12}"
        )
        ratios = []
        for kind, reqs in (("loglikelihood", ll), ("rolling", rolling)):
            base: tuple[list[float], float] | None = None
            in_process: list[float] = []
            in_process_wall = 0.0
            for label, source, bs in configs:
                lm = adapter.NanoGPTLM(
                    source, encoding=enc, batch_size=bs, block_size=mc["block_size"]
                )
                fn = lm.loglikelihood if kind == "loglikelihood" else lm.loglikelihood_rolling
                fn(reqs[:2])  # warm-up: first-call allocations are not throughput
                c0, t0 = time.process_time(), time.perf_counter()
                out = fn(reqs)
                cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                values = [o[0] if isinstance(o, tuple) else o for o in out]
                if base is None:
                    base = (values, wall)
                diff = max(abs(a - b) for a, b in zip(base[0], values, strict=True))
                if source is local and bs == args.batch_size:
                    in_process, in_process_wall = values, wall
                    worst_batching = max(worst_batching, diff)
                if source is remote:
                    ratios.append(f"{in_process_wall / wall:.2f}x {kind}")
                    worst_worker = max(
                        worst_worker,
                        max(abs(a - b) for a, b in zip(in_process, values, strict=True)),
                    )
                print(
                    f"{kind:<15}{label:<22}{len(reqs):>5}{len(reqs) / wall:>14.1f}{len(reqs) / cpu:>13.1f}"
                    f"{base[1] / wall:>9.2f}x{diff:>12.2e}"
                )
        print(f"worker / in process, bs={args.batch_size}, wall: " + ", ".join(ratios))
        t0 = time.perf_counter()
        probes.check(clients[1:], head, args.batch_size, args.device)
        print(
            f"causality check: {len(probes.kept)} of {probes.seen} sequences probed on a fresh worker "
            f"in {time.perf_counter() - t0:.2f} s"
        )
        for client in clients:
            client.close()
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
    status = 0
    if worst_batching > 1e-4:
        print(f"FAIL: batched and unbatched log-likelihoods differ by {worst_batching:.2e} > 1e-4")
        status = 1
    if worst_worker != 0.0:
        print(
            f"FAIL: the worker path's log-likelihoods differ from in process by {worst_worker:.2e}"
        )
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
