"""The `runner`: CLI, agents (baseline, LLM tool-calling, MCP/HTTP-driven), run orchestration.

Public names are loaded on first use so that `runner --help` imports almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real types for mypy; at run time `__getattr__` loads them on first use
    from runner._agents import BaselineAgent, LimitsExceeded, LLMAgent, Submitted, ToolBox
    from runner._api import create_api
    from runner._llm import ChatClient
    from runner._mcp import create_mcp_server
    from runner._run import (
        RunConfig,
        RunInfo,
        RunOutcome,
        build_records,
        resume_run,
        start_run,
    )
    from runner._setup import run_setup
    from runner._transcript import TRANSCRIPT_FORMAT_VERSION, Transcript, read_transcript
    from runner.cli import main

__all__ = [
    "TRANSCRIPT_FORMAT_VERSION",
    "BaselineAgent",
    "ChatClient",
    "LLMAgent",
    "LimitsExceeded",
    "RunConfig",
    "RunInfo",
    "RunOutcome",
    "Submitted",
    "ToolBox",
    "Transcript",
    "build_records",
    "create_api",
    "create_mcp_server",
    "main",
    "read_transcript",
    "resume_run",
    "run_setup",
    "start_run",
]

_WHERE = {
    "TRANSCRIPT_FORMAT_VERSION": "runner._transcript",
    "Transcript": "runner._transcript",
    "read_transcript": "runner._transcript",
    "BaselineAgent": "runner._agents",
    "LLMAgent": "runner._agents",
    "LimitsExceeded": "runner._agents",
    "Submitted": "runner._agents",
    "ToolBox": "runner._agents",
    "ChatClient": "runner._llm",
    "RunConfig": "runner._run",
    "RunInfo": "runner._run",
    "RunOutcome": "runner._run",
    "build_records": "runner._run",
    "resume_run": "runner._run",
    "start_run": "runner._run",
    "run_setup": "runner._setup",
    "create_api": "runner._api",
    "create_mcp_server": "runner._mcp",
    "main": "runner.cli",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
