"""Suites: one validated YAML file says what to train, what to explain, where, and how to score.

A suite names the data, the models, the baseline/guided variants (λ, layers, loss, and training
settings of their own: ``train: {evidence: facs}`` aligns with each image's AUs), the training
settings shared by every model (any :class:`~aubench.train.config.TrainConfig` field), the
explainers, the layers to score (``explainer_layers`` gives an explainer its own), the metrics,
the controls, the aggregation, the seeds, the evaluation settings and the evaluation
``protocol`` (``aubench``, or ``belharbi2024``: the reference code's heatmaps, map
post-processing and undefined scores → 0; README "The paper's evaluation protocol"), and the
per-image AU ``evidence`` the maps are also scored against (README "Per-image AU evidence").
Besides timm names to train, ``models`` may list models to evaluate as they are, never trained
(:class:`ExternalModel`: a model SPEC with its checkpoint(s) and model card, or a folder or file
of precomputed maps). Built-in suites ship in ``aubench/bench/suites/*.yaml``
(:func:`list_suites`); a path to a YAML file works the same way.
``--set key=value`` overrides any field by its dotted path (``--set train.epochs=2``,
``--set models=[resnet18,resnet50]``, ``--set explainer_layers.cam=[stage:5]``); values are
parsed as YAML. Before anything is trained, :func:`aubench.bench.runner.check_suite` builds each
model untrained and runs every explainer at its layers on one image, so a layer an explainer
cannot explain fails in seconds, not after training.

``methods`` lists the training methods (:data:`aubench.train.model.METHODS`; default ``[cam]``):
each is trained on each of the suite's ``models`` (or on its own ``model``, e.g. a ViT for
``tscam``) × variants × seeds, cached like any model. Cells of ``cam`` are scored with the suite's
explainers; the cells of every other method with that method's own map
(:meth:`~aubench.train.model.Method.explained_by`) at its layer, the controls beside it.
``pretrained`` gives ImageNet weights per timm model (``{resnet50: FILE, "*": hub}``). A suite
file may define ``presets``: named field overrides (``aubench run --preset NAME``,
:class:`Preset`), such as ``cam-methods``' ``paper``.

Errors name the file, the field's dotted path and the bad value, and suggest near matches for
unknown keys, explainers and metrics.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

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

from aubench.faces.evidence_spec import check_evidence
from aubench.train.config import METHOD_NAMES, PRESETS, TrainConfig

BUILTIN_SUITES = resources.files("aubench.bench") / "suites"
#: The control explainers every comparison can include (DESIGN: random, centre, generic face).
CONTROLS = ("random", "centre", "generic-face")
#: The variant name of an external model evaluated from one checkpoint (or of given maps).
EVALUATED = "evaluated"
#: Fields added after suites were first written (dotted paths), dumped only when they differ
#: from their default (see :meth:`Suite.dump`).
_LATER = (
    "explainer_layers",
    "protocol",
    "aggregation.empty_class",
    "methods",
    "pretrained",
    "evidence",
)
#: The evaluation protocols (:func:`aubench.explain.postprocess.protocol_postprocess`): aubench's
#: own, and the reference code's (shared/reference/paper-evaluation-protocol.md).
Protocol = Literal["aubench", "belharbi2024"]


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
#: TrainConfig fields a method entry's ``train`` cannot set: the entry and the cell set them.
_CELL_FIELDS = ("method", "model", "seed", "data")


class MethodEntry(_Strict):
    """A training method of the suite (``methods``; a plain name is ``{name: NAME}``): ``name``
    trained on each of the suite's trained ``models``, or on its own ``model`` only (a ViT for
    ``tscam``), with ``train`` (its ``<method>_…`` options, aligned ``layers``, …) on top of the
    suite's ``train``."""

    name: str = Field(description="a TrainConfig method: cam, wildcat, prm, acol, adl, cutmix, …")
    model: str | None = Field(None, description="its own timm model; None: the suite's models")
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields of this method's models only"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METHOD_NAMES:
            raise ValueError(_unknown(value, METHOD_NAMES, "method"))
        return value

    @field_validator("train")
    @classmethod
    def _method_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        fixed = [key for key in _CELL_FIELDS if key in value]
        if fixed:
            raise ValueError(
                f"{fixed[0]!r} is set by the entry (name, model) or the suite, not by its train"
            )
        return value

    def label(self, model: str) -> str:
        """The name of this method's model trained on ``model`` in cells, results and reports:
        ``model`` itself for ``cam`` (so CAM cells keep their names), else ``<model>-<name>``
        (as :meth:`~aubench.train.config.TrainConfig.run_name`)."""
        return model if self.name == "cam" else f"{model}-{self.name}"


class Training(NamedTuple):
    """One model the suite trains (every variant and seed): its ``label`` (its name in cells and
    results, :meth:`MethodEntry.label`), timm ``model``, method ``entry``, and ``field``, the
    entry's dotted path (``methods.3``) for error messages."""

    label: str
    model: str
    entry: MethodEntry
    field: str

    @property
    def where(self) -> str:
        """How errors of this training name their source: ``train/variants`` for the suite's own
        CAM models, else its method entry (``methods.3 (wildcat on resnet10t)``)."""
        if self.entry == MethodEntry(name="cam"):
            return "train/variants"
        return f"{self.field} ({self.entry.name} on {self.model})"


class Preset(_Strict):
    """A named set of overrides of a suite file's fields (``presets: {NAME: …}`` in the YAML,
    ``aubench run --preset NAME``), applied before ``--set``. ``train_preset`` starts ``train``
    from a :data:`~aubench.train.config.PRESETS` entry (its fields but ``data`` and ``model``,
    over the suite's ``train``); ``set`` maps dotted field paths to values; ``needs`` maps the
    fields the preset cannot run without (``data``, ``pretrained``) to how to give them: a run
    whose overrides do not set them is refused."""

    description: str = ""
    needs: dict[str, str] = Field(default_factory=dict)
    train_preset: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)

    @field_validator("train_preset")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(_unknown(value, PRESETS, "TrainConfig preset"))
        return value


#: Variant fields a variant's ``train`` cannot set: the variant's own fields set them.
_VARIANT_FIELDS = ("guided", "lam", "layers", "loss")
#: TrainConfig fields a variant's ``train`` cannot set: the suite and the cell set them (a
#: variant may set ``data``: what its models train on).
_VARIANT_CELL_FIELDS = tuple(key for key in _CELL_FIELDS if key != "data")


class Variant(_Strict):
    """One way of training each model: the baseline (``guided: false``) or an AU-guided one,
    with ``train``: TrainConfig fields of this variant's models only (``{evidence: facs}``:
    aligned with each image's own AUs instead of the codebook's; ``{data: SPEC}``: trained on
    other data, e.g. ``synthetic:n=1500,shortcut=0.9``, while every cell is still evaluated on
    the suite's ``data``, as in the ``shortcut`` suite)."""

    name: str = Field(description="column/legend name, e.g. baseline, guided, lam-8")
    guided: bool = Field(False, description="add the alignment loss")
    lam: float = Field(4.0, ge=0, description="alignment weight λ (guided only)")
    layers: tuple[str, ...] | None = Field(
        None, description="aligned layers; None: the suite's train.layers"
    )
    loss: str = Field("cosine", description="alignment loss")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields of this variant only, over the suite's and its method's "
        "train (e.g. evidence: facs; data: the data its models train on, the cells being "
        "evaluated on the suite's data)",
    )

    @field_validator("train")
    @classmethod
    def _variant_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in (*_VARIANT_FIELDS, *_VARIANT_CELL_FIELDS):
            if key in value:
                where = (
                    f"the variant itself ({key}: …)"
                    if key in _VARIANT_FIELDS
                    else "the suite (data, models, methods, seeds)"
                )
                raise ValueError(f"{key!r} is set by {where}, not by the variant's train")
        return value


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
        None,
        description="score for valid samples whose metric is undefined (paper: 0; the default "
        "under protocol belharbi2024)",
    )
    empty_class: float | None = Field(
        None,
        description="value of a non-neutral class with no scored image, averaged into the "
        "macro (the reference code: -1; its rows are flagged); None leaves the class out",
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
    methods: tuple[MethodEntry, ...] = Field(
        default_factory=lambda: (MethodEntry(name="cam"),),
        description="training methods, each trained on the models × variants × seeds: a name "
        "(cam, wildcat, …) or {name, model (its own), train (its own settings)}",
    )
    pretrained: dict[str, str] = Field(
        default_factory=dict,
        description="ImageNet weights of the trained models: {timm name: FILE or hub}, '*' for "
        "every other model (fills the configs' pretrained and apvit_vit_pretrained)",
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
    protocol: Protocol = Field(
        "aubench",
        description="evaluation protocol: aubench, or belharbi2024 (the reference code's "
        "heatmaps, post-processing and undefined scores → 0)",
    )
    evidence: str = Field(
        "codebook",
        description="also score the maps against each image's AU evidence (metrics "
        "<name>@evidence): facs, detector:PATH, hybrid[:PATH]; codebook: the codebook only",
    )

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: str) -> str:
        return check_evidence(value)

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, values: Any) -> Any:
        """Under protocol ``belharbi2024`` an undefined score counts 0 (the reference's
        ``nan_to_num``) unless ``aggregation.fill_undefined`` is given."""
        if not isinstance(values, dict) or values.get("protocol") != "belharbi2024":
            return values
        aggregation = values.get("aggregation", {})
        if isinstance(aggregation, Aggregation):
            if "fill_undefined" not in aggregation.model_fields_set:
                aggregation = aggregation.model_copy(update={"fill_undefined": 0.0})
        elif isinstance(aggregation, dict):
            aggregation = {"fill_undefined": 0.0, **aggregation}
        return {**values, "aggregation": aggregation}

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

    @field_validator("methods", mode="before")
    @classmethod
    def _method_names(cls, value: Any) -> Any:
        """A plain name in ``methods`` is the entry ``{name: NAME}``."""
        if isinstance(value, list | tuple):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("models", "methods", "seeds", "layers")
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
        self._check_trainings()
        given_maps = [entry.name for entry in self.external_models if entry.maps is not None]
        if self.evidence != "codebook" and given_maps:
            raise ValueError(
                f"evidence {self.evidence!r}: precomputed maps ({', '.join(given_maps)}) are "
                "scored against the codebook only; score a model for evidence scores"
            )
        if self.trainings:  # else the variants are not used
            trained = {v.name for v in self.variants}
            for entry in self.external_models:
                clash = sorted(trained & {name for name, _ in entry.variants()})
                if clash:
                    raise ValueError(
                        f"models: {entry.name!r} names its checkpoints {clash} like the suite's "
                        "trained variants; give them other names"
                    )
        return self

    def _check_trainings(self) -> None:
        """Every model the suite trains has a valid config in every variant, a name of its own,
        and the weights ``pretrained`` names belong to a model it trains."""
        if "method" in self.train:
            raise ValueError(
                "train.method: list the training methods in methods (e.g. methods: [cam, "
                "wildcat]), each with its options in its own train"
            )
        for training in self.trainings:
            for variant in self.variants:
                try:
                    self.train_config(training.model, variant, self.seeds[0], training.entry)
                except ValueError as err:
                    raise ValueError(f"{training.where}: {_suite_hint(err)}") from None
        labels = [t.label for t in self.trainings] + [e.name for e in self.external_models]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(
                f"methods: {', '.join(map(repr, repeated))} would name two models (a method "
                "listed twice, or a model given as it is under that name); each must be unique"
            )
        if self.pretrained and self.train.get("pretrained") is not None:
            raise ValueError(
                "pretrained: give ImageNet weights per model (pretrained) or for every model "
                "(train.pretrained), not both"
            )
        trained = {t.model for t in self.trainings}
        trained |= {self._apvit_vit(t.entry) for t in self.trainings if t.entry.name == "apvit"}
        unknown = sorted(set(self.pretrained) - trained - {"*"})
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(trained), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"pretrained: the suite trains no model {unknown[0]!r}{hint} (it trains "
                f"{', '.join(sorted(trained))}; '*' is every other)"
            )

    def _apvit_vit(self, entry: MethodEntry) -> str:
        """The timm ViT whose blocks an ``apvit`` entry's models use."""
        options = {**self.train, **entry.train}
        return options.get("apvit_vit", TrainConfig.model_fields["apvit_vit"].default)

    @property
    def trainings(self) -> tuple[Training, ...]:
        """Every model the suite trains, each in every variant and seed, in ``methods`` order:
        an entry on its own ``model``, else on each trained model of ``models`` (for the default
        ``methods: [cam]``: the trained models themselves, in order)."""
        return tuple(
            Training(entry.label(model), model, entry, f"methods.{index}")
            for index, entry in enumerate(self.methods)
            for model in ((entry.model,) if entry.model else self.trained_models)
        )

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

        The fields of :data:`_LATER` (``explainer_layers``, ``protocol``,
        ``aggregation.empty_class``, ``methods``, ``pretrained``, ``evidence``) and a
        variant's ``train`` are left out while they hold their default, so suites written
        before they existed keep their hash, their default run folder and their resumable runs.
        """
        data = self.model_dump(mode="json")
        for variant in data["variants"]:
            if not variant["train"]:
                del variant["train"]
        for path in _LATER:
            *parents, key = path.split(".")
            holder, owner = data, self
            for part in parents:
                holder, owner = holder[part], getattr(owner, part)
            default = type(owner).model_fields[key].get_default(call_default_factory=True)
            if getattr(owner, key) == default:
                del holder[key]
        return data

    def layers_of(self, producer: str) -> tuple[str, ...]:
        """The layer specs an explainer or control is scored at."""
        return self.explainer_layers.get(producer, self.layers)

    def train_config(
        self, model: str, variant: Variant, seed: int, method: MethodEntry | None = None
    ) -> TrainConfig:
        """The training config of (model, variant, seed) trained by ``method`` (default
        ``cam``): the suite's data and ``train`` settings, the method entry's ``train`` on top,
        then the variant's ``train`` and alignment settings, and weights from ``pretrained``
        where no ``train`` gives them."""
        values = {"data": self.data, **self.train, "model": model, "seed": seed}
        if method is not None:
            values.update(method.train, method=method.name)
        values.update(variant.train)
        values.update(guided=variant.guided, loss=variant.loss)
        if variant.guided:
            values["lam"] = variant.lam
        if variant.layers is not None:
            values["layers"] = variant.layers
        if self.pretrained:
            wanted = {"pretrained": model}
            if values.get("method") == "apvit":  # its ViT's blocks have weights of their own
                wanted["apvit_vit_pretrained"] = self._apvit_vit(method)
            for field, name in wanted.items():
                weights = self.pretrained.get(name, self.pretrained.get("*"))
                if values.get(field) is None and weights is not None:
                    values[field] = weights
        return TrainConfig.from_dict(values, f"variant {variant.name!r}")


def _suite_hint(err: ValueError) -> str:
    """``err``'s message, with where a suite takes a method's options when it misplaced one."""
    message = str(err)
    if "is an option of method" in message:
        message += " (in a suite: in its methods entry, e.g. {name: wildcat, train: {…}})"
    return message


def _check_names(names: Sequence[str], known: Mapping | Sequence, field: str) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"{field}: {_unknown(name, known)}")


def _unknown(name: str, known: Mapping | Sequence, what: str = "name") -> str:
    """``unknown <what> 'NAME'; did you mean …?`` (the near matches among ``known``)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint}"


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    return sorted(
        p.name.removesuffix(".yaml") for p in BUILTIN_SUITES.iterdir() if p.name.endswith(".yaml")
    )


def suite_description(name: str) -> str:
    """A built-in suite's description, read from its YAML without validating the suite (which
    would load torch to check its explainers and metrics), with its presets' names: what
    ``aubench list suites`` prints."""
    values = yaml.safe_load((BUILTIN_SUITES / f"{name}.yaml").read_text())
    text = " ".join(str(values.get("description", "")).split())
    presets = values.get("presets") or {}
    return f"{text} Presets (--preset): {', '.join(presets)}." if presets else text


def load_suite(
    name_or_path: str, overrides: Sequence[str] = (), preset: str | None = None
) -> Suite:
    """The suite ``name_or_path`` (a built-in name or a YAML file), with its preset ``preset``
    (:class:`Preset`) and then the ``key=value`` overrides applied.

    Raises :class:`SuiteError` naming the source, the field path and the problem (a preset
    whose ``needs`` the overrides do not set: what to give).
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
    presets = values.pop("presets", None) or {}
    if preset is not None:
        where = f"{source}, preset {preset!r}"
        _apply_preset(values, _preset(presets, preset, source), overrides, where)
    for override in overrides:
        _apply_override(values, override, source)
    return suite_from_dict(values, source)


def _preset(presets: Any, name: str, source: str) -> Preset:
    """Preset ``name`` of a suite file's ``presets`` mapping, validated."""
    if not isinstance(presets, dict) or name not in presets:
        known = ", ".join(presets) if isinstance(presets, dict) and presets else "none"
        raise SuiteError(f"{source} has no preset {name!r} (its presets: {known})")
    try:
        return Preset(**(presets[name] or {}))
    except (TypeError, ValidationError) as err:
        problem = _describe(err) if isinstance(err, ValidationError) else str(err)
        raise SuiteError(f"{source}: presets.{name}: {problem}") from None


def _apply_preset(
    values: dict[str, Any], preset: Preset, overrides: Sequence[str], where: str
) -> None:
    """Apply ``preset`` (named ``where`` in errors) to a suite file's ``values``, refusing a run
    whose ``overrides`` do not set what the preset ``needs``."""
    given = {override.partition("=")[0].strip().split(".")[0] for override in overrides}
    missing = [field for field in preset.needs if field not in given]
    if missing:
        how = "; ".join(preset.needs[field] for field in missing)
        raise SuiteError(f"{where} needs {' and '.join(missing)}: give {how}")
    if preset.train_preset is not None:
        base = {k: v for k, v in PRESETS[preset.train_preset].items() if k not in _CELL_FIELDS}
        values["train"] = {**(values.get("train") or {}), **base}
    for key, value in preset.set.items():
        _set_path(values, key, value, f"{where}: {key!r}")


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
    _set_path(values, key, value, f"--set {override!r}", source)


def _set_path(
    values: dict[str, Any], key: str, value: Any, what: str, source: str = "the suite"
) -> None:
    """Set ``values[a][b] = value`` for the dotted ``key`` ``a.b`` (``what`` names the setting
    in errors)."""
    parts = key.strip().split(".")
    target = values
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise SuiteError(f"{what}: {part!r} of {source} is not a mapping")
        target = child
    target[parts[-1]] = value
