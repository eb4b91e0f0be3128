"""The Docker backend against a real daemon (started by the test when the machine allows)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox import DataPaths, EvaluationSetting, Executor, TestRequest
from sandbox._docker import DockerBackend
from tests._fixtures.sandbox import FAKE_TRAIN, HOOK, fake_request, fake_settings

pytestmark = [pytest.mark.integration, pytest.mark.docker]

TRAIN, LM_EVAL = fake_settings("0:02:00")


def _request(
    codebase: Path,
    data: DataPaths,
    out: Path,
    files: dict[str, str] | None = None,
    settings: list[EvaluationSetting] | None = None,
    env: dict[str, str] | None = None,
) -> TestRequest:
    return fake_request(
        codebase,
        data,
        out,
        run_id="docker",
        files=files,
        settings=settings or [TRAIN],
        seeds=[42],
        env=env,
    )


def _leftover_containers(client: Any) -> list[str]:
    return [
        c.name for c in client.containers.list(all=True, filters={"label": "pretrainbench.setting"})
    ]


def test_fake_codebase_in_a_container_then_cache(
    docker_cpu_image: str, docker_daemon: Any, fake_codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    backend = DockerBackend(docker_cpu_image, memory_limit_mb=2048, client=docker_daemon)
    executor = Executor(backend, cache_dir=tmp_path / "cache")
    req = _request(
        fake_codebase, DataPaths(data_dir=fake_data), tmp_path / "t1", settings=[TRAIN, LM_EVAL]
    )
    result = executor.run(req)
    assert result.status == "ok", f"{result.reason}\n{result.results[0].log_tail}"
    assert {"val_loss_gpt-tiny", "arc_easy_lm-eval-tiny"} <= set(result.metrics())
    start = time.monotonic()
    again = executor.run(req.model_copy(update={"out_dir": tmp_path / "t2"}))
    assert again.cached and time.monotonic() - start < 1.0
    assert not _leftover_containers(docker_daemon)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import socket\nsocket.create_connection(('1.1.1.1', 443), timeout=5)", "unreachable"),
        ("open('/workspace/code/evaluate.py', 'w').write('forged')", "read-only file system"),
        (f"open('/etc/escaped-{uuid.uuid4().hex}', 'w').write('x')", "read-only file system"),
        ("while True:\n    pass", "timeout"),
        ("_hog = []\nwhile True:\n    _hog.append(b'x' * (64 * 2**20))", "out of memory"),
    ],
)
def test_container_defences(
    docker_cpu_image: str,
    docker_daemon: Any,
    fake_codebase: Path,
    fake_data: Path,
    tmp_path: Path,
    code: str,
    expected: str,
) -> None:
    backend = DockerBackend(docker_cpu_image, memory_limit_mb=512, client=docker_daemon)
    setting = TRAIN.model_copy(update={"time_limit_s": 5})
    files = {"custom_pretrain.py": FAKE_TRAIN.replace(HOOK, HOOK + code + "\n")}
    result = Executor(backend).run(
        _request(
            fake_codebase,
            DataPaths(data_dir=fake_data),
            tmp_path / "t",
            files=files,
            settings=[setting],
        )
    )
    row = result.results[0]
    assert row.status == "failed" and expected in (row.reason or "").lower(), row.reason
    assert not _leftover_containers(docker_daemon)


def test_real_codebase_tiny_in_a_container(
    docker_cpu_image: str,
    docker_daemon: Any,
    codebase_dir: Path,
    pb_data_paths: DataPaths,
    tmp_path: Path,
) -> None:
    if not (codebase_dir / "scripts" / "gpt_tiny.sh").is_file():
        pytest.skip("the nanoGPT codebase has no scripts/gpt_tiny.sh yet")
    backend = DockerBackend(docker_cpu_image, memory_limit_mb=6144, client=docker_daemon)
    setting = TRAIN.model_copy(update={"time_limit_s": 900})
    result = Executor(backend).run(
        _request(
            codebase_dir,
            pb_data_paths,
            tmp_path / "t",
            settings=[setting],
            env={"PB_MAX_ITERS": "20"},
        )
    )
    assert result.status == "ok", f"{result.reason}\n{result.results[0].log_tail}"
    assert "val_loss_gpt-tiny" in result.metrics()


def test_docker_kill_from_outside_is_infra_error(
    docker_cpu_image: str, docker_daemon: Any, fake_codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    import threading

    backend = DockerBackend(docker_cpu_image, memory_limit_mb=512, client=docker_daemon)
    req = _request(
        fake_codebase, DataPaths(data_dir=fake_data), tmp_path / "t", env={"PB_FAKE_STEP_S": "1"}
    )
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=Executor(backend).run(req)))
    thread.start()
    deadline = time.monotonic() + 30
    running: list[Any] = []
    while not running and time.monotonic() < deadline:
        running = docker_daemon.containers.list(
            filters={"label": "pretrainbench.setting", "status": "running"}
        )
        time.sleep(0.2)
    assert running
    time.sleep(1.0)
    running[0].kill()
    thread.join(60)
    assert box["result"].status == "infra_error", box["result"].reason
    assert not _leftover_containers(docker_daemon)
