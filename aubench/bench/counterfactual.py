"""Causal AU effects of a model on the synthetic faces, and the other inputs of
:mod:`aubench.metrics.causal`: dose curves, the shortcut cue's pixels and mirrored explanations.

The synthetic faces can show the same face with one AU removed or scaled, all else equal
(:meth:`~aubench.data.synthetic.SyntheticFaces.counterfactuals`), so an AU's effect on the model
is measured on in-distribution images, not by deleting pixels:

- :func:`causal_effects`: for each face and each AU it shows, the drop of the target logit and
  probability when that AU alone is removed — one batched forward for the factual faces, then
  one per AU over the faces showing it (no Python loop over (face, AU) pairs);
- :func:`dose_curve`: the target logit and a map's energy in the AU's region as one AU is drawn
  at a range of scales of its intensity (one forward, and one map call, per scale);
- :func:`cue_masks`: the pixels of each face's shortcut cue;
- :func:`mirrored_maps`: a producer's maps of a batch and of its mirror image (landmarks flipped
  with their left/right parts swapped), and their equivariance;
- :func:`au_energy`: a map's energy share in each AU's region, columns in any AU order
  (:data:`~aubench.faces.codebook.ALL_AUS` by default, as the effects), whatever the label.

Maps come from a :data:`FaceMaps` function, ``(model, images, targets, landmarks) -> (B, H', W')``;
:func:`explainer_maps` builds one from an explainer with the default post-processing. Put the
model in ``eval()`` mode and on ``device`` first; images are moved there batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from aubench.data.shortcut import cue_corners, cue_region_masks
from aubench.data.synthetic import SyntheticFaces
from aubench.explain import explain, get_explainer
from aubench.explain.base import Explainer, Targets, resolve_targets
from aubench.explain.postprocess import default_postprocess
from aubench.faces.codebook import ALL_AUS
from aubench.faces.heatmaps import per_au_heatmaps
from aubench.faces.landmarks import flip_landmarks, rescale_landmarks
from aubench.faces.synth import Intervention
from aubench.metrics.causal import DoseResponse, dose_response, mirror_equivariance
from aubench.metrics.per_au import per_au_energy

__all__ = [
    "DEFAULT_SCALES",
    "CausalEffects",
    "DoseCurve",
    "FaceMaps",
    "Mirrored",
    "au_energy",
    "causal_effects",
    "cue_masks",
    "dose_curve",
    "explainer_maps",
    "mirrored_maps",
]

#: ``(model, images (B, 3, H, W), targets (B,), landmarks (B, 68, 2)) -> maps (B, H', W')``:
#: one producer's post-processed maps of a batch (landmarks in the images' pixels).
FaceMaps = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: Intensity scales of :func:`dose_curve`: the AU removed, a quarter, …, fully drawn.
DEFAULT_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)


class CausalEffects(NamedTuple):
    """Per-AU causal effects of B faces, columns indexed like :data:`ALL_AUS` (A = 20).

    ``logit`` (B, A): ``z_t(x) − z_t(x without AU a)``, the target logit's drop when AU a alone
    is removed; ``probability`` (B, A): the same for the target's softmax probability; both NaN
    where the face does not show the AU. ``present`` (B, A) bool: the AUs each face shows
    (drawn intensity > 0). ``targets`` (B,) the classes scored. ``batch``: the factual faces,
    collated (``image``, ``landmarks``, ``label``, ``au_intensity``, … on the CPU), to explain
    without rendering them again. Tensors other than ``batch`` are on the model's device.
    """

    logit: torch.Tensor
    probability: torch.Tensor
    present: torch.Tensor
    targets: torch.Tensor
    batch: dict


def causal_effects(
    model: nn.Module,
    faces: SyntheticFaces,
    indices: Sequence[int],
    targets: Targets | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> CausalEffects:
    """The drop of the target logit and probability when each AU of each face is removed.

    Renders the factual faces and, for each AU of :data:`ALL_AUS` that some of them show, those
    faces with that AU removed (:meth:`Intervention.remove`, everything else equal); runs the
    model on each set in batches of ``batch_size`` under ``no_grad``. With B ≤ ``batch_size``
    that is 1 + (number of AUs shown) forwards.

    Args:
        model: (N, 3, H, W) → (N, classes) logits, in eval mode, on ``device``.
        faces: the synthetic faces (their ``transform``, if any, applies to every rendering).
        indices: B item indices.
        targets: the class scored per face: None for the faces' labels (the paper's protocol),
            ``"pred"`` for the model's prediction on the factual face, an int, or (B,) ints.
        device: where the images go.
        batch_size: images per forward.

    Returns:
        :class:`CausalEffects`.
    """
    indices = _check_indices(faces, indices)
    _check_batch_size(batch_size)
    factual = faces.counterfactuals(indices, Intervention())
    logits = _logits(model, factual["image"], device, batch_size)
    target = _targets(targets, factual, logits)
    z, p = _target_scores(logits, target)
    present = factual["au_intensity"] > 0
    drop_z = torch.full(present.shape, torch.nan, dtype=z.dtype, device=z.device)
    drop_p = drop_z.clone()
    for k, au in enumerate(ALL_AUS):
        rows = present[:, k].nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        removed = faces.counterfactuals(
            [indices[r] for r in rows.tolist()], Intervention.remove(au)
        )
        rows = rows.to(z.device)
        z_cf, p_cf = _target_scores(
            _logits(model, removed["image"], device, batch_size), target[rows]
        )
        drop_z[rows, k] = z[rows] - z_cf
        drop_p[rows, k] = p[rows] - p_cf
    return CausalEffects(drop_z, drop_p, present.to(z.device), target, factual)


class DoseCurve(NamedTuple):
    """One AU drawn at S scales of its intensity on B faces.

    ``au``; ``scales`` (S,) float64 on the CPU; ``logit``, ``probability`` (S, B) float32 the
    target's logit and probability at each scale; ``energy`` (S, B) float32 the share of the
    map's positive energy in the AU's region at each scale (:func:`au_energy`; None without a
    map function); all NaN for the faces that do not show the AU (``present`` (B,) False).
    These on ``device``.
    """

    au: int
    scales: torch.Tensor
    logit: torch.Tensor
    probability: torch.Tensor
    energy: torch.Tensor | None
    present: torch.Tensor

    def response(self) -> DoseResponse:
        """:func:`~aubench.metrics.causal.dose_response` of the energy against the logit:
        (B,) slope and correlation per face."""
        if self.energy is None:
            raise ValueError("this dose curve has no map energies: pass maps_of to dose_curve")
        return dose_response(self.energy, self.logit)


def dose_curve(
    model: nn.Module,
    faces: SyntheticFaces,
    indices: Sequence[int],
    au: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    maps_of: FaceMaps | None = None,
    targets: Targets | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    regions: str = "default",
    region_threshold: float = 0.5,
) -> DoseCurve:
    """Target logit, probability and (with ``maps_of``) the map's energy in AU ``au``'s region
    as the AU is drawn at each of ``scales`` × its intensity (:meth:`Intervention.scale`; 0
    removes it, 1 is the factual face), on the faces of ``indices`` that show it.

    Per scale: one rendering of those faces, forwards in batches of ``batch_size`` under
    ``no_grad``, and one ``maps_of`` call (with gradients, as explainers need) whose maps are
    scored by :func:`au_energy` in the AU's region drawn from that rendering's landmarks.

    Args:
        model, faces, indices, targets, device, batch_size: as :func:`causal_effects`
            (``"pred"``: the prediction on the factual face).
        au: an AU of :data:`ALL_AUS`.
        scales: S ≥ 1 factors in [0, 1].
        maps_of: a :data:`FaceMaps` producer, or None for the model's response alone.
        regions, region_threshold: the AU region, as :func:`au_energy`.

    Returns:
        :class:`DoseCurve`; :meth:`DoseCurve.response` scores it.
    """
    indices = _check_indices(faces, indices)
    _check_batch_size(batch_size)
    if au not in ALL_AUS:
        raise ValueError(f"au must be one of {ALL_AUS}, got {au!r}")
    interventions = [Intervention.scale(au, s) for s in scales]  # checks each scale
    if not interventions:
        raise ValueError("scales must hold at least one factor in [0, 1]")
    factual = faces.counterfactuals(indices, Intervention())
    pred = isinstance(targets, str) and targets == "pred"
    logits = _logits(model, factual["image"], device, batch_size) if pred else None
    target = _targets(targets, factual, logits).to(device)
    present = (factual["au_intensity"][:, ALL_AUS.index(au)] > 0).to(target.device)
    rows = present.nonzero().squeeze(1)
    chosen = [indices[r] for r in rows.tolist()]
    shape = (len(interventions), len(indices))
    curve_z = torch.full(shape, torch.nan, device=target.device)
    curve_p, energy = curve_z.clone(), curve_z.clone() if maps_of is not None else None
    for step, intervention in enumerate(interventions):
        if not chosen:
            break
        batch = faces.counterfactuals(chosen, intervention)
        z, p = _target_scores(_logits(model, batch["image"], device, batch_size), target[rows])
        curve_z[step, rows], curve_p[step, rows] = z.to(curve_z.dtype), p.to(curve_p.dtype)
        if energy is not None:
            images, landmarks = batch["image"].to(device), batch["landmarks"].to(device)
            maps = maps_of(model, images, target[rows], landmarks)
            share = au_energy(
                maps,
                landmarks,
                (au,),
                image_size=tuple(images.shape[-2:]),
                regions=regions,
                region_threshold=region_threshold,
            )
            energy[step, rows] = share[:, 0].to(energy.dtype)
    scales_t = torch.tensor([float(s) for s in scales], dtype=torch.float64)
    return DoseCurve(au, scales_t, curve_z, curve_p, energy, present)


def au_energy(
    maps: torch.Tensor,
    landmarks: torch.Tensor,
    aus: Sequence[int] = ALL_AUS,
    *,
    image_size: int | tuple[int, int] | None = None,
    regions: str = "default",
    region_threshold: float = 0.5,
) -> torch.Tensor:
    """Share of each map's positive energy in each AU's region, whatever the face's label:
    :func:`~aubench.metrics.per_au.per_au_energy` with the regions of ``aus`` drawn from the
    landmarks by region model ``regions`` at the maps' resolution.

    Args:
        maps: (B, H', W') maps.
        landmarks: (B, 68, 2) (x, y) in the pixels of the images.
        aus: the AUs, in the order of the columns (default :data:`ALL_AUS`, the columns of
            :class:`CausalEffects`).
        image_size: (H, W) of the images the landmarks belong to (an int for a square); None:
            the maps' size.
        regions: a region model with AUs (``default``: the one the synthetic faces are drawn
            by).
        region_threshold: an AU's region is its map ``>= region_threshold``.

    Returns:
        (B, len(aus)) in [0, 1]; NaN for non-finite or all-non-positive maps and for AUs whose
        region lies outside the image.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (B, H', W'), got {tuple(maps.shape)}")
    height, width = maps.shape[-2:]
    if image_size is not None:
        image_h, image_w = (image_size, image_size) if isinstance(image_size, int) else image_size
        landmarks = rescale_landmarks(landmarks, width / image_w, height / image_h)
    unknown = [au for au in aus if au not in ALL_AUS]
    if unknown or not aus:
        raise ValueError(f"aus must be AUs of {ALL_AUS}, got {tuple(aus)}")
    labels = torch.zeros(len(maps), dtype=torch.long, device=maps.device)
    # one codebook entry holding every AU asked for: its regions, in ALL_AUS order
    per_au, drawn = per_au_heatmaps(
        landmarks.to(maps.device), labels, (height, width), {"neutral": tuple(aus)}, regions
    )
    per_au = per_au[:, [drawn.index(au) for au in aus]]
    return per_au_energy(maps, per_au.to(maps.dtype), region_threshold=region_threshold)


def cue_masks(faces: SyntheticFaces, indices: Sequence[int]) -> torch.Tensor:
    """(B, size, size) bool: the shortcut cue's pixels in each face (all False where none was
    drawn), from the faces' parameters (:func:`~aubench.faces.synth.cue_box` of the drawn
    corner) — the same for every counterfactual of a face. In the frame of the rendered image,
    before any ``transform`` that moves pixels."""
    indices = _check_indices(faces, indices)
    return cue_region_masks(cue_corners(faces, indices), (faces.size, faces.size))


class Mirrored(NamedTuple):
    """``maps`` (B, H', W') of the images, ``maps_of_flipped`` (B, H', W') of their mirror
    images (as computed, not flipped back), ``equivariance`` (B,)
    :func:`~aubench.metrics.causal.mirror_equivariance` of the two."""

    maps: torch.Tensor
    maps_of_flipped: torch.Tensor
    equivariance: torch.Tensor


def mirrored_maps(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    landmarks: torch.Tensor,
    maps_of: FaceMaps,
    valid: torch.Tensor | None = None,
) -> Mirrored:
    """Explain a batch and its mirror image in one ``maps_of`` call on the 2B images, and score
    the maps' mirror equivariance.

    The mirror image is ``images.flip(-1)`` with landmarks
    :func:`~aubench.faces.landmarks.flip_landmarks` (x ↦ W − 1 − x, iBUG-68 left/right points
    swapped), so its AU regions, and a map that follows them, are the mirrored ones.

    Args:
        model: as ``maps_of`` needs it.
        images: (B, C, H, W) model inputs.
        targets: (B,) the classes explained (the same for the mirror image).
        landmarks: (B, 68, 2) in the images' pixels.
        maps_of: a :data:`FaceMaps` producer.
        valid: (B,) bool, None for all.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    count = len(images)
    flipped = flip_landmarks(landmarks, images.shape[-1])
    maps = maps_of(
        model,
        torch.cat([images, images.flip(-1)]),
        torch.cat([targets, targets]),
        torch.cat([landmarks, flipped]),
    )
    if maps.ndim != 3 or len(maps) != 2 * count:
        raise ValueError(
            f"maps_of must return (2B, H', W') = ({2 * count}, H', W') maps for the images "
            f"and their mirror images, got {tuple(maps.shape)}"
        )
    ours, theirs = maps[:count], maps[count:]
    return Mirrored(ours, theirs, mirror_equivariance(ours, theirs, valid))


def explainer_maps(
    method: str | Explainer,
    layer: str | None = None,
    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FaceMaps:
    """A :data:`FaceMaps` producer: ``method``'s raw maps at ``layer`` (a layer spec; None: the
    paper's ``stage:5``; input-level methods ignore it), then ``postprocess`` (default:
    :func:`~aubench.explain.postprocess.default_postprocess` to the images' size — ReLU where
    the method defines it, bilinear resize, min-max)."""
    explainer = get_explainer(method) if isinstance(method, str) else method

    def maps_of(
        model: nn.Module, images: torch.Tensor, targets: torch.Tensor, landmarks: torch.Tensor
    ) -> torch.Tensor:
        layers = None if layer is None else [layer]
        produced = explain(model, images, targets, layers, [explainer], landmarks=landmarks)
        (raw,) = produced[explainer.name].values()
        step = postprocess or default_postprocess(explainer, tuple(images.shape[-2:]))
        return step(raw.float())

    return maps_of


def _check_indices(faces: SyntheticFaces, indices: Sequence[int]) -> list[int]:
    """``indices`` as a non-empty list of ints in range (negative ones counted from the end)."""
    if not isinstance(faces, SyntheticFaces):
        raise TypeError(f"faces must be SyntheticFaces, got {type(faces).__name__}")
    chosen = [range(len(faces))[i] for i in indices]  # IndexError / TypeError name the index
    if not chosen:
        raise ValueError("indices must name at least one face")
    return chosen


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _logits(
    model: nn.Module, images: torch.Tensor, device: torch.device | str, batch_size: int
) -> torch.Tensor:
    """(N, classes) logits of ``images`` (N, C, H, W), ``batch_size`` per forward, no grad."""
    with torch.no_grad():
        parts = [
            model(images[start : start + batch_size].to(device))
            for start in range(0, len(images), batch_size)
        ]
    logits = torch.cat(parts)
    if logits.ndim != 2 or len(logits) != len(images):
        raise ValueError(
            f"model must return (batch, classes) logits; got {tuple(logits.shape)} "
            f"for {len(images)} images"
        )
    return logits


def _targets(targets: Targets | None, factual: dict, logits: torch.Tensor | None) -> torch.Tensor:
    """(B,) int64 classes: the labels for None, else :func:`resolve_targets`."""
    labels = torch.as_tensor(factual["label"])
    if targets is None:
        return labels if logits is None else labels.to(logits.device)
    classes = None if logits is None else logits.shape[1]
    return resolve_targets(targets, len(labels), classes, logits)


def _target_scores(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) logit and softmax probability of each row's target."""
    targets = targets.to(logits.device)
    if not 0 <= int(targets.min()) <= int(targets.max()) < logits.shape[1]:
        raise ValueError(
            f"targets must lie in [0, {logits.shape[1]}) for {logits.shape[1]} logits, got "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    logit = logits.gather(1, targets[:, None]).squeeze(1)
    return logit, logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
