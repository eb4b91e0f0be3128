"""
The scale profiles and the harness knobs: the one place where model size, iterations, batch,
learning rate and data/output directories are decided.

custom_pretrain.py asks resolve_run_config(os.environ) for its configuration. The values come
from the profile named by PB_PROFILE and from harness environment variables (PB_SEED,
PB_MAX_ITERS, ...). This file is frozen: an agent's edit cannot change its own budget. The only
door an agent has is CONFIG_OVERRIDES in custom_pretrain.py: data, never run. read_overrides()
takes it from PB_CONFIG_OVERRIDES (JSON the harness parsed from the region) or parses the region
text itself; apply_overrides() checks every key and value, with exact types.

Jobs read the outputs of the jobs they need under $PB_NEEDS_DIR/<label>/ (needed_job_dir); the
learning-rate table a schedule job wrote is checked here too (load_lr_table).
"""

import ast
import json
import math
import re
from pathlib import Path

# -----------------------------------------------------------------------------
# the profiles
# tokens per iteration = batch_size * grad_accum * block_size (grad_accum is global: DDP ranks
# divide it among themselves, so the number of GPUs does not change what a run sees)

PROFILES = {
    # preflight: a few CPU steps of the edited code, seconds
    "micro": dict(
        n_layer=2, n_head=2, n_embd=32, block_size=32,
        max_iters=3, batch_size=2, grad_accum=1,
        learning_rate=1e-3, min_lr=1e-4, warmup_frac=0.04,
        eval_interval=3, val_windows=2, val_batch_size=2, log_interval=1,
        compile=False,  # compiling would take longer than the whole preflight, even on a GPU
    ),
    # CPU: a whole run in well under a minute on 2 cores; ~80% of the time is the 50304-wide lm_head
    "tiny": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64,
        max_iters=100, batch_size=8, grad_accum=1,
        learning_rate=2e-3, min_lr=2e-4, warmup_frac=0.04,
        eval_interval=50, val_windows=32, val_batch_size=16, log_interval=1,
    ),
    # GPT-2 124M on one GPU, ~20 tokens/param: 4750 iters x 512K tokens = 2.49B tokens
    "small": dict(
        n_layer=12, n_head=12, n_embd=768, block_size=1024,
        max_iters=4750, batch_size=32, grad_accum=16,
        learning_rate=6e-4, min_lr=6e-5, warmup_frac=0.04,
        eval_interval=500, val_windows=2048, val_batch_size=32, log_interval=10,
    ),
    # the benchmark: GPT-2 Medium (~355M), 12030 iters x 96 x 6 x 1024 tokens = 7.1B tokens
    "full": dict(
        n_layer=24, n_head=16, n_embd=1024, block_size=1024,
        max_iters=12030, batch_size=96, grad_accum=6,
        learning_rate=3e-4, min_lr=3e-5, warmup_frac=0.04,
        eval_interval=1000, val_windows=10240, val_batch_size=32, log_interval=10,
    ),
}

# shared by every profile
COMMON = dict(
    vocab_size=50304,  # GPT-2's 50257 padded up to a multiple of 64 for fast matmuls
    dropout=0.0,  # pretraining: no dropout
    bias=False,  # no biases in Linear and LayerNorm
    weight_decay=0.1,  # on >=2-D parameters only
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,  # clip the global gradient norm at this value (0 disables)
)

DEFAULT_PROFILE = "tiny"
DEFAULT_SEED = 42
REAL_PROFILES = ("tiny", "small", "full")  # the benchmark's profiles (micro is preflight's)

# what CONFIG_OVERRIDES may change, and the check each value must pass
OVERRIDABLE = {
    "learning_rate": ("a finite number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1),
    "min_lr": ("a finite number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "warmup_iters": ("an integer in [0, max_iters]", None),  # checked against max_iters below
    "weight_decay": ("a finite number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "grad_clip": ("a finite number >= 0 (0 disables clipping)", lambda v: _is_number(v) and v >= 0),
}


# where CONFIG_OVERRIDES comes from: JSON in this variable, else the region of the source file
OVERRIDES_ENV = "PB_CONFIG_OVERRIDES"
OVERRIDES_REGION = "config_overrides"
MAX_OVERRIDES_CHARS = 16384  # the harness's own limit for a data region, as JSON

# the learning-rate table of a schedule job: $PB_NEEDS_DIR/$PB_LR_SCHEDULE_JOB/schedule.json
SCHEDULE_FILE = "schedule.json"
SCHEDULE_SCHEMA_VERSION = 1
SCHEDULE_ARGS = ("warmup_iters", "lr_decay_iters", "learning_rate", "min_lr")  # get_lr's, after `it`
MAX_SCHEDULE_BYTES = 64 * 1024 * 1024  # a bigger file is refused unread

# rows (tokens) of the logits the chunked loss materialises at once: 4096 x 50304 bf16 is 0.4 GB
LOSS_CHUNK_ROWS = 4096

JOB_LABEL = re.compile(r"[a-z0-9][a-z0-9.-]*")  # the harness's job labels (no '/', no '..')


class ConfigError(ValueError):
    """A harness variable or a CONFIG_OVERRIDES entry is invalid."""


def _is_number(v):
    # exact types: bool is an int, and a subclass of float can rig its comparisons
    return type(v) in (int, float) and math.isfinite(v)


# -----------------------------------------------------------------------------
# resolving a run's configuration


def _env_int(environ, name, default, minimum=1):
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} is not an integer") from e
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def resolve_run_config(environ) -> dict:
    """The full configuration of a run from PB_* environment variables (see docs/INTERFACES.md)."""
    profile = environ.get("PB_PROFILE", "") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ConfigError(f"PB_PROFILE={profile!r} is not one of {sorted(PROFILES)}")
    p = PROFILES[profile]
    cfg = dict(COMMON)
    cfg.update({k: v for k, v in p.items() if k not in ("warmup_frac", "compile")})
    cfg["profile"] = profile
    cfg["seed"] = _env_int(environ, "PB_SEED", DEFAULT_SEED, minimum=0)

    # iterations: warmup and decay follow max_iters (4% warmup, decay over the whole run)
    cfg["max_iters"] = _env_int(environ, "PB_MAX_ITERS", p["max_iters"])
    cfg["warmup_iters"] = int(p["warmup_frac"] * cfg["max_iters"])
    cfg["lr_decay_iters"] = cfg["max_iters"]
    cfg["eval_interval"] = _env_int(environ, "PB_EVAL_INTERVAL", p["eval_interval"])
    cfg["val_windows"] = _env_int(environ, "PB_VAL_WINDOWS", p["val_windows"])

    # batch: PB_BATCH_SIZE / PB_GRAD_ACCUM may split an iteration differently, never resize it
    # (batch_size is the micro-batch of one rank, grad_accum the micro-steps of all ranks)
    tokens_per_iter = p["batch_size"] * p["grad_accum"] * p["block_size"]
    seqs = p["batch_size"] * p["grad_accum"]  # sequences per iteration
    batch = _env_int(environ, "PB_BATCH_SIZE", 0)
    accum = _env_int(environ, "PB_GRAD_ACCUM", 0)
    if batch and not accum:
        accum = seqs // batch
    elif accum and not batch:
        batch = seqs // max(accum, 1)
    elif not batch and not accum:
        batch, accum = p["batch_size"], p["grad_accum"]
    if batch * accum != seqs:
        raise ConfigError(
            f"PB_BATCH_SIZE={batch} x PB_GRAD_ACCUM={accum} must equal the {profile} profile's "
            f"{seqs} sequences per iteration ({p['batch_size']} x {p['grad_accum']})"
        )
    cfg["batch_size"], cfg["grad_accum"] = batch, accum
    # chosen by the harness: training keeps it; otherwise a GPU picks its own split (pb_memory)
    cfg["batch_override"] = bool(environ.get("PB_BATCH_SIZE", "") or environ.get("PB_GRAD_ACCUM", ""))
    cfg["val_batch_size"] = min(p["val_batch_size"], cfg["val_windows"])
    cfg["tokens_per_iter"] = tokens_per_iter

    # where and how
    cfg["data_dir"] = environ.get("PB_DATA_DIR", "")
    cfg["out_dir"] = environ.get("PB_OUT_DIR", "")
    device = environ.get("PB_DEVICE", "")
    if device not in ("", "cpu", "cuda"):
        raise ConfigError(f"PB_DEVICE={device!r} must be 'cpu' or 'cuda'")
    cfg["device"] = device  # "" = cuda if available (decided by the training script)
    compile_raw = environ.get("PB_COMPILE", "")
    if compile_raw not in ("", "0", "1"):
        raise ConfigError(f"PB_COMPILE={compile_raw!r} must be 0 or 1")
    # None: the training script compiles on CUDA and not on CPU
    cfg["compile"] = p.get("compile") if compile_raw == "" else compile_raw == "1"
    return cfg


def apply_overrides(cfg, overrides) -> dict:
    """cfg updated with an agent's CONFIG_OVERRIDES, after checking every key and value.

    Types are exact (type(v) is int / float): bool, str and any subclass are refused, so a value
    cannot behave differently in a check than in use."""
    if type(overrides) is not dict:
        raise ConfigError(f"CONFIG_OVERRIDES must be a dict, got {type(overrides).__name__}")
    out = dict(cfg)
    for key, value in overrides.items():
        if type(key) is not str or key not in OVERRIDABLE:
            raise ConfigError(
                f"CONFIG_OVERRIDES[{key!r}]: only {sorted(OVERRIDABLE)} may be overridden"
            )
        what, check = OVERRIDABLE[key]
        if key == "warmup_iters":
            ok = type(value) is int and 0 <= value <= cfg["max_iters"]
        else:
            ok = check(value)
        if not ok:
            raise ConfigError(f"CONFIG_OVERRIDES[{key!r}] = {value!r}: must be {what}")
        out[key] = value
    if out["min_lr"] > out["learning_rate"]:
        raise ConfigError(f"min_lr ({out['min_lr']}) must not exceed learning_rate ({out['learning_rate']})")
    return out


def model_config(cfg) -> dict:
    """The GPTConfig fields of a run configuration."""
    keys = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias")
    return {k: cfg[k] for k in keys}


# -----------------------------------------------------------------------------
# CONFIG_OVERRIDES as data


def region_text(source, name):
    """The body of the editable region `name` in a source text (between its marker lines)."""
    start = f"# ── EDITABLE REGION START: {name} ──\n"
    end = f"# ── EDITABLE REGION END: {name} ──\n"
    if source.count(start) != 1 or source.count(end) != 1:
        raise ConfigError(f"the source has no single region {name!r}")
    return source.split(start, 1)[1].split(end, 1)[0]


def parse_overrides_region(text):
    """The dict of a config_overrides region, read as a literal: nothing in it is executed."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ConfigError(f"CONFIG_OVERRIDES region: syntax error: {e.msg}") from None
    body = tree.body
    if (len(body) != 1 or not isinstance(body[0], ast.Assign) or len(body[0].targets) != 1
            or not isinstance(body[0].targets[0], ast.Name) or body[0].targets[0].id != "CONFIG_OVERRIDES"):
        raise ConfigError("the config_overrides region must be exactly one assignment CONFIG_OVERRIDES = {...}")
    try:
        return ast.literal_eval(body[0].value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ConfigError("CONFIG_OVERRIDES must be a literal dict (numbers only: no names, calls or expressions)") from None


def read_overrides(environ, source_path) -> dict:
    """The agent's CONFIG_OVERRIDES as plain data: PB_CONFIG_OVERRIDES (JSON, set by the harness)
    when present, else the config_overrides region of source_path parsed as a literal.

    Only the shape is checked here (a dict); apply_overrides() checks keys and values."""
    raw = environ.get(OVERRIDES_ENV, "")
    if raw:
        if len(raw) > MAX_OVERRIDES_CHARS:
            raise ConfigError(f"{OVERRIDES_ENV} is longer than {MAX_OVERRIDES_CHARS} characters")
        try:
            overrides = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"{OVERRIDES_ENV} is not valid JSON: {e}") from None
    else:
        overrides = parse_overrides_region(region_text(Path(source_path).read_text(), OVERRIDES_REGION))
    if type(overrides) is not dict:
        raise ConfigError(f"CONFIG_OVERRIDES must be a dict, got {type(overrides).__name__}")
    return overrides


# -----------------------------------------------------------------------------
# the outputs of needed jobs


def needed_job_dir(environ, var):
    """$PB_NEEDS_DIR/<label> for the job label in environment variable `var`, or None if unset."""
    label = environ.get(var, "")
    if not label:
        return None
    if not JOB_LABEL.fullmatch(label):
        raise ConfigError(f"{var}={label!r} is not a job label")
    needs = environ.get("PB_NEEDS_DIR", "")
    if not needs:
        raise ConfigError(f"{var}={label} but PB_NEEDS_DIR (the outputs of needed jobs) is not set")
    return Path(needs) / label


def checkpoint_dir(environ):
    """The training output an evaluation reads: $PB_NEEDS_DIR/$PB_CKPT_JOB, else PB_CKPT_DIR."""
    path = needed_job_dir(environ, "PB_CKPT_JOB")
    if path is None and environ.get("PB_CKPT_DIR", ""):
        path = Path(environ["PB_CKPT_DIR"])
    if path is None:
        raise ConfigError("no checkpoint: set PB_CKPT_JOB (with PB_NEEDS_DIR) or PB_CKPT_DIR")
    return path


def load_lr_table(path, cfg) -> list:
    """The learning rate of each of cfg's iterations from a schedule job's schedule.json.

    The entry of cfg's profile must have been computed for exactly this run (max_iters and the
    four get_lr arguments equal cfg's) and hold max_iters finite numbers >= 0 (int or float)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise ConfigError(f"{path.name} is missing: the schedule job wrote no table") from None
    if size > MAX_SCHEDULE_BYTES:
        raise ConfigError(f"{path.name} is {size} bytes, more than the {MAX_SCHEDULE_BYTES} allowed")
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(MAX_SCHEDULE_BYTES + 1))
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path.name} is not valid JSON: {e}") from None
    if type(doc) is not dict or doc.get("schema_version") != SCHEDULE_SCHEMA_VERSION:
        raise ConfigError(f"{path.name} is not a schema_version {SCHEDULE_SCHEMA_VERSION} schedule")
    profiles = doc.get("profiles")
    entry = profiles.get(cfg["profile"]) if type(profiles) is dict else None
    if type(entry) is not dict:
        raise ConfigError(f"{path.name} has no entry for the {cfg['profile']} profile")
    for key in ("max_iters", *SCHEDULE_ARGS):
        got, want = entry.get(key), cfg[key]
        if type(got) is not type(want) or got != want:
            raise ConfigError(f"{path.name}: the {cfg['profile']} table was computed for {key}={got!r}, "
                              f"this run has {key}={want!r}")
    table = entry.get("lr")
    if type(table) is not list or len(table) != cfg["max_iters"]:
        n = len(table) if type(table) is list else type(table).__name__
        raise ConfigError(f"{path.name}: the {cfg['profile']} table must hold {cfg['max_iters']} "
                          f"learning rates, one per iteration; it holds {n}")
    for it, lr in enumerate(table):
        if type(lr) not in (int, float) or not math.isfinite(lr) or lr < 0:
            raise ConfigError(f"{path.name}: the learning rate of iteration {it} is {lr!r}; "
                              "each must be a finite number >= 0")
    return [float(lr) for lr in table]
