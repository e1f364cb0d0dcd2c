"""aubench: AU heatmaps, AU-guided training and interpretability benchmarks for facial-expression
recognition (after Belharbi et al., "Guided Interpretable Facial Expression Recognition via
Spatial Action Unit Cues", FG 2024).

The library API starts at :func:`aubench.faces.heatmaps.au_heatmaps` (AU heatmaps from landmarks
and labels), :class:`aubench.data.synthetic.SyntheticFaces` (the built-in dataset) and
``aubench.evaluate`` (score your own model or maps: :func:`aubench.bench.api.evaluate`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``aubench.evaluate`` (:func:`aubench.bench.api.evaluate`), imported on first use, so that
    ``import aubench`` (and ``aubench --help``) stays free of torch. Imported by name: the root
    module is itself imported by the modules below it (for ``__version__``)."""
    if name == "evaluate":
        return importlib.import_module("aubench.bench.api").evaluate
    raise AttributeError(f"module 'aubench' has no attribute {name!r}")
