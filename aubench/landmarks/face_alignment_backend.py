"""The ``face-alignment`` backend: FAN (Bulat & Tzimiropoulos, 2017) 2D landmarks, offline only.

face-alignment downloads its weights on first use, which aubench never lets happen: before building
the model this backend checks that every weight file is already in torch hub's checkpoint folder
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) and otherwise raises a
:class:`FileNotFoundError` listing each file, the folder to put it in and the URL it comes from (the
URLs are read from the installed face-alignment, since they change between its versions).

``face_box="image"`` (default) uses the whole image as the face box, so only the FAN weights are
needed (face-alignment's ``folder`` detector loads nothing); ``face_box="detect"`` also needs the
S3FD detector weights and keeps the highest-scoring face.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aubench.landmarks.base import NO_FACE, OK, Detections

_INSTALL = "pip install 'aubench[face-alignment]'"


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder ``$TORCH_HOME/hub/checkpoints``, where face-alignment looks."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def check_weights(urls: Mapping[str, str], folder: Path | None = None) -> list[Path]:
    """The local paths of the weight files behind ``urls`` (``{what: url}``) in ``folder``
    (default :func:`hub_checkpoint_dir`); a :class:`FileNotFoundError` explaining where to place
    each missing file and where it comes from, when any is absent."""
    folder = hub_checkpoint_dir() if folder is None else Path(folder)
    paths = {what: folder / os.path.basename(url) for what, url in urls.items()}
    missing = [what for what, path in paths.items() if not path.is_file()]
    if missing:
        lines = "\n".join(f"  {what}: {paths[what]}  (from {urls[what]})" for what in missing)
        raise FileNotFoundError(
            "face-alignment weights are not in the torch hub cache, and aubench never downloads at "
            f"run time. Copy these files there (from a machine with network access) first:\n{lines}"
            f"\nThe folder is {folder} (set TORCH_HOME to use another); or use --backend dlib, "
            "which works offline."
        )
    return list(paths.values())


def _import_face_alignment():
    try:
        import face_alignment
    except ImportError as err:
        raise ImportError(f"face-alignment is not installed: {_INSTALL}") from err
    return face_alignment


def required_urls(face_box: str) -> dict[str, str]:
    """The weight URLs the installed face-alignment would download for this configuration."""
    api = _import_face_alignment().api
    version = torch.__version__.split("+")[0].rsplit(".", 1)[0]
    table = getattr(api, "models_urls", {})
    urls = table.get(version, getattr(api, "default_model_urls", table))
    needed = {"FAN 2D landmarks": urls["2DFAN-4"]}
    if face_box == "detect":
        from face_alignment.detection.sfd import sfd_detector

        needed["S3FD face detector"] = sfd_detector.models_urls["s3fd"]
    return needed


class FaceAlignmentBackend:
    """FAN 68-point landmarks (see the module docstring).

    Args:
        face_box: ``image`` (the whole image is the face) or ``detect`` (S3FD).
        device: torch device for the network.
    """

    name = "face-alignment"
    needs_images = True

    def __init__(self, *, face_box: str = "image", device: str = "cpu") -> None:
        if face_box not in ("detect", "image"):
            raise ValueError(f"face_box must be 'detect' or 'image', got {face_box!r}")
        self.face_box = face_box
        self.device = device
        check_weights(required_urls(face_box))
        self._model = None

    def config(self) -> dict[str, Any]:
        return {"backend": self.name, "face_box": self.face_box}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def _fan(self):
        if self._model is None:
            fa = _import_face_alignment()
            detector = "sfd" if self.face_box == "detect" else "folder"
            self._model = fa.FaceAlignment(
                fa.LandmarksType.TWO_D, device=self.device, face_detector=detector
            )
        return self._model

    def __call__(
        self, images: Sequence[np.ndarray | None], ids: Sequence[str] | None = None
    ) -> Detections:
        """Landmarks of each (H, W, 3) uint8 RGB image (see :class:`Detections`)."""
        out = Detections.empty(len(images))
        model = self._fan()
        for k, image in enumerate(images):
            height, width = image.shape[:2]
            if self.face_box == "image":
                boxes = np.array([[0, 0, width - 1, height - 1, np.nan]])
                points = model.get_landmarks_from_image(image, detected_faces=boxes[:, :4])
            else:
                points, _, boxes = model.get_landmarks_from_image(image, return_bboxes=True)
            if points is None or len(points) == 0:
                out.status[k] = NO_FACE
                continue
            best = 0 if self.face_box == "image" else int(np.argmax(np.asarray(boxes)[:, -1]))
            out.status[k] = OK
            out.landmarks[k] = np.asarray(points[best])[:, :2]
            out.boxes[k] = np.asarray(boxes[best])[:4]
            out.scores[k] = np.asarray(boxes[best])[-1]
        return out
