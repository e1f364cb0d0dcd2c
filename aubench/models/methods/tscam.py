"""TS-CAM (Gao et al., ICCV 2021) on a timm ViT/DeiT with a class token.

As the reference implements it (``div_classifiers/deit.py:146-183``): the patch tokens after the
final norm, on their (h, w) grid, go through a 3×3 convolution (padding 1) to class maps
M (B, K, h, w); the logits are their global average. The semantic-agnostic attention is the
class token's attention to the patches, averaged over heads and summed over the L blocks,

    A(i, j) = Σ_l (1/H) Σ_heads softmax(q_cls · Kᵀ / √d)[patch (i, j)]        (B, 1, h, w)

and the TS-CAM of class k is ``A ⊙ M_k`` (tapped at ``head.cams``, in evaluation mode only).

The attention is read from timm's own blocks: they run with the explicit (unfused) attention,
whose softmax passes through ``attn.attn_drop``, where a forward hook added for each evaluation
forward takes the class token's row (:class:`AttentionRecordingBlocks`).
"""

from __future__ import annotations

import torch
from torch import nn

from aubench.models.methods.common import MapTap, replace_classifier


class AttentionRecordingBlocks(nn.Sequential):
    """A ViT's blocks, same modules and names, that in evaluation mode also record
    :attr:`cls_attention` (B, N − prefix) = ``Σ_l mean_heads softmax(q_cls·Kᵀ/√d)[prefix:]``
    (None after a training forward)."""

    def __init__(self, blocks: nn.Sequential, num_prefix_tokens: int) -> None:
        super().__init__(*blocks)
        self.num_prefix_tokens = num_prefix_tokens
        self.cls_attention: torch.Tensor | None = None
        for block in self:
            block.attn.fused_attn = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.cls_attention = None
            return super().forward(tokens)
        rows: list[torch.Tensor] = []

        def record(module: nn.Module, args: tuple, probs: torch.Tensor) -> None:
            rows.append(probs[:, :, 0, self.num_prefix_tokens :].float().mean(1))

        handles = [block.attn.attn_drop.register_forward_hook(record) for block in self]
        try:
            tokens = super().forward(tokens)
        finally:
            for handle in handles:
                handle.remove()
        if len(rows) != len(self):
            raise ValueError(
                f"tscam: {len(rows)} of {len(self)} blocks exposed their attention; it needs "
                "timm's standard Attention (explicit softmax through attn_drop)"
            )
        self.cls_attention = torch.stack(rows).sum(0)
        return tokens


class TSCAMHead(nn.Module):
    """TS-CAM's head (module doc): tokens (B, N, C) → logits (B, K).

    ``attention`` is the model's :class:`AttentionRecordingBlocks`, held by reference only (it
    is registered as the model's ``blocks``).
    """

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        grid: tuple[int, int],
        num_prefix_tokens: int,
        attention: AttentionRecordingBlocks,
    ) -> None:
        super().__init__()
        self.grid, self.num_prefix_tokens = tuple(grid), num_prefix_tokens
        self.conv = nn.Conv2d(embed_dim, num_classes, 3, padding=1)
        self.cams = MapTap()
        self._attention = (attention,)  # a tuple: not registered as a second parent

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.num_prefix_tokens :]
        b, n, c = patches.shape
        h, w = self.grid
        if n != h * w:
            raise ValueError(f"tscam: {n} patch tokens do not fill the {h}×{w} patch grid")
        maps = self.conv(patches.transpose(1, 2).reshape(b, c, h, w))
        attention = self._attention[0].cls_attention
        if attention is not None:
            self.cams(tscam_maps(attention.reshape(b, 1, h, w), maps))
        return maps.mean((2, 3))


def tscam_maps(attention: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """TS-CAM: ``A ⊙ M`` with A (B, 1, h, w) and class maps M (B, K, h, w) → (B, K, h, w),
    in float32, M detached (the reference's ``feature_map = x_cams.detach()``)."""
    return attention.float() * maps.detach().float()


def attach_tscam(model: nn.Module, num_classes: int) -> nn.Module:
    """Turn timm ViT ``model`` into TS-CAM in place (module doc); returns it.

    Its blocks become :class:`AttentionRecordingBlocks` (same names) and its classifier
    (``head``, fed all tokens once pooling is removed) a :class:`TSCAMHead`.
    """
    blocks = getattr(model, "blocks", None)
    standard = isinstance(blocks, nn.Sequential) and all(
        hasattr(getattr(block, "attn", None), "attn_drop") for block in blocks
    )
    if getattr(model, "cls_token", None) is None or not standard:
        raise ValueError(
            "tscam needs a ViT/DeiT with a class token and timm's standard attention blocks"
        )
    prefix = int(model.num_prefix_tokens)
    model.blocks = AttentionRecordingBlocks(model.blocks, prefix)
    grid = tuple(model.patch_embed.grid_size)
    head = TSCAMHead(model.embed_dim, num_classes, grid, prefix, model.blocks)
    return replace_classifier(model, head, num_classes)
