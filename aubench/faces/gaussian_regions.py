"""Gaussian-blob region models: ``default``, ``generic`` and ``landmark-gaussians``.

- ``default`` (:class:`FaceBlobs`): Gaussian blobs at landmark-defined centres
  (:data:`aubench.faces.regions.DEFAULT_BLOBS`), every size in units of the face scale
  (inter-ocular distance), so the map does not depend on image resolution.
  R_k = exp(−min_n q_n), q_n = ½((x−cx_n)/σx_n)² + ½((y−cy_n)/σy_n)² over the blobs n of AU k;
  the map is minmax(max_k R_k). Default codebook: ``belharbi2024-fixed`` (AU10 for disgust).
- ``generic`` (:class:`GenericFaceBlobs`): the default geometry with every AU of the FACS table,
  whatever the label (the ``generic`` codebook, and no other).
- ``landmark-gaussians`` (:class:`LandmarkGaussians`): one isotropic Gaussian per landmark,
  σ = 8 px at 224 px (σ scales with √(H·W)/224), jaw points dropped unless ``jaw=True``;
  label-agnostic (neutral is valid).
"""

from __future__ import annotations

import math

import torch

from aubench.faces.codebook import ALL_AUS
from aubench.faces.landmarks import GROUPS, face_scale
from aubench.faces.region_model import FaceBatch, RegionModel, minmax
from aubench.faces.regions import BlobTable, default_blobs

#: σ of the landmark-Gaussian model at a 224×224 image, in pixels.
LANDMARK_SIGMA_224 = 8.0

_DEFAULT_TABLE = BlobTable.build()


class FaceBlobs(RegionModel):
    """Face-scaled Gaussian blobs per AU (module doc); an AU is drawn when it is in the sample's
    ``au_mask`` and any of its blobs' extents meets the image."""

    name = "default"
    default_codebook = "belharbi2024-fixed"

    def maps(self, faces: FaceBatch, *, jaw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(minmax(max_n exp(−q_n)) (B, H, W), valid (B,))``; ``jaw`` is ignored."""
        points, height, width = faces.points, faces.height, faces.width
        centres, sigma, active = _default_blob_layout(points, faces.au_mask, height, width)
        return minmax(_gaussian_max(centres, sigma, active, height, width))

    def per_au_maps(self, faces: FaceBatch, aus: tuple[int, ...]) -> torch.Tensor:
        """(B, K, H, W): each AU's max over its blobs, peaking at 1 at the blob centres."""
        points, height, width = faces.points, faces.height, faces.width
        columns = [ALL_AUS.index(au) for au in aus]
        centres, sigma, active = _default_blob_layout(points, faces.au_mask, height, width)
        blob_au = _DEFAULT_TABLE.au_index.to(points.device)
        maps = [
            _gaussian_max(centres, sigma, active & (blob_au == k), height, width) for k in columns
        ]
        return torch.stack(maps, dim=1)

    def weighted_maps(
        self, faces: FaceBatch, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``minmax(max_n w_n·exp(−q_n))`` over the blobs n of the AUs in ``faces.au_mask``,
        w_n its AU's weight: ``exp(−(q_n − log w_n))``, the same single pass over blob slots as
        :meth:`maps` (and bit-identical to it at w = 1)."""
        points, height, width = faces.points, faces.height, faces.width
        mask = faces.au_mask & (weights > 0)
        centres, sigma, active = _default_blob_layout(points, mask, height, width)
        blob_weight = weights.to(points.dtype)[:, _DEFAULT_TABLE.au_index.to(points.device)]
        offset = torch.where(active, blob_weight, 1.0).log().neg()
        return minmax(_gaussian_max(centres, sigma, active, height, width, offset))


class GenericFaceBlobs(FaceBlobs):
    """The default blobs of every AU, whatever the label: a class-agnostic face prior."""

    name = "generic"
    default_codebook = "generic"
    takes_codebook = False


class LandmarkGaussians(RegionModel):
    """One isotropic Gaussian per landmark (module doc); label-agnostic."""

    name = "landmark-gaussians"

    def maps(self, faces: FaceBatch, *, jaw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(minmax(max_n exp(−q_n)) (B, H, W), valid (B,))`` over the landmarks n, σ = 8 px ·
        √(H·W)/224; the 17 jaw points only with ``jaw=True``."""
        points, height, width = faces.points, faces.height, faces.width
        keep = list(range(68)) if jaw else [i for i in range(68) if i not in GROUPS["jaw"]]
        centres = points[:, keep]
        sigma = torch.full_like(centres, LANDMARK_SIGMA_224 * math.sqrt(height * width) / 224)
        active = faces.finite[:, None].expand(-1, centres.shape[1])
        return minmax(_gaussian_max(centres, sigma, active, height, width))


# ---------------------------------------------------------------------------------------------
# geometry and rasterisation


def _ellipse_reaches_image(
    centres: torch.Tensor, axes: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Whether the closed ellipse (semi-axes ``axes``) around ``centres`` meets the pixel grid box.

    The box is [0, W−1] × [0, H−1]; clamping the centre to it gives the box point of least
    normalised distance (the distance is separable in x and y), so one test per ellipse suffices.
    """
    limit = centres.new_tensor([width - 1, height - 1])
    nearest = torch.minimum(centres.clamp(min=0), limit)
    return _normalised_sq(nearest - centres, axes).sum(dim=-1) <= 1


def _normalised_sq(delta: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """(δ/a)² elementwise, with a zero axis meaning a degenerate ellipse (only δ = 0 inside)."""
    zero = torch.where(delta == 0, 0.0, math.inf).to(delta.dtype)
    return torch.where(axes > 0, (delta / axes.clamp(min=1e-12)) ** 2, zero)


def _default_blob_layout(
    points: torch.Tensor, au_mask: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres (B, N, 2), σ (B, N, 2) and active mask (B, N) of the default blobs (σ = radius·s).

    An AU is active when it is in the label's set and any of its blobs' extents meets the image;
    then all its blobs are active. A degenerate face (zero inter-ocular distance) has no region.
    """
    table = _DEFAULT_TABLE.to(points.device, points.dtype)
    scale = face_scale(points)
    centres, axes = default_blobs(points, scale, table)
    reaches = _ellipse_reaches_image(centres, axes, height, width) & (scale[:, None] > 0)
    au_reaches = points.new_zeros(au_mask.shape).index_add_(1, table.au_index, reaches.to(points))
    active_au = au_mask & (au_reaches > 0)
    return centres, axes, active_au[:, table.au_index]  # σ = the region's semi-axes


def _gaussian_max(
    centres: torch.Tensor,
    sigma: torch.Tensor,
    active: torch.Tensor,
    height: int,
    width: int,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """max_n exp(−q_n(x, y)) over the active blobs (B, H, W); zeros where none is active.

    q_n = ½((x − cx)/σx)² + ½((y − cy)/σy)² (+ ``offset`` (B, N) when given: −log w_n weights
    blob n by w_n), separable: the min over blobs of qy_n(y) + qx_n(x) is taken slot by slot
    after packing each sample's active blobs to the front, so the loop runs over blob slots
    (≤ N), never over samples.
    """
    batch = centres.shape[0]
    counts = active.sum(dim=1)
    slots = int(counts.max()) if batch else 0
    out = centres.new_full((batch, height, width), math.inf)
    if slots:
        order = torch.argsort((~active).to(torch.uint8), dim=1, stable=True)[:, :slots]
        pick = order[..., None].expand(-1, -1, 2)
        c, s = centres.gather(1, pick), sigma.gather(1, pick)
        used = active.gather(1, order)
        xs = torch.arange(width, device=c.device, dtype=c.dtype)
        ys = torch.arange(height, device=c.device, dtype=c.dtype)
        s = torch.where(used[..., None], s, 1.0)  # unused slots may hold degenerate blobs
        qx = 0.5 * ((xs - c[..., 0:1]) / s[..., 0:1]) ** 2  # (B, slots, W)
        qy = 0.5 * ((ys - c[..., 1:2]) / s[..., 1:2]) ** 2  # (B, slots, H)
        if offset is not None:
            qy = qy + offset.gather(1, order)[..., None]
        qy = torch.where(used[..., None], qy, math.inf)
        scratch = torch.empty_like(out)  # one buffer for every slot, not one allocation each
        for slot in range(slots):
            torch.add(qy[:, slot, :, None], qx[:, slot, None, :], out=scratch)
            torch.minimum(out, scratch, out=out)
    return torch.exp_(out.neg_())
