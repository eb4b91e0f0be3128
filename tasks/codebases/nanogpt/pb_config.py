"""
The scale profiles and the harness knobs: the one place where model size, iterations, batch,
learning rate and data/output directories are decided.

custom_pretrain.py asks resolve_run_config(os.environ) for its configuration. The values come
from the profile named by PB_PROFILE and from harness environment variables (PB_SEED,
PB_MAX_ITERS, ...). This file is frozen: an agent's edit cannot change its own budget. The only
door an agent has is CONFIG_OVERRIDES in custom_pretrain.py, checked here by apply_overrides().
"""

import math

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

# what CONFIG_OVERRIDES may change, and the check each value must pass
OVERRIDABLE = {
    "learning_rate": ("a finite number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1),
    "min_lr": ("a finite number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "warmup_iters": ("an integer in [0, max_iters]", None),  # checked against max_iters below
    "weight_decay": ("a finite number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "grad_clip": ("a finite number >= 0 (0 disables clipping)", lambda v: _is_number(v) and v >= 0),
}


class ConfigError(ValueError):
    """A harness variable or a CONFIG_OVERRIDES entry is invalid."""


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    """cfg updated with an agent's CONFIG_OVERRIDES, after checking every key and value."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"CONFIG_OVERRIDES must be a dict, got {type(overrides).__name__}")
    out = dict(cfg)
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            raise ConfigError(
                f"CONFIG_OVERRIDES[{key!r}]: only {sorted(OVERRIDABLE)} may be overridden"
            )
        what, check = OVERRIDABLE[key]
        if key == "warmup_iters":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= cfg["max_iters"]
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
