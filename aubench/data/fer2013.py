"""``fer2013`` and ``ferplus``: the 48×48 grayscale faces of FER2013 with their original labels or
with the FERPlus crowd votes.

**fer2013** — ``PATH`` is the CSV or a folder holding ``fer2013.csv`` (also ``fer2013/fer2013.csv``,
Kaggle's ``icml_face_data.csv`` whose header has leading spaces, or ``train.csv`` without
``Usage``, which is all train). Columns ``emotion, pixels, Usage`` in any order when there is a
header; without a header the order is ``emotion,pixels[,Usage]``. ``pixels`` holds 2,304
space-separated values 0–255 (row-major 48×48). Splits from ``Usage``: ``Training`` → train,
``PublicTest`` → val, ``PrivateTest`` → test (without ``Usage``, val is carved from train). Item
ids: ``fer%07d`` of the data-row index, the names FERPlus gives the same images.

=====  ========  ============
 id    FER2013   canonical id
=====  ========  ============
 0     angry     4 anger
 1     disgust   5 disgust
 2     fear      3 fear
 3     happy     1 happiness
 4     sad       6 sadness
 5     surprise  2 surprise
 6     neutral   0 neutral
=====  ========  ============

**ferplus** — ``PATH`` is a folder holding ``fer2013new.csv`` (microsoft/FERPlus) and the FER2013
``fer2013.csv`` (at most two levels down); the rows of the two files are the same images in the
same order. ``fer2013new.csv``: ``Usage, Image name`` then ten vote counts ``neutral, happiness,
surprise, sadness, anger, disgust, fear, contempt, unknown, NF``. The label is FERPlus's
*majority* protocol (``src/ferplus.py``): votes ≤ 1 are zeroed (outlier removal); the top class
(first on ties) wins if its votes are strictly more than half the remaining total, otherwise the
row is ``unknown``; rows whose winner is ``unknown`` or ``NF``, and rows with an empty
``Image name`` (not faces), are excluded (counted). Item ids: ``Image name`` without extension.

=====  =========  ============
 col   FERPlus    canonical id
=====  =========  ============
 0     neutral    0 neutral
 1     happiness  1 happiness
 2     surprise   2 surprise
 3     sadness    6 sadness
 4     anger      4 anger
 5     disgust    5 disgust
 6     fear       3 fear
 7     contempt   7 contempt
=====  =========  ============

FERPlus has contempt, so its default protocol is 8 classes (``num_classes=7`` drops contempt).
Neither ships landmarks (48 px is small for detectors; the dlib backend enlarges such images
before detecting). Malformed rows (field count, pixel count or value, label, ``Usage``) are
skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from aubench.data.parsing import header_fields, iter_csv, read_csv, split_numbers, to_ints
from aubench.data.table import (
    TEST,
    TRAIN,
    VAL,
    DatasetFormatError,
    FaceTable,
    PixelArray,
    SkipReport,
    canonical_labels,
)
from aubench.faces.codebook import NUM_CLASSES_7, NUM_CLASSES_8

#: FER2013 emotion id → canonical id.
FER2013_TO_CANONICAL: dict[int, int] = {0: 4, 1: 5, 2: 3, 3: 1, 4: 6, 5: 2, 6: 0}
#: FERPlus vote column → canonical id (columns 8 ``unknown`` and 9 ``NF`` are not classes).
FERPLUS_TO_CANONICAL: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 6, 4: 4, 5: 5, 6: 3, 7: 7}
FERPLUS_VOTES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
USAGE: dict[str, int] = {"Training": TRAIN, "PublicTest": VAL, "PrivateTest": TEST}
SIDE = 48
_FER_FILES = ("fer2013.csv", "fer2013/fer2013.csv", "icml_face_data.csv", "train.csv")


@dataclass
class _FerRows:
    """The rows of a FER2013 CSV whose pixels parse: line number, data-row index, emotion id and
    split (−1 where that field is bad), and the pixels (N, 48, 48); ``columns``: the file's
    column names (read from its header, else the positional defaults)."""

    columns: list[str]
    lines: np.ndarray
    rows: np.ndarray
    emotion: np.ndarray
    split: np.ndarray
    pixels: np.ndarray


def _usage_codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    codes = values.to_pandas().str.strip().map(USAGE)
    return codes.to_numpy(dtype=float, na_value=-1).astype(np.int64)


def _read_fer_csv(path: Path, skipped: SkipReport) -> _FerRows:
    first = header_fields(path)
    header = any(name.lower() in ("emotion", "pixels", "usage") for name in first)
    if header:
        names = first
    elif len(first) in (2, 3):
        names = ["emotion", "pixels", "Usage"][: len(first)]
    else:
        raise DatasetFormatError(f"{path}: expected columns emotion,pixels[,Usage], got {first}")
    if "pixels" not in names:
        raise DatasetFormatError(f"{path}: no 'pixels' column in the header {names}")
    first_line = 1 + int(header)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("lines", "rows", "emotion", "split")}
    parts["pixels"] = []
    for batch, lines in tqdm(
        iter_csv(path, names, header=header, report=skipped),
        desc=f"reading {path.name}",
        unit="block",
        disable=None,
        leave=False,
    ):
        pixels, bad = split_numbers(batch.column(names.index("pixels")), " ", SIDE * SIDE, np.uint8)
        skipped.add(
            "malformed pixels (not 2304 values 0-255)",
            int(bad.sum()),
            (f"{path}:{n}" for n in lines[bad]),
        )
        keep = ~bad
        if "emotion" in names:
            emotion, _ = to_ints(batch.column(names.index("emotion")), 0, 6)
        else:
            emotion = np.full(batch.num_rows, -1, dtype=np.int64)
        split = (
            _usage_codes(batch.column(names.index("Usage")))
            if "Usage" in names
            else np.full(batch.num_rows, TRAIN, dtype=np.int64)
        )
        parts["lines"].append(lines[keep])
        parts["rows"].append(lines[keep] - first_line)
        parts["emotion"].append(emotion[keep])
        parts["split"].append(split[keep])
        parts["pixels"].append(pixels[keep].reshape(-1, SIDE, SIDE))
    if not parts["rows"]:
        parts = {k: [np.zeros(0, np.int64)] for k in parts} | {
            "pixels": [np.zeros((0, SIDE, SIDE), np.uint8)]
        }
    return _FerRows(names, **{k: np.concatenate(v) for k, v in parts.items()})


def _find(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    if root.is_file():
        return root
    for name in candidates:
        if (root / name).is_file():
            return root / name
    for depth in ("*/", "*/*/"):
        found = sorted(root.glob(f"{depth}{candidates[0]}")) if root.is_dir() else []
        if found:
            return found[0]
    state = "does not exist" if not root.exists() else f"has no {' or '.join(candidates)}"
    raise DatasetFormatError(f"{what}: {root} {state}")


def _ids(rows: np.ndarray) -> pa.Array:
    return pa.array(pd.Series(rows).map("fer{:07d}".format), pa.string())


def _table(name, root, pixel_csv, ids, labels, splits, pixels, classes, skipped, excluded):
    return FaceTable(
        name=name,
        root=root,
        source="fer2013",
        ids=ids,
        labels=labels,
        splits=splits.astype(np.int8),
        images=PixelArray(pixels, str(pixel_csv)),
        num_classes=classes,
        default_num_classes=classes,
        has_val=bool((splits == VAL).any()),
        frame={"csv": str(pixel_csv.resolve())},
        skipped=skipped,
        excluded=excluded,
    )


def read_fer2013(root: Path) -> FaceTable:
    """Parse FER2013 (see the module docstring)."""
    path = _find(Path(root), _FER_FILES, "fer2013")
    skipped = SkipReport()
    fer = _read_fer_csv(path, skipped)
    if "emotion" not in fer.columns:
        raise DatasetFormatError(
            f"fer2013: {path} has no 'emotion' column (its header: {','.join(fer.columns)}; "
            "expected columns emotion,pixels[,Usage]), so it holds no labels (Kaggle's test.csv "
            "is unlabelled): use fer2013.csv, icml_face_data.csv or train.csv"
        )
    if not len(fer.rows) or (fer.emotion < 0).all():
        problems = f" ({skipped.summary()})" if skipped else ""
        raise DatasetFormatError(
            f"fer2013: {path} has no usable labelled rows: {len(fer.rows)} rows with 2,304 "
            f"pixels, none with an emotion 0-6{problems}"
        )
    bad = (fer.emotion < 0) | (fer.split < 0)
    skipped.add(
        "malformed row (emotion not 0-6 or unknown Usage)",
        int(bad.sum()),
        (f"{path}:{n}" for n in fer.lines[bad]),
    )
    keep = ~bad
    return _table(
        "fer2013",
        Path(root),
        path,
        _ids(fer.rows[keep]),
        canonical_labels(fer.emotion[keep], FER2013_TO_CANONICAL),
        fer.split[keep],
        fer.pixels[keep],
        NUM_CLASSES_7,
        skipped,
        SkipReport(),
    )


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FERPlus's majority label per row of (N, 10) vote counts: the column index 0–9, or 8
    (``unknown``) when no class has more than half of the votes left after zeroing counts ≤ 1."""
    votes = np.where(votes <= 1, 0, votes).astype(np.float64)
    winner = votes.argmax(axis=1)
    majority = votes.max(axis=1) > 0.5 * votes.sum(axis=1)
    return np.where(majority, winner, FERPLUS_VOTES.index("unknown"))


def read_ferplus(root: Path) -> FaceTable:
    """Parse FERPlus (``fer2013new.csv`` + ``fer2013.csv``; see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(
            f"ferplus: {root} is not a folder; expected one holding fer2013new.csv and fer2013.csv"
        )
    votes_csv = _find(root, ("fer2013new.csv",), "ferplus")
    skipped, excluded = SkipReport(), SkipReport()
    fer_csv = _find(root, _FER_FILES[:2], "ferplus (the FER2013 pixels)")
    fer = _read_fer_csv(fer_csv, skipped)
    names = ["Usage", "Image name", *FERPLUS_VOTES]
    header = header_fields(votes_csv)[0] == "Usage"
    table, lines = read_csv(votes_csv, names, header=header, report=skipped)
    image_names = table.column("Image name").to_pandas().str.strip()
    not_face = (image_names == "").to_numpy()
    excluded.add("not a face (empty Image name)", int(not_face.sum()))
    votes = np.stack([to_ints(table.column(v), 0, 1000)[0] for v in FERPLUS_VOTES], axis=1)
    split = _usage_codes(table.column("Usage"))
    bad = ~not_face & (((votes < 0).any(axis=1)) | (split < 0))
    skipped.add(
        "malformed row (vote not a count or unknown Usage)",
        int(bad.sum()),
        (f"{votes_csv}:{n}" for n in lines[bad]),
    )
    winner = ferplus_majority(np.maximum(votes, 0))
    usable = ~not_face & ~bad
    for code, reason in ((8, "no majority or unknown majority"), (9, "not a face (NF majority)")):
        excluded.add(reason, int((usable & (winner == code)).sum()))
    usable &= winner < NUM_CLASSES_8
    rows = lines - (1 + int(header))
    position = np.searchsorted(fer.rows, rows)
    position = np.minimum(position, max(len(fer.rows) - 1, 0))
    has_pixels = (fer.rows[position] == rows) if len(fer.rows) else np.zeros(len(rows), bool)
    orphan = usable & ~has_pixels
    skipped.add(
        "no pixels for the row in fer2013.csv",
        int(orphan.sum()),
        (f"{votes_csv}:{n}" for n in lines[orphan]),
    )
    keep = np.flatnonzero(usable & has_pixels)
    ids = image_names.iloc[keep].str.replace(r"\.[^.]*$", "", regex=True)
    return _table(
        "ferplus",
        root,
        fer_csv,
        pa.array(ids, pa.string()),
        canonical_labels(winner[keep], FERPLUS_TO_CANONICAL),
        split[keep],
        fer.pixels[position[keep]],
        NUM_CLASSES_8,
        skipped,
        excluded,
    )
