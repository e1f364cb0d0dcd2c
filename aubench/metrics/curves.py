"""Precision–recall curves over a threshold grid: the histograms of the dataset-level
:class:`~aubench.metrics.streaming.PxAP` and the average precision it shares with the per-image
:func:`~aubench.metrics.overlap.pixel_ap` (whose counts at each level, like those of the
best-threshold overlaps, come from the batch's sorted maps instead).

Threshold grid: level j of ``levels`` L is τ_j = j/L for j = 0..L, and a pixel is predicted at
level j when ``m·L >= j`` (exact for the integer j; it equals ``m >= j/L`` up to the rounding of
j/L). Maps below 0 are never predicted, maps above 1 always.
"""

from __future__ import annotations

import torch

from aubench.metrics.base import row_chunks, safe_ratio

__all__ = ["average_precision", "check_levels", "level_counts"]


def check_levels(levels: int) -> None:
    """A ``ValueError`` unless ``levels`` is a positive int."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int, got {levels!r}")


def level_counts(values: torch.Tensor, mask: torch.Tensor, levels: int) -> torch.Tensor:
    """Histogram (R, L + 2, 2) int64 of ``clamp(floor(v·L), −1, L) + 1`` per row, split by the
    mask bit (index 0 outside, 1 inside). ``values``, ``mask``: (R, N)."""
    check_levels(levels)
    rows, _ = values.shape
    bins = levels + 2
    counts = torch.empty(rows, bins * 2, dtype=torch.int64, device=values.device)
    for part in row_chunks(*values.shape):
        index = (values[part] * levels).floor_().clamp_(-1, levels).to(torch.int64) + 1
        index = index * 2 + mask[part]
        index += torch.arange(part.stop - part.start, device=values.device)[:, None] * (bins * 2)
        flat = torch.bincount(index.view(-1), minlength=(part.stop - part.start) * bins * 2)
        counts[part] = flat.view(-1, bins * 2)
    return counts.view(rows, bins, 2)


def average_precision(
    tp: torch.Tensor, predicted: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """``Σ_j P_j (R_j − R_{j+1})`` from counts per level j = 0..L (ascending thresholds).

    ``tp``, ``predicted`` (…, L + 1): true positives and predicted pixels at each level;
    ``positives`` (…): |G|. Float64; NaN where ``positives`` is 0.
    """
    tp, predicted = tp.flip(-1).double(), predicted.flip(-1).double()
    recall = tp / positives.double().unsqueeze(-1)
    gain = torch.diff(recall, dim=-1, prepend=torch.zeros_like(recall[..., :1]))
    precision, defined = safe_ratio(tp, predicted)
    return torch.where(defined, precision * gain, 0).sum(-1)
