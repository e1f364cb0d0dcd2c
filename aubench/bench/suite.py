"""Suites: one validated YAML file says what to train, what to explain, where, and how to score.

A suite names the data, the models, the baseline/guided variants (λ, layers, loss), the training
settings shared by every model (any :class:`~aubench.train.config.TrainConfig` field), the
explainers, the layers to score (``explainer_layers`` gives an explainer its own), the metrics,
the controls, the aggregation, the seeds and the evaluation settings. Besides timm names to
train, ``models`` may list models to evaluate as they are, never trained
(:class:`ExternalModel`: a model SPEC with its checkpoint(s) and model card, or a folder or file
of precomputed maps). Built-in suites ship in ``aubench/bench/suites/*.yaml``
(:func:`list_suites`); a path to a YAML file works the same way.
``--set key=value`` overrides any field by its dotted path (``--set train.epochs=2``,
``--set models=[resnet18,resnet50]``, ``--set explainer_layers.cam=[stage:5]``); values are
parsed as YAML. Before anything is trained, :func:`aubench.bench.runner.check_suite` builds each
model untrained and runs every explainer at its layers on one image, so a layer an explainer
cannot explain fails in seconds, not after training.

Errors name the file, the field's dotted path and the bad value, and suggest near matches for
unknown keys, explainers and metrics.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from aubench.train.config import TrainConfig

BUILTIN_SUITES = resources.files("aubench.bench") / "suites"
#: The control explainers every comparison can include (DESIGN: random, centre, generic face).
CONTROLS = ("random", "centre", "generic-face")
#: The variant name of an external model evaluated from one checkpoint (or of given maps).
EVALUATED = "evaluated"
#: Fields added after suites were first written, dumped only when set (see :meth:`Suite.dump`).
_LATER = {"explainer_layers"}


class SuiteError(ValueError):
    """A suite that cannot be used: unknown key, bad value, unknown explainer or metric."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class ExternalModel(_Strict):
    """A model the suite evaluates as it is, never trains: ``model`` (a SPEC of
    :func:`aubench.models.load_model`) with ``checkpoint`` and ``card``, or ``maps`` (a folder or
    file of precomputed maps, :mod:`aubench.bench.precomputed`). Its variants are its
    checkpoints: one (variant :data:`EVALUATED`), or a mapping ``{variant: checkpoint}`` whose
    first entry is the reference the others are tested against (before/after a change)."""

    name: str = Field(description="the model's name in results and reports")
    model: str | None = Field(None, description="timm:NAME, FILE.py:FACTORY, pkg.mod:FACTORY, …")
    maps: str | None = Field(None, description="precomputed maps: a folder, .npz, .pt or Parquet")
    checkpoint: str | dict[str, str] | None = Field(
        None, description="weights file, or {variant: weights file} compared as variants"
    )
    card: str | dict[str, Any] | None = Field(None, description="model card: YAML file or keys")
    strict: bool = Field(True, description="false: load the checkpoint's matching tensors only")
    skip_bad_maps: bool = Field(
        False, description="maps: score the rest when maps are missing or unusable (counted)"
    )

    @field_validator("name")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", value):
            raise ValueError(
                "a model name names files: letters, digits and . _ + - only, e.g. my-net"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ExternalModel:
        if (self.model is None) == (self.maps is None):
            raise ValueError(f"model {self.name!r}: give either model (a SPEC) or maps")
        if self.maps is not None and (self.checkpoint is not None or not self.strict):
            raise ValueError(f"model {self.name!r}: checkpoint and strict apply to a model only")
        if self.model is not None and self.skip_bad_maps:
            raise ValueError(f"model {self.name!r}: skip_bad_maps applies to maps only")
        if isinstance(self.checkpoint, dict) and not self.checkpoint:
            raise ValueError(f"model {self.name!r}: checkpoint: give at least one variant")
        return self

    def variants(self) -> list[tuple[str, str | None]]:
        """``(variant, checkpoint)`` of every evaluation, the reference first."""
        if isinstance(self.checkpoint, dict):
            return list(self.checkpoint.items())
        return [(EVALUATED, self.checkpoint)]


def _entry_kind(value: Any) -> str:
    return "trained" if isinstance(value, str) else "external"


#: A suite's model: a timm name to train, or a model or maps to evaluate as they are.
ModelEntry = Annotated[
    Annotated[str, Tag("trained")] | Annotated[ExternalModel, Tag("external")],
    Discriminator(_entry_kind),
]
#: Union tags in validation error locations, left out of the field paths errors name.
_TAGS = {"trained", "external"}


class Variant(_Strict):
    """One way of training each model: the baseline (``guided: false``) or an AU-guided one."""

    name: str = Field(description="column/legend name, e.g. baseline, guided, lam-8")
    guided: bool = Field(False, description="add the alignment loss")
    lam: float = Field(4.0, ge=0, description="alignment weight λ (guided only)")
    layers: tuple[str, ...] | None = Field(
        None, description="aligned layers; None: the suite's train.layers"
    )
    loss: str = Field("cosine", description="alignment loss")


class Evaluation(_Strict):
    """How the trained models are evaluated."""

    split: Literal["test", "val"] = "test"
    batch_size: int = Field(64, ge=1)
    target: Literal["gt", "pred"] = Field("gt", description="class explained (paper: gt)")
    max_images: int | None = Field(None, ge=1, description="evaluate the first N images only")
    samples_per_class: int = Field(2, ge=0, description="faces per class kept for figures")


class Aggregation(_Strict):
    """How per-image scores become table cells."""

    bootstrap: int = Field(1000, ge=0, description="bootstrap replicates for the 95% CIs")
    fill_undefined: float | None = Field(
        None, description="score for valid samples whose metric is undefined (paper: 0)"
    )


class Suite(_Strict):
    """A whole benchmark: see the module doc; every field has a default but the name."""

    name: str
    description: str = ""
    data: str = Field("synthetic:n=3000", description="dataset spec NAME:PATH or synthetic")
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields shared by every model"
    )
    models: tuple[ModelEntry, ...] = Field(
        ("resnet18",), description="timm names to train, or models to evaluate as they are"
    )
    variants: tuple[Variant, ...] = (
        Variant(name="baseline"),
        Variant(name="guided", guided=True),
    )
    seeds: tuple[int, ...] = (0,)
    explainers: tuple[str, ...] = ("attention", "cam", "gradcam")
    layers: tuple[str, ...] = Field(("stage:5",), description="layers whose maps are scored")
    explainer_layers: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="layers of some explainers instead of `layers` (e.g. cam: [stage:5], "
        "since CAM exists only at the layer feeding the global average pool)",
    )
    metrics: tuple[str, ...] = ("cosine",)
    controls: tuple[str, ...] = Field(
        CONTROLS,
        description="control maps scored beside the methods (random, centre, generic-face)",
    )
    aggregation: Aggregation = Aggregation()
    eval: Evaluation = Evaluation()
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, …")

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, value: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [v.name for v in value]
        if not names:
            raise ValueError("give at least one variant")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"variant names must be unique; repeated: {duplicated}")
        return value

    @field_validator("models", "seeds", "layers")
    @classmethod
    def _non_empty(cls, value: tuple) -> tuple:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, value: tuple) -> tuple:
        names = [m if isinstance(m, str) else m.name for m in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            shown = ", ".join(repr(name) for name in repeated)
            raise ValueError(f"{shown} listed more than once; each entry must be unique")
        return value

    @field_validator("seeds", "layers", "explainers", "metrics", "controls")
    @classmethod
    def _no_duplicates(cls, value: tuple) -> tuple:
        """A repeated model or seed would be evaluated once and counted twice (a "± std over 2
        seeds" of one run); refuse it, naming the value."""
        repeated = sorted({item for item in value if value.count(item) > 1}, key=str)
        if repeated:
            shown = ", ".join(repr(item) for item in repeated)
            raise ValueError(f"{shown} listed more than once; each entry must be unique")
        return value

    @model_validator(mode="after")
    def _names_exist(self) -> Suite:
        from aubench.explain import EXPLAINERS
        from aubench.metrics import METRICS

        _check_names(self.explainers, EXPLAINERS, "explainers")
        _check_names(self.metrics, METRICS, "metrics")
        _check_names(self.controls, CONTROLS, "controls")
        producers = (*self.explainers, *self.controls)
        _check_names(self.explainer_layers, producers, "explainer_layers")
        empty = [name for name, layers in self.explainer_layers.items() if not layers]
        if empty:
            raise ValueError(f"explainer_layers: give at least one layer for {empty}")
        if self.trained_models:  # else the variants are not used
            for variant in self.variants:
                try:
                    self.train_config(self.trained_models[0], variant, self.seeds[0])
                except ValueError as err:
                    raise ValueError(f"train/variants: {err}") from None
            trained = {v.name for v in self.variants}
            for entry in self.external_models:
                clash = sorted(trained & {name for name, _ in entry.variants()})
                if clash:
                    raise ValueError(
                        f"models: {entry.name!r} names its checkpoints {clash} like the suite's "
                        "trained variants; give them other names"
                    )
        return self

    @property
    def trained_models(self) -> tuple[str, ...]:
        """The timm names the suite trains (every variant, every seed)."""
        return tuple(m for m in self.models if isinstance(m, str))

    @property
    def external_models(self) -> tuple[ExternalModel, ...]:
        """The models and maps the suite evaluates as they are."""
        return tuple(m for m in self.models if isinstance(m, ExternalModel))

    def dump(self) -> dict[str, Any]:
        """The resolved suite as JSON-ready data (``suite.json``, the manifest, the hash).

        ``explainer_layers`` is left out while empty, so suites written before the field existed
        keep their hash, their default run folder and their resumable runs.
        """
        return self.model_dump(mode="json", exclude=None if self.explainer_layers else _LATER)

    def layers_of(self, producer: str) -> tuple[str, ...]:
        """The layer specs an explainer or control is scored at."""
        return self.explainer_layers.get(producer, self.layers)

    def train_config(self, model: str, variant: Variant, seed: int) -> TrainConfig:
        """The training config of (model, variant, seed): the suite's data and ``train``
        settings with the variant's alignment settings on top."""
        values = {"data": self.data, **self.train, "model": model, "seed": seed}
        values.update(guided=variant.guided, loss=variant.loss)
        if variant.guided:
            values["lam"] = variant.lam
        if variant.layers is not None:
            values["layers"] = variant.layers
        return TrainConfig.from_dict(values, f"variant {variant.name!r}")


def _check_names(names: Sequence[str], known: Mapping | Sequence, field: str) -> None:
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"{field}: unknown name {name!r}{hint}")


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    return sorted(
        p.name.removesuffix(".yaml") for p in BUILTIN_SUITES.iterdir() if p.name.endswith(".yaml")
    )


def suite_description(name: str) -> str:
    """A built-in suite's description, read from its YAML without validating the suite (which
    would load torch to check its explainers and metrics): what ``aubench list suites`` prints."""
    text = (BUILTIN_SUITES / f"{name}.yaml").read_text()
    return " ".join(str(yaml.safe_load(text).get("description", "")).split())


def load_suite(name_or_path: str, overrides: Sequence[str] = ()) -> Suite:
    """The suite ``name_or_path`` (a built-in name or a YAML file) with ``key=value`` overrides.

    Raises :class:`SuiteError` naming the source, the field path and the problem.
    """
    builtin = BUILTIN_SUITES / f"{name_or_path}.yaml"
    if builtin.is_file():
        source, text = f"suite {name_or_path!r}", builtin.read_text()
    elif Path(name_or_path).is_file():
        source, text = str(name_or_path), Path(name_or_path).read_text()
    else:
        close = difflib.get_close_matches(name_or_path, list_suites(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SuiteError(
            f"no built-in suite or file named {name_or_path!r}{hint} "
            f"(built-ins: {', '.join(list_suites())})"
        )
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise SuiteError(f"{source}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise SuiteError(f"{source}: expected a mapping of suite fields")
    for override in overrides:
        _apply_override(values, override, source)
    return suite_from_dict(values, source)


def suite_from_dict(values: dict[str, Any], source: str = "suite") -> Suite:
    """Validate ``values`` as a :class:`Suite`; errors name ``source`` and the field path."""
    try:
        return Suite(**values)
    except ValidationError as err:
        raise SuiteError(f"{source}: {_describe(err)}") from None


def _describe(err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in _TAGS)
        path = ".".join(str(p) for p in loc) or "suite"
        if e["type"] == "extra_forbidden":
            problems.append(_unknown_key(loc))
            continue
        message = e["msg"].removeprefix("Value error, ")
        if not loc:  # a whole-suite check: the message names the field itself
            problems.append(message)
        else:
            problems.append(f"{path}: {message} (got {e.get('input')!r})")
    return "; ".join(problems)


def _unknown_key(loc: tuple) -> str:
    model: type[BaseModel] = Suite
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        candidates = _models_in(getattr(field, "annotation", None))
        if candidates:
            model = candidates[0]
    key = str(loc[-1])
    close = difflib.get_close_matches(key, list(model.model_fields), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    path = ".".join(str(p) for p in loc)
    return f"{path}: unknown field {key!r}{hint}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds, at any depth (``tuple[Variant, ...]``, unions,
    ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _apply_override(values: dict[str, Any], override: str, source: str) -> None:
    """Set ``values[a][b] = parsed`` for ``override`` = ``a.b=VALUE`` (VALUE parsed as YAML)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise SuiteError(f"--set {override!r}: expected KEY=VALUE, e.g. train.epochs=2")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise SuiteError(f"--set {override!r}: value is not valid YAML ({err})") from None
    parts = key.strip().split(".")
    target = values
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise SuiteError(f"--set {override!r}: {part!r} of {source} is not a mapping")
        target = child
    target[parts[-1]] = value
