"""The shared lazy face dataset: one split of a :class:`~aubench.data.table.FaceTable` as the
Sample contract of DESIGN.md, images read on access.

:class:`FaceDataset` selects the rows of a split (carving a validation split where the dataset has
none), drops rows the protocol excludes or whose image is missing, picks the landmarks up (see
:func:`aubench.data.landmark_source.resolve_landmarks`) and reads each image only when an item is
asked for, so evaluation memory does not grow with the number of images read.

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
  :class:`~aubench.data.table.SkippedRowsWarning` with example ``file:line`` locations (the
  ``folder`` dataset, whose CSV users write themselves, raises instead);
- rows whose image file is missing are skipped and counted the same way (checked for the requested
  split only, one ``stat`` per file);
- a row whose image path leaves the dataset folder (absolute, or climbing out with ``..``) is an
  error naming ``file:line`` and the path;
- a split with no rows left is an :class:`~aubench.data.table.EmptySplitError` at open, naming the
  dataset, the split, why it is empty and how many rows the splits have.

Corrupt images, one policy for training, evaluation and landmark detection: an image file that
exists but cannot be decoded (truncated, corrupt, not an image) is found when it is read — telling
it at open would mean decoding every image — and reading it raises
:class:`~aubench.data.table.ImageReadError`, one line naming the file and the fix (replace the
file, or delete it so that its row is skipped as a missing image). Nothing is dropped silently, so
a run's counts never change behind its back. ``aubench landmarks`` reads every image and records
such files as ``unreadable_image`` in the landmark cache; datasets that take their landmarks from
that cache then skip them, counted as ``unreadable image (landmark cache)``.

Rows left out by a protocol (AffectNet ids 8–10, contempt under ``num_classes=7``) are counted in
:attr:`FaceDataset.excluded` without a warning.

:attr:`FaceDataset.content_fingerprint` identifies the split's content (labels, ids, landmarks,
each image file's size, modification time and inode; see
:attr:`aubench.data.table.FaceTable.content_fingerprint`), e.g. to key a trained model;
:attr:`FaceDataset.fingerprint` only where the images come from (it keys the landmark cache).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from aubench.data.landmark_source import resolve_landmarks
from aubench.data.sample import IMAGENET_MEAN, IMAGENET_STD, Sample
from aubench.data.table import (
    EXAMPLES_KEPT,
    SPLITS,
    TEST,
    TRAIN,
    VAL,
    EmptySplitError,
    FaceTable,
    SkippedRowsWarning,
)
from aubench.faces.codebook import NUM_CLASSES_7, NUM_CLASSES_8
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.align import resize_face

_SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


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
        every = _apply_protocol(table, self.num_classes)
        table = select_split(every, split, val_fraction, seed)
        table = _drop_missing_images(table)
        if len(table):
            table, self.landmark_source = resolve_landmarks(table, landmarks)
        if not len(table):
            raise EmptySplitError(_empty_split(every, split, val_fraction, seed))
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
        """Where the native images come from; keys the landmark cache (see :class:`FaceTable`)."""
        return self.table.fingerprint

    @property
    def content_fingerprint(self) -> str:
        """16 hex digits identifying this split's content: its ids, labels, landmarks (as
        resolved), boxes and each image file's size, mtime and inode (or the pixels); see
        :attr:`aubench.data.table.FaceTable.content_fingerprint`. One ``stat`` per image."""
        return self.table.content_fingerprint

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
        return self.table.native_image(self._index(index))

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


def _empty_split(table: FaceTable, split: str, val_fraction: float, seed: int) -> str:
    """Why ``split`` of ``table`` (after the protocol) is empty, and each split's listed rows."""
    sizes = ", ".join(
        f"{name} {len(select_split(table, name, val_fraction, seed))}" for name in SPLITS
    )
    why = []
    if split == "val" and not table.has_val:
        why.append(f"val is a val_fraction={val_fraction} carve of train")
    if table.excluded:
        why.append(f"excluded by the protocol: {table.excluded.summary()}")
    if table.skipped:
        why.append(f"skipped: {table.skipped.summary()}")
    because = f" ({'; '.join(why)})" if why else ""
    return (
        f"{table.name} ({table.root}): split {split!r} has no rows{because}; rows listed per "
        f"split: {sizes}"
    )


def _drop_missing_images(table: FaceTable) -> FaceTable:
    missing = table.images.missing()
    if not missing.any():
        return table
    rows = np.flatnonzero(missing)
    table.skipped.add(
        "missing image file", len(rows), (table.images.describe(i) for i in rows[:EXAMPLES_KEPT])
    )
    return table.take(np.flatnonzero(~missing))
