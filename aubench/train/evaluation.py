"""Per-epoch evaluation inside the trainer: accuracy and the paper's ATT-COS (§5.1–5.2).

ATT-COS of one image at layer l (shared/reference/paper-protocol.md §5.2): the layer attention
``T = mean_c F_l`` (h, w) is upsampled to the heatmap's size (H, W) with bilinear
``align_corners=True`` + antialias and clamped to T's own ``[min, max]``
(:func:`~aubench.train.losses.resize_clamped`), shifted by ``−min`` when its minimum is negative
(so it is ≥ 0), and compared with the AU heatmap A:

    cos_i = T↑_i · A_i / max(‖T↑_i‖ ‖A_i‖, 1e-8)        (NaN → 0)

Aggregation: the mean over the valid samples of each ground-truth class, then the unweighted mean
over the classes that have valid samples — the non-neutral ones, since neutral maps are never
valid (the paper's macro "Average" row). Accuracy is top-1 over every sample, in percent.

This is the trainer's own light evaluation; :mod:`aubench.metrics` holds the full metric family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from aubench.faces.heatmaps import InvalidReason
from aubench.train.distributed import all_reduce_sum
from aubench.train.losses import COSINE_EPS, resize_clamped


def attention_cosine(attention: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """Per-image ATT-COS (B,) between attention (B, h, w) and heatmaps (B, H, W) (module doc)."""
    with torch.autocast(attention.device.type, enabled=False):
        upsampled = resize_clamped(attention, tuple(heatmaps.shape[-2:])).flatten(1)
        upsampled = upsampled - upsampled.amin(1, keepdim=True).clamp(max=0)
        cos = F.cosine_similarity(upsampled, heatmaps.float().flatten(1), dim=1, eps=COSINE_EPS)
    return torch.nan_to_num(cos, nan=0.0)


class EvalAccumulator:
    """Streaming accuracy and per-class ATT-COS sums for ``layers``; reduce over ranks, compute.

    ``update`` takes one batch's logits (B, K), labels (B,), attention maps {layer: (B, h, w)},
    heatmaps (B, H, W), valid flags (B,) and :class:`~aubench.faces.heatmaps.InvalidReason`
    codes (B,); sums live on ``device`` and nothing synchronises with it until :meth:`compute`.
    """

    def __init__(self, num_classes: int, layers: Sequence[str], device: torch.device) -> None:
        self.layers = list(layers)
        self.num_classes = num_classes
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.cos_sum = torch.zeros(
            len(self.layers), num_classes, dtype=torch.float64, device=device
        )
        self.valid_count = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.reasons = torch.zeros(len(InvalidReason), dtype=torch.float64, device=device)

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        attentions: Mapping[str, torch.Tensor],
        heatmaps: torch.Tensor,
        valid: torch.Tensor,
        reasons: torch.Tensor,
    ) -> None:
        labels = labels.to(self.count.device)
        self.reasons += torch.bincount(reasons.long(), minlength=len(InvalidReason))
        self.correct += (logits.argmax(1) == labels).sum()
        self.count += labels.numel()
        weight = valid.to(torch.float64)
        self.valid_count.index_add_(0, labels, weight)
        for k, layer in enumerate(self.layers):
            cos = attention_cosine(attentions[layer], heatmaps).double() * weight
            self.cos_sum[k].index_add_(0, labels, cos)

    def reduce(self) -> None:
        """Sum the counts over DDP ranks (each rank saw a disjoint shard)."""
        for tensor in (self.correct, self.count, self.cos_sum, self.valid_count, self.reasons):
            all_reduce_sum(tensor)

    def compute(self) -> dict[str, float]:
        """``acc`` (%), ``n``, ``n_valid``, ``invalid/<reason>`` (counts of the samples left out
        of ATT-COS, by reason), and ``att_cos`` (first layer) plus ``att_cos/<layer>`` for every
        layer (NaN when no sample is valid)."""
        seen = self.valid_count > 0
        per_class = self.cos_sum / self.valid_count.clamp_min(1)
        macro = (per_class * seen).sum(1) / seen.sum().clamp_min(1)
        macro = torch.where(seen.any(), macro, torch.full_like(macro, float("nan")))
        out = {
            "acc": float(100 * self.correct / self.count.clamp_min(1)),
            "n": int(self.count),
            "n_valid": int(self.valid_count.sum()),
        }
        for reason in InvalidReason:
            if reason:
                out[f"invalid/{reason.name.lower()}"] = int(self.reasons[reason])
        for k, layer in enumerate(self.layers):
            out[f"att_cos/{layer}"] = float(macro[k])
        if self.layers:
            out["att_cos"] = out[f"att_cos/{self.layers[0]}"]
        return out
