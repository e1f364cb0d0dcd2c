"""The Sample contract every dataset yields (DESIGN.md) and the image normalisation it uses.

A Sample is a dict: ``image`` float32 (3, H, W) — RGB in [0, 1], then
``(x − IMAGENET_MEAN) / IMAGENET_STD`` per channel when a dataset normalises —, ``label`` int
(canonical order), ``landmarks`` float32 (68, 2) (x, y) pixels of that image, ``id`` str, plus
what a dataset adds (``shortcut``, CK+ ``aus``). Imports nothing of aubench, so every dataset,
transform and evaluation loop can share it.
"""

from __future__ import annotations

from typing import Any

#: ImageNet channel statistics (RGB) used by ``normalize=True``.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Sample = dict[str, Any]
