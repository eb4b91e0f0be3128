"""The leaderboard: a store of runs and results, their scoring, and the web page.

Imports nothing else of PretrainBench: the runner converts its runs into ``RunRecord``s.
The public surface is what other packages use; scoring, statistics and the schema are
internals (tests import them from their modules).
"""

from ._auth import BEARER_SCHEME, BearerTokenGate, send_problem
from ._plots import Series, line_plot
from ._records import FinalRecord, MetricInfo, RunRecord, SeedRecord, SweepPoint, SweepRecord
from ._stats import SeedStats, seed_stats
from ._store import Store
from ._sweeps import SweepRow, SweepTable, paired_t_test, sweep_table
from ._views import NotFoundError, export_csv, group_tables
from ._web import create_app

__all__ = [
    "BEARER_SCHEME",
    "BearerTokenGate",
    "FinalRecord",
    "MetricInfo",
    "NotFoundError",
    "RunRecord",
    "SeedRecord",
    "SeedStats",
    "Series",
    "Store",
    "SweepPoint",
    "SweepRecord",
    "SweepRow",
    "SweepTable",
    "create_app",
    "export_csv",
    "group_tables",
    "line_plot",
    "paired_t_test",
    "seed_stats",
    "send_problem",
    "sweep_table",
]
