"""ADL, attention-based dropout layers (Choe & Shim, CVPR 2019), inserted into a CNN backbone.

At train time an ADL layer multiplies its input F (B, C, H, W) by one of two maps of its
self-attention ``a = mean_c F`` (B, 1, H, W) (the reference's ``parts/adl.py``):

    importance = sigmoid(a)
    drop       = 1[a < threshold · max_hw a]        (per sample)

the drop mask with probability ``drop_rate`` (one draw per layer and forward, shared by the
batch), the importance map otherwise. At evaluation it is the identity, so the CAM of the plain
GAP + linear head applies unchanged.

:func:`insert_adl` puts the layers into the stages' ``nn.Sequential`` after the given blocks, as
both references do (``_ADL_POSITION = [[], [], [], [0], [0, 2]]``: after block 0 of layer 3 and
blocks 0 and 2 of ResNet-50's layer 4), which shifts the names of the blocks that follow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

_POSITION = re.compile(r"^(?P<stage>.+)\.(?P<index>-?\d+)$")


def adl_maps(features: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(importance, drop)`` maps (B, 1, H, W) of features (B, C, H, W) (module doc)."""
    attention = features.mean(1, keepdim=True)
    peak = attention.flatten(1).amax(1)[:, None, None, None]
    drop = (attention < threshold * peak).to(features.dtype)
    return torch.sigmoid(attention), drop


class ADL(nn.Module):
    """One attention-based dropout layer (module doc); no parameters."""

    def __init__(self, drop_rate: float = 0.4, threshold: float = 0.1) -> None:
        super().__init__()
        if not (0 <= drop_rate <= 1 and 0 <= threshold <= 1):
            raise ValueError(
                f"ADL drop_rate and threshold must be in [0, 1], got {drop_rate}, {threshold}"
            )
        self.drop_rate, self.threshold = drop_rate, threshold

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        if features.dim() != 4:
            raise ValueError(f"ADL needs (B, C, H, W) features, got {tuple(features.shape)}")
        importance, drop = adl_maps(features, self.threshold)
        # one draw from the global CPU generator: no device sync, resumable with the RNG state
        use_drop = bool(torch.rand(()) < self.drop_rate)
        return features * (drop if use_drop else importance)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


def adl_positions(model: nn.Module, specs: Sequence[str]) -> dict[str, list[int]]:
    """Stage module name → sorted block indices (non-negative) after which to insert ADL.

    Each spec is ``STAGE.INDEX`` with STAGE an ``nn.Sequential`` of ``model`` (``layer4``,
    ``stages.2.blocks``) and INDEX a block of it, negative from the end (``layer4.-1``: its last
    block); duplicates collapse. ``ValueError`` names a spec that is not one.
    """
    modules = dict(model.named_modules())
    positions: dict[str, set[int]] = {}
    for spec in specs:
        match = _POSITION.match(spec.strip())
        stage = modules.get(match["stage"]) if match else None
        if not isinstance(stage, nn.Sequential):
            raise ValueError(
                f"ADL position {spec!r}: expected STAGE.INDEX with STAGE an nn.Sequential of "
                f"{type(model).__name__} (e.g. layer4.0, layer4.-1)"
            )
        index = int(match["index"])
        if not -len(stage) <= index < len(stage):
            raise ValueError(f"ADL position {spec!r}: {match['stage']} has {len(stage)} blocks")
        positions.setdefault(match["stage"], set()).add(index % len(stage))
    return {stage: sorted(indices) for stage, indices in positions.items()}


def insert_adl(
    model: nn.Module, positions: dict[str, list[int]], drop_rate: float, threshold: float
) -> nn.Module:
    """Insert an :class:`ADL` after each block of :func:`adl_positions`' result (in place).

    Stage ``layer4`` = [b0, b1, b2] with positions [0, 2] becomes [b0, ADL, b1, b2, ADL]: the
    modules after an inserted layer move one index up (``layer4.2`` is then b1).
    """
    for stage_name, indices in positions.items():
        stage = model.get_submodule(stage_name)
        for index in reversed(indices):
            stage.insert(index + 1, ADL(drop_rate, threshold))
    return model
