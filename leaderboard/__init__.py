"""The leaderboard: a store of runs and results, their scoring, and the web page.

Imports nothing else of PretrainBench: the runner converts its runs into ``RunRecord``s.
"""

from ._auth import BEARER_SCHEME, BearerTokenGate, bearer_token_matches, send_problem
from ._plots import Series, line_plot
from ._records import FinalRecord, MetricSpec, RunRecord, TestRecord
from ._schema import SCHEMA_VERSION, SchemaTooNewError, migrate
from ._scoring import (
    Anchor,
    ComparableGroup,
    NoiseBand,
    RunResult,
    ScoredRun,
    TaskScores,
    geometric_mean_eps,
    normalise,
    score_task,
)
from ._stats import SeedStats, WelchResult, seed_stats, t_ppf, welch_t_test
from ._store import DEFAULT_URL, Store, TaskData, TaskInfo
from ._views import (
    NotFoundError,
    TaskTable,
    build_task_table,
    cross_task_ranking,
    export_csv,
    group_tables,
)
from ._web import create_app, serve

__all__ = [
    "BEARER_SCHEME",
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    "Anchor",
    "BearerTokenGate",
    "ComparableGroup",
    "FinalRecord",
    "MetricSpec",
    "NoiseBand",
    "NotFoundError",
    "RunRecord",
    "RunResult",
    "SchemaTooNewError",
    "ScoredRun",
    "SeedStats",
    "Series",
    "Store",
    "TaskData",
    "TaskInfo",
    "TaskScores",
    "TaskTable",
    "TestRecord",
    "WelchResult",
    "bearer_token_matches",
    "build_task_table",
    "create_app",
    "cross_task_ranking",
    "export_csv",
    "geometric_mean_eps",
    "group_tables",
    "line_plot",
    "migrate",
    "normalise",
    "score_task",
    "seed_stats",
    "send_problem",
    "serve",
    "t_ppf",
    "welch_t_test",
]
