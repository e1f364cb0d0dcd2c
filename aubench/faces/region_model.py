"""The region-model interface: how a model of where AU evidence lies turns faces into maps.

:func:`aubench.faces.heatmaps.au_heatmaps` validates its inputs once, resolves the codebook into
each sample's AUs, and hands a :class:`FaceBatch` to the chosen :class:`RegionModel`; the model
draws. The split is the seam for new evidence: a region model only *draws* regions (per AU, or
label-agnostic), while which AUs a sample shows comes with the batch (``au_mask``: from the
codebook and the label, or from per-image AU evidence, :mod:`aubench.faces.evidence`, whose
intensities weight each AU's region in :meth:`RegionModel.weighted_maps`). Models are registered
by name in :mod:`aubench.faces.region_registry`.

Contract of :meth:`RegionModel.maps`: ``(maps (B, H, W) in [0, 1], valid (B,) bool)`` on the
landmarks' device and dtype, an all-zero map wherever ``valid`` is False. A model sets
``valid=False`` when the sample has nothing to draw inside the image (no finite landmarks, no
active AU, every region outside the image or vanished in the model's own sampling);
:func:`~aubench.faces.heatmaps.invalid_reasons` names the cause (neutral, lost landmarks, or else
"outside").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from aubench.faces.codebook import ALL_AUS


class FaceBatch(NamedTuple):
    """What a region model is given, already validated.

    ``points`` (B, 68, 2) landmarks in pixels, float32 or float64, failed detections zeroed (they
    are masked out by ``finite``); ``finite`` (B,) usable landmarks; ``au_mask`` (B, K) bool over
    :data:`aubench.faces.codebook.ALL_AUS`, the AUs to draw for each sample (its label's AUs in
    the codebook, False for unusable faces; None for label-agnostic models); ``height``,
    ``width``: the image size.
    """

    points: torch.Tensor
    finite: torch.Tensor
    au_mask: torch.Tensor | None
    height: int
    width: int


class RegionModel(ABC):
    """A region model: ``model.maps(faces) -> (maps (B, H, W), valid (B,))``.

    Class attributes: ``name`` (registry name); ``default_codebook`` (the codebook used when the
    caller gives none; None: the model is label-agnostic, draws no AUs, and neutral is valid);
    ``takes_codebook`` (False: the model always uses its own codebook and rejects another one).
    """

    name: str = ""
    default_codebook: str | None = None
    takes_codebook: bool = True

    @abstractmethod
    def maps(self, faces: FaceBatch, *, jaw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps (B, H, W) in [0, 1], valid (B,) bool)``, zeros where invalid (module doc).

        ``jaw``: keep the 17 jaw landmarks (models drawing every landmark; others ignore it).
        """

    def per_au_maps(self, faces: FaceBatch, aus: tuple[int, ...]) -> torch.Tensor:
        """(B, K, H, W): channel k is AU ``aus[k]``'s own region, before the max over AUs, zero
        unless ``faces.au_mask`` has that AU and it reaches the image. Not normalised per sample.

        Only models with AUs (``default_codebook`` set) draw per-AU maps.
        """
        raise NotImplementedError(f"region model {self.name!r} draws no per-AU maps")

    def weighted_maps(
        self, faces: FaceBatch, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps (B, H, W) in [0, 1], valid (B,))`` of per-image AU evidence:
        ``minmax(max_k w_k · R_k)`` over the AUs k in ``faces.au_mask``, with ``weights``
        (B, len(ALL_AUS)) the AUs' normalised intensities in [0, 1] (:mod:`aubench.faces.evidence`).

        Weights of 1 on the label's AUs give the codebook map. This default builds it from
        :meth:`per_au_maps` (B, K, H, W) for the AUs the batch uses; models override it with a
        cheaper path that equals their :meth:`maps` at weight 1 (``default``, ``belharbi2024``).
        """
        mask = faces.au_mask & (weights > 0)
        used = mask.any(dim=0).nonzero().flatten().tolist()
        if not used:
            blank = faces.points.new_zeros(len(mask), faces.height, faces.width)
            return blank, torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
        per_au = self.per_au_maps(faces._replace(au_mask=mask), tuple(ALL_AUS[k] for k in used))
        scaled = per_au * torch.where(mask, weights, 0)[:, used, None, None].to(per_au.dtype)
        return minmax(scaled.amax(dim=1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def minmax(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map (x − min)/(max − min) of (B, h, w); constant maps → zeros and ``valid=False``."""
    flat = maps.flatten(1)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    valid = high > low
    scale = torch.where(valid, high - low, torch.ones_like(high))
    return (maps - low[:, None, None]) / scale[:, None, None] * valid[:, None, None], valid
