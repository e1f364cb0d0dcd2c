"""``aubench run --executor``: submitit's real local and debug executors (and a fake SLURM).

One module-scoped run trains the tiny suite's two models as local jobs; every other run shares
its model cache, so all compared tables come from the same trained weights.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("submitit")

from aubench.bench.executor import submit_suite, wait
from aubench.bench.results import read_results
from aubench.bench.runner import model_dir, plan, run_suite
from aubench.bench.suite import load_suite
from aubench.cli import main

TINY = """
name: tiny-jobs
data: synthetic:n=120
train: {size: 64, epochs: 1, batch_size: 32, deterministic: true, amp: false, large_maps: false}
models: [resnet18]
variants:
  - {name: baseline}
  - {name: guided, guided: true, lam: 4}
explainers: [attention, gradcam]
layers: [stage:5]
metrics: [cosine]
eval: {split: test, max_images: 12, batch_size: 12, samples_per_class: 1}
aggregation: {bootstrap: 10}
"""


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "variant", "seed", "method", "layer", "metric", "class"]
    return table.sort_values(keys).reset_index(drop=True)


def _cli(suite: Path, runs: Path, out: Path, *extra: str) -> int:
    command = ["run", "--suite", str(suite), "--runs-root", str(runs), "--out", str(out)]
    return main([*command, "--quiet", "--jobs", "2", *extra])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(suite file, model cache, run folder) of ``--executor local --jobs 2`` on a fresh cache."""
    root = tmp_path_factory.mktemp("executor")
    suite = root / "tiny.yaml"
    suite.write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # two jobs at once on two cores
        assert _cli(suite, root / "runs", root / "local", "--executor", "local") == 0
    return suite, root / "runs", root / "local"


@pytest.fixture(scope="module")
def in_process(local_run) -> pd.DataFrame:
    """The results table of the same suite run in this process on the same model cache."""
    suite, runs, out = local_run
    run = run_suite(
        load_suite(str(suite)), out=out.parent / "in-process", runs_root=runs, progress=False
    )
    return _sorted(read_results(run))


def test_local_jobs_train_each_model_once_and_match_an_in_process_run(local_run, in_process):
    suite, runs, out = local_run
    pd.testing.assert_frame_equal(_sorted(read_results(out)), in_process)
    folders = {model_dir(runs, cell.config) for cell in plan(load_suite(str(suite)))}
    assert len(folders) == 2 and all((f / "best.pt").is_file() for f in folders)
    logs = {path.name: path.read_text() for path in (out / "executor").glob("*_log.out")}
    assert len(logs) == 4  # two training jobs, then two evaluation shards
    for shard in ("shard 0/2", "shard 1/2"):
        (name,) = [name for name, text in logs.items() if f"suite tiny-jobs, {shard}" in text]
        assert (out / "executor" / name.replace("_log.out", "_log.err")).is_file()


def test_debug_jobs_run_in_process_with_their_logs_and_match(local_run, in_process):
    suite, runs, out = local_run
    run, folder = out.parent / "debug", out.parent / "debug-jobs"
    jobs = submit_suite(
        str(suite), [], out=run, runs_root=runs, jobs=2, executor="debug", folder=folder
    )
    assert [job.label for job in jobs] == ["shard 0/2", "shard 1/2"]  # models cached: no training
    wait(jobs)
    assert all(job.log.is_file() and Path(job.job.paths.stdout).is_file() for job in jobs)
    run_suite(load_suite(str(suite)), out=run, runs_root=runs, progress=False)  # assemble
    pd.testing.assert_frame_equal(_sorted(read_results(run)), in_process)
    # everything finished: a second submission has nothing to do
    assert submit_suite(str(suite), [], out=run, runs_root=runs, executor="debug") == []


def test_a_failing_shard_is_named_with_its_log(local_run, tmp_path, capsys):
    suite = local_run[0]
    runs = tmp_path / "runs"
    for cell in plan(load_suite(str(suite))):  # "trained" models whose checkpoint is corrupt
        folder = model_dir(runs, cell.config)
        folder.mkdir(parents=True)
        (folder / "best.pt").write_bytes(b"not a checkpoint")
        (folder / "summary.json").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        _cli(suite, runs, tmp_path / "run", "--executor", "local")
    assert stop.value.code == 1
    error = capsys.readouterr().err
    assert "aubench run: error: 2 of 2 job(s) failed" in error
    for shard in ("shard 0/2", "shard 1/2"):
        assert re.search(rf"{shard} \(job \d+\) failed: .*best\.pt is corrupt", error)
    logs = [Path(path) for path in re.findall(r"log: (\S+)", error)]
    assert len(logs) == 2 and all("CheckpointError" in log.read_text() for log in logs)
    assert not (tmp_path / "run" / "results.parquet").exists()


def test_a_failing_training_job_stops_before_any_shard(local_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _cli(
            local_run[0],
            tmp_path / "runs",
            tmp_path / "run",
            "--executor",
            "local",
            "--set",
            "train.batch_size=4096",  # more than the training split: fit fails inside the job
            "--set",
            "variants=[{name: baseline}]",
        )
    assert stop.value.code == 1
    error = capsys.readouterr().err
    assert re.search(r"1 of 1 job\(s\) failed:\ntraining of resnet18-baseline-[\w-]+ \(job", error)
    assert "batch_size 4096 exceeds" in error and not re.search(r"shard \d+/\d+", error)
    assert not (tmp_path / "run" / "cells").exists()
    (log,) = re.findall(r"log: (\S+)", error)
    assert Path(log).is_file()


def test_missing_data_fails_before_any_job_is_submitted(local_run, tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    argv = ["--executor", "local", "--set", f"data=rafdb:{missing}"]
    assert _cli(local_run[0], tmp_path / "runs", tmp_path / "run", *argv) == 2
    assert str(missing) in capsys.readouterr().err
    assert not list((tmp_path / "run").rglob("*_log.*"))  # no job ran


def test_slurm_jobs_are_an_array_with_the_requested_resources(local_run, tmp_path, monkeypatch):
    """A fake cluster (srun/sbatch/sacct on the PATH): submitit writes the real sbatch file."""
    suite, runs, _ = local_run
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"srun": "", "sbatch": "echo Submitted batch job 4242", "sacct": ""}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    jobs = submit_suite(
        str(suite),
        [],
        out=tmp_path / "run",
        runs_root=runs,  # models cached: only the evaluation array is submitted
        executor="slurm",
        device="cuda",
        slurm={"slurm_partition": "gpu", "timeout_min": 30, "mem_gb": 16},
    )
    assert [(job.label, job.job.job_id) for job in jobs] == [
        ("shard 0/2", "4242_0"),
        ("shard 1/2", "4242_1"),
    ]
    sbatch = (tmp_path / "run" / "executor" / "4242_submission.sh").read_text()
    for line in ("--array=0-1", "--partition=gpu", "--time=30", "--gpus-per-node=1"):
        assert f"#SBATCH {line}" in sbatch
    assert "#SBATCH --job-name=aubench-tiny-jobs" in sbatch and "#SBATCH --mem=16GB" in sbatch


def test_executor_errors_are_clear(local_run, tmp_path, monkeypatch, capsys):
    suite = str(local_run[0])
    with pytest.raises(ValueError, match="executor 'ray': expected one of local, debug, slurm"):
        submit_suite(suite, out=tmp_path / "a", executor="ray")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ValueError, match="executor 'slurm': Could not detect \"srun\""):
        submit_suite(suite, out=tmp_path / "b", executor="slurm")
    command = ["run", "--suite", suite, "--runs-root", str(tmp_path), "--executor", "local"]
    assert main([*command, "--shard", "0/2"]) == 2
    assert "--shard and --executor exclude each other" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as stop:
        main(command)
    assert stop.value.code == 2
    assert "need submitit: pip install 'aubench[slurm]'" in capsys.readouterr().err
