"""Checkpoints: atomic save, RNG states, and a clear error naming the file wherever one is read."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from aubench.bench.evaluate import load_trained
from aubench.train.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from aubench.train.config import TrainConfig
from aubench.train.run_folder import prepare_run_dir


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "config_hash": "abc", "history": [{"acc": 1.0}]}
    path = save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert loaded["format_version"] == CHECKPOINT_VERSION and loaded["history"] == [{"acc": 1.0}]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_foreign_and_other_version_checkpoints(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"model": {}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"{truncated} is corrupt or not a checkpoint"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="is corrupt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="is not an aubench training checkpoint"):
        load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({**torch.load(good, weights_only=True), "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(newer)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


def test_rng_states_survive_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def broken_checkpoints(folder, name: str) -> list:
    """``name`` three ways in its own sub-folder of ``folder``: garbage bytes, an empty file, and
    the first half of a real checkpoint (a small model's weights, optimiser and config)."""
    model = nn.Linear(8, 7)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    config = TrainConfig()
    real = save_checkpoint(
        folder / "real.pt",
        {
            "config": config.model_dump(mode="json"),
            "config_hash": config.hash(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
        },
    )
    contents = {
        "garbage": b"\x00not a checkpoint" * 10,
        "empty": b"",
        "truncated": real.read_bytes()[: real.stat().st_size // 2],
    }
    paths = []
    for kind, content in contents.items():
        path = folder / kind / name
        path.parent.mkdir()
        path.write_bytes(content)
        paths.append(path)
    return paths


def test_every_checkpoint_reader_names_a_corrupt_file(tmp_path):
    for path in broken_checkpoints(tmp_path, "any.pt"):
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        assert f"{path} is corrupt or not a checkpoint" in str(caught.value)
    (tmp_path / "resume").mkdir()
    config = TrainConfig()
    for last in broken_checkpoints(tmp_path / "resume", "last.pt"):
        config.save(last.parent / "config.yaml")
        with pytest.raises(CheckpointError, match="is corrupt") as caught:
            prepare_run_dir(config, last.parent, "data")
        assert str(last) in str(caught.value)
    (tmp_path / "evaluate").mkdir()
    for best in broken_checkpoints(tmp_path / "evaluate", "best.pt"):
        with pytest.raises(CheckpointError, match="is corrupt") as caught:
            load_trained(best.parent, torch.device("cpu"))
        assert str(best) in str(caught.value)


def test_a_device_that_cannot_take_a_checkpoint_is_not_called_corruption(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"format": "x", "weights": torch.zeros(2)}, path)
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine can load onto cuda")
    with pytest.raises(ValueError, match="could not be loaded onto device 'cuda'") as caught:
        load_checkpoint(path, map_location="cuda")
    assert "corrupt" not in str(caught.value)
    assert path.is_file()
