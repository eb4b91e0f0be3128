"""Preflight: a crashing edit is reported in seconds on CPU instead of hours later on a GPU."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from sandbox._backend import SettingJob
from sandbox._local import LocalBackend
from sandbox._models import DataPaths, PreflightResult
from sandbox._results import tail_text

_DRIVER = Path(__file__).with_name("_preflight_driver.py")
_DRIVER_NAME = "_pb_preflight.py"
_SCRIPT_NAME = "_pb_preflight.sh"


def preflight(
    codebase_dir: Path,
    files: dict[str, str],
    profile: str = "micro",
    *,
    real_profiles: list[str] | None = None,
    time_limit_s: float = 120.0,
    backend: LocalBackend | None = None,
) -> PreflightResult:
    """Import the edited ``custom_pretrain.py`` and run a few steps at ``profile`` on synthetic
    tokens (in the local sandbox), and check ``get_lr`` over the whole iteration range of each
    real profile (``real_profiles``; default every profile of ``pb_config.PROFILES`` but ``profile``).

    The error text holds the relevant traceback lines (paths relative to the codebase).
    """
    start = time.monotonic()
    backend = backend or LocalBackend(memory_limit_mb=4096, max_processes=256)
    scratch = Path(tempfile.mkdtemp(prefix="pb-preflight-"))
    try:
        out = scratch / "out"
        out.mkdir()
        overlay = dict(files)
        overlay[_DRIVER_NAME] = _DRIVER.read_text()
        overlay[_SCRIPT_NAME] = f'exec python "{_DRIVER_NAME}"\n'
        job = SettingJob(
            label="preflight",
            seed=0,
            script=_SCRIPT_NAME,
            codebase_dir=codebase_dir,
            files=overlay,
            out_dir=out,
            log_path=scratch / "log.txt",
            data=DataPaths(data_dir=out / "data"),
            time_limit_s=time_limit_s,
            env={
                "PB_PROFILE": profile,
                "PB_DEVICE": "cpu",
                "PB_COMPILE": "0",
                "PB_PREFLIGHT_REAL_PROFILES": ",".join(real_profiles or []),
            },
        )
        outcome = backend.run_setting(job)
        elapsed = round(time.monotonic() - start, 3)
        verdict_path = out / "preflight.json"
        if outcome.timed_out:
            return PreflightResult(
                ok=False,
                elapsed_s=elapsed,
                error=f"preflight timed out after {time_limit_s:.0f} s (an endless loop?)",
            )
        if outcome.oom:
            return PreflightResult(
                ok=False,
                elapsed_s=elapsed,
                error="preflight ran out of memory at the micro profile",
            )
        try:
            verdict = json.loads(verdict_path.read_text())
        except (OSError, ValueError):
            tail = tail_text(scratch / "log.txt", lines=20, max_chars=2000)
            why = outcome.infra_error or f"exit code {outcome.exit_code}"
            return PreflightResult(
                ok=False,
                elapsed_s=elapsed,
                error=f"preflight ended without a verdict ({why}). Last lines:\n{tail}",
            )
        if verdict.get("ok") is True:
            return PreflightResult(ok=True, elapsed_s=elapsed)
        return PreflightResult(
            ok=False, elapsed_s=elapsed, error=str(verdict.get("error") or "preflight failed")
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
