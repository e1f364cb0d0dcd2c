"""The reference code's AU heatmap, exactly: region model ``belharbi2024-reference``.

The evaluation protocol ``belharbi2024`` (shared/reference/paper-evaluation-protocol.md) needs
the heatmap the reference builds (``build_all_action_units`` and ``_preprape_au_hmap`` in
sbelharbi/interpretable-fer-aus, paper-protocol.md §3.2–3.3), in the reference's order:

1. per AU, its filled ellipses (:func:`aubench.faces.regions.belharbi2024_ellipses`) drawn by
   OpenCV itself, ``cv2.ellipse(..., thickness=cv2.FILLED)``, on a full-size canvas: 255 inside,
   1e-4 elsewhere; an AU that paints no pixel of the image is dropped (its ``is_roi``);
2. ``cv2.resize`` to 28×28 (INTER_LINEAR: each cell samples two canvas pixels per axis), 3×3 box
   blur (reflect-101 border), bilinear back to (H, W) — in float64, then float32;
3. the pixel-wise max over the AUs **at full size**, then min-max in float32.

Here the 28×28 grids are float64 as in the reference and the bilinear upsampling runs in
float32 (three times faster than float64 on a CPU): maps differ from the reference by ≤ 3e-7 per
pixel (mean ≤ 5e-9 per map) on 9,600 random faces at 224² and 112², both codebooks.

Why OpenCV is called per sample: the filled ellipse is OpenCV's polygon fill (``ellipse2Poly``
vertices, fixed-point edges and outline), and the 28×28 stage point-samples it, so a single
canvas pixel classified differently moves a cell by 1/4 of the ink and, after the blur, 9 cells
by 1/36 (≈ 0.03 of the map's peak) — only a pixel-exact rasteriser meets 1e-3 per pixel (the
batched ``belharbi2024`` model, an analytic fill plus its max on the 28×28 grid, is off by up to
4e-3 per map and 0.23 per pixel). Only the drawing runs on the CPU: one ``cv2.ellipse`` per
ellipse of each (sample, distinct AU shape) and a 56×56 read of the canvas at the taps of the
28×28 resize. The ellipse parameters come from the batched table and everything after the
drawing is batched on the landmarks' device; inputs and outputs are tensors on that device.

Validity keeps aubench's fixes (paper-evaluation-protocol.md items 6–7), which the reference does
not have: non-finite landmarks are invalid (the reference raises on them), and a face whose AU
regions reach the image but all vanish in the 28×28 sampling (the reference's all-zero map,
counted valid) is invalid "outside", as is a map that min-max leaves constant.
:func:`reference_validity` gives the reference's own flag, so that reports can count the faces
the second fix moved.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from aubench.faces.belharbi2024 import (
    PAPER_GRID,
    _constant,
    _linear_taps,
    _sample_blur_matrix_np,
    _upsample,
)
from aubench.faces.codebook import ALL_AUS, Codebook, get_codebook
from aubench.faces.landmarks import as_landmarks, finite_faces
from aubench.faces.region_model import FaceBatch, RegionModel
from aubench.faces.regions import BELHARBI2024_SAME_AS, belharbi2024_ellipses

#: The reference canvas: background value and the value drawn inside the ellipses.
REFERENCE_BACKGROUND = 1e-4
REFERENCE_INK = 255.0
#: Ellipse parameters are clipped to ± this many pixels before they reach OpenCV's int arguments
#: (landmarks that far from the image are not a face; the reference would overflow).
_PIXEL_LIMIT = 1 << 24
#: Upsampled pixels held at once by the max over AUs (bounds its float32 temporaries to 16 MiB).
_UPSAMPLED_PER_CHUNK = 1 << 22


class Belharbi2024Reference(RegionModel):
    """The reference's heatmap, drawn with OpenCV per sample (module doc)."""

    name = "belharbi2024-reference"
    default_codebook = "belharbi2024"

    def maps(self, faces: FaceBatch, *, jaw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps (B, H, W), valid (B,))``: max over AUs at full size, then min-max (float32
        arithmetic, returned in the landmarks' dtype); ``jaw`` is ignored.

        Each distinct ellipse shape is drawn once per sample (:data:`BELHARBI2024_SAME_AS`:
        coinciding AUs give identical maps, so the max is unchanged).
        """
        points, height, width = faces.points, faces.height, faces.width
        shapes = _distinct_shapes(faces.au_mask)
        samples, reaches, b_idx, _ = _draw(points, shapes, height, width)
        grids = _cells(samples[reaches], height, width, REFERENCE_BACKGROUND, REFERENCE_INK)
        b_idx = b_idx[reaches]  # the reference drops the AUs that paint no pixel of the image
        # its max(axis=0, initial=-1): a face with no AU inside stays constant, hence invalid
        combined = torch.full(
            (points.shape[0], height, width), -1.0, dtype=torch.float32, device=points.device
        )
        flat = combined.view(points.shape[0], height * width)
        chunk = max(1, _UPSAMPLED_PER_CHUNK // (height * width))
        for start in range(0, len(b_idx), chunk):
            upsampled = _upsample(grids[start : start + chunk].float(), height, width).flatten(1)
            rows = b_idx[start : start + chunk, None].expand_as(upsampled)
            flat.scatter_reduce_(0, rows, upsampled, "amax")
        normalised, valid = _minmax_float32(combined)
        return normalised.to(points.dtype), valid

    def per_au_maps(self, faces: FaceBatch, aus: tuple[int, ...]) -> torch.Tensor:
        """(B, K, H, W): each AU's full-size map before the max, scaled so that the ellipses are 1
        and the background 0 (the reference's (map − 1e-4)/(255 − 1e-4)); zero unless the AU is
        in the sample's set and paints a pixel of the image."""
        points, height, width = faces.points, faces.height, faces.width
        device = faces.au_mask.device
        columns = torch.tensor([ALL_AUS.index(au) for au in aus], device=device, dtype=torch.long)
        same_as = _constant(np.array, (BELHARBI2024_SAME_AS,), device, torch.long)
        wanted = faces.au_mask[:, columns]  # (B, K)
        shapes = torch.zeros_like(faces.au_mask).index_add_(1, same_as[columns], wanted)
        samples, reaches, b_idx, k_idx = _draw(points, shapes, height, width)
        maps = points.new_zeros(points.shape[0], len(aus), height, width)
        pair_of = torch.full(shapes.shape, -1, device=device, dtype=torch.long)
        pair_of[b_idx, k_idx] = torch.arange(b_idx.numel(), device=device)
        sample_idx, column_idx = wanted.nonzero(as_tuple=True)
        pair = pair_of[sample_idx, same_as[columns][column_idx]]
        keep = reaches[pair]
        sample_idx, column_idx, pair = sample_idx[keep], column_idx[keep], pair[keep]
        grids = _cells(samples[pair], height, width, 0.0, 1.0)
        maps[sample_idx, column_idx] = _upsample(grids, height, width).to(points.dtype)
        return maps


def reference_validity(
    landmarks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | list[int],
    size: int | tuple[int, int],
    codebook: str | Codebook | dict | None = None,
) -> torch.Tensor:
    """(B,) bool: the reference's own validity — some AU of the label paints a pixel of the
    image at full size (its ``is_roi``); False for non-finite landmarks, where it raises.

    With ``valid`` from ``au_heatmaps(..., regions="belharbi2024-reference")``,
    ``reference_validity(...) & ~valid`` are the faces whose regions all vanish in the 28×28
    sampling: the reference scores them as valid all-zero maps, aubench excludes them
    ("outside"); count them to report the fix. Inputs as
    :func:`aubench.faces.heatmaps.au_heatmaps`' (default codebook ``belharbi2024``). Draws the
    ellipses again, without the resampling.
    """
    points = as_landmarks(landmarks)
    points = points if points.dtype in (torch.float32, torch.float64) else points.float()
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    label_ids = torch.as_tensor(labels, device=points.device).long().reshape(-1)
    finite = finite_faces(points)
    safe = torch.where(finite[:, None, None], points, torch.zeros_like(points))
    book = get_codebook(codebook or Belharbi2024Reference.default_codebook)
    au_mask = book.matrix(points.device)[label_ids] & finite[:, None]
    _, reaches, b_idx, _ = _draw(safe, _distinct_shapes(au_mask), height, width)
    valid = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    valid[b_idx[reaches]] = True
    return valid


# ---------------------------------------------------------------------------------------------
# drawing (OpenCV, per sample) and the batched resampling after it


def _distinct_shapes(au_mask: torch.Tensor) -> torch.Tensor:
    """(B, len(ALL_AUS)) bool: for each shape of :data:`BELHARBI2024_SAME_AS` (its first AU),
    whether some AU of the sample is drawn with it."""
    same_as = _constant(np.array, (BELHARBI2024_SAME_AS,), au_mask.device, torch.long)
    return torch.zeros_like(au_mask).index_add_(1, same_as, au_mask)


def _draw(
    points: torch.Tensor, shapes: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw the (sample, AU) pairs set in ``shapes`` (B, len(ALL_AUS)) with ``cv2.ellipse``.

    Returns, on ``points``' device: ``samples`` (P, 56, 56) bool, the canvas at the pixels the
    28×28 INTER_LINEAR resize reads (sample 2c + t is tap t of cell c, per axis); ``reaches``
    (P,) bool, the AU paints a pixel of the image (the reference's ``is_roi``); the pairs' sample
    and AU indices (P,) each, in row-major order.
    """
    b_idx, k_idx = shapes.nonzero(as_tuple=True)
    ellipses = belharbi2024_ellipses(points, height, width)[b_idx, k_idx]  # (P, 2, 4)
    params = ellipses.clamp(-_PIXEL_LIMIT, _PIXEL_LIMIT).long().cpu().tolist()
    rows = _linear_taps(height, PAPER_GRID)[0].reshape(-1, 1)
    cols = _linear_taps(width, PAPER_GRID)[0].reshape(-1)
    canvas = np.zeros((height, width), np.uint8)
    samples = np.zeros((len(params), rows.size, cols.size), np.uint8)
    reaches = np.zeros(len(params), bool)
    for p, (first, second) in enumerate(params):
        canvas.fill(0)
        for cx, cy, ax, ay in (first,) if first == second else (first, second):
            cv2.ellipse(canvas, (cx, cy), (ax, ay), 0, 0, 360, 1, cv2.FILLED)
        reaches[p] = cv2.countNonZero(canvas) > 0
        samples[p] = canvas[rows, cols]
    device = points.device
    return (
        torch.from_numpy(samples).to(device, torch.bool),
        torch.from_numpy(reaches).to(device),
        b_idx,
        k_idx,
    )


def _cells(
    samples: torch.Tensor, height: int, width: int, background: float, ink: float
) -> torch.Tensor:
    """(P, 56, 56) drawn samples → (P, 28, 28) float64 grids: ``cv2.blur(cv2.resize(canvas,
    (28, 28)), (3, 3))`` of the canvas with ``ink`` inside and ``background`` elsewhere.

    Resize and blur are linear and separable: ``S_y · V · S_xᵀ`` with S (28 × 56) the
    linear-resize taps followed by the reflect-101 box blur along each axis.
    """
    along_y = _constant(_sample_blur_matrix_np, (height,), samples.device, torch.float64)
    along_x = _constant(_sample_blur_matrix_np, (width,), samples.device, torch.float64)
    levels = torch.tensor([background, ink], dtype=torch.float64, device=samples.device)
    values = levels[samples.long()]
    return along_y @ values @ along_x.T


def _minmax_float32(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's float32 ``(A − min)/(max − min)`` per map; constant maps → zeros and
    ``valid=False`` (the reference's denominator 0 → 1 makes them zero too)."""
    flat = maps.flatten(1)
    low, high = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
    valid = (high > low).flatten()
    span = torch.where(high > low, high - low, torch.ones_like(high))
    normalised = (maps - low) / span
    return torch.where(valid[:, None, None], normalised, torch.zeros_like(normalised)), valid
