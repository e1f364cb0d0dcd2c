"""Batched AU heatmaps: (B, 68, 2) landmarks + (B,) labels → (B, H, W) maps in [0, 1] + validity.

``A = minmax( max_{k ∈ AUs(label)} R_k )``, where R_k is AU k's smooth region from the chosen region
model (:mod:`aubench.faces.regions`). No Python loop runs over samples; everything stays on the
landmarks' device.

Region models (``regions=``):

- ``"default"``: Gaussian blobs at landmark-defined centres, every size in units of the face scale
  (inter-ocular distance), so the map does not depend on image resolution. R_k = exp(−min_n q_n),
  q_n = ½((x−cx_n)/σx_n)² + ½((y−cy_n)/σy_n)² over the blobs n of AU k. Default codebook:
  ``belharbi2024-fixed`` (AU10 for disgust).
- ``"belharbi2024"``: the paper's pipeline (shared/reference/paper-protocol.md §3.2–3.3): filled
  ellipses (value 1 inside), point-sampled to 28×28 exactly as OpenCV's INTER_LINEAR downscale
  samples them, 3×3 box blur (reflect-101 border), bilinear back to (H, W), max over AUs, min-max.
  Default codebook: ``belharbi2024`` (its disgust → AU5 quirk included). Two steps are reordered for
  speed — the max over AUs and the min-max are taken on the 28×28 grid, before the (monotone,
  convex) bilinear upsampling — which changes maps by ≈1e-3 mean absolute error against the
  per-image OpenCV pipeline (tests pin the bound at 0.02 on 224×224 faces); the upsampled peak
  can then sit just below 1 (≥ 0.9995 over 3,000 random faces).
- ``"landmark-gaussians"``: one isotropic Gaussian per landmark, σ = 8 px at 224 px (σ scales with
  √(H·W)/224), jaw points dropped unless ``jaw=True``; label-agnostic (neutral is valid).
- ``"generic"``: the default geometry with every AU of the FACS table, whatever the label.

Validity (DESIGN.md): a sample is invalid when its label has no AUs in the codebook (neutral), when
any landmark is non-finite, or when no AU region of its label lies inside the image — for
``belharbi2024`` also when every region vanishes in the 28×28 sampling, which the paper would turn
into a silently all-zero "valid" map. Invalid samples get an all-zero map and ``valid=False``;
:func:`invalid_reasons` says why, :func:`count_reasons` tallies it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from aubench.faces.codebook import ALL_AUS, Codebook, Expression, get_codebook
from aubench.faces.landmarks import GROUPS, as_landmarks, face_scale, finite_faces
from aubench.faces.regions import (
    BELHARBI2024_SAME_AS,
    BlobTable,
    belharbi2024_ellipses,
    default_blobs,
)

#: Region models and the codebook each uses when none is given (None: label-agnostic).
REGION_MODELS: dict[str, str | None] = {
    "default": "belharbi2024-fixed",
    "belharbi2024": "belharbi2024",
    "landmark-gaussians": None,
    "generic": "generic",
}
#: The paper's intermediate grid side (``cv2.resize(canvas, (28, 28))``).
PAPER_GRID = 28
#: Half a pixel added to the paper's semi-axes to match ``cv2.ellipse(..., thickness=-1)`` fills.
CV2_FILL_MARGIN = 0.5
#: σ of the landmark-Gaussian model at a 224×224 image, in pixels.
LANDMARK_SIGMA_224 = 8.0

_DEFAULT_TABLE = BlobTable.build()


class InvalidReason(IntEnum):
    """Why a sample's heatmap is invalid (0 = valid)."""

    VALID = 0
    NO_AUS = 1  # the label has no AUs in the codebook (neutral)
    NO_LANDMARKS = 2  # a landmark is non-finite (failed detection)
    OUTSIDE = 3  # no AU region of the label lies inside the image


class Heatmaps(NamedTuple):
    """``heatmaps`` (B, H, W) in [0, 1] (zeros where invalid) and ``valid`` (B,) bool."""

    heatmaps: torch.Tensor
    valid: torch.Tensor


def au_heatmaps(
    landmarks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | list[int],
    size: int | tuple[int, int],
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
    jaw: bool = False,
) -> Heatmaps:
    """AU heatmaps for a batch of faces.

    Args:
        landmarks: (B, 68, 2) (x, y) pixels in the frame of an image of ``size``; a (68, 2) face
            is a batch of one. Non-finite rows mark failed detections.
        labels: (B,) canonical expression ids (0 neutral … 7 contempt).
        size: (H, W) of the image, or one int for a square.
        codebook: name, mapping, YAML path or :class:`Codebook`; None → the region model's own.
        regions: one of :data:`REGION_MODELS`.
        jaw: landmark-gaussians only: keep the 17 jaw points.

    Returns:
        :class:`Heatmaps` ``(heatmaps (B, H, W) float in [0, 1], valid (B,) bool)``, on the
        landmarks' device, float64 for float64 landmarks and float32 otherwise.
    """
    faces = _prepare(landmarks, labels, size, codebook, regions)
    points, height, width = faces.points, faces.height, faces.width
    if regions == "landmark-gaussians":
        centres, sigma = _landmark_gaussians(points, height, width, jaw)
        active = faces.finite[:, None].expand(-1, centres.shape[1])
        return _gaussian_maps(centres, sigma, active, height, width)
    if regions == "belharbi2024":
        return _belharbi2024_maps(points, faces.au_mask, height, width)
    centres, sigma, active = _default_blob_layout(points, faces.au_mask, height, width)
    return _gaussian_maps(centres, sigma, active, height, width)


def per_au_heatmaps(
    landmarks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | list[int],
    size: int | tuple[int, int],
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Each AU's own region map, before the max: ``(maps (B, K, H, W) in [0, 1], aus)``.

    ``aus`` are the codebook's AUs (K of them, in :data:`ALL_AUS` order); channel k of a sample is
    zero unless AU ``aus[k]`` belongs to its label and lies inside the image. Not normalised per
    sample: the default model's blobs peak at 1 at their centres, the paper's ellipses are 1 inside.
    Supports the ``default``, ``generic`` and ``belharbi2024`` region models.
    """
    if regions == "landmark-gaussians":
        raise ValueError("regions='landmark-gaussians' has no AUs; per-AU maps need an AU model")
    faces = _prepare(landmarks, labels, size, codebook, regions)
    points, height, width, aus = faces.points, faces.height, faces.width, faces.book.aus
    columns = [ALL_AUS.index(au) for au in aus]
    if regions == "belharbi2024":
        grids, b_idx, k_idx = _belharbi2024_cells(points, faces.au_mask, height, width)
        maps = points.new_zeros(points.shape[0], len(ALL_AUS), height, width)
        maps[b_idx, k_idx] = _upsample(grids, height, width)
        return maps[:, columns], aus
    centres, sigma, active = _default_blob_layout(points, faces.au_mask, height, width)
    blob_au = _DEFAULT_TABLE.au_index.to(points.device)
    maps = [_gaussian_max(centres, sigma, active & (blob_au == k), height, width) for k in columns]
    return torch.stack(maps, dim=1), aus


def invalid_reasons(
    landmarks: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    codebook: str | Codebook | dict | None = None,
    regions: str = "default",
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
    if regions not in REGION_MODELS:
        raise ValueError(
            f"unknown region model {regions!r}; expected one of {', '.join(REGION_MODELS)}"
        )
    reason = torch.where(valid, 0, int(InvalidReason.OUTSIDE))
    reason = torch.where(finite_faces(points), reason, int(InvalidReason.NO_LANDMARKS))
    if REGION_MODELS.get(regions) is not None:
        book = get_codebook(codebook or REGION_MODELS[regions])
        has_aus = book.matrix(points.device)[label_ids].any(dim=1)
        reason = torch.where(has_aus, reason, int(InvalidReason.NO_AUS))
    return reason


def count_reasons(reasons: torch.Tensor) -> dict[str, int]:
    """Counts of invalid samples by reason name (valid samples are not counted)."""
    counts = torch.bincount(reasons.flatten().long().cpu(), minlength=len(InvalidReason))
    return {r.name.lower(): int(counts[r]) for r in InvalidReason if r and counts[r]}


# ---------------------------------------------------------------------------------------------
# input checks


class _Faces(NamedTuple):
    points: torch.Tensor  # (B, 68, 2), failed detections zeroed (they are masked out)
    finite: torch.Tensor  # (B,) usable landmarks
    au_mask: torch.Tensor | None  # (B, K) each label's AUs (None: label-agnostic model)
    book: Codebook | None
    height: int
    width: int


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


def _prepare(landmarks, labels, size, codebook, regions) -> _Faces:
    """Validate the inputs (errors name the value) and derive what every region model needs."""
    if regions not in REGION_MODELS:
        raise ValueError(
            f"unknown region model {regions!r}; expected one of {', '.join(REGION_MODELS)}"
        )
    points = as_landmarks(landmarks)
    if points.dtype not in (torch.float32, torch.float64):
        points = points.float()
    label_ids = _check_labels(labels, points)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(v, int | np.integer) and v > 0 for v in (height, width)):
        raise ValueError(f"size must be positive ints (H, W), got {size!r}")
    default = REGION_MODELS[regions]
    book = get_codebook(codebook or default) if default is not None else None
    if regions == "generic" and codebook is not None:
        raise ValueError("regions='generic' uses every AU; do not pass a codebook with it")
    finite = finite_faces(points)
    safe = torch.where(finite[:, None, None], points, torch.zeros_like(points))
    au_mask = None if book is None else book.matrix(points.device)[label_ids] & finite[:, None]
    return _Faces(safe, finite, au_mask, book, int(height), int(width))


# ---------------------------------------------------------------------------------------------
# shared geometry


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


@lru_cache(maxsize=64)
def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV/torch ``align_corners=False`` linear-resize taps: (n_out, 2) indices and weights.

    src = (dst + 0.5)·n_in/n_out − 0.5, i0 = ⌊src⌋, w1 = src − i0; clamped at both borders.
    """
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(src)
    w1 = src - i0
    low, high = i0 < 0, i0 >= n_in - 1
    i0 = np.where(low, 0, np.where(high, n_in - 1, i0)).astype(np.int64)
    w1 = np.where(low | high, 0.0, w1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return np.stack([i0, i1], axis=1), np.stack([1 - w1, w1], axis=1)


@lru_cache(maxsize=64)
def _resize_matrix_np(n_in: int, n_out: int) -> np.ndarray:
    idx, w = _linear_taps(n_in, n_out)
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out)[:, None], idx), w)
    return matrix


def _resize_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of the linear resize along one axis, on ``like``'s device and dtype."""
    return _constant(_resize_matrix_np, (n_in, n_out), like.device, like.dtype)


@lru_cache(maxsize=128)
def _constant(
    build: Callable[..., np.ndarray], args: tuple, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """A tensor built once per (arguments, device, dtype) from a NumPy table and then reused."""
    return torch.from_numpy(build(*args)).to(device, dtype)


def _upsample(grids: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize (N, h, w) → (N, H, W), ``align_corners=False`` (OpenCV's INTER_LINEAR).

    Columns first, one matmul with the (W, w) resize matrix. Rows: when H = f·h with f even
    (224 = 8·28, 112 = 4·28), output row f·i + r of the first half (r < f/2) lies between input
    rows i − 1 and i, and of the second half between i and i + 1, at the fraction
    w_r = (r + ½)/f − ½ − ⌊(r + ½)/f − ½⌋, the same for every i. With the rows replicate-padded,
    P = [row 0, rows, row h − 1] (N, h + 2, W), that is
    ``out[:, f·i + r] = lerp(P[i + half], P[i + half + 1], w_r)``: one broadcast interpolation
    writing each output value once, instead of a dense (H × h) matmul per map whose flops are
    ~h/2 times larger (the whole cost of a batch of 224² maps). Replicating the border rows is
    OpenCV's clamping. Other heights use the dense matmul.
    """
    count, rows_in, cols_in = grids.shape
    cols = _resize_matrix(cols_in, width, grids)
    factor, rest = divmod(height, rows_in)
    if rest or factor % 2:
        return _resize_matrix(rows_in, height, grids) @ (grids @ cols.T)
    padded = torch.cat([grids[:, :1], grids, grids[:, -1:]], dim=1) @ cols.T  # (N, h + 2, W)
    # overlapping views (N, h, 2 halves, 1, W): [:, i, half] = padded row i + half (+ 1)
    low = padded[:, :-1].unfold(1, 2, 1).transpose(2, 3).unsqueeze(3)
    high = padded[:, 1:].unfold(1, 2, 1).transpose(2, 3).unsqueeze(3)
    fractions = _constant(_half_fractions_np, (factor,), grids.device, grids.dtype)  # (2, f/2, 1)
    return torch.lerp(low, high, fractions).view(count, height, width)


def _half_fractions_np(factor: int) -> np.ndarray:
    """(2, f/2, 1): the interpolation fraction of each output row within its input cell's two
    halves, for an even integer upscale factor f (see :func:`_upsample`)."""
    offsets = (np.arange(factor) + 0.5) / factor - 0.5
    return (offsets - np.floor(offsets)).reshape(2, factor // 2, 1)


# ---------------------------------------------------------------------------------------------
# belharbi2024


def _belharbi2024_cells(
    points: torch.Tensor, au_mask: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blurred 28×28 grids of the active (sample, AU) pairs.

    Returns ``grids`` (P, 28, 28) in [0, 1], and the pairs' sample and AU indices (P,) each, for
    every AU in its label's set. An AU whose ellipses miss the image (the paper drops it) samples
    to an all-zero grid, which leaves the max over AUs, and so the validity, unchanged.
    """
    ellipses = belharbi2024_ellipses(points, height, width)  # (B, K, 2, 4)
    # OpenCV's filled ellipse also paints the pixels its boundary passes through: a pixel is in
    # when its centre lies within the ellipse grown by half a pixel (0.7% of pixels differ).
    ellipses[..., 2:] += CV2_FILL_MARGIN
    b_idx, k_idx = au_mask.nonzero(as_tuple=True)
    chosen = torch.index_select(ellipses.flatten(0, 1), 0, b_idx * ellipses.shape[1] + k_idx)
    return _blurred_samples(chosen, height, width), b_idx, k_idx


def _blurred_samples(ellipses: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(P, S, 4) ellipses of P AUs → (P, 28, 28): ``cv2.blur(cv2.resize(canvas, (28, 28)))`` of
    the 0/1 canvas of each AU's union of S ellipses (a one-ellipse AU repeats its ellipse).

    OpenCV's linear downscale samples cell c at two canvas pixels per axis with weights
    (w0_c, w1_c) (:func:`_linear_taps`), and the box blur averages 3 cells per axis
    (BORDER_REFLECT_101). Both are linear and separable: with I the union tested at the 56×56
    samples, ``grid = B · T_y · I · T_xᵀ · Bᵀ`` (T: taps, 28 × 56; B: blur, 28 × 28). Rows are
    tested only inside a window of m cells around the AU's ellipses, since the canvas is 0
    elsewhere; T_y is applied there elementwise (two sample rows per cell), T_xᵀBᵀ as one shared
    (56 × 28) matrix, and B as its (28 × m) column slice at the window.
    """
    start, ys = _row_window(ellipses, height)  # (P,), (P, m, 2)
    count, cells = ys.shape[:2]
    xs = _constant(_sample_positions_np, (width,), ellipses.device, ellipses.dtype)  # (56,)
    cx, cy, ax, ay = (ellipses[..., i, None] for i in range(4))  # (P, S, 1)
    qx = ((xs - cx) / ax).square_()  # (P, S, 56); axes > 0: grown by the margin
    qy = ((ys.view(count, 1, 2 * cells) - cy) / ay).square_()  # (P, S, 2m)
    inside = qy[:, 0, :, None] + qx[:, 0, None, :]  # (P, 2m, 56)
    for other in range(1, ellipses.shape[1]):
        torch.minimum(inside, qy[:, other, :, None] + qx[:, other, None, :], out=inside)
    inside = inside.le_(1).view(count, cells, 2, xs.numel())  # 1.0 inside an ellipse, else 0.0
    taps = _constant(_tap_weights_np, (height,), ellipses.device, ellipses.dtype)
    weights = taps[start[:, None] + torch.arange(cells, device=start.device)]  # (P, m, 2)
    rows = torch.addcmul(
        inside[:, :, 0] * weights[..., 0, None], inside[:, :, 1], weights[..., 1, None]
    )  # (P, m, 56): T_y · I
    along_x = _constant(_sample_blur_matrix_t_np, (width,), ellipses.device, ellipses.dtype)
    cells_x = (rows.flatten(0, 1) @ along_x).view(count, cells, PAPER_GRID)  # (P, m, 28)
    blur = _constant(_blur3_np, (PAPER_GRID,), ellipses.device, ellipses.dtype)
    # (28 − m + 1, 28, m) overlapping view: [s] = the blur's columns s … s + m − 1
    windows = blur.as_strided((PAPER_GRID - cells + 1, PAPER_GRID, cells), (1, PAPER_GRID, 1))
    return windows.index_select(0, start) @ cells_x


def _row_window(ellipses: torch.Tensor, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cells whose row samples can see the AU's ellipses.

    A cell can see [min(cy − ay), max(cy + ay)] over the S ellipses when one of its two taps lies
    inside. Returns each AU's first cell (P,) and the pixel rows of the two taps of its m cells
    (P, m, 2); m is the tallest window of the batch and windows are shifted to stay in the grid.
    """
    low = (ellipses[..., 1] - ellipses[..., 3]).amin(dim=1)
    high = (ellipses[..., 1] + ellipses[..., 3]).amax(dim=1)
    taps = _constant(_tap_table_np, (height,), ellipses.device, ellipses.dtype)  # (2 taps, 28)
    first = torch.searchsorted(taps[1], low)
    last = torch.searchsorted(taps[0], high, right=True) - 1
    size = int((last - first + 1).max().clamp(1, PAPER_GRID)) if low.numel() else 1
    start = first.clamp(0, PAPER_GRID - size)
    cells = start[:, None] + torch.arange(size, device=ellipses.device)
    return start, taps.T[cells]


def _tap_table_np(n_in: int) -> np.ndarray:
    """(2 taps, 28 cells): the pixel positions OpenCV samples for each cell along one axis."""
    return np.ascontiguousarray(_linear_taps(n_in, PAPER_GRID)[0].T, dtype=np.float64)


def _tap_weights_np(n_in: int) -> np.ndarray:
    """(28 cells, 2 taps): OpenCV's linear-downscale weights of each cell's two samples."""
    return _linear_taps(n_in, PAPER_GRID)[1]


def _sample_positions_np(n_in: int) -> np.ndarray:
    """(56,): sample 2c + t is tap t of cell c."""
    return _linear_taps(n_in, PAPER_GRID)[0].flatten().astype(np.float64)


def _blur3_np(n: int) -> np.ndarray:
    """(n, n) 3-tap mean with BORDER_REFLECT_101 (index −1 → 1, n → n − 2): one axis of
    ``cv2.blur(·, (3, 3))``."""
    matrix = np.zeros((n, n))
    for i in range(n):
        for j in (i - 1, i, i + 1):
            matrix[i, abs(j) if j < n else 2 * (n - 1) - j] += 1 / 3
    return matrix


def _sample_blur_matrix_np(n_in: int) -> np.ndarray:
    """(28, 56): OpenCV's 28-cell linear-sampling weights, then the box blur, along one axis."""
    _, weights = _linear_taps(n_in, PAPER_GRID)
    taps = np.zeros((PAPER_GRID, 2 * PAPER_GRID))
    taps[np.arange(PAPER_GRID).repeat(2), np.arange(2 * PAPER_GRID)] = weights.flatten()
    return _blur3_np(PAPER_GRID) @ taps


def _sample_blur_matrix_t_np(n_in: int) -> np.ndarray:
    return np.ascontiguousarray(_sample_blur_matrix_np(n_in).T)


def _belharbi2024_maps(
    points: torch.Tensor, au_mask: torch.Tensor, height: int, width: int
) -> Heatmaps:
    same_as = _constant(np.array, (BELHARBI2024_SAME_AS,), au_mask.device, torch.long)
    shapes = torch.zeros_like(au_mask).index_add_(1, same_as, au_mask)  # one per distinct shape
    grids, b_idx, _ = _belharbi2024_cells(points, shapes, height, width)
    flat = grids.flatten(1)
    combined = flat.new_zeros(points.shape[0], flat.shape[1])  # grids are ≥ 0: 0 is the floor
    combined.scatter_reduce_(0, b_idx[:, None].expand_as(flat), flat, "amax")
    normalised, valid = _minmax(combined.view(-1, PAPER_GRID, PAPER_GRID))
    return Heatmaps(_upsample(normalised, height, width), valid)


# ---------------------------------------------------------------------------------------------
# Gaussian blobs (default, generic, landmark-gaussians)


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


def _landmark_gaussians(
    points: torch.Tensor, height: int, width: int, jaw: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    keep = list(range(68)) if jaw else [i for i in range(68) if i not in GROUPS["jaw"]]
    centres = points[:, keep]
    sigma = LANDMARK_SIGMA_224 * math.sqrt(height * width) / 224
    return centres, torch.full_like(centres, sigma)


def _gaussian_max(
    centres: torch.Tensor, sigma: torch.Tensor, active: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """max_n exp(−q_n(x, y)) over the active blobs (B, H, W); zeros where none is active.

    q_n = ½((x − cx)/σx)² + ½((y − cy)/σy)², separable: the min over blobs of qy_n(y) + qx_n(x) is
    taken slot by slot after packing each sample's active blobs to the front, so the loop runs
    over blob slots (≤ N), never over samples.
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
        qy = torch.where(used[..., None], qy, math.inf)
        scratch = torch.empty_like(out)  # one buffer for every slot, not one allocation each
        for slot in range(slots):
            torch.add(qy[:, slot, :, None], qx[:, slot, None, :], out=scratch)
            torch.minimum(out, scratch, out=out)
    return torch.exp_(out.neg_())


def _gaussian_maps(
    centres: torch.Tensor, sigma: torch.Tensor, active: torch.Tensor, height: int, width: int
) -> Heatmaps:
    return Heatmaps(*_minmax(_gaussian_max(centres, sigma, active, height, width)))


def _minmax(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map (x − min)/(max − min) of (B, h, w); constant maps → zeros and ``valid=False``."""
    flat = maps.flatten(1)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    valid = high > low
    scale = torch.where(valid, high - low, torch.ones_like(high))
    return (maps - low[:, None, None]) / scale[:, None, None] * valid[:, None, None], valid
