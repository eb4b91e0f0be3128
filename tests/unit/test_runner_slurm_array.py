"""The array job's batch script and spec, without a cluster: the script is run by bash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner._slurm_array import (
    ArrayTask,
    SlurmArrayError,
    _array_indices,
    _exit_code,
    batch_script,
    run_array,
    sbatch_args,
)

WORDS = ["two words", 'it\'s "q"', "$(touch {p})", "`touch {p}`", "; touch {p}", "a\nb", "*", ""]


def test_each_index_runs_its_own_argv_verbatim(tmp_path: Path) -> None:
    planted = tmp_path / "injected"
    words = [w.format(p=planted) for w in WORDS]
    show = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['PB_X']]))"
    tasks = [ArrayTask(i, [sys.executable, "-c", show, str(i), *words]) for i in (0, 3)]
    script = tmp_path / "array.sbatch"
    script.write_text(batch_script(tasks, {"PATH": "/usr/bin:/bin", "PB_X": "$(id) 'x'"}))
    for index in (0, 3):
        proc = subprocess.run(
            ["bash", str(script)],
            env={"SLURM_ARRAY_TASK_ID": str(index)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(proc.stdout) == [[str(index), *words], "$(id) 'x'"]
    unknown = subprocess.run(
        ["bash", str(script)], env={"SLURM_ARRAY_TASK_ID": "1"}, capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "no command for array task 1" in unknown.stderr
    assert not planted.exists()


def test_the_spec_names_indices_throttle_and_per_task_logs(tmp_path: Path) -> None:
    args = sbatch_args(
        [ArrayTask(5, ["true"]), ArrayTask(2, ["true"])],
        job_name="pb-sweep",
        log_dir=tmp_path / "100%",
        cpus_per_task=2,
        mem_mb=512,
        time_limit="1:00:00",
        max_parallel=3,
    )
    assert "--array=2,5%3" in args and "--export=NONE" in args and "--mem=512M" in args
    assert f"--output={tmp_path}/100%%/%a.log" in args


def test_scontrol_fields_are_read_as_slurm_writes_them() -> None:
    assert _array_indices("3") == [3]
    assert _array_indices("2,5%2") == [2, 5]
    assert _array_indices("0-6:3,9%4") == [0, 3, 6, 9]
    assert _array_indices("") == []
    assert (_exit_code("3:0"), _exit_code("0:15"), _exit_code(None)) == (3, 143, None)


@pytest.mark.parametrize(
    ("tasks", "env", "match"),
    [
        ([], {}, "at least one task"),
        ([ArrayTask(1, ["a"]), ArrayTask(1, ["b"])], {}, "distinct"),
        ([ArrayTask(0, [])], {}, "needs a command"),
        ([ArrayTask(0, ["a"])], {"A=B": "x"}, "not environment variable names"),
    ],
)
def test_bad_arrays_are_refused_before_sbatch(
    tmp_path: Path, tasks: list[ArrayTask], env: dict[str, str], match: str
) -> None:
    with pytest.raises(SlurmArrayError, match=match):
        run_array(
            tasks,
            job_name="pb",
            log_dir=tmp_path,
            cpus_per_task=1,
            mem_mb=None,
            time_limit="1",
            max_parallel=None,
            env=env,
        )
