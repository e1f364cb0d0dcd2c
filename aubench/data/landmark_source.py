"""Where a dataset's landmarks come from: shipped with it, a landmark cache, a ``landmarks.txt``.

:func:`resolve_landmarks` is how datasets pick landmarks up (``landmarks=`` of
:func:`aubench.data.registry.open_dataset`): ``auto`` prefers landmarks shipped with the dataset,
then a cache (``dlib``, then ``face-alignment``, then ``dataset``; see
:mod:`aubench.landmarks.cache`), else all-NaN. Landmarks are joined to the table's rows by id.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from aubench.data.landmark_backends import BACKENDS
from aubench.data.landmarks_txt import read_landmarks_txt
from aubench.data.table import FaceTable
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.base import UNREADABLE_IMAGE
from aubench.landmarks.cache import IdIndex, LandmarkCache, cache_folder, cache_path


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
        joined = _join(table, IdIndex(cache.ids), cache.landmarks, cache.status)
        return joined, f"cache:{path.stem}"
    if os.path.isfile(mode):
        ids, landmarks = read_landmarks_txt(mode, table.skipped)
        return _join(table, IdIndex(ids, stems=True), landmarks, None), f"file:{mode}"
    raise ValueError(
        f"landmarks must be 'auto', 'dataset', 'cache', 'cache:<backend>', 'none' or an existing "
        f"landmarks.txt path, got {mode!r}"
    )


def _join(
    table: FaceTable, index: IdIndex, landmarks: np.ndarray, status: np.ndarray | None
) -> FaceTable:
    rows = index.lookup(table.ids)
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
