"""Model cards: what a model expects as input and what its outputs mean.

A card is a YAML file (or a mapping, or command-line flags of the same names that override it)
with these keys, fixed so that scripts can rely on them::

    input_size: 64       # side in px, or [H, W]
    channels: 1          # 1 = grey, 3 = RGB
    mean: [0.5]          # on [0, 1] pixels, per channel (one value: every channel);
    std: [0.5]           #   0.5 / 0.5 gives [-1, 1]; leave both out: the dataset's own statistics
    classes: [angry, disgust, fear, happy, sad, surprise, neutral]   # the model's output order
    layers: [layers.add_4]   # layers to explain: module names, feature:N, stage:N
    crop: align          # align (aubench's eye-centre alignment to input_size) | as-is
    output: logits       # logits | probabilities

Every key is optional; the defaults describe an aubench-trained timm model (224 px RGB, the
dataset's normalisation, the canonical class order, the explainers' default layers, aligned
crops, logits). Class names are matched to the canonical expressions by name, case-insensitively,
with the usual synonyms (:data:`CLASS_SYNONYMS`); :meth:`ModelCard.output_map` reorders a model's
outputs into a dataset's canonical order.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aubench.faces.codebook import EXPRESSIONS

#: Accepted class names → canonical label id (index into :data:`EXPRESSIONS`).
CLASS_SYNONYMS: dict[str, int] = {
    **{name: index for index, name in enumerate(EXPRESSIONS)},
    "happy": 1,
    "surprised": 2,
    "fearful": 3,
    "angry": 4,
    "disgusted": 5,
    "sad": 6,
    "contemptuous": 7,
}


class CardError(ValueError):
    """A model card that cannot be used (unknown key, bad value, unknown class name)."""


def canonical_class(name: str) -> int:
    """The canonical label id of class name ``name`` (synonyms and any case accepted).

    Raises ``ValueError`` naming ``name`` and listing the accepted names.
    """
    key = str(name).strip().lower()
    if key in CLASS_SYNONYMS:
        return CLASS_SYNONYMS[key]
    close = difflib.get_close_matches(key, list(CLASS_SYNONYMS), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown class name {name!r}{hint} (accepted: {', '.join(CLASS_SYNONYMS)})")


class ModelCard(BaseModel):
    """What a model expects and means (keys and defaults: the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: tuple[int, int] = (224, 224)
    channels: Literal[1, 3] = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None
    layers: tuple[str, ...] = ()
    crop: Literal["align", "as-is"] = "align"
    output: Literal["logits", "probabilities"] = "logits"

    @field_validator("input_size", mode="before")
    @classmethod
    def _side_or_pair(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1:
            raise ValueError("sides must be ≥ 1 px")
        return value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return (value,) if isinstance(value, int | float) else value

    @field_validator("mean", "std")
    @classmethod
    def _per_channel(
        cls, value: tuple[float, ...] | None, info: ValidationInfo
    ) -> tuple[float, ...] | None:
        channels = info.data.get("channels")
        if value is None or channels is None:
            return value
        if len(value) not in (1, channels):
            raise ValueError(f"expected 1 or {channels} values (channels: {channels})")
        if info.field_name == "std" and min(value) <= 0:
            raise ValueError("every std must be > 0")
        return value * channels if len(value) == 1 else value

    @model_validator(mode="after")
    def _both_or_neither(self) -> ModelCard:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give mean and std together (or neither: the dataset's own)")
        return self

    @field_validator("classes", "layers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return (
            [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, str)
            else value
        )

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("list the model's classes in its output order (or leave the key out)")
        seen: dict[int, str] = {}
        for name in value:
            index = canonical_class(name)
            if index in seen:
                raise ValueError(f"{seen[index]!r} and {name!r} are the same class")
            seen[index] = name
        return value

    def output_map(self, dataset_classes: int) -> tuple[int, ...]:
        """For each dataset class 0 … ``dataset_classes`` − 1 (canonical order), the position of
        its score in the model's outputs: ``outputs[:, output_map(K)]`` is in canonical order.

        Model classes the dataset lacks (contempt on a 7-class dataset) are dropped. A dataset
        class the model lacks is a ``ValueError`` naming it. ``classes: None`` means the model's
        outputs are the dataset's classes in canonical order.
        """
        if self.classes is None:
            return tuple(range(dataset_classes))
        positions = {canonical_class(name): k for k, name in enumerate(self.classes)}
        missing = [EXPRESSIONS[c] for c in range(dataset_classes) if c not in positions]
        if missing:
            raise ValueError(
                f"the model card's classes ({', '.join(self.classes)}) lack {', '.join(missing)}, "
                f"which the dataset has ({dataset_classes} classes: "
                f"{', '.join(EXPRESSIONS[:dataset_classes])}); every dataset class needs a score"
            )
        return tuple(positions[c] for c in range(dataset_classes))


def load_card(source: str | Path | Mapping | None = None, **overrides: Any) -> ModelCard:
    """The card in YAML file ``source`` (or mapping, or the defaults for None), with ``overrides``
    (the command-line flags) replacing its keys; overrides whose value is None are not applied.

    Raises ``FileNotFoundError`` for a missing file and :class:`CardError` naming the file (or
    the flag) and the key for invalid YAML, unknown keys (with near matches) and bad values.
    """
    name = "model card"
    if source is None:
        values: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        values = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"model card {path} does not exist")
        name = f"model card {path}"
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise CardError(f"{name}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise CardError(f"{name}: expected a mapping of card keys, got {type(values).__name__}")
    flags = {key: value for key, value in overrides.items() if value is not None}
    origin = {key: f"{name}: key {key!r}" for key in values}
    origin.update({key: f"flag {key}" for key in flags})
    values.update(flags)
    for key in values:
        if key not in ModelCard.model_fields:
            close = difflib.get_close_matches(str(key), list(ModelCard.model_fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CardError(
                f"{origin[key]}: unknown card key{hint} (keys: {', '.join(ModelCard.model_fields)})"
            )
    try:
        return ModelCard(**values)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            message = error["msg"].removeprefix("Value error, ")
            if not error["loc"]:  # a whole-card check: the message names the keys
                problems.append(f"{name}: {message}")
                continue
            key = str(error["loc"][0])
            problems.append(f"{origin[key]}: {message} (got {values[key]!r})")
        raise CardError("; ".join(problems)) from None
