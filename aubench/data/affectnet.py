"""``affectnet``: AffectNet, either of its two distributions (``release=auto`` detects which).

**CSV release** (``release=csv``)::

    Manually_Annotated_file_lists/training.csv     # train (val is carved from it)
    Manually_Annotated_file_lists/validation.csv   # 500 per class: the test split, as in papers
    Manually_Annotated_Images/<subDirectory_filePath>
    # or Manually_Annotated_compressed/Manually_Annotated_Images/ (the archive's own folder),
    # or Manually_Annotated/Manually_Annotated_Images/

Columns ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks,
expression, valence, arousal``; the header line is optional (some copies ship ``validation.csv``
without it). A ``subDirectory_filePath`` that leaves the image folder (absolute, or climbing out
with ``..``) is an error naming ``file:line``. Each image is cropped to its face box (top-left
``face_x, face_y``, size ``face_width × face_height``, squared about its centre).
``facial_landmarks`` holds 136 ``;``-separated numbers ``x0;y0;x1;y1;…`` in full-image pixels;
they are moved into the crop. Item ids: ``subDirectory_filePath``.

**npy release** (``release=npy``)::

    train_set/images/<n>.jpg   train_set/annotations/<n>_exp.npy, <n>_lnd.npy   # train
    val_set/images/<n>.jpg     val_set/annotations/<n>_exp.npy, <n>_lnd.npy     # the test split

224×224 face crops; ``_exp.npy`` holds the expression id (stored as a number or as text, both
read), ``_lnd.npy`` 136 interleaved x, y values in crop pixels. Item ids: ``train_set/<n>``; a
``landmarks.txt`` keyed by image path (``train_set/images/<n>.jpg``, as the reference paper writes
them) matches too, though train and val stems collide.

=====  ===========  ============
 id    AffectNet    canonical id
=====  ===========  ============
 0     neutral      0 neutral
 1     happy        1 happiness
 2     sad          6 sadness
 3     surprise     2 surprise
 4     fear         3 fear
 5     disgust      5 disgust
 6     anger        4 anger
 7     contempt     7 contempt
 8–10  none, uncertain, non-face: excluded (counted)
=====  ===========  ============

Protocols: ``num_classes=7`` (the default, ids 0–6, as the reference paper) or 8 (ids 0–7). The
landmarks ship with the data (automatically detected by AffectNet's authors), so
``landmarks=auto`` uses them. Malformed rows (field count, an id that is not 0–10, a box with a
non-positive size) are skipped and counted; a row whose landmark field is malformed keeps its image
and label with NaN landmarks (counted as well).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from aubench.data.parsing import header_fields, iter_csv, split_numbers, to_ints, to_numbers
from aubench.data.table import (
    TEST,
    TRAIN,
    DatasetFormatError,
    FaceTable,
    ImageFiles,
    SkipReport,
    canonical_labels,
    leaves_root,
    require_dir,
)
from aubench.faces.codebook import NUM_CLASSES_7, NUM_CLASSES_8
from aubench.faces.landmarks import NUM_LANDMARKS
from aubench.landmarks.align import square_boxes

#: AffectNet expression id → canonical id (ids 8–10 are not expressions).
AFFECTNET_TO_CANONICAL: dict[int, int] = {0: 0, 1: 1, 2: 6, 3: 2, 4: 3, 5: 5, 6: 4, 7: 7}
NON_EXPRESSIONS: dict[int, str] = {8: "none", 9: "uncertain", 10: "non-face"}
CSV_COLUMNS: tuple[str, ...] = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
CSV_FILES = {"training.csv": TRAIN, "validation.csv": TEST}
NPY_SETS = {"train_set": TRAIN, "val_set": TEST}
_LISTS = "Manually_Annotated_file_lists"
_IMAGE_DIRS = (
    "Manually_Annotated_Images",
    "Manually_Annotated_compressed/Manually_Annotated_Images",
    "Manually_Annotated/Manually_Annotated_Images",
)
_EXPECTED = f"AffectNet with {_LISTS}/ (CSV release) or train_set/ and val_set/ (npy release)"


def read_affectnet(root: Path, *, release: str = "auto") -> FaceTable:
    """Parse AffectNet at ``root`` (see the module docstring); ``release``: ``auto``, ``csv``,
    ``npy``."""
    root = require_dir(root, "affectnet", _EXPECTED)
    if release == "auto":
        release = "csv" if (root / _LISTS).is_dir() else "npy"
        if release == "npy" and not (root / "train_set").is_dir():
            raise DatasetFormatError(
                f"affectnet: {root} has neither {_LISTS}/ nor train_set/; expected {_EXPECTED}"
            )
    if release == "csv":
        return _read_csv_release(root)
    if release == "npy":
        return _read_npy_release(root)
    raise ValueError(f"affectnet release must be 'auto', 'csv' or 'npy', got {release!r}")


def _table(root: Path, release: str, image_root: Path, parts: dict, skipped, excluded) -> FaceTable:
    return FaceTable(
        name="affectnet",
        root=root,
        source=f"affectnet-{release}",
        ids=pa.concat_arrays(parts["ids"]) if parts["ids"] else pa.array([], pa.string()),
        labels=np.concatenate(parts["labels"] or [np.zeros(0, np.int64)]),
        splits=np.concatenate(parts["splits"] or [np.zeros(0, np.int8)]),
        images=ImageFiles(
            image_root,
            pa.concat_arrays(parts["paths"]) if parts["paths"] else pa.array([], pa.string()),
        ),
        num_classes=NUM_CLASSES_8,
        default_num_classes=NUM_CLASSES_7,
        has_val=False,
        landmarks=np.concatenate(
            parts["landmarks"] or [np.zeros((0, NUM_LANDMARKS, 2), np.float32)]
        ),
        boxes=np.concatenate(parts["boxes"]) if parts.get("boxes") else None,
        frame={"release": release},
        skipped=skipped,
        excluded=excluded,
    )


def _keep_expressions(raw: np.ndarray, excluded: SkipReport) -> np.ndarray:
    """Mask of ids 0–7; ids 8–10 are counted in ``excluded`` by name."""
    counts = np.bincount(raw[raw >= NUM_CLASSES_8], minlength=11)
    for code, name in NON_EXPRESSIONS.items():
        excluded.add(f"AffectNet id {code} ({name})", int(counts[code]))
    return raw < NUM_CLASSES_8


def _read_csv_release(root: Path) -> FaceTable:
    image_root = next((root / d for d in _IMAGE_DIRS if (root / d).is_dir()), None)
    if image_root is None:
        raise DatasetFormatError(
            f"affectnet: no image folder under {root}: expected one of {', '.join(_IMAGE_DIRS)} "
            "(unzip Manually_Annotated_compressed.zip there)"
        )
    skipped, excluded = SkipReport(), SkipReport()
    parts: dict[str, list] = {k: [] for k in ("ids", "paths", "labels", "splits", "landmarks")}
    parts["boxes"] = []
    found = False
    for file_name, split in CSV_FILES.items():
        path = root / _LISTS / file_name
        if not path.is_file():
            continue
        found = True
        header = header_fields(path)[0] == CSV_COLUMNS[0]
        for batch, lines in tqdm(
            iter_csv(path, CSV_COLUMNS, header=header, report=skipped),
            desc=f"reading {file_name}",
            unit="block",
            disable=None,
            leave=False,
        ):
            _csv_batch(batch, lines, path, split, parts, skipped, excluded)
    if not found:
        raise DatasetFormatError(f"affectnet: no training.csv or validation.csv in {root / _LISTS}")
    return _table(root, "csv", image_root, parts, skipped, excluded)


def _csv_batch(batch, lines, path, split, parts, skipped, excluded) -> None:
    column = batch.column
    raw, bad = to_ints(column(CSV_COLUMNS.index("expression")), 0, 10)
    skipped.add(
        "malformed row (expression not 0-10)", int(bad.sum()), (f"{path}:{n}" for n in lines[bad])
    )
    box = np.stack([to_numbers(column(k))[0] for k in range(1, 5)], axis=1)
    box_bad = ~bad & ~(np.isfinite(box).all(axis=1) & (box[:, 2] > 0) & (box[:, 3] > 0))
    skipped.add(
        "malformed face box (non-positive or not a number)",
        int(box_bad.sum()),
        (f"{path}:{n}" for n in lines[box_bad]),
    )
    keep = ~bad & ~box_bad
    keep[keep] = _keep_expressions(raw[keep], excluded)
    rows = np.flatnonzero(keep)
    paths = column(0).take(pa.array(rows))
    outside = leaves_root(paths)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DatasetFormatError(
            f"{path}:{lines[rows][k]}: subDirectory_filePath {paths[k].as_py()!r} leaves the image "
            "folder"
        )
    coords, lm_bad = split_numbers(
        column(CSV_COLUMNS.index("facial_landmarks")).take(pa.array(rows)), ";", 2 * NUM_LANDMARKS
    )
    skipped.add(
        "malformed landmarks (row kept, landmarks NaN)",
        int(lm_bad.sum()),
        (f"{path}:{n}" for n in lines[rows][lm_bad]),
    )
    squared = square_boxes(np.column_stack([box[rows, :2], box[rows, :2] + box[rows, 2:]]))
    landmarks = coords.reshape(-1, NUM_LANDMARKS, 2) - squared[:, None, :2].astype(np.float32)
    parts["ids"].append(paths)
    parts["paths"].append(paths)
    parts["labels"].append(canonical_labels(raw[rows], AFFECTNET_TO_CANONICAL))
    parts["splits"].append(np.full(len(rows), split, dtype=np.int8))
    parts["landmarks"].append(landmarks.astype(np.float32))
    parts["boxes"].append(squared)


def _read_npy_release(root: Path) -> FaceTable:
    skipped, excluded = SkipReport(), SkipReport()
    parts: dict[str, list] = {k: [] for k in ("ids", "paths", "labels", "splits", "landmarks")}
    for set_name, split in NPY_SETS.items():
        folder = root / set_name
        if not folder.is_dir():
            continue
        images = require_dir(folder / "images", "affectnet", "images/ beside annotations/")
        annotations = require_dir(folder / "annotations", "affectnet", "annotations/ with *.npy")
        names = sorted(
            e.name for e in os.scandir(images) if e.name.lower().endswith((".jpg", ".jpeg", ".png"))
        )
        raw = np.full(len(names), -1, dtype=np.int64)
        coords = np.full((len(names), 2 * NUM_LANDMARKS), np.nan, dtype=np.float32)
        status = np.zeros(len(names), dtype=np.int8)  # 0 ok, 1 no _exp, 2 bad _exp, 3 bad _lnd
        for k, name in enumerate(
            tqdm(names, desc=f"reading {set_name}", disable=None, leave=False)
        ):
            status[k], raw[k] = _load_expression(annotations / f"{Path(name).stem}_exp.npy")
            if status[k] == 0 and not _load_landmarks(
                annotations / f"{Path(name).stem}_lnd.npy", coords[k]
            ):
                status[k] = 3
        for code, reason, suffix in (
            (1, "missing annotation (_exp.npy)", "_exp.npy"),
            (2, "malformed annotation (_exp.npy not an id 0-10)", "_exp.npy"),
            (3, "missing or malformed landmarks (row kept, landmarks NaN)", "_lnd.npy"),
        ):
            rows = np.flatnonzero(status == code)
            where = (f"{annotations / Path(names[i]).stem}{suffix}" for i in rows)
            skipped.add(reason, len(rows), where)
        keep = (status == 0) | (status == 3)
        keep[keep] = _keep_expressions(raw[keep], excluded)
        rows = np.flatnonzero(keep)
        stems = [Path(names[i]).stem for i in rows]
        parts["ids"].append(pa.array([f"{set_name}/{s}" for s in stems], pa.string()))
        parts["paths"].append(
            pa.array([f"{set_name}/images/{names[i]}" for i in rows], pa.string())
        )
        parts["labels"].append(canonical_labels(raw[rows], AFFECTNET_TO_CANONICAL))
        parts["splits"].append(np.full(len(rows), split, dtype=np.int8))
        parts["landmarks"].append(coords[rows].reshape(-1, NUM_LANDMARKS, 2))
    if not parts["ids"]:
        raise DatasetFormatError(f"affectnet: no train_set/ or val_set/ in {root}")
    return _table(root, "npy", root, parts, skipped, excluded)


def _load_expression(path: Path) -> tuple[int, int]:
    """``(status, id)``: status 0 ok, 1 missing, 2 malformed (the file holds a number or text)."""
    try:
        value = np.load(path, allow_pickle=False)
        number = float(str(value.reshape(-1)[0])) if value.size == 1 else np.nan
    except FileNotFoundError:
        return 1, -1
    except (OSError, ValueError):
        return 2, -1
    if not (number.is_integer() and 0 <= number <= 10):
        return 2, -1
    return 0, int(number)


def _load_landmarks(path: Path, out: np.ndarray) -> bool:
    """Fill ``out`` (136,) from an ``_lnd.npy``; False when missing or malformed."""
    try:
        value = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    except (OSError, ValueError):
        return False
    if value.size != out.size:
        return False
    out[:] = value
    return True
