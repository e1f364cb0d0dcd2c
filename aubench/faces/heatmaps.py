"""Batched AU heatmaps: (B, 68, 2) landmarks + (B,) labels → (B, H, W) maps in [0, 1] + validity.

``A = minmax( max_{k ∈ AUs(label)} R_k )``, where R_k is AU k's smooth region drawn by the chosen
region model. This module validates the inputs, resolves the codebook into each sample's AUs and
dispatches to the model registered under ``regions=``
(:mod:`aubench.faces.region_registry`; the interface is :mod:`aubench.faces.region_model`). No
Python loop runs over samples; everything stays on the landmarks' device.

Built-in region models (``regions=``):

- ``"default"``: face-scaled Gaussian blobs per AU, resolution independent
  (:mod:`aubench.faces.gaussian_regions`). Default codebook: ``belharbi2024-fixed``.
- ``"belharbi2024"``: the paper's ellipses, 28×28 sampling, box blur and upsampling
  (:mod:`aubench.faces.belharbi2024`). Default codebook: ``belharbi2024``.
- ``"landmark-gaussians"``: one Gaussian per landmark, label-agnostic (neutral is valid).
- ``"generic"``: the default geometry with every AU of the FACS table, whatever the label.

Validity (DESIGN.md): a sample is invalid when its label has no AUs in the codebook (neutral), when
any landmark is non-finite, or when no AU region of its label lies inside the image (for
``belharbi2024`` also when every region vanishes in the 28×28 sampling). Invalid samples get an
all-zero map and ``valid=False``; :func:`invalid_reasons` says why, :func:`count_reasons` tallies
it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np
import torch

from aubench.faces.codebook import Codebook, Expression, get_codebook
from aubench.faces.landmarks import as_landmarks, finite_faces
from aubench.faces.region_model import FaceBatch, RegionModel
from aubench.faces.region_registry import get_region_model


class InvalidReason(IntEnum):
    """Why a sample's heatmap is invalid (0 = valid). Codebook maps (:func:`invalid_reasons`)
    have the reasons of :data:`CODEBOOK_REASONS`; the maps of per-image AU evidence
    (:func:`aubench.faces.evidence.evidence_heatmaps`) those of
    :class:`~aubench.faces.evidence.EvidenceReason`, with the same codes."""

    VALID = 0
    NO_AUS = 1  # the label has no AUs in the codebook (neutral)
    NO_LANDMARKS = 2  # a landmark is non-finite (failed detection)
    OUTSIDE = 3  # no AU region of the label (of a present AU) lies inside the image
    NO_PRESENT_AUS = 4  # evidence: the image shows no AU (all absent, or not coded)
    NO_REGION_AUS = 5  # evidence: AUs are present, but none that aubench has a region for


#: The reasons a codebook map can be invalid for (:func:`invalid_reasons`).
CODEBOOK_REASONS: tuple[InvalidReason, ...] = (
    InvalidReason.NO_AUS,
    InvalidReason.NO_LANDMARKS,
    InvalidReason.OUTSIDE,
)


class Heatmaps(NamedTuple):
    """``heatmaps`` (B, H, W) in [0, 1] (zeros where invalid) and ``valid`` (B,) bool."""

    heatmaps: torch.Tensor
    valid: torch.Tensor


def au_heatmaps(
    landmarks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | list[int],
    size: int | tuple[int, int],
    codebook: str | Codebook | dict | None = None,
    regions: str | RegionModel = "default",
    jaw: bool = False,
) -> Heatmaps:
    """AU heatmaps for a batch of faces.

    Args:
        landmarks: (B, 68, 2) (x, y) pixels in the frame of an image of ``size``; a (68, 2) face
            is a batch of one. Non-finite rows mark failed detections.
        labels: (B,) canonical expression ids (0 neutral … 7 contempt).
        size: (H, W) of the image, or one int for a square.
        codebook: name, mapping, YAML path or :class:`Codebook`; None → the region model's own.
        regions: a name in :data:`~aubench.faces.region_registry.REGION_MODELS`, or a
            :class:`~aubench.faces.region_model.RegionModel`.
        jaw: landmark-gaussians only: keep the 17 jaw points.

    Returns:
        :class:`Heatmaps` ``(heatmaps (B, H, W) float in [0, 1], valid (B,) bool)``, on the
        landmarks' device, float64 for float64 landmarks and float32 otherwise.
    """
    model = get_region_model(regions)
    faces, _ = _prepare(landmarks, labels, size, codebook, model)
    return Heatmaps(*model.maps(faces, jaw=jaw))


def per_au_heatmaps(
    landmarks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | list[int],
    size: int | tuple[int, int],
    codebook: str | Codebook | dict | None = None,
    regions: str | RegionModel = "default",
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Each AU's own region map, before the max: ``(maps (B, K, H, W) in [0, 1], aus)``.

    ``aus`` are the codebook's AUs (K of them, in :data:`~aubench.faces.codebook.ALL_AUS`
    order); channel k of a sample is zero unless AU ``aus[k]`` belongs to its label and lies inside
    the image. Not normalised per sample: the default model's blobs peak at 1 at their centres, the
    paper's ellipses are 1 inside.
    Supports the region models with AUs (a ``default_codebook``): ``default``, ``generic`` and
    ``belharbi2024`` among the built-ins.
    """
    model = get_region_model(regions)
    if model.default_codebook is None:
        raise ValueError(f"regions={model.name!r} has no AUs; per-AU maps need an AU model")
    faces, book = _prepare(landmarks, labels, size, codebook, model)
    return model.per_au_maps(faces, book.aus), book.aus


def invalid_reasons(
    landmarks: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    codebook: str | Codebook | dict | None = None,
    regions: str | RegionModel = "default",
) -> torch.Tensor:
    """(B,) :class:`InvalidReason` codes for the ``valid`` flags returned by :func:`au_heatmaps`.

    Precedence: no AUs (neutral) > non-finite landmarks > outside the image.
    """
    points = as_landmarks(landmarks)
    label_ids = _check_labels(labels, points)
    valid = torch.as_tensor(valid, device=points.device)
    if valid.shape != label_ids.shape or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape {tuple(label_ids.shape)} (au_heatmaps' flags), "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )
    model = get_region_model(regions)
    reason = torch.where(valid, 0, int(InvalidReason.OUTSIDE))
    reason = torch.where(finite_faces(points), reason, int(InvalidReason.NO_LANDMARKS))
    if model.default_codebook is not None:
        book = get_codebook(codebook or model.default_codebook)
        has_aus = book.matrix(points.device)[label_ids].any(dim=1)
        reason = torch.where(has_aus, reason, int(InvalidReason.NO_AUS))
    return reason


def count_reasons(reasons: torch.Tensor) -> dict[str, int]:
    """Counts of invalid samples by reason name (valid samples are not counted)."""
    counts = torch.bincount(reasons.flatten().long().cpu(), minlength=len(InvalidReason))
    return {r.name.lower(): int(counts[r]) for r in InvalidReason if r and counts[r]}


# ---------------------------------------------------------------------------------------------
# input checks


def _check_labels(labels, points: torch.Tensor) -> torch.Tensor:
    """(B,) long class ids on the landmarks' device; errors name the bad shape or value."""
    label_ids = torch.as_tensor(labels, device=points.device)
    if label_ids.ndim == 0:
        label_ids = label_ids.reshape(1)
    if label_ids.ndim != 1 or label_ids.shape[0] != points.shape[0]:
        raise ValueError(
            f"labels must have shape ({points.shape[0]},) to match landmarks "
            f"{tuple(points.shape)}, got {tuple(label_ids.shape)}"
        )
    if label_ids.is_floating_point() or label_ids.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got dtype {label_ids.dtype}")
    label_ids = label_ids.long()
    bad = (label_ids < 0) | (label_ids >= len(Expression))
    if bad.any():
        raise ValueError(
            f"labels out of range 0..{len(Expression) - 1}: "
            f"{sorted(set(label_ids[bad].tolist()))[:10]} (canonical order: "
            + ", ".join(e.name.lower() for e in Expression)
            + ")"
        )
    return label_ids


def _prepare(
    landmarks, labels, size, codebook, model: RegionModel
) -> tuple[FaceBatch, Codebook | None]:
    """Validate the inputs (errors name the value) and derive what every region model needs: the
    :class:`FaceBatch` and the resolved codebook (None for a label-agnostic model)."""
    points = as_landmarks(landmarks)
    if points.dtype not in (torch.float32, torch.float64):
        points = points.float()
    label_ids = _check_labels(labels, points)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(v, int | np.integer) and v > 0 for v in (height, width)):
        raise ValueError(f"size must be positive ints (H, W), got {size!r}")
    default = model.default_codebook
    book = get_codebook(codebook or default) if default is not None else None
    if not model.takes_codebook and codebook is not None:
        raise ValueError(
            f"regions={model.name!r} always uses the {default!r} codebook; do not pass one with it"
        )
    finite = finite_faces(points)
    safe = torch.where(finite[:, None, None], points, torch.zeros_like(points))
    au_mask = None if book is None else book.matrix(points.device)[label_ids] & finite[:, None]
    return FaceBatch(safe, finite, au_mask, int(height), int(width)), book
