"""
The trusted evaluator: the only code that decides a run's metrics (docs/METRICS.md).

    python evaluate.py --kind train      # val_loss, wikitext2_ppl, lambada_ppl of PB_OUT_DIR/ckpt.pt
    python evaluate.py --kind lm_eval    # arc_easy, hellaswag, piqa, winogrande of PB_CKPT_DIR/ckpt.pt

It runs as its own process after training. It refuses a checkpoint without the
.training_complete marker, or one whose iterations, tokens, profile, seed or model shape differ
from what pb_config.resolve_run_config(os.environ) says the run must have done. It rebuilds the
model from the saved model_source.py (the trained architecture), checks that the model is causal,
and computes every loss with its own code, using torch functions captured before any agent code
was imported. It deletes any metrics.json first and writes a new one last (atomically); what the
agent's code prints or writes changes nothing.

Exit codes: 0 metrics.json written; 2 evaluation refused (bad checkpoint or configuration);
1 evaluation failed (e.g. a non-finite metric).
"""

import os

# lm-eval must never reach the network (PB_EVAL_SOURCE=hf reads a prepared HF_HOME cache); these
# are read when the Hugging Face libraries are imported, so they are set before anything else
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# trusted references, captured before any agent code (model_source.py) is imported
_cross_entropy = F.cross_entropy
_no_grad = torch.no_grad
_from_numpy = torch.from_numpy

import pb_config  # noqa: E402
import pb_data  # noqa: E402
import pb_tokenizer  # noqa: E402
from lm_eval_adapter import (  # noqa: E402
    AdapterError,
    NanoGPTLM,
    check_causal,
    load_checkpoint,
    load_checkpoint_model,
    model_logits,
)

# the trusted helpers this module calls after agent code has been imported, captured now
_val_windows = pb_data.val_windows
_data_fingerprint = pb_data.data_fingerprint

# -----------------------------------------------------------------------------
# what is evaluated

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
DETAILS_FILE = "eval_details.json"  # every lm-eval number and item count, for readers
MARKER_FILE = ".training_complete"
CODEBASE_DIR = Path(__file__).resolve().parent
TASKS_DIR = CODEBASE_DIR / "lm_eval_tasks"  # the offline (local) task YAMLs

# metric name -> (lm-eval task, lm-eval metric key, scale); the local task is "pb_" + task
TRAIN_LM_EVAL_METRICS = {
    "wikitext2_ppl": ("wikitext", "word_perplexity,none", 1.0),
    "lambada_ppl": ("lambada_openai", "perplexity,none", 1.0),
}
LM_EVAL_METRICS = {  # zero-shot accuracy in percent: acc_norm where the task has it, else acc
    "arc_easy": ("arc_easy", "acc_norm,none", 100.0),
    "hellaswag": ("hellaswag", "acc_norm,none", 100.0),
    "piqa": ("piqa", "acc_norm,none", 100.0),
    "winogrande": ("winogrande", "acc,none", 100.0),
}
DEFAULT_LM_EVAL_BATCH = 32  # sequences per forward pass in the lm-eval adapter


class EvaluationRefused(Exception):
    """The checkpoint must not be evaluated (incomplete, or not the profile's run)."""


class EvaluationFailed(Exception):
    """The evaluation ran but produced no valid metrics."""


# -----------------------------------------------------------------------------
# checks before anything is computed


def read_marker(ckpt_dir):
    path = Path(ckpt_dir) / MARKER_FILE
    if not path.is_file():
        raise EvaluationRefused(f"{path} is missing: training did not complete, nothing to evaluate")
    try:
        marker = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as e:
        raise EvaluationRefused(f"{path} is not valid JSON: {e}") from e
    if not isinstance(marker, dict):
        raise EvaluationRefused(f"{path} must hold a JSON object")
    return marker


def check_checkpoint(ckpt, marker, cfg):
    """Raise EvaluationRefused unless the checkpoint is the end of the profile's full run."""
    want_iters = cfg["max_iters"]
    want_tokens = cfg["max_iters"] * cfg["tokens_per_iter"]
    tc = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    problems = []

    def differ(what, got, want):
        if got != want:
            problems.append(f"{what} is {got!r}, the {cfg['profile']} run must have {want!r}")

    differ("ckpt iter_num", ckpt.get("iter_num"), want_iters)
    differ("ckpt tokens_seen", ckpt.get("tokens_seen"), want_tokens)
    differ("marker iters", marker.get("iters"), want_iters)
    differ("marker tokens", marker.get("tokens"), want_tokens)
    for key in ("profile", "seed", "max_iters", "tokens_per_iter", "block_size"):
        differ(f"train_config[{key!r}]", tc.get(key), cfg[key])
    # the model's shape is the profile's; an agent cannot evaluate a bigger model
    want_model = pb_config.model_config(cfg)
    got_model = ckpt.get("model_config") or {}
    for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
        differ(f"model_config[{key!r}]", got_model.get(key), want_model[key])
    if problems:
        raise EvaluationRefused("checkpoint does not match the run configuration: " + "; ".join(problems))


# -----------------------------------------------------------------------------
# metrics


@_no_grad()
def compute_val_loss(model, windows, batch_size, device):
    """Mean next-token cross-entropy (nats, fp32) over every position of the validation windows."""
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    for start in range(0, len(windows), batch_size):
        w = _from_numpy(windows[start:start + batch_size]).to(device)
        x, y = w[:, :-1], w[:, 1:]
        logits = model_logits(model, x).float()
        loss = _cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        total += loss.double().cpu()
        count += y.numel()
    return float(total / count)


def run_lm_eval(lm, metric_specs, source, eval_data_dir):
    """{metric: value} and lm-eval's full per-task results, zero-shot, through simple_evaluate."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if source == "offline":
        tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                         metadata={"pb_eval_data_dir": str(eval_data_dir)})
        prefix = "pb_"
    else:  # lm-eval's own tasks from the prepared Hugging Face cache (HF_HOME), offline
        tm = TaskManager()
        prefix = ""
    tasks = sorted({prefix + task for task, _, _ in metric_specs.values()})
    if source == "hf":
        missing = [t for t in tasks if t not in tm.all_tasks]
        if missing:
            raise EvaluationFailed(f"lm-eval has no task(s) {missing}")
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=tm, num_fewshot=0,
                                      bootstrap_iters=0, log_samples=False, random_seed=0,
                                      numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    except ConnectionError as e:  # offline mode and the dataset is not in the cache
        raise EvaluationFailed(
            f"PB_EVAL_SOURCE={source}: a dataset is not in the Hugging Face cache "
            f"HF_HOME={os.environ.get('HF_HOME', '(default)')}; run prepare_eval.py --hf-home DIR "
            f"where there is network ({e})") from e
    results = out["results"]
    metrics = {}
    for name, (task, key, scale) in metric_specs.items():
        value = results.get(prefix + task, {}).get(key)
        if not isinstance(value, (int, float)):
            raise EvaluationFailed(f"lm-eval reported no {key!r} for task {prefix + task}")
        metrics[name] = float(value) * scale
    details = {t: {k: v for k, v in r.items() if isinstance(v, (int, float, str))} for t, r in results.items()}
    for t, n in (out.get("n-samples") or {}).items():
        details.setdefault(t, {})["n_samples"] = n
    return metrics, details


def eval_data_fingerprint(eval_data_dir):
    """"sha256:..." over the offline evaluation files (name + content), in name order."""
    h = hashlib.sha256()
    for path in sorted(Path(eval_data_dir).glob("*.jsonl")):
        h.update(f"{path.name}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return "sha256:" + h.hexdigest()


def write_json_atomic(path, obj):
    partial = Path(str(path) + ".partial")
    partial.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(partial, path)


# -----------------------------------------------------------------------------
# the evaluation


def evaluate(kind, environ):
    """Run one evaluation; returns the metrics.json content (also written to PB_OUT_DIR)."""
    t0 = time.time()
    out_dir = environ.get("PB_OUT_DIR", "")
    if not out_dir:
        raise EvaluationRefused("PB_OUT_DIR is not set")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / METRICS_FILE
    # whatever is there (a stale result, a file agent code wrote) is not this evaluation's result
    for stale in (metrics_path, out_dir / DETAILS_FILE):
        stale.unlink(missing_ok=True)

    try:
        cfg = pb_config.resolve_run_config(environ)
    except pb_config.ConfigError as e:
        raise EvaluationRefused(f"run configuration: {e}") from e
    if kind == "train":
        ckpt_dir = out_dir
    else:
        ckpt_dir = environ.get("PB_CKPT_DIR", "")
        if not ckpt_dir:
            raise EvaluationRefused("PB_CKPT_DIR (the training setting's output dir) is not set")
        ckpt_dir = Path(ckpt_dir)
    source = environ.get("PB_EVAL_SOURCE", "") or "offline"
    if source not in ("offline", "hf"):
        raise EvaluationRefused(f"PB_EVAL_SOURCE={source!r} must be 'offline' or 'hf'")
    eval_data_dir = environ.get("PB_EVAL_DATA_DIR", "")
    if source == "offline" and not eval_data_dir:
        raise EvaluationRefused("PB_EVAL_DATA_DIR (the offline evaluation sets) is not set")
    eval_data_dir = Path(eval_data_dir).resolve() if eval_data_dir else None
    batch_raw = environ.get("PB_EVAL_BATCH_SIZE", "") or str(DEFAULT_LM_EVAL_BATCH)
    if not batch_raw.isdigit() or int(batch_raw) < 1:
        raise EvaluationRefused(f"PB_EVAL_BATCH_SIZE={batch_raw!r} must be a positive integer")
    batch = int(batch_raw)
    data_dir = environ.get("PB_DATA_DIR", "")
    if kind == "train" and not data_dir:
        raise EvaluationRefused("PB_DATA_DIR is not set (the validation set lives there)")
    device = cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    marker = read_marker(ckpt_dir)
    try:
        ckpt = load_checkpoint(ckpt_dir)
    except AdapterError as e:
        raise EvaluationRefused(str(e)) from e
    check_checkpoint(ckpt, marker, cfg)
    enc = pb_tokenizer.get_gpt2_encoding(environ.get("PB_TOKENIZER_DIR") or None)

    # from here on agent code (the trained model source) is imported and runs
    try:
        model, _ = load_checkpoint_model(ckpt_dir, device=device, ckpt=ckpt)
        check_causal(model, cfg["vocab_size"], cfg["block_size"], device=device)
    except AdapterError as e:
        raise EvaluationRefused(str(e)) from e
    lm = NanoGPTLM(model, encoding=enc, device=device, batch_size=batch, block_size=cfg["block_size"])

    metrics = {}
    if kind == "train":
        windows = _val_windows(data_dir, cfg["block_size"], cfg["val_windows"])
        metrics["val_loss"] = compute_val_loss(model, windows, cfg["val_batch_size"], device)
        lm_metrics, details = run_lm_eval(lm, TRAIN_LM_EVAL_METRICS, source, eval_data_dir)
        fingerprint = _data_fingerprint(data_dir)
    else:
        lm_metrics, details = run_lm_eval(lm, LM_EVAL_METRICS, source, eval_data_dir)
        tc = ckpt.get("train_config") or {}
        fingerprint = tc.get("data_fingerprint") or (
            _data_fingerprint(data_dir) if data_dir else None)
    metrics.update(lm_metrics)
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise EvaluationFailed(f"non-finite metric(s): {bad}")

    result = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "profile": cfg["profile"],
        "seed": cfg["seed"],
        "metrics": metrics,
        "dataset_source": source,
        "data_fingerprint": fingerprint,
        "elapsed_s": round(time.time() - t0, 3),
    }
    write_json_atomic(out_dir / DETAILS_FILE, {
        "kind": kind, "device": device, "batch_size": batch, "lm_eval_results": details,
        "eval_data_fingerprint": eval_data_fingerprint(eval_data_dir) if source == "offline" else None,
    })
    write_json_atomic(metrics_path, result)  # last: its presence means a complete evaluation
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="PretrainBench's trusted evaluator")
    parser.add_argument("--kind", choices=("train", "lm_eval"), required=True,
                        help="train: val_loss, wikitext2_ppl, lambada_ppl; lm_eval: the four accuracies")
    args = parser.parse_args(argv)
    code = 0
    try:
        result = evaluate(args.kind, dict(os.environ))
        print("EVAL_METRICS: " + ", ".join(f"{k}={v:.6g}" for k, v in result["metrics"].items()), flush=True)
        print(f"wrote {Path(os.environ['PB_OUT_DIR']) / METRICS_FILE} in {result['elapsed_s']:.1f}s", flush=True)
    except EvaluationRefused as e:
        print(f"evaluate.py: refused: {e}", file=sys.stderr, flush=True)
        code = 2
    except (EvaluationFailed, pb_data.DataError, pb_tokenizer.TokenizerError, AdapterError) as e:
        print(f"evaluate.py: failed: {e}", file=sys.stderr, flush=True)
        code = 1
    except Exception:  # anything else (the trained model crashing, lm-eval errors): keep the trace
        traceback.print_exc()
        print("evaluate.py: failed with the error above", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # agent code was imported into this process: skip interpreter shutdown (atexit hooks,
    # finalizers, stray threads) so nothing it registered can run after metrics.json is written
    os._exit(code)


if __name__ == "__main__":
    main()
