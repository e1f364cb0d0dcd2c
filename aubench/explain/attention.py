"""Layer attention as an explainer: the channel reduction of a layer's activations.

``T = (1/C) Σ_k A_k`` (``kind="mean"``, the paper's ATT maps), or ``(1/C) Σ_k |A_k|``
(``"abs-mean"``) or ``max_k A_k`` (``"max"``); see :func:`aubench.models.layer_attention`.
Class-agnostic (the targets are resolved, for their checks, but do not change the map); no
gradients; no ReLU (the paper shifts attention maps by their minimum instead, which min-max
normalisation subsumes).
"""

from __future__ import annotations

import torch

from aubench.explain.base import register
from aubench.explain.engine import LayerMethod, LayerPass
from aubench.models import ATTENTION_KINDS, layer_attention


@register("attention")
class Attention(LayerMethod):
    """Channel ``kind`` reduction of the layer's activations, (B, C, H, W) → (B, H, W)."""

    name = "attention"
    needs_gradients = False

    def __init__(self, kind: str = "mean"):
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind {kind!r}: choose one of {', '.join(ATTENTION_KINDS)}")
        self.kind = kind

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        return layer_attention(p.activations, self.kind)
