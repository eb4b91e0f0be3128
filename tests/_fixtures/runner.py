"""Shared pytest fixtures of the runner area.

`fake_task_root` builds a task root with a torch-free stand-in of the nanoGPT codebase: the same
regions, jobs (schedule → train → eval, lm-eval), environment variables and output files
(``schedule.json``, ``curve.jsonl``, ``metrics.json``, ``PB_PROGRESS`` lines), but "training" is
arithmetic on the learning-rate table. Everything else is real: env sessions, the preflight job,
the Executor and its LocalBackend sandboxes.
`runner_env` points PRETRAINBENCH_* at it (and at a home with a valid tokenizer stand-in).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests._fixtures.worlds import (
    EVAL_SCRIPT,
    EVALUATE,
    LM_EVAL_SCRIPT,
    METRICS,
    PB_DATA,
    TaskWorld,
    lr_jobs,
    lr_task_spec,
    make_task_world,
    metric_specs,
)

TASK_ID = "fake-lr"

CUSTOM_PRETRAIN = '''\
"""Stand-in for custom_pretrain.py: the regions of the real file, no torch."""
import json
import math
import os
import time

import pb_config

# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    ratio = min(1.0, (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)
# ── EDITABLE REGION END: get_lr ──

# ── EDITABLE REGION START: config_overrides ──
CONFIG_OVERRIDES = {}
# ── EDITABLE REGION END: config_overrides ──


if __name__ == "__main__":
    # training reads the schedule job's table and the overrides as data, never this file's code
    cfg = pb_config.resolve_run_config(dict(os.environ))
    out = os.environ["PB_OUT_DIR"]
    table = os.path.join(os.environ["PB_NEEDS_DIR"], os.environ["PB_LR_SCHEDULE_JOB"], "schedule.json")
    lrs = json.load(open(table))["lr"]
    loss, n = 5.0, cfg["max_iters"]
    assert len(lrs) == n
    with open(os.path.join(out, "curve.jsonl"), "w") as curve:
        for it in range(n):
            lr = lrs[it]
            loss = loss - 40.0 * lr * (1.0 - it / (2.0 * n)) + 0.001 * (cfg["seed"] % 5)
            curve.write(json.dumps({"step": it, "train_loss": loss, "lr": lr}) + "\\n")
            curve.flush()
            print("PB_PROGRESS " + json.dumps({"step": it + 1, "max_steps": n, "loss": loss}), flush=True)
            time.sleep(cfg["sleep_s"])
    with open(os.path.join(out, "ckpt.json"), "w") as fh:
        json.dump({"final_loss": loss}, fh)
    print(f"TRAIN_METRICS: step={n}, train_loss={loss:.4f}, val_loss={loss + 0.05:.4f}", flush=True)
'''

PB_CONFIG = '''\
"""Stand-in for pb_config.py."""
import json
import os

SLEEP_S = {sleep_s!r}
PROFILES = {{"micro": 3, "tiny": 12, "small": 12, "full": 12}}


def resolve_run_config(environ):
    profile = environ.get("PB_PROFILE", "tiny")
    n = PROFILES[profile]
    cfg = {{"profile": profile, "seed": int(environ.get("PB_SEED", "42")), "n_layer": 1,
           "n_head": 1, "n_embd": 8, "block_size": 8, "vocab_size": 64, "max_iters": n,
           "batch_size": 1, "grad_accum": 1, "tokens_per_iter": 8, "learning_rate": 0.01,
           "min_lr": 0.001, "warmup_iters": 2, "lr_decay_iters": n, "weight_decay": 0.1,
           "grad_clip": 1.0, "eval_interval": n, "val_windows": 2,
           "sleep_s": 0.0 if profile == "micro" else SLEEP_S}}
    return apply_overrides(cfg, json.loads(environ.get("PB_CONFIG_OVERRIDES") or "{{}}"))


OVERRIDABLE = {{"learning_rate": "a number", "min_lr": "a number", "warmup_iters": "a number"}}


def apply_overrides(cfg, overrides):
    out = dict(cfg)
    for key, value in overrides.items():
        if key not in OVERRIDABLE or type(value) not in (int, float):
            raise ValueError(f"CONFIG_OVERRIDES[{{key!r}}] = {{value!r}} is not allowed")
        out[key] = value
    return out
'''

SCHEDULE = '''\
"""Stand-in for schedule.py: get_lr of the edited file over the run's iterations."""
import json
import os
import traceback

import pb_config

out = os.environ["PB_OUT_DIR"]
try:
    import custom_pretrain

    cfg = pb_config.resolve_run_config(dict(os.environ))
    args = (cfg["warmup_iters"], cfg["lr_decay_iters"], cfg["learning_rate"], cfg["min_lr"])
    lrs = [float(custom_pretrain.get_lr(it, *args)) for it in range(cfg["max_iters"])]
    if not all(lr >= 0 for lr in lrs):
        raise ValueError("get_lr returned a negative learning rate")
except Exception as e:
    json.dump({"reason": traceback.format_exception_only(type(e), e)[-1].strip()},
              open(os.path.join(out, "failure.json"), "w"))
    raise SystemExit(1)
json.dump({"lr": lrs}, open(os.path.join(out, "schedule.json"), "w"))
'''


def _jobs(suffix: str, gpus: int) -> list[dict[str, Any]]:
    """The fake task's jobs of one profile, wired as the real task's are."""
    inputs = (["eval_data"], ["eval_data"])
    return lr_jobs(
        suffix,
        gpus=gpus,
        time_limit="0:05:00",
        eval_time_limit="0:05:00",
        inputs=inputs,
        eval_gpus=min(gpus, 1),
    )


TASK_SPEC = lr_task_spec(
    TASK_ID,
    "Fake learning-rate task (runner tests)",
    "fakegpt",
    profiles={
        "tiny": {
            "jobs": _jobs("tiny", 0),
            "seeds": {"test": [42], "final": [42]},
            "recipe": {"model": "fake", "hardware": "CPU"},
        },
        "full": {"jobs": _jobs("345m", 2), "recipe": {"model": "fake", "hardware": "2 GPUs"}},
    },
    metrics=metric_specs(*METRICS),
    budgets={"max_steps": 8, "max_tests": 2},
    seeds={"test": [42], "final": [42]},
    baselines=["cosine", "constant"],
)

DESCRIPTION = """\
# Fake learning-rate task

Change `get_lr` in `{file}` ({lines[get_lr]}) and `CONFIG_OVERRIDES`
({lines[config_overrides]}). Budget: {max_steps} steps, {max_tests} tests. Profile {profile}.

{jobs_table}
"""

BASELINE_COSINE = '''"""cosine — the unmodified default (reference)."""
'''

BASELINE_CONSTANT = '''"""constant — warmup then a constant learning rate (test baseline)."""

# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    return learning_rate
# ── EDITABLE REGION END: get_lr ──
'''


def build_fake_task_root(root: Path, *, sleep_s: float = 0.0) -> TaskWorld:
    """Write the fake task world under ``root`` with a prepared home; ``sleep_s`` per training
    iteration."""
    scripts = {
        "schedule.sh": "set -e\npython schedule.py\n",
        "train.sh": "set -e\npython custom_pretrain.py\n",
        "eval.sh": EVAL_SCRIPT,
        "lm_eval.sh": LM_EVAL_SCRIPT,
    }
    codebase = {
        "custom_pretrain.py": CUSTOM_PRETRAIN,
        "pb_config.py": PB_CONFIG.format(sleep_s=sleep_s),
        "pb_data.py": PB_DATA,
        "evaluate.py": EVALUATE,
        "schedule.py": SCHEDULE,
    } | {f"scripts/{name}": text for name, text in scripts.items()}
    world = make_task_world(
        root,
        TASK_SPEC,
        codebase=codebase,
        description=DESCRIPTION,
        baselines={"cosine": BASELINE_COSINE, "constant": BASELINE_CONSTANT},
    )
    prepare_fake_home(world.home)
    return world


def prepare_fake_home(home: Path) -> None:
    """A home that `runner._setup.setup_ready` accepts: the real tokenizer file if this machine
    has it, a one-shard stand-in corpus and a one-row stand-in evaluation set with its
    manifest (the fake codebase reads no data)."""
    tok = home / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    real = Path.home() / ".cache" / "pretrainbench" / "tokenizer" / "gpt2.tiktoken"
    if real.is_file():
        shutil.copy(real, tok / "gpt2.tiktoken")
    data = home / "data" / "offline"
    data.mkdir(parents=True, exist_ok=True)
    shards = {}
    for name in ("train_000000.bin", "val_000000.bin"):
        payload = bytes(range(64)) * 4
        (data / name).write_bytes(payload)
        shards[name] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    meta = {
        "shards": shards,
        "text_sha256": "stand-in",
        "heldout_documents": 1,
        "sha256": "stand-in",
    }
    (data / "meta.json").write_text(json.dumps(meta))
    heldout = home / "data" / "offline-heldout"
    heldout.mkdir(parents=True, exist_ok=True)
    held = '{"id": 5, "text": "A held-out document."}\n'
    (heldout / "heldout.jsonl").write_text(held)
    held_sha = hashlib.sha256(held.encode()).hexdigest()
    (heldout / "meta.json").write_text(
        json.dumps({"corpus_text_sha256": "stand-in", "sha256": held_sha})
    )
    evals = home / "data" / "offline-eval"
    evals.mkdir(parents=True, exist_ok=True)
    (evals / "arc_easy.jsonl").write_text("{}\n")
    sets = {
        "arc_easy": {
            "file": "arc_easy.jsonl",
            "items": 1,
            "sha256": hashlib.sha256(b"{}\n").hexdigest(),
        }
    }
    manifest = {"heldout_sha256": held_sha, "train_sha256": "stand-in", "sets": sets}
    (evals / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def fake_task_root(tmp_path: Path) -> TaskWorld:
    """A fresh fake task root with an instant "training" run."""
    return build_fake_task_root(tmp_path / "root")


@pytest.fixture
def runner_env(
    fake_task_root: TaskWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> TaskWorld:
    """PRETRAINBENCH_* variables pointing at the fake task root; cwd is a fresh directory."""
    monkeypatch.setenv("PRETRAINBENCH_TASKS_DIR", str(fake_task_root.tasks_dir))
    monkeypatch.setenv("PRETRAINBENCH_BASELINES_DIR", str(fake_task_root.baselines_dir))
    monkeypatch.setenv("PRETRAINBENCH_HOME", str(fake_task_root.home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return fake_task_root


# ── a chat-completions server on loopback that replays a script ─────────────────────────────


def tool_call(name: str, arguments: str | dict, call_id: str | None = None) -> dict:
    """One scripted tool call; ``arguments`` may be a (possibly malformed) JSON string."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": call_id or f"call_{hashlib.sha1(f'{name}{text}'.encode()).hexdigest()[:8]}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


class ScriptedChatServer:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1:<random port>.

    Each request takes the next item of ``script``: ``{"status": 429}`` (or any HTTP error
    status) answers with that error; otherwise ``{"content": str, "tool_calls": [...]}`` is the
    assistant message. Every request body is kept in ``requests``.
    """

    def __init__(self, script: list[dict]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script = list(script)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if not server.script:
                    return self._send(500, {"error": {"message": "script exhausted"}})
                item = server.script.pop(0)
                if "status" in item:
                    return self._send(
                        item["status"],
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        {"retry-after": "0.01"},
                    )
                message = {"role": "assistant", "content": item.get("content")}
                if item.get("tool_calls"):
                    message["tool_calls"] = item["tool_calls"]
                n = len(server.requests)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "scripted"),
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "finish_reason": "tool_calls" if item.get("tool_calls") else "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 100 + n,
                            "completion_tokens": 10 + n,
                            "total_tokens": 110 + 2 * n,
                        },
                    },
                )

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def chat_server():
    """A factory of ScriptedChatServers, closed after the test."""
    servers: list[ScriptedChatServer] = []

    def make(script: list[dict]) -> ScriptedChatServer:
        server = ScriptedChatServer(script)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
