"""AU → region geometry: where on a face each action unit's evidence lies.

Two geometries, both batched over faces and written as tables:

``belharbi2024`` — the reference code's filled ellipses (``plot_action_units_ellipsoid``), bug for
bug: fixed pixel constants tuned for 224×224 faces, landmarks truncated to int, the asymmetric
AU10/AU20 centres, the off-centre AU17, AU4's degenerate axes with their fall-backs
(shared/reference/paper-protocol.md §3.2). Each AU is one or two ellipses ``(cx, cy, ax, ay)``.

``default`` — aubench's resolution-independent model: every AU is one or two Gaussian blobs whose
centre is a mean of landmarks plus an offset, and whose offset and radius are in units of the face
scale ``s`` (inter-ocular distance, :func:`aubench.faces.landmarks.face_scale`). Centres follow
JAA-Net (Shao et al., ECCV 2018) converted to 68 points, with JAA-Net's ruler r (inner-eye-corner
distance) taken as r = s/2; AU5, AU16, AU20, AU27 and AU43 are aubench's own additions (marked
below). Every blob has a mirror twin under the horizontal flip, so the maps are flip-equivariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from aubench.faces.codebook import ALL_AUS
from aubench.faces.landmarks import FLIP_PERMUTATION


@dataclass(frozen=True)
class Blob:
    """One Gaussian blob of an AU region, in face units (s = inter-ocular distance).

    centre = mean(landmarks[points]) + offset·s; the region's extent is the ellipse with semi-axes
    radius·s, which is also the Gaussian's σ (the blob is e^−½ ≈ 0.61 on the region's edge, broad
    like the paper's blurred ellipses).
    """

    au: int
    points: tuple[int, ...]
    offset: tuple[float, float] = (0.0, 0.0)
    radius: tuple[float, float] = (0.25, 0.25)


def _pair(
    au: int,
    left: tuple[int, ...],
    offset: tuple[float, float] = (0.0, 0.0),
    radius: tuple[float, float] = (0.25, 0.25),
) -> tuple[Blob, Blob]:
    """A blob on the image-left side and its mirror twin (points flipped, x offset negated)."""
    right = tuple(FLIP_PERMUTATION[i] for i in left)
    return (
        Blob(au, left, offset, radius),
        Blob(au, right, (-offset[0], offset[1]), radius),
    )


# JAA-Net offsets are in r = s/2: "y − r/2" becomes −0.25·s, and so on.
DEFAULT_BLOBS: tuple[Blob, ...] = (
    *_pair(1, (21,), (0.0, -0.25), (0.22, 0.18)),  # JAA: L21/L22, y − r/2
    *_pair(2, (18,), (0.0, -1 / 6), (0.22, 0.18)),  # JAA: L18/L25, y − r/3
    *_pair(4, (19,), (0.0, 1 / 6), (0.24, 0.18)),  # JAA: L19/L24, y + r/3
    *_pair(5, tuple(range(36, 42)), (0.0, -0.125), (0.22, 0.14)),  # ours: eye centre, y − r/4
    *_pair(6, (41,), (0.0, 0.5), (0.26, 0.22)),  # JAA: L41/L46, y + r
    *_pair(7, (38,), (0.0, 0.0), (0.22, 0.14)),  # JAA: L38/L43
    *_pair(9, (32,), (0.0, -0.25), (0.16, 0.20)),  # JAA: L32/L34, y − r/2
    *_pair(10, (61,), (0.0, 0.0), (0.18, 0.14)),  # JAA: L61/L63
    *_pair(12, (48,), (0.0, 0.0), (0.22, 0.22)),  # JAA: L48/L54
    *_pair(14, (48,), (-0.08, 0.0), (0.20, 0.22)),  # JAA: L48/L54 (dimple just outside)
    *_pair(15, (48,), (0.0, 0.06), (0.22, 0.22)),  # JAA: L48/L54
    *_pair(16, (58, 57), (0.0, 0.125), (0.18, 0.14)),  # ours: lower-lip centre, y + r/4
    *_pair(17, (58,), (0.0, 0.25), (0.20, 0.18)),  # JAA: L56/L58, y + r/2
    *_pair(20, (48, 5), (0.0, 0.0), (0.20, 0.20)),  # ours: midpoints (L48, L5)/(L54, L11)
    *_pair(23, (50, 58), (0.0, 0.0), (0.20, 0.16)),  # JAA: L51/L57 (≈ lip centres per side)
    *_pair(24, (50, 58), (0.0, 0.0), (0.20, 0.16)),  # JAA: L51/L57
    *_pair(25, (61, 67), (0.0, 0.0), (0.18, 0.14)),  # JAA: L51/L57 (the lips' opening)
    *_pair(26, (58,), (0.0, 0.25), (0.22, 0.20)),  # JAA: L56/L58, y + r/2
    *_pair(27, (58,), (0.0, 0.30), (0.24, 0.24)),  # ours: as AU26, a little lower and wider
    *_pair(43, tuple(range(36, 42)), (0.0, 0.0), (0.22, 0.12)),  # ours: the closed eye
)


@dataclass(frozen=True)
class BlobTable:
    """The blobs of :data:`DEFAULT_BLOBS` as tensors, ready for batched evaluation.

    ``weights`` (N, 68) averages landmarks into centres; ``offset`` and ``radius`` (N, 2) are in
    face units; ``au_index`` (N,) is each blob's AU position in :data:`ALL_AUS`.
    """

    weights: torch.Tensor
    offset: torch.Tensor
    radius: torch.Tensor
    au_index: torch.Tensor

    @staticmethod
    def build(blobs: tuple[Blob, ...] = DEFAULT_BLOBS) -> BlobTable:
        # float64, so that averaging weights sum to 1 to rounding (float32 1/6·6 = 1 + 3e-8 would
        # shift centres in proportion to their coordinates and break flip symmetry)
        weights = torch.zeros(len(blobs), 68, dtype=torch.float64)
        for row, blob in enumerate(blobs):
            weights[row, list(blob.points)] = 1.0 / len(blob.points)
        return BlobTable(
            weights=weights,
            offset=torch.tensor([b.offset for b in blobs], dtype=torch.float64),
            radius=torch.tensor([b.radius for b in blobs], dtype=torch.float64),
            au_index=torch.tensor([ALL_AUS.index(b.au) for b in blobs]),
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> BlobTable:
        return BlobTable(
            self.weights.to(device, dtype),
            self.offset.to(device, dtype),
            self.radius.to(device, dtype),
            self.au_index.to(device),
        )


def default_blobs(
    landmarks: torch.Tensor, scale: torch.Tensor, table: BlobTable
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (B, N, 2) and semi-axes (B, N, 2) in pixels of every default blob.

    centre = W·L + offset·s, semi-axes = radius·s, with s (B,) the face scale.
    """
    centres = torch.einsum("nl,blc->bnc", table.weights, landmarks)
    centres = centres + table.offset * scale[:, None, None]
    return centres, table.radius * scale[:, None, None]


# ---------------------------------------------------------------------------------------------
# belharbi2024: the reference code's ellipses, as a table. Every ellipse parameter is
#     fallback_if_≤0( clamp( trunc( Σ coef·p + const ), low, high ) )
# of the int-truncated landmarks p, so a batch of faces needs one matrix product.


@dataclass(frozen=True)
class Lin:
    """One ellipse parameter: trunc(Σ coef·p[landmark, axis] + const), clamped, with a fall-back.

    ``terms`` maps (landmark, axis) to a coefficient (axis 0 = x, 1 = y); ``fallback`` replaces
    values ≤ 0 (None: keep them).
    """

    terms: tuple[tuple[int, int, float], ...]
    const: float = 0.0
    low: float = -math.inf
    high: float = math.inf
    fallback: float | None = None


def _px(value: float) -> Lin:
    return Lin((), value)


def _at(axis: int, *points: int, const: float = 0.0, **kw) -> Lin:
    """The paper's ``int(mean)`` of the points' coordinate (one point: the coordinate itself)."""
    return Lin(tuple((i, axis, 1 / len(points)) for i in points), const, **kw)


def _half(axis: int, a: int, b: int, const: float = 0.0, **kw) -> Lin:
    """``int((p_a − p_b + const) / 2)``: a half-difference, the paper's semi-axis."""
    return Lin(((a, axis, 0.5), (b, axis, -0.5)), const / 2, **kw)


def _paper_ellipses(height: int, width: int) -> dict[int, tuple[tuple[Lin, ...], ...]]:
    """AU → one or two ellipses (cx, cy, ax, ay), transcribed from paper-protocol.md §3.2."""
    x, y = 0, 1
    w8, h10, w10, twenty = (_px(round(v)) for v in (width / 8, height / 10, width / 10, 20))
    h6 = round(height / 6)

    def circle(centre_x: Lin, centre_y: Lin) -> tuple[Lin, ...]:
        return (centre_x, centre_y, twenty, twenty)

    def corners(left: int, right: int) -> tuple[tuple[Lin, ...], ...]:
        return circle(_at(x, left), _at(y, left)), circle(_at(x, right), _at(y, right))

    # per eye (corners, upper and lower lid points): centre, half width, half height, and AU7's
    # lid semi-axis "half height + 10" (an operator-precedence bug in the reference)
    eye_points = ((36, 39, 38, 41), (42, 45, 44, 47))
    eyes = [
        (_at(x, c0, c1), _at(y, up, lo), _half(x, c1, c0, fallback=5),
         _half(y, lo, up, fallback=5), _half(y, lo, up, 20, fallback=5))
        for c0, c1, up, lo in eye_points
    ]  # fmt: skip
    mouth = (_at(x, 48, 54), _at(y, 51, 57),
             _half(x, 54, 48, fallback=5), _half(y, 57, 51, fallback=5))  # fmt: skip
    return {
        1: ((_at(x, 20), _at(y, 20), w8, h10), (_at(x, 23), _at(y, 23), w8, h10)),
        2: ((_at(x, 18), _at(y, 18), w8, h10), (_at(x, 25), _at(y, 25), w8, h10)),
        4: ((_at(x, 19, 24), _at(y, 19, 24),
             _half(x, 24, 19, fallback=10), _half(y, 24, 19, fallback=10)),),
        5: tuple((cx, cy, ax, ay) for cx, cy, ax, ay, _ in eyes),
        6: ((_at(x, 41), _at(y, 41, const=h6), w10, h10),
            (_at(x, 46), _at(y, 46, const=h6), w10, h10)),
        7: tuple((cx, cy, ax, lid) for cx, cy, ax, _, lid in eyes),
        9: (circle(_at(x, 31), _at(y, 29)), circle(_at(x, 35), _at(y, 29))),
        10: (circle(_at(x, 48), _at(y, 50)), circle(_at(x, 52), _at(y, 54))),  # sic
        12: corners(48, 54),
        14: (circle(_at(x, 48, const=-20, low=0), _at(y, 48)),
             circle(_at(x, 54, const=20, high=width), _at(y, 54))),
        15: corners(48, 54),
        16: corners(59, 55),
        17: ((_at(x, 59, 8), _at(y, 59, 8),
              _half(x, 8, 59, fallback=5), _half(y, 8, 59, fallback=5)),),
        20: (circle(_at(x, 48, 6), _at(y, 48, 6)),
             circle(_at(x, 50, 10), _at(y, 50, 10))),  # L50 sic (L54 meant)
        23: (mouth,),
        24: (mouth,),
        25: ((_at(x, 51), _at(y, 51), _px(25), _px(10)),
             (_at(x, 57), _at(y, 57), _px(25), _px(10))),
        26: (mouth,),
        27: (mouth,),
        43: tuple((_at(x, c0, c1), _at(y, up, lo),  # as AU7 without the fall-back to 5
                   _half(x, c1, c0, fallback=0), _half(y, lo, up, 20, fallback=0))
                  for c0, c1, up, lo in eye_points),
    }  # fmt: skip


def _paper_duplicates() -> tuple[int, ...]:
    geometry = _paper_ellipses(224, 224)  # which AUs coincide does not depend on the image size
    first = {}
    return tuple(first.setdefault(geometry[au], k) for k, au in enumerate(ALL_AUS))


#: For each AU of :data:`ALL_AUS`, the index of the first AU drawn with identical ellipses in the
#: paper's geometry (AU23/24/26/27 share the mouth ellipse, AU12/15 the lip corners): a max over
#: AUs needs to draw each shape only once.
BELHARBI2024_SAME_AS: tuple[int, ...] = _paper_duplicates()


@lru_cache(maxsize=16)
def _paper_table(height: int, width: int) -> tuple[np.ndarray, ...]:
    """The §3.2 ellipses of all AUs as arrays over (AU, slot, parameter), flattened to R rows:
    ``matrix`` (R, 136) on the flattened landmarks, ``const``, ``low``, ``high``, ``fallback``
    (NaN: none). AUs drawn with one ellipse repeat it in the second slot (same drawing twice)."""
    geometry = _paper_ellipses(height, width)
    params = [p for au in ALL_AUS for e in (geometry[au] * 2)[:2] for p in e]
    matrix = np.zeros((len(params), 68 * 2))
    for row, param in enumerate(params):
        for landmark, axis, coef in param.terms:
            matrix[row, 2 * landmark + axis] += coef
    fallback = [math.nan if p.fallback is None else p.fallback for p in params]
    columns = ([p.const for p in params], [p.low for p in params], [p.high for p in params])
    return (matrix, *(np.array(c) for c in columns), np.array(fallback))


@lru_cache(maxsize=32)
def _paper_tensors(
    height: int, width: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a).to(device, dtype) for a in _paper_table(height, width))


def belharbi2024_ellipses(landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Ellipses (B, len(ALL_AUS), 2, 4) = (cx, cy, ax, ay) in integer pixels, as the paper draws.

    Landmarks are truncated to int first (the reference does ``int(x)``); ``mid(i, j)`` is
    ``int((p_i + p_j) / 2)``; sizes ``round(W/8)``, ``round(H/10)``, ``round(H/6)``, ``round(W/10)``
    scale with the image, every other constant is in pixels (tuned for 224×224).
    """
    matrix, const, low, high, fallback = _paper_tensors(
        height, width, landmarks.device, landmarks.dtype
    )
    values = torch.trunc(torch.trunc(landmarks).flatten(1) @ matrix.T + const)
    values = torch.minimum(torch.maximum(values, low), high)
    values = torch.where((values <= 0) & ~fallback.isnan(), fallback, values)
    return values.view(-1, len(ALL_AUS), 2, 4)
