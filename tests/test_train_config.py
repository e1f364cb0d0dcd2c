"""Training config: validation, YAML, stable hash, CLI flags."""

import argparse
import subprocess
import sys

import pytest
import yaml

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
