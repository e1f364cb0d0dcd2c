"""Preview grids of a dataset: faces with their AU heatmaps overlaid, one titled tile per face."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from aubench.data.synthetic import SyntheticFaces
from aubench.faces.codebook import parse_expression
from aubench.faces.heatmaps import au_heatmaps
from aubench.faces.overlay import overlay_heatmap
from aubench.io import write_atomic

#: How many faces a dataset preview shows (the first ones).
PREVIEW_FACES = 16


def save_preview_grid(
    images: np.ndarray,
    heatmaps: np.ndarray,
    labels: Sequence[int | str],
    path: str | os.PathLike,
    cols: int | None = None,
) -> Path:
    """Write a PNG grid of faces with their heatmaps overlaid and class names as titles.

    Args:
        images: uint8 (N, H, W, 3) RGB.
        heatmaps: float (N, H, W) in [0, 1].
        labels: N canonical expression ids or names.
        path: the PNG to write (atomically: a temporary file in the same folder, then renamed).
        cols: tiles per row; default ⌈√N⌉.

    Returns:
        The path written.
    """
    images = np.asarray(images)
    heatmaps = np.asarray(heatmaps)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise ValueError(
            f"images must be uint8 (N, H, W, 3) with N ≥ 1, got {images.dtype} {images.shape}"
        )
    if heatmaps.shape != images.shape[:3]:
        raise ValueError(f"heatmaps must have shape {images.shape[:3]}, got {heatmaps.shape}")
    if len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"cols must be ≥ 1, got {cols}")
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, heatmap, label in zip(axes, images, heatmaps, labels, strict=False):
        ax.imshow(overlay_heatmap(image, heatmap), interpolation="nearest")
        ax.set_title(parse_expression(label).name.lower(), fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94, wspace=0.05, hspace=0.2)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png.getvalue())
    return path


def save_synthetic_preview(
    dataset: SyntheticFaces, path: str | os.PathLike, count: int = PREVIEW_FACES
) -> Path:
    """The first ``count`` faces of ``dataset`` with their default AU heatmaps, as a PNG grid.

    The heatmaps use the codebook the faces were rendered with (so contempt shows its AUs too).
    """
    faces = [dataset.render(i) for i in range(min(count, len(dataset)))]
    landmarks = torch.from_numpy(np.stack([f.landmarks for f in faces]))
    labels = [f.label for f in faces]
    maps, _ = au_heatmaps(
        landmarks, torch.tensor(labels), dataset.size, codebook=dataset.config.codebook_mapping
    )
    return save_preview_grid(np.stack([f.image for f in faces]), maps.numpy(), labels, path)
