"""Straightforward per-image reference implementations that aubench's batched code is checked
against.

``paper_heatmap`` transcribes the reference code's pipeline (shared/reference/paper-protocol.md
§3.2-3.3) image by image with OpenCV, independently of aubench's batched geometry: int landmarks,
one float64 canvas per AU filled with 1e-4 and ellipses of value 255, ``is_roi`` at full
resolution, ``cv2.resize`` to 28×28, ``cv2.blur`` 3×3, ``cv2.resize`` back, max over AUs at full
size, min-max (float32, as the reference).
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


def paper_au_map(landmarks: np.ndarray, au: int, h: int = 224, w: int = 224) -> np.ndarray | None:
    """One AU's full-size float64 map (1e-4 … 255), the reference's way, or None when its
    ellipses paint no pixel of the image (``is_roi`` is False: the reference drops the AU).

    ``plot_action_units_ellipsoid`` then ``build_all_action_units``: a float64 canvas of 1e-4,
    ellipses of value 255, ``cv2.resize`` to 28×28, ``cv2.blur`` 3×3, ``cv2.resize`` back.
    """
    canvas = np.full((h, w), 1e-4)
    for cx, cy, ax, ay in paper_ellipses(landmarks, h, w)[au]:
        cv2.ellipse(canvas, (cx, cy), (ax, ay), 0, 0, 360, (255, 255, 255), -1)
    if (canvas - 1e-4).sum() <= 0:  # is_roi: the AU lies outside the image
        return None
    small = cv2.blur(cv2.resize(canvas, (28, 28)), (3, 3))
    return cv2.resize(small, (w, h))


def paper_heatmap(
    landmarks: np.ndarray, label: int, codebook: Codebook, h: int = 224, w: int = 224
) -> tuple[np.ndarray, bool]:
    """One image's AU heatmap (h, w) float32 and its validity, the reference code's way.

    In the reference's order and dtypes: the per-AU maps are stacked as float32, the max over
    AUs is taken at full size (``max(axis=0, initial=-1)``), then min-max in float32
    (``_preprape_au_hmap``, denominator 0 → 1). Validity is the reference's own (some AU paints
    a pixel of the image), except that non-finite landmarks are invalid instead of an error; a
    face whose regions vanish at 28×28 is valid with an all-zero map, as in the reference.
    """
    aus = codebook.aus_of(label)
    if not aus or not np.isfinite(landmarks).all():
        return np.zeros((h, w), np.float32), False
    maps = [m for m in (paper_au_map(landmarks, au, h, w) for au in aus) if m is not None]
    if not maps:
        return np.zeros((h, w), np.float32), False
    combined = np.stack(maps).astype(np.float32).max(axis=0, initial=-1)
    low, high = combined.min(), combined.max()
    span = high - low
    return ((combined - low) / (span if span != 0 else 1.0)).astype(np.float32), True


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


def torch_antialias_weights(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) weights of ``F.interpolate(mode="bilinear", antialias=True)`` along one axis.

    PyTorch's antialiased kernel: scale = (n_in − 1)/(n_out − 1) with ``align_corners`` else
    n_in/n_out; support = max(scale, 1); output i is centred at c = scale·(i + ½) (no
    ``align_corners`` shift), taps j in [⌊c − support + ½⌋, ⌊c + support + ½⌋), triangle weights
    ``1 − |(j − c + ½)/max(scale, 1)|``, normalised to sum 1.
    """
    scale = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
    support = max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = scale * (i + 0.5)
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), n_in)
        taps = np.arange(low, high)
        w = np.clip(1 - np.abs((taps - centre + 0.5) / support), 0, None)
        weights[i, low:high] = w / w.sum()
    return weights


def paper_cam(raw: np.ndarray, h: int, w: int, relu: bool) -> np.ndarray:
    """One CAM the reference's way: ReLU (if the method has one), min-max at the layer's
    resolution with no ε (constant → NaN → 0), ``cv2.resize`` bilinear to (h, w), clip [0, 1]
    (``dlib/cams/core.py:105-109,186-191``, ``inference_wsol.py:457,529-536``)."""
    cam = np.maximum(raw, 0).astype(np.float64) if relu else raw.astype(np.float64)
    cam = cam - cam.min()
    with np.errstate(invalid="ignore", divide="ignore"):
        cam = np.nan_to_num(cam / cam.max(), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def paper_attention(raw: np.ndarray, h: int, w: int) -> np.ndarray:
    """One attention map the reference's way (``inference_wsol.py:644-661``): bilinear resize
    with ``align_corners=True, antialias=True``, clamp to the pre-resize [min, max], then + (−min)
    when that minimum is negative; no min-max."""
    rows = torch_antialias_weights(raw.shape[0], h, align_corners=True)
    cols = torch_antialias_weights(raw.shape[1], w, align_corners=True)
    low, high = raw.min(), raw.max()
    resized = np.clip(rows @ raw.astype(np.float64) @ cols.T, low, high)
    return resized - low if low < 0 else resized


def paper_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """``F.cosine_similarity(x.view(-1), y.view(-1), dim=0, eps=1e-8)`` then ``nan_to_num``
    (``dlib/metrics/wsol_metrics.py:61-69``, ``inference_wsol.py:685``)."""
    x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
    value = (x / max(np.linalg.norm(x), 1e-8)) @ (y / max(np.linalg.norm(y), 1e-8))
    return float(np.nan_to_num(value, nan=0.0, posinf=1.0, neginf=0.0))
