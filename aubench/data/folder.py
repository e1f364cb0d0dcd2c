"""``folder``: image files plus a CSV of labels and optional landmarks (e.g. an ``aubench synth``
export).

``PATH`` is one of:

- a CSV file (images are resolved relative to its folder);
- a folder holding ``labels.csv``;
- a folder whose ``train/``, ``val/`` and ``test/`` sub-folders each hold a ``labels.csv`` (e.g.
  three ``aubench synth --split … --out PATH/<split>`` exports); the sub-folder is the split.

CSV columns (a header line is required; other columns are ignored):

=============  =========================================================================
``image``      image path relative to the CSV's folder (also the item id, relative to PATH);
               it may not leave PATH (no absolute path, no climbing out with ``..``)
``label``      canonical id (0 neutral, 1 happiness, 2 surprise, 3 fear, 4 anger, 5 disgust,
               6 sadness, 7 contempt) or that expression's name, any case
``expression`` optional; when present it must name the same expression as ``label``
``split``      optional: ``train``, ``val`` or ``test`` per row
``x0 … x67``,  optional landmark columns (all 136 or none), (x, y) pixels of the image file;
``y0 … y67``   an empty cell or any non-finite value marks the face's landmarks as unknown
=============  =========================================================================

Labels are already canonical, so no mapping table is needed. Without ``split`` information the
folder is *unsplit*: a fixed stratified 20% of the rows is ``test`` and ``train``/``val`` are a
seeded stratified carve of the rest (``split="all"`` reads every row, e.g. to evaluate only).
This CSV is the user's own, so a bad value is an error naming ``file:line``, the column and the
value (not a skipped row), and so is an image listed twice (also as ``./a.png`` and ``a.png``: both
lines are named); missing image files are skipped and counted like everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aubench.data.parsing import header_fields, iter_csv, to_ints, to_numbers
from aubench.data.table import (
    SPLITS,
    DatasetFormatError,
    FaceTable,
    ImageFiles,
    SkipReport,
    leaves_root,
    normalized_paths,
)
from aubench.faces.codebook import EXPRESSIONS, NUM_CLASSES_7, NUM_CLASSES_8
from aubench.faces.landmarks import NUM_LANDMARKS

LABELS_CSV = "labels.csv"
LANDMARK_COLUMNS: tuple[str, ...] = (
    *(f"x{i}" for i in range(NUM_LANDMARKS)),
    *(f"y{i}" for i in range(NUM_LANDMARKS)),
)
_NAME_TO_ID = {name: i for i, name in enumerate(EXPRESSIONS)}


def read_folder(root: Path) -> FaceTable:
    """Parse a ``folder`` dataset at ``root`` (see the module docstring) into a table."""
    root = Path(root)
    if root.is_file():
        parts = [(root, None)]
        base = root.parent
    elif (root / LABELS_CSV).is_file():
        parts, base = [(root / LABELS_CSV, None)], root
    elif root.is_dir() and any((root / s / LABELS_CSV).is_file() for s in SPLITS):
        parts = [(root / s / LABELS_CSV, s) for s in SPLITS if (root / s / LABELS_CSV).is_file()]
        base = root
    else:
        what = "does not exist" if not root.exists() else "has no labels.csv"
        raise DatasetFormatError(
            f"folder dataset {root} {what}: expected a CSV file, a folder with {LABELS_CSV} "
            f"(columns image,label[,expression][,split][,x0..x67,y0..y67]) or train/ val/ test/ "
            f"sub-folders each with one"
        )
    frames = [_read_labels_csv(path, split) for path, split in parts]
    paths = pa.concat_arrays([f["paths"] for f in frames])
    labels = np.concatenate([f["labels"] for f in frames])
    splits = np.concatenate([f["splits"] for f in frames])
    with_landmarks = [f["landmarks"] is not None for f in frames]
    if any(with_landmarks) and not all(with_landmarks):
        raise DatasetFormatError(f"{root}: some split CSVs have landmark columns and some do not")
    landmarks = np.concatenate([f["landmarks"] for f in frames]) if all(with_landmarks) else None
    _check_unique(paths, frames)
    has_splits = any(f["has_split"] for f in frames)
    num_classes = NUM_CLASSES_8 if (labels == NUM_CLASSES_7).any() else NUM_CLASSES_7
    return FaceTable(
        name="folder",
        root=root,
        source="folder",
        ids=paths,
        labels=labels,
        splits=splits,
        images=ImageFiles(base, paths),
        num_classes=num_classes,
        default_num_classes=num_classes,
        has_val=bool((splits == 1).any()),
        unsplit=not has_splits,
        landmarks=landmarks,
    )


def _read_labels_csv(path: Path, split: str | None) -> dict:
    columns = header_fields(path)
    missing = [c for c in ("image", "label") if c not in columns]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing column(s) {missing} in the header {columns[:6]}; expected "
            "image,label[,expression][,split][,x0..x67,y0..y67]"
        )
    present = [c for c in LANDMARK_COLUMNS if c in columns]
    if present and len(present) != len(LANDMARK_COLUMNS):
        absent = [c for c in LANDMARK_COLUMNS if c not in columns]
        raise DatasetFormatError(
            f"{path}: landmark columns must be all of x0..x67,y0..y67 or none; missing {absent[:5]}"
        )
    try:  # landmarks parsed by Arrow as float32: compact and fast
        typed = dict.fromkeys(present, pa.float32())
        parts, report = _read_blocks(path, split, columns, typed)
    except pa.ArrowInvalid as err:  # a bad number: re-read as text to name its line and column
        _read_blocks(path, split, columns, {})
        raise DatasetFormatError(f"{path}: {err}") from err
    if report:
        raise DatasetFormatError(f"{path}: {report.summary()}")
    return {
        "paths": pa.concat_arrays(parts["paths"]) if parts["paths"] else pa.array([], pa.string()),
        "labels": np.concatenate(parts["labels"] or [np.zeros(0, np.int64)]),
        "splits": np.concatenate(parts["splits"] or [np.zeros(0, np.int8)]),
        "landmarks": (
            np.concatenate(parts["landmarks"] or [np.zeros((0, NUM_LANDMARKS, 2), np.float32)])
            if present
            else None
        ),
        "has_split": split is not None or "split" in columns,
        "csv": path,
        "lines": np.concatenate(parts["lines"] or [np.zeros(0, np.int64)]),
    }


def _read_blocks(path: Path, split: str | None, columns: list[str], types: dict):
    report = SkipReport()
    parts: dict[str, list] = {k: [] for k in ("paths", "labels", "splits", "landmarks", "lines")}
    for batch, lines in iter_csv(path, columns, header=True, report=report, types=types):
        landmarks = any(c in LANDMARK_COLUMNS for c in columns)
        for key, value in _parse_batch(batch, lines, path, split, landmarks).items():
            parts[key].append(value)
    return parts, report


def _parse_batch(
    batch: pa.RecordBatch, lines: np.ndarray, path: Path, split: str | None, landmarks: bool
) -> dict[str, Any]:
    """One block of rows of a labels CSV as compact arrays; the first bad value is an error."""
    names = batch.schema.names

    def fail(rows: np.ndarray, column: str, why: str) -> None:
        i = int(np.flatnonzero(rows)[0])
        value = batch.column(names.index(column))[i].as_py()
        raise DatasetFormatError(
            f"{path}:{lines[i]}: column {column!r}: {why}, got {value!r} "
            f"({int(rows.sum())} such row(s) in this block)"
        )

    labels = _parse_labels(batch.column(names.index("label")))
    if (labels < 0).any():
        fail(labels < 0, "label", "expected a canonical id 0-7 or an expression name")
    if "expression" in names:
        named = _parse_labels(batch.column(names.index("expression")))
        if (named != labels).any():
            fail(named != labels, "expression", "does not name the same expression as 'label'")
    splits = np.zeros(batch.num_rows, dtype=np.int8)
    if split is not None:
        splits[:] = SPLITS.index(split)
    elif "split" in names:
        given = batch.column(names.index("split")).to_pandas().str.strip().str.lower()
        codes = given.map({s: i for i, s in enumerate(SPLITS)}).to_numpy(dtype=float, na_value=-1)
        if (codes < 0).any():
            fail(codes < 0, "split", "expected train, val or test")
        splits = codes.astype(np.int8)
    out: dict[str, Any] = {"labels": labels, "splits": splits, "lines": lines}
    if landmarks:
        coords = np.empty((batch.num_rows, len(LANDMARK_COLUMNS)), dtype=np.float32)
        for k, name in enumerate(LANDMARK_COLUMNS):
            column = batch.column(names.index(name))
            if not pa.types.is_string(column.type):  # parsed by Arrow; empty cells are null
                coords[:, k] = pc.fill_null(column, np.nan).to_numpy(zero_copy_only=False)
                continue
            coords[:, k], bad = to_numbers(column, empty_ok=True)
            if bad.any():
                fail(bad, name, "expected a number (or an empty cell for unknown)")
        points = coords.reshape(-1, 2, NUM_LANDMARKS).transpose(0, 2, 1).copy()
        points[~np.isfinite(points).all(axis=(1, 2))] = np.nan
        out["landmarks"] = points
    image = pc.utf8_trim_whitespace(batch.column(names.index("image")))
    empty = pc.equal(image, "").to_numpy(zero_copy_only=False)
    if empty.any():
        fail(empty, "image", "empty image path")
    if split is not None:  # PATH/<split>/labels.csv: paths relative to PATH
        image = pc.binary_join_element_wise(path.parent.name, image, "/")
    outside = leaves_root(image)
    if outside.any():
        folder = path.parent.parent if split is not None else path.parent
        fail(outside, "image", f"the image path leaves the dataset folder {folder}")
    out["paths"] = image
    return out


def _parse_labels(column: pa.ChunkedArray) -> np.ndarray:
    """Canonical ids from ids or (any-case) expression names; −1 where neither."""
    ids, bad = to_ints(column, 0, NUM_CLASSES_8 - 1)
    names = column.to_pandas().str.strip().str.lower().map(_NAME_TO_ID)
    by_name = names.to_numpy(dtype=float, na_value=-1).astype(np.int64)
    return np.where(bad, by_name, ids)


def _check_unique(paths: pa.Array, frames: list[dict]) -> None:
    """An error naming both ``file:line`` of the first image listed twice (compared after
    resolving ``.``/``..`` segments, so ``./a.png`` and ``a.png`` are one image)."""
    keys = normalized_paths(paths).to_pandas()
    duplicated = keys.duplicated(keep=False).to_numpy()
    if not duplicated.any():
        return
    owners = np.repeat(np.arange(len(frames)), [len(f["lines"]) for f in frames])
    lines = np.concatenate([f["lines"] for f in frames])
    first, second = np.flatnonzero((keys == keys[int(np.flatnonzero(duplicated)[0])]).to_numpy())[
        :2
    ]
    shown = [
        f"{frames[owners[i]]['csv']}:{lines[i]} {paths[int(i)].as_py()!r}" for i in (first, second)
    ]
    others = int(keys[duplicated].nunique()) - 1
    more = f"; {others} more image(s) are listed twice or more" if others else ""
    raise DatasetFormatError(
        f"image {keys[int(first)]!r} is listed more than once ({', '.join(shown)}){more}; "
        "every image may appear once"
    )
