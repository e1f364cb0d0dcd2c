"""Per-AU breakdown: how much of each map's energy falls in each AU region of the sample.

``regions`` (B, K, H, W) are per-AU maps such as :func:`aubench.faces.heatmaps.per_au_heatmaps`
returns (channel k: AU ``aus[k]``, zero unless that AU belongs to the sample's label and lies in
the image); each is binarised as ``region >= region_threshold``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from aubench.metrics.base import (
    MapBatch,
    check_tensor,
    check_threshold,
    register,
    row_chunks,
    safe_ratio,
)

__all__ = ["per_au_energy"]


@register(
    "per_au_energy",
    higher_is_better=True,
    range=(0.0, 1.0),
    category="mass",
    kind="per_au",
    column_prefix="au_energy",
)
def per_au_energy(
    maps: torch.Tensor,
    regions: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    region_threshold: float = 0.5,
) -> torch.Tensor:
    """Share of each map's positive energy inside each AU region.

    ``E_{b,k} = Σ_{p ∈ R_bk} max(m_bp, 0) / Σ_p max(m_bp, 0)`` with ``R_bk = {r_bkp >=
    region_threshold}``. Regions may overlap, so a row need not sum to 1; the share inside
    their union is :func:`~aubench.metrics.point.energy_pointing_game` with the union as the AU
    region.

    Args:
        maps: (B, H, W) explanation maps.
        regions: (B, K, H, W) per-AU maps, same H, W and device.
        valid: (B,) bool, None for all.
        region_threshold: binarisation level in (0, 1].

    Returns:
        (B, K) in [0, 1]; NaN for invalid samples, non-finite or all-non-positive maps, and
        empty regions (AUs not present in the sample).
    """
    check_tensor("maps", maps, 3, "(B, H, W)")
    check_tensor("regions", regions, 4, "(B, K, H, W)")
    rows, aus = regions.shape[:2]
    if rows != maps.shape[0] or regions.shape[2:] != maps.shape[1:] or aus == 0:
        raise ValueError(
            f"regions must have shape (B, K, H, W) = ({maps.shape[0]}, K ≥ 1, "
            f"{maps.shape[1]}, {maps.shape[2]}) to match maps, got {tuple(regions.shape)}"
        )
    # the union of the regions stands in for the heatmap: MapBatch checks devices and values
    batch = MapBatch(maps, regions.amax(1), valid)
    threshold = check_threshold("region_threshold", region_threshold)
    energy = batch.positive_maps()[0]  # (B, N): one producer
    flat = regions.reshape(rows, aus, -1)
    inside = torch.empty(rows, aus, dtype=batch.dtype, device=energy.device)
    present = torch.empty(rows, aus, dtype=torch.bool, device=energy.device)
    for part in row_chunks(rows, aus * batch.pixels):
        binary = flat[part] >= threshold
        present[part] = binary.any(2)
        inside[part] = torch.bmm(binary.to(batch.dtype), energy[part, :, None]).squeeze(2)
    share, positive = safe_ratio(inside, energy.sum(1, keepdim=True))
    keep = batch.usable[0, :, None] & positive & present
    return torch.where(keep, share, torch.nan)
