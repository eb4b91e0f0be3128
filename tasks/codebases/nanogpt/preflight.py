"""
The preflight job of tasks whose agent code runs in training (the architecture regions): in
seconds, before a test is charged, the mistakes a long run would otherwise find hours later.

    PB_OUT_DIR=out python preflight.py        # see scripts/preflight.sh

Steps, each on the edited custom_pretrain.py beside this file:
1. import it as a module (never as __main__);
2. check CONFIG_OVERRIDES (PB_CONFIG_OVERRIDES, else its region read as a literal) against every
   real profile: the run's own as configured, the others at their defaults;
3. train the micro profile (2 layers, a few CPU steps) on random tokens this job writes itself,
   under TMPDIR: the frozen training loop with the edited regions, get_lr included;
4. check that the model is causal: the logits before a position must not change when the
   tokens from that position on change (the trusted evaluator refuses such a model at the end).
Exit 0: passed. Else $PB_OUT_DIR/failure.json holds the reason the agent reads (the exception and
the traceback lines of custom_pretrain.py only) and the exit code is 1. Nothing here is a result.
"""

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import pb_config
import pb_data
import pb_jobs

# -----------------------------------------------------------------------------
# what is run

EDITED = Path(__file__).resolve().with_name("custom_pretrain.py")  # the agent's file, beside us
PROFILE = "micro"  # a 2-layer model, 3 iterations of 2 x 32 tokens
SEED = 1234  # of the random tokens and of the causality check
CAUSAL_CUTS = (1, 8, 31)  # positions from which the check changes the tokens
CAUSAL_TOL = 1e-4  # fp32 on a CPU: a causal model's logits do not move at all
# harness overrides of the run's profile that do not apply to the micro run
RUN_ONLY = ("PB_MAX_ITERS", "PB_BATCH_SIZE", "PB_GRAD_ACCUM", "PB_EVAL_INTERVAL", "PB_VAL_WINDOWS",
            "PB_COMPILE", "PB_LR_SCHEDULE_JOB", "PB_NPROC")


class PreflightFailure(Exception):
    """The edited code fails a check; the message is the agent's reason."""


def write_random_data(data_dir, cfg):
    """Train and val shards of uniform random GPT-2 tokens, enough for cfg's run."""
    rng = np.random.default_rng(SEED)
    block = cfg["block_size"]
    n_train = cfg["tokens_per_iter"] * (cfg["max_iters"] + 2) + 4 * (block + 1)
    n_val = (cfg["val_windows"] + 2) * (block + 1)
    pb_data.write_shard(data_dir / "train_000000.bin", rng.integers(0, 50257, n_train, dtype=np.uint16))
    pb_data.write_shard(data_dir / "val_000000.bin", rng.integers(0, 50257, n_val, dtype=np.uint16))
    pb_data.write_meta(data_dir, source="preflight-random")


def check_overrides(environ):
    """CONFIG_OVERRIDES, checked by apply_overrides for every real profile as the schedule job and
    training will check it."""
    overrides = pb_config.read_overrides(environ, EDITED)
    own = pb_config.resolve_run_config(environ)
    configs = {own["profile"]: own}
    for profile in pb_config.REAL_PROFILES:
        configs.setdefault(profile, pb_config.resolve_run_config({"PB_PROFILE": profile}))
    for profile, cfg in configs.items():
        try:
            pb_config.apply_overrides(cfg, overrides)
        except pb_config.ConfigError as e:
            raise PreflightFailure(f"{e} (profile {profile}, max_iters {cfg['max_iters']})") from None
    return overrides


def agent_call(what, fn, *args):
    """fn(*args); an exception of the agent's code becomes a PreflightFailure with its traceback."""
    try:
        return fn(*args)
    except PreflightFailure:
        raise
    except BaseException as e:  # SystemExit too: agent code does not end this job
        raise PreflightFailure(pb_jobs.agent_failure(
            f"{what} raised {pb_jobs.exception_text(e, EDITED)}", e, EDITED)) from None


def train_micro(cp, environ, overrides, work):
    """The micro profile through the frozen main() of the edited file, on random tokens, with the
    overrides (a warmup longer than its 3 iterations shortened: it was checked for the real ones)."""
    env = {k: v for k, v in environ.items() if k not in RUN_ONLY}
    env.update(PB_PROFILE=PROFILE, PB_DEVICE="cpu", PB_DATA_DIR=str(work / "data"), PB_OUT_DIR=str(work / "out"))
    micro = dict(overrides)
    if "warmup_iters" in micro:
        micro["warmup_iters"] = min(micro["warmup_iters"], pb_config.resolve_run_config(env)["max_iters"])
    env[pb_config.OVERRIDES_ENV] = json.dumps(micro)
    (work / "data").mkdir()
    write_random_data(work / "data", pb_config.resolve_run_config(env))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        cp.main()
    except SystemExit as e:  # main() stops itself with failure.json for a known reason
        if e.code not in (None, 0):
            failure = work / "out" / pb_jobs.FAILURE_FILE
            reason = f"exit code {e.code}"
            try:
                reason = json.loads(failure.read_text())["reason"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
            raise PreflightFailure(f"training at the micro profile stopped: {reason}") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if not (work / "out" / ".training_complete").is_file():
        raise PreflightFailure("training at the micro profile ended without completing")


def check_causal(cp, torch):
    """Raise PreflightFailure if the logits before a cut change when the tokens after it do."""
    cfg = pb_config.resolve_run_config({"PB_PROFILE": PROFILE})
    torch.manual_seed(SEED)
    model = cp.GPT(cp.GPTConfig(**pb_config.model_config(cfg))).eval()
    T = cfg["block_size"]
    g = torch.Generator().manual_seed(SEED)
    idx = torch.randint(0, 50257, (2, T), generator=g)
    with torch.no_grad():
        base = model(idx)[0].float()
        for cut in CAUSAL_CUTS:
            other = idx.clone()
            other[:, cut:] = torch.randint(0, 50257, (2, T - cut), generator=g)
            changed = model(other)[0].float()
            diff = float((base[:, :cut] - changed[:, :cut]).abs().max())
            if not math.isfinite(diff) or diff > CAUSAL_TOL:
                raise PreflightFailure(
                    f"the model is not causal: with the tokens from position {cut} on changed, the logits "
                    f"at earlier positions changed by up to {diff:.3g}; the evaluator refuses such a model "
                    "(its losses would not be next-token predictions)")


def main():
    out_dir = pb_jobs.output_dir()
    environ = dict(os.environ)
    try:
        import importlib.util

        import torch

        spec = importlib.util.spec_from_file_location("custom_pretrain", EDITED)
        cp = importlib.util.module_from_spec(spec)
        sys.modules["custom_pretrain"] = cp
        agent_call(f"importing {pb_jobs.EDITED_FILE}", spec.loader.exec_module, cp)
        try:
            overrides = check_overrides(environ)
        except pb_config.ConfigError as e:
            raise PreflightFailure(str(e)) from None
        with tempfile.TemporaryDirectory(prefix="pb_preflight_") as work:
            agent_call("training at the micro profile", train_micro, cp, environ, overrides, Path(work))
        agent_call("the causality check (a forward pass of the micro model)", check_causal, cp, torch)
    except PreflightFailure as e:
        pb_jobs.write_failure(out_dir, str(e))
        print(f"PREFLIGHT FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    print("preflight: passed (import, CONFIG_OVERRIDES, micro training, causality)", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # agent code ran here: no interpreter shutdown hooks of it
