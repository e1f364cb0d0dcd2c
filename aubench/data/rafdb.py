"""``rafdb``: RAF-DB, basic (single-label) subset, as distributed (archives unzipped).

Layout (``PATH`` is ``RAF-DB/`` or its ``basic/`` folder)::

    basic/EmoLabel/list_patition_label.txt     # sic; list_partition_label.txt is accepted too
    basic/Image/aligned/train_00001_aligned.jpg  # 100×100, aligned by RAF-DB   (images=aligned)
    basic/Image/original/train_00001.jpg         # full images                   (images=original)
    basic/Annotation/boundingbox/train_00001_boundingbox.txt   # x_min y_min x_max y_max

Label file: one ``<image name> <label>`` line per image, whitespace-separated, no header.

=====  =========  ==============
 RAF   name       canonical id
=====  =========  ==============
 1     surprise   2 surprise
 2     fear       3 fear
 3     disgust    5 disgust
 4     happiness  1 happiness
 5     sadness    6 sadness
 6     anger      4 anger
 7     neutral    0 neutral
=====  =========  ==============

Splits: the official train/test from the ``train_``/``test_`` name prefix (12,271/3,068 images);
no validation split ships, so ``val`` is carved from train. Item ids: the image name without
extension (``train_00001``). ``images=original`` crops each image to its bounding box, squared
about its centre; the box is read as ``x_min y_min x_max y_max`` as two public parsers do (the
reference code swaps the axes — check a few boxes on your copy). RAF-DB ships no 68-point
landmarks (only 5 manual and 37 Face++ points, not read): compute them with ``aubench landmarks``.
Malformed label lines (field count, label outside 1–7, unknown prefix) and images whose box file
is missing or malformed are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from aubench.data.parsing import read_whitespace, to_ints, to_numbers
from aubench.data.table import (
    TEST,
    TRAIN,
    DatasetFormatError,
    FaceTable,
    ImageFiles,
    SkipReport,
    canonical_labels,
    require_dir,
)
from aubench.faces.codebook import NUM_CLASSES_7
from aubench.landmarks.align import square_boxes

#: RAF-DB label id → canonical id (module docstring table).
RAF_TO_CANONICAL: dict[int, int] = {1: 2, 2: 3, 3: 5, 4: 1, 5: 6, 6: 4, 7: 0}
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")
_EXPECTED = "RAF-DB's basic/ folder with EmoLabel/list_patition_label.txt and Image/aligned/"


def read_rafdb(root: Path, *, images: str = "aligned") -> FaceTable:
    """Parse RAF-DB basic at ``root`` (see the module docstring); ``images``: ``aligned`` or
    ``original`` (cropped to the shipped face box)."""
    if images not in ("aligned", "original"):
        raise ValueError(f"rafdb images must be 'aligned' or 'original', got {images!r}")
    root = require_dir(root, "rafdb", _EXPECTED)
    base = root / "basic" if (root / "basic").is_dir() else root
    label_file = next((base / f for f in LABEL_FILES if (base / f).is_file()), None)
    if label_file is None:
        raise DatasetFormatError(
            f"rafdb: no {' or '.join(LABEL_FILES)} under {base}; expected {_EXPECTED}"
        )
    image_dir = base / "Image" / images
    if not image_dir.is_dir():
        raise DatasetFormatError(
            f"rafdb: {image_dir} does not exist; unzip Image/{images}.zip into {base / 'Image'}"
        )
    skipped = SkipReport()
    frame, lines = read_whitespace(label_file, 2, report=skipped)
    names = frame[0]
    raw, bad_label = to_ints(frame[1], 1, 7)
    is_train = names.str.startswith("train_").to_numpy()
    bad_split = ~is_train & ~names.str.startswith("test_").to_numpy()
    bad = bad_label | bad_split
    skipped.add(
        "malformed row (label not 1-7 or name not train_/test_)",
        int(bad.sum()),
        (f"{label_file}:{n}" for n in lines[bad]),
    )
    keep = ~bad
    stems = names[keep].str.replace(r"\.[^.]*$", "", regex=True).reset_index(drop=True)
    if images == "aligned":
        paths = "Image/aligned/" + stems + "_aligned.jpg"
    else:
        paths = "Image/original/" + names[keep].reset_index(drop=True)
    table = FaceTable(
        name="rafdb",
        root=root,
        source=f"rafdb-{images}",
        ids=pa.array(stems, pa.string()),
        labels=canonical_labels(raw[keep], RAF_TO_CANONICAL),
        splits=np.where(is_train[keep], TRAIN, TEST).astype(np.int8),
        images=ImageFiles(base, pa.array(paths, pa.string())),
        num_classes=NUM_CLASSES_7,
        default_num_classes=NUM_CLASSES_7,
        has_val=False,
        frame={"images": images},
        skipped=skipped,
    )
    return table if images == "aligned" else _with_boxes(table, base)


def _with_boxes(table: FaceTable, base: Path) -> FaceTable:
    """Attach the squared ``Annotation/boundingbox`` boxes; rows without a usable box are
    skipped (counted)."""
    folder = base / "Annotation" / "boundingbox"
    if not folder.is_dir():
        raise DatasetFormatError(
            f"rafdb: {folder} does not exist; images=original needs the face boxes "
            "(unzip Annotation/boundingbox.zip)"
        )
    ids = table.ids.to_pylist()
    texts = []
    missing = np.zeros(len(ids), dtype=bool)
    for k, stem in enumerate(ids):  # one small file per image: reading them is the loop
        try:
            texts.append((folder / f"{stem}_boundingbox.txt").read_text(errors="replace"))
        except FileNotFoundError:
            missing[k] = True
            texts.append("")
    values = np.full((len(ids), 4), np.nan)
    tokens = [text.split() for text in texts]
    counts = np.array([len(t) for t in tokens])
    four = np.flatnonzero(counts == 4)
    if len(four):
        parsed, bad = to_numbers(pd.Series(np.concatenate([tokens[k] for k in four])))
        values[four] = np.where(bad, np.nan, parsed).reshape(-1, 4)
    malformed = ~missing & ~(
        np.isfinite(values).all(axis=1)
        & (values[:, 2] > values[:, 0])
        & (values[:, 3] > values[:, 1])
    )
    table.skipped.add(
        "missing face box file",
        int(missing.sum()),
        (f"{folder / ids[k]}_boundingbox.txt" for k in np.flatnonzero(missing)),
    )
    table.skipped.add(
        "malformed face box",
        int(malformed.sum()),
        (f"{folder / ids[k]}_boundingbox.txt" for k in np.flatnonzero(malformed)),
    )
    keep = np.flatnonzero(~missing & ~malformed)
    table = table.take(keep)
    table.boxes = square_boxes(values[keep])
    return table
