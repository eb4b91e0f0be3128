"""Running a test: preflight, backends (local, docker, slurm), metrics collection.

This package imports nothing else of PretrainBench.
"""

from sandbox._backend import Backend, BackendError, JobOutcome, SettingJob
from sandbox._docker import CPU_IMAGE, GPU_IMAGE, DockerBackend, docker_client, start_docker_daemon
from sandbox._executor import Executor, parse_progress
from sandbox._feedback import is_hidden_metric, render_feedback
from sandbox._local import LocalBackend, probe_isolation
from sandbox._models import (
    DataPaths,
    EvaluationSetting,
    PreflightResult,
    ProgressCallback,
    ProgressEvent,
    Resources,
    SeedResult,
    TestRequest,
    TestResult,
    format_duration,
    parse_duration,
)
from sandbox._preflight import preflight
from sandbox._slurm import SlurmBackend, slurm_available

__all__ = [
    "CPU_IMAGE",
    "GPU_IMAGE",
    "Backend",
    "BackendError",
    "DataPaths",
    "DockerBackend",
    "EvaluationSetting",
    "Executor",
    "JobOutcome",
    "LocalBackend",
    "PreflightResult",
    "ProgressCallback",
    "ProgressEvent",
    "Resources",
    "SeedResult",
    "SettingJob",
    "SlurmBackend",
    "TestRequest",
    "TestResult",
    "docker_client",
    "format_duration",
    "is_hidden_metric",
    "parse_duration",
    "parse_progress",
    "preflight",
    "probe_isolation",
    "render_feedback",
    "slurm_available",
    "start_docker_daemon",
]
