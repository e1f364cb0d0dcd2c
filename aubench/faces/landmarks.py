"""The iBUG-68 landmark scheme: index groups, horizontal flip, face scale and validity.

Contract (DESIGN.md): landmarks are float tensors (B, 68, 2) holding (x, y) = (column, row) in
pixels of the image they belong to, 0-based iBUG-68 order. Integer coordinates are pixel centres (as
in OpenCV and dlib), so an image of width W spans x ∈ [-0.5, W - 0.5] and a horizontal flip maps
x ↦ W − 1 − x. A failed detection is all-NaN (any non-finite value makes a face invalid).

Groups (0-based): jaw 0–16, image-left brow 17–21, image-right brow 22–26, nose bridge 27–30,
nostrils 31–35, image-left eye 36–41, image-right eye 42–47, outer lip 48–59, inner lip 60–67.
"""

from __future__ import annotations

import numpy as np
import torch

NUM_LANDMARKS = 68

#: Index ranges of the iBUG-68 groups (image-left = the subject's right).
GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "left_brow": range(17, 22),
    "right_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nostrils": range(31, 36),
    "left_eye": range(36, 42),
    "right_eye": range(42, 48),
    "outer_lip": range(48, 60),
    "inner_lip": range(60, 68),
}

_MIRROR_PAIRS = (
    *((i, 16 - i) for i in range(8)),  # jaw
    *((17 + i, 26 - i) for i in range(5)),  # brows
    (31, 35), (32, 34),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lip
    (60, 64), (61, 63), (65, 67),  # inner lip
)  # fmt: skip


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_LANDMARKS))
    for a, b in _MIRROR_PAIRS:
        perm[a], perm[b] = b, a
    return tuple(perm)


#: ``flipped[i] = original[FLIP_PERMUTATION[i]]`` after mirroring x: left and right parts swap.
FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation()

#: A canonical frontal face in a unit frame (x right, y down, face box ≈ [0, 1]²), (68, 2).
#: Symmetric under :data:`FLIP_PERMUTATION` about x = 0.5; eye centres 0.4 apart.
# fmt: off
MEAN_FACE: np.ndarray = np.array(
    [
        # jaw 0-16
        *[(0.5 + 0.5 * np.cos(t) * (1 - 0.3 * np.sin(t)), 0.25 + 0.75 * np.sin(t))
          for t in np.linspace(np.pi, 0, 17)],
        # brows 17-21, 22-26
        (0.10, 0.17), (0.17, 0.12), (0.25, 0.10), (0.33, 0.11), (0.41, 0.14),
        (0.59, 0.14), (0.67, 0.11), (0.75, 0.10), (0.83, 0.12), (0.90, 0.17),
        # nose bridge 27-30, nostrils 31-35
        (0.50, 0.27), (0.50, 0.36), (0.50, 0.45), (0.50, 0.54),
        (0.41, 0.59), (0.45, 0.605), (0.50, 0.615), (0.55, 0.605), (0.59, 0.59),
        # eyes 36-41, 42-47
        (0.22, 0.27), (0.27, 0.245), (0.33, 0.245), (0.38, 0.27), (0.33, 0.29), (0.27, 0.29),
        (0.62, 0.27), (0.67, 0.245), (0.73, 0.245), (0.78, 0.27), (0.73, 0.29), (0.67, 0.29),
        # outer lip 48-59
        (0.34, 0.76), (0.39, 0.725), (0.45, 0.71), (0.50, 0.715), (0.55, 0.71), (0.61, 0.725),
        (0.66, 0.76), (0.61, 0.80), (0.55, 0.82), (0.50, 0.825), (0.45, 0.82), (0.39, 0.80),
        # inner lip 60-67
        (0.36, 0.76), (0.45, 0.745), (0.50, 0.75), (0.55, 0.745),
        (0.64, 0.76), (0.55, 0.77), (0.50, 0.775), (0.45, 0.77),
    ],
    dtype=np.float64,
)
# fmt: on


def as_landmarks(landmarks: torch.Tensor | np.ndarray, name: str = "landmarks") -> torch.Tensor:
    """Validate and convert to a float tensor of shape (B, 68, 2); a single (68, 2) face gets B=1.

    Raises ``ValueError`` naming the offending shape or dtype. Non-finite values are allowed (they
    mark failed detections) and are handled by :func:`finite_faces`.
    """
    tensor = torch.as_tensor(landmarks)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{name} must be real numbers, got dtype {tensor.dtype}")
    if tuple(tensor.shape[-2:]) != (NUM_LANDMARKS, 2) or tensor.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (B, {NUM_LANDMARKS}, 2) or ({NUM_LANDMARKS}, 2) as (x, y) "
            f"pixels in iBUG-68 order, got {tuple(tensor.shape)}"
        )
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    return tensor if tensor.is_floating_point() else tensor.float()


def finite_faces(landmarks: torch.Tensor) -> torch.Tensor:
    """Bool (B,): True where all 68 points are finite (a usable detection)."""
    return torch.isfinite(landmarks).flatten(1).all(dim=1)


def eye_centres(landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-left and image-right eye centres (B, 2): the means of points 36–41 and 42–47."""
    return landmarks[:, 36:42].mean(dim=1), landmarks[:, 42:48].mean(dim=1)


def face_scale(landmarks: torch.Tensor) -> torch.Tensor:
    """Inter-ocular distance (B,) in pixels: ‖mean(L36..41) − mean(L42..47)‖₂ (NaN if an eye is)."""
    left, right = eye_centres(landmarks)
    return torch.linalg.vector_norm(right - left, dim=-1)


def flip_landmarks(landmarks: torch.Tensor, width: int) -> torch.Tensor:
    """Landmarks of the horizontally flipped image: x ↦ width − 1 − x, left/right parts swapped."""
    flipped = landmarks[:, list(FLIP_PERMUTATION)].clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def rescale_landmarks(landmarks: torch.Tensor, scale_x: float, scale_y: float) -> torch.Tensor:
    """Landmarks of the image resized by (scale_x, scale_y), pixel-centre convention.

    A point p maps to (p + 0.5) · s − 0.5, which is how image resizing with half-pixel centres
    (``align_corners=False``, OpenCV's INTER_LINEAR/AREA) moves content.
    """
    scale = landmarks.new_tensor([scale_x, scale_y])
    return (landmarks + 0.5) * scale - 0.5


#: The landmarks whose line splits a face into halves: the top of the nose bridge and the chin.
MIDLINE = (27, 8)


def face_halves(
    landmarks: torch.Tensor, size: tuple[int, int], sides: torch.Tensor
) -> torch.Tensor:
    """Bool (B, H, W): the pixels of each face's ``sides`` half, split by the line through points
    27 (nose bridge) and 8 (chin) in pixel coordinates (centres at integers).

    ``sides`` (B,): −1 the half of the image-left landmarks (iBUG 0–7, 36–41, …: left of the
    midline on an upright face), +1 the other, 0 none (all False). With d = L8 − L27 and
    q = p − L27, a pixel p is on side −1 where d × q = d_x q_y − d_y q_x > 0. NaN landmarks give
    an all-False mask.
    """
    height, width = size
    top, bottom = landmarks[:, MIDLINE[0]], landmarks[:, MIDLINE[1]]  # (B, 2)
    d = bottom - top
    ys = torch.arange(height, device=landmarks.device, dtype=landmarks.dtype)
    xs = torch.arange(width, device=landmarks.device, dtype=landmarks.dtype)
    qx = xs[None, None, :] - top[:, 0, None, None]  # (B, 1, W)
    qy = ys[None, :, None] - top[:, 1, None, None]  # (B, H, 1)
    cross = d[:, 0, None, None] * qy - d[:, 1, None, None] * qx  # (B, H, W)
    return cross * (-sides.to(cross.dtype))[:, None, None] > 0
