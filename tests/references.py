"""Straightforward per-image reference implementations that aubench's batched code is checked
against.

``paper_heatmap`` transcribes the reference code's pipeline (shared/reference/paper-protocol.md
§3.2-3.3) image by image with OpenCV, independently of aubench's batched geometry: int landmarks,
one float64 canvas per AU filled with 1e-4 and ellipses of value 255, ``is_roi`` at full
resolution, ``cv2.resize`` to 28×28, ``cv2.blur`` 3×3, ``cv2.resize`` back, max over AUs, min-max.
"""

from __future__ import annotations

import cv2
import numpy as np

from aubench.faces.codebook import Codebook
from aubench.faces.landmarks import MEAN_FACE


def paper_ellipses(landmarks: np.ndarray, h: int, w: int) -> dict[int, list[tuple[int, ...]]]:
    """AU number → list of (cx, cy, ax, ay) ellipses, per paper-protocol.md §3.2."""
    x = [int(v) for v in landmarks[:, 0]]
    y = [int(v) for v in landmarks[:, 1]]

    def mid(a: int, b: int) -> int:
        return int((a + b) / 2)

    def half(a: int, b: int) -> int:
        return int((a - b) / 2)

    def or_else(value: int, fallback: int) -> int:
        return fallback if value <= 0 else value

    brow = (round(w / 8), round(h / 10))
    # per eye: centre x, centre y, half width, half height, lower-lid y, upper-lid y
    eyes = [
        (mid(x[c0], x[c1]), mid(y[up], y[lo]), half(x[c1], x[c0]), half(y[lo], y[up]), y[lo], y[up])
        for c0, c1, up, lo in ((36, 39, 38, 41), (42, 45, 44, 47))
    ]
    mouth = (
        mid(x[48], x[54]),
        mid(y[51], y[57]),
        or_else(half(x[54], x[48]), 5),
        or_else(half(y[57], y[51]), 5),
    )
    return {
        1: [(x[20], y[20], *brow), (x[23], y[23], *brow)],
        2: [(x[18], y[18], *brow), (x[25], y[25], *brow)],
        4: [
            (
                mid(x[19], x[24]),
                mid(y[19], y[24]),
                or_else(max(half(x[24], x[19]), 0), 10),
                or_else(max(half(y[24], y[19]), 0), 10),
            )
        ],
        5: [(cx, cy, or_else(ax, 5), or_else(ay, 5)) for cx, cy, ax, ay, _, _ in eyes],
        6: [
            (x[41], y[41] + round(h / 6), round(w / 10), round(h / 10)),
            (x[46], y[46] + round(h / 6), round(w / 10), round(h / 10)),
        ],
        7: [
            (cx, cy, or_else(ax, 5), or_else(int((lo - up + 20) / 2), 5))
            for cx, cy, ax, _, lo, up in eyes
        ],
        9: [(x[31], y[29], 20, 20), (x[35], y[29], 20, 20)],
        10: [(x[48], y[50], 20, 20), (x[52], y[54], 20, 20)],
        12: [(x[48], y[48], 20, 20), (x[54], y[54], 20, 20)],
        14: [(max(x[48] - 20, 0), y[48], 20, 20), (min(x[54] + 20, w), y[54], 20, 20)],
        15: [(x[48], y[48], 20, 20), (x[54], y[54], 20, 20)],
        16: [(x[59], y[59], 20, 20), (x[55], y[55], 20, 20)],
        17: [
            (
                mid(x[59], x[8]),
                mid(y[59], y[8]),
                or_else(half(x[8], x[59]), 5),
                or_else(half(y[8], y[59]), 5),
            )
        ],
        20: [
            (mid(x[48], x[6]), mid(y[48], y[6]), 20, 20),
            (mid(x[50], x[10]), mid(y[50], y[10]), 20, 20),
        ],
        23: [mouth],
        24: [mouth],
        25: [(x[51], y[51], 25, 10), (x[57], y[57], 25, 10)],
        26: [mouth],
        27: [mouth],
    }


def paper_heatmap(
    landmarks: np.ndarray, label: int, codebook: Codebook, h: int = 224, w: int = 224
) -> tuple[np.ndarray, bool]:
    """One image's AU heatmap (h, w) float32 and its validity, the reference code's way."""
    aus = codebook.aus_of(label)
    if not aus or not np.isfinite(landmarks).all():
        return np.zeros((h, w), np.float32), False
    geometry = paper_ellipses(landmarks, h, w)
    maps = []
    for au in aus:
        canvas = np.full((h, w), 1e-4)
        for cx, cy, ax, ay in geometry[au]:
            cv2.ellipse(canvas, (cx, cy), (ax, ay), 0, 0, 360, (255, 255, 255), -1)
        if (canvas - 1e-4).sum() <= 0:  # is_roi: the AU lies outside the image
            continue
        small = cv2.blur(cv2.resize(canvas, (28, 28)), (3, 3))
        maps.append(cv2.resize(small, (w, h)))
    if not maps:
        return np.zeros((h, w), np.float32), False
    combined = np.stack(maps).max(axis=0, initial=-1)
    low, high = combined.min(), combined.max()
    return ((combined - low) / ((high - low) or 1)).astype(np.float32), True


def random_faces(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 68, 2) plausible random faces in a size×size image (similarity pose + shape noise).

    The canonical face is scaled to 55-80% of the image, rotated by up to ±15°, shifted by up to
    ±8% of the image, jittered per point (σ = 0.8% of the image), with a random mouth opening.
    """
    faces = np.empty((n, 68, 2))
    for i in range(n):
        shape = MEAN_FACE - 0.5
        shape = shape + rng.normal(0, 0.008, shape.shape)
        shape[[61, 62, 63], 1] -= rng.uniform(0, 0.03)
        shape[[65, 66, 67, 55, 56, 57, 58, 59], 1] += rng.uniform(0, 0.08)
        angle = np.deg2rad(rng.uniform(-15, 15))
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        scale = rng.uniform(0.55, 0.8) * size
        centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
        faces[i] = shape @ rotation.T * scale + centre
    return faces
