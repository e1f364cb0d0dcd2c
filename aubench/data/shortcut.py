"""The built-in synthetic faces' shortcut cue, per image: which corner holds its patch, and the
patch's pixels at any resolution.

With shortcut ρ > 0 (``synthetic:…,shortcut=ρ``) a face may carry a square patch of a class
colour in a bottom corner of the background (:mod:`aubench.faces.synth`); its box is a fixed
fraction of the image side (:func:`~aubench.faces.synth.cue_box`), so a face's corner says where
the patch lies at any size. Every synthetic sample holds its corner under :data:`CUE_KEY`
(:data:`NO_CUE` where no patch was drawn), so batches carry it through the DataLoader, and
:func:`cue_region_masks` turns a batch's corners into its (B, H, W) cue masks in
one vectorised step (no per-image loop), at the resolution a metric needs (the
``cue_energy_share`` metric: :mod:`aubench.metrics.causal`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from aubench.data.synthetic import SyntheticFaces
from aubench.faces.synth import cue_box, sample_params

__all__ = [
    "CUE_KEY",
    "NO_CUE",
    "cue_corners",
    "cue_region_masks",
    "synthetic_faces",
]

#: The sample key holding the corner of a face's shortcut patch: 0 bottom-left, 1 bottom-right,
#: :data:`NO_CUE` where none was drawn.
CUE_KEY = "cue_corner"
#: The corner of a face without a shortcut patch.
NO_CUE = -1


def cue_corners(faces: SyntheticFaces, indices: Sequence[int]) -> torch.Tensor:
    """(B,) int64 the corner of each face's shortcut patch (0 bottom-left, 1 bottom-right,
    :data:`NO_CUE` where none was drawn), from the faces' parameters (nothing is rendered)."""
    params = [sample_params(faces.seed, faces.split, int(i), faces.config) for i in indices]
    return torch.tensor(
        [NO_CUE if p.cue_class is None else p.scene.cue_corner for p in params], dtype=torch.long
    )


def cue_region_masks(corners: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool the shortcut patch's pixels of each face at ``size`` = (H, W), all False
    where ``corners`` is :data:`NO_CUE`, on ``corners``' device.

    The patch of corner c is :func:`~aubench.faces.synth.cue_box` at that size (columns from
    ``cue_box(W, c)``, rows from ``cue_box(H, c)``): the pixels a face rendered at that size
    paints, and the same fraction of the image at any other (up to rounding).
    """
    if corners.ndim != 1:
        raise ValueError(f"corners must have shape (B,), got {tuple(corners.shape)}")
    if not ((corners >= NO_CUE) & (corners <= 1)).all():
        raise ValueError(f"corners must be {NO_CUE}, 0 or 1, got {corners.unique().tolist()}")
    height, width = size
    boxes = torch.zeros(3, height, width, dtype=torch.bool, device=corners.device)  # -1, 0, 1
    for corner in (0, 1):
        x0, _, x1, _ = cue_box(width, corner)
        _, y0, _, y1 = cue_box(height, corner)
        boxes[corner + 1, y0:y1, x0:x1] = True
    return boxes[corners.long() + 1]


def synthetic_faces(faces: Dataset, what: str = "the shortcut cue") -> SyntheticFaces:
    """The built-in synthetic faces ``faces`` is, or wraps (through ``dataset``/``faces``
    attributes); ``ValueError`` naming ``what`` needs them otherwise."""
    seen = faces
    for _ in range(8):
        if isinstance(seen, SyntheticFaces):
            return seen
        inner = vars(seen).get("dataset", vars(seen).get("faces"))
        if inner is None:
            break
        seen = inner
    raise ValueError(
        f"{what} is known only on the built-in synthetic faces (data synthetic:…,shortcut=ρ); "
        f"got {type(faces).__name__} ({type(seen).__name__})"
    )
