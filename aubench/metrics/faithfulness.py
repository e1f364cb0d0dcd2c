"""Faithfulness: does the model's output depend on the pixels a map (or the AU regions) points at?

Every metric here runs the model on perturbed copies of the images, batched across samples and
perturbation steps (``batch_size`` inputs per forward, no per-image loop), under ``no_grad``. The
model is called as given: put it in ``eval()`` mode first. ``targets`` (B,) are the explained
classes (the paper's protocol: the ground truth). ``output`` chooses the scored quantity: the
softmax ``"probability"`` of the target (default) or its ``"logit"``. Images are in the model's
input space (mean/std normalised), so the default baseline 0 is the dataset-mean colour.

Only usable samples — ``valid`` and with a finite map — are run; the others score NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
from torch import nn

from aubench.metrics.base import check_threshold, check_valid, register, safe_ratio

__all__ = [
    "au_occlusion",
    "average_drop",
    "deletion_auc",
    "increase_in_confidence",
    "insertion_auc",
]

Output = Literal["probability", "logit"]
Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]


@register(
    "deletion_auc", higher_is_better=False, range=(0.0, 1.0), category="faithfulness", kind="model"
)
def deletion_auc(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    steps: int = 20,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 64,
    output: Output = "probability",
) -> torch.Tensor:
    """Deletion AUC (RISE; torch-cam's protocol): replace the map's highest pixels by the baseline
    in steps and integrate the target score over the fraction removed.

    Pixels are ranked by the map, highest first (stable: ties in row-major order). With P pixels
    and stride ``s = ⌈P / steps⌉``, the removed counts are ``0, s, 2s, … ∪ {P}``; the score
    curve is integrated by the trapezoid rule over the removed fraction in [0, 1]. Lower is
    better: a faithful map's pixels destroy the prediction fast.

    Args:
        model: maps (B', C, H, W) inputs to (B', classes) logits.
        images: (B, C, H, W) model inputs.
        maps: (B, H, W) at the images' resolution (resize them first; any scale).
        targets: (B,) int class per sample.
        valid: (B,) bool, None for all.
        steps: perturbation steps (≥ 1); ``steps + 1`` forwards per sample when P divides.
        baseline: value of removed pixels: a number, or a tensor broadcastable to ``images``
            (e.g. blurred images).
        batch_size: perturbed inputs per forward.
        output: ``"probability"`` or ``"logit"``.

    Returns:
        (B,) the area under the score curve (in [0, 1] for probabilities); NaN where not usable.
    """
    return _perturbation_auc(
        model, images, maps, targets, valid, steps, baseline, batch_size, output, insert=False
    )


@register(
    "insertion_auc", higher_is_better=True, range=(0.0, 1.0), category="faithfulness", kind="model"
)
def insertion_auc(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    steps: int = 20,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 64,
    output: Output = "probability",
) -> torch.Tensor:
    """Insertion AUC: start from the baseline and restore the map's highest pixels in steps;
    the mirror of :func:`deletion_auc` (same arguments, ranking and integration). Higher is
    better. Returns (B,); NaN where not usable.
    """
    return _perturbation_auc(
        model, images, maps, targets, valid, steps, baseline, batch_size, output, insert=True
    )


@register(
    "average_drop", higher_is_better=False, range=(0.0, 1.0), category="faithfulness", kind="model"
)
def average_drop(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    batch_size: int = 64,
    output: Output = "probability",
) -> torch.Tensor:
    """Drop in confidence (Grad-CAM++; averaged over images it is the "Average Drop"):
    ``max(0, y − o) / y`` with ``y = score(x)``, ``o = score(x ⊙ map)``.

    ``maps`` (B, H, W) must lie in [0, 1] (they multiply the input, broadcast over channels) at
    the images' resolution. torch-cam adds 1e-7 to y; here y ≤ 0 (possible only for logits) is
    NaN instead. Returns (B,) in [0, 1]; NaN where not usable.
    """
    base, masked = _confidence_pair(model, images, maps, targets, valid, batch_size, output)
    drop, defined = safe_ratio((base - masked).clamp(min=0), base)
    return torch.where(defined & (base > 0), drop, torch.nan)


@register(
    "increase_in_confidence",
    higher_is_better=True,
    range=(0.0, 1.0),
    category="faithfulness",
    kind="model",
)
def increase_in_confidence(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    batch_size: int = 64,
    output: Output = "probability",
) -> torch.Tensor:
    """Increase in confidence: ``1[o > y]`` with y, o as in :func:`average_drop` (its mean over
    images is the rate). Returns (B,) in {0, 1}; NaN where not usable."""
    base, masked = _confidence_pair(model, images, maps, targets, valid, batch_size, output)
    return torch.where(base.isnan(), torch.nan, (masked > base).to(base.dtype))


@register(
    "au_occlusion",
    higher_is_better=True,
    range=(-float("inf"), float("inf")),
    category="faithfulness",
    kind="model",
    scope="model",
)
def au_occlusion(
    model: Model,
    images: torch.Tensor,
    regions: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None = None,
    *,
    n_random: int = 8,
    region_threshold: float = 0.5,
    baseline: float | torch.Tensor = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    output: Output = "probability",
) -> torch.Tensor:
    """AU occlusion ratio: how much more the target score drops when the AU regions are masked
    than when a random region of the same size and shape is.

    ``ratio = (y − y_AU) / mean_r (y − y_r)``: y the score on the image, y_AU with the AU region
    R set to the baseline, y_r with R cyclically translated by a random non-zero offset
    (``torch.roll``; same pixel count and shape, wrapping at the borders), ``n_random`` draws per
    sample from a generator seeded with ``seed``. > 1: the model relies on the AU regions more
    than on random ones of that size; 1: no more than chance.

    Args:
        model, images, targets, valid, baseline, batch_size, output: as :func:`deletion_auc`.
        regions: (B, H, W) heatmaps or (B, K, H, W) per-AU maps; R = pixels where any of them
            is ``>= region_threshold``.
        n_random: random regions per sample.
        region_threshold: binarisation level in (0, 1].
        seed: seed of the random offsets.

    Returns:
        (B,); NaN where not usable, where R is empty, and where the mean random drop is ≤ 0
        (the ratio has no meaning then).
    """
    threshold = check_threshold("region_threshold", region_threshold)
    if not isinstance(regions, torch.Tensor) or regions.ndim not in (3, 4):
        shape = tuple(regions.shape) if isinstance(regions, torch.Tensor) else type(regions)
        raise ValueError(f"regions must be (B, H, W) or (B, K, H, W), got {shape}")
    region = regions >= threshold
    region = region.any(1) if region.ndim == 4 else region
    finite = regions.flatten(1).isfinite().all(1)
    images, targets, usable = _check_inputs(images, region, targets, valid, "regions")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive int, got {n_random!r}")
    ids = (usable & finite & region.flatten(1).any(1)).nonzero().squeeze(1)
    height, width = region.shape[1:]
    if height * width < 2:
        raise ValueError(f"regions need at least 2 pixels to be moved, got {height}×{width}")
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(1, height * width, (len(ids), n_random), generator=generator)
    offsets = offsets.to(images.device)
    shift_y, shift_x = offsets // width, offsets % width
    per_sample = n_random + 2  # the image, its AU region, n_random translated regions
    base = _expand_baseline(baseline, images)
    row, col = torch.arange(height, device=images.device), torch.arange(width, device=images.device)

    def make_inputs(jobs: torch.Tensor) -> torch.Tensor:
        sample, kind = ids[jobs // per_sample], jobs % per_sample
        draw = (kind - 2).clamp(min=0)
        moved = kind >= 2
        dy = torch.where(moved, shift_y[jobs // per_sample, draw], 0)
        dx = torch.where(moved, shift_x[jobs // per_sample, draw], 0)
        rows = (row - dy[:, None]) % height
        cols = (col - dx[:, None]) % width
        masks = region[sample[:, None, None], rows[:, :, None], cols[:, None, :]]
        masks &= (kind > 0)[:, None, None]
        return torch.where(masks[:, None], base[sample], images[sample])

    job_targets = targets[ids].repeat_interleave(per_sample)
    scores = _forward_jobs(model, make_inputs, job_targets, batch_size, output)
    scores = scores.view(len(ids), per_sample)
    drop_au = scores[:, 0] - scores[:, 1]
    drop_random = (scores[:, :1] - scores[:, 2:]).mean(1)
    ratio, _ = safe_ratio(drop_au, drop_random)
    ratio = torch.where(drop_random > 0, ratio, torch.nan)
    return _scatter(ratio, ids, images.shape[0])


# ---------------------------------------------------------------------------------------------


def _perturbation_auc(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None,
    steps: int,
    baseline: float | torch.Tensor,
    batch_size: int,
    output: Output,
    insert: bool,
) -> torch.Tensor:
    images, targets, usable = _check_inputs(images, maps, targets, valid, "maps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    ids = (usable & maps.flatten(1).isfinite().all(1)).nonzero().squeeze(1)
    pixels = maps.shape[1] * maps.shape[2]
    stride = -(-pixels // steps)
    counts = torch.arange(0, pixels, stride, device=images.device)
    counts = torch.cat([counts, counts.new_tensor([pixels])])
    order = maps[ids].flatten(1).argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(pixels, device=images.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)
    base = _expand_baseline(baseline, images)
    n_steps = len(counts)

    def make_inputs(jobs: torch.Tensor) -> torch.Tensor:
        slot, step = jobs // n_steps, jobs % n_steps
        sample = ids[slot]
        top = (ranks[slot] < counts[step, None]).view(-1, 1, *images.shape[2:])
        kept, dropped = images[sample], base[sample]
        return torch.where(top, kept, dropped) if insert else torch.where(top, dropped, kept)

    job_targets = targets[ids].repeat_interleave(n_steps)
    curves = _forward_jobs(model, make_inputs, job_targets, batch_size, output)
    fractions = counts.to(curves.dtype) / pixels
    area = torch.trapezoid(curves.view(len(ids), n_steps), fractions, dim=1)
    return _scatter(area, ids, images.shape[0])


def _confidence_pair(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None,
    batch_size: int,
    output: Output,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) scores of the images and of ``images ⊙ maps``; NaN where not usable."""
    images, targets, usable = _check_inputs(images, maps, targets, valid, "maps")
    ids = (usable & maps.flatten(1).isfinite().all(1)).nonzero().squeeze(1)
    chosen = maps[ids]
    if chosen.numel() and (chosen.min() < 0 or chosen.max() > 1):
        raise ValueError(
            f"maps must lie in [0, 1] (they multiply the input), got values in "
            f"[{chosen.min().item():.4g}, {chosen.max().item():.4g}]"
        )

    def make_inputs(jobs: torch.Tensor) -> torch.Tensor:
        sample = ids[jobs // 2]
        weight = torch.where((jobs % 2 == 1)[:, None, None], maps[sample], 1)
        return images[sample] * weight[:, None].to(images.dtype)

    job_targets = targets[ids].repeat_interleave(2)
    scores = _forward_jobs(model, make_inputs, job_targets, batch_size, output).view(len(ids), 2)
    size = images.shape[0]
    return _scatter(scores[:, 0], ids, size), _scatter(scores[:, 1], ids, size)


def _check_inputs(
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor | Iterable[bool] | None,
    maps_name: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated ``(images, targets (B,) long, usable (B,) bool)``; errors name the argument."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps)
        raise ValueError(f"{maps_name} must be a (B, H, W) tensor, got {shape}")
    if maps.device != images.device:
        raise ValueError(f"{maps_name} are on {maps.device} but images on {images.device}")
    expected = (images.shape[0], *images.shape[2:])
    if tuple(maps.shape) != expected:
        raise ValueError(
            f"{maps_name} must have shape (B, H, W) = {expected} to match images "
            f"{tuple(images.shape)}, got {tuple(maps.shape)} (resize the maps first)"
        )
    targets = torch.as_tensor(targets, device=images.device)
    if targets.shape != (images.shape[0],) or targets.is_floating_point():
        raise ValueError(
            f"targets must be ({images.shape[0]},) integer class ids, got shape "
            f"{tuple(targets.shape)} and dtype {targets.dtype}"
        )
    return images, targets.long(), check_valid(valid, images.shape[0], images.device)


def _expand_baseline(baseline: float | torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The baseline as a (B, C, H, W) view (expanded, not copied)."""
    value = torch.as_tensor(baseline, dtype=images.dtype, device=images.device)
    try:
        return value.expand_as(images)
    except RuntimeError:
        raise ValueError(
            f"baseline must be a number or broadcastable to images {tuple(images.shape)}, "
            f"got shape {tuple(value.shape)}"
        ) from None


def _forward_jobs(
    model: Model,
    make_inputs: Callable[[torch.Tensor], torch.Tensor],
    job_targets: torch.Tensor,
    batch_size: int,
    output: Output,
) -> torch.Tensor:
    """Scores (J,) of ``model(make_inputs(jobs))`` at ``job_targets``, ``batch_size`` jobs at a
    time; ``make_inputs`` maps job ids (J',) to inputs (J', C, H, W)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if output not in ("probability", "logit"):
        raise ValueError(f"output must be 'probability' or 'logit', got {output!r}")
    total = job_targets.shape[0]
    device = job_targets.device
    scores = []
    with torch.no_grad():
        for start in range(0, total, batch_size):
            jobs = torch.arange(start, min(start + batch_size, total), device=device)
            logits = model(make_inputs(jobs))
            if logits.ndim != 2 or logits.shape[0] != len(jobs):
                raise ValueError(
                    f"model must return (batch, classes) logits; got {tuple(logits.shape)} "
                    f"for a batch of {len(jobs)}"
                )
            classes = logits.shape[1]
            if start == 0 and not 0 <= job_targets.min() <= job_targets.max() < classes:
                raise ValueError(
                    f"targets must lie in [0, {classes}) for {classes} logits, got "
                    f"[{int(job_targets.min())}, {int(job_targets.max())}]"
                )
            values = logits.softmax(1) if output == "probability" else logits
            scores.append(values.gather(1, job_targets[jobs, None]).squeeze(1))
    return torch.cat(scores) if scores else torch.empty(0, device=device)


def _scatter(values: torch.Tensor, ids: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) with ``values`` at ``ids`` and NaN elsewhere."""
    out = torch.full((size,), torch.nan, dtype=values.dtype, device=values.device)
    return out.index_copy_(0, ids, values)
