"""One codebase identity: run.json, the sandbox's cache key and the leaderboard's group agree.

A tiny baseline run through the real Executor and LocalBackend on the torch-free fake codebase
of `tests/_fixtures/runner.py`, recorded in a real SQLite store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sandbox._executor
from leaderboard import Store
from runner._display import QuietDisplay
from runner._run import RunConfig, read_run_info, start_run
from sandbox import hash_tree

pytestmark = pytest.mark.integration


def test_run_record_cache_key_and_group_share_the_codebase_identity(
    runner_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real cache_key, with the codebase identity it is given noted on the way in.
    keyed: list[str] = []
    real_cache_key = sandbox._executor.cache_key

    def noting_cache_key(**fields: object) -> str:
        keyed.append(str(fields["codebase_version"]))
        return real_cache_key(**fields)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox._executor, "cache_key", noting_cache_key)
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    config = RunConfig(task="fake-lr", agent="baseline:constant", profile="tiny", db=db)
    outcome = start_run(config, tmp_path / "runs", QuietDisplay())
    assert outcome.info.status == "finished", outcome.info.reason

    in_run_json = read_run_info(outcome.run_dir).codebase_version
    assert in_run_json == hash_tree(runner_env.codebase)
    assert keyed and set(keyed) == {in_run_json}
    with Store(db) as store:
        data = store.task_data("fake-lr")
        assert data is not None
        assert [g.codebase_version for g in data.groups()] == [in_run_json]
        stored = store.get_run(outcome.info.run_id)
        assert stored is not None and stored.codebase_version == in_run_json
