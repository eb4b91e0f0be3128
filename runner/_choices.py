"""The closed choices of the command line and the run record, as enums.

Typer shows and checks them (`--sandbox local|docker|slurm`), pydantic stores them, and this
module imports nothing else, so `runner --help` pays nothing for it.
"""

from __future__ import annotations

from enum import StrEnum


class SandboxKind(StrEnum):
    """The sandbox backend that runs a session's jobs (``--sandbox``)."""

    LOCAL = "local"
    DOCKER = "docker"
    SLURM = "slurm"


class DataSource(StrEnum):
    """Where training data comes from (``--data``): the local corpus or FineWeb."""

    OFFLINE = "offline"
    FINEWEB = "fineweb"


class RunMode(StrEnum):
    """``agent``: the tool loop; ``vanilla``: one shot, then the harness tests and submits."""

    AGENT = "agent"
    VANILLA = "vanilla"


class Transport(StrEnum):
    """How `runner mcp` talks to its client."""

    STDIO = "stdio"
    HTTP = "http"


class ExportFormat(StrEnum):
    """The format of `runner leaderboard export`."""

    JSONL = "jsonl"
    CSV = "csv"


class RecordFormat(StrEnum):
    """The format of `runner export` (a record folder; the only one so far)."""

    RECORD = "record"
