"""The reference paper's ``landmarks.txt``: one face per line, ``<img-id>,x1,…,x68,y1,…,y68``.

All 68 x come first, then all 68 y (iBUG-68 order, pixels); no header (a header line whose second
field is not a number is accepted and skipped). A detection failure is written as ``inf``
(Belharbi et al.'s SynergyNet pipeline); aubench reads any non-finite value as a failed face
(the whole row becomes NaN) and writes failures back as ``inf``. Ids are whatever names the file
uses; :func:`aubench.data.landmark_source.resolve_landmarks` and
:class:`aubench.data.dataset_backend.DatasetBackend` match them to a dataset's ids (or, failing
that, to the ids' file stems).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from aubench.data.parsing import header_fields, read_csv, to_numbers
from aubench.data.table import DatasetFormatError, SkipReport
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.io import write_atomic

COLUMNS: tuple[str, ...] = (
    "id",
    *(f"x{i}" for i in range(1, NUM_LANDMARKS + 1)),
    *(f"y{i}" for i in range(1, NUM_LANDMARKS + 1)),
)


def read_landmarks_txt(
    path: str | os.PathLike, report: SkipReport | None = None
) -> tuple[pa.Array, np.ndarray]:
    """Read a ``landmarks.txt``: ``(ids, landmarks)`` with landmarks (N, 68, 2) float32 (x, y).

    Malformed rows (wrong field count, a value that is not a number) are skipped and counted in
    ``report``; a duplicated id is a :class:`~aubench.data.table.DatasetFormatError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmarks file not found: {path} (expected <id>,x1..x68,y1..y68)")
    report = SkipReport() if report is None else report
    first = header_fields(path)
    header = len(first) > 1 and bool(to_numbers(pd.Series(first[1:2]))[1][0])
    table, lines = read_csv(path, COLUMNS, header=header, report=report)
    coords = np.empty((table.num_rows, 2 * NUM_LANDMARKS), dtype=np.float64)
    bad = np.zeros(table.num_rows, dtype=bool)
    for k, name in enumerate(COLUMNS[1:]):
        coords[:, k], column_bad = to_numbers(table.column(name))
        bad |= column_bad
    report.add("malformed row (not a number)", int(bad.sum()), (f"{path}:{n}" for n in lines[bad]))
    keep = np.flatnonzero(~bad)
    ids = table.column("id").combine_chunks().take(pa.array(keep))
    landmarks = coords[keep].reshape(-1, 2, NUM_LANDMARKS).transpose(0, 2, 1).astype(np.float32)
    landmarks[~np.isfinite(landmarks).all(axis=(1, 2))] = np.nan
    duplicated = ids.to_pandas().duplicated(keep=False).to_numpy()
    if duplicated.any():
        kept_lines = lines[keep]
        where = ", ".join(
            f"{ids[int(i)].as_py()!r} on line {kept_lines[i]}"
            for i in np.flatnonzero(duplicated)[:4]
        )
        raise DatasetFormatError(f"{path}: duplicated ids ({where})")
    return ids, landmarks


def write_landmarks_txt(path: str | os.PathLike, ids, landmarks: np.ndarray) -> Path:
    """Write ``ids`` and (N, 68, 2) ``landmarks`` as a ``landmarks.txt`` (atomically); a face with
    any non-finite value is a failure, written as 136 ``inf`` like the reference pipeline."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be (N, 68, 2), got {landmarks.shape}")
    values = landmarks.transpose(0, 2, 1).reshape(len(landmarks), -1)
    values[~np.isfinite(values).all(axis=1)] = np.inf  # a failed face is all inf
    frame = pd.DataFrame(values)
    frame.insert(0, "id", pd.Series(ids, dtype="str").to_numpy())
    text = io.StringIO()
    frame.to_csv(text, header=False, index=False, float_format="%.3f", lineterminator="\n")
    return write_atomic(path, text.getvalue().encode())
