"""The paper's region model, ``belharbi2024`` (shared/reference/paper-protocol.md §3.2–3.3).

Per AU, filled ellipses (value 1 inside, :func:`aubench.faces.regions.belharbi2024_ellipses`),
point-sampled to 28×28 exactly as OpenCV's INTER_LINEAR downscale samples them, 3×3 box blur
(reflect-101 border), bilinear back to (H, W), max over AUs, min-max. Default codebook:
``belharbi2024`` (its disgust → AU5 quirk included). Two steps are reordered for speed — the max
over AUs and the min-max are taken on the 28×28 grid, before the (monotone, convex) bilinear
upsampling — which changes maps by ≈1e-3 mean absolute error against the per-image OpenCV
pipeline (tests pin the bound at 0.02 on 224×224 faces); the upsampled peak can then sit just
below 1 (≥ 0.9995 over 3,000 random faces).

Validity: besides the shared rules, a sample is invalid ("outside") when every region of its label
vanishes in the 28×28 sampling, which the paper would turn into a silently all-zero "valid" map.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from aubench.faces.codebook import ALL_AUS
from aubench.faces.region_model import FaceBatch, RegionModel, minmax
from aubench.faces.regions import BELHARBI2024_SAME_AS, belharbi2024_ellipses

#: The paper's intermediate grid side (``cv2.resize(canvas, (28, 28))``).
PAPER_GRID = 28
#: Half a pixel added to the paper's semi-axes to match ``cv2.ellipse(..., thickness=-1)`` fills.
CV2_FILL_MARGIN = 0.5


class Belharbi2024Regions(RegionModel):
    """The paper's ellipses, sampling, blur and upsampling (module doc)."""

    name = "belharbi2024"
    default_codebook = "belharbi2024"

    def maps(self, faces: FaceBatch, *, jaw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps (B, H, W), valid (B,))``; ``jaw`` is ignored (the paper draws no jaw AU).

        Each distinct ellipse shape is drawn once (:data:`BELHARBI2024_SAME_AS`), the max over a
        sample's grids and the min-max are taken on the 28×28 grid, then upsampled.
        """
        au_mask = faces.au_mask
        same_as = _constant(np.array, (BELHARBI2024_SAME_AS,), au_mask.device, torch.long)
        shapes = torch.zeros_like(au_mask).index_add_(1, same_as, au_mask)  # one per distinct shape
        return _combined(faces, shapes, None)

    def weighted_maps(
        self, faces: FaceBatch, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`maps`, each shape's 28×28 grid scaled by the largest weight of the AUs drawn
        with it before the max (``max_k w_k·R_k``; identical to :meth:`maps` at w = 1)."""
        weight = torch.where(faces.au_mask, weights.to(faces.points.dtype), 0.0)
        same_as = _constant(np.array, (BELHARBI2024_SAME_AS,), weight.device, torch.long)
        shape_weight = torch.zeros_like(weight).scatter_reduce_(
            1, same_as.expand_as(weight), weight, "amax"
        )
        return _combined(faces, shape_weight > 0, shape_weight)

    def per_au_maps(self, faces: FaceBatch, aus: tuple[int, ...]) -> torch.Tensor:
        """(B, K, H, W): each AU's blurred 28×28 grid upsampled to (H, W), ellipses 1 inside."""
        points, height, width = faces.points, faces.height, faces.width
        columns = [ALL_AUS.index(au) for au in aus]
        grids, b_idx, k_idx = _blurred_cells(points, faces.au_mask, height, width)
        maps = points.new_zeros(points.shape[0], len(ALL_AUS), height, width)
        maps[b_idx, k_idx] = _upsample(grids, height, width)
        return maps[:, columns]


def _combined(
    faces: FaceBatch, shapes: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The max over a sample's blurred shape grids (each times ``weight`` (B, len(ALL_AUS)) of
    its shape when given), min-max on the 28×28 grid, upsampled: ``(maps, valid)``."""
    points, height, width = faces.points, faces.height, faces.width
    grids, b_idx, k_idx = _blurred_cells(points, shapes, height, width)
    flat = grids.flatten(1)
    if weight is not None:
        flat = flat * weight[b_idx, k_idx, None]
    combined = flat.new_zeros(points.shape[0], flat.shape[1])  # grids are ≥ 0: 0 is the floor
    combined.scatter_reduce_(0, b_idx[:, None].expand_as(flat), flat, "amax")
    normalised, valid = minmax(combined.view(-1, PAPER_GRID, PAPER_GRID))
    return _upsample(normalised, height, width), valid


# ---------------------------------------------------------------------------------------------
# rasterisation: sampling, blur


def _blurred_cells(
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


# ---------------------------------------------------------------------------------------------
# OpenCV-exact linear resampling


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
