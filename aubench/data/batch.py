"""Batches: collate Sample dicts, then add AU heatmaps computed from the (transformed) landmarks.

Heatmaps are never stored or transformed alongside the image: they are rebuilt from each batch's
landmarks and labels after the geometric augmentations, so map and image always agree (DESIGN.md).
Build them on the device the model runs on: ``add_heatmaps(to_device(batch), ...)``.
:func:`add_heatmaps` is the one way to give a batch its maps, validity flags and invalid reasons
(the trainer and the suite evaluation use it, and so does :class:`HeatmapCollate`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import default_collate

from aubench.faces.codebook import Codebook
from aubench.faces.heatmaps import au_heatmaps, invalid_reasons


def add_heatmaps(
    batch: dict,
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
) -> dict:
    """Add ``heatmap`` (B, H, W) in [0, 1], ``valid`` (B,) bool and ``invalid_reason`` (B,) codes.

    ``batch`` holds ``image`` (B, 3, H, W), ``landmarks`` (B, 68, 2) in that image's pixels and
    ``label`` (B,); the maps have the image's size and live on the landmarks' device.
    """
    missing = {"image", "landmarks", "label"} - batch.keys()
    if missing:
        raise KeyError(f"a batch needs {sorted(missing)} to build AU heatmaps")
    size = tuple(batch["image"].shape[-2:])
    maps, valid = au_heatmaps(batch["landmarks"], batch["label"], size, codebook, regions)
    reasons = invalid_reasons(batch["landmarks"], batch["label"], valid, codebook, regions)
    return {**batch, "heatmap": maps, "valid": valid, "invalid_reason": reasons}


class HeatmapCollate:
    """A DataLoader ``collate_fn``: ``default_collate`` then :func:`add_heatmaps` (on the CPU)."""

    def __init__(self, codebook: str | Codebook | dict | None = None, regions: str = "default"):
        self.codebook = codebook
        self.regions = regions

    def __call__(self, samples: Sequence[dict]) -> dict:
        batch = default_collate(list(samples))
        batch["label"] = torch.as_tensor(batch["label"])
        return add_heatmaps(batch, self.codebook, self.regions)
