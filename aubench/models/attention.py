"""Layer attention: a (B, C, H, W) activation reduced over channels to a (B, H, W) map.

- ``mean`` (the paper, §4.2 ``random_avg`` with p = 1): ``T = (1/C) Σ_c F_c``;
- ``abs-mean``: ``T = (1/C) Σ_c |F_c|`` (for layers whose activations are signed, e.g. ViT
  blocks or pre-activation features, where the plain mean cancels);
- ``max``: ``T = max_c F_c``.
No activation and no normalisation are applied (the paper's ``norm_none``).
"""

from __future__ import annotations

import torch

ATTENTION_KINDS = ("mean", "abs-mean", "max")


def layer_attention(features: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """Reduce ``features`` (B, C, H, W) over channels with ``kind`` → (B, H, W), same dtype."""
    if features.dim() != 4:
        raise ValueError(
            f"layer attention needs (B, C, H, W) features, got {tuple(features.shape)}"
        )
    if kind == "mean":
        return features.mean(1)
    if kind == "abs-mean":
        return features.abs().mean(1)
    if kind == "max":
        return features.amax(1)
    raise ValueError(f"unknown attention kind {kind!r}; choose one of {', '.join(ATTENTION_KINDS)}")
