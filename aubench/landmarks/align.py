"""Face crops and eye-based similarity alignment, moving landmarks together with the pixels.

Every geometric step is a 2×3 affine matrix ``M`` on (x, y) pixel coordinates with integer
coordinates at pixel centres (OpenCV's and dlib's convention, DESIGN.md): a source point ``p`` lands
on ``M @ (x, y, 1)`` in the output. Crops are integer shifts, resizes use half-pixel centres
(``x' = (x + 0.5)·s − 0.5``, as :func:`cv2.resize` moves content), and alignment warps with
:func:`cv2.warpAffine`, which applies exactly ``M``. So a landmark drawn as a dot stays on its dot.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from aubench.faces.landmarks import NUM_LANDMARKS

#: dlib's 5-point model: 0–1 image-right eye (outer, inner corner), 2–3 image-left eye (outer,
#: inner corner), 4 below the nose. Verified on scikit-image's ``astronaut``.
DLIB5_LEFT_EYE = (2, 3)
DLIB5_RIGHT_EYE = (0, 1)


@dataclass(frozen=True)
class FaceCrop:
    """A square face image (size, size, 3), its landmarks moved along, and the matrix used."""

    image: np.ndarray
    landmarks: np.ndarray | None
    matrix: np.ndarray


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply the 2×3 affine ``matrix`` to (…, 2) (x, y) points; float32 out, NaN stays NaN."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def square_boxes(boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Square, integer versions of (N, 4) ``x0, y0, x1, y1`` boxes (x1, y1 exclusive).

    Each box keeps its centre; its side becomes ``round(max(w, h) · (1 + margin))``. Returns int64
    (N, 4). Boxes may extend past the image (crops zero-pad).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    side = np.round(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + margin))
    x0 = np.round((boxes[:, 0] + boxes[:, 2] - side) / 2)
    y0 = np.round((boxes[:, 1] + boxes[:, 3] - side) / 2)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.int64)


def crop_box(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` for an integer box, zero-padded where the box leaves the image.

    A point (x, y) of ``image`` is at (x − x0, y − y0) in the crop.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop box {(x0, y0, x1, y1)}")
    height, width = image.shape[:2]
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return image[y0:y1, x0:x1]
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def resize_matrix(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """The 2×3 matrix of resizing a (width, height) image to (width', height') (half-pixel)."""
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def resize_face(
    image: np.ndarray, landmarks: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resize (H, W, 3) ``image`` to (size, size, 3) and move (68, 2) ``landmarks`` with it.

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return np.ascontiguousarray(image), np.asarray(landmarks, dtype=np.float32).copy()
    shrinking = size < max(height, width)
    resized = cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    return resized, transform_points(landmarks, resize_matrix((width, height), (size, size)))


def crop_face(
    image: np.ndarray,
    box: np.ndarray,
    size: int,
    landmarks: np.ndarray | None = None,
    margin: float = 0.0,
) -> FaceCrop:
    """Square crop around ``box`` (x0, y0, x1, y1), enlarged by ``margin``, resized to ``size``.

    ``landmarks`` (…, 2) in ``image`` pixels come back in crop pixels.
    """
    square = square_boxes(np.asarray(box), margin)[0]
    crop = crop_box(image, square)
    side = int(square[2] - square[0])
    shift = np.array([[1.0, 0.0, -square[0]], [0.0, 1.0, -square[1]]])
    matrix = _compose(resize_matrix((side, side), (size, size)), shift)
    interpolation = cv2.INTER_AREA if size < side else cv2.INTER_LINEAR
    out = cv2.resize(crop, (size, size), interpolation=interpolation)
    moved = None if landmarks is None else transform_points(landmarks, matrix)
    return FaceCrop(out, moved, matrix)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-left and image-right eye centres (2,) from (68, 2) iBUG or (5, 2) dlib points."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape == (NUM_LANDMARKS, 2):
        return points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    if points.shape == (5, 2):
        return points[list(DLIB5_LEFT_EYE)].mean(axis=0), points[list(DLIB5_RIGHT_EYE)].mean(axis=0)
    raise ValueError(f"points must be (68, 2) iBUG or (5, 2) dlib landmarks, got {points.shape}")


def similarity_matrix(
    left_eye: np.ndarray,
    right_eye: np.ndarray,
    size: int,
    eye_distance: float = 0.36,
    eye_line: float = 0.4,
) -> np.ndarray:
    """The 2×3 similarity (rotation, uniform scale, shift) that puts the eyes level.

    The image-left eye lands on ``((0.5 − d/2)·size − 0.5, eye_line·size − 0.5)`` and the
    image-right eye on ``((0.5 + d/2)·size − 0.5, …)``, with ``d = eye_distance`` (a fraction of
    ``size``).
    """
    left_eye, right_eye = np.asarray(left_eye, float), np.asarray(right_eye, float)
    delta = right_eye - left_eye
    distance = float(np.hypot(*delta))
    if not np.isfinite(distance) or distance == 0:
        raise ValueError(f"cannot align on eye centres {left_eye} and {right_eye}")
    scale = eye_distance * size / distance
    cos, sin = scale * delta / distance
    rotation = np.array([[cos, sin], [-sin, cos]])
    target = np.array([(0.5 - eye_distance / 2) * size - 0.5, eye_line * size - 0.5])
    return np.column_stack([rotation, target - rotation @ left_eye])


def align_face(
    image: np.ndarray,
    points: np.ndarray,
    size: int,
    landmarks: np.ndarray | None = None,
    eye_distance: float = 0.36,
    eye_line: float = 0.4,
) -> FaceCrop:
    """Rotate, scale and crop ``image`` so the eyes of ``points`` are level (see
    :func:`similarity_matrix`), giving a (size, size) face; zero fill outside the image.

    ``points``: (68, 2) iBUG or (5, 2) dlib landmarks giving the eye centres. ``landmarks``
    (defaults to ``points``) are moved into the output. When the face shrinks by more than 2×, the
    image is first reduced with area interpolation (no aliasing) and the matrices composed.
    """
    left, right = eye_centres(points)
    matrix = similarity_matrix(left, right, size, eye_distance, eye_line)
    scale = float(np.hypot(*matrix[:, 0]))
    source = image
    if scale < 0.5:
        height, width = image.shape[:2]
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        source = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        pre = resize_matrix((width, height), small)
        rest = similarity_matrix(
            *(transform_points(p, pre) for p in (left, right)), size, eye_distance, eye_line
        )
        warped = cv2.warpAffine(source, rest, (size, size), flags=cv2.INTER_LINEAR)
        matrix = _compose(rest, pre)
    else:
        warped = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR)
    moved = transform_points(points if landmarks is None else landmarks, matrix)
    return FaceCrop(warped, moved, matrix)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2×3 matrix of applying ``inner`` then ``outer``."""
    return outer[:, :2] @ inner + np.column_stack([np.zeros((2, 2)), outer[:, 2]])
