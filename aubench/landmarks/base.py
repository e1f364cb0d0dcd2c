"""The landmark-backend protocol, detection results and failure reasons.

A backend maps a batch of images (native-image pixels, see :mod:`aubench.data.base`) to
:class:`Detections`: (N, 68, 2) float32 iBUG-68 landmarks, all-NaN where it failed, and one status
code per image naming why (``REASONS``). Backends: ``dlib`` (default, offline,
:mod:`aubench.landmarks.dlib_backend`), ``face-alignment`` (FAN; weights from the torch hub cache,
:mod:`aubench.landmarks.face_alignment_backend`) and ``dataset`` (landmarks shipped with the data
or read from a ``landmarks.txt``, :mod:`aubench.data.dataset_backend`). Get one by name with
:func:`aubench.data.landmark_backends.get_backend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aubench.faces.landmarks import NUM_LANDMARKS

#: Status codes (index → reason). ``pending`` marks cache rows not computed yet.
REASONS: tuple[str, ...] = (
    "ok",
    "pending",
    "unreadable_image",
    "no_face",
    "low_score",
    "not_in_source",
    "non_finite",
)
OK, PENDING, UNREADABLE_IMAGE, NO_FACE, LOW_SCORE, NOT_IN_SOURCE, NON_FINITE = range(len(REASONS))


@dataclass(frozen=True)
class Detections:
    """Landmarks of N images.

    Attributes:
        landmarks: (N, 68, 2) float32 (x, y) pixels, all-NaN where ``status != OK``.
        status: (N,) int8 codes into :data:`REASONS`.
        boxes: (N, 4) float32 face boxes ``x0, y0, x1, y1`` the landmarks were fitted in (NaN if
            none).
        scores: (N,) float32 detector scores (NaN where the backend has none).
    """

    landmarks: np.ndarray
    status: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, n: int, status: int = PENDING) -> Detections:
        """N failures with one status: NaN landmarks, boxes and scores."""
        return cls(
            np.full((n, NUM_LANDMARKS, 2), np.nan, dtype=np.float32),
            np.full(n, status, dtype=np.int8),
            np.full((n, 4), np.nan, dtype=np.float32),
            np.full(n, np.nan, dtype=np.float32),
        )

    @property
    def reasons(self) -> list[str]:
        return [REASONS[code] for code in self.status]


def count_reasons(status: np.ndarray) -> dict[str, int]:
    """``{reason: count}`` over status codes, in :data:`REASONS` order, zero counts left out."""
    counts = np.bincount(np.asarray(status, dtype=np.int64), minlength=len(REASONS))
    return {REASONS[code]: int(n) for code, n in enumerate(counts) if n}


class LandmarkBackend(Protocol):
    """Detects 68 landmarks.

    ``needs_images`` is False for backends that look landmarks up by id (``dataset``); the caller
    then passes ``None`` for every image. Backends load their models lazily on the first call and
    must be picklable before that (``aubench landmarks --workers`` sends them to worker processes).
    """

    name: str
    needs_images: bool

    def config(self) -> dict[str, Any]:
        """The settings that change the results (stored with the cache)."""
        ...

    def __call__(self, images: Sequence[np.ndarray | None], ids: Sequence[str]) -> Detections: ...
