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

from dataclasses import dataclass

import torch

from aubench.faces.codebook import ALL_AUS
from aubench.faces.landmarks import FLIP_PERMUTATION


@dataclass(frozen=True)
class Blob:
    """One Gaussian blob of an AU region, in face units (s = inter-ocular distance).

    centre = mean(landmarks[points]) + offset·s; the region's extent is the ellipse with semi-axes
    radius·s (the Gaussian's σ is half of that).
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
# belharbi2024: the reference code's ellipses. Each AU has two ellipse slots; AUs drawn with one
# ellipse repeat it in the second slot (drawing the same ellipse twice changes nothing).


def belharbi2024_ellipses(landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Ellipses (B, len(ALL_AUS), 2, 4) = (cx, cy, ax, ay) in integer pixels, as the paper draws.

    Landmarks are truncated to int first (the reference does ``int(x)``); ``mid(i, j)`` is
    ``int((p_i + p_j) / 2)``; sizes ``round(W/8)``, ``round(H/10)``, ``round(H/6)``, ``round(W/10)``
    scale with the image, every other constant is in pixels (tuned for 224×224).
    Non-finite landmarks give NaN ellipses (the caller marks those faces invalid).
    """
    p = torch.trunc(landmarks)
    x, y = p[..., 0], p[..., 1]

    def full(value: float) -> torch.Tensor:
        return torch.full_like(x[:, 0], float(value))

    def mid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.trunc((a + b) / 2)

    def half(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.trunc((a - b) / 2)

    def fallback(axis: torch.Tensor, value: float) -> torch.Tensor:
        return torch.where(axis <= 0, torch.full_like(axis, value), axis)

    w8, h10, h6, w10 = round(width / 8), round(height / 10), round(height / 6), round(width / 10)
    twenty = full(20)
    eye_l = (mid(x[:, 36], x[:, 39]), mid(y[:, 38], y[:, 41]))
    eye_r = (mid(x[:, 42], x[:, 45]), mid(y[:, 44], y[:, 47]))
    eye_w_l, eye_w_r = half(x[:, 39], x[:, 36]), half(x[:, 45], x[:, 42])
    lid_l, lid_r = half(y[:, 41] + 20, y[:, 38]), half(y[:, 47] + 20, y[:, 44])  # "+ 10" quirk
    mouth = (mid(x[:, 48], x[:, 54]), mid(y[:, 51], y[:, 57]))
    mouth_axes = (fallback(half(x[:, 54], x[:, 48]), 5), fallback(half(y[:, 57], y[:, 51]), 5))

    def ell(cx, cy, ax, ay) -> torch.Tensor:
        return torch.stack([cx, cy, ax, ay], dim=-1)

    def two(first: torch.Tensor, second: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([first, first if second is None else second], dim=1)

    def point(i: int, ax, ay) -> torch.Tensor:
        return ell(x[:, i], y[:, i], ax, ay)

    brow_axes = (full(w8), full(h10))
    per_au = {
        1: two(point(20, *brow_axes), point(23, *brow_axes)),
        2: two(point(18, *brow_axes), point(25, *brow_axes)),
        4: two(
            ell(
                mid(x[:, 19], x[:, 24]),
                mid(y[:, 19], y[:, 24]),
                fallback(half(x[:, 24], x[:, 19]).clamp(min=0), 10),
                fallback(half(y[:, 24], y[:, 19]).clamp(min=0), 10),
            )
        ),
        5: two(
            ell(*eye_l, fallback(eye_w_l, 5), fallback(half(y[:, 41], y[:, 38]), 5)),
            ell(*eye_r, fallback(eye_w_r, 5), fallback(half(y[:, 47], y[:, 44]), 5)),
        ),
        6: two(
            ell(x[:, 41], y[:, 41] + h6, full(w10), full(h10)),
            ell(x[:, 46], y[:, 46] + h6, full(w10), full(h10)),
        ),
        7: two(
            ell(*eye_l, fallback(eye_w_l, 5), fallback(lid_l, 5)),
            ell(*eye_r, fallback(eye_w_r, 5), fallback(lid_r, 5)),
        ),
        9: two(ell(x[:, 31], y[:, 29], twenty, twenty), ell(x[:, 35], y[:, 29], twenty, twenty)),
        10: two(ell(x[:, 48], y[:, 50], twenty, twenty), ell(x[:, 52], y[:, 54], twenty, twenty)),
        12: two(point(48, twenty, twenty), point(54, twenty, twenty)),
        14: two(
            ell((x[:, 48] - 20).clamp(min=0), y[:, 48], twenty, twenty),
            ell((x[:, 54] + 20).clamp(max=width), y[:, 54], twenty, twenty),
        ),
        15: two(point(48, twenty, twenty), point(54, twenty, twenty)),
        16: two(point(59, twenty, twenty), point(55, twenty, twenty)),
        17: two(
            ell(
                mid(x[:, 59], x[:, 8]),
                mid(y[:, 59], y[:, 8]),
                fallback(half(x[:, 8], x[:, 59]), 5),
                fallback(half(y[:, 8], y[:, 59]), 5),
            )
        ),
        20: two(
            ell(mid(x[:, 48], x[:, 6]), mid(y[:, 48], y[:, 6]), twenty, twenty),
            ell(mid(x[:, 50], x[:, 10]), mid(y[:, 50], y[:, 10]), twenty, twenty),  # L50 sic
        ),
        23: two(ell(*mouth, *mouth_axes)),
        24: two(ell(*mouth, *mouth_axes)),
        25: two(point(51, full(25), full(10)), point(57, full(25), full(10))),
        26: two(ell(*mouth, *mouth_axes)),
        27: two(ell(*mouth, *mouth_axes)),
        43: two(  # as AU7 without the zero fall-back
            ell(*eye_l, eye_w_l.clamp(min=0), lid_l.clamp(min=0)),
            ell(*eye_r, eye_w_r.clamp(min=0), lid_r.clamp(min=0)),
        ),
    }
    return torch.stack([per_au[au] for au in ALL_AUS], dim=1)
