"""Running a test: preflight, backends (local, docker, slurm), metrics collection.

This package imports nothing else of PretrainBench.
"""

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

__all__ = [
    "DataPaths",
    "EvaluationSetting",
    "PreflightResult",
    "ProgressCallback",
    "ProgressEvent",
    "Resources",
    "SeedResult",
    "TestRequest",
    "TestResult",
    "format_duration",
    "parse_duration",
]
