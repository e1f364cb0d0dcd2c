"""Class-map heads: one map per class from the last features, a spatial pooling gives the logit.

Both heads take the backbone's unpooled features F (B, C, h, w) and make class maps M (B, K, h, w),
which are their CAMs (tapped at ``cams``):

- WILDCAT (Durand et al., CVPR 2017; the reference's ``poolings/wildcat.py``): a 1×1 convolution
  to K·M modality maps, averaged per class, ``M_k = (1/M) Σ_m W_km·F + b_k``; the score is the
  mean of the k⁺ largest values, optionally averaged with α × the mean of the k⁻ smallest
  (:func:`topk_pool`).
- PRM (the reference's ``poolings/core.py:384-416`` simplification of peak response maps): a
  1×1 convolution to K maps, a ``kernel``×``kernel`` max-pool of stride 1 (no padding), then
  global average pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aubench.models.methods.common import MapTap, init_head


def topk_pool(
    maps: torch.Tensor, kmax: float, kmin: float = 0.0, alpha: float = 0.0
) -> torch.Tensor:
    """WILDCAT's spatial pooling of class maps (B, K, h, w) → scores (B, K).

    With n = h·w positions, ``k⁺ = max(round(kmax·n), 1)`` and ``k⁻ = round(kmin·n)``::

        s = (1/k⁺) Σ_{k⁺ largest} z                              (k⁻ = 0 or α = 0)
        s = ½ [(1/k⁺) Σ_{k⁺ largest} z + α (1/k⁻) Σ_{k⁻ smallest} z]   (otherwise)

    The second form is WILDCAT's (and its reference code's, which halves the sum); the seed
    paper's code computes it but drops the result (``scores.add`` not in place,
    ``wildcat.py:95-99``), i.e. the first form: ``kmin = 0`` reproduces it.
    """
    flat = maps.flatten(2)
    n = flat.shape[-1]
    k_max = max(round(kmax * n), 1)
    k_min = round(kmin * n)
    scores = flat.topk(k_max, dim=-1).values.mean(-1)
    if k_min > 0 and alpha != 0:
        low = flat.topk(k_min, dim=-1, largest=False).values.mean(-1)
        scores = (scores + alpha * low) / 2
    return scores


class WildcatHead(nn.Module):
    """WILDCAT: ``modalities`` maps per class, averaged, then :func:`topk_pool`.

    ``conv`` (C → K·M, 1×1, no bias) and one bias per class: the reference's per-modality biases
    enter the class map only through their mean, so this is the same function with K instead of
    K·M bias parameters (a checkpoint's last bias is then the K-wide class bias).
    Input (B, C, h, w) → logits (B, K); ``cams`` taps the class maps (B, K, h, w).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        modalities: int = 5,
        kmax: float = 0.5,
        kmin: float = 0.0,
        alpha: float = 0.6,
    ) -> None:
        super().__init__()
        self.num_classes, self.modalities = num_classes, modalities
        self.kmax, self.kmin, self.alpha = kmax, kmin, alpha
        self.conv = nn.Conv2d(in_channels, num_classes * modalities, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.cams = MapTap()
        init_head(self)

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        """``M_k = (1/M) Σ_m conv(F)_{k,m} + b_k``: (B, C, h, w) → (B, K, h, w)."""
        _check_maps(features, "wildcat")
        b, _, h, w = features.shape
        maps = self.conv(features).view(b, self.num_classes, self.modalities, h, w).mean(2)
        return maps + self.bias[:, None, None].to(maps.dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.cams(self.class_maps(features))
        return topk_pool(maps, self.kmax, self.kmin, self.alpha)


class PRMHead(nn.Module):
    """PRM as the reference simplifies it: ``logits = GAP(maxpool_{k×k, stride 1}(conv₁ₓ₁(F)))``.

    Input (B, C, h, w) with h, w ≥ ``kernel`` → logits (B, K); ``cams`` taps the class maps
    ``conv₁ₓ₁(F)`` (B, K, h, w).
    """

    def __init__(self, in_channels: int, num_classes: int, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        self.cams = MapTap()
        init_head(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_maps(features, "prm")
        if min(features.shape[-2:]) < self.kernel:
            raise ValueError(
                f"prm: the {tuple(features.shape[-2:])} feature maps are smaller than its "
                f"{self.kernel}×{self.kernel} peak pooling; use larger maps (large_maps, a "
                "larger size) or a smaller prm_kernel"
            )
        maps = self.cams(self.conv(features))
        return F.max_pool2d(maps, self.kernel, stride=1).mean((2, 3))


def _check_maps(features: torch.Tensor, method: str) -> None:
    if features.dim() != 4:
        raise ValueError(
            f"method {method!r} needs (B, C, H, W) feature maps before the classifier, got "
            f"{tuple(features.shape)}; use a CNN backbone"
        )
