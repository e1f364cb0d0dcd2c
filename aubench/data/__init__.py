"""Datasets yielding the Sample contract (DESIGN.md) and batch assembly with AU heatmaps."""
