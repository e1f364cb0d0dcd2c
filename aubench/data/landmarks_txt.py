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


#: Skip reason of a row that repeats an earlier id with the same landmarks (kept once).
REPEATED = "repeated id with the same landmarks (kept once; e.g. split files concatenated)"
#: Two rows of one id count as the same face when no coordinate differs by more (pixels).
REPEAT_TOLERANCE = 0.01


def read_landmarks_txt(
    path: str | os.PathLike, report: SkipReport | None = None
) -> tuple[pa.Array, np.ndarray]:
    """Read a ``landmarks.txt``: ``(ids, landmarks)`` with landmarks (N, 68, 2) float32 (x, y).

    Malformed rows (wrong field count, a value that is not a number) are skipped and counted in
    ``report``. An id repeated with the same landmarks (within :data:`REPEAT_TOLERANCE`; both
    failed counts as the same) is kept once and counted as :data:`REPEATED` — the reference
    paper's split files list its test set again as ``valid/``, so concatenating them repeats
    every test id. An id repeated with other landmarks is a
    :class:`~aubench.data.table.DatasetFormatError` naming both ``file:line``.
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
    return _drop_repeats(path, ids, landmarks, lines[keep], report)


def _drop_repeats(
    path: Path, ids: pa.Array, landmarks: np.ndarray, lines: np.ndarray, report: SkipReport
) -> tuple[pa.Array, np.ndarray]:
    """Keep the first row of each id; later rows must repeat its landmarks (else an error)."""
    keys = ids.to_pandas()
    later = keys.duplicated(keep="first").to_numpy()
    if not later.any():
        return ids, landmarks
    first_row = pd.Index(keys[~later]).get_indexer(keys[later])
    first_row = np.flatnonzero(~later)[first_row]
    a, b = landmarks[first_row], landmarks[later]
    same = (np.isnan(a).all(axis=(1, 2)) & np.isnan(b).all(axis=(1, 2))) | (
        np.abs(a - b) <= REPEAT_TOLERANCE
    ).all(axis=(1, 2))
    if not same.all():
        k = int(np.flatnonzero(~same)[0])
        row, earlier = np.flatnonzero(later)[k], first_row[k]
        raise DatasetFormatError(
            f"{path}: id {keys[row]!r} has two different rows ({path}:{lines[earlier]} and "
            f"{path}:{lines[row]}); each face may appear once"
        )
    report.add(
        REPEATED,
        int(later.sum()),
        (
            f"{path}:{lines[r]} (first on line {lines[f]})"
            for r, f in zip(np.flatnonzero(later), first_row, strict=True)
        ),
    )
    keep = pa.array(np.flatnonzero(~later))
    return ids.take(keep), landmarks[~later]


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
