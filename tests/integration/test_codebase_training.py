"""Integration tests of the pretraining codebase: real CPU training runs on the offline corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sandbox import DataPaths
from tests._fixtures.codebase import CODEBASE_DIR, codebase_module, copy_codebase

pytestmark = pytest.mark.integration

pb_data = codebase_module("pb_data")

OUTPUTS = ("ckpt.pt", "model_source.py", "curve.jsonl", ".training_complete")


def train(
    codebase: Path,
    out_dir: Path,
    data: DataPaths,
    *,
    nproc: int = 1,
    timeout: int = 300,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run custom_pretrain.py on CPU in codebase with PB_* variables; returns the process."""
    full_env = {
        **os.environ,
        "PB_PROFILE": "tiny",
        "PB_DEVICE": "cpu",
        "PB_COMPILE": "0",
        "PB_DATA_DIR": str(data.data_dir),
        "PB_TOKENIZER_DIR": str(data.tokenizer_dir),
        "PB_OUT_DIR": str(out_dir),
        **env,
    }
    cmd = [sys.executable, "custom_pretrain.py"]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "custom_pretrain.py",
        ]
    return subprocess.run(
        cmd, cwd=codebase, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def read_curve(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "curve.jsonl").read_text().splitlines()]


# --- a whole tiny run ---------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_profile_trains_and_writes_every_output(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    out = tmp_path / "out"
    proc = train(CODEBASE_DIR, out, pb_data_paths, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert not (out / "failure.json").exists()
    assert (out / "model_source.py").read_text() == (
        CODEBASE_DIR / "custom_pretrain.py"
    ).read_text()

    curve = read_curve(out)
    assert [r["step"] for r in curve] == list(range(1, 101))
    for row in curve:
        assert {"step", "train_loss", "lr", "tokens", "dt_ms", "tokens_per_s", "mfu"} <= set(row)
    evals = [r for r in curve if "val_loss" in r]
    assert [r["step"] for r in evals] == [50, 100]
    start, final = curve[0]["train_loss"], evals[-1]["val_loss"]
    assert start > 10.5  # ln(50304) = 10.83: an untrained model
    assert final < 7.5 and final < start - 3.0, (start, final)

    metrics_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("TRAIN_METRICS: ")]
    assert metrics_lines[-1].startswith("TRAIN_METRICS: step=100, train_loss=")
    assert f"val_loss={final:.4f}" in metrics_lines[-1]
    progress = [
        json.loads(ln.split(" ", 1)[1])
        for ln in proc.stdout.splitlines()
        if ln.startswith("PB_PROGRESS ")
    ]
    assert progress[-1]["step"] == progress[-1]["max_steps"] == 100

    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
    assert ckpt["iter_num"] == 100 and ckpt["tokens_seen"] == 100 * 8 * 64
    tc = ckpt["train_config"]
    assert (tc["profile"], tc["seed"], tc["max_iters"], tc["block_size"], tc["val_windows"]) == (
        "tiny",
        42,
        100,
        64,
        32,
    )
    done = json.loads((out / ".training_complete").read_text())
    assert done["iters"] == 100 and done["tokens"] == 51200 and done["seconds"] > 0

    # the checkpoint reloads through the model contract and reproduces the logged val loss
    cp = codebase_module("custom_pretrain")
    model = cp.GPT(cp.GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    windows = pb_data.val_windows(pb_data_paths.data_dir, 64, 32)
    val = cp.estimate_val_loss(
        model, windows, 16, "cpu", torch.autocast("cpu", enabled=False), 0, 1
    )
    assert val == pytest.approx(final, abs=1e-4)


# --- determinism --------------------------------------------------------------------------


def test_same_seed_same_curve_and_other_seed_differs(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    losses = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        proc = train(
            CODEBASE_DIR,
            tmp_path / name,
            pb_data_paths,
            PB_PROFILE="micro",
            PB_SEED=seed,
            PB_MAX_ITERS="4",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        losses[name] = [(r["train_loss"], r.get("val_loss")) for r in read_curve(tmp_path / name)]
    assert losses["a"] == losses["b"]
    assert losses["a"] != losses["c"]


# --- failures stop the run with a reason --------------------------------------------------

NAN_SCHEDULE = """def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it >= 3:
        return float("nan")
    return learning_rate
"""

NAN_BLOCK = """class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)

    def forward(self, x):
        return x + self.attn(self.ln_1(x)) * math.inf
"""


def assert_failed(proc: subprocess.CompletedProcess[str], out: Path, *needles: str) -> str:
    assert proc.returncode != 0
    assert not (out / ".training_complete").exists()
    reason = json.loads((out / "failure.json").read_text())["reason"]
    for needle in needles:
        assert needle in reason, reason
    assert reason in proc.stderr
    return reason


def test_nan_schedule_stops_before_training(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    code = copy_codebase(tmp_path / "code", {"get_lr": NAN_SCHEDULE})
    out = tmp_path / "out"
    proc = train(code, out, pb_data_paths, PB_PROFILE="micro", PB_MAX_ITERS="8", timeout=120)
    reason = assert_failed(proc, out, "get_lr(3, ", "nan")
    assert "finite" in reason
    curve = out / "curve.jsonl"
    assert not curve.exists() or read_curve(out) == []  # stopped before the first step


def test_non_finite_loss_stops_at_the_first_step(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    code = copy_codebase(tmp_path / "code", {"block": NAN_BLOCK})
    out = tmp_path / "out"
    proc = train(code, out, pb_data_paths, PB_PROFILE="micro", timeout=120)
    assert_failed(proc, out, "non-finite loss at step 1", "lr=")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ('CONFIG_OVERRIDES = {"max_iters": 1}\n', "only"),
        ('CONFIG_OVERRIDES = {"learning_rate": -0.1}\n', "learning_rate"),
    ],
)
def test_bad_config_overrides_fail_clearly(
    tmp_path: Path, pb_data_paths: DataPaths, overrides: str, needle: str
) -> None:
    code = copy_codebase(tmp_path / "code", {"config_overrides": overrides})
    out = tmp_path / "out"
    proc = train(code, out, pb_data_paths, PB_PROFILE="micro", timeout=120)
    assert_failed(proc, out, "CONFIG_OVERRIDES", needle)


def test_a_region_that_is_not_a_literal_is_refused_unrun(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    rigged = (
        "class _Rigged(float):\n"
        "    def __le__(self, other):\n"
        "        return True\n\n\n"
        'CONFIG_OVERRIDES = {"learning_rate": _Rigged(50.0)}\n'
    )
    code = copy_codebase(tmp_path / "code", {"config_overrides": rigged})
    out = tmp_path / "out"
    proc = train(code, out, pb_data_paths, PB_PROFILE="micro", timeout=120)
    assert_failed(proc, out, "config_overrides region must be exactly one assignment")


def test_the_harness_json_is_the_overrides(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    code = copy_codebase(
        tmp_path / "code", {"config_overrides": 'CONFIG_OVERRIDES = {"learning_rate": 0.5}\n'}
    )
    out = tmp_path / "out"
    overrides = '{"learning_rate": 0.001, "min_lr": 0.001}'
    proc = train(code, out, pb_data_paths, PB_PROFILE="micro", PB_CONFIG_OVERRIDES=overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["lr"] for r in read_curve(out)] == pytest.approx([1e-3] * 3)
    tc = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)["train_config"]
    assert tc["config_overrides"] == {"learning_rate": 0.001, "min_lr": 0.001}
    assert (tc["learning_rate"], tc["lr_schedule"]) == (0.001, "")
    assert tc["data_fingerprint"] == pb_data.data_fingerprint(pb_data_paths.data_dir)
    for bad, needle in (('{"learning_rate": true}', "learning_rate"), ("[]", "must be a dict")):
        proc = train(
            code, tmp_path / "bad", pb_data_paths, PB_PROFILE="micro", PB_CONFIG_OVERRIDES=bad
        )
        assert_failed(proc, tmp_path / "bad", needle)


def test_config_overrides_change_the_schedule(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    code = copy_codebase(
        tmp_path / "code",
        {"config_overrides": 'CONFIG_OVERRIDES = {"learning_rate": 1e-3, "min_lr": 1e-3}\n'},
    )
    out = tmp_path / "out"
    proc = train(code, out, pb_data_paths, PB_PROFILE="micro")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["lr"] for r in read_curve(out)] == pytest.approx([1e-3] * 3)


# --- DDP with global gradient accumulation ------------------------------------------------


def test_ddp_two_cpu_processes_share_the_accumulation(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    out = tmp_path / "out"
    proc = train(
        CODEBASE_DIR,
        out,
        pb_data_paths,
        nproc=2,
        timeout=240,
        PB_MAX_ITERS="2",
        PB_BATCH_SIZE="2",
        PB_GRAD_ACCUM="4",
        PB_EVAL_INTERVAL="2",
        OMP_NUM_THREADS="1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "512 tokens/iter = 2 x 2 x 2 ranks x 64" in proc.stdout
    curve = read_curve(out)
    assert [r["tokens"] for r in curve] == [512, 1024]
    assert "val_loss" in curve[-1]
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_config"]["world_size"] == 2


def test_a_different_micro_batch_split_trains_the_same_model(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    """3 iterations of 8 sequences as 8 x 1 and as 2 x 4: the same rows in the same order and the
    same loss scaling, so the same losses and weights up to float noise (fp32 on CPU)."""
    runs = {}
    for batch in ("8", "2"):
        out = tmp_path / f"b{batch}"
        proc = train(
            CODEBASE_DIR,
            out,
            pb_data_paths,
            PB_MAX_ITERS="3",
            PB_EVAL_INTERVAL="3",
            PB_VAL_WINDOWS="4",
            PB_BATCH_SIZE=batch,
            OMP_NUM_THREADS="1",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        marker = json.loads((out / ".training_complete").read_text())
        assert (marker["micro_batch"], marker["grad_accum"]) == (int(batch), 8 // int(batch))
        assert marker["memory_plan"] is None and marker["peak_memory_bytes"] is None  # CPU
        ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
        runs[batch] = ([r["train_loss"] for r in read_curve(out)], ckpt["model"])
    (losses_8, weights_8), (losses_2, weights_2) = runs["8"], runs["2"]
    assert losses_2 == pytest.approx(losses_8, rel=1e-6)
    # AdamW divides each gradient by its own running magnitude, so where a gradient is ~1e-8
    # (rare tokens' embeddings) float noise moves an update by a fraction of lr (2e-3 here): a
    # few elements (at most 1 in 10,000) may differ by up to 1e-4, all others by at most 1e-6
    diff = torch.cat([(weights_2[name] - w).abs().flatten() for name, w in weights_8.items()])
    print(
        f"weights: max difference {diff.max().item():.2e}, {(diff > 1e-6).sum().item()} of {diff.numel()} above 1e-6"
    )
    assert diff.max().item() <= 1e-4
    assert (diff > 1e-6).sum().item() <= 1e-4 * diff.numel()


# --- data preparation feeds training ------------------------------------------------------


def _documents(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    words = [
        "the",
        "a",
        "river",
        "stone",
        "light",
        "house",
        "quiet",
        "morning",
        "field",
        "window",
        "letter",
        "garden",
        "over",
        "under",
    ]
    return [" ".join(rng.choice(words, size=60)).capitalize() + "." for _ in range(n)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_prepare_data_local_files_feed_training(
    tmp_path: Path, pb_data_paths: DataPaths, fmt: str
) -> None:
    docs = _documents(200)
    if fmt == "jsonl":
        src = tmp_path / "docs.jsonl"
        src.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        src = tmp_path / "docs.parquet"
        pq.write_table(pa.table({"text": docs, "id": list(range(len(docs)))}), src)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PB_TOKENIZER_DIR": str(pb_data_paths.tokenizer_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "prepare_data.py",
            "--out",
            str(data_dir),
            "--files",
            str(src),
            "--val-tokens",
            "500",
            "--shard-tokens",
            "4000",
            "--workers",
            "2",
            "--quiet",
        ],
        cwd=CODEBASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    meta = pb_data.verify_data_dir(data_dir)
    assert meta["documents"] == 200 and meta["source"] == f"local:{src.name}"
    assert len(pb_data.shard_paths(data_dir, "train")) >= 2
    # the shards hold exactly the GPT-2 tokens of the documents, each after <|endoftext|>
    enc = codebase_module("pb_tokenizer").get_gpt2_encoding(pb_data_paths.tokenizer_dir)
    expected = np.concatenate([[50256, *enc.encode_ordinary(d)] for d in docs])
    got = np.concatenate(
        [pb_data.read_shard(p) for s in ("val", "train") for p in pb_data.shard_paths(data_dir, s)]
    )
    assert got.tolist() == expected.tolist()
    assert meta["splits"]["val"]["tokens"] >= 500

    data = DataPaths(data_dir=data_dir, tokenizer_dir=pb_data_paths.tokenizer_dir)
    out = tmp_path / "out"
    run = train(CODEBASE_DIR, out, data, PB_PROFILE="micro")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / ".training_complete").is_file()


def test_prepare_data_bad_input_keeps_existing_data(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(pb_data_paths.data_dir, data_dir)
    before = pb_data.data_fingerprint(data_dir)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    env = {**os.environ, "PB_TOKENIZER_DIR": str(pb_data_paths.tokenizer_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "prepare_data.py",
            "--out",
            str(data_dir),
            "--files",
            str(bad),
            "--quiet",
            "--workers",
            "1",
        ],
        cwd=CODEBASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "has no string field 'text'" in proc.stderr
    assert pb_data.verify_data_dir(data_dir)["sha256"] == before
    assert not (tmp_path / "data.partial").exists()


# --- the offline corpus ---------------------------------------------------------------------


def test_offline_corpus_is_deterministic(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    env = {**os.environ, "PB_TOKENIZER_DIR": str(pb_data_paths.tokenizer_dir)}
    metas = []
    for name in ("a", "b"):
        proc = subprocess.run(
            [sys.executable, "offline_corpus.py", "--out", str(tmp_path / name)],
            cwd=CODEBASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        metas.append(pb_data.verify_data_dir(tmp_path / name))
    assert metas[0]["sha256"] == metas[1]["sha256"]
    assert metas[0]["text_sha256"] == metas[1]["text_sha256"]
    assert metas[0]["characters"] > 1_000_000
    assert metas[0]["splits"]["val"]["tokens"] > 32 * 65
    # real English: the most frequent tokens are the usual function words
    enc = codebase_module("pb_tokenizer").get_gpt2_encoding(pb_data_paths.tokenizer_dir)
    tokens = pb_data.read_shard(tmp_path / "a" / "train_000000.bin")
    top = np.bincount(tokens).argsort()[::-1][:25]
    words = {enc.decode([int(t)]).strip() for t in top}
    assert {"the", "of", "to", "a", "is"} <= words, words


# --- the training job's script ---------------------------------------------------------------


def run_script(
    code: Path, out: Path, data: DataPaths, script: str = "train_tiny.sh", **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "PB_DEVICE": "cpu",
        "PB_DATA_DIR": str(data.data_dir),
        "PB_TOKENIZER_DIR": str(data.tokenizer_dir),
        "PB_OUT_DIR": str(out),
        "PYTHON": sys.executable,
        **env,
    }
    return subprocess.run(
        ["bash", f"scripts/{script}"],
        cwd=code,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_train_tiny_script_only_trains(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    out = tmp_path / "train"
    proc = run_script(CODEBASE_DIR, out, pb_data_paths, PB_MAX_ITERS="4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert not (out / "metrics.json").exists()  # evaluation is a job of its own
    # which scores the same fixed validation windows that training logged
    proc = run_script(
        CODEBASE_DIR,
        tmp_path / "eval",
        pb_data_paths,
        "eval_tiny.sh",
        PB_MAX_ITERS="4",
        PB_CKPT_DIR=str(out),
        PB_EVAL_DATA_DIR=str(pb_data_paths.eval_data_dir),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["kind"] == "train" and metrics["profile"] == "tiny"
    assert metrics["metrics"]["val_loss"] == pytest.approx(
        read_curve(out)[-1]["val_loss"], abs=1e-6
    )


def test_train_tiny_script_fails_when_training_fails(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    code = copy_codebase(tmp_path / "code", {"get_lr": NAN_SCHEDULE})
    out = tmp_path / "out"
    proc = run_script(code, out, pb_data_paths, PB_MAX_ITERS="8")
    assert proc.returncode != 0
    assert (out / "failure.json").is_file()
    assert not (out / ".training_complete").exists()


def test_job_scripts_refuse_another_profile(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    for script in ("train_tiny.sh", "eval_tiny.sh", "lm_eval_tiny.sh"):
        proc = run_script(CODEBASE_DIR, tmp_path / "out", pb_data_paths, script, PB_PROFILE="full")
        assert proc.returncode == 2, script
        assert f"{script} runs the tiny profile" in proc.stderr


# --- the tokenizer from PyPI ----------------------------------------------------------------


def test_tokenizer_fetch_cli_from_the_whisper_sdist(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "pb_tokenizer.py", "--fetch", str(tmp_path / "tok")],
        cwd=CODEBASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "pip download" in proc.stderr:
        pytest.skip(f"PyPI unreachable, cannot fetch openai-whisper: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    assert "[15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0]" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["gpt2.tiktoken"]
    tok = codebase_module("pb_tokenizer")
    assert pb_data.file_sha256(tmp_path / "tok" / "gpt2.tiktoken") == tok.GPT2_TIKTOKEN_SHA256


# --- on a GPU (opt-in) ----------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_run_compiles_and_reports_mfu(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    out = tmp_path / "out"
    proc = train(
        CODEBASE_DIR,
        out,
        pb_data_paths,
        PB_DEVICE="cuda",
        PB_COMPILE="1",
        PB_MAX_ITERS="20",
        PB_EVAL_INTERVAL="10",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = read_curve(out)
    assert curve[-1]["val_loss"] < curve[0]["train_loss"]
    name = torch.cuda.get_device_name()
    if any(gpu in name for gpu in ("H100", "H200", "A100")):
        assert all(r["mfu"] is not None and 0 < r["mfu"] < 1 for r in curve)
