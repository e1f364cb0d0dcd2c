"""Alignment of layer attention with AU heatmaps (shared/reference/paper-protocol.md §4), batched.

For a layer l with attention ``T_l`` (B, h, w) (the channel mean of its features, §4.2) and AU
heatmaps ``A`` (B, H, W):

1. ``A↓ = clamp(bilinear(A → h×w, align_corners=True, antialias=True), min_i A_i, max_i A_i)``,
   each sample clamped to its own pre-resize range (§4.3, ``scale_to_attention``);
2. a per-sample loss ``ℓ_i`` between ``T_l^i`` and ``A↓^i`` (§4.4):

   - ``cosine`` (the paper's): ``ℓ_i = 1 − cos(T_i, A↓_i)``,
     ``cos(u, v) = u·v / max(‖u‖‖v‖, 1e-8)`` over the flattened maps;
   - ``std-cosine``: the same after standardising the attention per sample,
     ``T̃_i = (T_i − mean T_i) / (std_unbiased T_i + 1e-4)``;
   - ``l1`` / ``l2``: ``mean_pixels |T_i − A↓_i|`` / ``mean_pixels (T_i − A↓_i)²`` on the raw
     attention (the paper's ``nn.L1Loss``/``nn.MSELoss``, whose mean over the valid samples'
     pixels equals the mean of these per-sample means);
3. ``L_l = Σ_i valid_i ℓ_i / Σ_i valid_i`` — the mean over valid samples only, 0 when none is
   (§4.5: not rescaled by the valid fraction);
4. ``L_align = λ · (1/|layers|) Σ_l L_l``.

Note on step 1: torch's antialiased downsampling with ``align_corners=True`` (what the paper calls)
centres output cell k on input ``(k + ½)·s − ½`` with the align-corners scale
``s = (H − 1)/(h − 1)``, so it is not mirror-symmetric (the last cells are truncated at the border).
It is kept for faithfulness; the tests pin its values.

Everything runs in float32 with autocast disabled, so the loss is the same under AMP. No Python
loop runs over samples, and nothing synchronises with the device (no boolean indexing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from aubench.models import layer_attention
from aubench.train.options import check_lambda, check_loss_name

#: ``CosineSimilarity(eps=1e-8)`` as in the paper (§4.4, §9.16).
COSINE_EPS = 1e-8
#: Added to the unbiased standard deviation by ``std-cosine`` (§4.4).
STD_EPS = 1e-4


def resize_clamped(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (B, H, W) → (B, h, w) float32 the paper's way (§4.3 for heatmaps, §5.2 for attention).

    Bilinear with ``align_corners=True`` and ``antialias=True``, then each sample clamped to its
    own pre-resize ``[min, max]`` (the antialiasing filter can overshoot slightly).
    """
    maps = maps.float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    flat = maps.flatten(1)
    low = flat.amin(1)[:, None, None]
    high = flat.amax(1)[:, None, None]
    resized = F.interpolate(
        maps[:, None], size=tuple(size), mode="bilinear", align_corners=True, antialias=True
    )[:, 0]
    return torch.clamp(resized, low, high)


def per_sample_alignment(
    attention: torch.Tensor, heatmaps: torch.Tensor, kind: str = "cosine"
) -> torch.Tensor:
    """Per-sample alignment losses (B,) between attention (B, h, w) and heatmaps (B, H, W).

    The heatmaps are resized to the attention's grid with :func:`resize_clamped`; ``kind`` is
    one of :data:`ALIGN_LOSSES` (formulas in the module doc). Computed in float32.
    """
    check_loss_name(kind)
    if attention.dim() != 3 or heatmaps.dim() != 3 or attention.shape[0] != heatmaps.shape[0]:
        raise ValueError(
            "attention and heatmaps must be (B, h, w) and (B, H, W) with the same B, got "
            f"{tuple(attention.shape)} and {tuple(heatmaps.shape)}"
        )
    with torch.autocast(attention.device.type, enabled=False):
        target = resize_clamped(heatmaps, tuple(attention.shape[-2:])).flatten(1)
        source = attention.float().flatten(1)
        if kind == "std-cosine":
            centred = source - source.mean(1, keepdim=True)
            source = centred / (source.std(1, keepdim=True) + STD_EPS)
        if kind in ("cosine", "std-cosine"):
            return 1.0 - F.cosine_similarity(source, target, dim=1, eps=COSINE_EPS)
        difference = source - target
        return (difference.abs() if kind == "l1" else difference.square()).mean(1)


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``Σ_i valid_i v_i / max(Σ_i valid_i, 1)``: the mean over valid samples, 0 when none is.

    Invalid entries are replaced (not multiplied) by 0, so a NaN there cannot leak in.
    """
    mask = valid.to(device=values.device, dtype=torch.bool)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1).to(values.dtype)


def alignment_loss(
    attentions: Sequence[torch.Tensor],
    heatmaps: torch.Tensor,
    valid: torch.Tensor,
    kind: str = "cosine",
    lam: float = 1.0,
) -> torch.Tensor:
    """``λ · (1/L) Σ_l mean_valid ℓ(T_l, A)`` over the L attention maps (each (B, h_l, w_l)).

    ``heatmaps`` (B, H, W) in [0, 1] and ``valid`` (B,) bool come from
    :func:`aubench.faces.heatmaps.au_heatmaps`. Returns a float32 scalar, 0 (still in the graph)
    when no sample is valid.
    """
    lam = check_lambda(lam)
    if not attentions:
        raise ValueError("alignment_loss needs at least one attention map")
    losses = [masked_mean(per_sample_alignment(t, heatmaps, kind), valid) for t in attentions]
    return lam * torch.stack(losses).mean()


class AlignmentLoss(torch.nn.Module):
    """The guided-training term on captured layer features.

    ``AlignmentLoss("cosine", lam=4)(features, heatmaps, valid)`` where ``features`` maps layer
    names to (B, C, h, w) maps (e.g. :meth:`aubench.models.FeatureCapture.features`): attention
    ``T_l = layer_attention(F_l, attention)`` (the channel mean by default, §4.2), then
    :func:`alignment_loss`. With several layers the per-layer losses are averaged (§4.5).
    """

    def __init__(self, kind: str = "cosine", lam: float = 1.0, attention: str = "mean") -> None:
        super().__init__()
        self.kind = check_loss_name(kind)
        self.lam = check_lambda(lam)
        self.attention = attention

    def forward(
        self, features: Mapping[str, torch.Tensor], heatmaps: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        maps = [layer_attention(f.float(), self.attention) for f in features.values()]
        return alignment_loss(maps, heatmaps, valid, self.kind, self.lam)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, lam={self.lam}, attention={self.attention!r}"
