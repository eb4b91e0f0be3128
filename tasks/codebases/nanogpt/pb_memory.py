"""
The memory plan of a training run: how many sequences one GPU takes per micro-step.

A profile fixes the tokens per iteration; how they are split into micro-batch x accumulation
steps changes nothing in the math (custom_pretrain.accumulate_gradients), only the memory and
the speed. A bigger micro-batch is faster, until the activations saved for backward no longer
fit. This module estimates the peak memory of one GPU for a micro-batch and picks the largest
micro-batch whose estimate stays within MEMORY_FRACTION of the GPU's memory:

$ python pb_memory.py --profile full --gpu-mem-gib 80 --gpus 2          # a short table
$ python pb_memory.py --profile full --gpu-mem-gib 80 --gpus 2 --json   # the plan as JSON

The estimate is arithmetic on the model's shape (no torch needed): what eager autograd saves
per token in each block under bf16 autocast with SDPA attention, the chunked loss, the fp32
weights, gradients and AdamW moments, and a workspace margin. The method is written out in
docs/PERFORMANCE.md ("Memory plan") and a test checks the per-token figure against the tensors
torch really saves for backward at a small shape. torch.compile saves no more than eager mode,
so on a GPU the estimate errs on the safe side.
"""

import argparse
import json
import sys

import pb_config

GIB = 1024 ** 3
MEMORY_FRACTION = 0.90  # the plan keeps its estimated peak at or below this share of the GPU
CONTEXT_BYTES = 2 * GIB  # CUDA context, cuBLAS/NCCL buffers, compile workspaces: not in the model's tensors
FRAGMENTATION = 0.10  # the caching allocator's slack on top of the activations
FP32, BF16, INT64 = 4, 2, 8  # bytes per element

METHOD = ("eager-autograd saved tensors per token per block (bf16 autocast, SDPA/flash attention, "
          "fp32 residual stream), the chunked loss's chunk, fp32 weights + grads + AdamW moments "
          "+ the bf16 weight copy (+ DDP buckets), a workspace margin; see docs/PERFORMANCE.md "
          "'Memory plan'")


def block_saved_bytes_per_token(n_embd, n_head, act_bytes=BF16, resid_bytes=FP32):
    """Bytes one transformer block saves for backward per token (eager autograd).

    act_bytes: the matmuls' dtype (2 under bf16 autocast, 4 in fp32); resid_bytes: the residual
    stream's and LayerNorm's (fp32 under autocast, which runs layer_norm in fp32)."""
    d = n_embd
    layer_norm = resid_bytes * d + 2 * FP32  # its input, plus mean and rstd per token
    attention = (
        act_bytes * d  # c_attn's input (the LayerNorm output, cast)
        + 3 * act_bytes * d  # q, k, v: c_attn's output, kept by SDPA
        + act_bytes * d  # SDPA's output, also c_proj's input: SDPA lays it out (B, T, nh, hs),
        + FP32 * n_head  # so re-assembling the heads is a view; and SDPA's logsumexp per head
    )
    mlp = (
        act_bytes * d  # c_fc's input
        + 4 * act_bytes * d  # GELU's input (c_fc's output)
        + 4 * act_bytes * d  # c_proj's input (GELU's output)
    )
    return 2 * layer_norm + attention + mlp


def model_saved_bytes_per_token(cfg, act_bytes=BF16, resid_bytes=FP32):
    """Bytes the whole model saves for backward per token, the loss's saved gradient included."""
    d = cfg["n_embd"]
    blocks = cfg["n_layer"] * block_saved_bytes_per_token(d, cfg["n_head"], act_bytes, resid_bytes)
    embedding = INT64  # the token ids, kept by the embedding's backward
    final_norm = resid_bytes * d + 2 * FP32  # ln_f: its input, mean and rstd
    loss = resid_bytes * d  # the chunked loss keeps the gradient of its input (ln_f's output)
    return blocks + embedding + final_norm + loss


def n_params(cfg):
    """Parameters of the GPT of cfg (tied embeddings counted once, no biases)."""
    d, L = cfg["n_embd"], cfg["n_layer"]
    per_block = 12 * d * d + 2 * d  # qkv 3d^2, attn proj d^2, mlp 8d^2, two LayerNorm gains
    biases = 11 * d * L + d if cfg.get("bias") else 0  # qkv 3d, proj d, fc 4d, proj d, 2 LayerNorms; ln_f
    return L * per_block + biases + cfg["vocab_size"] * d + cfg["block_size"] * d + d


def estimate(cfg, micro_batch, gpus):
    """The estimated peak bytes of one GPU at this micro-batch, and their breakdown."""
    P, T, V, d = n_params(cfg), cfg["block_size"], cfg["vocab_size"], cfg["n_embd"]
    chunk_rows = min(pb_config.LOSS_CHUNK_ROWS, micro_batch * T)
    activations = micro_batch * T * model_saved_bytes_per_token(cfg)
    breakdown = {
        "weights": FP32 * P + BF16 * P,  # the fp32 parameters and autocast's bf16 copy of them
        "grads": FP32 * P * (2 if gpus > 1 else 1),  # plus DDP's all-reduce buckets, as large
        "optimizer": 2 * FP32 * P,  # AdamW's exp_avg and exp_avg_sq
        "activations": activations,
        # one chunk's logits in bf16, their fp32 copy (turned into the gradient in place) and
        # its bf16 cast, and the head's fp32 weight gradient the loss keeps for backward
        "loss": chunk_rows * V * (BF16 + FP32 + BF16) + FP32 * V * d,
        "workspace": CONTEXT_BYTES + int(FRAGMENTATION * activations),
    }
    return sum(breakdown.values()), breakdown


def rank_sequences(cfg, gpus):
    """The sequences one GPU trains per iteration (the profile's, divided among the GPUs)."""
    seqs = cfg["batch_size"] * cfg["grad_accum"]
    if gpus < 1 or seqs % gpus:
        raise ValueError(f"{seqs} sequences per iteration do not divide among {gpus} GPUs")
    return seqs // gpus


def plan(cfg, gpu_memory_bytes, gpus):
    """The largest micro-batch (a divisor of the sequences per GPU per iteration) whose estimated
    peak is at most MEMORY_FRACTION of gpu_memory_bytes; micro-batch 1 when none fits ("fits"
    says so). grad_accum is global as in pb_config (all GPUs' micro-steps per iteration)."""
    per_gpu = rank_sequences(cfg, gpus)
    budget = MEMORY_FRACTION * gpu_memory_bytes
    choices = [b for b in range(per_gpu, 0, -1) if per_gpu % b == 0]
    micro_batch = next((b for b in choices if estimate(cfg, b, gpus)[0] <= budget), 1)
    peak, breakdown = estimate(cfg, micro_batch, gpus)
    return {
        "profile": cfg["profile"],
        "gpus": gpus,
        "gpu_memory_bytes": int(gpu_memory_bytes),
        "micro_batch": micro_batch,
        "grad_accum": per_gpu // micro_batch * gpus,
        "accum_steps_per_gpu": per_gpu // micro_batch,
        "tokens_per_iter": micro_batch * (per_gpu // micro_batch) * gpus * cfg["block_size"],
        "estimated_peak_bytes": int(peak),
        "fraction_of_gpu": peak / gpu_memory_bytes,
        "fits": peak <= budget,
        "breakdown": {k: int(v) for k, v in breakdown.items()},
        "method": METHOD,
    }


def format_plan(p):
    """The plan as a short table for people."""
    gib = lambda n: f"{n / GIB:8.2f} GiB"  # noqa: E731
    lines = [
        f"profile {p['profile']} on {p['gpus']} GPU(s) of {p['gpu_memory_bytes'] / GIB:.1f} GiB",
        f"micro-batch {p['micro_batch']} x {p['accum_steps_per_gpu']} steps per GPU "
        f"(grad_accum {p['grad_accum']}), {p['tokens_per_iter']:,} tokens/iter",
    ]
    lines += [f"  {name:<12}{gib(n)}" for name, n in p["breakdown"].items()]
    verdict = "fits" if p["fits"] else f"does NOT fit in {MEMORY_FRACTION:.0%}"
    lines.append(f"  {'peak':<12}{gib(p['estimated_peak_bytes'])}  "
                 f"({p['fraction_of_gpu']:.1%} of the GPU; {verdict})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="The memory plan of a profile on a GPU.")
    parser.add_argument("--profile", default="full", choices=sorted(pb_config.PROFILES))
    parser.add_argument("--gpu-mem-gib", type=float, required=True, help="memory of one GPU, GiB")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs (DDP ranks) sharing an iteration")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    cfg = pb_config.resolve_run_config({"PB_PROFILE": args.profile})
    try:
        p = plan(cfg, int(args.gpu_mem_gib * GIB), args.gpus)
    except ValueError as e:
        parser.error(str(e))
    print(json.dumps(p, indent=2) if args.json else format_plan(p))


if __name__ == "__main__":
    sys.exit(main())
