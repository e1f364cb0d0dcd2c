"""Models evaluated as they are, never trained: a suite's ``models: [{name, model, checkpoint,
card}]`` entries and ``aubench evaluate --model SPEC``.

Each entry is loaded by :func:`aubench.models.load_model` (``timm:NAME``, ``FILE.py:FACTORY``,
``package.module:FACTORY``, a TorchScript or ``.pt2`` file) with its checkpoint, and described by
its model card (:func:`aubench.models.load_card`). Its cell is scored by the one evaluation loop
of ``aubench run`` (:func:`aubench.bench.evaluate.evaluate_model`), on the module that
:func:`aubench.models.adapt_inputs_outputs` yields: aubench's ImageNet-normalised RGB batches go
in and are converted to the card's channels and statistics, the outputs come back in the
canonical class order. The evaluation config (:func:`eval_config`) takes the suite's data and its
data-related ``train`` settings (``num_classes``, ``val_fraction``, ``regions``, ``codebook``), at
the card's side: images, heatmaps and maps are all at ``input_size``, and the faces are cropped as
the card's ``crop`` says (:mod:`aubench.bench.crops`). Cards must be square: aubench's faces and
AU heatmaps are; a non-square ``input_size`` is refused, naming it.

A TorchScript model takes no forward hooks, so only input-level methods (saliency, integrated
gradients, …) explain it; layer explainers and controls (which read a layer's grid) are refused
in one error naming them (:func:`check_producers`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from aubench.bench.crops import describe_faces, faces_for
from aubench.bench.evaluate import ScoreStore, evaluate_model
from aubench.bench.suite import ExternalModel, Suite
from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD
from aubench.explain import INPUT, get_explainer
from aubench.models import (
    CardError,
    LayerAccessError,
    ModelCard,
    adapt_inputs_outputs,
    check_layer_access,
    describe_support,
    load_card,
    load_model,
    resolve_layers,
    source_of,
    spec_card,
    supports_layers,
)
from aubench.train.config import TrainConfig
from aubench.train.data import open_split

#: ``train`` settings of a suite that decide an evaluated split and its heatmaps.
DATA_FIELDS = ("num_classes", "val_fraction", "regions", "codebook")


def entry_card(entry: ExternalModel) -> ModelCard:
    """The model card of ``entry`` (its file, or its inline keys; else the card its SPEC comes
    with, :func:`~aubench.models.spec_card`; else the defaults).

    Raises :class:`~aubench.models.CardError` for a non-square ``input_size``."""
    keys = entry.card
    if keys is None and entry.model is not None:  # the card a SPEC comes with, if any
        keys = spec_card(entry.model)
    card = load_card(keys)
    height, width = card.input_size
    if height != width:
        raise CardError(
            f"model {entry.name!r}: input_size {height}×{width} is not square; aubench's faces "
            "and AU heatmaps are square, so give a square input_size (and crop or pad to it "
            "inside the model if it needs another shape)"
        )
    return card


def eval_config(suite: Suite, entry: ExternalModel, seed: int) -> TrainConfig:
    """The config ``entry`` is evaluated under: the suite's data and data-related ``train``
    settings (:data:`DATA_FIELDS`), ``seed``, and the card's side as the image size."""
    values = {key: suite.train[key] for key in DATA_FIELDS if key in suite.train}
    values.update(data=suite.data, size=entry_card(entry).input_size[0], seed=seed)
    return TrainConfig.from_dict(values, f"model {entry.name!r}")


def load_entry(entry: ExternalModel, checkpoint: str | None, card: ModelCard) -> nn.Module:
    """``entry``'s model with ``checkpoint`` loaded (a ``timm:`` model without one gets a head
    as wide as the card's classes: random weights, e.g. to try a suite)."""
    assert entry.model is not None
    width = None
    if entry.model.startswith("timm:") and checkpoint is None:
        width = len(card.classes) if card.classes is not None else 7
    return load_model(entry.model, checkpoint, strict=entry.strict, num_classes=width)


@contextlib.contextmanager
def adapted(
    entry: ExternalModel,
    checkpoint: str | None,
    card: ModelCard,
    dataset_classes: int,
    device: Any = "cpu",
) -> Iterator[tuple[nn.Module, nn.Module]]:
    """``(model, module to call)``: ``entry`` loaded on ``device``, and the module taking
    aubench's batches and returning canonical-order scores (see the module doc)."""
    model = load_entry(entry, checkpoint, card).to(device)
    with adapt_inputs_outputs(
        model,
        card,
        source_mean=IMAGENET_MEAN,
        source_std=IMAGENET_STD,
        dataset_classes=dataset_classes,
    ) as net:
        yield model, net


def check_producers(entry: ExternalModel, model: nn.Module, producers: Sequence[str]) -> None:
    """Refuse layer explainers and controls on a model whose layers cannot be captured
    (TorchScript), in one :class:`~aubench.models.LayerAccessError` naming them."""
    layered = [name for name in producers if get_explainer(name).level != INPUT]
    if not layered or supports_layers(model):
        return
    try:
        check_layer_access(model)
    except LayerAccessError as err:
        raise LayerAccessError(
            f"model {entry.name!r}: {', '.join(layered)} need its layers: {err}; or score it "
            "with input-level methods only (--explainers saliency --controls none)"
        ) from None


def evaluate_external(
    entry: ExternalModel,
    checkpoint: str | None,
    config: TrainConfig,
    *,
    settings: Mapping[str, Any],
    device: Any,
    store: ScoreStore,
    shard: tuple[int, int],
    progress: bool,
) -> tuple[dict, dict, dict[str, Any]]:
    """Score ``entry`` with ``checkpoint`` into ``store`` by
    :func:`~aubench.bench.evaluate.evaluate_model` (``settings``: its suite-level keyword
    arguments; the card's ``layers``, when it lists some, replace the suite's). Returns the
    sample arrays, the dataset-level metrics and what the manifest records of the cell."""
    card = entry_card(entry)
    split = open_split(config, settings["split"])
    faces = faces_for(split, card.crop, config.size)
    layers = card.layers or tuple(settings["layers"])
    producers = [*settings["explainers"], *settings["controls"]]
    with adapted(entry, checkpoint, card, split.num_classes, device) as (model, net):
        check_producers(entry, model, producers)
        samples, dataset = evaluate_model(
            net,
            config,
            **{**settings, "layers": layers},
            device=device,
            store=store,
            shard=shard,
            progress=progress,
            faces=faces,
        )
        resolved = resolved_layers(net, layers, settings["explainer_layers"], producers)
    source = source_of(model)
    report = source.report if source is not None else None
    details = {
        "kind": "model",
        "spec": entry.model,
        "checkpoint": checkpoint,
        "form": source.kind if source is not None else None,
        "card": card.model_dump(mode="json"),
        "load_report": None if report is None else str(report),
        "complete": report is None or report.complete,
        "support": describe_support(model),
        "layers": resolved,
        "faces": describe_faces(faces, card.crop, config.size),
    }
    return samples, dataset, details


def resolved_layers(
    model: nn.Module,
    layers: Sequence[str],
    explainer_layers: Mapping[str, Sequence[str]],
    producers: Sequence[str],
) -> list[str]:
    """The module names (``input`` for input-level methods) the producers are scored at."""
    names: dict[str, None] = {}
    for name in producers:
        if get_explainer(name).level == INPUT:
            names[INPUT] = None
        else:
            specs = list(explainer_layers.get(name, layers))
            names.update(dict.fromkeys(resolve_layers(model, specs)))
    return list(names)


def source_files(entry: ExternalModel, checkpoint: str | None) -> list[Path]:
    """The files ``entry``'s scores depend on besides the data: the model file (TorchScript,
    .pt2, a factory's Python file or module), the checkpoint, the card file, the maps."""
    candidates: list[str | None] = [checkpoint, entry.card if isinstance(entry.card, str) else None]
    if entry.maps is not None:
        candidates.append(entry.maps)
    elif entry.model is not None and not entry.model.startswith("timm:"):
        target = entry.model.rpartition(":")[0] if ":" in entry.model else entry.model
        if Path(entry.model).is_file() or target.endswith(".py"):
            candidates.append(entry.model if Path(entry.model).is_file() else target)
        else:
            with contextlib.suppress(ImportError, ValueError):
                spec = importlib.util.find_spec(target)
                candidates.append(spec.origin if spec is not None else None)
    files = []
    for name in filter(None, candidates):
        path = Path(name)
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def source_fingerprint(entry: ExternalModel, checkpoint: str | None) -> str:
    """16 hex digits identifying the content of :func:`source_files` (name, size, mtime of each;
    a missing file counts as missing), so a finished cell is not reused after they change."""
    digest = hashlib.sha256()
    for path in source_files(entry, checkpoint):
        stat = path.stat() if path.exists() else None
        shown = "missing" if stat is None else f"{stat.st_size}:{stat.st_mtime_ns}"
        digest.update(f"{path}={shown};".encode())
    return digest.hexdigest()[:16]
