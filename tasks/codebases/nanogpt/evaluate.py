"""
The trusted evaluator: the only code that decides a run's metrics (docs/METRICS.md).

    python evaluate.py --kind train      # val_loss, wikitext2_ppl, lambada_ppl
    python evaluate.py --kind lm_eval    # arc_easy, hellaswag, piqa, winogrande

It runs as a job of its own (scripts/eval_*.sh, scripts/lm_eval_*.sh), from the trusted codebase,
on the checkpoint of a training job: $PB_NEEDS_DIR/$PB_CKPT_JOB (or PB_CKPT_DIR by hand), read-only.
It never imports a file the agent touched. Two ways to run the trained model:

- in this process (no PB_WORKERS): GPT is built from this codebase's own custom_pretrain.py, the
  original architecture, and only the weights are taken from ckpt.pt. For tasks whose
  architecture is frozen (the learning-rate task). The saved model_source.py is read as text only,
  to refuse a checkpoint whose architecture regions are not the original ones.
- in logits workers (PB_WORKERS_DIR, PB_WORKERS = N >= 2): the agent's architecture runs only in
  sandboxed worker processes (logits_worker.py). Worker 0 serves the whole pass; this process
  applies lm_head (the weights it loaded) to the hidden states it gets back and computes every
  loss. Causality is checked on the real inputs: a secret random sample of the pass's sequences
  (PB_CAUSALITY_PROBES, default 64) is sent again, each with its tokens from a random cut k on
  replaced by random tokens, to the other, fresh workers; the logits before k must match the
  main pass (atol = rtol = 1e-3). A model that peeks ahead is caught at position k - 1, since it
  cannot know k and the workers cannot talk to each other.

It refuses a checkpoint without the .training_complete marker, or one whose iterations, tokens,
profile, seed or model shape differ from what pb_config.resolve_run_config(os.environ) says the
run must have done. It deletes any metrics.json first and writes a new one last (atomically).

metrics.json also carries lm-eval's standard error of each metric it gives one for ("stderr",
in the metric's units: points for accuracies) and a data_fingerprint over both the training data
and the evaluation sets (a generated set's manifest fingerprint), so results on other sets never
share a dataset identity.

Exit codes: 0 metrics.json written; 2 evaluation refused (bad checkpoint or configuration, a model
that is not causal, a worker answering garbage or non-finite values); 1 evaluation failed (a
non-finite metric, a worker that died, a model that raised). Both write failure.json.
"""

import os

# lm-eval must never reach the network (PB_EVAL_SOURCE=hf reads a prepared HF_HOME cache); these
# are read when the Hugging Face libraries are imported, so they are set before anything else
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# lm-eval bootstraps some standard errors (a perplexity's) in a multiprocessing pool by default;
# one process is enough for its few hundred items, and a job must not fork a pool of cpu_count
os.environ["DISABLE_MULTIPROC"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# trusted references, captured at import
_cross_entropy = F.cross_entropy
_linear = F.linear
_allclose = torch.allclose
_no_grad = torch.no_grad
_from_numpy = torch.from_numpy

import pb_checkpoint  # noqa: E402
import pb_config  # noqa: E402
import pb_data  # noqa: E402
import pb_jobs  # noqa: E402
import pb_logits  # noqa: E402
import pb_tokenizer  # noqa: E402
import make_eval_sets  # noqa: E402
from lm_eval_adapter import AdapterError, LocalModel, NanoGPTLM, load_trusted_model  # noqa: E402

# -----------------------------------------------------------------------------
# what is evaluated

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
DETAILS_FILE = "eval_details.json"  # every lm-eval number and item count, for readers
CODEBASE_DIR = Path(__file__).resolve().parent
TASKS_DIR = CODEBASE_DIR / "lm_eval_tasks"  # the offline (local) task YAMLs
OWN_SOURCE = CODEBASE_DIR / "custom_pretrain.py"  # the original training file: the trusted architecture
ARCHITECTURE_REGIONS = ("layernorm", "block")  # the regions that change the model

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
# lm-eval's standard errors: closed form for accuracies (means); this many bootstrap resamples
# for a perplexity (one process; about a second for 500 items). 0 would turn them all off
BOOTSTRAP_ITERS = 1000
HF_MANIFEST = "pretrainbench_eval.json"  # what prepare_eval.py --hf-home writes (the hf sets' identity)

# the logits workers and the causality check
DEFAULT_CAUSALITY_PROBES = 64  # sequences of the pass sent again, cut, to the other workers
DEFAULT_WORKER_TIMEOUT = 600.0  # seconds a worker may take to load, or to answer one request
CAUSAL_ATOL = CAUSAL_RTOL = 1e-3  # kernels differ by far less (also TF32 on GPUs); a leak by far more
PROBE_VOCAB = 50257  # random tokens of a probe are real GPT-2 tokens
PAD_TOKEN = 50256  # <|endoftext|>: what the adapter pads a batch's shorter sequences with
PROBE_HEAD_ROWS = 256  # positions per head application while comparing


class EvaluationRefused(Exception):
    """The checkpoint or the model must not be evaluated (exit code 2)."""


class EvaluationFailed(Exception):
    """The evaluation ran but produced no valid metrics (exit code 1)."""


# -----------------------------------------------------------------------------
# checks before anything is computed


def check_checkpoint(ckpt, marker, cfg):
    """Raise EvaluationRefused unless the checkpoint is the end of the profile's full run."""
    want_iters = cfg["max_iters"]
    want_tokens = cfg["max_iters"] * cfg["tokens_per_iter"]
    tc = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    problems = []

    def differ(what, got, want):
        # exact types: True is not the integer 1 here
        if type(got) is not type(want) or got != want:
            problems.append(f"{what} is {got!r}, the {cfg['profile']} run must have {want!r}")

    differ("ckpt iter_num", ckpt.get("iter_num"), want_iters)
    differ("ckpt tokens_seen", ckpt.get("tokens_seen"), want_tokens)
    differ("marker iters", marker.get("iters"), want_iters)
    differ("marker tokens", marker.get("tokens"), want_tokens)
    for key in ("profile", "seed", "max_iters", "tokens_per_iter", "block_size"):
        differ(f"train_config[{key!r}]", tc.get(key), cfg[key])
    # the model's shape is the profile's; an agent cannot evaluate a bigger model
    want_model = pb_config.model_config(cfg)
    got_model = ckpt["model_config"]
    for key in want_model:
        differ(f"model_config[{key!r}]", got_model.get(key), want_model[key])
    extra = sorted(set(got_model) - set(want_model))
    if extra:
        problems.append(f"model_config has unknown field(s) {extra}")
    if problems:
        raise EvaluationRefused("checkpoint does not match the run configuration: " + "; ".join(problems))


def check_original_architecture(ckpt_dir):
    """In-process evaluation builds the original GPT: refuse a checkpoint whose model source has
    other architecture regions (it must go through logits workers). The source is read as text."""
    trained = pb_checkpoint.read_model_source(ckpt_dir)
    own = OWN_SOURCE.read_text()
    for name in ARCHITECTURE_REGIONS:
        try:
            same = pb_config.region_text(trained, name) == pb_config.region_text(own, name)
        except pb_config.ConfigError:
            same = False
        if not same:
            raise EvaluationRefused(
                f"the checkpoint was trained with an architecture of its own (region {name!r} of "
                f"{pb_checkpoint.MODEL_SOURCE_FILE} is not the original); this evaluator builds only the "
                "original one in process: evaluate it through logits workers (PB_WORKERS_DIR, PB_WORKERS >= 2)")


def training_fingerprint(ckpt):
    """The training data's fingerprint as the training job recorded it, if well formed."""
    tc = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    value = tc.get("data_fingerprint")
    return value if type(value) is str and re.fullmatch(r"sha256:[0-9a-f]{64}", value) else None


# -----------------------------------------------------------------------------
# the trained model in logits workers


NO_CUT_SHARE = 0.5  # the share of probes sent unchanged (see CausalityProbes.offer)


class CausalityProbes:
    """A secret random sample of the sequences worker 0 scored (reservoir sampling over the whole
    pass), each with a cut k drawn among its scored positions, and the hidden states worker 0 gave
    at its scored positions before k. check() sends the cut sequences to the other workers."""

    def __init__(self, n_probes, rng):
        self.n_probes = n_probes
        self.rng = rng
        self.seen = 0  # sequences offered
        self.kept = []  # (tokens (T,), scored columns (n,), cut k, hidden (m, C) at the columns < k)

    def offer(self, tokens, positions, hidden):
        """Consider each sequence of one answered request: tokens (B, T), flat positions (K,),
        hidden (K, C)."""
        T = tokens.shape[1]
        rows = positions // T
        for b in np.unique(rows):
            self.seen += 1
            slot = len(self.kept) if len(self.kept) < self.n_probes else self.rng.randrange(self.seen)
            if slot >= self.n_probes:
                continue
            mine = rows == b
            cols = positions[mine] % T
            last = int(cols.max())
            if self.rng.random() < NO_CUT_SHARE:
                # the sequence unchanged, in other company and a fresh worker: every scored
                # position must agree, which catches what depends on other rows or on earlier
                # requests at ANY position (a cut only tests the positions before it)
                cut = last + 1
            else:
                cut = self.rng.randint(int(cols.min()) + 1, max(int(cols.min()) + 1, last))
            item = (tokens[b].copy(), cols, cut, hidden[mine][cols < cut].copy())
            if slot == len(self.kept):
                self.kept.append(item)
            else:
                self.kept[slot] = item

    def probe_tokens(self, tokens, end, cut, length):
        """A sequence like an ordinary request's row of `length` tokens: tokens[:cut], then each of
        tokens[cut:end] replaced by another, random one (so that position cut surely differs),
        then padding; `end` is one past the sequence's last scored position."""
        probe = np.full(length, PAD_TOKEN, dtype=np.int64)
        probe[:cut] = tokens[:cut]
        for t in range(cut, end):
            probe[t] = (int(tokens[t]) + self.rng.randrange(1, PROBE_VOCAB)) % PROBE_VOCAB
        return probe

    @_no_grad()
    def check(self, clients, head_weight, batch_size, device):
        """Send the probes, split over clients (fresh workers) and batched as ordinary requests
        are (longest first, right-padded to the longest); raise EvaluationRefused where a logit
        before a cut differs from the main pass."""
        items = list(self.kept)
        self.rng.shuffle(items)
        plans = []  # per client: its batches of items
        for j, client in enumerate(clients):
            mine = sorted(items[j::len(clients)], key=lambda item: -(int(item[1].max()) + 1))
            plans.append((client, [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]))
        for step in range(max((len(b) for _, b in plans), default=0)):
            sent = []
            for client, batches in plans:  # every worker computes at once, one request each
                if step < len(batches):
                    batch = batches[step]
                    T = int(batch[0][1].max()) + 1  # the longest: its last scored position + 1
                    tokens = np.stack([self.probe_tokens(tok, int(cols.max()) + 1, cut, T)
                                       for tok, cols, cut, _ in batch])
                    positions = np.concatenate([r * T + cols for r, (_, cols, _, _) in enumerate(batch)])
                    client.submit(tokens, positions)
                    sent.append((client, batch))
            for client, batch in sent:
                hidden = client.fetch()
                k = 0
                for _, cols, cut, main in batch:
                    mine = hidden[k:k + len(cols)][cols < cut]
                    k += len(cols)
                    self.compare(main, mine, cols[cols < cut], cut, client.index, head_weight, device)

    def compare(self, main, probe, cols, cut, worker, head_weight, device):
        for r0 in range(0, len(cols), PROBE_HEAD_ROWS):
            a = _linear(_from_numpy(main[r0:r0 + PROBE_HEAD_ROWS]).to(device), head_weight)
            b = _linear(_from_numpy(probe[r0:r0 + PROBE_HEAD_ROWS]).to(device), head_weight)
            if not _allclose(a, b, atol=CAUSAL_ATOL, rtol=CAUSAL_RTOL):
                bad = ~torch.isclose(a, b, atol=CAUSAL_ATOL, rtol=CAUSAL_RTOL).all(dim=1)
                where = int(cols[r0 + int(bad.nonzero()[0])])
                diff = float((a - b).abs().max())
                # where and by how much are the worker's doing, and the cut depends on the item's
                # length: the log keeps them, the agent reads none of them
                print(f"evaluate.py: not causal at position {where} (cut {cut}), "
                      f"max |difference| {diff:.3g}", file=sys.stderr, flush=True)
                raise EvaluationRefused(
                    "the model is not causal: a sequence of the evaluation, sent again to another, "
                    f"fresh logits worker ({worker}) among other sequences, unchanged or with its "
                    "tokens from a random position on replaced by random ones, got other logits "
                    "where nothing it depends on had changed; outputs at a position must depend only "
                    "on the tokens before it (not on later tokens, other sequences, or earlier "
                    "requests), or its losses are not next-token predictions")


class WorkerModel:
    """A source of hidden states (see lm_eval_adapter) served by logits worker 0; every answered
    sequence is offered to the causality probes."""

    def __init__(self, client, head_weight, probes):
        self.client = client
        self.head_weight = head_weight
        self.device = head_weight.device
        self.n_embd = head_weight.shape[1]
        self.probes = probes
        self.pending = []

    def submit(self, tokens, positions):
        self.client.submit(tokens, positions)
        self.pending.append((tokens, positions))

    def fetch(self):
        hidden = self.client.fetch()
        tokens, positions = self.pending.pop(0)
        self.probes.offer(tokens, positions, hidden)
        return _from_numpy(hidden).to(self.device)


def connect_workers(environ, cfg):
    """The clients of workers 0..N-1 (each HELLO checked), or None when this job has none."""
    count_raw = environ.get("PB_WORKERS", "")
    if not count_raw:
        return None
    if not count_raw.isdigit():
        raise EvaluationRefused(f"PB_WORKERS={count_raw!r} must be a number")
    count = int(count_raw)
    if count < 2:
        raise EvaluationRefused(
            f"PB_WORKERS={count}: an architecture of the agent's own needs at least 2 logits workers "
            "(one for the evaluation, one or more fresh ones for its causality check)")
    workers_dir = environ.get("PB_WORKERS_DIR", "")
    if not workers_dir:
        raise EvaluationRefused("PB_WORKERS is set but PB_WORKERS_DIR is not")
    timeout_raw = environ.get("PB_WORKER_TIMEOUT", "") or str(DEFAULT_WORKER_TIMEOUT)
    try:
        timeout = float(timeout_raw)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise EvaluationRefused(f"PB_WORKER_TIMEOUT={timeout_raw!r} must be a positive number of seconds")
    expect = (cfg["n_embd"], cfg["block_size"], cfg["vocab_size"])
    clients = [pb_logits.WorkerClient(Path(workers_dir) / str(i), i, expect, timeout) for i in range(count)]
    for client in clients:
        client.connect()
    return clients


# -----------------------------------------------------------------------------
# metrics


@_no_grad()
def compute_val_loss(source, windows, batch_size):
    """Mean next-token cross-entropy (nats, fp32) over every position of the validation windows.
    Only the inputs w[:, :-1] go to the model; the targets w[:, 1:] stay here."""
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    starts = list(range(0, len(windows), batch_size))
    T = windows.shape[1] - 1
    for n, start in enumerate(starts):
        if n == 0:
            w = windows[start:start + batch_size]
            source.submit(np.ascontiguousarray(w[:, :-1]), np.arange(len(w) * T, dtype=np.int64))
        w = windows[start:start + batch_size]
        hidden = source.fetch()  # (B * T, C)
        if n + 1 < len(starts):  # the source works on the next batch while this one is scored
            nxt = windows[starts[n + 1]:starts[n + 1] + batch_size]
            source.submit(np.ascontiguousarray(nxt[:, :-1]), np.arange(len(nxt) * T, dtype=np.int64))
        y = _from_numpy(np.ascontiguousarray(w[:, 1:])).to(source.device)
        logits = _linear(hidden, source.head_weight).float()
        loss = _cross_entropy(logits, y.reshape(-1), reduction="sum")
        total += loss.double().cpu()
        count += y.numel()
    return float(total / count)


def run_lm_eval(lm, metric_specs, source, eval_data_dir):
    """{metric: value}, {metric: lm-eval's standard error of it, where it gives one} (both in the
    metric's units) and lm-eval's full per-task results, zero-shot, through simple_evaluate."""
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
                                      bootstrap_iters=BOOTSTRAP_ITERS, log_samples=False, random_seed=0,
                                      numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    except ConnectionError as e:  # offline mode and the dataset is not in the cache
        raise EvaluationFailed(
            f"PB_EVAL_SOURCE={source}: a dataset is not in the Hugging Face cache "
            f"HF_HOME={os.environ.get('HF_HOME', '(default)')}; run prepare_eval.py --hf-home DIR "
            f"where there is network ({e})") from e
    results = out["results"]
    metrics, stderr = {}, {}
    for name, (task, key, scale) in metric_specs.items():
        value = results.get(prefix + task, {}).get(key)
        if not isinstance(value, (int, float)):
            raise EvaluationFailed(f"lm-eval reported no {key!r} for task {prefix + task}")
        metrics[name] = float(value) * scale
        # "acc_norm,none" -> "acc_norm_stderr,none"; "N/A" where lm-eval has none (word_perplexity)
        se = results[prefix + task].get(key.replace(",", "_stderr,", 1))
        if isinstance(se, (int, float)) and math.isfinite(se):
            stderr[name] = float(se) * scale
    details = {t: {k: v for k, v in r.items() if isinstance(v, (int, float, str))} for t, r in results.items()}
    for t, n in (out.get("n-samples") or {}).items():
        details.setdefault(t, {})["n_samples"] = n
    return metrics, stderr, details


def eval_data_fingerprint(source, eval_data_dir, environ):
    """"sha256:..." naming the evaluation sets: a generated directory's manifest fingerprint
    (after checking every file against the manifest); else a hash over the offline files (name +
    content, in name order); for hf, over the prepared cache's manifest."""
    h = hashlib.sha256()
    if source == "hf":
        manifest = Path(environ.get("HF_HOME") or "~/.cache/huggingface").expanduser() / HF_MANIFEST
        h.update(manifest.read_bytes() if manifest.is_file() else b"hf")
        return "sha256:" + h.hexdigest()
    if (Path(eval_data_dir) / make_eval_sets.MANIFEST).is_file():
        try:
            return make_eval_sets.verify(eval_data_dir)["fingerprint"]
        except (make_eval_sets.EvalSetsError, KeyError, TypeError) as e:
            raise EvaluationFailed(f"the offline evaluation sets do not match their manifest: {e!r}") from e
    for path in sorted(Path(eval_data_dir).glob("*.jsonl")):
        h.update(f"{path.name}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return "sha256:" + h.hexdigest()


def combined_fingerprint(train_fingerprint, eval_fingerprint):
    """"sha256:..." over the training data's and the evaluation sets' fingerprints: a result's
    dataset identity changes with either (new evaluation sets never rank with old results)."""
    text = f"train={train_fingerprint}\neval={eval_fingerprint}\n"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# -----------------------------------------------------------------------------
# the evaluation


def evaluate(kind, environ):
    """Run one evaluation; returns the metrics.json content (also written to PB_OUT_DIR)."""
    t0 = time.time()
    out_dir = Path(environ["PB_OUT_DIR"])
    metrics_path = out_dir / METRICS_FILE

    # --- the configuration, and what this job was given ---
    try:
        cfg = pb_config.resolve_run_config(environ)
        ckpt_dir = pb_config.checkpoint_dir(environ)
    except pb_config.ConfigError as e:
        raise EvaluationRefused(f"run configuration: {e}") from e
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
    probes_raw = environ.get("PB_CAUSALITY_PROBES", "") or str(DEFAULT_CAUSALITY_PROBES)
    if not probes_raw.isdigit() or int(probes_raw) < 1:
        raise EvaluationRefused(f"PB_CAUSALITY_PROBES={probes_raw!r} must be a positive integer")
    data_dir = environ.get("PB_DATA_DIR", "")
    if kind == "train" and not data_dir:
        raise EvaluationRefused("PB_DATA_DIR is not set (the validation set lives there)")
    eval_fingerprint = eval_data_fingerprint(source, eval_data_dir, environ)
    device = cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # --- the checkpoint: complete, the profile's run, weights only ---
    try:
        marker = pb_checkpoint.read_marker(ckpt_dir)
        ckpt = pb_checkpoint.load_checkpoint(ckpt_dir)
        check_checkpoint(ckpt, marker, cfg)
        head = pb_checkpoint.head_weight(ckpt, cfg["vocab_size"], cfg["n_embd"]).to(device)
    except pb_checkpoint.CheckpointError as e:
        raise EvaluationRefused(str(e)) from e
    enc = pb_tokenizer.get_gpt2_encoding(environ.get("PB_TOKENIZER_DIR") or None)

    # --- the model: our own GPT in process, or the agent's in logits workers ---
    try:
        clients = connect_workers(environ, cfg)
    except pb_logits.WorkerError as e:
        raise (EvaluationRefused if e.refused else EvaluationFailed)(str(e)) from e
    probes = None
    if clients is None:
        try:
            check_original_architecture(ckpt_dir)
            model = LocalModel(load_trusted_model(device=device, ckpt=ckpt))
        except pb_checkpoint.CheckpointError as e:
            raise EvaluationRefused(str(e)) from e
    else:
        seed_raw = environ.get("PB_CAUSALITY_SEED", "")  # for reproducing a refusal; secret otherwise
        seed = int(seed_raw) if seed_raw.isdigit() else secrets.randbits(64)
        probes = CausalityProbes(int(probes_raw), random.Random(seed))
        model = WorkerModel(clients[0], head, probes)
    lm = NanoGPTLM(model, encoding=enc, batch_size=batch, block_size=cfg["block_size"])

    # --- the pass ---
    metrics = {}
    try:
        if kind == "train":
            windows = pb_data.val_windows(data_dir, cfg["block_size"], cfg["val_windows"])
            metrics["val_loss"] = compute_val_loss(model, windows, cfg["val_batch_size"])
            lm_metrics, stderr, details = run_lm_eval(lm, TRAIN_LM_EVAL_METRICS, source, eval_data_dir)
            train_fingerprint = pb_data.data_fingerprint(data_dir)
        else:
            lm_metrics, stderr, details = run_lm_eval(lm, LM_EVAL_METRICS, source, eval_data_dir)
            train_fingerprint = pb_data.data_fingerprint(data_dir) if data_dir else training_fingerprint(ckpt)
        if probes is not None:
            # worker 0 is done: closing its connection ends it (logits_worker.py exits), so it is
            # gone before the other, fresh workers see the probes
            clients[0].close()
            probes.check(clients[1:], head, batch, device)
    except pb_logits.WorkerError as e:
        print(f"evaluate.py: {e.detail}", file=sys.stderr, flush=True)  # the log: never the agent's
        raise (EvaluationRefused if e.refused else EvaluationFailed)(str(e)) from e
    finally:
        for client in clients or []:
            client.close()
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
        "stderr": stderr,  # lm-eval's standard error of each metric it gives one for, same units
        "dataset_source": source,
        "data_fingerprint": combined_fingerprint(train_fingerprint, eval_fingerprint),
        "elapsed_s": round(time.time() - t0, 3),
    }
    pb_jobs.write_json(out_dir / DETAILS_FILE, {
        "kind": kind, "device": device, "batch_size": batch, "lm_eval_results": details,
        "train_data_fingerprint": train_fingerprint, "eval_data_fingerprint": eval_fingerprint,
        "model": "logits workers" if probes else "in process (original architecture)",
        "causality": {"workers": len(clients), "sequences": probes.seen, "probed": len(probes.kept)} if probes else None,
    })
    pb_jobs.write_json(metrics_path, result)  # last: its presence means a complete evaluation
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="PretrainBench's trusted evaluator")
    parser.add_argument("--kind", choices=("train", "lm_eval"), required=True,
                        help="train: val_loss, wikitext2_ppl, lambada_ppl; lm_eval: the four accuracies")
    args = parser.parse_args(argv)
    if not os.environ.get("PB_OUT_DIR"):
        sys.exit("error: PB_OUT_DIR must name the output directory")
    out_dir = Path(os.environ["PB_OUT_DIR"])
    out_dir.mkdir(parents=True, exist_ok=True)
    # whatever is there (a stale result) is not this evaluation's result
    for stale in (METRICS_FILE, DETAILS_FILE, pb_jobs.FAILURE_FILE):
        (out_dir / stale).unlink(missing_ok=True)
    code, reason = 0, None
    try:
        result = evaluate(args.kind, dict(os.environ))
        print("EVAL_METRICS: " + ", ".join(f"{k}={v:.6g}" for k, v in result["metrics"].items()), flush=True)
        print(f"wrote {out_dir / METRICS_FILE} in {result['elapsed_s']:.1f}s", flush=True)
    except EvaluationRefused as e:
        code, reason = 2, f"refused: {e}"
    except (EvaluationFailed, pb_data.DataError, pb_tokenizer.TokenizerError, AdapterError) as e:
        code, reason = 1, f"failed: {e}"
    except Exception as e:  # anything else (lm-eval errors, our bugs): keep the trace in the log
        traceback.print_exc()
        code, reason = 1, f"failed: {type(e).__name__}: {e}"
    if reason is not None:
        print(f"evaluate.py: {reason}", file=sys.stderr, flush=True)
        pb_jobs.write_failure(out_dir, reason)
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter shutdown: threads lm-eval's libraries left behind cannot delay or change
    # anything after metrics.json is written
    os._exit(code)


if __name__ == "__main__":
    main()
