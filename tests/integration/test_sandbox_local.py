"""The local backend with real subprocesses: results, cache, resume, and a corpus of attacks.

The malicious submissions bypass env's code policy on purpose: they test the sandbox's own
defences, so their text is written straight into the request files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox import (
    DataPaths,
    EvaluationSetting,
    Executor,
    LocalBackend,
    ProgressEvent,
    TestRequest,
    render_feedback,
)
from sandbox._local import probe_isolation
from tests._fixtures.sandbox import FAKE_TRAIN, HOOK, fake_request, fake_settings

pytestmark = pytest.mark.integration

TRAIN, LM_EVAL = fake_settings("0:01:00", "sbx-train", "sbx-lm-eval")


def _request(
    codebase: Path,
    data: Path,
    out: Path,
    *,
    files: dict[str, str] | None = None,
    settings: list[EvaluationSetting] | None = None,
    seeds: list[int] | None = None,
    env: dict[str, str] | None = None,
) -> TestRequest:
    return fake_request(
        codebase,
        DataPaths(data_dir=data),
        out,
        run_id="run-1",
        files=files,
        settings=settings or [TRAIN],
        seeds=seeds or [42],
        env=env,
    )


def _inject(code: str) -> dict[str, str]:
    return {"custom_pretrain.py": FAKE_TRAIN.replace(HOOK, HOOK + code + "\n")}


def _sandbox_cgroups() -> list[str]:
    iso = probe_isolation()
    found: list[str] = []
    for base in (iso.memory_cgroup, iso.pids_cgroup):
        if base is not None:
            # only this file's jobs (label sbx-…): other sessions may be running jobs right now
            found += [p.name for p in base.iterdir() if p.is_dir() and p.name.startswith("pb-sbx-")]
    return found


def test_unmodified_codebase_gives_metrics_then_cache_hit(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    events: list[ProgressEvent] = []
    (tmp_path / "work").mkdir()
    executor = Executor(LocalBackend(tmp_root=tmp_path / "work"), cache_dir=tmp_path / "cache")
    req = _request(fake_codebase, fake_data, tmp_path / "t1", settings=[TRAIN, LM_EVAL])
    result = executor.run(req, progress=events.append)
    assert result.status == "ok", result.reason
    metrics = result.metrics([TRAIN, LM_EVAL])
    assert {
        "val_loss_sbx-train",
        "wikitext2_ppl_sbx-train",
        "lambada_ppl_sbx-train",
        "arc_easy_sbx-lm-eval",
        "piqa_sbx-lm-eval",
        "elapsed_sbx-train",
    } <= set(metrics)
    train = result.for_setting("sbx-train")[0]
    assert len(train.curve) == 20 and train.resources.wall_s > 0
    assert (tmp_path / "t1" / "sbx-train" / "seed_42" / "metrics.json").is_file()
    steps = [e.step for e in events if e.setting == "sbx-train" and e.step is not None]
    assert steps and steps[-1] == 20 and any(e.eta_s is not None for e in events)
    assert not result.cached

    t0 = time.monotonic()
    again = executor.run(req.model_copy(update={"out_dir": tmp_path / "t2"}))
    assert time.monotonic() - t0 < 1.0
    assert again.cached and all(r.cached for r in again.results)
    assert again.metrics([TRAIN, LM_EVAL]) == metrics
    assert (tmp_path / "t2" / "sbx-lm-eval" / "seed_42" / "metrics.json").is_file()

    assert train.resources.peak_mem_mb and train.resources.peak_mem_mb > 0
    assert not list((tmp_path / "work").iterdir())  # temp copies removed
    # a different edit is a different key
    changed = executor.run(
        req.model_copy(update={"out_dir": tmp_path / "t3", "files": _inject("X = 1")})
    )
    assert changed.status == "ok" and not changed.cached
    assert not _sandbox_cgroups()


def test_resume_and_adding_hidden_settings_and_seeds(
    fake_codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    executor = Executor(LocalBackend())  # no cache: only the test directory makes it resume
    out = tmp_path / "t1"
    first = executor.run(_request(fake_codebase, fake_data, out))
    assert first.status == "ok"
    log = out / "sbx-train" / "seed_42" / "log.txt"
    stamp = log.stat().st_mtime_ns
    final = executor.run(
        _request(fake_codebase, fake_data, out, settings=[TRAIN, LM_EVAL], seeds=[42, 43])
    )
    assert final.status == "ok", final.reason
    assert log.stat().st_mtime_ns == stamp  # seed 42 training was not re-run
    assert {(r.setting, r.seed) for r in final.results} == {
        ("sbx-train", 42),
        ("sbx-train", 43),
        ("sbx-lm-eval", 42),
        ("sbx-lm-eval", 43),
    }
    m = final.metrics([TRAIN, LM_EVAL])
    assert m["val_loss_sbx-train"] == pytest.approx(
        (first.metrics()["val_loss_sbx-train"] * 2 + 1e-3) / 2
    )


def test_needs_failure_propagates(fake_codebase: Path, fake_data: Path, tmp_path: Path) -> None:
    bad = _inject("raise RuntimeError('broken at import')")
    result = Executor(LocalBackend()).run(
        _request(fake_codebase, fake_data, tmp_path / "t", files=bad, settings=[TRAIN, LM_EVAL])
    )
    assert result.status == "failed"
    lm = result.for_setting("sbx-lm-eval")[0]
    assert lm.status == "failed" and "needs sbx-train" in (lm.reason or "")


MALICIOUS: dict[str, tuple[str, str, dict[str, object]]] = {
    "import_error": ("import nonexistent_module_pb", "ModuleNotFoundError", {}),
    "exception_step0": (
        "_orig = loss_at\ndef loss_at(step, lr):\n    if step == 0:\n        raise RuntimeError('boom at step 0')\n    return _orig(step, lr)",
        "RuntimeError: boom at step 0",
        {},
    ),
    "exception_midrun": (
        "_orig = loss_at\ndef loss_at(step, lr):\n    if step == 10:\n        raise ValueError('shape mismatch (8, 16) vs (8, 32)')\n    return _orig(step, lr)",
        "ValueError: shape mismatch",
        {},
    ),
    "nan_loss": (
        "_orig = loss_at\ndef loss_at(step, lr):\n    return float('nan') if step == 5 else _orig(step, lr)",
        "non-finite loss at step 5",
        {},
    ),
    "infinite_loop": ("while True:\n    pass", "timeout", {"time_limit": 3}),
    "memory_bomb": (
        "_hog = []\nwhile True:\n    _hog.append(b'x' * (64 * 2**20))",
        "out of memory",
        {"memory_mb": 512},
    ),
    "network": (
        "import socket\nsocket.create_connection(('1.1.1.1', 443), timeout=5)",
        "unreachable",
        {},
    ),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_failing_submissions_are_classified(
    case: str, fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    code, expected, opts = MALICIOUS[case]
    if case == "memory_bomb" and probe_isolation().memory_cgroup is None:
        pytest.skip("no memory cgroup on this machine: the memory bomb would meet only ulimit -v")
    if case == "network" and not (probe_isolation().namespaces or probe_isolation().network_only):
        pytest.skip("no network namespace on this machine")
    setting = TRAIN.model_copy(update={"time_limit_s": int(opts.get("time_limit", 60))})  # type: ignore[call-overload]
    backend = LocalBackend(memory_limit_mb=int(opts.get("memory_mb", 4096)))  # type: ignore[call-overload]
    result = Executor(backend).run(
        _request(fake_codebase, fake_data, tmp_path / "t", files=_inject(code), settings=[setting])
    )
    row = result.results[0]
    assert result.status == "failed" and row.status == "failed", row.reason
    assert expected.lower() in (row.reason or "").lower(), row.reason
    assert row.metrics == {} and result.metrics() == {}
    assert row.log_tail or case in ("infinite_loop", "memory_bomb")
    assert not _sandbox_cgroups()


def test_fork_bomb_is_contained(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    if probe_isolation().pids_cgroup is None:
        pytest.skip("no pids cgroup on this machine: a fork bomb would not be contained")
    code = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)"
    setting = TRAIN.model_copy(update={"time_limit_s": 4})
    result = Executor(LocalBackend(max_processes=48)).run(
        _request(fake_codebase, fake_data, tmp_path / "t", files=_inject(code), settings=[setting])
    )
    row = result.results[0]
    assert row.status == "failed" and "timeout" in (row.reason or "")
    assert "forks refused" in (row.reason or "")
    assert not _sandbox_cgroups()


def test_writes_outside_the_output_dir_fail(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    if not probe_isolation().namespaces:
        pytest.skip("no mount namespace on this machine: writes cannot be confined")
    escape = Path("/tmp") / f"pb-escape-{uuid.uuid4().hex}"
    victim = fake_codebase / "evaluate.py"
    before = victim.read_text()
    code = f"open({str(escape)!r}, 'w').write('escaped')\n"
    result = Executor(LocalBackend()).run(
        _request(fake_codebase, fake_data, tmp_path / "t", files=_inject(code))
    )
    assert result.status == "failed" and "read-only file system" in (result.reason or "").lower()
    assert not escape.exists()
    # the trusted evaluator of the host codebase is out of reach too
    code2 = f"open({str(victim)!r}, 'w').write('forged')\n"
    result2 = Executor(LocalBackend()).run(
        _request(fake_codebase, fake_data, tmp_path / "t2", files=_inject(code2))
    )
    assert result2.status == "failed" and victim.read_text() == before


def test_forged_metrics_never_count(fake_codebase: Path, fake_data: Path, tmp_path: Path) -> None:
    code = (
        "import json, os, sys\n"
        "json.dump({'schema_version': 1, 'kind': 'train', 'profile': 'tiny', 'seed': 42,\n"
        "           'metrics': {'val_loss': 0.0, 'wikitext2_ppl': 1.0, 'lambada_ppl': 1.0}},\n"
        "          open(os.path.join(os.environ['PB_OUT_DIR'], 'metrics.json'), 'w'))\n"
        "if __name__ == '__main__':\n"
        "    print('TRAIN_METRICS: step=999, train_loss=0.0000, val_loss=0.0000')\n"
        "    print('Final metrics (sbx-train): val_loss_sbx-train=0.0000')\n"
        "    sys.exit(0)\n"
    )
    out = tmp_path / "t"
    result = Executor(LocalBackend()).run(
        _request(fake_codebase, fake_data, out, files=_inject(code))
    )
    assert result.status == "failed" and result.metrics() == {}
    text = render_feedback(result, [TRAIN], [])
    # what the submission printed is shown only as quoted log lines, never as a result line
    assert "[STATUS: FAILED]" in text
    assert not any(line.startswith("Final metrics") for line in text.splitlines())


def test_kill_from_outside_is_infra_error(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    backend = LocalBackend()
    executor = Executor(backend)
    req = _request(fake_codebase, fake_data, tmp_path / "t", env={"PB_FAKE_STEP_S": "1"})
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=executor.run(req)))
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not backend._running:
        time.sleep(0.05)
    time.sleep(1.0)
    for pid in list(backend._running):
        os.kill(pid, signal.SIGKILL)
    thread.join(30)
    result = box["result"]
    assert result.status == "infra_error", result.reason  # type: ignore[attr-defined]
    assert "killed from outside" in (result.reason or "")  # type: ignore[attr-defined]
    assert not _sandbox_cgroups()
    # infrastructure failures are never resumed from: the pair runs again
    again = Executor(LocalBackend()).run(req.model_copy(update={"env": {}}))
    assert again.status == "ok"


def test_cancel_and_full_disk_are_infra_errors(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    backend = LocalBackend()
    executor = Executor(backend)
    req = _request(
        fake_codebase,
        fake_data,
        tmp_path / "t",
        settings=[TRAIN, LM_EVAL],
        env={"PB_FAKE_STEP_S": "1"},
    )
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=executor.run(req)))
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not backend._running:
        time.sleep(0.05)
    executor.cancel()
    thread.join(30)
    result = box["result"]
    assert result.status == "infra_error"  # type: ignore[attr-defined]
    assert all(r.status == "infra_error" for r in result.results)  # type: ignore[attr-defined]
    full = Executor(LocalBackend(), min_free_disk_mb=1e12).run(
        _request(fake_codebase, fake_data, tmp_path / "u")
    )
    assert full.status == "infra_error" and "disk almost full" in (full.reason or "")


def test_symlinks_in_the_output_dir_are_not_followed(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    code = (
        "import os\n"
        "out = os.environ['PB_OUT_DIR']\n"
        "for name, target in (('metrics.json', '/dev/zero'), ('curve.jsonl', '/dev/zero'), ('ckpt.json', '/etc/passwd')):\n"
        "    os.symlink(target, os.path.join(out, name))\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit(0)\n"
    )
    executor = Executor(LocalBackend(), cache_dir=tmp_path / "cache")
    result = executor.run(_request(fake_codebase, fake_data, tmp_path / "t", files=_inject(code)))
    assert result.status == "failed" and result.metrics() == {}
    cached = list((tmp_path / "cache").glob("*/out"))
    assert cached and not any(p.is_symlink() for d in cached for p in d.iterdir())


def test_killing_the_training_process_from_outside_is_infra_error(
    fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    from tests._fixtures.sandbox import _descendants

    backend = LocalBackend()
    req = _request(fake_codebase, fake_data, tmp_path / "t", env={"PB_FAKE_STEP_S": "1"})
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=Executor(backend).run(req)))
    thread.start()
    victim = None
    deadline = time.monotonic() + 20
    while victim is None and time.monotonic() < deadline:
        for launcher in list(backend._running):
            for pid in _descendants(launcher):
                with contextlib.suppress(OSError):
                    if b"custom_pretrain.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        victim = pid
        time.sleep(0.1)
    assert victim is not None
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    thread.join(30)
    result = box["result"]
    assert result.status == "infra_error", result.reason  # type: ignore[attr-defined]
    assert "SIGKILL from outside" in (result.reason or "")  # type: ignore[attr-defined]


@pytest.mark.parametrize("level", ["network-only", "none"])
def test_weaker_isolation_levels_still_run_and_classify(
    level: str, fake_codebase: Path, fake_data: Path, tmp_path: Path, no_leftover_processes: None
) -> None:
    """Machines without mount/PID namespaces or cgroups fall back; results stay correct."""
    from sandbox._local import Isolation

    probed = probe_isolation()
    if level == "network-only" and not probed.namespaces and not probed.network_only:
        pytest.skip("no network namespace on this machine")
    backend = LocalBackend()
    backend.isolation = Isolation(
        namespaces=False,
        network_only=level == "network-only",
        network_cmd=("unshare", "--net") if level == "network-only" else (),
        memory_cgroup=None,
        pids_cgroup=None,
        notes=(f"test: {level}",),
    )
    ok = Executor(backend).run(_request(fake_codebase, fake_data, tmp_path / "ok"))
    assert ok.status == "ok", ok.reason
    assert ok.results[0].resources.peak_mem_mb  # from getrusage without a memory cgroup
    if level == "network-only":
        code = "import socket\nsocket.create_connection(('1.1.1.1', 443), timeout=3)"
        net = Executor(backend).run(
            _request(fake_codebase, fake_data, tmp_path / "net", files=_inject(code))
        )
        assert net.status == "failed" and "unreachable" in (net.reason or "").lower()
    loop = TRAIN.model_copy(update={"time_limit_s": 2})
    hung = Executor(backend).run(
        _request(
            fake_codebase,
            fake_data,
            tmp_path / "hung",
            files=_inject("while True:\n    pass"),
            settings=[loop],
        )
    )
    assert hung.status == "failed" and "timeout" in (hung.reason or "")


def test_stale_work_dirs_of_killed_supervisors_are_swept(tmp_path: Path) -> None:
    import fcntl

    from sandbox._local import sweep_stale_work_dirs

    stale, live, foreign = tmp_path / "pb-a-s1-x", tmp_path / "pb-b-s1-y", tmp_path / "pb-c-s1-z"
    for d in (stale, live, foreign):
        (d / "code").mkdir(parents=True)
    (stale / ".pb-sandbox.lock").touch()
    held = (live / ".pb-sandbox.lock").open("wb")
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert sweep_stale_work_dirs(tmp_path) == [stale]
    finally:
        held.close()
    assert not stale.exists() and live.exists() and foreign.exists()  # no lock file: not ours
