"""aubench: AU heatmaps, AU-guided training and interpretability benchmarks for facial-expression
recognition (after Belharbi et al., "Guided Interpretable Facial Expression Recognition via
Spatial Action Unit Cues", FG 2024).

The library API starts at :func:`aubench.faces.heatmaps.au_heatmaps` (AU heatmaps from landmarks
and labels) and :class:`aubench.data.synthetic.SyntheticFaces` (the built-in dataset).
"""

__version__ = "0.1.0"
