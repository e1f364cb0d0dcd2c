"""Streaming accumulators (torchmetrics ``Metric``): ``update`` per batch, ``compute`` at the end,
``reset`` between runs, and distributed reduction by torchmetrics itself, so a torchrun-sharded
evaluation computes the same result as one process.

- :class:`PxAP`: dataset-level pixel average precision from two (levels + 2)-bin histograms
  (O(bins) state, summed across processes).
- :class:`ScoreAggregator`: any map metric's per-sample scores, labels, validity and reasons
  (concatenated across processes), aggregated by :func:`aubench.metrics.aggregate.aggregate`.

Under ``DistributedSampler`` the last batch is padded with repeated samples; pass
``valid=False`` for the padding (or use a sampler without it), or those samples count twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torchmetrics import Metric as _TorchMetric
from torchmetrics.utilities import dim_zero_cat

from aubench.metrics.aggregate import Aggregate, aggregate
from aubench.metrics.base import MapBatch, get_metric
from aubench.metrics.curves import average_precision, level_counts

__all__ = ["PxAP", "ScoreAggregator"]


class PxAP(_TorchMetric):
    """Pixel average precision over a whole dataset (wsolevaluation's PxAP, in [0, 1] not ×100).

    Each update adds, over the usable samples, the histogram of map values on AU-region pixels
    and on the other pixels (bins of :func:`aubench.metrics.curves.level_counts`); ``compute``
    turns the summed histograms into one precision–recall curve over the thresholds
    0, 1/L, …, 1 and its average precision (:func:`aubench.metrics.curves.average_precision`).
    This is not the mean of per-image APs (:func:`~aubench.metrics.overlap.pixel_ap`). Maps are
    expected in [0, 1]. ``compute`` is NaN when no AU-region pixel was seen (wsolevaluation
    raises).

    Args:
        levels: L, thresholds j/L for j = 0..L (1000: wsolevaluation's δ = 0.001).
        mask_threshold: AU region = ``heatmap >= mask_threshold``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, levels: int = 1000, mask_threshold: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        self.levels = levels
        self.mask_threshold = mask_threshold
        self.add_state(
            "counts", torch.zeros(levels + 2, 2, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(
        self,
        maps: torch.Tensor,
        heatmaps: torch.Tensor,
        valid: torch.Tensor | Iterable[bool] | None = None,
    ) -> None:
        """Add a batch of (B, H, W) maps and soft heatmaps; ``valid`` (B,) bool or None."""
        batch = MapBatch(maps, heatmaps, valid)
        keep = batch.usable
        mask = batch.mask(self.mask_threshold)
        counts = level_counts(batch.maps[keep], mask[keep], self.levels)
        self.counts += counts.sum(0).to(self.counts.device)

    def compute(self) -> torch.Tensor:
        at_least = self.counts.flip(0).cumsum(0).flip(0)[1:]
        tp, predicted = at_least[:, 1], at_least.sum(1)
        return average_precision(tp, predicted, self.counts[:, 1].sum())


class ScoreAggregator(_TorchMetric):
    """Per-sample scores of one map metric, streamed, then :func:`aggregate`-d.

    Args:
        metric: a registered map-metric name (or a :class:`~aubench.metrics.base.Metric`).
        options: keywords for the metric (e.g. ``{"mask_threshold": 0.4}``).
        aggregate_options: keywords for :func:`aggregate` (``num_classes``, ``neutral``,
            ``reason_names``, ``fill_undefined``, ``n_boot``, ``confidence``, ``seed``).

    State: four concatenated (N,) lists — O(N) scalars, not maps.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        metric: str | Callable[..., torch.Tensor] = "cosine",
        options: Mapping[str, Any] | None = None,
        aggregate_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.metric = get_metric(metric) if isinstance(metric, str) else metric
        if getattr(self.metric, "kind", "map") != "map":
            raise ValueError(f"ScoreAggregator needs a map metric, got kind {self.metric.kind!r}")
        self.options = dict(options or {})
        self.aggregate_options = dict(aggregate_options or {})
        for name in ("scores", "labels", "valid", "reasons"):
            self.add_state(name, [], dist_reduce_fx="cat")

    def update(
        self,
        maps: torch.Tensor,
        heatmaps: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor | None = None,
        reasons: torch.Tensor | None = None,
    ) -> None:
        """Score a batch: (B, H, W) maps and heatmaps, (B,) labels, valid and reason codes."""
        batch = MapBatch(maps, heatmaps, valid)
        self.scores.append(self.metric(batch, **self.options).double())
        self.labels.append(torch.as_tensor(labels, device=batch.valid.device).long())
        self.valid.append(batch.valid)
        codes = torch.zeros_like(batch.valid, dtype=torch.int64) if reasons is None else reasons
        self.reasons.append(torch.as_tensor(codes, device=batch.valid.device).long())

    def compute(self) -> Aggregate:
        return aggregate(
            dim_zero_cat(self.scores),
            dim_zero_cat(self.labels),
            dim_zero_cat(self.valid),
            dim_zero_cat(self.reasons),
            **self.aggregate_options,
        )
