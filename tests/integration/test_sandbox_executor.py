"""The executor on the real local backend: jobs in ``needs`` order, each in its own sandbox,
results only from the trusted jobs' ``metrics.json``, resume, cache and the failure kinds.

The submissions here bypass env's code policy on purpose: they test the structure itself, so
their text is written straight into the request files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sandbox import DataPaths, Executor, JobSpec, LocalBackend, ProgressEvent, TestRequest
from tests._fixtures.sandbox import FAKE_TRAIN, HOOK, fake_jobs, fake_request

pytestmark = pytest.mark.integration

TRAIN, EVAL, LM_EVAL = fake_jobs("0:01:00", "exe-train", "exe-gpt", "exe-lm-eval")


@pytest.fixture
def data(tmp_path: Path, fake_data: Path) -> DataPaths:
    evals = tmp_path / "eval_sets"
    evals.mkdir()
    (evals / "answers.jsonl").write_text('{"answer": "SECRET-ANSWER-42"}\n')
    return DataPaths(data_dir=fake_data, eval_data_dir=evals)


def _request(
    codebase: Path,
    data: DataPaths,
    out: Path,
    *,
    files: dict[str, str] | None = None,
    jobs: list[JobSpec] | None = None,
    seeds: list[int] | None = None,
) -> TestRequest:
    return fake_request(
        codebase,
        data,
        out,
        run_id="run-1",
        files=files,
        jobs=jobs or [TRAIN, EVAL],
        seeds=seeds or [42],
    )


def _inject(code: str) -> dict[str, str]:
    return {"custom_pretrain.py": FAKE_TRAIN.replace(HOOK, HOOK + code + "\n")}


def test_jobs_run_in_needs_order_and_only_trusted_metrics_count(
    fake_codebase: Path, data: DataPaths, tmp_path: Path, no_leftover_processes: None
) -> None:
    events: list[ProgressEvent] = []
    executor = Executor(LocalBackend(), cache_dir=tmp_path / "cache")
    request = _request(fake_codebase, data, tmp_path / "t1", jobs=[TRAIN, EVAL, LM_EVAL])
    result = executor.run(request, progress=events.append)
    assert result.status == "ok", result.reason
    metrics = result.metrics([TRAIN, EVAL, LM_EVAL])
    assert set(metrics) == {
        "val_loss_exe-gpt",
        "wikitext2_ppl_exe-gpt",
        "lambada_ppl_exe-gpt",
        "elapsed_exe-gpt",
        "arc_easy_exe-lm-eval",
        "hellaswag_exe-lm-eval",
        "piqa_exe-lm-eval",
        "winogrande_exe-lm-eval",
        "elapsed_exe-lm-eval",
    }
    train = result.for_setting("exe-train")[0]
    assert train.metrics == {} and len(train.curve) == 20 and "TRAIN_METRICS" in train.log_tail
    evaluation = result.for_setting("exe-gpt")[0]
    assert evaluation.curve == [] and evaluation.log_tail == ""  # only show_log jobs' output
    # the log is the supervisor's, beside (not inside) the directory the job could write
    assert Path(train.log_path or "").parent == tmp_path / "t1" / "exe-train"
    steps = [e.step for e in events if e.setting == "exe-train" and e.step is not None]
    assert steps and steps[-1] == 20

    t0 = time.monotonic()
    again = executor.run(request.model_copy(update={"out_dir": tmp_path / "t2"}))
    assert time.monotonic() - t0 < 2.0
    assert again.cached and again.metrics([TRAIN, EVAL, LM_EVAL]) == metrics
    assert "TRAIN_METRICS" in Path(again.for_setting("exe-train")[0].log_path or "").read_text()
    changed = executor.run(
        request.model_copy(update={"out_dir": tmp_path / "t3", "files": _inject("X = 1")})
    )
    assert changed.status == "ok" and not any(r.cached for r in changed.results)


def test_resume_adds_hidden_jobs_and_seeds_without_rerunning(
    fake_codebase: Path, data: DataPaths, tmp_path: Path
) -> None:
    executor = Executor(LocalBackend())  # no cache: only the test directory makes it resume
    out = tmp_path / "t1"
    first = executor.run(_request(fake_codebase, data, out))
    assert first.status == "ok", first.reason
    record = out / "exe-train" / "seed_42.result.json"
    stamp = record.stat().st_mtime_ns
    final = executor.run(
        _request(fake_codebase, data, out, jobs=[TRAIN, EVAL, LM_EVAL], seeds=[42, 43])
    )
    assert final.status == "ok", final.reason
    assert record.stat().st_mtime_ns == stamp  # seed 42 training was not re-run
    assert {(r.setting, r.seed) for r in final.results} == {
        (job, seed) for job in ("exe-train", "exe-gpt", "exe-lm-eval") for seed in (42, 43)
    }


def test_a_failed_need_fails_what_needs_it(
    fake_codebase: Path, data: DataPaths, tmp_path: Path
) -> None:
    bad = _inject("raise RuntimeError('broken at import')")
    result = Executor(LocalBackend()).run(
        _request(fake_codebase, data, tmp_path / "t", files=bad, jobs=[TRAIN, EVAL, LM_EVAL])
    )
    assert result.status == "failed"
    train = result.for_setting("exe-train")[0]
    assert "RuntimeError: broken at import" in (train.reason or "")
    for label in ("exe-gpt", "exe-lm-eval"):
        row = result.for_setting(label)[0]
        assert row.status == "failed" and "needs exe-train" in (row.reason or "")


def test_metrics_written_by_agent_code_never_count(
    fake_codebase: Path, data: DataPaths, tmp_path: Path
) -> None:
    """Training (agent code) forges a metrics.json in its own output and tries to plant one
    where the evaluation will write: neither counts; the evaluation reads the checkpoint."""
    forge = (
        "import json, os\n"
        "_out = os.environ['PB_OUT_DIR']\n"
        "json.dump({'schema_version': 1, 'kind': 'train', 'seed': 42, 'profile': 'tiny',\n"
        "           'metrics': {'val_loss': 0.001, 'wikitext2_ppl': 1.0, 'lambada_ppl': 1.0}},\n"
        "          open(os.path.join(_out, 'metrics.json'), 'w'))\n"
        "for _rel in ('../../exe-gpt/seed_42', '../../../t/exe-gpt/seed_42'):\n"
        "    try:\n"
        "        os.makedirs(os.path.join(_out, _rel), exist_ok=True)\n"
        "        json.dump({'metrics': {'val_loss': 0.001}},\n"
        "                  open(os.path.join(_out, _rel, 'metrics.json'), 'w'))\n"
        "    except OSError:\n"
        "        pass\n"
        "print('Final metrics (exe-gpt): val_loss_exe-gpt=0.0010', flush=True)\n"
    )
    honest = Executor(LocalBackend()).run(_request(fake_codebase, data, tmp_path / "h"))
    forged = Executor(LocalBackend()).run(
        _request(fake_codebase, data, tmp_path / "t", files=_inject(forge))
    )
    assert forged.status == "ok", forged.reason
    assert forged.metrics()["val_loss_exe-gpt"] == honest.metrics()["val_loss_exe-gpt"]
    assert forged.for_setting("exe-train")[0].metrics == {}


def test_a_job_cannot_change_the_outputs_it_reads(
    fake_codebase: Path, data: DataPaths, tmp_path: Path
) -> None:
    tamper = JobSpec(
        label="exe-tamper",
        script="scripts/tamper.sh",
        code="edited",
        needs=["exe-train"],
        env={"PB_CKPT_JOB": "exe-train"},
        time_limit=30,
    )
    files = {
        "scripts/tamper.sh": (
            'echo \'{"final_loss": -100}\' > "$PB_NEEDS_DIR/exe-train/ckpt.json" && exit 0\n'
            "echo tamper refused; exit 3\n"
        )
    }
    result = Executor(LocalBackend()).run(
        _request(fake_codebase, data, tmp_path / "t", files=files, jobs=[TRAIN, tamper])
    )
    row = result.for_setting("exe-tamper")[0]
    assert row.status == "failed" and "exit code 3" in (row.reason or "")
    ckpt = json.loads((tmp_path / "t" / "exe-train" / "seed_42" / "ckpt.json").read_text())
    assert ckpt["final_loss"] > 0


def test_a_job_sees_only_the_data_it_declares(
    fake_codebase: Path, data: DataPaths, tmp_path: Path
) -> None:
    """The training job (train_data only) cannot reach the evaluation answers: no variable
    names them, the host path does not exist in its view, and only its own input is mounted."""
    probe = (
        "import os\n"
        f"_host = {str(data.eval_data_dir)!r}\n"
        "_mounted = sorted(os.listdir('/pb/data')) if os.path.isdir('/pb/data') else None\n"
        "print('PROBE', os.environ.get('PB_EVAL_DATA_DIR'), os.path.exists(_host), _mounted,\n"
        "      flush=True)\n"
    )
    result = Executor(LocalBackend()).run(
        _request(fake_codebase, data, tmp_path / "t", files=_inject(probe), jobs=[TRAIN])
    )
    assert result.status == "ok", result.reason
    line = next(x for x in result.results[0].log_tail.splitlines() if x.startswith("PROBE"))
    assert line == "PROBE None False ['train_data']"


def test_missing_prepared_data_is_the_harness_fault(
    fake_codebase: Path, data: DataPaths, tmp_path: Path
) -> None:
    missing = data.model_copy(update={"eval_data_dir": tmp_path / "not-prepared"})
    result = Executor(LocalBackend()).run(_request(fake_codebase, missing, tmp_path / "t"))
    row = result.for_setting("exe-gpt")[0]
    assert result.status == "infra_error" and row.status == "infra_error"
    assert "the prepared evaluation data is missing (run `runner setup`)" in (row.reason or "")
    assert str(tmp_path) not in (row.reason or "")  # no host path in what an agent may read
