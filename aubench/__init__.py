"""aubench: AU heatmaps, AU-guided training and interpretability benchmarks for facial-expression
recognition (after Belharbi et al., "Guided Interpretable Facial Expression Recognition via
Spatial Action Unit Cues", FG 2024).

The library API starts at :func:`aubench.faces.heatmaps.au_heatmaps` (AU heatmaps from landmarks
and labels), :class:`aubench.data.synthetic.SyntheticFaces` (the built-in dataset) and
``aubench.evaluate`` (score your own model or maps: :func:`aubench.bench.api.evaluate`).
"""

from __future__ import annotations

from typing import Any

from aubench.version import __version__

__all__ = ["__version__", "evaluate"]


def __getattr__(name: str) -> Any:
    """``aubench.evaluate`` (:func:`aubench.bench.api.evaluate`), imported on first use, so that
    ``import aubench`` (and ``aubench --help``) stays free of torch."""
    if name == "evaluate":
        from aubench.bench.api import evaluate

        return evaluate
    raise AttributeError(f"module 'aubench' has no attribute {name!r}")
