"""`runner gpu-check`: one command that tells a person with GPUs whether the benchmark will run.

Parts, one after another, each with a time cap (about 8 minutes in all on one H100, so it fits a
short loan of a GPU machine): the environment (driver, CUDA, torch, GPUs); the memory plan of the
full profile (the codebase's ``pb_memory.py``); a short throughput run of the full profile at the
planned micro-batch (``benchmarks/train_throughput.py``: tokens/s, MFU, peak memory); a
200-iteration small-profile loss curve against a stored reference; the lm-eval adapter's items/s
at batch 1 and 64 (``benchmarks/eval_throughput.py``); and the Docker GPU path when Docker and
the NVIDIA runtime are present. Every part runs in a subprocess (the runner never imports torch);
a part that fails or runs past its cap is reported with the reason and its log, never a traceback.
The report is written as JSON beside the printed table (``--out``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from runner._components import REPO_ROOT, pretrainbench_home

CODEBASE_DIR = REPO_ROOT / "tasks" / "codebases" / "nanogpt"
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
REFERENCE_FILE = BENCHMARKS_DIR / "reference" / "gpu_check_small_curve.json"
REPORT_VERSION = 1
DRY_RUN_GPU_MEM_GIB = 80.0  # the dry run plans for an 80 GB H100 ...
DRY_RUN_GPUS = 2  # ... in the benchmark's 2-rank setting
CURVE_ITERS = 200
# a loss curve matches its reference when the last common step differs by at most this much and
# no step by more than the second figure (same seed and data; kernels differ across GPUs and
# releases, so the curves are close, not identical)
CURVE_FINAL_TOLERANCE = 0.05
CURVE_ANY_TOLERANCE = 0.15

Status = Literal["ok", "failed", "skipped", "planned"]
Say = Callable[[str], None]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartResult(_Model):
    """One part of the check: what it found, or why it did not."""

    name: str
    status: Status
    summary: str
    cap_s: float
    seconds: float = 0.0
    command: list[str] = []
    log: str | None = None
    data: dict[str, JsonValue] = {}


class GpuCheckReport(_Model):
    """``gpu_check.json``: every part's result, in order."""

    version: int = REPORT_VERSION
    started_at: str
    dry_run: bool
    gpus: list[str]
    parts: list[PartResult]

    @property
    def ok(self) -> bool:
        """No part failed (skipped parts are fine: each says why)."""
        return all(p.status != "failed" for p in self.parts)


class ReferenceCurve(_Model):
    """The stored small-profile loss curve later GPU runs are compared with."""

    profile: str
    iterations: int
    seed: int
    gpus: int
    device: str
    torch: str
    recorded_at: str
    steps: list[int]
    train_loss: list[float]


@dataclass(frozen=True)
class Part:
    """A part of the check: its name, time cap and what it is for."""

    name: str
    cap_s: float
    what: str


PARTS = (
    Part("environment", 30, "driver, CUDA, torch and the GPUs with their memory"),
    Part("memory-plan", 30, "pb_memory.py: micro-batch x accumulation of the full profile per GPU"),
    Part("throughput", 120, "full profile at the planned micro-batch: tokens/s, MFU, peak memory"),
    Part("loss-curve", 210, f"{CURVE_ITERS} iterations of the small profile vs the reference"),
    Part("eval-throughput", 60, "lm-eval adapter items/s at batch 1 and 64"),
    Part("docker", 30, "the GPU image under Docker with the NVIDIA runtime"),
)
PART_NAMES = tuple(p.name for p in PARTS)


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it."""

    index: str
    name: str
    memory_mib: int
    driver: str


@dataclass(frozen=True)
class CheckOptions:
    """What ``runner gpu-check`` was asked to do."""

    out_dir: Path
    dry_run: bool = False
    record_reference: bool = False
    skip: tuple[str, ...] = ()
    codebase_dir: Path = CODEBASE_DIR
    benchmarks_dir: Path = BENCHMARKS_DIR
    reference_file: Path = REFERENCE_FILE
    python: str = sys.executable


# -- running one part --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ran:
    returncode: int | None  # None: stopped at its cap
    seconds: float
    output: str


def _run_capped(
    cmd: list[str], *, cwd: Path, cap_s: float, log: Path, env: dict[str, str] | None = None
) -> _Ran:
    """Run ``cmd`` in a session of its own (torchrun and compile workers included), its output
    to ``log``; at ``cap_s`` the whole session is stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("wb") as sink:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            sink.write(f"could not start {cmd[0]}: {exc}\n".encode())
            return _Ran(127, time.monotonic() - t0, f"could not start {cmd[0]}: {exc}")
        try:
            rc: int | None = proc.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            rc = None
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
    return _Ran(rc, time.monotonic() - t0, log.read_text(errors="replace"))


def _last_json(text: str) -> dict[str, JsonValue] | None:
    """The last line of ``text`` that is a JSON object (our scripts print one at the end)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return None
    return whole if isinstance(whole, dict) else None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-400:] or "(no output)"


def _failure(ran: _Ran, cap_s: float) -> str:
    if ran.returncode is None:
        return f"stopped at its {cap_s:g} s cap"
    return f"exit {ran.returncode}: {_tail(ran.output)}"


# -- the environment ---------------------------------------------------------------------------


def gpu_inventory() -> list[GpuInfo]:
    """The GPUs nvidia-smi sees (empty without a driver or when CUDA_VISIBLE_DEVICES is empty)."""
    smi = shutil.which("nvidia-smi")
    if not smi or os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return []
    try:
        out = subprocess.run(
            [
                smi,
                "--query-gpu=index,name,memory.total,driver_version",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4 and fields[2].isdigit():
            gpus.append(GpuInfo(fields[0], fields[1], int(fields[2]), fields[3]))
    return gpus


_TORCH_PROBE = """
import json, torch
info = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "devices": []}
if info["cuda_available"]:
    info["devices"] = [{"name": torch.cuda.get_device_name(i),
                        "memory_bytes": torch.cuda.get_device_properties(i).total_memory,
                        "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                       for i in range(torch.cuda.device_count())]
    info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
print(json.dumps(info))
"""


def _environment(opts: CheckOptions, part: Part, gpus: list[GpuInfo]) -> PartResult:
    cmd = [opts.python, "-c", _TORCH_PROBE]
    ran = _run_capped(cmd, cwd=opts.out_dir, cap_s=part.cap_s, log=opts.out_dir / "environment.log")
    probe = _last_json(ran.output) if ran.returncode == 0 else None
    data: dict[str, JsonValue] = {
        "gpus": [
            {"index": g.index, "name": g.name, "memory_mib": g.memory_mib, "driver": g.driver}
            for g in gpus
        ],
        "driver": gpus[0].driver if gpus else None,
        "cuda_driver": _cuda_driver_version(),
        "python": sys.version.split()[0],
    }
    if probe is None:
        return _result(part, "failed", f"torch probe: {_failure(ran, part.cap_s)}", ran, cmd, data)
    data.update(probe)
    names = ", ".join(f"{g.name} ({g.memory_mib / 1024:.0f} GiB)" for g in gpus) or "no GPU"
    summary = (
        f"driver {data['driver'] or '—'} (CUDA {data['cuda_driver'] or '—'}), torch "
        f"{probe.get('torch')} (CUDA build {probe.get('cuda_build') or 'none'}); {names}"
    )
    status: Status = "ok"
    if not gpus or not probe.get("cuda_available"):
        status, summary = "failed", summary + "; torch sees no CUDA device"
    return _result(part, status, summary, ran, cmd, data)


def _cuda_driver_version() -> str | None:
    """The CUDA version the driver supports (nvidia-smi's header), or None."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        text = subprocess.run([smi], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"CUDA Version:\s*([0-9.]+)", text)
    return match.group(1) if match else None


def _result(
    part: Part,
    status: Status,
    summary: str,
    ran: _Ran | None = None,
    cmd: list[str] | None = None,
    data: dict[str, JsonValue] | None = None,
    log: Path | None = None,
) -> PartResult:
    return PartResult(
        name=part.name,
        status=status,
        summary=summary,
        cap_s=part.cap_s,
        seconds=round(ran.seconds, 1) if ran else 0.0,
        command=cmd or [],
        log=str(log) if log else None,
        data=data or {},
    )


# -- the memory plan ---------------------------------------------------------------------------

_PLAN_KEYS = ("micro_batch", "grad_accum", "estimated_peak_bytes", "fraction_of_gpu")


def _memory_plan(opts: CheckOptions, part: Part, gpu_mem_gib: float, n_gpus: int) -> PartResult:
    script = opts.codebase_dir / "pb_memory.py"
    cmd = [
        opts.python,
        "pb_memory.py",
        "--profile",
        "full",
        "--gpu-mem-gib",
        f"{gpu_mem_gib:g}",
        "--gpus",
        str(n_gpus),
        "--json",
    ]
    if not script.is_file():
        return _result(
            part,
            "failed",
            f"no memory plan: {script} is missing (the codebase's memory planner, issue 16 item 1)",
            cmd=cmd,
        )
    log = opts.out_dir / "memory-plan.log"
    ran = _run_capped(cmd, cwd=opts.codebase_dir, cap_s=part.cap_s, log=log)
    plan = _last_json(ran.output) if ran.returncode == 0 else None
    if plan is None:
        return _result(
            part, "failed", f"pb_memory.py: {_failure(ran, part.cap_s)}", ran, cmd, log=log
        )
    numbers = {k: v for k in _PLAN_KEYS if isinstance(v := plan.get(k), int | float)}
    missing = [k for k in _PLAN_KEYS if k not in numbers]
    if missing:
        why = f"pb_memory.py printed no {', '.join(missing)}"
        return _result(part, "failed", why, ran, cmd, {"plan": plan}, log)
    peak, fraction = float(numbers["estimated_peak_bytes"]), float(numbers["fraction_of_gpu"])
    per_gpu = plan.get("accum_steps_per_gpu")
    summary = (
        f"full profile on {n_gpus} x {gpu_mem_gib:g} GiB: micro-batch {plan['micro_batch']}, "
        f"accumulation {plan['grad_accum']}"
        + (f" ({per_gpu} per GPU)" if per_gpu is not None else "")
        + f", estimated peak {peak / 2**30:.1f} GiB per GPU ({fraction * 100:.0f} % of the GPU)"
    )
    status: Status = "ok" if fraction <= 0.9 else "failed"
    if status == "failed":
        summary += "; above the 90 % the plan promises"
    return _result(part, status, summary, ran, cmd, {"plan": plan}, log)


# -- throughput, loss curve, evaluation, docker ------------------------------------------------


def _throughput(
    opts: CheckOptions, part: Part, micro_batch: int | None, estimated_gib: float | None
) -> PartResult:
    script = opts.benchmarks_dir / "train_throughput.py"
    batch = micro_batch or 16
    cmd = [opts.python, str(script), "--profile", "full", "--batch-size", str(batch)]
    cmd += ["--steps", "10", "--warmup", "3", "--json"]
    if not script.is_file():
        return _result(part, "skipped", f"{script} is missing (run from a checkout)", cmd=cmd)
    log = opts.out_dir / "throughput.log"
    env = {"CUDA_VISIBLE_DEVICES": _first_visible_gpu()}
    ran = _run_capped(cmd, cwd=opts.benchmarks_dir, cap_s=part.cap_s, log=log, env=env)
    result = _last_json(ran.output) if ran.returncode == 0 else None
    if result is None:
        return _result(part, "failed", _failure(ran, part.cap_s), ran, cmd, log=log)
    mfu = result.get("mfu")
    mfu_text = (
        f"MFU {float(mfu) * 100:.1f} %"
        if isinstance(mfu, int | float)
        else f"MFU — ({result.get('mfu_note') or 'no peak'})"
    )
    rate = result.get("tokens_per_s")
    summary = (
        f"{result.get('device')}: {rate if isinstance(rate, int | float) else 0:,.0f} tokens/s at "
        f"micro-batch {batch}{'' if micro_batch else ' (no memory plan: a guess)'}, {mfu_text}, "
        f"peak memory {result.get('peak_mem_gb', '—')} GiB"
        + (f" (planned {estimated_gib:.1f})" if estimated_gib else "")
        + f", compile + warm-up {result.get('warmup_s')} s"
    )
    return _result(part, "ok", summary, ran, cmd, {"result": result}, log)


def _first_visible_gpu() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[0] if visible else "0"


def read_curve(path: Path) -> tuple[list[int], list[float]]:
    """Steps and training losses of a ``curve.jsonl`` (rows that are not JSON are skipped: a run
    stopped at its cap may leave half a line)."""
    steps: list[int] = []
    losses: list[float] = []
    if not path.is_file():
        return steps, losses
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            loss = row.get("train_loss")
            if isinstance(loss, int | float):
                steps.append(row["step"])
                losses.append(float(loss))
    return steps, losses


def compare_curves(
    steps: list[int], losses: list[float], reference: ReferenceCurve
) -> dict[str, JsonValue]:
    """The differences from the reference at the steps both have, and the verdict."""
    ref = dict(zip(reference.steps, reference.train_loss, strict=True))
    common = [(s, loss, ref[s]) for s, loss in zip(steps, losses, strict=True) if s in ref]
    if not common:
        return {"verdict": "no common steps", "common_steps": 0}
    diffs = [abs(a - b) for _, a, b in common]
    last_step, last, last_ref = common[-1]
    final = abs(last - last_ref)
    matches = final <= CURVE_FINAL_TOLERANCE and max(diffs) <= CURVE_ANY_TOLERANCE
    return {
        "verdict": "matches" if matches else "differs",
        "common_steps": len(common),
        "last_common_step": last_step,
        "loss": last,
        "reference_loss": last_ref,
        "final_abs_diff": round(final, 4),
        "max_abs_diff": round(max(diffs), 4),
        "mean_abs_diff": round(sum(diffs) / len(diffs), 4),
    }


def _loss_curve(opts: CheckOptions, part: Part, gpus: list[GpuInfo], torch: str) -> PartResult:
    home = pretrainbench_home()
    data_dir, tok_dir = home / "data" / "offline", home / "tokenizer"
    n = min(2, len(gpus)) or 1
    script = opts.codebase_dir / "custom_pretrain.py"
    launcher = [opts.python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    cmd = [*(launcher if n > 1 else [opts.python]), "custom_pretrain.py"]
    if not (data_dir / "meta.json").is_file():
        why = f"no training data in {data_dir} (run `runner setup` first)"
        return _result(part, "failed", why, cmd=cmd)
    run_dir = opts.out_dir / "loss-curve"
    env = {
        "PB_PROFILE": "small",
        "PB_MAX_ITERS": str(CURVE_ITERS),
        "PB_EVAL_INTERVAL": str(CURVE_ITERS // 2),
        "PB_VAL_WINDOWS": "256",
        "PB_SEED": "42",
        "PB_DEVICE": "cuda",
        "PB_DATA_DIR": str(data_dir),
        "PB_TOKENIZER_DIR": str(tok_dir),
        "PB_OUT_DIR": str(run_dir),
    }
    log = opts.out_dir / "loss-curve.log"
    ran = _run_capped(cmd, cwd=script.parent, cap_s=part.cap_s, log=log, env=env)
    steps, losses = read_curve(run_dir / "curve.jsonl")
    data: dict[str, JsonValue] = {"gpus": n, "steps": list(steps), "train_loss": list(losses)}
    if not steps:
        return _result(
            part, "failed", f"no curve: {_failure(ran, part.cap_s)}", ran, cmd, data, log
        )
    reached = f"{steps[-1]} of {CURVE_ITERS} iterations on {n} GPU(s)"
    if ran.returncode is None:
        reached += f" (stopped at its {part.cap_s:g} s cap; compared on the steps reached)"
    elif ran.returncode != 0:
        return _result(
            part, "failed", f"{reached}; {_failure(ran, part.cap_s)}", ran, cmd, data, log
        )
    if opts.record_reference:
        if steps[-1] != CURVE_ITERS:
            why = f"{reached}: a reference needs all {CURVE_ITERS} iterations; not recorded"
            return _result(part, "failed", why, ran, cmd, data, log)
        ref = ReferenceCurve(
            profile="small",
            iterations=CURVE_ITERS,
            seed=42,
            gpus=n,
            device=gpus[0].name if gpus else "unknown",
            torch=torch,
            recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            steps=steps,
            train_loss=losses,
        )
        opts.reference_file.parent.mkdir(parents=True, exist_ok=True)
        opts.reference_file.write_text(ref.model_dump_json(indent=1) + "\n")
        summary = (
            f"{reached}; loss {losses[-1]:.4f}; recorded as the reference in {opts.reference_file}"
        )
        return _result(part, "ok", summary, ran, cmd, data, log)
    reference = load_reference(opts.reference_file)
    if isinstance(reference, str):
        summary = f"{reached}; loss {losses[-1]:.4f}; {reference}"
        return _result(part, "ok", summary, ran, cmd, data, log)
    comparison = compare_curves(steps, losses, reference)
    data["comparison"] = comparison
    summary = (
        f"{reached}; loss {losses[-1]:.4f}; {comparison['verdict']} the reference "
        f"({reference.device}, torch {reference.torch}): at step {comparison.get('last_common_step')} "
        f"|Δ| {comparison.get('final_abs_diff')}, max |Δ| {comparison.get('max_abs_diff')}"
    )
    status: Status = "ok" if comparison["verdict"] == "matches" else "failed"
    return _result(part, status, summary, ran, cmd, data, log)


def load_reference(path: Path) -> ReferenceCurve | str:
    """The stored reference curve, or the plain reason there is none to compare with."""
    if not path.is_file():
        return (
            f"no reference yet (record one with `runner gpu-check --record-reference` into {path})"
        )
    try:
        return ReferenceCurve.model_validate_json(path.read_text())
    except ValidationError as exc:
        return f"the reference {path} is unreadable ({exc.error_count()} errors); not compared"


_EVAL_ROW = re.compile(r"^loglikelihood\s+in process bs=(\d+)\s+(\d+)\s+([0-9.]+)", re.M)


def _eval_throughput(opts: CheckOptions, part: Part) -> PartResult:
    script = opts.benchmarks_dir / "eval_throughput.py"
    cmd = [opts.python, str(script), "--device", "cuda", "--batch-size", "64", "--threads", "4"]
    if not script.is_file():
        return _result(part, "skipped", f"{script} is missing (run from a checkout)", cmd=cmd)
    log = opts.out_dir / "eval-throughput.log"
    env = {"CUDA_VISIBLE_DEVICES": _first_visible_gpu()}
    ran = _run_capped(cmd, cwd=opts.benchmarks_dir, cap_s=part.cap_s, log=log, env=env)
    rows = {int(bs): float(rate) for bs, _, rate in _EVAL_ROW.findall(ran.output)}
    if ran.returncode != 0 or 1 not in rows or 64 not in rows:
        return _result(part, "failed", _failure(ran, part.cap_s), ran, cmd, log=log)
    data: dict[str, JsonValue] = {"items_per_s_bs1": rows[1], "items_per_s_bs64": rows[64]}
    summary = (
        f"log-likelihood items/s: {rows[1]:,.1f} at batch 1, {rows[64]:,.1f} at batch 64 "
        f"({rows[64] / rows[1]:.1f}x; tiny model, offline tasks)"
    )
    return _result(part, "ok", summary, ran, cmd, data, log)


def _docker(opts: CheckOptions, part: Part) -> PartResult:
    from sandbox import GPU_IMAGE
    from sandbox.images import pinned_torch_version

    pinned_torch = pinned_torch_version()

    docker = shutil.which("docker")
    if docker is None:
        return _result(part, "skipped", "no docker command on this machine")
    try:
        info = subprocess.run(
            [docker, "info", "--format", "{{json .Runtimes}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return _result(part, "skipped", f"docker info failed: {exc}")
    if info.returncode != 0:
        return _result(part, "skipped", f"no Docker daemon: {_tail(info.stderr, 1)}")
    if "nvidia" not in info.stdout and not shutil.which("nvidia-container-runtime-hook"):
        return _result(part, "skipped", "Docker has no NVIDIA runtime (nvidia-container-toolkit)")
    image = subprocess.run(
        [docker, "image", "inspect", GPU_IMAGE], capture_output=True, timeout=15, check=False
    )
    if image.returncode != 0:
        why = f"{GPU_IMAGE} is not built (python -m sandbox.images build-gpu; needs network)"
        return _result(part, "skipped", why)
    probe = "import json,torch;print(json.dumps({'torch':torch.__version__,'cuda':torch.cuda.is_available(),'name':torch.cuda.get_device_name() if torch.cuda.is_available() else None}))"
    cmd = [docker, "run", "--rm", "--network", "none", "--gpus", "1", GPU_IMAGE]
    cmd += ["python", "-c", probe]
    log = opts.out_dir / "docker.log"
    ran = _run_capped(cmd, cwd=opts.out_dir, cap_s=part.cap_s, log=log)
    result = _last_json(ran.output) if ran.returncode == 0 else None
    if result is None:
        return _result(part, "failed", _failure(ran, part.cap_s), ran, cmd, log=log)
    torch_in_image = str(result.get("torch") or "").split("+")[0]
    problems = []
    if not result.get("cuda"):
        problems.append("torch in the image sees no GPU")
    if torch_in_image != pinned_torch:
        problems.append(f"the image has torch {torch_in_image}, the project pins {pinned_torch}")
    summary = f"{GPU_IMAGE}: torch {result.get('torch')} on {result.get('name') or 'no GPU'}"
    status: Status = "failed" if problems else "ok"
    return _result(part, status, "; ".join([summary, *problems]), ran, cmd, {"probe": result}, log)


# -- the whole check ---------------------------------------------------------------------------


def run_gpu_check(opts: CheckOptions, say: Say) -> GpuCheckReport:
    """Run (or, with ``dry_run``, plan) every part not skipped; write ``gpu_check.json`` and
    ``gpu_check.txt`` under ``opts.out_dir`` and return the report."""
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    gpus = gpu_inventory()
    parts: list[PartResult] = []
    if opts.dry_run:
        plan_gib, plan_gpus = DRY_RUN_GPU_MEM_GIB, DRY_RUN_GPUS
        would_use = (
            ", ".join(f"{g.index}: {g.name}" for g in gpus[:2])
            or "none visible (a real run needs at least one CUDA GPU; two for DDP)"
        )
        say(f"dry run: GPUs it would use: {would_use}")
        for part in PARTS:
            if part.name == "memory-plan":
                continue
            status: Status = "skipped" if part.name in opts.skip else "planned"
            parts.append(_result(part, status, f"{part.what} (cap {part.cap_s:g} s)"))
        parts.insert(1, _memory_plan(opts, PARTS[1], plan_gib, plan_gpus))
    else:
        total_cap = sum(p.cap_s for p in PARTS if p.name not in opts.skip)
        say(f"gpu-check: {len(gpus)} GPU(s) visible; at most {total_cap / 60:.0f} min")
        torch = ""
        micro_batch: int | None = None
        estimated_gib: float | None = None
        for i, part in enumerate(PARTS, 1):
            if part.name in opts.skip:
                parts.append(_result(part, "skipped", "skipped (--skip)"))
                continue
            say(f"[{i}/{len(PARTS)}] {part.name}: {part.what} (cap {part.cap_s:g} s) …")
            if part.name == "environment":
                result = _environment(opts, part, gpus)
                torch = str(result.data.get("torch") or "")
            elif not gpus:
                result = _result(part, "skipped", "no GPU visible")
            elif part.name == "memory-plan":
                result = _memory_plan(opts, part, gpus[0].memory_mib / 1024, min(2, len(gpus)))
                plan = result.data.get("plan")
                if result.status == "ok" and isinstance(plan, dict):
                    mb, peak = plan.get("micro_batch"), plan.get("estimated_peak_bytes")
                    micro_batch = mb if isinstance(mb, int) else None
                    estimated_gib = float(peak) / 2**30 if isinstance(peak, int | float) else None
            elif part.name == "throughput":
                result = _throughput(opts, part, micro_batch, estimated_gib)
            elif part.name == "loss-curve":
                result = _loss_curve(opts, part, gpus, torch)
            elif part.name == "eval-throughput":
                result = _eval_throughput(opts, part)
            else:
                result = _docker(opts, part)
            parts.append(result)
            say(f"    {result.status}: {result.summary}")
    report = GpuCheckReport(
        started_at=started, dry_run=opts.dry_run, gpus=[g.name for g in gpus], parts=parts
    )
    (opts.out_dir / "gpu_check.json").write_text(report.model_dump_json(indent=1) + "\n")
    (opts.out_dir / "gpu_check.txt").write_text(render_table(report) + "\n")
    return report


def render_table(report: GpuCheckReport) -> str:
    """The report as a plain-text table (one row per part), as printed and stored."""
    head = ("part", "status", "s", "result")
    rows = [
        (p.name, p.status, f"{p.seconds:.0f}" if p.seconds else "", p.summary) for p in report.parts
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in [head, *rows]
    ]
    verdict = "all parts ok or skipped" if report.ok else "some part failed (see its log)"
    kind = "dry run" if report.dry_run else verdict
    return "\n".join([*lines, f"({kind}; started {report.started_at})"])
