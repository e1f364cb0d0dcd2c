"""The trainer end to end on the synthetic faces: run folder, resume, bad input, schedules."""

import csv
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from aubench.cli import main
from aubench.models import create
from aubench.train import TrainConfig, TrainingInterrupted, fit, learning_rate
from aubench.train.checkpoint import load_checkpoint
from aubench.train.distributed import ShardSampler
from aubench.train.evaluation import EvalAccumulator, attention_cosine

#: 48 training faces at 64 px, batches of 16: 3 steps per epoch; val and test get 12 faces each.
TINY = [
    "--data", "synthetic:n=48", "--size", "64", "--batch-size", "16", "--eval-batch-size", "24",
    "--epochs", "2", "--no-large-maps", "--quiet",
]  # fmt: skip
TINY_CONFIG = TrainConfig(
    data="synthetic:n=48", size=64, batch_size=16, eval_batch_size=24, epochs=2, large_maps=False
)


def rows(run) -> list[dict]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_guided_run_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--guided", "--layers", "layer4,stage:4", "--out", str(out)]) == 0
    assert "best epoch" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {
        "config.yaml", "last.pt", "best.pt", "metrics.csv", "summary.json"
    }  # fmt: skip
    config = TrainConfig.load(out / "config.yaml")
    assert config.guided and config.layers == ("layer4", "stage:4")
    table = rows(out)
    assert [r["epoch"] for r in table] == ["1", "2"]
    keys = ["lr", "train_loss", "train_align", "train_acc", "val_acc", "val_att_cos"]
    keys += ["val_att_cos/layer4", "val_att_cos/layer3", "test_acc", "test_att_cos"]
    for key in keys:
        assert math.isfinite(float(table[-1][key])), key
    assert float(table[-1]["train_align"]) > 0
    assert table[-1]["val_n"] == "12" and table[-1]["test_n"] == "12"
    # synthetic faces: every invalid map is a neutral face (the 7 classes come in equal blocks)
    assert int(table[-1]["val_n_valid"]) + int(table[-1]["val_invalid/no_aus"]) == 12
    if importlib.util.find_spec("tensorboard"):
        assert any((out / "tensorboard").iterdir())
    best = load_checkpoint(out / "best.pt")
    assert best["config_hash"] == config.hash() and best["config"] == config.model_dump(mode="json")
    model = create(config.model, 7)
    model.load_state_dict(best["model"])  # the weights load into a fresh timm model
    last = load_checkpoint(out / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (2, 0, 6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config_hash"] == config.hash() and summary["select"] == "val_acc"
    assert summary["best"]["epoch"] == best["epoch"]
    assert summary["layer_grids"] == {"layer4": [2, 2], "layer3": [4, 4]}  # 64 px, stride 32


def test_baseline_has_no_alignment_term_and_a_rerun_is_a_no_op(tmp_path):
    out = tmp_path / "run"
    first = fit(TINY_CONFIG, out=out, progress=True)  # the tqdm bars' code path
    assert first["last"]["train_align"] == 0.0
    stamp = (out / "last.pt").stat().st_mtime_ns
    again = fit(TINY_CONFIG, out=out, progress=False)  # finished: resumes at the end
    assert again["last"] == first["last"] and (out / "last.pt").stat().st_mtime_ns == stamp


#: Deterministic guided run with the paper's augmentations, 2 epochs of 3 steps, last.pt also
#: every 2 steps (global steps 2 and 4).
RESUMABLE = TINY_CONFIG.replace(guided=True, deterministic=True, augment=True)
RESUMABLE_FLAGS = [*TINY, "--guided", "--deterministic", "--save-every", "2", "--augment"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    fit(RESUMABLE, out=out, progress=False, save_every=2)
    return out


def assert_same_run(a, b) -> None:
    """Bit-identical final weights and optimiser state, identical metrics (except timings)."""
    first, second = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert first["config_hash"] == second["config_hash"] == RESUMABLE.hash()
    for key, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][key]), key
    optimizer_a, optimizer_b = first["optimizer"]["state"], second["optimizer"]["state"]
    assert optimizer_a.keys() == optimizer_b.keys()
    for index, moments in optimizer_a.items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(moments[name], optimizer_b[index][name]), (index, name)

    def timeless(run):
        return [{k: v for k, v in row.items() if k != "time_s"} for row in rows(run)]

    assert timeless(a) == timeless(b)


def test_run_stopped_mid_epoch_resumes_to_identical_weights(tmp_path, uninterrupted):
    """Stopped after step 5 (its last save is step 4, mid-epoch 2), then the same command."""
    args = [*RESUMABLE_FLAGS, "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        main(["train", *args, "--stop-after-steps", "5"])
    assert stop.value.code == 3
    saved = load_checkpoint(tmp_path / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 1, 4)
    assert main(["train", *args]) == 0
    assert_same_run(uninterrupted, tmp_path)


def test_process_killed_by_a_signal_resumes_to_identical_weights(tmp_path, uninterrupted):
    """A real `aubench train` process, SIGKILLed as soon as its first checkpoint exists."""
    args = [*RESUMABLE_FLAGS, "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, "-m", "aubench", "train", *args], env=env)
    deadline = time.monotonic() + 120
    while not (tmp_path / "last.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] < 6  # killed part-way
    assert main(["train", *args]) == 0
    assert_same_run(uninterrupted, tmp_path)


# --- refusing bad input, writing nothing ----------------------------------------------------


def test_another_config_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    fit(TINY_CONFIG.replace(epochs=1), out=out, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    other = TINY_CONFIG.replace(epochs=1, lam=2.0)
    assert main(["train", *TINY, "--epochs", "1", "--lam", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    stored = TINY_CONFIG.replace(epochs=1).hash()
    assert f"holds a run of config {stored}, not this config {other.hash()}" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "resnet81"], "unknown model 'resnet81'; did you mean resnet18"),
        (["--layers", "layr4"], "unknown layer 'layr4' in ResNet; did you mean layer4"),
        (["--layers", "fc"], "layer 'fc' output of shape (1, 7) is not spatial"),
        (["--lam", "-1"], "λ must be a finite number ≥ 0, got -1"),
        (["--loss", "cosin"], "did you mean cosine"),
        (["--data", "synthetc"], "unknown dataset 'synthetc'"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_corrupt_checkpoint_is_reported_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    fit(TINY_CONFIG.replace(epochs=1), out=out, progress=False)
    (out / "last.pt").write_bytes(b"garbage")
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
    assert f"{out / 'last.pt'} is corrupt" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == b"garbage"


def test_a_non_run_folder_and_a_config_of_another_version_are_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 2
    assert "holds no aubench run" in capsys.readouterr().err
    old = tmp_path / "old.yaml"
    old.write_text("version: 0\nepochs: 1\n")
    assert main(["train", "--config", str(old), "--out", str(tmp_path / "x")]) == 2
    assert "config version 0 is not supported" in capsys.readouterr().err


def test_stop_hook_raises_without_saving(tmp_path):
    with pytest.raises(TrainingInterrupted):
        fit(TINY_CONFIG, out=tmp_path / "run", progress=False, stop_after_steps=2)
    assert not (tmp_path / "run" / "last.pt").exists()


# --- pieces ---------------------------------------------------------------------------------


def test_learning_rate_schedules():
    step = TrainConfig(schedule="step", lr=0.002, step_every=4, step_gamma=0.9, min_lr=1e-7)
    assert [learning_rate(step, e) for e in (0, 3.9, 4, 8)] == pytest.approx(
        [0.002, 0.002, 0.0018, 0.00162]
    )
    assert learning_rate(step.replace(lr=1e-6, step_gamma=0.01), 40) == 1e-7
    cosine = TrainConfig(schedule="cosine", lr=1.0, min_lr=0.0, epochs=10, warmup_epochs=2)
    assert learning_rate(cosine, 1) == pytest.approx(0.5)
    assert learning_rate(cosine, 6) == pytest.approx(0.5)
    assert learning_rate(cosine, 10) == pytest.approx(0.0)


@pytest.mark.parametrize(("size", "world"), [(10, 2), (7, 3), (2, 3)])
def test_shard_sampler_covers_evaluation_once_and_pads_training(size, world):
    shards = [
        list(ShardSampler(size, shuffle=False, pad=False, rank=r, world=world))
        for r in range(world)
    ]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    train = [
        ShardSampler(size, shuffle=True, pad=True, seed=3, rank=r, world=world)
        for r in range(world)
    ]
    for sampler in train:
        sampler.set_epoch(1)
    lengths = {len(list(s)) for s in train}
    assert lengths == {math.ceil(size / world)} and {len(s) for s in train} == lengths
    assert set().union(*map(set, train)) == set(range(size))
    train[0].set_epoch(1, start=1)
    assert list(train[0]) == train[0].indices()[1:]


def test_att_cos_golden_and_macro_average():
    attention = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]])
    heatmap = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]).expand(2, 2, 2)
    # sample 1: cos([1,0,0,1], [1,1,0,0]) = 0.5; sample 2 is shifted by +1 first: [0,1,1,2] → 1/√12
    expected = torch.tensor([0.5, 1 / math.sqrt(12)])
    torch.testing.assert_close(attention_cosine(attention, heatmap), expected)
    meter = EvalAccumulator(7, ["layer4"], torch.device("cpu"))
    logits = torch.eye(7)[[1, 2, 2, 0]]
    labels = torch.tensor([1, 2, 2, 0])
    maps = torch.stack([attention[0], attention[0], attention[1], attention[0]])
    valid = torch.tensor([True, True, True, False])
    reasons = torch.tensor([0, 0, 0, 1])  # the neutral sample has no AUs
    meter.update(logits, labels, {"layer4": maps}, heatmap[:1].expand(4, 2, 2), valid, reasons)
    scores = meter.compute()
    # class 1: 0.5; class 2: (0.5 + 1/√12)/2; neutral (invalid) is left out of the macro mean
    assert scores["att_cos"] == pytest.approx((0.5 + (0.5 + 1 / math.sqrt(12)) / 2) / 2)
    assert (scores["acc"], scores["n"], scores["n_valid"]) == (100.0, 4, 3)
    assert (scores["invalid/no_aus"], scores["invalid/no_landmarks"]) == (1, 0)


HOLD_LOCK = """
import sys, time
from aubench.io import FolderLock
with FolderLock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_model_folder_in_use_is_refused_then_taken_over_after_a_crash(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out), "model folder"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"model folder {out} is in use by pid {holder.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == [".aubench.lock"]  # nothing written
    finally:
        holder.kill()  # as a crash would: the kernel drops the lock
        holder.wait()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    assert (out / "best.pt").is_file()


def test_a_device_that_is_not_here_never_blames_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    fit(TINY_CONFIG.replace(epochs=1), out=out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".pt"}
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--device", "cpu:7"]) == 2
    err = capsys.readouterr().err
    assert "device 'cpu:7': there is one CPU device" in err and "corrupt" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".pt"} == before
