"""The shared lazy face dataset: one table of compact per-row arrays, images read on access.

Every real-dataset loader (``rafdb``, ``affectnet``, ``fer2013``, ``ferplus``, ``ckplus``,
``folder``) parses its label files into a :class:`FaceTable` — ids and image paths as Arrow string
arrays, labels and split codes as NumPy arrays, landmarks as one float32 (N, 68, 2) array — and
:class:`FaceDataset` turns a table into the Sample contract of DESIGN.md. Nothing holds one Python
object per image, so a 300k-image AffectNet costs about 200 MB (landmarks: 163 MB), and evaluation
memory does not grow with the number of images read.

Coordinate frames. A row's *file image* is what is on disk. Its *native image* is the file image
cropped to the row's face box (when the dataset gives one; boxes are squared about their centre and
may extend past the image, which is zero-padded). Table landmarks are in native-image pixels
(x, y), the frame the landmark detectors and the cache use too. ``__getitem__`` resizes the native
image to ``size × size`` and moves the landmarks with it (pixel-centre convention, see
:func:`aubench.faces.landmarks.rescale_landmarks`).

Row policy, the same for every loader:

- a layout or file that is not what the format prescribes (no label file, missing columns) is an
  error naming the path and what was expected;
- a malformed row of a shipped label file (wrong field count, unparsable or out-of-range value) is
  skipped, counted by reason in :attr:`FaceDataset.skipped` and reported in one
  :class:`SkippedRowsWarning` with example ``file:line`` locations (the ``folder`` dataset, whose
  CSV users write themselves, raises instead);
- rows whose image file is missing are skipped and counted the same way (checked for the requested
  split only); an image that exists but cannot be decoded raises :class:`ImageReadError` naming
  the file when read, and once ``aubench landmarks`` has recorded it as unreadable in the landmark
  cache, datasets that read landmarks from that cache skip it (counted);
- rows left out by a protocol (AffectNet ids 8–10, contempt under ``num_classes=7``) are counted
  in :attr:`FaceDataset.excluded` without a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from aubench.data.synthetic import IMAGENET_MEAN, IMAGENET_STD, Sample
from aubench.faces.codebook import NUM_CLASSES_7, NUM_CLASSES_8
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.align import crop_box, resize_face

#: Split names; ``all`` (every row of every split) is also accepted where noted.
SPLITS: tuple[str, ...] = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
_SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
_EXAMPLES_KEPT = 3


class DatasetFormatError(ValueError):
    """A dataset folder or label file is not laid out as its format prescribes."""


class ImageReadError(OSError):
    """An image file exists but cannot be decoded (truncated, corrupt or not an image)."""


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
            if len(kept) >= _EXAMPLES_KEPT:
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
    """Where a table's images come from: ``read(i)`` gives (H, W, 3) uint8 RGB."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...

    def describe(self, index: int) -> str: ...

    def missing(self) -> np.ndarray: ...

    def take(self, rows: np.ndarray) -> ImageSource: ...


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
        path = self.path(index)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            if not path.is_file():
                raise FileNotFoundError(f"image file not found: {path}")
            raise ImageReadError(f"cannot decode image file {path} (corrupt or not an image)")
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
            :func:`select_split`).
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
        """16 hex digits identifying the native images (source, resolved root, frame options)."""
        key = {"source": self.source, "root": str(Path(self.root).resolve()), "frame": self.frame}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

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


def canonical_labels(ids: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map dataset label ids to canonical ones, vectorised; ids outside ``mapping`` become −1."""
    lut = np.full(max(mapping) + 1, -1, dtype=np.int64)
    for source, target in mapping.items():
        lut[source] = target
    ids = np.asarray(ids, dtype=np.int64)
    inside = (ids >= 0) & (ids < len(lut))
    return np.where(inside, lut[np.clip(ids, 0, len(lut) - 1)], -1)


def carve_validation(
    labels: np.ndarray, train_rows: np.ndarray, fraction: float, seed: int, groups=None
) -> np.ndarray:
    """Bool mask over ``train_rows``: the rows moved to the validation split.

    Without ``groups``: stratified, ``round(fraction · n)`` rows in all, shared among the classes in
    proportion to their counts (largest remainders get the rounding), chosen within each class by
    a permutation seeded with ``seed``. With ``groups`` (e.g. subjects): whole groups, in a seeded
    order, until at least ``fraction`` of the rows are taken. Same inputs → same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    n = len(train_rows)
    if groups is not None:
        row_groups = np.asarray(groups)[train_rows]
        unique, inverse, sizes = np.unique(row_groups, return_inverse=True, return_counts=True)
        order = rng.permutation(len(unique))
        taken = np.cumsum(sizes[order]) - sizes[order] < round(fraction * n)
        chosen = np.zeros(len(unique), dtype=bool)
        chosen[order[taken]] = True
        return chosen[inverse]
    row_labels = np.asarray(labels)[train_rows]
    perm = rng.permutation(n)
    order = perm[np.argsort(row_labels[perm], kind="stable")]
    sorted_labels = row_labels[order]
    rank = np.arange(n) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    exact = np.bincount(row_labels, minlength=NUM_CLASSES_8) * fraction
    quota = np.floor(exact).astype(np.int64)
    extra = round(fraction * n) - int(quota.sum())
    quota[np.argsort(quota - exact, kind="stable")[:extra]] += 1
    mask = np.zeros(n, dtype=bool)
    mask[order[rank < quota[sorted_labels]]] = True
    return mask


#: Share of an unsplit dataset's rows held out as its test split (a fixed, seed-0 carve).
UNSPLIT_TEST_FRACTION = 0.2


def select_split(table: FaceTable, split: str, val_fraction: float, seed: int) -> FaceTable:
    """Rows of ``split`` (``train``, ``val``, ``test`` or ``all``), carving val from train with
    :func:`carve_validation` when the dataset has no validation split. An unsplit dataset first
    holds out :data:`UNSPLIT_TEST_FRACTION` of its rows as ``test`` (stratified, always seed 0,
    so every training seed is tested on the same faces); train and val share the rest."""
    if split == "all":
        return table
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {[*SPLITS, 'all']}, got {split!r}")
    code = _SPLIT_CODES[split]
    if table.unsplit:
        rows = np.arange(len(table.labels))
        to_test = carve_validation(table.labels, rows, UNSPLIT_TEST_FRACTION, 0, table.groups)
        if code == TEST:
            return table.take(rows[to_test])
        train_rows = rows[~to_test]
    elif code == TEST or table.has_val:
        return table.take(np.flatnonzero(table.splits == code))
    else:
        train_rows = np.flatnonzero(table.splits == TRAIN)
    to_val = carve_validation(table.labels, train_rows, val_fraction, seed, table.groups)
    return table.take(train_rows[to_val if code == VAL else ~to_val])


class FaceDataset(Dataset):
    """One split of a real dataset as the Sample contract (DESIGN.md); images read lazily.

    Items: ``image`` float32 (3, size, size) (RGB in [0, 1], then ImageNet-normalised when
    ``normalize``), ``label`` int canonical, ``landmarks`` float32 (68, 2) (x, y) pixels of the
    returned image (all-NaN when unknown), ``id`` str, plus the table's extras (CK+: ``aus``).
    ``transform`` (a callable on the dict) is applied last.

    Construct through :func:`aubench.data.registry.open_dataset`. Args as there; ``split`` may also
    be ``all`` (every row, used by ``aubench landmarks``).
    """

    def __init__(
        self,
        table: FaceTable,
        split: str,
        *,
        size: int = 112,
        seed: int = 0,
        val_fraction: float = 0.1,
        num_classes: int | None = None,
        normalize: bool = True,
        transform: Callable[[Sample], Sample] | None = None,
        landmarks: str = "auto",
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int ≥ 8, got {size!r}")
        self.num_classes = _protocol_classes(table, num_classes)
        table = _apply_protocol(table, self.num_classes)
        table = select_split(table, split, val_fraction, seed)
        table = _drop_missing_images(table)
        # Imported here: the cache module imports this one for its types.
        from aubench.landmarks.cache import resolve_landmarks

        table, self.landmark_source = resolve_landmarks(table, landmarks)
        self.table = table
        self.split = split
        self.size = size
        self.normalize = normalize
        self.transform = transform
        if table.skipped:
            warnings.warn(
                f"{table.name} ({table.root}): skipped {sum(table.skipped.counts.values())} rows "
                f"— {table.skipped.summary()}",
                SkippedRowsWarning,
                stacklevel=4,  # the caller of open_dataset
            )

    def __len__(self) -> int:
        return len(self.table)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 canonical labels of every item, without reading images."""
        return self.table.labels

    @property
    def ids(self) -> pa.Array:
        """(N,) item ids (an Arrow string array; ``ids[i].as_py()`` is a str)."""
        return self.table.ids

    @property
    def fingerprint(self) -> str:
        """Identifies the native images; keys the landmark cache (see :class:`FaceTable`)."""
        return self.table.fingerprint

    @property
    def skipped(self) -> dict[str, int]:
        """Rows that could not be used, by reason (malformed, missing image, unreadable)."""
        return dict(self.table.skipped.counts)

    @property
    def excluded(self) -> dict[str, int]:
        """Rows left out by the protocol, by reason."""
        return dict(self.table.excluded.counts)

    def native_image(self, index: int) -> np.ndarray:
        """Item ``index``'s native image (H, W, 3) uint8 RGB: the file cropped to its face box."""
        index = self._index(index)
        image = self.table.images.read(index)
        if self.table.boxes is not None:
            image = crop_box(image, self.table.boxes[index])
        return image

    def native_landmarks(self, index: int) -> np.ndarray:
        """(68, 2) float32 landmarks of the native image (NaN when unknown)."""
        index = self._index(index)
        if self.table.landmarks is None:
            return np.full((NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
        return self.table.landmarks[index]

    def __getitem__(self, index: int) -> Sample:
        index = self._index(index)
        image, points = resize_face(
            self.native_image(index), self.native_landmarks(index), self.size
        )
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        if self.normalize:
            tensor = tensor.sub_(_MEAN).div_(_STD)
        sample = {
            "image": tensor,
            "label": int(self.table.labels[index]),
            "landmarks": torch.from_numpy(points),
            "id": self.table.ids[index].as_py(),
        }
        sample |= {key: torch.as_tensor(v[index]) for key, v in self.table.extras.items()}
        return self.transform(sample) if self.transform is not None else sample

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self.table)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items of {self.table.name}")
        return int(index) % n


def _protocol_classes(table: FaceTable, num_classes: int | None) -> int:
    if num_classes is None:
        return table.default_num_classes
    if num_classes not in (NUM_CLASSES_7, NUM_CLASSES_8):
        raise ValueError(f"num_classes must be 7 or 8, got {num_classes!r}")
    if num_classes > table.num_classes:
        raise ValueError(
            f"{table.name} has no contempt class, so num_classes must be 7 (got {num_classes})"
        )
    return num_classes


def _apply_protocol(table: FaceTable, num_classes: int) -> FaceTable:
    """Drop contempt rows under the 7-class protocol (counted in ``excluded``)."""
    outside = table.labels >= num_classes
    if not outside.any():
        return table
    table.excluded.add("contempt (7-class protocol)", int(outside.sum()))
    return table.take(np.flatnonzero(~outside))


def _drop_missing_images(table: FaceTable) -> FaceTable:
    missing = table.images.missing()
    if not missing.any():
        return table
    rows = np.flatnonzero(missing)
    table.skipped.add(
        "missing image file", len(rows), (table.images.describe(i) for i in rows[:_EXAMPLES_KEPT])
    )
    return table.take(np.flatnonzero(~missing))
