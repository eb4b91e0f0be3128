"""The chunked training loss inside torch.compile: one graph (fullgraph=True), the same loss and
gradients as eager mode. On CPU (slow: inductor compiles C++), and on CUDA under bf16 autocast
when a GPU is present, where it also must not hold the full logits."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
import torch

from tests._fixtures.codebase import codebase_module

cp = codebase_module("custom_pretrain")
pb_config = codebase_module("pb_config")

pytestmark = pytest.mark.integration


def loss_and_grads(
    model: Any, idx: torch.Tensor, targets: torch.Tensor, bf16: bool
) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    device = idx.device.type
    with torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext():
        _, loss = model(idx, targets)
    loss.backward()
    params = (
        model._orig_mod.named_parameters()
        if hasattr(model, "_orig_mod")
        else model.named_parameters()
    )
    return loss.item(), {n: p.grad.detach().clone() for n, p in params}


def check_compiled_equals_eager(device: str, bf16: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cp, "LOSS_CHUNK_ROWS", 24)  # 2 x 32 rows: a full chunk and a short one
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "micro"})
    torch.manual_seed(0)
    model = cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg))).to(device)
    idx = torch.randint(0, 50257, (2, 32), device=device)
    targets = torch.randint(0, 50257, (2, 32), device=device)
    targets[0, :5] = -1
    eager_loss, eager = loss_and_grads(model, idx, targets, bf16)
    compiled_loss, compiled = loss_and_grads(
        torch.compile(model, fullgraph=True), idx, targets, bf16
    )
    assert abs(compiled_loss - eager_loss) <= 1e-5 * abs(eager_loss)
    for name, g in eager.items():
        # fp32: float noise; bf16: inductor fuses and rounds differently from eager kernels
        tol = (1e-5 if not bf16 else 2e-2) * g.abs().max().item()
        assert (compiled[name] - g).abs().max().item() <= tol, name


@pytest.mark.slow
def test_chunked_loss_compiles_as_one_graph_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    check_compiled_equals_eager("cpu", False, monkeypatch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chunked_loss_compiles_under_bf16_autocast_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    check_compiled_equals_eager("cuda", True, monkeypatch)
