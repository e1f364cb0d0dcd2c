"""The gradient family, computed natively from the single pass (:mod:`aubench.explain.engine`).

Notation, per sample and layer: A (C, H, W) the activations, g = ∂y_t/∂A the gradient of the
target logit, sums over positions (i, j). Every map is returned *raw*, before the ReLU that
each of these methods defines (``relu = True``: the default post-processing applies it), and
equals pytorch-grad-cam's ``get_cam_image`` for the same model, layer and target:

=====================  ==============================================================
method                 map
=====================  ==============================================================
``gradcam``            Σ_k w_k A_k,  w_k = (1/HW) Σ_ij g_kij
``gradcam++``          Σ_k w_k A_k,  w_k = Σ_ij α_kij ReLU(g_kij), α below
``xgradcam``           Σ_k w_k A_k,  w_k = Σ_ij g_kij A_kij / (Σ_ij A_kij + 1e-7)
``layercam``           Σ_k ReLU(g_k) ⊙ A_k
``hirescam``           Σ_k g_k ⊙ A_k
``gradcam-elementwise`` Σ_k ReLU(g_k ⊙ A_k)
=====================  ==============================================================

With a GAP + linear head, g_kij = W_tk / (HW) everywhere, so GradCAM = HiResCAM = CAM / (HW),
XGradCAM = CAM / (HW) up to the 1e-7, LayerCAM = Σ_k ReLU(W_tk) A_k / (HW).
"""

from __future__ import annotations

from functools import partial

import torch

from aubench.explain.base import register
from aubench.explain.engine import ChannelWeighted, LayerMethod, LayerPass

#: Denominator guards, as in pytorch-grad-cam.
GRADCAMPP_EPS = 1e-6
XGRADCAM_EPS = 1e-7
GRADCAMPP_VARIANTS = ("eq19", "belharbi2024")


class GradientMethod(LayerMethod):
    """A member of the gradient family: reads (A, g); its map is ReLU'd downstream."""

    relu = True


@register("gradcam")
class GradCAM(GradientMethod, ChannelWeighted):
    """Grad-CAM (Selvaraju et al., 2017): ``w_k = (1/HW) Σ_ij g_kij``."""

    name = "gradcam"

    def weights(self, p: LayerPass) -> torch.Tensor:
        return p.gradients.mean((2, 3))


@register("gradcam++")
class GradCAMPlusPlus(GradientMethod, ChannelWeighted):
    """Grad-CAM++ (Chattopadhay et al., 2018): ``w_k = Σ_ij α_kij ReLU(g_kij)``.

    ``variant="eq19"`` (default; pytorch-grad-cam's): the paper's eq. 19 with the exponential-
    output shortcut (2nd/3rd derivatives ≈ g², g³),
    ``α_kij = g²_kij / (2 g²_kij + (Σ_ab A_kab) g³_kij + 1e-6)``, α = 0 where g = 0, and no
    renormalisation of α over positions (the official TF code renormalises; torch-cam puts
    Σ_ab A_kab g³_kab in the denominator — both give other maps).

    ``variant="belharbi2024"``: the reference FER code (paper-protocol.md §6), whose α
    normalisation is a no-op, so α = g² and ``w_k = Σ_ij g²_kij ReLU(g_kij)`` (∝ ReLU(W_tk)³ for a
    GAP + linear head). Use it to reproduce that paper's GradCAM++ numbers; it is registered as
    ``gradcam++-belharbi2024`` too (its name in results), so suites and the command line reach it.
    """

    name = "gradcam++"

    def __init__(self, variant: str = "eq19"):
        if variant not in GRADCAMPP_VARIANTS:
            raise ValueError(
                f"gradcam++ variant {variant!r}: choose one of {', '.join(GRADCAMPP_VARIANTS)}"
            )
        self.variant = variant
        if variant != "eq19":
            self.name = f"gradcam++-{variant}"

    def weights(self, p: LayerPass) -> torch.Tensor:
        g = p.gradients
        g2 = g * g
        if self.variant == "eq19":
            sums = p.activations.sum((2, 3), keepdim=True)
            alpha = g2 / (2 * g2 + sums * (g2 * g) + GRADCAMPP_EPS)
            alpha = torch.where(g != 0, alpha, 0.0)
        else:
            alpha = g2
        return (alpha * g.clamp_min(0)).sum((2, 3))


register("gradcam++-belharbi2024", partial(GradCAMPlusPlus, "belharbi2024"))


@register("xgradcam")
class XGradCAM(GradientMethod, ChannelWeighted):
    """XGrad-CAM (Fu et al., 2020): ``w_k = Σ_ij g_kij A_kij / (Σ_ij A_kij + 1e-7)``."""

    name = "xgradcam"

    def weights(self, p: LayerPass) -> torch.Tensor:
        a = p.activations
        return (p.gradients * a).sum((2, 3)) / (a.sum((2, 3)) + XGRADCAM_EPS)


@register("layercam")
class LayerCAM(GradientMethod):
    """LayerCAM (Jiang et al., 2021): ``L = Σ_k ReLU(g_k) ⊙ A_k``."""

    name = "layercam"

    def terms(self, p: LayerPass) -> torch.Tensor:
        return p.gradients.clamp_min(0) * p.activations


@register("hirescam")
class HiResCAM(GradientMethod):
    """HiResCAM (Draelos & Carin, 2020): ``L = Σ_k g_k ⊙ A_k``."""

    name = "hirescam"

    def terms(self, p: LayerPass) -> torch.Tensor:
        return p.gradients * p.activations


@register("gradcam-elementwise")
class GradCAMElementWise(GradientMethod):
    """Element-wise Grad-CAM (pytorch-grad-cam): ``L = Σ_k ReLU(g_k ⊙ A_k)``."""

    name = "gradcam-elementwise"

    def terms(self, p: LayerPass) -> torch.Tensor:
        return (p.gradients * p.activations).clamp_min(0)


#: The natively computed gradient family, by registry name.
GRADIENT_METHODS = {
    cls.name: cls
    for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, GradCAMElementWise)
}
