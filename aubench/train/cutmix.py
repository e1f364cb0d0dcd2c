"""CutMix (Yun et al., ICCV 2019) on a training batch, AU heatmaps included.

As the reference does it (``div_classifiers/parts/cutmix.py``, ``train_wsol.py:672-705``, after
``clovaai/CutMix-PyTorch``): with probability ``prob`` a batch is mixed; ``λ ~ Beta(β, β)``, a
random permutation π of the batch and one box for the whole batch:

    cut = √(1 − λ),  (h, w) = (⌊H·cut⌋, ⌊W·cut⌋),  centre (r, c) uniform over the pixels,
    rows [clip(r − h//2), clip(r + h//2)),  columns [clip(c − w//2), clip(c + w//2))

(clipped to the image). Inside the box, every sample's image *and its AU heatmap* (built from
the landmarks beforehand, so the box cuts the maps exactly as it cuts the pixels) are replaced by
those of sample π(i); the classification loss becomes

    λ' · CE(logits, y) + (1 − λ') · CE(logits, y_π),    λ' = 1 − box area / (H·W)

The mixed heatmap's ``valid`` flag: valid iff every face contributing pixels to it has a valid
map, i.e. ``valid_i`` alone for an empty box, ``valid_π(i)`` for a box covering the image, and
``valid_i ∧ valid_π(i)`` otherwise — the reference's rule (an ``inf`` invalid map contaminates
whatever it is pasted into or around, ``align_to_heatmap.py:417-427``). A pasted region of a
neutral face is thus never used as "no AU here" evidence. The mixed batch drops ``landmarks``
and ``invalid_reason``, which no longer describe its images.

Random draws use torch's global generator (seeded per epoch and saved in checkpoints by the
training loop), so a resumed run mixes the same boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Box:
    """Rows ``[top, bottom)`` and columns ``[left, right)`` of an image (H, W)."""

    top: int
    bottom: int
    left: int
    right: int

    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)


def cutmix_box(size: tuple[int, int], lam: float, centre: tuple[int, int]) -> Box:
    """The reference's ``rand_bbox``: the box of side ``⌊side·√(1 − lam)⌋`` centred at
    ``centre`` = (row, column), clipped to the image of ``size`` = (H, W)."""
    (height, width), cut = size, (1.0 - lam) ** 0.5
    half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
    row, col = centre
    return Box(
        max(row - half_h, 0),
        min(row + half_h, height),
        max(col - half_w, 0),
        min(col + half_w, width),
    )


def paste(tensor: torch.Tensor, order: torch.Tensor, box: Box) -> torch.Tensor:
    """A copy of ``tensor`` (B, …, H, W) with ``box`` of sample i taken from sample
    ``order[i]``."""
    mixed = tensor.clone()
    rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
    mixed[..., rows, cols] = tensor[order][..., rows, cols]
    return mixed


def mixed_valid(
    valid: torch.Tensor, order: torch.Tensor, box: Box, size: tuple[int, int]
) -> torch.Tensor:
    """The mixed samples' heatmap validity (B,) bool (module doc)."""
    if box.area() == 0:
        return valid
    if box.area() == size[0] * size[1]:
        return valid[order]
    return valid & valid[order]


def cutmix(batch: dict, beta: float, prob: float = 1.0) -> dict:
    """``batch`` (``image`` (B, 3, H, W), ``label`` (B,), optional ``heatmap`` (B, H, W) and
    ``valid`` (B,)) mixed by CutMix (module doc), with ``label_b`` (B,) = y_π and ``lam`` = λ'
    (a float) added; or ``batch`` itself when this batch is not mixed (probability 1 − prob)."""
    if not torch.rand(()) < prob:
        return batch
    lam = float(torch.distributions.Beta(beta, beta).sample())
    images = batch["image"]
    size = tuple(images.shape[-2:])
    order = torch.randperm(images.shape[0]).to(images.device)
    centre = (int(torch.randint(size[0], ())), int(torch.randint(size[1], ())))
    box = cutmix_box(size, lam, centre)
    mixed = {
        **{k: v for k, v in batch.items() if k not in ("landmarks", "invalid_reason")},
        "image": paste(images, order, box),
        "label_b": batch["label"][order],
        "lam": 1.0 - box.area() / (size[0] * size[1]),
    }
    if "heatmap" in batch:
        mixed["heatmap"] = paste(batch["heatmap"], order, box)
        mixed["valid"] = mixed_valid(batch["valid"], order, box, size)
    return mixed
