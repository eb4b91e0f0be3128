"""Peak memory and time of the training loss: F.cross_entropy over the full logits (the loss
custom_pretrain.py had) against its ChunkedCrossEntropy, forward and backward.

    python benchmarks/loss_memory.py                          # CPU, 8192 rows, GPT-2 Medium's head
    python benchmarks/loss_memory.py --rows 49152 --device cuda --bf16   # micro-batch 48 on a GPU

The input is what the head sees in training: (rows, n_embd) activations and the tied (vocab,
n_embd) weight, both requiring gradients. On CUDA the peak is torch's allocator high-water mark
above what was allocated before the loss; on CPU each variant runs in a fresh process and the
peak is its maximum resident size above its size just before the loss (the allocator returns
large blocks to the system, so the high-water mark is the loss's own).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

CODEBASE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "codebases" / "nanogpt"
VARIANTS = ("plain", "chunked")


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(
    variant: str, rows: int, n_embd: int, vocab: int, chunk_rows: int, device: str, bf16: bool
) -> dict[str, float]:
    """Peak bytes above the start and seconds of one forward and backward of the loss."""
    sys.path.insert(0, str(CODEBASE_DIR))
    import custom_pretrain as cp
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(rows, n_embd, device=device, requires_grad=True)
    weight = (0.02 * torch.randn(vocab, n_embd, device=device)).requires_grad_()
    targets = torch.randint(0, vocab, (rows,), device=device)
    autocast: AbstractContextManager[object] = (
        torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
    )
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    else:
        start = _resident_bytes()
    t0 = time.perf_counter()
    with autocast:
        if variant == "plain":
            loss = F.cross_entropy(F.linear(x, weight).float(), targets, ignore_index=-1)
        else:
            loss = cp.ChunkedCrossEntropy.apply(x, weight, targets, chunk_rows)
    loss.backward()
    loss.item()  # waits for the device
    seconds = time.perf_counter() - t0
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - start
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start
    return {"peak_bytes": peak, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=8192, help="tokens of one micro-batch")
    parser.add_argument("--n-embd", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument(
        "--chunk-rows", type=int, default=None, help="default: pb_config.LOSS_CHUNK_ROWS"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="under bf16 autocast (as on CUDA)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child run
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.chunk_rows is None:
        sys.path.insert(0, str(CODEBASE_DIR))
        import pb_config

        args.chunk_rows = pb_config.LOSS_CHUNK_ROWS
    shape = (args.rows, args.n_embd, args.vocab, args.chunk_rows, args.device, args.bf16)
    if args.variant:
        print(json.dumps(measure(args.variant, *shape)))
        return
    results = {}
    for variant in VARIANTS:
        if (
            args.device == "cpu"
        ):  # a fresh process each: the resident high-water mark is per process
            argv = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--rows",
                str(args.rows),
                "--n-embd",
                str(args.n_embd),
                "--vocab",
                str(args.vocab),
                "--chunk-rows",
                str(args.chunk_rows),
            ] + (["--bf16"] if args.bf16 else [])
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            results[variant] = json.loads(out.splitlines()[-1])
        else:
            results[variant] = measure(variant, *shape)
    report = {
        "rows": args.rows,
        "n_embd": args.n_embd,
        "vocab": args.vocab,
        "chunk_rows": args.chunk_rows,
        "device": args.device,
        "dtype": "bf16 autocast" if args.bf16 else "fp32",
        "full_fp32_logits_bytes": args.rows * args.vocab * 4,
        **{f"{v}_{k}": r[k] for v, r in results.items() for k in ("peak_bytes", "seconds")},
    }
    if args.json:
        print(json.dumps(report))
        return
    gib = 2**30
    print(
        f"loss over {args.rows} rows x {args.vocab} vocab (n_embd {args.n_embd}), {report['dtype']}, "
        f"{args.device}; the full fp32 logits alone: {report['full_fp32_logits_bytes'] / gib:.2f} GiB"
    )
    for variant in VARIANTS:
        r = results[variant]
        print(f"  {variant:<8} peak {r['peak_bytes'] / gib:6.2f} GiB   {r['seconds']:6.2f} s")


if __name__ == "__main__":
    main()
