"""The trusted evaluator with the trained model out of its process: in logits workers when the
architecture is the agent's, and never the saved model source when it is the original.

Checkpoints are the real GPT of the tiny profile with fixed random weights (``make_checkpoint``);
hostile variants keep those weights and change only ``model_source.py``, as an agent's edited
regions (or code a worker imports) would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.codebase import CODEBASE_DIR, baseline_regions, splice_regions
from tests._fixtures.evaluation import logits_workers, make_checkpoint, run_evaluator

pytestmark = pytest.mark.integration

SOURCE = (CODEBASE_DIR / "custom_pretrain.py").read_text()


@pytest.fixture(scope="module")
def env(eval_env: dict[str, str]) -> dict[str, str]:
    # 8 validation windows keep each evaluation at a few seconds; the checks are the same
    return {**eval_env, "PB_VAL_WINDOWS": "8", "PB_WORKER_TIMEOUT": "120"}


@pytest.fixture(scope="module")
def honest_dir(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("honest")
    make_checkpoint(out, env, seed=1)
    return out


def variant(honest: Path, dest: Path, source: str) -> Path:
    """The honest checkpoint's weights with another model_source.py."""
    dest.mkdir(parents=True)
    for name in ("ckpt.pt", ".training_complete"):
        shutil.copy(honest / name, dest / name)
    (dest / "model_source.py").write_text(source)
    return dest


def evaluate(
    ckpt_dir: Path, out: Path, env: dict[str, str], workers: int = 0, kind: str = "train"
) -> tuple[Any, dict[str, Any] | None, str | None]:
    """(process, metrics.json or None, failure reason or None) of one evaluation."""
    job_env = {**env, "PB_CKPT_DIR": str(ckpt_dir), "PB_OUT_DIR": str(out)}
    if workers:
        worker_env = {k: env[k] for k in ("PB_PROFILE", "PB_SEED", "PB_DEVICE", "OMP_NUM_THREADS")}
        with logits_workers(ckpt_dir, out.parent / f"{out.name}-workers", workers, worker_env) as w:
            proc = run_evaluator(kind, {**job_env, **w})
    else:
        proc = run_evaluator(kind, job_env)
    metrics = out / "metrics.json"
    failure = out / "failure.json"
    return (
        proc,
        json.loads(metrics.read_text()) if metrics.is_file() else None,
        json.loads(failure.read_text())["reason"] if failure.is_file() else None,
    )


@pytest.fixture(scope="module")
def in_process(
    honest_dir: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    proc, metrics, reason = evaluate(honest_dir, tmp_path_factory.mktemp("in_process"), env)
    assert proc.returncode == 0 and reason is None, proc.stderr[-3000:]
    return metrics


def test_workers_give_the_in_process_numbers(
    in_process: dict[str, Any], honest_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    proc, metrics, reason = evaluate(honest_dir, tmp_path / "out", env, workers=3)
    assert proc.returncode == 0 and reason is None, proc.stderr[-3000:]
    assert metrics is not None and metrics["metrics"] == in_process["metrics"]
    details = json.loads((tmp_path / "out" / "eval_details.json").read_text())
    assert details["model"] == "logits workers"
    assert details["causality"]["workers"] == 3 and details["causality"]["probed"] == 64
    logs = [(tmp_path / "out-workers" / f"{i}.log").read_text() for i in range(3)]
    assert "served" in logs[1] and "served" in logs[2]  # both fresh workers got probes


# --- the agent's architecture: only through workers, checked -----------------------------------

BLOCK_HEAD = """class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
"""
PEEKS_AHEAD = (
    BLOCK_HEAD
    + """\
        x = x + 0.5 * torch.roll(x, shifts=-1, dims=1)  # position t sees t + 1
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
"""
)
REMEMBERS = (
    "_MEMORY = []\n\n\n"
    + BLOCK_HEAD
    + """\
        extra = _MEMORY[-1] if _MEMORY else 0.0  # the previous call's input: earlier requests leak
        _MEMORY.append(float(x.mean()))
        x = x + self.attn(self.ln_1(x)) + extra * torch.arange(x.size(-1), device=x.device)
        return x + self.mlp(self.ln_2(x))
"""
)
GOES_NAN = (
    BLOCK_HEAD
    + """\
        x = x + self.attn(self.ln_1(x))
        return (x + self.mlp(self.ln_2(x))) * float("nan")
"""
)
DIES = (
    "_CALLS = [0]\n\n\n"
    + BLOCK_HEAD
    + """\
        _CALLS[0] += 1
        if _CALLS[0] > 4 * 3:  # four blocks a forward: the worker dies in its fourth request
            os._exit(3)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
"""
)
# code a worker imports can take the worker over: here it answers with a column too few
GARBAGE = """

import pb_logits as _wire

_send = _wire.send_response
_wire.send_response = lambda sock, hidden: _send(sock, hidden[:, :-1])
"""


@pytest.mark.parametrize(
    ("case", "source", "code", "message"),
    [
        (
            "peeks ahead",
            splice_regions(SOURCE, {"block": PEEKS_AHEAD}),
            2,
            "the model is not causal",
        ),
        ("remembers requests", splice_regions(SOURCE, {"block": REMEMBERS}), 2, "not causal"),
        ("returns NaN", splice_regions(SOURCE, {"block": GOES_NAN}), 2, "non-finite hidden states"),
        ("garbage shapes", SOURCE + GARBAGE, 2, "sent an answer that is not valid"),
        ("dies mid-pass", splice_regions(SOURCE, {"block": DIES}), 1, "stopped answering"),
        (
            "fails to import",
            SOURCE + "\nraise ImportError('nope')\n",
            2,
            "could not load the model",
        ),
    ],
)
def test_a_bad_worker_model_is_refused_cleanly(
    honest_dir: Path,
    env: dict[str, str],
    tmp_path: Path,
    case: str,
    source: str,
    code: int,
    message: str,
) -> None:
    ckpt = variant(honest_dir, tmp_path / "ckpt", source)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text('{"stale": true}')
    proc, metrics, reason = evaluate(ckpt, tmp_path / "out", env, workers=3)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert metrics is None  # the stale file is gone and no new one was written
    assert reason is not None and message in reason, reason
    assert reason.startswith("refused: " if code == 2 else "failed: ")


def test_one_worker_is_not_enough(honest_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    proc, metrics, reason = evaluate(honest_dir, tmp_path / "out", env, workers=1)
    assert proc.returncode == 2 and metrics is None
    assert reason is not None and "at least 2 logits workers" in reason


# --- the original architecture: in process, the saved source never imported --------------------


def test_in_process_never_imports_the_model_source(
    in_process: dict[str, Any], honest_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    poisoned = splice_regions(
        SOURCE,
        {
            "get_lr": "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
            "    return learning_rate\n\n\n"
            "print('TRAIN_METRICS: step=100, train_loss=0.01, val_loss=0.01', flush=True)\n"
            "raise RuntimeError('importing this file breaks the evaluator')\n"
        },
    )
    ckpt = variant(honest_dir, tmp_path / "ckpt", poisoned)
    proc, metrics, reason = evaluate(ckpt, tmp_path / "out", env)
    assert proc.returncode == 0 and reason is None, proc.stderr[-3000:]
    assert "TRAIN_METRICS" not in proc.stdout
    assert metrics is not None and metrics["metrics"] == in_process["metrics"]


@pytest.mark.parametrize("baseline", ["rmsnorm", "rmsnorm_parallel"])
def test_in_process_refuses_an_agent_architecture(
    honest_dir: Path, env: dict[str, str], tmp_path: Path, baseline: str
) -> None:
    regions = baseline_regions("llm-pretrain-normalization", baseline)
    ckpt = variant(honest_dir, tmp_path / "ckpt", splice_regions(SOURCE, regions))
    proc, metrics, reason = evaluate(ckpt, tmp_path / "out", env)
    assert proc.returncode == 2 and metrics is None
    assert reason is not None and "an architecture of its own" in reason
    assert "logits workers" in reason
