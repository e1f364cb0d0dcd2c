"""The table a dataset loader builds: every row as compact arrays, and the row-parsing errors.

Every real-dataset loader (``rafdb``, ``affectnet``, ``fer2013``, ``ferplus``, ``ckplus``,
``folder``) parses its label files into a :class:`FaceTable` — ids and image paths as Arrow string
arrays, labels and split codes as NumPy arrays, landmarks as one float32 (N, 68, 2) array — which
:class:`aubench.data.base.FaceDataset` turns into the Sample contract of DESIGN.md. Nothing holds
one Python object per image, so a 300k-image AffectNet costs about 200 MB (landmarks: 163 MB).
Rows a loader cannot use are counted in a :class:`SkipReport` (the row policy:
:mod:`aubench.data.base`). :attr:`FaceTable.content_fingerprint` hashes what the rows hold (see
there for exactly what it covers).

Imports nothing else of :mod:`aubench.data`, so the text parsers, the ``landmarks.txt`` reader and
the landmark source can all use these types.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.align import crop_box

#: Split names; ``all`` (every row of every split) is also accepted where noted.
SPLITS: tuple[str, ...] = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2

#: How many example locations (``file:line``) a :class:`SkipReport` keeps per reason.
EXAMPLES_KEPT = 3


class DatasetFormatError(ValueError):
    """A dataset folder or label file is not laid out as its format prescribes."""


class EmptySplitError(DatasetFormatError):
    """The split asked for has no rows (the message says how many the other splits have)."""


class ImageReadError(DatasetFormatError, OSError):
    """An image file exists but cannot be decoded (truncated, corrupt or not an image).

    A :class:`DatasetFormatError` (the command line prints it as one line and exits 2) and an
    :class:`OSError` (what the landmark cache catches to record the image as unreadable)."""


class SkippedRowsWarning(UserWarning):
    """Rows of a dataset were skipped (malformed, missing image, ...): counts by reason inside."""


class SkipReport:
    """Rows a loader could not use, counted by reason, with a few example locations per reason."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, count: int, examples: Iterable[str] = ()) -> None:
        """Count ``count`` rows under ``reason``; keep a few ``examples`` (``file:line``)."""
        if count <= 0:
            return
        self.counts[reason] += int(count)
        kept = self.examples.setdefault(reason, [])
        for example in examples:
            if len(kept) >= EXAMPLES_KEPT:
                break
            kept.append(str(example))

    def __bool__(self) -> bool:
        return bool(self.counts)

    def summary(self) -> str:
        """``reason: count (e.g. file:line, …)`` for every reason, most frequent first."""
        parts = []
        for reason, count in self.counts.most_common():
            examples = self.examples.get(reason)
            shown = f" (e.g. {'; '.join(examples)})" if examples else ""
            parts.append(f"{reason}: {count}{shown}")
        return ", ".join(parts)


class ImageSource(Protocol):
    """Where a table's images come from: ``read(i)`` gives (H, W, 3) uint8 RGB;
    ``content_digest()`` a SHA-256 digest of what identifies the images' content cheaply."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...

    def describe(self, index: int) -> str: ...

    def missing(self) -> np.ndarray: ...

    def content_digest(self) -> bytes: ...

    def take(self, rows: np.ndarray) -> ImageSource: ...


#: What to do about an image file that cannot be decoded (the end of every such error).
CORRUPT_IMAGE_FIX = (
    "replace it with a good copy, or delete it: a deleted image's row is skipped and counted "
    "as a missing image file when the dataset is opened"
)


class ImageFiles:
    """Image files ``root / paths[i]`` (relative paths, one Arrow string array), read by OpenCV."""

    def __init__(self, root: Path, paths: pa.Array | Sequence[str]) -> None:
        self.root = Path(root)
        self.paths = paths if isinstance(paths, pa.Array) else pa.array(paths, pa.string())

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        return self.root / self.paths[index].as_py()

    def describe(self, index: int) -> str:
        return str(self.path(index))

    def read(self, index: int) -> np.ndarray:
        """Decode file ``index`` (from memory: unlike ``cv2.imread``, a truncated JPEG is an
        error, not an image padded with grey)."""
        path = self.path(index)
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {path}") from None
        except OSError as err:
            raise ImageReadError(f"cannot read image file {path} ({err.strerror})") from None
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise ImageReadError(
                f"cannot decode image file {path} (truncated, corrupt or not an image): "
                f"{CORRUPT_IMAGE_FIX}"
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def missing(self) -> np.ndarray:
        """Bool (N,): True where the file does not exist (one ``stat`` per file)."""
        root, n, step = str(self.root), len(self.paths), 8192
        out = np.empty(n, dtype=bool)
        bar = tqdm(
            total=n, desc="checking image files", unit="file", disable=True if n < 50_000 else None
        )
        for start in range(0, n, step):  # a few thousand str objects alive at a time
            names = self.paths.slice(start, step).to_pylist()
            out[start : start + len(names)] = [not os.path.isfile(f"{root}/{p}") for p in names]
            bar.update(len(names))
        bar.close()
        return out

    def content_digest(self) -> bytes:
        """SHA-256 over every relative path and its file's size, ``st_mtime_ns`` and inode (one
        ``stat`` per file; −1 for a file that is gone): rewriting, touching or replacing a file
        changes it, reading does not."""
        root, n, step = str(self.root), len(self.paths), 8192
        digest = hashlib.sha256()
        stats = np.full((n, 3), -1, dtype=np.int64)
        for start in range(0, n, step):
            names = self.paths.slice(start, step).to_pylist()
            for k, name in enumerate(names, start):
                try:
                    info = os.stat(f"{root}/{name}")
                except OSError:
                    continue
                stats[k] = (info.st_size, info.st_mtime_ns, info.st_ino)
            digest.update("\0".join(names).encode() + b"\0")
        digest.update(stats.tobytes())
        return digest.digest()

    def take(self, rows: np.ndarray) -> ImageFiles:
        return ImageFiles(self.root, self.paths.take(pa.array(rows, pa.int64())))


class PixelArray:
    """Images held in one uint8 array (N, H, W) (grayscale) or (N, H, W, 3) (RGB), e.g. FER2013."""

    def __init__(self, pixels: np.ndarray, origin: str) -> None:
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
            raise ValueError(
                f"pixels must be uint8 (N, H, W[, 3]), got {pixels.dtype} {pixels.shape}"
            )
        self.pixels = pixels
        self.origin = origin

    def __len__(self) -> int:
        return len(self.pixels)

    def describe(self, index: int) -> str:
        return f"{self.origin} image {index}"

    def read(self, index: int) -> np.ndarray:
        image = self.pixels[index]
        return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image.copy()

    def missing(self) -> np.ndarray:
        return np.zeros(len(self.pixels), dtype=bool)

    def content_digest(self) -> bytes:
        """SHA-256 of the pixel array (shape and bytes)."""
        digest = hashlib.sha256(str(self.pixels.shape).encode())
        digest.update(np.ascontiguousarray(self.pixels).data)
        return digest.digest()

    def take(self, rows: np.ndarray) -> PixelArray:
        return PixelArray(self.pixels[rows], self.origin)


@dataclass
class FaceTable:
    """Every row of a dataset as compact arrays (N rows).

    Attributes:
        name: the loader's name (``rafdb``, ...).
        root: the dataset folder the user gave.
        source: what the native images are (e.g. ``rafdb-aligned``); with ``root`` and ``frame`` it
            makes the :attr:`fingerprint` that keys the landmark cache.
        ids: (N,) unique string ids (each loader documents its id scheme).
        labels: (N,) int64 canonical labels (0 neutral … 6 sadness, 7 contempt).
        splits: (N,) int8 split codes (``TRAIN``, ``VAL``, ``TEST``).
        images: the row → image reader.
        num_classes: 8 when the dataset's label space has contempt, else 7.
        default_num_classes: the protocol used when the caller gives none.
        has_val: whether the dataset ships a validation split (else it is carved from train).
        unsplit: the dataset has no splits at all (the ``folder`` dataset without split
            information): ``test``, ``val`` and ``train`` are disjoint carves (see
            :func:`~aubench.data.base.select_split`).
        landmarks: shipped landmarks (N, 68, 2) float32 in native-image pixels, NaN where unknown.
        boxes: face boxes (N, 4) int64 ``x0, y0, x1, y1`` (x1, y1 exclusive) in file-image pixels.
        groups: (N,) int64 group ids (CK+ subjects): the validation carve keeps groups whole.
        extras: further row-aligned arrays added to every sample under their key (CK+ AUs).
        attrs: table-level metadata (e.g. CK+ ``au_numbers``).
        frame: options that change the native images (part of the fingerprint).
        skipped: rows dropped as unusable; ``excluded``: rows dropped by protocol.
    """

    name: str
    root: Path
    source: str
    ids: pa.Array
    labels: np.ndarray
    splits: np.ndarray
    images: ImageSource
    num_classes: int
    default_num_classes: int
    has_val: bool
    unsplit: bool = False
    landmarks: np.ndarray | None = None
    boxes: np.ndarray | None = None
    groups: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    frame: dict[str, Any] = field(default_factory=dict)
    skipped: SkipReport = field(default_factory=SkipReport)
    excluded: SkipReport = field(default_factory=SkipReport)

    def __post_init__(self) -> None:
        n = len(self.ids)
        arrays = {"labels": self.labels, "splits": self.splits, "images": self.images}
        arrays |= {"landmarks": self.landmarks, "boxes": self.boxes, "groups": self.groups}
        arrays |= self.extras
        wrong = {k: len(v) for k, v in arrays.items() if v is not None and len(v) != n}
        if wrong:
            raise ValueError(f"{self.name}: table columns disagree on the row count {n}: {wrong}")
        if self.landmarks is not None and self.landmarks.shape[1:] != (NUM_LANDMARKS, 2):
            raise ValueError(
                f"{self.name}: landmarks must be (N, 68, 2), got {self.landmarks.shape}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying where the native images come from (source, resolved root,
        frame options): the landmark cache's key, so it survives new or relabelled rows."""
        key = {"source": self.source, "root": str(Path(self.root).resolve()), "frame": self.frame}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def content_fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the rows' content, recomputed on every access.

        Covers :attr:`fingerprint` (source, resolved root, frame options), the ids in order,
        labels, split codes, landmarks (NaN included), face boxes, groups, extras (CK+ AUs),
        ``attrs``, and the images' :meth:`~ImageSource.content_digest`: for image files each
        relative path with its size, ``st_mtime_ns`` and inode (no pixel is read); for a pixel
        array (FER2013) the pixels themselves. Relabelling, adding or removing a row, touching or
        replacing an image file changes it; re-opening unchanged data gives the same value. Not
        covered: a file rewritten in place with the same size within the filesystem's timestamp
        resolution (and inode), and anything that is not data (image size, normalisation).
        """
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update("\0".join(self.ids.to_pylist()).encode() + b"\0")
        arrays = {"labels": self.labels, "splits": self.splits, "landmarks": self.landmarks}
        arrays |= {"boxes": self.boxes, "groups": self.groups}
        arrays |= {f"extra:{k}": v for k, v in sorted(self.extras.items())}
        for name, array in arrays.items():
            digest.update(name.encode())
            if array is not None:
                array = np.ascontiguousarray(array)
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array.data)
        digest.update(json.dumps(self.attrs, sort_keys=True, default=str).encode())
        digest.update(self.images.content_digest())
        return digest.hexdigest()[:16]

    def native_image(self, index: int) -> np.ndarray:
        """Row ``index``'s native image (H, W, 3) uint8 RGB: the image cropped to its face box."""
        image = self.images.read(index)
        return image if self.boxes is None else crop_box(image, self.boxes[index])

    def take(self, rows: np.ndarray) -> FaceTable:
        """The rows ``rows`` (int indices, in that order) as a new table; reports are shared."""
        rows = np.asarray(rows, dtype=np.int64)

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[rows]

        return replace(
            self,
            ids=self.ids.take(pa.array(rows, pa.int64())),
            labels=self.labels[rows],
            splits=self.splits[rows],
            images=self.images.take(rows),
            landmarks=pick(self.landmarks),
            boxes=pick(self.boxes),
            groups=pick(self.groups),
            extras={k: v[rows] for k, v in self.extras.items()},
        )


def require_dir(path: Path, name: str, expected: str) -> Path:
    """``path`` if it is a folder, else a :class:`DatasetFormatError` naming it and ``expected``."""
    path = Path(path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise DatasetFormatError(f"{name}: {path} {state}; expected {expected}")
    return path


def normalized_paths(paths: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``paths`` with ``\\`` read as ``/`` and ``.``, ``..`` and empty segments resolved
    lexically (``posixpath.normpath``; only the rows that have such segments are converted one
    by one); others are returned as they are."""
    paths = paths.combine_chunks() if isinstance(paths, pa.ChunkedArray) else paths
    odd = pc.match_substring_regex(paths, r"\\|(^|/)\.\.?(/|$)|//").to_numpy(zero_copy_only=False)
    if not odd.any():
        return paths
    rows = np.flatnonzero(odd)
    fixed = [posixpath.normpath(p.replace("\\", "/")) for p in paths.take(rows).to_pylist()]
    values = paths.to_pandas().to_numpy(dtype=object)
    values[rows] = fixed
    return pa.array(values, pa.string())


def leaves_root(paths: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Bool mask of relative image paths that point outside their dataset folder: absolute
    (``/…``, ``\\…``, ``C:…``) or climbing above it with ``..`` (lexically; symbolic links
    inside the folder are the user's business and are followed)."""
    absolute = pc.match_substring_regex(paths, r"^([/\\]|[A-Za-z]:)").to_numpy(zero_copy_only=False)
    climbs = pc.match_substring_regex(normalized_paths(paths), r"^\.\.(/|$)")
    return absolute | climbs.to_numpy(zero_copy_only=False)


def subject_folds(name: str, subjects: np.ndarray, folds: int, fold: int) -> np.ndarray:
    """(N,) int8 split codes of subject-independent folds: the sorted distinct ``subjects`` are
    dealt round robin into ``folds`` folds; rows of fold ``fold`` are ``TEST``, the rest ``TRAIN``.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"{name} fold must be in 0..{folds - 1}, got {fold}")
    unique = np.unique(subjects)
    test = np.isin(subjects, unique[np.arange(len(unique)) % folds == fold])
    return np.where(test, TEST, TRAIN).astype(np.int8)


def canonical_labels(ids: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map dataset label ids to canonical ones, vectorised; ids outside ``mapping`` become −1."""
    lut = np.full(max(mapping) + 1, -1, dtype=np.int64)
    for source, target in mapping.items():
        lut[source] = target
    ids = np.asarray(ids, dtype=np.int64)
    inside = (ids >= 0) & (ids < len(lut))
    return np.where(inside, lut[np.clip(ids, 0, len(lut) - 1)], -1)
