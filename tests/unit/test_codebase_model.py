"""Unit tests of custom_pretrain.py: regions, GPT-2 architecture, schedule, guards."""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests._fixtures.codebase import CODEBASE_DIR, codebase_module

cp = codebase_module("custom_pretrain")
pb_config = codebase_module("pb_config")

SOURCE = (CODEBASE_DIR / "custom_pretrain.py").read_text()
REGIONS = ["layernorm", "block", "get_lr", "config_overrides"]


# --- the file and its regions --------------------------------------------------------------


def region_text(name: str) -> str:
    start = f"# ── EDITABLE REGION START: {name} ──\n"
    end = f"# ── EDITABLE REGION END: {name} ──\n"
    return SOURCE.split(start, 1)[1].split(end, 1)[0]


def test_region_markers_are_exact_and_in_order() -> None:
    marker = re.compile(r"^# ── EDITABLE REGION (START|END): (\w+) ──$")
    found = [m.groups() for line in SOURCE.splitlines() if (m := marker.match(line))]
    expected = [(kind, name) for name in REGIONS for kind in ("START", "END")]
    assert found == expected
    # no indented or otherwise mangled marker lines anywhere
    assert SOURCE.count("EDITABLE REGION") == 2 * len(REGIONS)


def test_regions_use_only_math_torch_nn_F() -> None:
    allowed = {"math", "torch", "nn", "F"}
    module_names = {"json", "os", "sys", "time", "np", "pb_config", "pb_data", "Path"}
    for name in REGIONS:
        tree = ast.parse(region_text(name))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], name
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not (used & module_names), f"region {name} uses {used & module_names}"
        assert used & allowed or name == "config_overrides"


def test_region_contents_define_the_contract_names() -> None:
    assert "class LayerNorm(nn.Module):" in region_text("layernorm")
    assert "def __init__(self, ndim, bias):" in region_text("layernorm")
    assert "class Block(nn.Module):" in region_text("block")
    assert "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):" in region_text(
        "get_lr"
    )
    assert region_text("config_overrides").strip() == "CONFIG_OVERRIDES = {}"


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(CODEBASE_DIR), "PB_OUT_DIR": str(tmp_path / "out")}
    proc = subprocess.run(
        [sys.executable, "-c", "import custom_pretrain"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


# --- the schedule -------------------------------------------------------------------------


def reference_lr(it: int, warmup: int, decay: int, lr: float, min_lr: float) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_default_get_lr_is_warmup_then_cosine() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    args = (cfg["warmup_iters"], cfg["lr_decay_iters"], cfg["learning_rate"], cfg["min_lr"])
    for it in [*range(0, 600), *range(0, cfg["max_iters"] + 5, 97), cfg["max_iters"] - 1]:
        assert cp.get_lr(it, *args) == pytest.approx(reference_lr(it, *args), rel=1e-12, abs=0)
    assert cp.get_lr(0, *args) == 3e-4 / 482
    assert cp.get_lr(480, *args) == pytest.approx(3e-4 * 481 / 482)
    assert cp.get_lr(481, *args) == pytest.approx(3e-4)
    assert cp.get_lr(12030, *args) == pytest.approx(3e-5)
    assert cp.get_lr(20000, *args) == 3e-5


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -1e-3, "0.1", None, True, torch.tensor([0.1, 0.2])]
)
def test_checked_lr_rejects_bad_values(monkeypatch: pytest.MonkeyPatch, bad: object) -> None:
    monkeypatch.setattr(cp, "get_lr", lambda *args: bad)
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "micro"})
    with pytest.raises(cp.TrainingFailure, match=r"get_lr\(0, "):
        cp.checked_lr(0, cfg)


def test_checked_lr_accepts_numbers_float_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "micro"})
    for value in (0, 3e-4, torch.tensor(3e-4, dtype=torch.float64)):
        monkeypatch.setattr(cp, "get_lr", lambda *args, v=value: v)
        result = cp.checked_lr(1, cfg)
        assert isinstance(result, float) and result == float(value)


# --- the model ----------------------------------------------------------------------------


def test_full_profile_has_355m_parameters() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    with torch.device("meta"):
        model = cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg)))
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    assert abs(total - 355e6) / 355e6 < 0.01, total
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.config.vocab_size == 50304


def test_small_profile_is_gpt2_124m() -> None:
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "small"})
    with torch.device("meta"):
        model = cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg)))
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - 124e6) / 124e6 < 0.01, total
    # ~20 tokens per parameter
    tokens = cfg["max_iters"] * cfg["tokens_per_iter"]
    assert 19 <= tokens / total <= 21


def small_config(**kw: object) -> object:
    args: dict[str, object] = dict(
        block_size=16, vocab_size=96, n_layer=3, n_head=4, n_embd=32, dropout=0.0, bias=False
    )
    args.update(kw)
    return cp.GPTConfig(**args)


def test_state_dict_follows_gpt2_layout() -> None:
    model = cp.GPT(small_config())
    keys = set(model.state_dict())
    expected = {
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    }
    for i in range(3):
        expected |= {
            f"transformer.h.{i}.{name}.weight"
            for name in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
        }
    assert keys == expected  # no biases anywhere
    sd = model.state_dict()
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (96, 32)
    assert sd["transformer.h.0.mlp.c_fc.weight"].shape == (128, 32)


def test_init_stds() -> None:
    torch.manual_seed(0)
    cfg = small_config(n_layer=8, n_embd=256, n_head=4, vocab_size=4096, block_size=64)
    model = cp.GPT(cfg)
    params = dict(model.named_parameters())
    assert params["transformer.h.0.mlp.c_fc.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert params["transformer.wte.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert params["transformer.h.3.mlp.c_proj.weight"].std().item() == pytest.approx(
        0.02 / 4, rel=0.05
    )
    assert params["transformer.h.3.attn.c_proj.weight"].std().item() == pytest.approx(
        0.02 / 4, rel=0.05
    )
    assert torch.all(params["transformer.h.0.ln_1.weight"] == 1)


def test_optimizer_decays_only_matrices() -> None:
    model = cp.GPT(small_config())
    opt, n_decay, n_nodecay = model.configure_optimizers(0.1, 3e-4, (0.9, 0.95), "cpu")
    decay, nodecay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and nodecay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(
        p.dim() < 2 for p in nodecay["params"]
    )
    assert decay["betas"] == (0.9, 0.95)
    assert n_decay + n_nodecay == sum(p.numel() for p in model.parameters())
    cfg = pb_config.resolve_run_config({"PB_PROFILE": "full"})
    assert (cfg["beta1"], cfg["beta2"], cfg["weight_decay"], cfg["grad_clip"]) == (
        0.9,
        0.95,
        0.1,
        1.0,
    )


class ReferenceGPT2(nn.Module):
    """GPT-2 written out independently from a state dict: masked softmax attention, erf GELU."""

    def __init__(self, n_layer: int, n_head: int, n_embd: int, vocab: int, block: int) -> None:
        super().__init__()
        self.n_layer, self.n_head = n_layer, n_head
        self.mask = torch.tril(torch.ones(block, block, dtype=torch.bool))

    def forward(self, sd: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        def ln(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            mu = x.mean(-1, keepdim=True)
            var = ((x - mu) ** 2).mean(-1, keepdim=True)
            return (x - mu) / torch.sqrt(var + 1e-5) * w

        def gelu(x: torch.Tensor) -> torch.Tensor:
            return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))

        b, t = idx.shape
        x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:t]
        for i in range(self.n_layer):
            pre = f"transformer.h.{i}."
            h = ln(x, sd[pre + "ln_1.weight"])
            qkv = h @ sd[pre + "attn.c_attn.weight"].T
            q, k, v = qkv.chunk(3, dim=-1)
            hs = q.shape[-1] // self.n_head
            q, k, v = (z.reshape(b, t, self.n_head, hs).permute(0, 2, 1, 3) for z in (q, k, v))
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
            att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1)
            y = (att @ v).permute(0, 2, 1, 3).reshape(b, t, -1)
            x = x + y @ sd[pre + "attn.c_proj.weight"].T
            h = ln(x, sd[pre + "ln_2.weight"])
            x = x + gelu(h @ sd[pre + "mlp.c_fc.weight"].T) @ sd[pre + "mlp.c_proj.weight"].T
        x = ln(x, sd["transformer.ln_f.weight"])
        return x @ sd["transformer.wte.weight"].T  # tied output layer


def test_forward_matches_an_independent_gpt2() -> None:
    torch.manual_seed(1)
    model = cp.GPT(small_config()).double().eval()
    with torch.no_grad():  # non-trivial gains so LayerNorm weights matter
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    ref = ReferenceGPT2(3, 4, 32, 96, 16).double()
    idx = torch.randint(0, 96, (3, 16))
    targets = torch.randint(0, 96, (3, 16))
    with torch.no_grad():
        logits, none = model(idx)
        no_logits, loss = model(idx, targets)  # training: the loss alone, from chunks of logits
        expected = ref(sd, idx)
    assert none is None and no_logits is None
    assert logits.shape == (3, 16, 96)
    torch.testing.assert_close(logits, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        loss.double(), F.cross_entropy(expected.flatten(0, 1), targets.flatten())
    )
    # causal: changing a later token leaves earlier logits untouched
    idx2 = idx.clone()
    idx2[:, 10] = (idx2[:, 10] + 1) % 96
    with torch.no_grad():
        logits2, _ = model(idx2)
    torch.testing.assert_close(logits2[:, :10], logits[:, :10])
    assert not torch.allclose(logits2[:, 10:], logits[:, 10:])


def test_checkpoint_contract_round_trip() -> None:
    model = cp.GPT(small_config())
    ckpt = {"model": model.state_dict(), "model_config": dict(vars(model.config))}
    again = cp.GPT(cp.GPTConfig(**ckpt["model_config"]))
    again.load_state_dict(ckpt["model"])
    idx = torch.randint(0, 96, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(again(idx)[0], model(idx)[0])
