"""Metric kinds: how each kind of metric is scored on a batch, and what its score columns are
called and mean.

An evaluation loop calls every kind the same way. It builds a :class:`BatchContext` per batch
and a :class:`LayerMaps` per (map producer, layer); :func:`scorers` gives one :class:`Scorer`
per kind present in a suite's metrics, whose ``update`` returns named per-image columns (B,)
and whose ``compute`` returns named dataset-level values once every batch is in.
:meth:`Scorer.update_together` updates the scorers of one kind of every (producer, layer) of a
batch at once, so that a kind can share work across the producers.

- ``map``: ``fn(maps, heatmaps, valid) -> (B,)``, the whole family in one :func:`score_maps`
  call for every producer of the batch (one shared :class:`~aubench.metrics.base.MapBatch` of
  their stacked maps); one column each, its name.
- ``model``: ``fn(model, images, maps, targets, valid) -> (B,)``; one column each, its name. At
  scope ``model`` (AU occlusion) the heatmaps stand in for the maps: scored once per batch.
- ``per_au``: ``fn(maps, regions (B, K, H, W), valid) -> (B, K)``; a column ``<prefix>:AU<k>``
  for each AU k of the codebook (label ``AU<k>``, shown by k).
- ``sanity``: ``fn(model, images, targets, maps_of, valid) ->``
  :class:`~aubench.metrics.sanity.Randomisation`; a column ``<prefix>:<module>`` per randomised
  depth, top first (label ``<module>``, shown in that order); none for control maps.
- ``dataset``: ``fn() ->`` a streaming accumulator updated with ``(maps, heatmaps, valid)``; no
  per-image column, one value per metric at the end.
- ``cue``: ``fn(maps, cue_masks (B, H, W) bool, valid) -> (B,)``, the pixels of each image's
  shortcut cue (the synthetic faces', :attr:`BatchContext.cue_masks`) in place of the heatmaps;
  one column each, its name; every producer of a batch in one call.
- ``causal``: ``fn(energy (B, A), effects (B, A), present (B, A)) -> (B,)``: each map's energy
  share per AU against the AUs' causal effects on the model (the synthetic faces' AU
  counterfactuals, :attr:`BatchContext.counterfactuals`); one column each, its name; every
  producer of a batch shares the batch's effects.
- ``mirror``: ``fn(maps, maps_of_flipped (B, H, W), valid) -> (B,)``: the same producer's maps
  of the horizontally flipped images (:attr:`LayerMaps.recompute`); one column each, its name;
  none for control maps (they ignore the face, as for ``sanity``).
- ``lateral``: ``fn(maps, region (B, H, W) bool, side (B, H, W) bool, valid) -> (B,)``: each
  face's AU region on both sides (its label's AUs' regions at ≥ 0.5 of their peak,
  :attr:`BatchContext.au_regions`) and the half of the face that shows its one-sided AUs
  (:attr:`BatchContext.face_sides`); one column each; every producer of a batch in one call.
- ``dose``: ``fn(energies (S, B, D), logits (S, B, D)) -> (B, D)``: each AU drawn at S
  intensity scales; a column ``<prefix>:AU<k>`` per AU k the faces can show, plus one named
  ``<prefix>`` holding each image's mean over its AUs (``dose_slope``, ``dose_slope:AU6``).

``<prefix>`` is the metric's ``column_prefix`` (default its name): ``au_energy``,
``sanity_spearman``. :func:`describe_column` gives the metadata of any column name the bench
writes (``accuracy`` included), so readers of results never parse names themselves.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch

from aubench.metrics.base import METRICS, Metric, get_metric, score_maps
from aubench.metrics.sanity import MapFunction

__all__ = [
    "ACCURACY",
    "COUNTERFACTUAL_KINDS",
    "SCORERS",
    "BatchContext",
    "Column",
    "Counterfactuals",
    "LayerMaps",
    "Scorer",
    "derived_column",
    "describe_column",
    "scorers",
]

#: ``size (H, W) -> (regions (B, K, H, W), aus)``: each AU's region map at that size
#: (as :func:`aubench.faces.heatmaps.per_au_heatmaps`).
AURegions = Callable[[tuple[int, int]], tuple[torch.Tensor, Sequence[int]]]
#: ``size (H, W) -> (B, H, W) bool``: each image's shortcut-cue pixels at that size (all False
#: where none was drawn; :func:`aubench.data.shortcut.cue_region_masks`).
CueMasks = Callable[[tuple[int, int]], torch.Tensor]


#: ``size (H, W) -> (B, H, W) bool``: the half of each face showing its one-sided AUs at that
#: size (all False for faces drawn on both sides; :func:`aubench.faces.landmarks.face_halves`).
FaceSides = Callable[[tuple[int, int]], torch.Tensor]
#: A region map's share of its peak from which a pixel belongs to an AU's region (``lateral``).
REGION_LEVEL = 0.5

#: The kinds scored on AU counterfactuals (:attr:`BatchContext.counterfactuals`).
COUNTERFACTUAL_KINDS = ("causal", "dose")


class Counterfactuals(Protocol):
    """A batch's AU counterfactuals (the synthetic faces': :mod:`aubench.bench.causal_scores`),
    as kinds ``causal`` and ``dose`` read them; each result is computed once per batch.

    ``aus``: the D AUs of the ``dose`` columns, by number.
    """

    aus: tuple[int, ...]

    def effects(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) the target logit's drop when each AU alone is removed (NaN where the face
        lacks it) and (B, A) bool the AUs each face shows."""
        ...

    def energy(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """(P, B, A) each of P producers' (B, H, W) maps' energy share in each AU's region,
        columns as :meth:`effects`."""
        ...

    def dose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, S, B, D) each producer's map energy in AU ``aus[d]``'s region and (S, B, D) the
        target logit as that AU is drawn at each of S scales (NaN where the face lacks it),
        producers in the order the scorers of the batch are updated."""
        ...


@dataclass(frozen=True)
class BatchContext:
    """What every scorer may read of one batch.

    ``model`` in eval mode; ``images`` (B, C, H, W) its inputs; ``targets`` (B,) the explained
    classes; ``heatmaps`` (B, H, W) the AU heatmaps; ``valid`` (B,) bool; ``au_regions`` the
    per-AU regions of the batch at a given size; ``cue_masks`` its images' shortcut-cue pixels
    at a given size (None: the data has no known cue, e.g. not the synthetic faces);
    ``counterfactuals`` its AU counterfactuals (None: not the synthetic faces); ``face_sides``
    the half of each face showing its one-sided AUs at a given size (None: the faces carry no
    ``au_side``, i.e. not the synthetic faces with ``one_sided``).
    """

    model: torch.nn.Module
    images: torch.Tensor
    targets: torch.Tensor
    heatmaps: torch.Tensor
    valid: torch.Tensor
    au_regions: AURegions
    cue_masks: CueMasks | None = None
    counterfactuals: Counterfactuals | None = None
    face_sides: FaceSides | None = None


@dataclass(frozen=True)
class LayerMaps:
    """The maps of one (producer, layer): ``maps`` (B, H, W) post-processed to the heatmap size;
    ``recompute`` ``(model, images, targets) -> maps`` the same producer, layer and steps on
    another model (sanity checks); ``control`` whether the producer ignores the model."""

    maps: torch.Tensor
    recompute: MapFunction
    control: bool = False


@dataclass(frozen=True)
class Column:
    """One named score column of the results, with the metadata tables and checks read.

    ``name`` as written (``cosine``, ``au_energy:AU6``, ``sanity_spearman:layer4.1``);
    ``metric`` the registered metric computing it (``per_au_energy``; ``accuracy`` for itself);
    ``family`` the name its metric's columns share (``au_energy``; a plain column's own name);
    ``label`` its name among them (``AU6``, ``layer4.1``); ``order`` the sort key among them
    (per-AU: the AU number; otherwise 0, the order written being the order shown: the cascade,
    top first); ``kind`` and the direction, range and category of ``metric``.
    """

    name: str
    metric: str
    family: str
    label: str
    order: int
    kind: str
    higher_is_better: bool
    range: tuple[float, float]
    category: str

    @classmethod
    def of(cls, metric: Metric, label: str | None = None) -> Column:
        """The column of ``metric`` itself (``label`` None), or its column ``label``."""
        family = metric.name if label is None else metric.column_prefix or metric.name
        return cls(
            name=metric.name if label is None else f"{family}:{label}",
            metric=metric.name,
            family=family,
            label=metric.name if label is None else label,
            order=0 if label is None else SCORERS[metric.kind].order(label),
            kind=metric.kind,
            higher_is_better=metric.higher_is_better,
            range=metric.range,
            category=metric.category,
        )

    @property
    def derived(self) -> bool:
        """Whether the column is one of several its metric gives (per AU, per depth)."""
        return self.name != self.metric

    def metadata(self) -> dict[str, Any]:
        """``{"higher_is_better", "range": [lo, hi], "category"}`` (the manifest's entry)."""
        return {
            "higher_is_better": self.higher_is_better,
            "range": list(self.range),
            "category": self.category,
        }


#: Top-1 accuracy in %, the bench's classification column (from the predictions).
ACCURACY = Column(
    "accuracy", "accuracy", "accuracy", "accuracy", 0, "model", True, (0.0, 100.0), "classification"
)


class Scorer(ABC):
    """The metrics of one kind and scope, scored batch by batch.

    ``update(batch, maps)`` returns column name → (B,) scores of the batch (``maps`` None at
    scope ``model``); ``compute()`` the dataset-level column name → value at the end.
    """

    #: Whether the kind's metrics give several columns ``<prefix>:<label>`` each.
    derives: ClassVar[bool] = False

    def __init__(self, metrics: Sequence[Metric], device: torch.device | str = "cpu") -> None:
        self.metrics = list(metrics)

    @abstractmethod
    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        """Column name → (B,) scores of this batch (``maps`` None at scope ``model``)."""

    @classmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        """``[scorers[i].update(batch, maps[i]) for each i]``: the scorers of this kind of
        several (producer, layer)s of one batch (each with its own state); a kind may compute
        them together."""
        return [scorer.update(batch, layer) for scorer, layer in zip(scorers, maps, strict=True)]

    def compute(self) -> dict[str, float]:
        """Column name → dataset-level value, once every batch is in (none by default)."""
        return {}

    @staticmethod
    def order(label: str) -> int:
        """Sort key of column ``label`` among one metric's columns."""
        return 0


class BatchedScorer(Scorer):
    """A kind scored for every (producer, layer) of a batch at once: :meth:`update` is
    :meth:`update_together` of one."""

    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        (columns,) = self.update_together([self], batch, [_maps(maps)])
        return columns

    @classmethod
    @abstractmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        """As :meth:`Scorer.update_together`, computed together."""


class MapScores(BatchedScorer):
    """Map metrics, computed together by :func:`score_maps` (shared checks, masks, sort), for
    every producer of a batch at once: their (B, H, W) maps stacked to (P, B, H, W)."""

    @classmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = [{} for _ in scorers]
        families: dict[tuple[str, ...], list[int]] = {}  # the same metrics: scored together
        for i, scorer in enumerate(scorers):
            families.setdefault(tuple(m.name for m in scorer.metrics), []).append(i)
        for names, members in families.items():
            stacked = torch.stack([maps[i].maps for i in members])
            scores = score_maps(stacked, batch.heatmaps, batch.valid, names)
            for k, i in enumerate(members):
                out[i] = {name: values[k] for name, values in scores.items()}
        return out


class ModelScores(Scorer):
    """Metrics of the model's response to perturbed images: ``fn(model, images, maps, targets,
    valid)``; at scope ``model`` the heatmaps take the place of the maps."""

    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        evidence = batch.heatmaps if maps is None else maps.maps
        return {
            metric.name: metric(batch.model, batch.images, evidence, batch.targets, batch.valid)
            for metric in self.metrics
        }


class PerAUScores(Scorer):
    """Per-AU breakdowns: column ``<prefix>:AU<k>`` holds channel k of ``fn(maps, regions,
    valid)`` (B, K) for each AU k of the codebook."""

    derives = True

    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        maps = _maps(maps)
        regions, aus = batch.au_regions(tuple(maps.maps.shape[-2:]))
        columns = {}
        for metric in self.metrics:
            shares = metric(maps.maps, regions, batch.valid)
            for k, au in enumerate(aus):
                columns[Column.of(metric, f"AU{au}").name] = shares[:, k]
        return columns

    @staticmethod
    def order(label: str) -> int:
        """The AU number of ``AU<k>`` (labels without one last)."""
        digits = "".join(c for c in label if c.isdigit())
        return int(digits) if digits else 1 << 30


class SanityScores(Scorer):
    """Randomisation checks: column ``<prefix>:<module>`` holds the similarity after
    randomising the model down to ``<module>``, top first; control maps, which ignore the
    model, get none."""

    derives = True

    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        maps = _maps(maps)
        if maps.control:
            return {}
        columns = {}
        for metric in self.metrics:
            result = metric(batch.model, batch.images, batch.targets, maps.recompute, batch.valid)
            for depth, module in enumerate(result.layers):
                columns[Column.of(metric, module).name] = result.similarity[depth]
        return columns


class DatasetScores(Scorer):
    """Dataset-level metrics: one streaming accumulator each (``update(maps, heatmaps,
    valid)``, reduced across processes by torchmetrics), no per-image column."""

    def __init__(self, metrics: Sequence[Metric], device: torch.device | str = "cpu") -> None:
        super().__init__(metrics, device)
        self.accumulators = {metric.name: metric().to(device) for metric in self.metrics}

    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        for accumulator in self.accumulators.values():
            accumulator.update(_maps(maps).maps, batch.heatmaps, batch.valid)
        return {}

    def compute(self) -> dict[str, float]:
        return {name: float(acc.compute()) for name, acc in self.accumulators.items()}


class CueScores(BatchedScorer):
    """Shortcut-cue metrics: ``fn(maps, cue_masks, valid)`` with the batch's cue masks at the
    maps' size, for every producer of a batch at once (their maps stacked to (P, B, H, W)).
    Images without a cue score NaN (excluded from the means, counted as undefined); a batch
    without cue masks (data other than the synthetic faces) raises ``ValueError``."""

    @classmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        metrics = {m.name: m for scorer in scorers for m in scorer.metrics}
        names = sorted(metrics)
        if batch.cue_masks is None:
            raise ValueError(
                f"metric(s) {', '.join(names)} score the shortcut cue's pixels, which only the "
                "built-in synthetic faces know (data synthetic:…,shortcut=ρ); this batch has none"
            )
        stacked = torch.stack([_maps(layer).maps for layer in maps])
        cues = batch.cue_masks(tuple(stacked.shape[-2:]))
        scored = {name: metric(stacked, cues, batch.valid) for name, metric in metrics.items()}
        return [{m.name: scored[m.name][k] for m in s.metrics} for k, s in enumerate(scorers)]


class CausalScores(BatchedScorer):
    """AU attribution agreement: ``fn(energy, effects, present)`` per image, the energies of
    every producer of a batch from one call and the batch's causal effects computed once
    (:attr:`BatchContext.counterfactuals`); control maps are scored too (they should score
    near chance). NaN for invalid samples."""

    @classmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        source = _counterfactuals(batch, scorers)
        effects, present = source.effects()
        energy = source.energy([_maps(layer).maps for layer in maps])
        out = []
        for scorer, mine in zip(scorers, energy, strict=True):
            out.append(
                {
                    m.name: _where_valid(m(mine, effects.to(mine.device), present), batch.valid)
                    for m in scorer.metrics
                }
            )
        return out


class DoseScores(BatchedScorer):
    """Dose-response per AU: ``fn(energies, logits)`` (B, D) of each producer from the batch's
    dose curves (:meth:`Counterfactuals.dose`, computed once for every producer); column
    ``<prefix>:AU<k>`` per AU of :attr:`Counterfactuals.aus` and ``<prefix>`` the mean over
    each image's AUs with a score (NaN: none). NaN for invalid samples."""

    derives = True

    @classmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        source = _counterfactuals(batch, scorers)
        energies, logits = source.dose()
        if len(energies) == 0:  # no face of the batch shows an AU: no producer was called
            energies = logits.new_full((len(maps), *logits.shape), math.nan)
        if len(energies) != len(maps):
            raise ValueError(
                f"the dose curves hold {len(energies)} producers' energies for {len(maps)} maps"
            )
        out = []
        for scorer, mine in zip(scorers, energies, strict=True):
            columns = {}
            for metric in scorer.metrics:
                scores = metric(mine, logits.to(mine.device))  # (B, D)
                known = scores.isfinite()
                mean = torch.where(known, scores, 0).sum(1) / known.sum(1)  # 0/0: NaN
                columns[metric.name] = _where_valid(mean, batch.valid)
                for d, au in enumerate(source.aus):
                    column = Column.of(metric, f"AU{au}").name
                    columns[column] = _where_valid(scores[:, d], batch.valid)
            out.append(columns)
        return out

    order = staticmethod(PerAUScores.order)


class MirrorScores(Scorer):
    """Mirror equivariance: ``fn(maps, maps_of_flipped, valid)`` with the producer's maps of the
    batch's images flipped left–right (one more map call per producer and batch); control maps
    get none."""

    def update(self, batch: BatchContext, maps: LayerMaps | None) -> dict[str, torch.Tensor]:
        maps = _maps(maps)
        if maps.control:
            return {}
        flipped = maps.recompute(batch.model, batch.images.flip(-1), batch.targets)
        return {m.name: m(maps.maps, flipped, batch.valid) for m in self.metrics}


class LateralScores(BatchedScorer):
    """Laterality: ``fn(maps, region, side, valid)`` for every producer of a batch at once,
    with each face's AU region (its label's AUs, both sides) and the half of the face showing
    its one-sided AUs; NaN for faces drawn on both sides (no side); a batch without
    :attr:`BatchContext.face_sides` raises ``ValueError``."""

    @classmethod
    def update_together(
        cls, scorers: Sequence[Scorer], batch: BatchContext, maps: Sequence[LayerMaps]
    ) -> list[dict[str, torch.Tensor]]:
        metrics = {m.name: m for scorer in scorers for m in scorer.metrics}
        if batch.face_sides is None:
            raise ValueError(
                f"metric(s) {', '.join(sorted(metrics))} need faces whose AUs lie on a known "
                "side: the built-in synthetic faces with one_sided (data "
                "synthetic:…,one_sided=true and 8 classes); this batch has none"
            )
        stacked = torch.stack([_maps(layer).maps for layer in maps])  # (P, B, H, W)
        count, size = len(stacked), tuple(stacked.shape[-2:])
        regions, _ = batch.au_regions(size)  # (B, K, H, W)
        if regions.shape[1]:
            region = regions.amax(1) >= REGION_LEVEL
        else:  # the codebook draws no AU: no region
            region = torch.zeros(regions.shape[:1] + size, dtype=torch.bool, device=regions.device)
        side = batch.face_sides(size).to(region.device)
        flat = {
            name: metric(
                stacked.flatten(0, 1),
                region.repeat(count, 1, 1),
                side.repeat(count, 1, 1),
                batch.valid.repeat(count),
            ).unflatten(0, (count, -1))
            for name, metric in metrics.items()
        }
        return [{m.name: flat[m.name][k] for m in s.metrics} for k, s in enumerate(scorers)]


def _counterfactuals(batch: BatchContext, scorers: Sequence[Scorer]) -> Counterfactuals:
    """The batch's counterfactuals; ``ValueError`` naming the metrics when it has none."""
    if batch.counterfactuals is None:
        names = sorted({m.name for scorer in scorers for m in scorer.metrics})
        raise ValueError(
            f"metric(s) {', '.join(names)} score maps against AU counterfactuals, which only "
            "the built-in synthetic faces can render (data synthetic:…); this batch has none"
        )
    return batch.counterfactuals


def _where_valid(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``scores`` (B,) with NaN where ``valid`` (B,) is False."""
    return torch.where(valid.to(scores.device), scores, math.nan)


#: kind → its scorer, in the order a (producer, layer)'s columns are written.
SCORERS: dict[str, type[Scorer]] = {
    "map": MapScores,
    "model": ModelScores,
    "per_au": PerAUScores,
    "sanity": SanityScores,
    "dataset": DatasetScores,
    "cue": CueScores,
    "causal": CausalScores,
    "dose": DoseScores,
    "mirror": MirrorScores,
    "lateral": LateralScores,
}


def scorers(
    metrics: Iterable[str], scope: str = "map", device: torch.device | str = "cpu"
) -> list[Scorer]:
    """One new :class:`Scorer` per kind among ``metrics`` of ``scope``, in :data:`SCORERS`
    order (each holding its metrics in the order given). Create one set per (producer, layer):
    dataset-level scorers keep state."""
    chosen = [get_metric(name) for name in metrics]
    made = []
    for kind, make in SCORERS.items():
        group = [metric for metric in chosen if metric.kind == kind and metric.scope == scope]
        if group:
            made.append(make(group, device))
    return made


def derived_column(name: str) -> Column | None:
    """The :class:`Column` of ``name`` when it is one of several columns of a registered metric
    (``au_energy:AU6``, ``sanity_spearman:layer4.1``), else None."""
    family, colon, label = name.partition(":")
    if not colon:
        return None
    for metric in METRICS.values():
        if SCORERS[metric.kind].derives and (metric.column_prefix or metric.name) == family:
            return Column.of(metric, label)
    return None


def describe_column(name: str) -> Column:
    """The :class:`Column` of any score column the bench writes: ``accuracy``, a registered
    metric, or a metric's derived column. ``KeyError`` for any other name."""
    if name == ACCURACY.name:
        return ACCURACY
    if name in METRICS:
        return Column.of(METRICS[name])
    column = derived_column(name)
    if column is None:
        raise KeyError(f"{name!r} is no metric or column of one (known: {', '.join(METRICS)})")
    return column


def _maps(maps: LayerMaps | None) -> LayerMaps:
    if maps is None:
        raise ValueError("this kind of metric scores maps: it has no model scope")
    return maps
