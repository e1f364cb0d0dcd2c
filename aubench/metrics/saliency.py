"""Saliency-benchmark metrics (MIT/Tübingen, pysaliency): SIM and KL between the map and the soft
heatmap read as distributions, and NSS of the map at the AU region.

SIM and KL need distributions, so their definitions normalise both maps: a map with negative
values is first shifted by −min (pysaliency; the house maps are ≥ 0, so this is a no-op for
them), then divided by its sum. A map summing to 0 is NaN here (pysaliency falls back to a
uniform distribution; the MIT code also min-max normalises maps that are already ≥ 0).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from aubench.metrics.base import MapBatch, register, safe_ratio

__all__ = ["KL_EPS", "kl", "nss", "sim"]

#: The MIT benchmark's ε (MATLAB ``eps``).
KL_EPS = 2.2204e-16


@register("sim", higher_is_better=True, range=(0.0, 1.0), category="saliency")
def sim(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """Similarity (histogram intersection) ``Σ_p min(P_p, Q_p)`` of the map's distribution P and
    the heatmap's Q (module docstring).

    (B, H, W) → (B,) in [0, 1], 1 iff P = Q; NaN for invalid samples and maps or heatmaps that
    sum to 0.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    p, p_ok = _distribution(batch.maps)
    q, q_ok = _distribution(batch.heatmaps)
    return batch.finish(torch.minimum(p, q).sum(-1), p_ok & q_ok)


@register("kl", higher_is_better=False, range=(0.0, float("inf")), category="saliency")
def kl(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """KL divergence of the map's distribution P from the heatmap's Q (the reference), MIT form:
    ``Σ_p Q_p log(ε + Q_p / (P_p + ε))`` with ε = :data:`KL_EPS`.

    (B, H, W) → (B,) ≥ 0 (up to ε), 0 iff P = Q; NaN for invalid samples and maps or heatmaps
    that sum to 0. In float32, P_p + ε = P_p for any P_p > 1e-9, so the ε only guards zeros.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    p, p_ok = _distribution(batch.maps)
    q, q_ok = _distribution(batch.heatmaps)
    value = (q * torch.log(KL_EPS + q / (p + KL_EPS))).sum(-1)
    return batch.finish(value, p_ok & q_ok)


@register("nss", higher_is_better=True, range=(-float("inf"), float("inf")), category="saliency")
def nss(
    maps: torch.Tensor | MapBatch,
    heatmaps: torch.Tensor | None = None,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """Normalised scanpath saliency: the mean over the AU region G of the z-scored map,
    ``(mean_{p∈G} m_p − mean_p m_p) / std_p m_p`` (population std, as pysaliency; the MIT
    MATLAB code divides by N − 1).

    (B, H, W) → (B,), 0 at chance; NaN for invalid samples, empty AU regions and constant maps.
    """
    batch = MapBatch.of(maps, heatmaps, valid)
    m = batch.maps
    size = batch.mask_size(mask_threshold)
    mean_inside, has_region = safe_ratio(batch.inside_sum(m, mask_threshold), size.to(m.dtype))
    mean = m.mean(-1, keepdim=True)
    std = (m - mean).square().mean(-1).sqrt()
    score, _ = safe_ratio(mean_inside - mean.squeeze(-1), std)
    return batch.finish(score, has_region & ~batch.constant_maps())


def _distribution(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (…, N) shifted to be ≥ 0 (only where negative) and divided by their sum; (…)
    defined."""
    shift = values.amin(-1, keepdim=True).clamp(max=0)
    shifted = values - shift
    total = shifted.sum(-1, keepdim=True)
    share, defined = safe_ratio(shifted, total)
    return share, defined.squeeze(-1)
