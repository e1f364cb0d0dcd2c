"""Training config (validation, YAML, stable hash, CLI flags) and checkpoints (atomic, errors)."""

import argparse
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from aubench.train.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from aubench.train.config import (
    CONFIG_VERSION,
    ConfigError,
    TrainConfig,
    add_config_arguments,
    config_from_arguments,
)

# --- config ---------------------------------------------------------------------------------


def test_yaml_round_trip_keeps_the_hash(tmp_path):
    config = TrainConfig(guided=True, layers="layer4,layer3", lam=2.5, optimizer="sgd")
    assert config.layers == ("layer4", "layer3")
    path = config.save(tmp_path / "config.yaml")
    again = TrainConfig.load(path)
    assert again == config and again.hash() == config.hash()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


def test_hash_is_stable_across_processes_and_key_order():
    config = TrainConfig(lam=3.0, guided=True)
    reordered = TrainConfig.from_dict(dict(reversed(list(config.model_dump().items()))))
    assert reordered.hash() == config.hash()
    code = "from aubench.train import TrainConfig; print(TrainConfig(lam=3.0, guided=True).hash())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == config.hash()
    assert len(config.hash()) == 12
    assert config.replace(seed=1).hash() != config.hash()
    assert config.run_name() == f"resnet10t-guided-{config.hash()}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lamda": 4}, "unknown config key 'lamda'; did you mean lam"),
        ({"lam": -1}, "λ must be a finite number ≥ 0, got -1"),
        ({"loss": "cosin"}, "unknown alignment loss 'cosin'; did you mean cosine"),
        ({"version": CONFIG_VERSION + 1}, f"config version {CONFIG_VERSION + 1} is not supported"),
        ({"layers": []}, "give at least one layer"),
        ({"optimizer": "adam"}, "optimizer: Input should be 'sgd' or 'adamw'"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
    ],
)
def test_bad_configs_name_the_problem(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values, "run.yaml")


def test_config_file_of_another_version_or_bad_yaml(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({**TrainConfig().model_dump(mode="json"), "version": 0}))
    with pytest.raises(ConfigError, match=rf"{path}: version: config version 0 is not supported"):
        TrainConfig.load(path)
    path.write_text("lam: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrainConfig.load(tmp_path / "missing.yaml")


def test_command_line_flags_override_the_config_file(tmp_path):
    path = TrainConfig(epochs=9, lam=1.0).save(tmp_path / "base.yaml")
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    args = parser.parse_args(
        ["--config", str(path), "--guided", "--layers", "layer4,stage:4", "--lam", "4"]
    )
    config = config_from_arguments(args)
    assert (config.epochs, config.lam, config.guided) == (9, 4.0, True)
    assert config.layers == ("layer4", "stage:4")
    assert config_from_arguments(parser.parse_args(["--augment"])).augment is True
    assert config_from_arguments(parser.parse_args(["--no-large-maps"])).large_maps is False


# --- checkpoints ----------------------------------------------------------------------------


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
