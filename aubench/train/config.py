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

``method`` picks how the classifier is built and trained (:mod:`aubench.train.model`): ``cam``
(the default: the timm model's own GAP + linear head), or one of the interpretable-by-design
methods ``wildcat``, ``prm``, ``acol``, ``adl``, ``cutmix``, ``tscam``, ``apvit``, each with its
options (the fields named ``<method>_…``; setting one for another method is an error).
``evidence`` says where the heatmaps' AUs come from (:mod:`aubench.faces.evidence_spec`):
``codebook`` (the label's prototype, the default), ``facs`` (each image's coded AUs: the AUs
the synthetic faces were rendered with, CK+'s FACS files), ``detector:PATH`` (an AU detector's
output) or ``hybrid[:PATH]`` (the codebook's AUs weighted by the image's); guided training
aligns with those maps, and each epoch's evaluation scores ATT-COS against them too. These
fields came later: at their defaults they are left out of :meth:`TrainConfig.canonical`, so every
earlier config keeps its hash and its run folder.
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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aubench.faces.evidence_spec import check_evidence
from aubench.io import write_atomic
from aubench.train.options import ALIGN_LOSSES, check_lambda, check_loss_name

#: Bumped whenever a field's meaning changes; configs of another version are refused.
CONFIG_VERSION = 1

#: The training methods (:data:`aubench.train.model.METHODS` implements each).
MethodName = Literal["cam", "wildcat", "prm", "acol", "adl", "cutmix", "tscam", "apvit"]
METHOD_NAMES: tuple[str, ...] = get_args(MethodName)


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
    evidence: str = Field(
        "codebook",
        description="the heatmaps' AUs: codebook (the label's prototype), facs (each image's "
        "coded AUs), detector:PATH (an AU detector's output), hybrid[:PATH] (the codebook's "
        "AUs weighted by the image's)",
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
    # method (fields added later: left out of the hash at their defaults, see _LATER)
    method: MethodName = Field(
        "cam", description="how the classifier is built and trained (aubench.train.model)"
    )
    wildcat_modalities: int = Field(5, ge=1, description="wildcat: maps per class")
    wildcat_kmax: float = Field(0.5, gt=0, le=1, description="wildcat: share of top positions")
    wildcat_kmin: float = Field(
        0.0, ge=0, le=1, description="wildcat: share of bottom positions; 0: the reference's"
    )
    wildcat_alpha: float = Field(0.6, description="wildcat: weight of the bottom positions")
    prm_kernel: int = Field(3, ge=1, description="prm: peak max-pool size (stride 1)")
    acol_threshold: float = Field(0.1, ge=0, le=1, description="acol: erase where map ≥ this")
    acol_width: int = Field(1024, ge=1, description="acol: channels of each branch")
    acol_norm: bool = Field(
        False, description="acol: BatchNorm in the branches (not the reference's; from scratch)"
    )
    adl_drop_rate: float = Field(0.4, ge=0, le=1, description="adl: P(drop mask)")
    adl_threshold: float = Field(0.1, ge=0, le=1, description="adl: zero where a ≥ this·max a")
    adl_layers: tuple[str, ...] = Field(
        ("layer3.0", "layer4.0", "layer4.-1"),
        description="adl: insert after these blocks (STAGE.INDEX, negative from the end)",
    )
    adl_quirk: bool = Field(
        False, description="adl: the reference's shifted pretrained weights and CAM layer"
    )
    cutmix_prob: float = Field(1.0, ge=0, le=1, description="cutmix: P(a batch is mixed)")
    cutmix_beta: float = Field(1.0, gt=0, description="cutmix: Beta(β, β) of the kept area")
    apvit_vit: str = Field("vit_small_patch16_224", description="apvit: timm ViT of the blocks")
    apvit_vit_pretrained: str | None = Field(
        None, description="apvit: the ViT's local weights file or 'hub'"
    )
    apvit_depth: int = Field(8, ge=1, description="apvit: transformer blocks")
    apvit_stride: int = Field(8, ge=1, description="apvit: stride of the CNN stem's map")
    apvit_k: int = Field(160, ge=1, description="apvit: tokens kept by attentive pooling")
    apvit_r: float = Field(0.9, gt=0, le=1, description="apvit: keep rate of pooling blocks")

    @field_validator("loss")
    @classmethod
    def _loss(cls, value: str) -> str:
        return check_loss_name(value)

    @field_validator("lam")
    @classmethod
    def _lam(cls, value: float) -> float:
        return check_lambda(value)

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: str) -> str:
        return check_evidence(value)

    @field_validator("layers", "adl_layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError("give at least one layer (e.g. layer4 or stage:5)")
        return value

    @model_validator(mode="after")
    def _method_options(self) -> TrainConfig:
        for name in _METHOD_OPTIONS:
            owner = name.split("_", 1)[0]
            if owner != self.method and getattr(self, name) != _default(name):
                raise ValueError(
                    f"{name} is an option of method {owner!r}, but the method is "
                    f"{self.method!r}; set method: {owner} or leave {name} out"
                )
        return self

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
        """The config as compact JSON with sorted keys (what the hash is taken of); the fields
        of :data:`_LATER` are left out while at their defaults."""
        values = self.model_dump(mode="json")
        for name in _LATER:
            if getattr(self, name) == _default(name):
                del values[name]
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """12 hex digits of SHA-256 of :meth:`canonical`; stable across runs and machines."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:12]

    def run_name(self) -> str:
        """Default run folder name: ``<model>-<baseline|guided>-<hash>``, with ``-<method>``
        after the model for every method but ``cam``."""
        method = "" if self.method == "cam" else f"-{self.method}"
        return f"{self.model}{method}-{'guided' if self.guided else 'baseline'}-{self.hash()}"

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


#: The options of the training methods: each name starts with the method it configures.
_METHOD_OPTIONS = {name for name in TrainConfig.model_fields if name.split("_")[0] in METHOD_NAMES}
#: Fields added after configs were first hashed: :meth:`TrainConfig.canonical` leaves each out
#: while it holds its default, so the configs written before them keep their hashes.
_LATER = {"method", "evidence", *_METHOD_OPTIONS}


def _default(name: str) -> Any:
    return TrainConfig.model_fields[name].default


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
        elif name in ("layers", "adl_layers"):
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
