"""The on-disk landmark cache: compute once per dataset (``aubench landmarks``), read everywhere.

Location: ``$AUBENCH_CACHE/landmarks/<source>-<fingerprint>/<backend>.parquet`` (``AUBENCH_CACHE``
defaults to ``~/.cache/aubench``); the fingerprint identifies the dataset's native images (see
:attr:`aubench.data.base.FaceTable.fingerprint`), so nothing is ever written into the user's
dataset folder and moving the data starts a new cache. One Parquet file per backend, one row per
image: ``id`` (string), ``landmarks`` (136 float32: x0, y0, x1, y1, … in native-image pixels, NaN
for failures) and ``status`` (int8 code into :data:`~aubench.landmarks.base.REASONS`; ``pending``
= not computed yet). The backend settings, counts by reason and dataset path are in the file's
metadata under ``aubench``.

Writes are atomic (temporary file, then rename) and happen every ``checkpoint_every`` seconds
and when the run ends or is interrupted, so a run that stops resumes where it stopped: rows
already computed are kept, matched by id, and only ``pending`` ones are computed again.

:func:`resolve_landmarks` is how datasets pick landmarks up (``landmarks=`` of
:func:`aubench.data.registry.open_dataset`): ``auto`` prefers landmarks shipped with the dataset,
then a cache (``dlib``, then ``face-alignment``, then ``dataset``), else all-NaN.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from aubench.data.base import FaceTable, ImageReadError
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.base import (
    BACKENDS,
    OK,
    PENDING,
    REASONS,
    UNREADABLE_IMAGE,
    LandmarkBackend,
    count_reasons,
)

CACHE_ENV = "AUBENCH_CACHE"
_FORMAT = 1
_META_KEY = b"aubench"


def cache_root() -> Path:
    """``$AUBENCH_CACHE`` or ``~/.cache/aubench``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/aubench").expanduser()


def cache_folder(table: FaceTable) -> Path:
    """Where the landmark caches of ``table``'s images live."""
    return cache_root() / "landmarks" / f"{table.source}-{table.fingerprint}"


def cache_path(table: FaceTable, backend: str) -> Path:
    """The cache file of ``backend`` for ``table``."""
    return cache_folder(table) / f"{backend}.parquet"


class IdIndex:
    """Match ids against a reference list of ids: exactly, or (``stems=True``, for files written
    by other tools) falling back to the file stem (``a/b/train_00001.jpg`` ↔ ``train_00001``)
    when the reference stems are unique."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray, stems: bool = False) -> None:
        self.ids = ids
        self.stems = stems
        self._exact = pd.Index(ids.to_pandas().astype("str"))
        self._stems: pd.Index | None = None

    def __len__(self) -> int:
        return len(self._exact)

    def lookup(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """(M,) int64 row of each id in the reference, −1 where absent."""
        wanted = pd.Series(ids.to_pandas()).astype("str")
        rows = self._exact.get_indexer(wanted)
        if self.stems and (rows < 0).any():
            if self._stems is None:  # built on first need; unusable when stems repeat
                stems = pd.Index(_stems(self._exact.to_series()))
                self._stems = stems if stems.is_unique else pd.Index([])
            missing = np.flatnonzero(rows < 0)
            rows[missing] = self._stems.get_indexer(_stems(wanted.iloc[missing]))
        return rows.astype(np.int64)


def _stems(ids: pd.Series) -> pd.Series:
    return ids.str.replace(r"^.*[\\/]", "", regex=True).str.replace(r"\.[^.]*$", "", regex=True)


@dataclass
class LandmarkCache:
    """One backend's landmarks for one dataset (rows aligned with ``ids``)."""

    path: Path
    ids: pa.Array
    landmarks: np.ndarray
    status: np.ndarray
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike) -> LandmarkCache:
        """Read a cache file; a clear error when it is not one."""
        path = Path(path)
        try:
            table = pq.read_table(path)
            meta = json.loads(table.schema.metadata[_META_KEY])
            flat = table.column("landmarks").combine_chunks().flatten()
            landmarks = flat.to_numpy().reshape(-1, NUM_LANDMARKS, 2).astype(np.float32)
            status = table.column("status").to_numpy().astype(np.int8)
            ids = table.column("id").combine_chunks()
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as err:
            raise ValueError(f"{path} is not an aubench landmark cache ({err})") from err
        return cls(path, ids, landmarks, status, meta)

    @property
    def counts(self) -> dict[str, int]:
        return count_reasons(self.status)

    def save(self) -> Path:
        """Write atomically (temporary file beside it, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "format": _FORMAT, "counts": self.counts}
        meta["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        values = pa.array(self.landmarks.reshape(-1), pa.float32())
        table = pa.table(
            {
                "id": self.ids,
                "landmarks": pa.FixedSizeListArray.from_arrays(values, 2 * NUM_LANDMARKS),
                "status": pa.array(self.status, pa.int8()),
            }
        ).replace_schema_metadata({_META_KEY: json.dumps(meta)})
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path


def find_cache(table: FaceTable, backend: str | None = None) -> Path | None:
    """The cache file for ``table`` (of ``backend``, or the first of :data:`BACKENDS` found)."""
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
        from aubench.data.landmarks_txt import read_landmarks_txt

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


class _Chunks(Dataset):
    """Chunk k of the pending rows: read each native image, run the backend (in a worker)."""

    def __init__(self, dataset, backend: LandmarkBackend, rows: np.ndarray, chunk: int) -> None:
        self.dataset, self.backend, self.rows, self.chunk = dataset, backend, rows, chunk

    def __len__(self) -> int:
        return -(-len(self.rows) // self.chunk)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.rows[k * self.chunk : (k + 1) * self.chunk]
        readable = np.ones(len(rows), dtype=bool)
        images: list[np.ndarray | None] = []
        for j, row in enumerate(rows):
            if not self.backend.needs_images:
                images.append(None)
                continue
            try:
                images.append(self.dataset.native_image(int(row)))
            except (ImageReadError, FileNotFoundError):
                readable[j] = False
        ids = [self.dataset.ids[int(row)].as_py() for row in rows[readable]]
        found = self.backend(images, ids)
        landmarks = np.full((len(rows), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
        status = np.full(len(rows), UNREADABLE_IMAGE, dtype=np.int8)
        landmarks[readable], status[readable] = found.landmarks, found.status
        return rows, landmarks, status


def _as_is(item):
    return item


def compute_landmarks(
    dataset,
    backend: LandmarkBackend,
    *,
    overwrite: bool = False,
    checkpoint_every: float = 60.0,
    chunk: int = 16,
    workers: int = 0,
    progress: bool = True,
) -> LandmarkCache:
    """Compute (or finish computing) ``backend``'s landmarks for every item of ``dataset``.

    ``dataset`` is a :class:`~aubench.data.base.FaceDataset` (normally its ``all`` split). Results
    are saved to :func:`cache_path` every ``checkpoint_every`` seconds and at the end, also when
    interrupted (the exception is re-raised); a later call resumes with the rows still
    ``pending``. A cache made with other backend settings is refused unless ``overwrite``.
    ``workers`` > 0 runs the backend in that many processes (each loads its own model).
    """
    table = dataset.table
    path = cache_path(table, backend.name)
    settings = backend.config()
    cache = LandmarkCache(
        path,
        table.ids,
        np.full((len(table), NUM_LANDMARKS, 2), np.nan, dtype=np.float32),
        np.full(len(table), PENDING, dtype=np.int8),
        {
            "dataset": table.name,
            "root": str(Path(table.root).resolve()),
            "source": table.source,
            "fingerprint": table.fingerprint,
            "backend": settings,
            "reasons": list(REASONS),
        },
    )
    if path.is_file() and not overwrite:
        previous = LandmarkCache.load(path)
        if previous.meta.get("backend") != settings:
            raise ValueError(
                f"{path} was computed with other settings ({previous.meta.get('backend')} vs "
                f"{settings}); pass overwrite=True (--overwrite) to recompute"
            )
        rows = IdIndex(previous.ids).lookup(table.ids)
        found = rows >= 0
        cache.landmarks[found] = previous.landmarks[rows[found]]
        cache.status[found] = previous.status[rows[found]]
    pending = np.flatnonzero(cache.status == PENDING)
    loader = DataLoader(
        _Chunks(dataset, backend, pending, chunk),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
    )
    bar = tqdm(
        total=len(table),
        initial=len(table) - len(pending),
        desc=f"landmarks ({backend.name})",
        unit="image",
        disable=not progress,
    )
    last_save = time.monotonic()
    found = int((cache.status == OK).sum())
    try:
        for rows, landmarks, status in loader:
            cache.landmarks[rows], cache.status[rows] = landmarks, status
            found += int((status == OK).sum())
            bar.update(len(rows))
            bar.set_postfix(ok=found, refresh=False)
            if time.monotonic() - last_save >= checkpoint_every:
                cache.save()
                last_save = time.monotonic()
    finally:
        bar.close()
        cache.save()
    return cache


def summary(cache: LandmarkCache) -> str:
    """One line: how many images got landmarks and why the others did not."""
    counts = cache.counts
    total = sum(counts.values())
    failures = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "ok") or "none"
    return f"{counts.get('ok', 0)}/{total} images have landmarks; failures: {failures}"
