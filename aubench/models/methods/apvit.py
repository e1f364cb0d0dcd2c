"""APViT-style attentive pooling transformer (Xue et al., TAFFC 2022; the reference's
``diverse_models/apvit.py`` and ``apvit_vit_vit_siam_merge.py``): a CNN stem, attentive patch
pooling, then a ViT whose later blocks pool tokens too.

For an image, with the stem's feature map S (B, C_s, h, w) at stride ``stride``:

1. ``X = proj₁ₓ₁(S)`` (B, D, h, w) and the class-agnostic attention ``a = Σ_c |X_c|``
   (B, 1, h, w) (the reference's ``SUM_ABS_1``; tapped at ``attention``, the APViT map);
2. tokens ``X + P`` (P a learnt position embedding of the N = h·w patches); attentive patch
   pooling keeps the ``min(k, N)`` tokens of largest ``a``, in their spatial order;
3. a class token (+ its position embedding) is prepended and the ViT's first ``depth`` blocks run;
   each block of the second half (index ≥ depth // 2, the reference's keep rates
   ``[1]·4 + [r]·4`` for depth 8) keeps, between its attention and its MLP, the class token and
   the ``max(⌊(N' − 1)·r⌋, 1)`` tokens with the largest pre-softmax class-token attention
   summed over heads, ``Σ_heads q_cls·k_j/√d`` (the reference's ``SUM``);
4. final norm, class token, linear head → logits (B, K).

No map but ``a`` exists, and it is the same for every class: the paper reports no CAM-COS for
APViT for that reason.
"""

from __future__ import annotations

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block
from torch import nn

from aubench.models.methods.common import MapTap


def top_tokens(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (B, keep) of the ``keep`` largest ``scores`` (B, N) per row, in ascending order
    (the tokens keep their spatial order, as the reference's ``top_pool``)."""
    return scores.topk(keep, dim=1).indices.sort(1).values


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens[b, index[b]]``: (B, N, D) and (B, n) → (B, n, D)."""
    return tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))


def attention_with_scores(attn: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Attention`` on x (B, N, D), explicitly: ``(output (B, N, D), pre-softmax scores
    (B, heads, N, N) = q·kᵀ/√d)``; the output equals ``attn(x)``."""
    b, n, _ = x.shape
    gate = attn.gate(x).sigmoid() if attn.gate is not None else None
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    out = attn.attn_drop(scores.softmax(-1)) @ v
    out = attn.norm(out.transpose(1, 2).reshape(b, n, attn.attn_dim))
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), scores


def pooling_block(block: Block, x: torch.Tensor, rate: float) -> torch.Tensor:
    """A timm ViT ``Block`` that keeps, after its attention, the class token and the
    ``max(⌊(N − 1)·rate⌋, 1)`` tokens of largest summed class attention (module doc, step 3)."""
    out, scores = attention_with_scores(block.attn, block.norm1(x))
    x = x + block.drop_path1(block.ls1(out))
    keep = max(int((x.shape[1] - 1) * rate), 1)
    if keep < x.shape[1] - 1:
        index = top_tokens(scores[:, :, 0, 1:].sum(1), keep) + 1
        x = torch.cat([x[:, :1], gather_tokens(x, index)], dim=1)
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


class StemFeatures(nn.Module):
    """A timm ``features_only`` network's last feature map: (B, 3, H, W) → (B, C, h, w)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)[-1]


class APViT(nn.Module):
    """The APViT-style classifier (module doc).

    Args:
        stem: a timm ``features_only`` CNN ending at the pooled stage.
        vit: a timm ViT whose class token, first ``depth`` blocks and final norm are used.
        num_classes: K.
        grid: the stem's (h, w) output grid for the training image size.
        depth: transformer blocks kept.
        k: tokens kept by the attentive patch pooling.
        rate: keep rate of the pooling blocks (1: no token pooling in the ViT).
    """

    def __init__(
        self,
        stem: nn.Module,
        vit: nn.Module,
        num_classes: int,
        grid: tuple[int, int],
        depth: int = 8,
        k: int = 160,
        rate: float = 0.9,
    ) -> None:
        super().__init__()
        blocks = list(getattr(vit, "blocks", []))
        if getattr(vit, "cls_token", None) is None or not 1 <= depth <= len(blocks):
            raise ValueError(
                f"apvit needs a ViT with a class token and ≥ {depth} blocks, got "
                f"{type(vit).__name__} with {len(blocks)}"
            )
        if not all(type(b) is Block and type(b.attn) is Attention for b in blocks[:depth]):
            raise ValueError("apvit needs timm's standard ViT blocks (Block with Attention)")
        dim = vit.embed_dim
        self.num_classes, self.k, self.rate = num_classes, k, rate
        self.stem = StemFeatures(stem)
        self.proj = nn.Conv2d(stem.feature_info.channels()[-1], dim, 1)
        self.attention = MapTap()
        self.cls_token = vit.cls_token
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim))
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(blocks[:depth])
        self.norm = vit.norm
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.stem(images))
        attention = self.attention(x.abs().sum(1, keepdim=True))
        tokens = x.flatten(2).transpose(1, 2)
        if tokens.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"apvit: {tokens.shape[1]} patches, but it was built for "
                f"{self.pos_embed.shape[1]} (another image size?)"
            )
        tokens = tokens + self.pos_embed
        if self.k < tokens.shape[1]:
            tokens = gather_tokens(tokens, top_tokens(attention.flatten(1), self.k))
        cls = (self.cls_token + self.cls_pos_embed).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for index, block in enumerate(self.blocks):
            pooled = index >= len(self.blocks) // 2 and self.rate < 1
            x = pooling_block(block, x, self.rate) if pooled else block(x)
        return self.head(self.norm(x)[:, 0])
