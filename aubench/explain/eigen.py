"""Eigen-CAM and Eigen-Grad-CAM, computed natively from the single pass
(:mod:`aubench.explain.engine`), batched over images with one ``torch.linalg.svd`` call.

Eigen-CAM (Muhammad & Yeasin, 2020) projects each sample's activations on their first principal
component. With X (HW, C) the sample's activations at a layer, one row per position, centred
over positions (``X − mean_ij X``, as pytorch-grad-cam's ``get_2d_projection``; NaN set to 0)
and X = U Σ Vᵀ its SVD, the map is ``X v₁ = σ₁ u₁`` reshaped to (H, W). Eigen-Grad-CAM does the
same with the element-wise product g ⊙ A of gradients and activations.

The sign of a singular vector is arbitrary: pytorch-grad-cam's Eigen-CAM leaves it to LAPACK,
which may return a map that is the negative of the salient region (every position then
vanishes under the ReLU). aubench fixes it as pytorch-grad-cam's Seg-Eigen-CAM does (Chung &
Ying 2025, eq. 13): the map is negated when ``|min| > |max|``. So the map equals
pytorch-grad-cam's after that same sign rule (tests: ≤ 1e-4 after the default post-processing);
the adapters stay registered as ``gc:eigencam`` and ``gc:eigengradcam`` for such cross-checks.
The SVD runs in float64 on the maps' device (its cost is one batched (B, HW, C) decomposition).
"""

from __future__ import annotations

import torch

from aubench.explain.base import register
from aubench.explain.engine import LayerMethod, LayerPass


def first_component_maps(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H, W) float32: each sample's projection ``σ₁ u₁`` on the first
    principal component of its positions (centred, NaN → 0), sign-fixed so that ``max ≥ |min|``.
    """
    b, c, h, w = features.shape
    rows = torch.nan_to_num(features.double(), nan=0.0).reshape(b, c, h * w).transpose(1, 2)
    centred = rows - rows.mean(1, keepdim=True)
    left, singular, _ = torch.linalg.svd(centred, full_matrices=False)
    projection = left[..., 0] * singular[:, :1]
    flip = projection.amin(1).abs() > projection.amax(1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return projection.reshape(b, h, w).float()


@register("eigencam")
class EigenCAM(LayerMethod):
    """Eigen-CAM: first principal component of the activations A (no gradients)."""

    name = "eigencam"
    relu = True
    needs_gradients = False

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        return first_component_maps(p.activations)


@register("eigengradcam")
class EigenGradCAM(LayerMethod):
    """Eigen-Grad-CAM: first principal component of g ⊙ A."""

    name = "eigengradcam"
    relu = True

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        return first_component_maps(p.gradients * p.activations)
