"""The ``dataset`` backend: landmarks that ship with the data (AffectNet, CK+, a ``folder`` CSV) or
that come from a ``landmarks.txt`` file, looked up by image id instead of detected.

Useful to copy shipped or externally computed landmarks (e.g. the reference paper's SynergyNet
``landmarks.txt``) into the landmark cache, so every dataset reads landmarks the same way. The
coordinates must be in the dataset's native-image pixels (see :mod:`aubench.data.base`). A
:class:`~aubench.landmarks.base.LandmarkBackend` like the detectors of :mod:`aubench.landmarks`,
it lives with the datasets because it reads them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aubench.data.landmarks_txt import read_landmarks_txt
from aubench.data.table import SkippedRowsWarning, SkipReport
from aubench.landmarks.base import NON_FINITE, NOT_IN_SOURCE, OK, Detections
from aubench.landmarks.cache import IdIndex


class DatasetBackend:
    """Look landmarks up by id.

    Args:
        source: a ``landmarks.txt`` path, or a dataset (:class:`~aubench.data.base.FaceDataset`)
            whose loader ships landmarks.

    Ids missing from the source get ``not_in_source``; rows whose shipped landmarks are non-finite
    get ``non_finite``. Rows of a ``landmarks.txt`` it could not use or that repeat an id are
    reported in one :class:`~aubench.data.table.SkippedRowsWarning`. The frame of imported
    landmarks is checked when a dataset reads them from the cache
    (:func:`aubench.data.landmark_source.check_frame`).
    """

    name = "dataset"
    needs_images = False

    def __init__(self, source: Any) -> None:
        if isinstance(source, str | os.PathLike):
            report = SkipReport()
            ids, landmarks = read_landmarks_txt(source, report)
            if report:
                warnings.warn(
                    f"{source}: skipped {sum(report.counts.values())} rows — {report.summary()}",
                    SkippedRowsWarning,
                    stacklevel=2,
                )
            self.origin, by_stem = str(Path(source).resolve()), True
        else:
            table = source.table
            if table.landmarks is None:
                raise ValueError(
                    f"{table.name} ships no landmarks; use --backend dlib, or pass a "
                    "landmarks.txt (--from FILE)"
                )
            ids, landmarks, self.origin = table.ids, table.landmarks, f"{table.name} (shipped)"
            by_stem = False
        self.index = IdIndex(ids, stems=by_stem)
        self.landmarks = landmarks

    def config(self) -> dict[str, Any]:
        return {"backend": self.name, "origin": self.origin}

    def __call__(self, images: Sequence[np.ndarray | None], ids: Sequence[str]) -> Detections:
        """The source's landmarks for ``ids`` (``images`` are not used)."""
        rows = self.index.lookup(pa.array(list(ids), pa.string()))
        out = Detections.empty(len(rows), NOT_IN_SOURCE)
        found = rows >= 0
        out.landmarks[found] = self.landmarks[rows[found]]
        finite = np.isfinite(out.landmarks).all(axis=(1, 2))
        out.status[found] = np.where(finite[found], OK, NON_FINITE)
        return out
