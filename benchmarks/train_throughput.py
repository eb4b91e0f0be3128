"""Training throughput of a scale profile on this machine: tokens/s and, on a GPU, MFU.

    python benchmarks/train_throughput.py --profile tiny                 # CPU: tokens/s only
    python benchmarks/train_throughput.py --profile full --batch-size 16 # one GPU, smaller micro-batch

Runs the real training step of custom_pretrain.py (forward, backward, gradient clipping, fused
AdamW on CUDA, bf16 autocast, torch.compile as the profile would) on random tokens, one
micro-batch per step. Warm-up steps (compilation included) are not timed. MFU uses the bf16
dense peak of the exact GPU model (the table in docs/PERFORMANCE.md, `GPU_PEAK_FLOPS` in the
codebase) and the 6N + 12LHQT FLOPs-per-token estimate; on CPU or an unlisted GPU it is None
and `mfu_note` says why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

CODEBASE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "codebases" / "nanogpt"


def measure(
    profile: str,
    device: str | None,
    batch_size: int | None,
    steps: int,
    warmup: int,
    compile_model: bool | None,
) -> dict[str, Any]:
    """Time `steps` training steps of the profile's model; returns the figures."""
    sys.path.insert(0, str(CODEBASE_DIR))
    import custom_pretrain as cp
    import pb_config
    import torch

    cfg = pb_config.resolve_run_config({"PB_PROFILE": profile})
    device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = "cuda" if device_type == "cuda" else "cpu"
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast: Any = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device_type == "cuda" else nullcontext()
    )
    use_compile = compile_model if compile_model is not None else device_type == "cuda"
    B, T = batch_size or cfg["batch_size"], cfg["block_size"]

    torch.manual_seed(0)
    raw = cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg))).to(dev)
    optimizer, _, _ = raw.configure_optimizers(
        cfg["weight_decay"], cfg["learning_rate"], (cfg["beta1"], cfg["beta2"]), device_type
    )
    model = torch.compile(raw) if use_compile else raw
    x = torch.randint(0, 50257, (B, T), device=dev)
    y = torch.randint(0, 50257, (B, T), device=dev)

    def step() -> float:
        t0 = time.perf_counter()
        with autocast:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # wait for the device
        return time.perf_counter() - t0

    t_warm = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_s = time.perf_counter() - t_warm
    times = [step() for _ in range(steps)]
    dt = statistics.median(times)
    tokens_per_s = B * T / dt
    peak, no_mfu = cp.gpu_peak_flops(device_type)
    flops_per_token = raw.flops_per_token()
    result: dict[str, Any] = {
        "profile": profile,
        "device": torch.cuda.get_device_name() if device_type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "params_m": round(raw.get_num_params() / 1e6, 2),
        "batch_size": B,
        "block_size": T,
        "compile": use_compile,
        "warmup_s": round(warmup_s, 2),
        "step_ms": round(dt * 1000, 1),
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(flops_per_token * tokens_per_s / peak, 4) if peak else None,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu_note": no_mfu,
        "profile_iteration_s": round(dt * cfg["tokens_per_iter"] / (B * T), 3),
    }
    if device_type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="tiny", help="micro, tiny, small or full")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="micro-batch (default: the profile's)"
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps (the median is reported)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps first (compilation happens here)"
    )
    parser.add_argument(
        "--compile",
        dest="compile_model",
        type=int,
        choices=[0, 1],
        default=None,
        help="torch.compile (default: on for CUDA, off for CPU)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    args = parser.parse_args()
    compile_model = None if args.compile_model is None else bool(args.compile_model)
    result = measure(
        args.profile, args.device, args.batch_size, args.steps, args.warmup, compile_model
    )
    if args.json:
        print(json.dumps(result))
        return
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
