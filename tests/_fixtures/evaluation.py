"""Shared pytest fixtures of the evaluation area: checkpoints and logits workers for the
trusted evaluator.

``make_checkpoint`` writes what a finished training run leaves in its output directory
(``ckpt.pt``, ``model_source.py``, ``.training_complete``) for the configuration that
``pb_config.resolve_run_config`` gives an environment. The model source is the codebase's
``custom_pretrain.py`` when it exists, else ``TOY_MODEL_SOURCE`` (a small GPT that follows the
model contract of docs/INTERFACES.md section 1). ``logits_workers`` starts the worker processes
of an evaluation job as the harness does (``scripts/logits_worker.sh``, one socket directory
each under ``$PB_WORKERS_DIR``), without a sandbox.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.codebase import CODEBASE_DIR, codebase_module

TOY_MODEL_SOURCE = '''\
"""A small GPT-2 following the model contract (test fixture of the evaluator)."""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 50304
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = False


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=CAUSAL)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp(self.ln_2(x))


CAUSAL = True


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss
'''


def model_source_text() -> str:
    """The source a fixture checkpoint is built from: the real training file when present."""
    real = CODEBASE_DIR / "custom_pretrain.py"
    return real.read_text() if real.is_file() else TOY_MODEL_SOURCE


def import_source(path: Path, name: str = "pb_fixture_model_source") -> Any:
    """Import a model source file as a module (the codebase folder on sys.path for its siblings)."""
    codebase_module("pb_config")  # puts the codebase folder on sys.path
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_checkpoint(
    out_dir: Path,
    environ: dict[str, str],
    *,
    source: str | None = None,
    seed: int = 0,
    edit: Callable[[dict[str, Any]], None] | None = None,
    marker: bool = True,
) -> dict[str, Any]:
    """Write ckpt.pt, model_source.py and the marker of a 'finished' run for environ's profile.

    ``edit`` may change the checkpoint dict before it is saved (to forge a bad one).
    Returns the saved checkpoint dict.
    """
    import torch

    pb_config = codebase_module("pb_config")
    cfg = pb_config.resolve_run_config(environ)
    out_dir.mkdir(parents=True, exist_ok=True)
    src_path = out_dir / "model_source.py"
    src_path.write_text(source if source is not None else model_source_text())
    module = import_source(src_path, name=f"pb_fixture_src_{abs(hash((str(out_dir), seed)))}")
    torch.manual_seed(seed)
    model_config = pb_config.model_config(cfg)
    model = module.GPT(module.GPTConfig(**model_config))
    tokens = cfg["max_iters"] * cfg["tokens_per_iter"]
    ckpt: dict[str, Any] = {
        "model": model.state_dict(),
        "model_config": model_config,
        "train_config": {
            k: cfg[k]
            for k in (
                "profile",
                "seed",
                "max_iters",
                "batch_size",
                "grad_accum",
                "block_size",
                "tokens_per_iter",
                "val_windows",
            )
        },
        "iter_num": cfg["max_iters"],
        "tokens_seen": tokens,
    }
    if edit is not None:
        edit(ckpt)
    torch.save(ckpt, out_dir / "ckpt.pt")
    if marker:
        (out_dir / ".training_complete").write_text(
            json.dumps({"iters": cfg["max_iters"], "tokens": tokens, "seconds": 1.0})
        )
    return ckpt


def child_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (a load-independent clock)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_evaluator(
    kind: str, environ: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python evaluate.py --kind KIND`` in the codebase folder, as the job scripts do.

    ``environ`` names the checkpoint (``PB_CKPT_DIR``) and the output (``PB_OUT_DIR``)."""
    env = {**os.environ, **environ}
    return subprocess.run(
        [sys.executable, "evaluate.py", "--kind", kind],
        cwd=CODEBASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def logits_workers(
    ckpt_dir: Path, workers_dir: Path, count: int, environ: dict[str, str]
) -> Iterator[dict[str, str]]:
    """Start ``count`` logits workers serving ``ckpt_dir``; yields the evaluator's variables
    (``PB_WORKERS_DIR``, ``PB_WORKERS``). The workers are killed on exit, as the harness does
    when the job ends; their logs are ``<workers_dir>/<i>.log``."""
    procs = []
    try:
        for i in range(count):
            (workers_dir / str(i)).mkdir(parents=True, exist_ok=True)
            env = {
                **os.environ,
                **environ,
                "PB_WORKER_DIR": str(workers_dir / str(i)),
                "PB_WORKER_INDEX": str(i),
                "PB_CKPT_DIR": str(ckpt_dir),
                "PYTHON": sys.executable,
            }
            for var in ("PB_DATA_DIR", "PB_EVAL_DATA_DIR", "PB_TOKENIZER_DIR", "PB_OUT_DIR"):
                env.pop(var, None)  # a worker gets no data
            with open(workers_dir / f"{i}.log", "w") as log:
                procs.append(
                    subprocess.Popen(
                        ["bash", "scripts/logits_worker.sh"],
                        cwd=CODEBASE_DIR,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield {"PB_WORKERS_DIR": str(workers_dir), "PB_WORKERS": str(count)}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def eval_env(pb_data_paths: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Base environment of the evaluator for the tiny profile, offline, on CPU."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    return {
        "PB_PROFILE": "tiny",
        "PB_SEED": "42",
        "PB_DEVICE": "cpu",
        "PB_DATA_DIR": str(pb_data_paths.data_dir),
        "PB_TOKENIZER_DIR": str(pb_data_paths.tokenizer_dir),
        "PB_EVAL_DATA_DIR": str(pb_data_paths.eval_data_dir),
        "PB_EVAL_SOURCE": "offline",
        "HF_HOME": str(hf_home),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="session")
def gpt2_encoding(pb_tokenizer_dir: Path) -> Any:
    """The sha256-verified GPT-2 tiktoken encoding."""
    return codebase_module("pb_tokenizer").get_gpt2_encoding(pb_tokenizer_dir)
