"""
The schedule job: runs the agent's get_lr once, in a sandbox of its own, and writes the table of
learning rates that training uses (so no agent code needs to run where training runs).

    PB_OUT_DIR=out python schedule.py          # see scripts/schedule.sh

For every real profile (tiny, small, full: the run's own profile as the harness configured it,
PB_MAX_ITERS and all; the others at their defaults), with CONFIG_OVERRIDES applied, it imports
custom_pretrain.py afresh as a module (never as __main__: nothing trains) and calls
get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr) for it = 0 .. max_iters - 1, in
order, exactly as training used to. Each value must be a real number (int, float, or anything
float() accepts such as a 0-d tensor; not bool or str), finite and >= 0. Writes

    $PB_OUT_DIR/schedule.json = {"schema_version": 1, "profiles": {"tiny": {"max_iters": ...,
        "warmup_iters": ..., "lr_decay_iters": ..., "learning_rate": ..., "min_lr": ...,
        "lr": [float, ...]}, "small": {...}, "full": {...}}}

and exits 0; or writes failure.json with a reason for the agent (the exception and the traceback
lines of custom_pretrain.py only) and exits 1. Training checks the table again
(pb_config.load_lr_table): nothing here is trusted.
"""

import importlib.util
import math
import os
import sys
from pathlib import Path

import pb_config
import pb_jobs

# -----------------------------------------------------------------------------
# what is run

EDITED = Path(__file__).resolve().with_name("custom_pretrain.py")  # the agent's file, beside us
MODULE_NAME = "custom_pretrain"  # its name when imported: code that looks itself up finds it


class ScheduleFailure(Exception):
    """The agent's schedule or overrides cannot give a table; the message is the agent's reason."""


def import_edited():
    """A fresh module object of custom_pretrain.py: a stateful get_lr starts over each time."""
    spec = importlib.util.spec_from_file_location(MODULE_NAME, EDITED)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # SystemExit too: agent code does not end this job
        raise ScheduleFailure(pb_jobs.agent_failure(
            f"importing {pb_jobs.EDITED_FILE} raised {pb_jobs.exception_text(e, EDITED)}", e, EDITED)) from None
    if not callable(getattr(module, "get_lr", None)):
        raise ScheduleFailure(f"{pb_jobs.EDITED_FILE} defines no function get_lr")
    return module


def profile_configs(environ, overrides):
    """{profile: run configuration with the overrides applied}, the run's own profile first."""
    own = pb_config.resolve_run_config(environ)
    configs = {own["profile"]: own}
    for profile in pb_config.REAL_PROFILES:
        if profile not in configs:
            configs[profile] = pb_config.resolve_run_config({"PB_PROFILE": profile})
    out = {}
    for profile, cfg in configs.items():
        try:
            out[profile] = pb_config.apply_overrides(cfg, overrides)
        except pb_config.ConfigError as e:
            raise ScheduleFailure(f"{e} (profile {profile}, max_iters {cfg['max_iters']})") from None
    return out


def as_number(value):
    """float(value) for a real number (int, float, anything with __float__ but bool and str)."""
    if isinstance(value, (bool, str)) or not (isinstance(value, (int, float)) or hasattr(value, "__float__")):
        raise TypeError(f"returned {type(value).__name__} {value!r:.80}, not a number")
    return float(value)


def table(get_lr, profile, cfg):
    """[get_lr(it, ...) for it in range(max_iters)], each value checked, in iteration order."""
    args = [cfg[key] for key in pb_config.SCHEDULE_ARGS]
    where = f"(profile {profile}, max_iters {cfg['max_iters']})"
    lrs = []
    for it in range(cfg["max_iters"]):
        try:
            value = get_lr(it, *args)
        except BaseException as e:
            raise ScheduleFailure(pb_jobs.agent_failure(
                f"get_lr raised {type(e).__name__} at iteration {it} (profile {profile}): "
                f"{pb_jobs.exception_message(e, EDITED)}", e, EDITED)) from None
        try:
            lr = as_number(value)
        except TypeError as e:  # not a number at all
            raise ScheduleFailure(f"get_lr({it}, {', '.join(map(repr, args))}) {e} {where}") from None
        except BaseException as e:  # its own __float__ raised
            raise ScheduleFailure(pb_jobs.agent_failure(
                f"float() of get_lr's value at iteration {it} raised {pb_jobs.exception_text(e, EDITED)} {where}",
                e, EDITED)) from None
        if not math.isfinite(lr) or lr < 0:
            raise ScheduleFailure(f"get_lr({it}, {', '.join(map(repr, args))}) returned {lr!r} {where}; "
                                  "the learning rate must be finite and >= 0")
        lrs.append(lr)
    return lrs


def main():
    out_dir = pb_jobs.output_dir(pb_config.SCHEDULE_FILE)
    try:
        overrides = pb_config.read_overrides(os.environ, EDITED)
        profiles = {}
        for profile, cfg in profile_configs(os.environ, overrides).items():
            module = import_edited()
            entry = {key: cfg[key] for key in ("max_iters", *pb_config.SCHEDULE_ARGS)}
            entry["lr"] = table(module.get_lr, profile, cfg)
            profiles[profile] = entry
    except (ScheduleFailure, pb_config.ConfigError) as e:
        pb_jobs.write_failure(out_dir, str(e))
        print(f"SCHEDULE FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    pb_jobs.write_json(out_dir / pb_config.SCHEDULE_FILE,
                       {"schema_version": pb_config.SCHEDULE_SCHEMA_VERSION, "profiles": profiles})
    print("schedule: " + ", ".join(f"{p} {len(e['lr'])} iterations" for p, e in profiles.items()), flush=True)
    return 0


if __name__ == "__main__":
    # agent code ran in this process: end it without interpreter shutdown hooks of that code
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
