"""The sbatch scripts the Slurm backend writes (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from sandbox import DataPaths
from sandbox._backend import SettingJob
from sandbox._slurm import SlurmBackend


def _job(tmp_path: Path, gpus: int) -> SettingJob:
    out = tmp_path / "test" / "gpt-345m" / "seed_42"
    return SettingJob(
        label="gpt-345m",
        seed=42,
        script="scripts/gpt_345m.sh",
        codebase_dir=tmp_path / "code",
        files={},
        out_dir=out,
        log_path=out / "log.txt",
        data=DataPaths(
            data_dir=tmp_path / "data",
            tokenizer_dir=tmp_path / "tok",
            eval_source="hf",
            hf_home=tmp_path / "hf",
        ),
        time_limit_s=12 * 3600,
        gpus=gpus,
        env={"PB_PROFILE": "full", "SECRET_TOKEN": "x"},
    )


def test_gpu_job_script(tmp_path: Path) -> None:
    backend = SlurmBackend(check_cluster=False, partition="gpu", time_grace_s=300)
    work = tmp_path / "work"
    work.mkdir()
    text = backend._write_batch(_job(tmp_path, 2), work, work / "code").read_text()
    assert "#SBATCH --gres=gpu:2\n" in text and "#SBATCH --partition=gpu\n" in text
    assert "#SBATCH --time=725\n" in text  # 12 h + 300 s grace, in minutes
    assert "#SBATCH --export=NONE" in text and "export PB_NPROC=2" in text
    assert "export PB_PROFILE=full" in text and "SECRET_TOKEN" not in text  # only PB_* pass
    assert "CUDA_VISIBLE_DEVICES=''" not in text  # Slurm assigns the GPUs
    assert "unshare --net" in text


def test_container_job_script(tmp_path: Path) -> None:
    backend = SlurmBackend(check_cluster=False, container="apptainer", image="/images/pb.sif")
    work = tmp_path / "work"
    work.mkdir()
    text = backend._write_batch(_job(tmp_path, 1), work, work / "code").read_text()
    assert "apptainer exec --nv --containall --no-home" in text and "/images/pb.sif" in text
    assert f"{tmp_path / 'data'}:{tmp_path / 'data'}" in text
