"""Correlation between each map and its soft AU heatmap: cosine (the paper's CAM-COS / ATT-COS),
Pearson CC and Spearman's rank correlation.

All three use the soft heatmap (no binarisation) and are NaN when the map or the heatmap is
constant (the all-zero map included): a constant map carries no spatial information, and the
house normalisation turns a constant map into zeros, whose cosine is 0/0. The paper instead
scores such maps 0 (``nan_to_num`` after ``cosine_similarity(eps=1e-8)``);
:func:`aubench.metrics.aggregate.aggregate` reproduces that with ``fill_undefined=0.0``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from aubench.metrics._ranking import average_ranks
from aubench.metrics.base import MapBatch, register, safe_ratio

__all__ = ["cosine", "pearson", "spearman"]


@register("cosine", higher_is_better=True, range=(0.0, 1.0), category="correlation")
def cosine(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """Cosine similarity ``⟨m, h⟩ / (‖m‖ ‖h‖)`` over the N pixels (the paper's CAM-COS/ATT-COS).

    Args:
        maps: (B, H, W) maps as given (the paper min-max normalises CAMs and shifts attention to
            be ≥ 0 before this; cosine is invariant to a positive scale, not to a shift).
        heatmaps: (B, H, W) soft AU maps.
        valid: (B,) bool, None for all.

    Returns:
        (B,) in [−1, 1] ([0, 1] for non-negative maps); NaN for invalid samples and constant maps
        or heatmaps. No ε: the paper's ``eps=1e-8`` only matters for (near-)zero maps.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    m, h = batch.maps, batch.heatmaps
    value, _ = safe_ratio((m * h).sum(-1), m.norm(dim=-1) * h.norm(dim=-1))
    return batch.finish(value.clamp(-1, 1), _non_constant(batch))


@register("pearson", higher_is_better=True, range=(-1.0, 1.0), category="correlation")
def pearson(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """Pearson correlation (CC) ``Σ (m − m̄)(h − h̄) / √(Σ (m − m̄)² · Σ (h − h̄)²)`` per sample.

    (B, H, W) maps and soft heatmaps → (B,) in [−1, 1]; invariant to ``m ↦ a·m + b`` with a > 0.
    NaN for invalid samples and constant maps or heatmaps (pysaliency returns 0 when only the
    map is constant).
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    return batch.finish(_pearson_rows(batch.maps, batch.heatmaps), _non_constant(batch))


@register("spearman", higher_is_better=True, range=(-1.0, 1.0), category="correlation")
def spearman(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """Spearman's ρ: the Pearson correlation of the pixels' ranks, ties sharing their mean rank
    (``scipy.stats.spearmanr``'s convention).

    (B, H, W) maps and soft heatmaps → (B,) in [−1, 1]; invariant to strictly increasing
    transforms of either map. NaN for invalid samples and constant maps or heatmaps. The maps'
    ranks come from the batch's shared sort (:meth:`MapBatch.twice_ranks`, also behind
    :func:`~aubench.metrics.point.roc_auc`); the heatmaps' are computed once for all producers.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    values, order = batch.sorted_maps()
    ranks_m = torch.empty_like(values).scatter_(-1, order, batch.twice_ranks().to(batch.dtype) / 2)
    ranks_h = average_ranks(batch.heatmaps.view(-1, batch.pixels)).view(batch.heatmaps.shape)
    return batch.finish(_pearson_rows(ranks_m, ranks_h), _non_constant(batch))


def _pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation (…) of (…, N) tensors (broadcast); 0 where a row is
    constant."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    value, _ = safe_ratio((a * b).sum(-1), a.norm(dim=-1) * b.norm(dim=-1))
    return value.clamp(-1, 1)  # rounding can land a hair outside


def _non_constant(batch: MapBatch) -> torch.Tensor:
    return ~(batch.constant_maps() | batch.constant_heatmaps())
