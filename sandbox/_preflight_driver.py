"""Runs inside the sandbox (copied into the codebase copy): the preflight of an edited file.

Standard library plus the codebase's own trusted helpers only. Writes its verdict to
``$PB_OUT_DIR/preflight.json``: ``{"ok": bool, "stage": str, "error": str | None}``.
"""

import json
import math
import os
import runpy
import sys
import traceback

OUT = os.environ["PB_OUT_DIR"]
EDITED = "custom_pretrain.py"
LR_KEYS = ("learning_rate", "min_lr", "warmup_iters", "lr_decay_iters")


def verdict(ok, stage, error=None):
    if error:  # paths relative to the codebase copy: the temp dir means nothing to the reader
        error = error.replace(os.getcwd() + os.sep, "")
    with open(os.path.join(OUT, "preflight.json"), "w") as fh:
        json.dump({"ok": ok, "stage": stage, "error": error}, fh)
    sys.stdout.flush()
    os._exit(0)


def relevant_traceback(exc):
    """The frames of the edited file (and the harness frames that called into it), then the error."""
    frames = traceback.extract_tb(exc.__traceback__)
    lines = []
    for fr in frames:
        name = os.path.basename(fr.filename)
        if (
            name == os.path.basename(__file__)
            or "site-packages" in fr.filename
            or fr.filename.startswith("<frozen")
        ):
            continue
        lines.append(f'  File "{name}", line {fr.lineno}, in {fr.name}')
        if fr.line:
            lines.append(f"    {fr.line.strip()}")
    lines = lines[-24:]
    last = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    head = "Traceback (most recent call last):"
    return "\n".join([head, *lines, last]) if lines else last


def main():
    sys.path.insert(0, os.getcwd())
    try:
        import numpy as np
        import pb_config
        import pb_data

        cfg = pb_config.resolve_run_config(dict(os.environ))
        data_dir = os.environ["PB_DATA_DIR"]
        os.makedirs(data_dir, exist_ok=True)
        block = int(cfg["block_size"])
        vocab = min(int(cfg["vocab_size"]), 50257)
        per_iter = int(
            cfg.get("tokens_per_iter") or block * int(cfg["batch_size"]) * int(cfg["grad_accum"])
        )
        n_train = per_iter * (int(cfg["max_iters"]) + 2) + 4 * (block + 1)
        n_val = (int(cfg.get("val_windows") or 4) + 2) * (block + 1)
        rng = np.random.default_rng(0)
        pb_data.write_shard(
            os.path.join(data_dir, "train_000000.bin"),
            rng.integers(0, vocab, n_train, dtype=np.uint16),
        )
        pb_data.write_shard(
            os.path.join(data_dir, "val_000000.bin"), rng.integers(0, vocab, n_val, dtype=np.uint16)
        )
        if hasattr(pb_data, "write_meta"):
            pb_data.write_meta(data_dir, source="preflight-synthetic")
        else:
            with open(os.path.join(data_dir, "meta.json"), "w") as fh:
                json.dump({"source": "preflight-synthetic"}, fh)
        wanted = os.environ.get("PB_PREFLIGHT_REAL_PROFILES", "")
        real_profiles = (
            wanted.split(",")
            if wanted
            else [
                p
                for p in getattr(pb_config, "PROFILES", {"full": None})
                if p != os.environ.get("PB_PROFILE")
            ]
        )
    except BaseException as exc:  # the harness itself failed: report it plainly
        verdict(
            False, "harness", "preflight could not prepare its data: " + relevant_traceback(exc)
        )

    try:
        import custom_pretrain as cp
    except BaseException as exc:
        verdict(False, "import", f"importing {EDITED} failed:\n" + relevant_traceback(exc))

    # get_lr over each real profile's whole iteration range, with the edit's overrides applied.
    for profile in real_profiles:
        real_env = {
            k: v for k, v in os.environ.items() if not k.startswith("PB_") or k == "PB_SEED"
        }
        real_env["PB_PROFILE"] = profile
        it = -1
        try:
            real = pb_config.resolve_run_config(real_env)
            overrides = getattr(cp, "CONFIG_OVERRIDES", {})
            if hasattr(pb_config, "apply_overrides"):
                real = pb_config.apply_overrides(real, overrides)  # the frozen code's own checks
            elif isinstance(overrides, dict):
                real = {**real, **{k: v for k, v in overrides.items() if k in LR_KEYS}}
            args = (
                real["warmup_iters"],
                real["lr_decay_iters"],
                real["learning_rate"],
                real["min_lr"],
            )
            where = f"(profile {profile}, max_iters {real['max_iters']})"
            for it in range(int(real["max_iters"]) + 1):
                lr = cp.get_lr(it, *args)
                if isinstance(lr, bool) or (
                    not isinstance(lr, (int, float)) and not hasattr(lr, "__float__")
                ):
                    verdict(
                        False,
                        "get_lr",
                        f"get_lr({it}, …) returned {type(lr).__name__} {lr!r}, not a number {where}",
                    )
                value = float(lr)
                if not math.isfinite(value) or value < 0:
                    verdict(
                        False,
                        "get_lr",
                        f"get_lr({it}, …) returned {value!r}: learning rates must be finite "
                        f"and >= 0 {where}",
                    )
        except SystemExit:
            raise
        except BaseException as exc:
            what = (
                f"get_lr raised at iteration {it} (profile {profile})"
                if it >= 0
                else "CONFIG_OVERRIDES was rejected"
            )
            verdict(False, "get_lr", f"{what}:\n" + relevant_traceback(exc))

    # A few training steps at the micro profile: the frozen training code, the edited regions.
    sys.argv = [EDITED]
    try:
        runpy.run_path(EDITED, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            reason = None
            try:
                with open(os.path.join(OUT, "failure.json")) as fh:
                    reason = json.load(fh).get("reason")
            except (OSError, ValueError, AttributeError):
                pass
            verdict(
                False,
                "train",
                f"training at the micro profile stopped: {reason or 'exit code ' + str(exc.code)}",
            )
    except BaseException as exc:
        verdict(False, "train", "training at the micro profile raised:\n" + relevant_traceback(exc))

    losses = []
    try:
        with open(os.path.join(OUT, "curve.jsonl")) as fh:
            for line in fh:
                point = json.loads(line)
                if "train_loss" in point:
                    losses.append(point["train_loss"])
    except (OSError, ValueError):
        pass
    bad = [x for x in losses if not isinstance(x, (int, float)) or not math.isfinite(x)]
    if bad:
        verdict(False, "train", f"non-finite training loss at the micro profile: {bad[0]!r}")
    verdict(True, "done")


main()
