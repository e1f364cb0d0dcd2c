"""Training configuration: one validated, versioned, hashable record of everything a run depends on.

A :class:`TrainConfig` is written to ``<run>/config.yaml`` and into every checkpoint with its
:meth:`~TrainConfig.hash` (12 hex digits of the SHA-256 of its canonical JSON), which names default
run folders and decides whether an existing run folder is resumed or refused. How a run is
executed — output folder, device, DataLoader workers, checkpoint frequency, progress bars — is
not part of it.

The defaults are the "default small config": timm's ResNet-10-T with the paper's large maps
(layer 3 and layer 4 at stride 1, so layer 4 gives 8×8 maps at 64 px) on 3,000 synthetic faces at
64 px, 3 epochs of AdamW (lr 2e-3, weight decay 0.05, batch 32, per-step cosine decay), a
validation split held out of training, ATT-COS at ``layer4``, and no augmentation (the synthetic
faces already vary identity, pose, lighting and background; the paper's augmentations slow such
a short schedule several-fold). A baseline or a guided model (``guided=True``: λ = 4 at
``layer4``, the paper's RAF-DB CAM setting) trains on two CPU cores in about two minutes.
ResNet-18 with large maps costs about twice as much per step, and its baseline needs more epochs
to pass 90 % on these faces. The paper's own recipe is the ``paper`` preset (:data:`PRESETS`).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aubench.io import write_atomic
from aubench.train.options import ALIGN_LOSSES, check_lambda, check_loss_name

#: Bumped whenever a field's meaning changes; configs of another version are refused.
CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A configuration that cannot be used (unknown key, bad value, other version)."""


class TrainConfig(BaseModel):
    """Everything that determines a training run's result (see the module doc for defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    version: int = CONFIG_VERSION
    # data
    data: str = Field(
        "synthetic:n=3000", description="dataset spec: synthetic[:n=N,...], rafdb:PATH, ..."
    )
    size: int = Field(64, ge=16, description="image side in px")
    num_classes: int | None = Field(None, description="7 or 8; None: the dataset's protocol")
    validation: Literal["holdout", "test"] = Field(
        "holdout",
        description="holdout: select on a split held out of training (val_fraction); test: the "
        "paper's protocol, the test split is the validation split (optimistic selection)",
    )
    val_fraction: float = Field(0.1, gt=0, lt=1, description="holdout share of train")
    augment: bool = Field(False, description="the paper's train augmentations (§1.4)")
    regions: str = Field("default", description="AU region model of the heatmaps")
    codebook: str | None = Field(
        None, description="expression → AU codebook; None: the region model's own"
    )
    # model
    model: str = Field("resnet10t", description="timm model name")
    pretrained: str | None = Field(None, description="local weights file or 'hub'")
    large_maps: bool = Field(True, description="ResNets: layer3/layer4 at stride 1")
    output_stride: int | None = Field(
        None, description="timm's dilated output stride (8, 16): larger maps, same receptive field"
    )
    # alignment
    guided: bool = Field(False, description="add the alignment loss (AU-guided training)")
    layers: tuple[str, ...] = Field(
        ("layer4",),
        description="aligned layers (guided) and layers whose ATT-COS is evaluated (both)",
    )
    loss: str = Field("cosine", description=f"alignment loss: {', '.join(ALIGN_LOSSES)}")
    lam: float = Field(4.0, description="alignment weight λ ≥ 0")
    attention: Literal["mean", "abs-mean", "max"] = Field(
        "mean", description="channel reduction giving the layer attention"
    )
    # optimisation
    optimizer: Literal["sgd", "adamw"] = Field("adamw", description="sgd is Nesterov SGD")
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only (Nesterov)")
    weight_decay: float = Field(0.05, ge=0)
    schedule: Literal["cosine", "step", "constant"] = Field(
        "cosine", description="per-step cosine, or the paper's per-epoch step decay"
    )
    step_every: int = Field(4, ge=1, description="step schedule: epochs between decays")
    step_gamma: float = Field(0.9, gt=0, le=1, description="step schedule: decay factor")
    min_lr: float = Field(1e-7, ge=0)
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up (cosine schedule)")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1, description="per process")
    eval_batch_size: int = Field(128, ge=1, description="per process")
    amp: bool = Field(True, description="mixed precision + grad scaling (CUDA only)")
    seed: int = Field(0, ge=0, description="model init, sampling and augmentation")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms")

    @field_validator("loss")
    @classmethod
    def _loss(cls, value: str) -> str:
        return check_loss_name(value)

    @field_validator("lam")
    @classmethod
    def _lam(cls, value: float) -> float:
        return check_lambda(value)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError("give at least one layer (e.g. layer4 or stage:5)")
        return value

    @field_validator("output_stride")
    @classmethod
    def _output_stride(cls, value: int | None) -> int | None:
        if value not in (None, 8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {value}")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != CONFIG_VERSION:
            raise ValueError(
                f"config version {value} is not supported by this aubench, which reads version "
                f"{CONFIG_VERSION}; write a fresh one with `aubench train --dump-config`"
            )
        return value

    # --- identity -------------------------------------------------------------------------

    def canonical(self) -> str:
        """The config as compact JSON with sorted keys (what the hash is taken of)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """12 hex digits of SHA-256 of :meth:`canonical`; stable across runs and machines."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:12]

    def run_name(self) -> str:
        """Default run folder name: ``<model>-<baseline|guided>-<hash>``."""
        return f"{self.model}-{'guided' if self.guided else 'baseline'}-{self.hash()}"

    # --- I/O ------------------------------------------------------------------------------

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as YAML, atomically."""
        return write_atomic(path, self.to_yaml().encode())

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Validate ``values``; raise :class:`ConfigError` naming the source, key and problem
        (unknown keys get near-match suggestions)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys, got {type(values)}")
        unknown = [key for key in values if key not in cls.model_fields]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), list(cls.model_fields), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown config key {key!r}{hint}")
        try:
            return cls(**values)
        except ValidationError as err:
            problems = "; ".join(_problem(e) for e in err.errors())
            raise ConfigError(f"{source}: {problems}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML config; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        return cls.from_dict(values, str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied."""
        return type(self).from_dict({**self.model_dump(), **changes}, "config override")

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        """A named starting point from :data:`PRESETS` (``small`` = the defaults)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls.from_dict(PRESETS[name], f"preset {name!r}")


#: Named configs. ``small``: the defaults (module doc). ``paper``: Belharbi et al.'s RAF-DB
#: recipe (shared/reference/paper-protocol.md §1.4, §4, §7): ResNet-50 with large maps at 224 px,
#: the paper's augmentations, Nesterov SGD lr 0.002, weight decay 5e-4, batch 224, 20 epochs, step
#: decay ×0.9 every 4 epochs, λ = 4 at layer 4 (RAF-DB; AffectNet used λ = 9), the paper's region
#: model and codebook, and its test-as-validation protocol. Give ``--data`` and, for ImageNet
#: weights, ``--pretrained PATH``.
PRESETS: dict[str, dict[str, Any]] = {
    "small": {},
    "paper": {
        "data": "rafdb:RAF-DB",
        "size": 224,
        "validation": "test",
        "augment": True,
        "regions": "belharbi2024",
        "model": "resnet50",
        "large_maps": True,
        "layers": ("layer4",),
        "lam": 4.0,
        "optimizer": "sgd",
        "lr": 0.002,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "step",
        "step_every": 4,
        "step_gamma": 0.9,
        "min_lr": 1e-7,
        "epochs": 20,
        "batch_size": 224,
        "eval_batch_size": 64,
    },
}


def _problem(error: dict) -> str:
    """``key: message (got value)`` for one pydantic error (the value once)."""
    key = ".".join(str(p) for p in error["loc"]) or "config"
    message = error["msg"].removeprefix("Value error, ")
    shown = repr(error.get("input"))
    return f"{key}: {message}" if shown in message else f"{key}: {message} (got {shown})"


# --- command line --------------------------------------------------------------------------


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field (``lam`` → ``--lam``, booleans also get
    ``--no-…``); flags left out keep the config file's value or the default."""
    group = parser.add_argument_group("training config (override --config values)")
    for name, field in TrainConfig.model_fields.items():
        if name == "version":
            continue
        flag = "--" + name.replace("_", "-")
        options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": field.description}
        annotation = field.annotation
        choices = get_args(annotation) if get_origin(annotation) is Literal else None
        if annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif choices:
            options["choices"] = choices
        elif name == "layers":
            options["metavar"] = "LAYER[,LAYER]"
        else:
            kinds = [k for k in get_args(annotation) or (annotation,) if k is not type(None)]
            options["type"] = kinds[0]
            options["metavar"] = name.upper()
        default = "" if field.default is None else f" (default: {_shown(field.default)})"
        options["help"] = f"{field.description or ''}{default}".strip()
        group.add_argument(flag, dest=f"config_{name}", **options)


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    """The config of ``args``: ``args.config`` (a YAML file), else ``args.preset`` (default
    ``small``), with every ``--flag`` given on the command line applied on top."""
    if getattr(args, "config", None):
        base = TrainConfig.load(args.config)
    else:
        base = TrainConfig.preset(getattr(args, "preset", None) or "small")
    overrides = {
        key.removeprefix("config_"): value
        for key, value in vars(args).items()
        if key.startswith("config_")
    }
    return base.replace(**overrides) if overrides else base
