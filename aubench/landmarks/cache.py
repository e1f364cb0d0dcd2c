"""The on-disk landmark cache: compute once per dataset (``aubench landmarks``), read everywhere.

Location: ``$AUBENCH_CACHE/landmarks/<source>-<fingerprint>/<backend>.parquet`` (``AUBENCH_CACHE``
defaults to ``~/.cache/aubench``); the fingerprint identifies the dataset's native images (see
:attr:`aubench.data.table.FaceTable.fingerprint`), so nothing is ever written into the user's
dataset folder and moving the data starts a new cache. One Parquet file per backend, one row per
image: ``id`` (string), ``landmarks`` (136 float32: x0, y0, x1, y1, … in native-image pixels, NaN
for failures) and ``status`` (int8 code into :data:`~aubench.landmarks.base.REASONS`; ``pending``
= not computed yet). The backend settings, counts by reason and dataset path are in the file's
metadata under ``aubench``.

Writes are atomic (temporary file, then rename) and happen every ``checkpoint_every`` seconds
and when the run ends or is interrupted, so a run that stops resumes where it stopped: rows
already computed are kept, matched by id, and only ``pending`` ones are computed again.

The cache knows datasets only through :class:`ImageTable` and :class:`ImageDataset` (what it reads
of them); datasets pick cached landmarks up with
:func:`aubench.data.landmark_source.resolve_landmarks`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.base import (
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


class ImageTable(Protocol):
    """What the cache reads of a dataset's table (:class:`aubench.data.table.FaceTable` is one):
    its name and folder, what its native images are (``source``, ``fingerprint``) and its N
    ``ids``."""

    name: str
    root: Path
    source: str
    ids: pa.Array

    @property
    def fingerprint(self) -> str: ...

    def __len__(self) -> int: ...


class ImageDataset(Protocol):
    """What :func:`compute_landmarks` reads of a dataset (:class:`aubench.data.base.FaceDataset`
    is one): its table, its ids and each item's native image (H, W, 3) uint8 RGB, read by
    ``native_image(i)``, which raises an :class:`OSError` (a missing or undecodable file) when the
    image cannot be read."""

    @property
    def table(self) -> ImageTable: ...

    @property
    def ids(self) -> pa.Array: ...

    def native_image(self, index: int) -> np.ndarray: ...


def cache_root() -> Path:
    """``$AUBENCH_CACHE`` or ``~/.cache/aubench``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/aubench").expanduser()


def cache_folder(table: ImageTable) -> Path:
    """Where the landmark caches of ``table``'s images live."""
    return cache_root() / "landmarks" / f"{table.source}-{table.fingerprint}"


def cache_path(table: ImageTable, backend: str) -> Path:
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


class _Chunks(Dataset):
    """Chunk k of the pending rows: read each native image, run the backend (in a worker)."""

    def __init__(
        self, dataset: ImageDataset, backend: LandmarkBackend, rows: np.ndarray, chunk: int
    ) -> None:
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
            except OSError:  # a missing file, or one that cannot be decoded (ImageReadError)
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
    dataset: ImageDataset,
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
