"""Running a test: preflight, backends (local, docker, slurm), metrics collection.

This package imports nothing else of PretrainBench.
"""

from sandbox._backend import Backend, BackendError, Job, JobOutcome, Workers
from sandbox._compile_cache import compile_cache_path, publish_compile_cache, torch_release
from sandbox._docker import CPU_IMAGE, GPU_IMAGE, DockerBackend, docker_client, start_docker_daemon
from sandbox._doctor import HostCheck, check_host
from sandbox._executor import Executor, parse_progress
from sandbox._feedback import is_hidden_metric, train_metric_lines
from sandbox._files import write_atomic
from sandbox._local import JobLimits, LocalBackend, probe_host
from sandbox._models import (
    CompileCache,
    DataInput,
    DataPaths,
    JobSpec,
    ProgressCallback,
    ProgressEvent,
    Resources,
    SeedResult,
    TestRequest,
    TestResult,
    WorkerSpec,
    format_duration,
    job_levels,
    parse_duration,
)
from sandbox._slurm import (
    SLURM_HOPELESS,
    SLURM_INFRA_END,
    SLURM_JOB_END,
    SlurmBackend,
    scontrol_jobs,
    slurm_available,
    slurm_command,
)
from sandbox._workdir import hash_tree

__all__ = [
    "CPU_IMAGE",
    "GPU_IMAGE",
    "SLURM_HOPELESS",
    "SLURM_INFRA_END",
    "SLURM_JOB_END",
    "Backend",
    "BackendError",
    "CompileCache",
    "DataInput",
    "DataPaths",
    "DockerBackend",
    "Executor",
    "HostCheck",
    "Job",
    "JobLimits",
    "JobOutcome",
    "JobSpec",
    "LocalBackend",
    "ProgressCallback",
    "ProgressEvent",
    "Resources",
    "SeedResult",
    "SlurmBackend",
    "TestRequest",
    "TestResult",
    "WorkerSpec",
    "Workers",
    "check_host",
    "compile_cache_path",
    "docker_client",
    "format_duration",
    "hash_tree",
    "is_hidden_metric",
    "job_levels",
    "parse_duration",
    "parse_progress",
    "probe_host",
    "publish_compile_cache",
    "scontrol_jobs",
    "slurm_available",
    "slurm_command",
    "start_docker_daemon",
    "torch_release",
    "train_metric_lines",
    "write_atomic",
]
