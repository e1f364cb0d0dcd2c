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

With per-image AU evidence (``TrainConfig.evidence``) the same attention is also scored against
each image's evidence map, over the images whose evidence map is valid: ``att_cos@evidence``.

This is the trainer's own light evaluation; :mod:`aubench.metrics` holds the full metric family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from aubench.faces.evidence import EvidenceReason
from aubench.faces.heatmaps import CODEBOOK_REASONS, InvalidReason
from aubench.train.distributed import all_reduce_sum
from aubench.train.losses import COSINE_EPS, resize_clamped


def attention_cosine(attention: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """Per-image ATT-COS (B,) between attention (B, h, w) and heatmaps (B, H, W) (module doc)."""
    with torch.autocast(attention.device.type, enabled=False):
        upsampled = resize_clamped(attention, tuple(heatmaps.shape[-2:])).flatten(1)
        upsampled = upsampled - upsampled.amin(1, keepdim=True).clamp(max=0)
        cos = F.cosine_similarity(upsampled, heatmaps.float().flatten(1), dim=1, eps=COSINE_EPS)
    return torch.nan_to_num(cos, nan=0.0)


class _CosineSums:
    """Per-class ATT-COS sums of ``layers`` against one kind of heatmap, with the valid counts
    and the invalid reasons (codes of :class:`~aubench.faces.heatmaps.InvalidReason`)."""

    def __init__(self, num_classes: int, layers: int, device: torch.device) -> None:
        self.cos_sum = torch.zeros(layers, num_classes, dtype=torch.float64, device=device)
        self.valid_count = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.reasons = torch.zeros(len(InvalidReason), dtype=torch.float64, device=device)

    def update(self, labels, attentions: Sequence[torch.Tensor], heatmaps, valid, reasons) -> None:
        self.reasons += torch.bincount(reasons.long(), minlength=len(InvalidReason))
        weight = valid.to(torch.float64)
        self.valid_count.index_add_(0, labels, weight)
        for k, attention in enumerate(attentions):
            cos = attention_cosine(attention, heatmaps).double() * weight
            self.cos_sum[k].index_add_(0, labels, cos)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.cos_sum, self.valid_count, self.reasons

    def macro(self) -> torch.Tensor:
        """(layers,) the macro over the classes with a valid sample (NaN when none)."""
        seen = self.valid_count > 0
        per_class = self.cos_sum / self.valid_count.clamp_min(1)
        macro = (per_class * seen).sum(1) / seen.sum().clamp_min(1)
        return torch.where(seen.any(), macro, torch.full_like(macro, float("nan")))


class EvalAccumulator:
    """Streaming accuracy and per-class ATT-COS sums for ``layers``; reduce over ranks, compute.

    ``update`` takes one batch's logits (B, K), labels (B,), attention maps {layer: (B, h, w)},
    heatmaps (B, H, W), valid flags (B,) and :class:`~aubench.faces.heatmaps.InvalidReason`
    codes (B,), and with ``evidence`` the evidence maps' ``(heatmaps, valid, reasons)`` too;
    sums live on ``device`` and nothing synchronises with it until :meth:`compute`.
    """

    def __init__(
        self,
        num_classes: int,
        layers: Sequence[str],
        device: torch.device,
        evidence: bool = False,
    ) -> None:
        self.layers = list(layers)
        self.num_classes = num_classes
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.codebook = _CosineSums(num_classes, len(self.layers), device)
        self.evidence = _CosineSums(num_classes, len(self.layers), device) if evidence else None

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        attentions: Mapping[str, torch.Tensor],
        heatmaps: torch.Tensor,
        valid: torch.Tensor,
        reasons: torch.Tensor,
        evidence: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        labels = labels.to(self.count.device)
        self.correct += (logits.argmax(1) == labels).sum()
        self.count += labels.numel()
        maps = [attentions[layer] for layer in self.layers]
        self.codebook.update(labels, maps, heatmaps, valid, reasons)
        if (evidence is None) != (self.evidence is None):
            raise ValueError("give the evidence maps exactly when the accumulator scores them")
        if self.evidence is not None:
            self.evidence.update(labels, maps, *evidence)

    def reduce(self) -> None:
        """Sum the counts over DDP ranks (each rank saw a disjoint shard)."""
        sums = [s for s in (self.codebook, self.evidence) if s is not None]
        for tensor in (self.correct, self.count, *(t for s in sums for t in s.tensors())):
            all_reduce_sum(tensor)

    def compute(self) -> dict[str, float]:
        """``acc`` (%), ``n``, ``n_valid``, ``invalid/<reason>`` (counts of the samples left out
        of ATT-COS, by reason), and ``att_cos`` (first layer) plus ``att_cos/<layer>`` for every
        layer (NaN when no sample is valid); with evidence also ``n_valid@evidence``,
        ``invalid@evidence/<reason>``, ``att_cos@evidence`` and ``att_cos@evidence/<layer>``."""
        out = {
            "acc": float(100 * self.correct / self.count.clamp_min(1)),
            "n": int(self.count),
        }
        out |= self._scores(self.codebook, "", CODEBOOK_REASONS)
        if self.evidence is not None:
            evidence_reasons = [r for r in EvidenceReason if r]
            out |= self._scores(self.evidence, "@evidence", evidence_reasons)
        return out

    def _scores(self, sums: _CosineSums, suffix: str, reasons) -> dict[str, float]:
        out: dict[str, float] = {f"n_valid{suffix}": int(sums.valid_count.sum())}
        for reason in reasons:
            out[f"invalid{suffix}/{reason.name.lower()}"] = int(sums.reasons[reason])
        macro = sums.macro()
        for k, layer in enumerate(self.layers):
            out[f"att_cos{suffix}/{layer}"] = float(macro[k])
        if self.layers:
            out[f"att_cos{suffix}"] = out[f"att_cos{suffix}/{self.layers[0]}"]
        return out
