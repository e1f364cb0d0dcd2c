"""Laterality: does a map's mass follow the side of the face an AU is on?

On faces whose AU is drawn on one side only (the synthetic faces' one-sided contempt,
:attr:`aubench.faces.synth.SynthConfig.one_sided`), the map should weigh that side of the AU's
region. Mirror equivariance (:func:`aubench.metrics.causal.mirror_equivariance`) is the
complementary check on any face.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from aubench.metrics.base import check_tensor, register
from aubench.metrics.point import energy_pointing_game

__all__ = ["lateral_share"]


@register("lateral_share", higher_is_better=True, range=(0.0, 1.0), category="mass", kind="lateral")
def lateral_share(
    maps: torch.Tensor,
    region: torch.Tensor,
    side: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
) -> torch.Tensor:
    """The share of a map's positive energy in an AU's region that lies on the AU's side:

        Σ_{p ∈ R ∩ S} max(m_p, 0) / Σ_{p ∈ R} max(m_p, 0)

    with R the region (both sides of the face) and S the half of the face showing the AU. 1: the
    map weighs the AU's side only, 0: the other side only, 0.5: no preference on a symmetric
    region.

    Args:
        maps: (B, H, W) maps.
        region: (B, H, W) bool, the AU's region on both sides.
        side: (B, H, W) bool, the half of the face showing the AU
            (:func:`aubench.faces.landmarks.face_halves`).
        valid: (B,) bool, None for all.

    Returns:
        (B,) in [0, 1]; NaN for invalid samples, empty regions or sides, and maps with no
        positive energy in the region.
    """
    check_tensor("maps", maps, 3, "(B, H, W)")
    for name, mask in (("region", region), ("side", side)):
        check_tensor(name, mask, 3, "(B, H, W)")
        if mask.dtype != torch.bool or mask.shape != maps.shape:
            raise ValueError(
                f"{name} must be a bool tensor shaped like maps {tuple(maps.shape)}, got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
    inside = torch.where(region, maps.clamp_min(0), torch.zeros_like(maps))
    share = energy_pointing_game(inside, side & region, valid, mask_threshold=1.0)
    empty = ~(side & region).flatten(1).any(1)
    return torch.where(empty, torch.full_like(share, float("nan")), share)
