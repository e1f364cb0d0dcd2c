"""One streaming evaluation pass of a trained model over one split: every explainer × layer ×
metric of a suite, batched on the chosen device.

Per batch: the eval transform's images (resized, ImageNet-normalised), their AU heatmaps and
validity reasons rebuilt from the landmarks (:func:`add_protocol_heatmaps`: the training
config's region model and codebook), one forward for the predictions, one
:func:`aubench.explain.explain` call for all methods and controls (the gradient family and
attention share one forward and one backward pass), each map post-processed by its explainer's
steps under the evaluation protocol (:func:`aubench.explain.postprocess.protocol_postprocess`;
``aubench``: ReLU where the method defines one, bilinear resize to the heatmap size, per-map
min-max), then every metric of the suite on the batch, each kind through its scorer
(:mod:`aubench.metrics.kinds`), which names its columns; each kind scores every (method, layer)
of the batch in one call (the map metrics of all producers share one sort of their stacked
maps, and the heatmap side is computed once), and the batch's scores reach the host in one
transfer.

Per-image scores stream to a wide Parquet file, one row group per batch (:class:`ScoreStore`),
so memory holds one batch of maps whatever the dataset size; the per-class aggregation with
bootstrap CIs (:func:`aubench.metrics.aggregate_many`, every score column at once) then reads
the score columns (scalars), and the per-image long table is written from the same file one
row group at a time. A few faces per class are kept, with their heatmaps and maps, for the
report's figures.

Under protocol ``belharbi2024`` (shared/reference/paper-evaluation-protocol.md) the heatmaps
are the reference code's (region model ``belharbi2024-reference`` at the evaluated image size,
the config's codebook, by default the reference's), the maps are post-processed the reference's
way, and aubench's validity fixes are kept and counted: each image's ``vanished`` flag (its
AU regions reach the image but vanish in the 28×28 sampling: the reference would score an
all-zero map as valid) is stored beside its invalid reason, and :func:`fix_counts` counts it
with the faces whose landmarks are not finite (the reference raises on them).

With per-image AU ``evidence`` (not ``codebook``; :mod:`aubench.faces.evidence_spec`) every
sample also carries its evidence (:class:`~aubench.data.au_evidence.EvidenceFaces`), each batch
gets the evidence's heatmaps beside the codebook's (drawn from the same transformed landmarks),
and the same post-processed maps are scored against both in the same pass: the metrics that
compare a map with the heatmap (kinds :data:`EVIDENCE_KINDS`) once more against the evidence
maps, under their name with :data:`EVIDENCE_SUFFIX` (``cosine@evidence``). An image's validity
for those columns is its evidence map's (``evidence_reason`` in the wide file; reasons
``no-present-aus``, ``no-region-aus``, ``no-landmarks``, ``outside``), so they are aggregated
over the images whose evidence map is valid. :func:`evidence_summary` tells a cell's evidence:
what did not match, the AUs without a region, and how each class's AUs agree with its prototype.

A metric of kind ``cue`` (``cue_energy_share``) needs the synthetic faces: each sample then
carries its shortcut patch's corner (:data:`~aubench.data.shortcut.CUE_KEY`), the batch's
cue masks are built from the corners at the maps' size in one step, the wide file records which
images have a patch (:data:`CUE_COLUMN`), and the rows of those metrics for faces without one
have reason :data:`NO_CUE_REASON`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from aubench.bench.causal_scores import counterfactual_source
from aubench.bench.results import CLASSIFIER, RESULT_COLUMNS
from aubench.data.au_evidence import EVIDENCE_KEY, NO_EVIDENCE, EvidenceFaces, split_evidence
from aubench.data.batch import add_heatmaps
from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD
from aubench.data.shortcut import CUE_KEY, NO_CUE, cue_region_masks, synthetic_faces
from aubench.data.transforms import EvalTransform, TransformedDataset
from aubench.explain import INPUT, Explainer, explain, explain_batch, get_explainer
from aubench.explain.postprocess import minmax, protocol_postprocess
from aubench.faces.belharbi2024_reference import reference_validity
from aubench.faces.codebook import EXPRESSIONS
from aubench.faces.evidence import FACS_AUS, AUEvidence, prototype_agreement
from aubench.faces.evidence_spec import parse_evidence
from aubench.faces.heatmaps import InvalidReason, count_reasons, per_au_heatmaps
from aubench.faces.landmarks import face_halves, rescale_landmarks
from aubench.faces.region_registry import get_region_model
from aubench.metrics import (
    METRICS,
    BatchContext,
    LayerMaps,
    MapFunction,
    Scorer,
    aggregate_many,
    get_metric,
    scorers,
)
from aubench.models import resolve_layers
from aubench.train.checkpoint import load_checkpoint
from aubench.train.config import TrainConfig
from aubench.train.data import open_split
from aubench.train.model import build_model

#: How control explainers are named in results tables.
CONTROL_PREFIX = "control:"
UNDEFINED = "undefined"
#: The ``pred`` of images scored without a model (precomputed maps): no accuracy rows, no
#: per-image ``pred`` rows.
NO_PREDICTION = -1
#: The evaluation protocol of the reference code, and the region model of its heatmaps.
REFERENCE_PROTOCOL = "belharbi2024"
REFERENCE_REGIONS = "belharbi2024-reference"
#: The suffix of a metric's columns scored against each image's AU evidence (``cosine@evidence``)
#: and the kinds of metric so scored: those comparing a map with the heatmap.
EVIDENCE_SUFFIX = "@evidence"
EVIDENCE_KINDS = ("map", "dataset")
#: The wide score file's column of the evidence maps' invalid reasons.
EVIDENCE_REASON = "evidence_reason"
#: The sample key of the side of a face's one-sided AUs (synthetic faces with ``one_sided``).
SIDE_KEY = "au_side"
#: The wide score file's column of whether each image carries a shortcut cue (written when a
#: metric of kind ``cue`` is scored), and the per-image reason of those metrics' rows of the
#: valid images without one (excluded from their means, counted).
CUE_COLUMN = "cue"
NO_CUE_REASON = "no-cue"


def method_label(name: str, controls: Sequence[str]) -> str:
    """The results-table name of explainer ``name`` (controls get the ``control:`` prefix, and
    ``generic-face`` is shown as ``control:generic``)."""
    if name not in controls:
        return name
    return CONTROL_PREFIX + name.removesuffix("-face")


def load_trained(run_dir: Path, device: torch.device) -> tuple[torch.nn.Module, TrainConfig, int]:
    """The best checkpoint of training run ``run_dir``: (model in eval mode, config, classes)."""
    state = load_checkpoint(run_dir / "best.pt", map_location=device)
    config = TrainConfig.from_dict(state["config"], str(run_dir / "best.pt"))
    num_classes = state["model"][_head_bias_key(state["model"])].shape[0]
    model = build_model(config.replace(pretrained=None), num_classes)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, num_classes


def heatmap_regions(config: TrainConfig, protocol: str) -> str:
    """The region model of the heatmaps a cell is scored against: the config's, or the
    reference's (:data:`REFERENCE_REGIONS`) under protocol ``belharbi2024``."""
    return REFERENCE_REGIONS if protocol == REFERENCE_PROTOCOL else config.regions


def heatmap_codebook(config: TrainConfig, protocol: str) -> str:
    """The codebook of the heatmaps a cell is scored against (its prototypes): the config's, or
    the region model's own (:func:`heatmap_regions`)."""
    return config.codebook or get_region_model(heatmap_regions(config, protocol)).default_codebook


def add_protocol_heatmaps(
    batch: dict, config: TrainConfig, protocol: str, evidence: str = "codebook"
) -> dict:
    """:func:`~aubench.data.batch.add_heatmaps` with the protocol's region model
    (:func:`heatmap_regions`), the config's codebook and ``evidence`` (per-image evidence adds
    its maps); under ``belharbi2024`` also
    ``vanished`` (B,) bool: the faces the reference counts valid (an AU region paints a pixel
    of the image, :func:`~aubench.faces.belharbi2024_reference.reference_validity`) that are
    invalid here (their regions vanish in the 28×28 sampling)."""
    regions = heatmap_regions(config, protocol)
    batch = add_heatmaps(batch, config.codebook, regions, evidence)
    if protocol == REFERENCE_PROTOCOL:
        size = tuple(batch["image"].shape[-2:])
        drawn = reference_validity(batch["landmarks"], batch["label"], size, config.codebook)
        batch["vanished"] = drawn & ~batch["valid"]
    return batch


def _head_bias_key(weights: dict) -> str:
    return [key for key, value in weights.items() if key.endswith("bias") and value.dim() == 1][-1]


class ScoreStore:
    """Per-image scores of one cell, streamed to a wide Parquet file: one row per image with
    ``index``, ``id``, ``label``, ``reason``, ``pred`` (``vanished`` too under protocol
    ``belharbi2024``, :func:`add_protocol_heatmaps`; :data:`EVIDENCE_REASON` with per-image
    evidence) and one float32 column per score, named
    ``method|layer|metric``; one row group per batch. Memory holds one batch; a batch's scores
    stay on their device until :meth:`flush` copies them to the host in one transfer."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | None = None
        self._batch: dict[str, np.ndarray] = {}
        self._scores: dict[str, torch.Tensor] = {}

    def begin(
        self,
        index,
        ids,
        labels: torch.Tensor,
        reasons: torch.Tensor,
        preds: torch.Tensor,
        vanished: torch.Tensor | None = None,
        evidence_reasons: torch.Tensor | None = None,
        cues: torch.Tensor | None = None,
    ) -> None:
        """Start a batch with its images' positions in the split, ids, labels, invalid-reason
        codes, predictions and (when given) vanished flags, evidence maps' reasons and whether
        each image carries a shortcut cue (:data:`CUE_COLUMN`)."""
        self._batch = {
            "index": np.asarray(index, dtype=np.int64),
            "id": np.asarray(ids, dtype=object),
            "label": labels.cpu().numpy().astype(np.int16),
            "reason": reasons.cpu().numpy().astype(np.int16),
            "pred": preds.cpu().numpy().astype(np.int16),
        }
        if vanished is not None:
            self._batch["vanished"] = vanished.cpu().numpy().astype(bool)
        if evidence_reasons is not None:
            self._batch[EVIDENCE_REASON] = evidence_reasons.cpu().numpy().astype(np.int16)
        if cues is not None:
            self._batch[CUE_COLUMN] = cues.cpu().numpy().astype(bool)

    def add(self, key: tuple[str, str, str], scores: torch.Tensor) -> None:
        """Add the (B,) scores of column ``key`` = (method, layer, metric) to the batch."""
        self._scores["|".join(key)] = scores.detach().float()

    def flush(self) -> None:
        """Write the batch as one row group."""
        if self._scores:
            host = torch.stack(list(self._scores.values())).cpu().numpy()
            self._batch.update(zip(self._scores, host, strict=True))
            self._scores = {}
        table = pa.table(self._batch)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)

    def close(self) -> Path:
        if self._writer is not None:
            self._writer.close()
        return self.path


def merge_stores(parts: Sequence[Path], out: Path) -> Path:
    """Concatenate wide score files (one per rank) into ``out``, one row group at a time."""
    writer = None
    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches():
            table = pa.Table.from_batches([batch])
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
    if writer is not None:
        writer.close()
    return out


def score_keys(path: Path) -> list[tuple[str, str, str]]:
    """The (method, layer, metric) columns of a wide score file, in file order."""
    names = pq.ParquetFile(path).schema_arrow.names
    return [tuple(name.split("|")) for name in names if "|" in name]


def evaluate_model(
    model: torch.nn.Module,
    config: TrainConfig,
    *,
    split: str,
    explainers: Sequence[str],
    controls: Sequence[str],
    layers: Sequence[str],
    metrics: Sequence[str],
    explainer_layers: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 64,
    target: str = "gt",
    max_images: int | None = None,
    samples_per_class: int = 2,
    device: torch.device | str = "cpu",
    progress: bool = True,
    store: ScoreStore,
    shard: tuple[int, int] = (0, 1),
    faces: Dataset | None = None,
    protocol: str = "aubench",
    evidence: str = "codebook",
) -> tuple[dict[str, np.ndarray], dict[tuple[str, str, str], float]]:
    """Score ``model`` on ``split`` of ``config.data`` into ``store``; returns the sample arrays
    (see :mod:`aubench.bench.results` for the sample keys) and the dataset-level metrics
    (PxAP: ``(method, layer, metric) -> value``, reduced over ranks by torchmetrics).
    Every explainer and control is scored at ``layers``, or at its own entry of
    ``explainer_layers``; producers sharing layers share one forward and backward pass.
    Metrics of scope ``model`` (AU occlusion: the model and the AU regions only) are scored
    once per batch, under the ``classifier`` method and layer "".
    ``shard`` = (rank, world) scores the images at positions rank, rank + world, … only
    (sharded evaluation under torchrun). ``faces``: the split to score, images in [0, 1] at
    ``config.size`` (default ``open_split(config, split)``; :mod:`aubench.bench.crops` gives
    faces cropped as a model card says). Input-level methods (saliency, …) are scored at the
    pseudo-layer ``input``. ``protocol``: ``aubench`` or ``belharbi2024`` (module doc).
    ``evidence``: also score the maps against each image's AU evidence (``facs``,
    ``detector:PATH``, ``hybrid[:PATH]``; module doc), read for ``split`` of ``config.data``."""
    device = torch.device(device)
    per_image = parse_evidence(evidence).per_image
    opened = open_split(config, split) if faces is None or per_image else None
    faces = opened if faces is None else faces
    plain = faces  # what the AU counterfactuals render again (metric kinds causal, dose)
    if per_image:  # read for the split the faces are made from, position by position
        faces = EvidenceFaces(faces, split_evidence(opened, evidence))
    cued = [name for name in metrics if get_metric(name).kind == "cue"]
    if cued:  # each sample carries its cue's corner (the synthetic faces only)
        synthetic_faces(faces, f"metric {', '.join(cued)} (the shortcut cue's pixels)")
    lateral = [name for name in metrics if get_metric(name).kind == "lateral"]
    if lateral:  # each sample carries the side of its one-sided AUs
        _require_one_sided(faces, lateral)
    data = TransformedDataset(faces, EvalTransform(config.size), config.seed)
    count = len(data) if max_images is None else min(max_images, len(data))
    rank, world = shard
    positions = range(rank, count, world)
    loader = DataLoader(Subset(data, positions), batch_size=batch_size, shuffle=False)
    # one instance per method for the whole pass: the random control's generator advances
    producers = [*explainers, *controls]
    methods = [get_explainer(name) for name in producers]
    own = explainer_layers or {}
    groups: dict[tuple[str, ...], list[Explainer]] = {}  # resolved layers → methods
    for name, method in zip(producers, methods, strict=True):
        specs = list(own.get(name, layers))
        resolved = (INPUT,) if method.level == INPUT else tuple(resolve_layers(model, specs))
        groups.setdefault(resolved, []).append(method)
    steps = {m.name: protocol_postprocess(m, config.size, protocol) for m in methods}
    regions = heatmap_regions(config, protocol)
    counterfactual_of = counterfactual_source(
        metrics, plain, config, model, groups, methods, steps, device=device, batch_size=batch_size
    )
    # one set of scorers per (method, layer), created up front: every rank computes the same
    # dataset-level accumulators, in the same order, whatever its share of the images
    per_map = {
        (method_label(m.name, controls), layer): scorers(metrics, "map", device)
        for names, group in groups.items()
        for m in group
        for layer in names
    }
    per_batch = scorers(metrics, "model", device)
    compared = [name for name in metrics if get_metric(name).kind in EVIDENCE_KINDS]
    per_evidence = {key: scorers(compared, "map", device) for key in per_map} if per_image else {}
    scores = store
    samples = _SampleKeeper(samples_per_class, len(EXPRESSIONS))
    bar = tqdm(loader, desc=f"evaluate {split}", unit="batch", disable=not progress)
    for number, batch in enumerate(bar):
        moved = {key: batch[key].to(device) for key in ("image", "label", "landmarks")}
        if per_image:
            moved[EVIDENCE_KEY] = batch[EVIDENCE_KEY].to(device)
        if cued:
            moved[CUE_KEY] = batch[CUE_KEY].to(device)
        if lateral:
            moved[SIDE_KEY] = batch[SIDE_KEY].to(device)
        batch = add_protocol_heatmaps({**batch, **moved}, config, protocol, evidence)
        images, labels, landmarks = batch["image"], batch["label"], batch["landmarks"]
        heatmaps, valid = batch["heatmap"], batch["valid"]
        preds = None if target == "gt" else _predict(model, images)
        targets = labels if preds is None else preds
        explained = {}
        for names, group in groups.items():
            result = explain_batch(model, images, targets, list(names), group, landmarks=landmarks)
            explained |= result.maps
            if preds is None and result.logits is not None:  # the single pass's forward
                preds = result.logits.argmax(1)
        preds = _predict(model, images) if preds is None else preds
        maps = {m.name: explained[m.name] for m in methods}  # the suite's order, not the groups'
        index = positions[number * batch_size : number * batch_size + len(labels)]
        reasons, vanished = batch["invalid_reason"], batch.get("vanished")
        against = batch.get(EVIDENCE_REASON)
        corners = batch.get(CUE_KEY)
        cues = None if corners is None else corners != NO_CUE
        scores.begin(index, batch["id"], labels, reasons, preds, vanished, against, cues)
        kept = samples.select(labels)
        if kept.numel():
            shown = batch["evidence_heatmap"][kept] if per_image else None
            samples.add_faces(images[kept], heatmaps[kept], labels[kept], batch["id"], kept, shown)
        per_au = partial(
            per_au_heatmaps, landmarks, labels, codebook=config.codebook, regions=regions
        )
        cue_masks = None if corners is None else partial(cue_region_masks, corners)
        sides = None
        if lateral:
            sides = partial(_face_sides, landmarks, batch[SIDE_KEY], tuple(images.shape[-2:]))
        context = BatchContext(
            model, images, targets, heatmaps, valid, per_au, cue_masks, face_sides=sides
        )
        if counterfactual_of is not None:  # the batch's AU counterfactuals, computed on use
            context = replace(context, counterfactuals=counterfactual_of(index, targets))
        keys, produced = [], []
        for method, per_layer in maps.items():
            label = method_label(method, controls)
            for layer, raw in per_layer.items():
                normalised = steps[method](raw.float())
                if kept.numel():
                    samples.add_map(label, layer, normalised[kept])
                keys.append((label, layer))
                produced.append(
                    LayerMaps(
                        normalised, _recompute(method, layer, steps[method]), method in controls
                    )
                )
        columns = _score(per_map, keys, context, produced)
        for (label, layer), scored in zip(keys, columns, strict=True):
            for column, values in scored.items():
                scores.add((label, layer, column), values)
        if per_image:  # the same maps against each image's evidence map
            compare = BatchContext(
                model, images, targets, batch["evidence_heatmap"], batch["evidence_valid"], per_au
            )
            columns = _score(per_evidence, keys, compare, produced)
            for (label, layer), scored in zip(keys, columns, strict=True):
                for column, values in scored.items():
                    scores.add((label, layer, column + EVIDENCE_SUFFIX), values)
        for scorer in per_batch:  # properties of the model, not of a map
            for column, values in scorer.update(context, None).items():
                scores.add((CLASSIFIER, "", column), values)
        scores.flush()
    store.close()
    dataset = {
        (label, layer, column + suffix): value
        for suffix, kept in (("", per_map), (EVIDENCE_SUFFIX, per_evidence))
        for (label, layer), group in kept.items()
        for scorer in group
        for column, value in scorer.compute().items()
    }
    return samples.arrays(), dataset


def _score(
    per_map: Mapping[tuple[str, str], list[Scorer]],
    keys: Sequence[tuple[str, str]],
    context: BatchContext,
    produced: Sequence[LayerMaps],
) -> list[dict[str, torch.Tensor]]:
    """The columns of every (method, layer) of ``keys`` (its maps in ``produced``) on one batch:
    each kind scores them all at once (map metrics: one call)."""
    columns: list[dict[str, torch.Tensor]] = [{} for _ in keys]
    for kind, first in enumerate(per_map[keys[0]] if keys else []):
        peers = [per_map[key][kind] for key in keys]
        for mine, scored in zip(
            columns, type(first).update_together(peers, context, produced), strict=True
        ):
            mine |= scored
    return columns


def _predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B,) predicted classes from a gradient-free forward (the model in its eval mode)."""
    with torch.no_grad():
        return model(images).argmax(1)


def _require_one_sided(faces: Dataset, metrics: Sequence[str]) -> None:
    """``ValueError`` naming ``metrics`` unless ``faces`` are synthetic faces drawn with one-sided
    AUs (their samples carry :data:`SIDE_KEY`)."""
    what = f"metric {', '.join(metrics)} (faces whose AUs lie on a known side)"
    if not synthetic_faces(faces, what).config.one_sided:
        raise ValueError(
            f"{what} needs the synthetic faces drawn with one_sided=true (and 8 classes, for "
            "contempt): data synthetic:…,one_sided=true"
        )


def _face_sides(
    landmarks: torch.Tensor, sides: torch.Tensor, image_size: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """(B, H, W) bool at ``size``: the half of each face showing its one-sided AUs
    (:func:`~aubench.faces.landmarks.face_halves` of the landmarks, given in ``image_size``
    pixels, moved to ``size``)."""
    scale_y, scale_x = size[0] / image_size[0], size[1] / image_size[1]
    return face_halves(rescale_landmarks(landmarks, scale_x, scale_y), size, sides)


def _recompute(
    method: str, layer: str, step: Callable[[torch.Tensor], torch.Tensor]
) -> MapFunction:
    """``(model, images, targets) -> maps``: a fresh ``method`` explainer's maps at ``layer`` on
    any model, post-processed by ``step`` (what sanity checks compare)."""

    def maps_of(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor):
        explainer = get_explainer(method)
        raw = explain(model, images, targets, [layer], [explainer])[explainer.name][layer]
        return step(raw.float())

    return maps_of


class _SampleKeeper:
    """The first ``per_class`` faces of each class seen, with their heatmaps and maps."""

    def __init__(self, per_class: int, num_classes: int) -> None:
        self.per_class = per_class
        self.counts = np.zeros(num_classes + 1, dtype=int)
        self.faces: dict[str, list[np.ndarray]] = {
            "images": [],
            "heatmaps": [],
            "labels": [],
            "ids": [],
        }
        self.maps: dict[str, list[np.ndarray]] = {}

    def select(self, labels: torch.Tensor) -> torch.Tensor:
        picked = []
        for i, label in enumerate(labels.tolist()):
            if self.counts[label] < self.per_class:
                self.counts[label] += 1
                picked.append(i)
        return torch.tensor(picked, dtype=torch.long, device=labels.device)

    def add_faces(self, images, heatmaps, labels, ids, kept, evidence=None) -> None:
        """Keep faces ``kept`` of a batch with their heatmaps (and ``evidence`` maps, when
        scored against per-image evidence: ``evidence_heatmaps``)."""
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb = ((images * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        self.faces["images"].append(rgb.permute(0, 2, 3, 1).cpu().numpy())
        self.faces["heatmaps"].append(heatmaps.half().cpu().numpy())
        self.faces["labels"].append(labels.cpu().numpy())
        self.faces["ids"].append(np.array([ids[i] for i in kept.tolist()]))
        if evidence is not None:
            self.faces.setdefault("evidence_heatmaps", []).append(evidence.half().cpu().numpy())

    def add_map(self, method: str, layer: str, maps: torch.Tensor) -> None:
        """Keep ``maps`` (K, H, W), min-maxed for the figures (a protocol's maps may not be:
        ``belharbi2024``'s attention; maps already min-maxed are unchanged, bit for bit)."""
        shown = minmax()(maps)
        self.maps.setdefault(f"map|{method}|{layer}", []).append(shown.half().cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.faces["images"]:
            return {}
        out = {key: np.concatenate(parts) for key, parts in self.faces.items()}
        out.update({key: np.concatenate(parts) for key, parts in self.maps.items()})
        return out


def write_long_per_image(wide: Path, cell: dict, out: Path) -> None:
    """Convert a wide score file to the per-image long table (columns of
    :data:`~aubench.bench.results.PER_IMAGE_COLUMNS`), one row group at a time, atomically; the
    rows of a metric scored against per-image evidence carry the evidence map's reason."""
    reason_names = np.array([r.name.lower().replace("_", "-") for r in InvalidReason])
    keys = score_keys(wide)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for batch in pq.ParquetFile(wide).iter_batches():
            part = batch.to_pandas()
            base = reason_names[part.reason.to_numpy()]
            against = base
            if EVIDENCE_REASON in part:  # the reasons of the columns against evidence maps
                against = reason_names[part[EVIDENCE_REASON].to_numpy()]
            if CUE_COLUMN in part:  # the cue metrics' rows of valid images without a cue
                none = (base == "valid") & ~part[CUE_COLUMN].to_numpy()
                no_cue = np.where(none, NO_CUE_REASON, base)
            pred = part.pred.to_numpy().astype(float)
            known = bool((pred != NO_PREDICTION).all())
            frames = [_frame(cell, part, CLASSIFIER, "", "pred", pred, base)] if known else []
            for method, layer, metric in keys:
                value = part[f"{method}|{layer}|{metric}"].to_numpy()
                shown = against if metric.endswith(EVIDENCE_SUFFIX) else base
                if CUE_COLUMN in part and metric in METRICS and METRICS[metric].kind == "cue":
                    shown = no_cue
                reason = np.where((shown == "valid") & ~np.isfinite(value), UNDEFINED, shown)
                frames.append(_frame(cell, part, method, layer, metric, value, reason))
            table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _frame(cell, part: pd.DataFrame, method, layer, metric, values, reasons) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{key: cell[key] for key in ("model", "variant", "seed", "split")},
            "id": part.id.to_numpy(),
            "label": part.label.to_numpy().astype(np.int64),
            "method": method,
            "layer": layer,
            "metric": metric,
            "value": values.astype(np.float64),
            "reason": reasons,
        }
    )


def aggregate_cell(
    wide: Path,
    cell: dict,
    n_boot: int,
    fill_undefined: float | None,
    seed: int = 0,
    *,
    empty_class: float | None = None,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """The results rows of one cell from its wide score file: accuracy, then every (method,
    layer, metric) per class, macro over non-neutral classes and image-level mean, with
    bootstrap CIs, all columns aggregated at once (:func:`aubench.metrics.aggregate_many`:
    columns with the same scored images share their bootstrap draws).

    ``empty_class`` (the reference code: −1): the value of each non-neutral class of the
    dataset's ``num_classes`` (default: every class of :data:`EXPRESSIONS`) with no scored
    image, averaged into the macro; each such class gets a row of that value with ``n`` 0 and
    no CI, which flags the macro it entered. Columns scored against per-image evidence
    (:data:`EVIDENCE_SUFFIX`) are aggregated over the images whose evidence map is valid."""
    scores = pq.ParquetFile(wide)
    against = [EVIDENCE_REASON] if EVIDENCE_REASON in scores.schema_arrow.names else []
    head = scores.read(columns=["index", "label", "reason", "pred", *against])
    order = np.argsort(head["index"].to_numpy(), kind="stable")  # shards merge in any order
    labels = head["label"].to_numpy().astype(np.int64)[order]
    reasons = head["reason"].to_numpy().astype(np.int64)[order]
    preds = head["pred"].to_numpy().astype(np.int64)[order]
    evidence_reasons = head[against[0]].to_numpy().astype(np.int64)[order] if against else None
    num_classes = len(EXPRESSIONS) if num_classes is None else num_classes
    rows = []

    def emit(method, layer, metric, cls, value, ci=(np.nan, np.nan), n=0, excluded=0) -> None:
        rows.append(_row(cell, method, layer, metric, cls, value, *ci, n, excluded))

    correct = (preds == labels).astype(float) * 100.0
    predicted = bool((preds != NO_PREDICTION).all())  # precomputed maps: no accuracy rows
    if predicted:
        emit(CLASSIFIER, "", "accuracy", "all", correct.mean(), n=len(correct))
    for c in range(num_classes) if predicted else ():
        mask = labels == c
        if mask.any():
            emit(CLASSIFIER, "", "accuracy", EXPRESSIONS[c], correct[mask].mean(), n=mask.sum())
    keys = score_keys(wide)
    table = scores.read(columns=["|".join(key) for key in keys])
    values = np.stack([column.to_numpy() for column in table.columns]) if keys else None
    results = [None] * len(keys)
    for codes, evidence in ((reasons, False), (evidence_reasons, True)):
        members = [k for k, key in enumerate(keys) if key[2].endswith(EVIDENCE_SUFFIX) == evidence]
        if not members:
            continue
        aggregated = aggregate_many(
            torch.from_numpy(values[members][:, order]),
            torch.from_numpy(labels).long(),
            torch.from_numpy(codes == 0),
            torch.from_numpy(codes).long(),
            num_classes=num_classes,
            fill_undefined=fill_undefined,
            empty_class=empty_class,
            n_boot=n_boot,
            seed=seed,
        )
        for k, result in zip(members, aggregated, strict=True):
            results[k] = result
    for (method, layer, metric), result in zip(keys, results, strict=True):
        excluded = sum(result.excluded.values())
        for c in range(num_classes):
            if result.per_class_n[c] or c in result.empty_classes:
                ci = tuple(result.per_class_ci[c].tolist())
                n = int(result.per_class_n[c])
                emit(method, layer, metric, EXPRESSIONS[c], float(result.per_class[c]), ci, n)
        emit(
            method, layer, metric, "macro", result.macro, result.macro_ci, result.n_scored, excluded
        )
        emit(
            method,
            layer,
            metric,
            "all",
            result.image_mean,
            result.image_ci,
            result.n_scored,
            excluded,
        )
    return pd.DataFrame(rows)


def fix_counts(wide: Path) -> dict[str, int]:
    """What aubench's validity fixes changed in a cell, from its wide score file written under
    protocol ``belharbi2024`` (paper-evaluation-protocol.md items 6–7): ``images``;
    ``no_landmarks``, the faces with non-finite landmarks (invalid; the reference raises on
    them); ``vanished``, the faces whose AU regions vanish in the 28×28 sampling (invalid; the
    reference scores their all-zero maps as valid)."""
    table = pq.ParquetFile(wide).read(columns=["reason", "vanished"])
    reasons = table["reason"].to_numpy()
    return {
        "images": len(reasons),
        "no_landmarks": int((reasons == InvalidReason.NO_LANDMARKS).sum()),
        "vanished": int(table["vanished"].to_numpy().sum()),
    }


def evidence_summary(
    wide: Path, config: TrainConfig, split: str, evidence: str, protocol: str = "aubench"
) -> dict[str, Any]:
    """What a cell's per-image AU evidence was (JSON-ready), from its wide score file and the
    evidence read again for ``split`` of ``config.data``:

    - ``evidence``: the setting; ``source``: where it came from (``synthetic``, ``ckplus``,
      ``openface``, …); ``images``: the images scored;
    - ``no_evidence``: of them, those no row of the evidence matched (absent AUs: invalid
      ``no_present_aus``); ``unmatched``: reason → count of the evidence's keys that fit no
      image of the split or several, or repeat one (:meth:`EvidenceTable.match
      <aubench.data.au_evidence.EvidenceTable.match>`), with ``unmatched_examples``;
      ``skipped_rows``: reason → count of the rows its reader could not use;
    - ``invalid``: reason → count of the scored images whose evidence map is invalid
      (``no_present_aus``, ``no_region_aus``, ``no_landmarks``, ``outside``);
    - ``unregioned_aus``: ``AU<k>`` → how many scored images show AU k, which aubench has no
      region for (not drawn);
    - ``codebook`` and ``agreement``: per class, how the AUs the images show (before a
      ``hybrid`` weighting) agree with the class's prototype in the cell's codebook
      (:func:`~aubench.faces.evidence.prototype_agreement`: exact matches, Jaccard, per-AU
      frequency).
    """
    table = pq.ParquetFile(wide).read(columns=["index", "label", EVIDENCE_REASON])
    index = table["index"].to_numpy().astype(np.int64)
    labels = torch.from_numpy(table["label"].to_numpy().astype(np.int64))
    codes = torch.from_numpy(table[EVIDENCE_REASON].to_numpy().astype(np.int64))
    found = split_evidence(open_split(config, split), evidence)
    shown = AUEvidence(FACS_AUS, torch.from_numpy(found.vectors(index)))
    codebook = heatmap_codebook(config, protocol)
    unmatched = {k: v for k, v in found.unmatched.counts.items() if k != NO_EVIDENCE}
    skipped = found.table.skipped if found.table is not None else None
    return {
        "evidence": evidence,
        "source": found.source,
        "images": len(index),
        "no_evidence": found.missing(index),
        "unmatched": unmatched,
        "unmatched_examples": {k: found.unmatched.examples.get(k, []) for k in unmatched},
        "skipped_rows": dict(skipped.counts) if skipped is not None else {},
        "invalid": count_reasons(codes),
        "unregioned_aus": {f"AU{au}": n for au, n in sorted(found.unregioned(index).items())},
        "codebook": codebook,
        "agreement": prototype_agreement(shown, labels, codebook),
    }


def count_valid(wide: Path, column: str = "reason") -> int:
    """How many images of a wide score file have a valid heatmap (``column``: its reasons;
    :data:`EVIDENCE_REASON`: the evidence maps', 0 when it has none)."""
    file = pq.ParquetFile(wide)
    if column not in file.schema_arrow.names:
        return 0
    return int((file.read(columns=[column])[column].to_numpy() == 0).sum())


def dataset_rows(values: dict, cell: dict, n_valid: int, n_evidence: int = 0) -> pd.DataFrame:
    """Results rows (class ``all``, no CI) of dataset-level metrics such as PxAP (``n``: the
    images with a valid heatmap, ``n_evidence`` for those scored against per-image evidence)."""
    rows = [
        _row(
            cell,
            method,
            layer,
            metric,
            "all",
            value,
            np.nan,
            np.nan,
            n_evidence if metric.endswith(EVIDENCE_SUFFIX) else n_valid,
            0,
        )
        for (method, layer, metric), value in values.items()
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _row(cell, method, layer, metric, cls, value, low, high, n, excluded) -> dict:
    return {
        **{key: cell[key] for key in ("suite", "model", "variant", "seed", "split")},
        "method": method,
        "layer": layer,
        "metric": metric,
        "class": cls,
        "value": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(n),
        "n_excluded": int(excluded),
    }
