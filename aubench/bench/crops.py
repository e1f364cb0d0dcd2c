"""Faces cropped as a model card says, with landmarks from wherever they can be had.

A model scored by ``aubench evaluate`` sees its faces the way its card's ``crop`` says, and the AU
heatmaps are built from landmarks moved with the same pixels, so maps and heatmaps share one frame:

- ``as-is``: the dataset's image (its native image, cropped to its face box where the dataset
  gives one) resized to the card's side, as ``aubench run`` trains and evaluates;
- ``align``: aubench's eye-centre similarity alignment of the native image
  (:func:`aubench.landmarks.align.align_face`: eyes level, 0.36 × side apart, on the line at
  0.4 × side) to the card's side.

Landmarks come from the dataset (shipped, else the ``aubench landmarks`` cache: what
``open_dataset(..., landmarks="auto")`` picks up), else from dlib run on the fly on the native
image (the ``landmarks`` extra), each face counted by where its landmarks came from
(:attr:`CardFaces.counts`). A face left without landmarks keeps NaN landmarks: it counts for
accuracy and is excluded from the map metrics as ``no-landmarks``; with ``crop: align`` it cannot be
aligned and is resized as-is instead (counted). Synthetic faces carry exact landmarks and have no
native image beyond the rendered one, which is aligned as it is.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from aubench.data.sample import Sample
from aubench.landmarks.align import align_face, resize_face
from aubench.landmarks.base import OK, REASONS
from aubench.landmarks.dlib_backend import DlibBackend

#: Where a face's landmarks came from (keys of :attr:`CardFaces.counts`).
FROM_DATASET = "dataset"
DETECTED = "dlib on the fly"
NOT_ALIGNED = "not aligned (no landmarks): resized as-is"
DLIB_MISSING = "no landmarks (dlib not installed: pip install 'aubench[landmarks]')"


def describe_faces(faces: Dataset, crop: str, size: int) -> dict[str, Any]:
    """What the manifest records of the faces a cell was scored on: the crop, the side, where the
    dataset's landmarks come from and (:class:`CardFaces`) the faces counted by landmark source."""
    wrapped = isinstance(faces, CardFaces)
    split = faces.split if wrapped else faces
    return {
        "crop": crop,
        "size": size,
        "landmarks": getattr(split, "landmark_source", "synthetic (exact)"),
        "counts": dict(faces.counts) if wrapped else {},
    }


def faces_for(split: Dataset, crop: str, size: int) -> Dataset:
    """``split`` as a card with ``crop`` and side ``size`` wants it: itself when it already is
    (``as-is`` with every landmark known: what ``aubench run`` scores), else :class:`CardFaces`."""
    return CardFaces(split, crop, size) if _needs_cropping(split, crop) else split


def _needs_cropping(split: Dataset, crop: str) -> bool:
    """Whether :class:`CardFaces` must wrap ``split``: to align its faces, or to detect landmarks
    it lacks. Reads no image."""
    if crop == "align":
        return True
    table = getattr(split, "table", None)
    if table is None:  # synthetic faces: exact landmarks, already at the requested side
        return False
    return table.landmarks is None or not np.isfinite(table.landmarks).all()


class CardFaces(Dataset):
    """``split`` (an opened dataset, images in [0, 1]) with each face cropped per ``crop``
    (``align`` | ``as-is``) to ``size`` × ``size`` and its landmarks moved along (module doc).

    Items are the Sample contract (``image`` (3, size, size) in [0, 1], ``label``,
    ``landmarks`` (68, 2), ``id``); ``counts`` tells where the landmarks of the faces read so far
    came from; ``num_classes`` is the split's."""

    def __init__(self, split: Dataset, crop: str, size: int) -> None:
        if crop not in ("align", "as-is"):
            raise ValueError(f"crop must be 'align' or 'as-is', got {crop!r}")
        self.split = split
        self.crop = crop
        self.size = size
        self.num_classes = split.num_classes
        self.counts: Counter[str] = Counter()
        self._detector = DlibBackend() if importlib.util.find_spec("dlib") else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Sample:
        image, points, label, face_id = self._native(index)
        points = self._landmarks(image, points)
        if self.crop == "align" and np.isfinite(points).all():
            face = align_face(image, points, self.size)
            image, points = face.image, face.landmarks
        else:
            if self.crop == "align":
                self.counts[NOT_ALIGNED] += 1
            image, points = resize_face(image, points, self.size)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        if image.dtype == np.uint8:
            pixels = pixels.div_(255.0)
        return {
            "image": pixels.clamp_(0.0, 1.0),
            "label": label,
            "landmarks": torch.from_numpy(np.asarray(points, dtype=np.float32)),
            "id": face_id,
        }

    def _native(self, index: int) -> tuple[np.ndarray, np.ndarray, int, str]:
        """The face before cropping: (H, W, 3) uint8 native image (float32 in [0, 1] for synthetic
        faces), its (68, 2) landmarks, label and id."""
        if hasattr(self.split, "native_image"):
            item = int(index)
            image = self.split.native_image(item)
            points = self.split.native_landmarks(item)
            label = int(self.split.labels[item])
            return image, points, label, self.split.ids[item].as_py()
        sample = self.split[index]
        image = sample["image"].permute(1, 2, 0).numpy().astype(np.float32)
        return image, sample["landmarks"].numpy(), int(sample["label"]), sample["id"]

    def _landmarks(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``points`` when finite, else dlib's on ``image`` (NaN when it finds no face)."""
        if np.isfinite(points).all():
            self.counts[FROM_DATASET] += 1
            return points
        if self._detector is None:
            self.counts[DLIB_MISSING] += 1
            return points
        found = self._detector([image])
        status = int(found.status[0])
        self.counts[DETECTED if status == OK else f"dlib found none: {REASONS[status]}"] += 1
        return found.landmarks[0]
