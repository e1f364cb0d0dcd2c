"""Overlap of the binarised map with the AU region: IoU and Dice at a fixed threshold, at Otsu's
threshold and at the best threshold, and pixel average precision (per sample; the dataset-level
PxAP is :class:`aubench.metrics.streaming.PxAP`, from the same histograms).

The AU region is ``heatmap >= mask_threshold``. The map is binarised as given, so fixed
thresholds assume maps in [0, 1] (the house min-max normalisation). An empty AU region gives NaN;
so does Otsu on a constant map. (The paper's segmentation code scores two empty masks 100; here
an empty AU region has nothing to overlap, so it is undefined.)

Threshold grids (``"best"``, ``pixel_ap``): the levels j/L of :mod:`aubench.metrics.curves`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import torch

from aubench.metrics.base import MapBatch, register, safe_ratio
from aubench.metrics.curves import average_precision, check_levels

if TYPE_CHECKING:
    from aubench.metrics.streaming import PxAP

__all__ = [
    "dice",
    "iou",
    "otsu_thresholds",
    "pixel_ap",
    "pxap_accumulator",
]

#: Histogram bins of Otsu's method (scikit-image's and the paper's default).
OTSU_BINS = 256

Threshold = float | Literal["otsu", "best"]


@register(
    "iou",
    higher_is_better=True,
    range=(0.0, 1.0),
    category="overlap",
    variants={"iou_otsu": {"threshold": "otsu"}, "iou_best": {"threshold": "best"}},
)
def iou(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    threshold: Threshold = 0.5,
    mask_threshold: float = 0.5,
    levels: int = 100,
) -> torch.Tensor:
    """Intersection over union ``|P ∩ G| / |P ∪ G|`` of the predicted region P and AU region G.

    Args:
        maps, heatmaps: (B, H, W); maps in [0, 1] for fixed thresholds.
        valid: (B,) bool, None for all.
        threshold: ``P = {m >= threshold}`` for a number in [0, 1]; ``"otsu"``: ``P = {m > t}``
            with t Otsu's threshold of the map (256 bins over [min, max], scikit-image's
            ``threshold_otsu`` convention); ``"best"``: the maximum over the ``levels`` grid
            (an oracle threshold per sample, see the module docstring).
        mask_threshold: G = ``heatmap >= mask_threshold``.
        levels: grid size for ``"best"``.

    Returns:
        (B,) in [0, 1]; NaN for invalid samples, empty AU regions, and constant maps at Otsu.
    """
    return _overlap(MapBatch.of(maps, heatmaps, valid), threshold, mask_threshold, levels, False)


@register(
    "dice",
    higher_is_better=True,
    range=(0.0, 1.0),
    category="overlap",
    variants={"dice_otsu": {"threshold": "otsu"}, "dice_best": {"threshold": "best"}},
)
def dice(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    threshold: Threshold = 0.5,
    mask_threshold: float = 0.5,
    levels: int = 100,
) -> torch.Tensor:
    """Dice coefficient ``2 |P ∩ G| / (|P| + |G|)``; arguments and NaN cases as :func:`iou`.

    Returns (B,) in [0, 1] (the paper's segmentation code reports ×100).
    """
    return _overlap(MapBatch.of(maps, heatmaps, valid), threshold, mask_threshold, levels, True)


@register("pixel_ap", higher_is_better=True, range=(0.0, 1.0), category="overlap")
def pixel_ap(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
    levels: int = 1000,
) -> torch.Tensor:
    """Per-image pixel average precision of the map as a detector of the AU region.

    ``AP = Σ_j P_j (R_j − R_{j+1})`` over the grid levels j = L..0 from the highest threshold
    down (R_{L+1} = 0), with ``P_j = TP_j / (TP_j + FP_j)`` and ``R_j = TP_j / |G|``; levels
    where nothing is predicted are skipped. This is wsolevaluation's PxAP formula (thresholds
    0, 0.001, …, 1 at the default ``levels=1000``) applied to one image, in [0, 1] rather than
    ×100. (B, H, W) → (B,); NaN for invalid samples and empty AU regions.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    tp, predicted = _level_curves(batch, mask_threshold, levels)
    size = batch.mask_size(mask_threshold)
    return batch.finish(average_precision(tp, predicted, size), size > 0)


@register("pxap", higher_is_better=True, range=(0.0, 1.0), category="overlap", kind="dataset")
def pxap_accumulator(levels: int = 1000, mask_threshold: float = 0.5) -> PxAP:
    """A new dataset-level :class:`~aubench.metrics.streaming.PxAP` accumulator (the registry's
    ``"pxap"``; torchmetrics is imported on first use)."""
    from aubench.metrics.streaming import PxAP

    return PxAP(levels=levels, mask_threshold=mask_threshold)


def otsu_thresholds(values: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold (R,) float64 of each row of ``values`` (R, N).

    256 equal bins over the row's [min, max]; the threshold is the centre of bin t, the first
    maximiser of the between-class variance ``w₁ w₂ (μ₁ − μ₂)²`` of the split after bin t, as
    scikit-image's ``threshold_otsu`` (foreground ``v > t``). The variance is evaluated as
    ``(k₁ w₂ − k₂ w₁)² / (w₁ w₂)`` with w the class counts and k their sums of doubled bin
    indices (exact integers), so exactly tied splits (quantised maps) resolve to the first one
    reproducibly; scikit-image's floating sums may pick another of them. Constant rows return
    their value.
    """
    return _otsu_of_sorted(values.sort(dim=1).values)


def _otsu_of_sorted(ordered: torch.Tensor) -> torch.Tensor:
    """:func:`otsu_thresholds` of rows ``ordered`` (R, N) sorted ascending. The histogram comes
    from the sorted rows: bin t ≥ 1 starts at the first value whose scaled value
    ``(v − min) · 256 / span`` (float64) reaches t, the binning ``floor`` of it, exactly."""
    rows, width = ordered.shape
    low, high = ordered[:, 0].double(), ordered[:, -1].double()
    span = high - low
    scale = OTSU_BINS / torch.where(span > 0, span, 1)
    scaled = (ordered.double() - low[:, None]) * scale[:, None]  # non-decreasing along a row
    edges = torch.arange(1, OTSU_BINS, dtype=torch.float64, device=ordered.device)
    starts = torch.searchsorted(scaled, edges.expand(rows, -1).contiguous())
    first = torch.zeros(rows, 1, dtype=torch.int64, device=ordered.device)
    hist = torch.cat([first, starts, first + width], 1).diff(dim=1)  # (R, 256) pixels per bin
    doubled = 2 * torch.arange(OTSU_BINS, device=ordered.device) + 1  # 2 × (bin index + ½)
    count1 = hist.cumsum(1)[:, :-1]
    sum1 = (hist * doubled).cumsum(1)[:, :-1]
    count2 = hist.sum(1, keepdim=True) - count1
    sum2 = (hist * doubled).sum(1, keepdim=True) - sum1
    spread = (sum1 * count2 - sum2 * count1).double()
    between = spread**2 / (count1 * count2).double()
    best = between.nan_to_num(-1.0).argmax(1)
    threshold = low + (best.double() + 0.5) * (span / OTSU_BINS)
    return torch.where(span > 0, threshold, low)


def _overlap(
    batch: MapBatch, threshold: Threshold, mask_threshold: float, levels: int, is_dice: bool
) -> torch.Tensor:
    size = batch.mask_size(mask_threshold)
    defined = size > 0
    if threshold == "best":
        tp, predicted = _level_curves(batch, mask_threshold, levels)
        score = _overlap_score(tp, predicted, size[..., None], is_dice).amax(-1)
        return batch.finish(score, defined)
    if threshold == "otsu":  # P = {m > t}
        rows = batch.sorted_rows()
        cut = batch.cached(("otsu",), lambda: _otsu_of_sorted(rows))[:, None]
        # m > t (compared in float64) ⇔ m > the largest value of the maps' dtype not above t
        at = cut.to(batch.dtype)
        at = torch.where(at.double() > cut, torch.nextafter(at, at.new_tensor(-math.inf)), at)
        predicted, inter = batch.count_from(mask_threshold, rows, at, strict=True)
        defined = defined & ~batch.constant_maps()
    elif (
        isinstance(threshold, int | float)
        and not isinstance(threshold, bool)
        and 0 <= threshold <= 1
    ):  # P = {m >= threshold}, compared in the maps' dtype
        at = torch.tensor([[threshold]], dtype=batch.dtype, device=batch.maps.device)
        predicted, inter = batch.count_from(mask_threshold, batch.sorted_rows(), at)
    else:
        raise ValueError(f"threshold must be in [0, 1], 'otsu' or 'best', got {threshold!r}")
    score = _overlap_score(inter[..., 0], predicted[..., 0], size, is_dice)
    return batch.finish(score, defined)


def _overlap_score(
    inter: torch.Tensor, predicted: torch.Tensor, size: torch.Tensor, is_dice: bool
) -> torch.Tensor:
    """IoU ``i / (p + g − i)`` or Dice ``2i / (p + g)`` from counts (float64; 0 for 0/0)."""
    inter, total = inter.double(), (predicted + size).double()
    score, _ = safe_ratio(2 * inter, total) if is_dice else safe_ratio(inter, total - inter)
    return score


def _level_curves(
    batch: MapBatch, mask_threshold: float, levels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """True positives and predicted pixels (P, B, L + 1) at levels j = 0..L (pixels with
    ``m·L >= j``, :mod:`aubench.metrics.curves`), from the shared sort."""
    check_levels(levels)
    grid = torch.arange(levels + 1, device=batch.maps.device)[None]
    predicted, tp = batch.cached(
        ("levels", mask_threshold, levels),
        lambda: batch.count_from(mask_threshold, batch.sorted_rows() * levels, grid),
    )
    return tp, predicted
