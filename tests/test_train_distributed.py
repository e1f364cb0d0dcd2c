"""torchrun DDP on CPU with gloo: two processes stay in sync, evaluate each sample once, and
rank 0 writes a valid checkpoint."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from aubench.models import create
from aubench.train import TrainConfig
from aubench.train.checkpoint import load_checkpoint
from aubench.train.distributed import check_device

CUDA = torch.cuda.is_available()


def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    # 52 training faces (26 per rank, batches of 8: 3 steps per epoch); val and test hold 13
    # faces each, an odd number, so the ranks' evaluation shards differ in size (7 and 6).
    flags = ["--data", "synthetic:n=52", "--size", "64", "--batch-size", "8", "--epochs", "2"]
    flags += ["--eval-batch-size", "4", "--no-large-maps", "--guided", "--quiet"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    command += ["2", "-m", "aubench", "train", *flags, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("trained ") == 1  # rank 0 reports, rank 1 stays quiet

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ranks_in_sync"] and summary["max_rank_divergence"] == 0.0
    assert summary["eval_sizes"] == {"val": 13, "test": 13}
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["val_n"], r["test_n"]) for r in rows] == [("13", "13")] * 2  # no padded duplicates

    config = TrainConfig.load(out / "config.yaml")
    last = load_checkpoint(out / "last.pt")
    assert last["config_hash"] == config.hash() and last["world_size"] == 2
    assert (last["epoch"], last["global_step"]) == (2, 6)
    assert len(last["rng"]) == 2  # both ranks' generator states
    model = create(config.model, 7)
    model.load_state_dict(last["model"])  # no DDP "module." prefix
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert load_checkpoint(out / "best.pt")["config_hash"] == config.hash()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cpu:7", "device 'cpu:7': there is one CPU device; use cpu"),
        ("tpu", "device 'tpu' is not a device: use cpu, cuda or cuda:N"),
        ("gpu", "device 'gpu' is not a device"),
        ("meta", "device 'meta': aubench runs on cpu or cuda, not meta"),
        ("cuda:7", "device 'cuda:7': " + ("this machine has" if CUDA else "CUDA is not available")),
    ],
)
def test_a_device_that_is_not_here_is_named(device, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_device(device)
    assert check_device("cpu") == torch.device("cpu")
