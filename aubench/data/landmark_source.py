"""Where a dataset's landmarks come from: shipped with it, a landmark cache, a ``landmarks.txt``.

:func:`resolve_landmarks` is how datasets pick landmarks up (``landmarks=`` of
:func:`aubench.data.registry.open_dataset`): ``auto`` prefers landmarks shipped with the dataset,
then a cache (``dlib``, then ``face-alignment``, then ``dataset``; see
:mod:`aubench.landmarks.cache`), else all-NaN. Landmarks are joined to the table's rows by id; a
``landmarks.txt`` written by another tool is matched by id, else by image path (relative to the
dataset's image folder, e.g. AffectNet's ``train_set/images/0.jpg``), else by file stem where the
file's stems are unique.

Landmarks from outside the dataset (a ``landmarks.txt``, or a cache imported from one with
``--backend dataset``) are checked against the images at open: if in more than half of up to
:data:`FRAME_SAMPLE` faces (spread over the split) points lie far outside the native image or the
face's span is implausible for the image size, the file is refused, named — the usual cause is
landmarks of other crops (RAF-DB: the reference paper's ``landmarks.txt`` is in the frame of its
224×224 crops, ``images=paper``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from aubench.data.dataset_backend import DatasetBackend
from aubench.data.landmark_backends import BACKENDS
from aubench.data.landmarks_txt import read_landmarks_txt
from aubench.data.table import DatasetFormatError, FaceTable, ImageFiles
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.base import UNREADABLE_IMAGE
from aubench.landmarks.cache import IdIndex, LandmarkCache, cache_folder, cache_path

#: How many faces the frame check reads (spread evenly over the rows with landmarks).
FRAME_SAMPLE = 16
#: A point "far outside" lies more than this share of the image's side beyond an edge.
FAR_OUTSIDE = 0.25
#: Plausible face span (largest extent of the 68 points) as a share of the image's longer side.
FACE_SPAN = (0.05, 1.5)


def find_cache(table: FaceTable, backend: str | None = None) -> Path | None:
    """The cache file for ``table`` (of ``backend``, else the first of
    :data:`~aubench.data.landmark_backends.BACKENDS` found)."""
    for name in (backend,) if backend else BACKENDS:
        path = cache_path(table, name)
        if path.is_file():
            return path
    return None


def resolve_landmarks(table: FaceTable, mode: str) -> tuple[FaceTable, str]:
    """``table`` with the landmarks ``mode`` selects, and a description of where they came from.

    Modes: ``auto`` (shipped, else a cache, else none), ``dataset`` (shipped; error if none),
    ``cache`` / ``cache:<backend>`` (error if absent), ``none`` (all-NaN), or a path to a
    ``landmarks.txt``. Images a cache marks ``unreadable_image`` are dropped (counted in
    ``skipped``); ids absent from a cache or file get NaN landmarks.
    """
    if not isinstance(mode, str):
        raise TypeError(f"landmarks must be a str, got {type(mode).__name__}")
    if mode == "none":
        return replace(table, landmarks=None), "none"
    if mode == "dataset" or (mode == "auto" and table.landmarks is not None):
        if table.landmarks is None:
            raise ValueError(
                f"{table.name} ships no landmarks; use landmarks='auto' or 'cache' after running "
                f"`aubench landmarks --data {table.name}:{table.root}`"
            )
        return table, "dataset"
    if mode == "auto" or mode == "cache" or mode.startswith("cache:"):
        backend = mode.partition(":")[2] or None
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown landmark backend {backend!r} in {mode!r} ({BACKENDS})")
        path = find_cache(table, backend)
        if path is None:
            if mode == "auto":
                return replace(table, landmarks=None), "none"
            raise FileNotFoundError(
                f"no {backend or 'landmark'} cache for {table.name} at {cache_folder(table)}; "
                f"compute it with `aubench landmarks --data {table.name}:{table.root}"
                f"{f' --backend {backend}' if backend else ''}`"
            )
        cache = LandmarkCache.load(path)
        rows = IdIndex(cache.ids).lookup(table.ids)
        joined = _join(table, rows, cache.landmarks, cache.status)
        if path.stem == DatasetBackend.name:  # imported from a file: its frame is the file's
            check_frame(joined, f"landmark cache {path} (imported with --backend dataset)")
        return joined, f"cache:{path.stem}"
    if os.path.isfile(mode):
        ids, landmarks = read_landmarks_txt(mode, table.skipped)
        joined = _join(table, _match_file(table, ids, mode), landmarks, None)
        check_frame(joined, mode)
        return joined, f"file:{mode}"
    raise ValueError(
        f"landmarks must be 'auto', 'dataset', 'cache', 'cache:<backend>', 'none' or an existing "
        f"landmarks.txt path, got {mode!r}"
    )


def _match_file(table: FaceTable, ids: pa.Array, path: str) -> np.ndarray:
    """Row of the file for each table row (−1 where none): by id, then by image path, then by
    file stem (where the file's stems are unique). Rows left without landmarks are counted; when
    none matches, an error says what was compared and how to fix the file."""
    exact = IdIndex(ids)
    rows = exact.lookup(table.ids)
    paths = table.images.paths if isinstance(table.images, ImageFiles) else None
    if paths is not None and (rows < 0).any():
        missing = np.flatnonzero(rows < 0)
        rows[missing] = exact.lookup(paths.take(pa.array(missing)))
    if (rows < 0).any():
        missing = np.flatnonzero(rows < 0)
        rows[missing] = IdIndex(ids, stems=True).lookup(table.ids.take(pa.array(missing)))
    unmatched = np.flatnonzero(rows < 0)
    if not len(unmatched):
        return rows
    clash = _stem_clash(ids)
    if len(unmatched) == len(rows):
        like = f" or image paths such as {paths[0].as_py()!r}" if paths is not None else ""
        raise DatasetFormatError(
            f"{path}: none of its {len(ids)} ids matches a row of {table.name} ({len(rows)} "
            f"rows; ids such as {table.ids[0].as_py()!r}, the file has {ids[0].as_py()!r})"
            f"{clash}; write the dataset's ids{like} in its first column"
        )
    table.skipped.add(
        f"id not in {path} (row kept, landmarks NaN){clash}",
        len(unmatched),
        (repr(table.ids[int(i)].as_py()) for i in unmatched),
    )
    return rows


def _stem_clash(ids: pa.Array) -> str:
    """Why stem matching is off for ``ids`` (two ids with the same file stem), or ``""``."""
    stems = ids.to_pandas().str.replace(r"^.*[\\/]", "", regex=True)
    stems = stems.str.replace(r"\.[^.]*$", "", regex=True)
    repeated = stems.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return ""
    first = stems[int(np.flatnonzero(repeated)[0])]
    a, b = (ids[int(i)].as_py() for i in np.flatnonzero((stems == first).to_numpy())[:2])
    return (
        f"; matching by file name is off because names repeat in the file ({a!r} and {b!r}, "
        "e.g. train and val images numbered alike)"
    )


def check_frame(table: FaceTable, origin: str) -> None:
    """Refuse ``table``'s landmarks (naming ``origin``) when they cannot be in the frame of its
    native images (module docstring); reads up to :data:`FRAME_SAMPLE` images."""
    finite = np.flatnonzero(np.isfinite(table.landmarks).all(axis=(1, 2)))
    picks = np.unique(np.linspace(0, len(finite) - 1, min(len(finite), FRAME_SAMPLE)).round())
    checked, misfits = 0, []
    for row in finite[picks.astype(np.int64)]:
        try:
            height, width = table.native_image(int(row)).shape[:2]
        except OSError:  # a missing or corrupt image is reported where it is read
            continue
        checked += 1
        points = table.landmarks[row].astype(np.float64)
        side = np.array([width, height], dtype=np.float64)
        far = bool(((points < -FAR_OUTSIDE * side) | (points > (1 + FAR_OUTSIDE) * side)).any())
        span = float(np.ptp(points, axis=0).max() / side.max())
        if far or not FACE_SPAN[0] <= span <= FACE_SPAN[1]:
            low, high = points.min(axis=0), points.max(axis=0)
            shown = (
                f"points at x {low[0]:.0f}..{high[0]:.0f}, y {low[1]:.0f}..{high[1]:.0f}"
                if far
                else f"a face spanning {span:.0%} of the image side"
            )
            misfits.append(f"{table.ids[int(row)].as_py()!r}: {shown} in a {width}×{height} image")
    if 2 * len(misfits) <= checked:
        return
    hint = table.attrs.get("landmark_frame_hint")
    raise DatasetFormatError(
        f"{origin}: its landmarks are not in the frame of {table.name}'s images "
        f"({table.source}): {len(misfits)} of {checked} faces checked do not fit (e.g. "
        f"{misfits[0]}){f'; {hint}' if hint else ''}"
    )


def _join(
    table: FaceTable, rows: np.ndarray, landmarks: np.ndarray, status: np.ndarray | None
) -> FaceTable:
    found = rows >= 0
    joined = np.full((len(table), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    joined[found] = landmarks[rows[found]]
    table = replace(table, landmarks=joined)
    if status is None:
        return table
    unreadable = np.zeros(len(table), dtype=bool)
    unreadable[found] = status[rows[found]] == UNREADABLE_IMAGE
    if not unreadable.any():
        return table
    table.skipped.add(
        "unreadable image (landmark cache)",
        int(unreadable.sum()),
        (table.ids[int(i)].as_py() for i in np.flatnonzero(unreadable)[:3]),
    )
    return table.take(np.flatnonzero(~unreadable))
