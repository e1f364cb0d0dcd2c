"""An AU heatmap drawn over its face image, the picture every preview grid and figure shows."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

#: Heatmap opacity where the heatmap is 1 (it fades linearly to 0 where the heatmap is 0).
OVERLAY_ALPHA = 0.6


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap onto an image: float (H, W, 3) in [0, 1].

    ``out = image·(1 − α·h) + cmap(h)·α·h`` with α = :data:`OVERLAY_ALPHA`, so a zero heatmap
    (e.g. an invalid neutral face) leaves the image unchanged. ``image`` is uint8 (H, W, 3),
    ``heatmap`` float (H, W) in [0, 1] (clipped).
    """
    h = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    colour = colormaps[cmap](h)[..., :3]
    weight = OVERLAY_ALPHA * h[..., None]
    blend = np.asarray(image, dtype=np.float32) / 255.0 * (1.0 - weight) + colour * weight
    return np.clip(blend, 0.0, 1.0)
