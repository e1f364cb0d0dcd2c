"""ACoL (Zhang et al., CVPR 2018): two classifier branches, the second on erased features.

As the reference implements it (``div_classifiers/parts/acol.py:57-132``, after
``xiaomengyc/ACoL`` and ``clovaai/wsolevaluation``): each branch is
``conv3×3(C→W) · ReLU · conv3×3(W→W) · ReLU · conv1×1(W→K)`` on the features F (B, C, h, w)
(optionally with a BatchNorm after each 3×3 convolution: :func:`branch`), its logits the global
average of its class maps. With ``a = minmax(M^A_y)`` the min-max normalised map of branch A for
class y (the label while training; the given target, or A's prediction, otherwise):

    erase(F) = F ⊙ 1[a < threshold]        (positions where a ≥ threshold are zeroed)
    M^B = B(erase(F))
    CAM = max(minmax(M^A), minmax(M^B))    (per class; tapped at ``cams``)

The model's logits are A's; B's are kept for the loss ``CE(A) + CE(B)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from aubench.models.methods.common import MapTap, init_head, minmax_maps


def branch(in_channels: int, width: int, num_classes: int, norm: bool = False) -> nn.Sequential:
    """One ACoL classifier: (B, C, h, w) → class maps (B, K, h, w).

    ``norm`` puts a BatchNorm after each 3×3 convolution (not in the reference, whose branches
    sit on a pretrained backbone): from scratch, the unnormalised branches' first ReLUs all die
    within the first optimiser steps (measured: every unit of a 256-wide branch on a random
    ResNet-10-T after 10 AdamW steps at lr 2e-3; the loss then stays at 2 ln K).
    """
    layers: list[nn.Module] = []
    for channels in (in_channels, width):
        layers += [nn.Conv2d(channels, width, 3, padding=1)]
        layers += [nn.BatchNorm2d(width)] if norm else []
        layers += [nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(width, num_classes, 1))


def erase_mask(maps: torch.Tensor, classes: torch.Tensor, threshold: float) -> torch.Tensor:
    """``1[minmax(maps[b, classes_b]) < threshold]`` as (B, 1, h, w) in ``maps``' dtype.

    ``maps`` (B, K, h, w) are branch A's class maps, ``classes`` (B,) the class erased for each
    sample. A constant map normalises to 0 and is never erased (the reference's NaN compares
    false). No gradient flows through the mask.
    """
    chosen = maps.detach()[torch.arange(maps.shape[0], device=maps.device), classes]
    return (minmax_maps(chosen) < threshold).to(maps.dtype)[:, None]


class AcolHead(nn.Module):
    """ACoL's two branches (module doc). Input (B, C, h, w) → branch A's logits (B, K).

    The class erased for branch B is, in order: the labels set with :meth:`erasing`, else A's
    argmax. After each forward, :attr:`logits_b` holds branch B's logits (B, K).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        threshold: float = 0.1,
        width: int = 1024,
        norm: bool = False,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.branch_a = branch(in_channels, width, num_classes, norm)
        self.branch_b = branch(in_channels, width, num_classes, norm)
        self.cams = MapTap()
        self.labels: torch.Tensor | None = None
        self.logits_b: torch.Tensor | None = None
        init_head(self)

    @contextmanager
    def erasing(self, labels: torch.Tensor | None) -> Iterator[AcolHead]:
        """Erase for ``labels`` (B,) (None: A's prediction) in the forward passes of the block."""
        previous, self.labels = self.labels, labels
        try:
            yield self
        finally:
            self.labels = previous

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 4:
            raise ValueError(
                "method 'acol' needs (B, C, H, W) feature maps before the classifier, got "
                f"{tuple(features.shape)}; use a CNN backbone"
            )
        maps_a = self.branch_a(features)
        logits_a = maps_a.mean((2, 3))
        classes = self.labels if self.labels is not None else logits_a.detach().argmax(1)
        maps_b = self.branch_b(features * erase_mask(maps_a, classes, self.threshold))
        self.logits_b = maps_b.mean((2, 3))
        self.cams(torch.maximum(minmax_maps(maps_a.detach()), minmax_maps(maps_b.detach())))
        return logits_a
