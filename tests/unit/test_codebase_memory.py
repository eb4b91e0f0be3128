"""Memory of the training step: the chunked loss, the micro-batch split, and pb_memory's plan.

The chunked loss must equal F.cross_entropy over the full logits (loss and every gradient); a
split of an iteration into micro-batch x accumulation must give the same loss and gradients as
any other split; pb_memory's estimate of the tensors saved for backward is checked against the
tensors torch really saves (saved_tensors_hooks) at a small shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests._fixtures.codebase import CODEBASE_DIR, codebase_module

cp = codebase_module("custom_pretrain")
pb_config = codebase_module("pb_config")
pb_memory = codebase_module("pb_memory")

GIB = 1024**3


def tiny_model(seed: int = 0, **shape: int) -> Any:  # a custom_pretrain.GPT
    cfg = dict(pb_config.resolve_run_config({"PB_PROFILE": "tiny"}), **shape)
    torch.manual_seed(seed)
    return cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg)))


def precision(name: str) -> AbstractContextManager[object]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if name == "bf16" else nullcontext()


def grads(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


# --- the chunked loss ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_chunked_loss_equals_cross_entropy_of_the_full_logits(
    monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """The model's loss (chunks of 48 rows, some rows ignored) against F.cross_entropy of the
    logits the evaluator's path returns, in fp32 and under CPU bf16 autocast."""
    monkeypatch.setattr(cp, "LOSS_CHUNK_ROWS", 48)  # 4 x 64 = 256 rows: 6 chunks, the last short
    model = tiny_model()
    idx = torch.randint(0, 50257, (4, 64))
    targets = torch.randint(0, 50257, (4, 64))
    targets[0, :10] = -1  # ignored rows, inside one chunk and across a chunk boundary
    targets[2, 30:60] = -1

    with precision(dtype):
        logits, _ = model(idx)
        plain = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1)
    plain.backward()
    want = grads(model)
    model.zero_grad(set_to_none=True)
    with precision(dtype):
        none, chunked = model(idx, targets)
    chunked.backward()
    got = grads(model)

    assert none is None  # the full logits are never built in training
    assert chunked.dtype == torch.float32
    assert abs(chunked.item() - plain.item()) <= 1e-6
    assert set(got) == set(want)
    for name, g in want.items():
        # fp32: float noise of a different summation order; bf16: the gradients' bf16 rounding
        # (one ulp is 2**-8 of a value) differs between one matmul and a sum of chunk matmuls
        scale = g.abs().max().item()
        tol = 1e-5 * scale if dtype == "fp32" else 1e-2 * scale
        assert (got[name] - g).abs().max().item() <= tol, name


def test_chunked_loss_of_only_ignored_rows_is_nan_like_cross_entropy() -> None:
    x = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(20, 8, requires_grad=True)
    t = torch.full((6,), -1)
    assert torch.isnan(cp.ChunkedCrossEntropy.apply(x, w, t, 4))
    assert torch.isnan(F.cross_entropy(x @ w.t(), t, ignore_index=-1))


def test_loss_peak_memory_is_bounded_by_the_chunk() -> None:
    """What the loss keeps for backward is the gradient of its input and of the head, never a
    (rows, vocab) tensor."""
    x = torch.randn(512, 16, requires_grad=True)
    w = torch.randn(1000, 16, requires_grad=True)
    t = torch.randint(0, 1000, (512,))
    shapes: list[tuple[int, ...]] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        cp.ChunkedCrossEntropy.apply(x, w, t, 64)
    assert sorted(shapes) == [(512, 16), (1000, 16)]


# --- the micro-batch split -----------------------------------------------------------------


def test_every_split_of_an_iteration_gives_the_same_loss_and_gradients() -> None:
    """accumulate_gradients (the training loop's) over 8 sequences as 8x1, 4x2, 2x4 and 1x8:
    loss and gradients equal to float noise (fp32: relative 1e-5 of each gradient's scale)."""
    model = tiny_model()
    X = torch.randint(0, 50257, (8, 64))
    Y = torch.randint(0, 50257, (8, 64))
    results = {}
    for accum in (1, 2, 4, 8):
        model.zero_grad(set_to_none=True)
        loss, fetched = cp.accumulate_gradients(
            model, X, Y, accum, nullcontext(), False, lambda: "next"
        )
        assert fetched == "next"
        results[accum] = (loss.item(), grads(model))
    loss_1, grads_1 = results[1]
    for accum, (loss, g) in results.items():
        assert abs(loss - loss_1) <= 1e-6, accum
        for name, want in grads_1.items():
            assert (g[name] - want).abs().max().item() <= 1e-5 * want.abs().max().item(), (
                accum,
                name,
            )
    # and the scaling matters: one micro-batch's gradient alone is not the iteration's
    model.zero_grad(set_to_none=True)
    cp.accumulate_gradients(model, X[:4], Y[:4], 1, nullcontext(), False)
    head = "transformer.wte.weight"  # tied: also the output layer
    assert not torch.allclose(grads(model)[head], grads_1[head], rtol=1e-3, atol=0)


def test_an_explicit_split_is_kept_and_marked() -> None:
    default = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    assert default["batch_override"] is False
    chosen = pb_config.resolve_run_config({"PB_PROFILE": "full", "PB_BATCH_SIZE": "24"})
    assert chosen["batch_override"] is True
    assert (chosen["batch_size"], chosen["grad_accum"]) == (24, 24)
    assert chosen["tokens_per_iter"] == default["tokens_per_iter"] == 589_824


# --- the memory estimate -------------------------------------------------------------------


def saved_bytes(run: object, exclude: set[int]) -> int:
    """Bytes of the distinct storages autograd saves while run() runs, except `exclude`'s."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()  # type: ignore[operator]
    return sum(n for ptr, n in storages.items() if ptr not in exclude)


@pytest.mark.parametrize(("dtype", "act_bytes"), [("fp32", 4), ("bf16", 2)])
def test_block_estimate_is_what_autograd_saves(dtype: str, act_bytes: int) -> None:
    """pb_memory's per-token bytes of a block, exactly, at 2 layers x 128 wide x 256 tokens.
    Under autocast the bf16 copies of the block's weights are saved too: pb_memory counts them
    once per model under "weights", so they are added here."""
    model = tiny_model(n_layer=2)
    B, T, d = 4, 64, 128
    block = model.transformer.h[0]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    x = torch.randn(B, T, d, requires_grad=True)

    def run() -> None:
        with precision(dtype):
            block(x)

    weight_copies = sum(
        p.numel() for n, p in block.named_parameters() if n.endswith("weight") and p.dim() == 2
    )
    want = pb_memory.block_saved_bytes_per_token(d, 4, act_bytes=act_bytes) * B * T
    want += weight_copies * 2 if dtype == "bf16" else 0
    assert saved_bytes(run, params) == want


@pytest.mark.parametrize(("dtype", "act_bytes"), [("fp32", 4), ("bf16", 2)])
def test_model_estimate_is_within_one_percent_of_what_autograd_saves(
    dtype: str, act_bytes: int
) -> None:
    """The whole model with the chunked loss: per-token bytes x tokens, plus the loss's saved
    head gradient, plus (bf16) the blocks' weight copies; the position ids are the only rest."""
    model = tiny_model(n_layer=3)
    cfg = dict(vars(model.config))
    B, T = 4, 64
    idx = torch.randint(0, 50257, (B, T))
    targets = torch.randint(0, 50257, (B, T))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def run() -> None:
        with precision(dtype):
            model(idx, targets)

    block_weights = sum(
        p.numel() for n, p in model.transformer.h.named_parameters() if p.dim() == 2
    )
    want = pb_memory.model_saved_bytes_per_token(cfg, act_bytes=act_bytes) * B * T
    want += 4 * cfg["vocab_size"] * cfg["n_embd"]  # the head's gradient, kept by the loss
    want += 2 * block_weights if dtype == "bf16" else 0
    got = saved_bytes(run, params)
    assert abs(got - want) <= 0.01 * want, (got, want)


def test_parameter_count_matches_the_model() -> None:
    for profile, shape in (("tiny", {}), ("tiny", {"bias": True}), ("small", {})):
        cfg = dict(pb_config.resolve_run_config({"PB_PROFILE": profile}), **shape)
        model = cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg)))
        assert pb_memory.n_params(cfg) == sum(p.numel() for p in model.parameters()), (
            profile,
            shape,
        )


def test_full_profile_plan_fits_an_80_gb_gpu() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    plan = pb_memory.plan(cfg, 80 * GIB, 2)
    assert plan["fits"] and plan["fraction_of_gpu"] <= 0.90
    assert plan["estimated_peak_bytes"] == sum(plan["breakdown"].values())
    assert 288 % plan["micro_batch"] == 0  # 96 x 6 sequences over 2 GPUs: 288 each
    assert plan["micro_batch"] * plan["grad_accum"] * 1024 == plan["tokens_per_iter"] == 589_824
    assert plan["accum_steps_per_gpu"] * 2 == plan["grad_accum"]
    # the next larger split would not fit: the plan takes the largest that does
    larger = min(b for b in range(plan["micro_batch"] + 1, 289) if 288 % b == 0)
    assert pb_memory.estimate(cfg, larger, 2)[0] > 0.9 * 80 * GIB
    # micro-batch 96 on 80 GB is what the issue measured not to fit
    assert pb_memory.estimate(cfg, 96, 2)[0] > 80 * GIB


def test_plan_grows_with_memory_and_says_when_nothing_fits() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    sizes = [pb_memory.plan(cfg, gib * GIB, 2)["micro_batch"] for gib in (24, 40, 80, 141, 192)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    tiny_gpu = pb_memory.plan(cfg, 4 * GIB, 2)
    assert tiny_gpu["micro_batch"] == 1 and not tiny_gpu["fits"]
    with pytest.raises(ValueError, match="do not divide"):
        pb_memory.plan(cfg, 80 * GIB, 5)


def test_cli_prints_the_plan_as_json_and_as_a_table() -> None:
    argv = [
        sys.executable,
        "pb_memory.py",
        "--profile",
        "full",
        "--gpu-mem-gib",
        "80",
        "--gpus",
        "2",
    ]
    out = subprocess.run(
        [*argv, "--json"], cwd=CODEBASE_DIR, capture_output=True, text=True, check=True
    )
    plan = json.loads(out.stdout)
    keys = {
        "profile",
        "gpus",
        "gpu_memory_bytes",
        "micro_batch",
        "grad_accum",
        "tokens_per_iter",
        "estimated_peak_bytes",
        "fraction_of_gpu",
        "breakdown",
        "method",
    }
    assert keys <= set(plan)
    assert set(plan["breakdown"]) == {
        "weights",
        "grads",
        "optimizer",
        "activations",
        "loss",
        "workspace",
    }
    assert (plan["profile"], plan["gpus"], plan["gpu_memory_bytes"]) == ("full", 2, 80 * GIB)
    assert plan["fraction_of_gpu"] <= 0.90
    table = subprocess.run(
        argv, cwd=CODEBASE_DIR, capture_output=True, text=True, check=True
    ).stdout
    assert (
        f"micro-batch {plan['micro_batch']} x {plan['accum_steps_per_gpu']} steps per GPU" in table
    )
