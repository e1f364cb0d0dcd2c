"""An AU heatmap drawn over its face image, the picture every preview grid and figure shows."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

#: Heatmap opacity where the heatmap is 1 (it fades linearly to 0 where the heatmap is 0).
OVERLAY_ALPHA = 0.6
#: RGB weights of the luminance of a grey face (ITU-R BT.601).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, cmap: str = "jet", grey: bool = False
) -> np.ndarray:
    """Blend heatmaps onto images: float32 (..., H, W, 3) in [0, 1].

    ``out = base·(1 − α·h) + cmap(h)·α·h`` with α = :data:`OVERLAY_ALPHA` and ``base`` the
    image in [0, 1], or with ``grey`` its luminance ``base·LUMA`` in all three channels (so the
    only colours are the heatmap's); a zero heatmap (e.g. an invalid neutral face) leaves
    ``base`` unchanged. ``image`` is uint8 (or float in [0, 255]) (..., H, W, 3), ``heatmap``
    float (..., H, W) in [0, 1] (clipped); leading dimensions (a batch) broadcast.
    """
    h = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    colour = colormaps[cmap](h)[..., :3].astype(np.float32)
    weight = OVERLAY_ALPHA * h[..., None]
    base = np.asarray(image, dtype=np.float32) / 255.0
    if grey:
        base = (base @ LUMA)[..., None]
    blend = base * (1.0 - weight) + colour * weight
    return np.clip(blend, 0.0, 1.0)
