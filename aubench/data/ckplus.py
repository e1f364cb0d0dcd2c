"""``ckplus``: the Extended Cohn-Kanade dataset (CK+), labelled sequences, as distributed.

Layout (each folder may sit one level deeper, e.g. ``Emotion_labels/Emotion/``)::

    cohn-kanade-images/S005/001/S005_001_00000011.png   # 593 sequences, neutral → peak
    Emotion/S005/001/S005_001_00000011_emotion.txt      # 327 sequences; names the peak frame
    Landmarks/S005/001/S005_001_00000011_landmarks.txt  # 68 "x y" rows per frame (AAM)
    FACS/S005/001/S005_001_00000011_facs.txt            # "AU intensity" rows for the peak

The emotion file holds one number printed as a float (``3.0000000e+00``).

=====  ========  ============
 id    CK+       canonical id
=====  ========  ============
 0     neutral   0 neutral
 1     anger     4 anger
 2     contempt  7 contempt
 3     disgust   5 disgust
 4     fear      3 fear
 5     happy     1 happiness
 6     sadness   6 sadness
 7     surprise  2 surprise
=====  ========  ============

Items: the last ``frames`` frames (default 1, the peak) of each labelled sequence carry its
emotion; ``neutral=true`` adds each labelled sequence's first frame as neutral. Item ids: the frame
name (``S005_001_00000011``). Landmarks ship for every frame (NaN when a file is missing or
malformed). FACS: samples carry ``aus``, a bool vector over :attr:`au_numbers`
(``dataset.table.attrs["au_numbers"]``, the AUs coded anywhere in the copy), and ``au_intensity``
(uint8, 0 when not coded): the peak's AUs, given to every emotional frame of the sequence; neutral
frames have none.

Splits: CK+ has none, so subjects are dealt into ``folds`` subject-independent folds (sorted subject
ids, round robin); fold ``fold`` is ``test``, the rest ``train``, and ``val`` is a seeded draw of
whole subjects from train. CK+ has contempt: the default protocol has 8 classes (``num_classes=7``
drops contempt). A malformed emotion file is skipped and counted; landmark and FACS problems are
counted without dropping the frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from aubench.data.table import (
    DatasetFormatError,
    FaceTable,
    ImageFiles,
    SkipReport,
    canonical_labels,
    require_dir,
    subject_folds,
)
from aubench.faces.codebook import NUM_CLASSES_8
from aubench.faces.landmarks import NUM_LANDMARKS

#: CK+ emotion id → canonical id.
CKPLUS_TO_CANONICAL: dict[int, int] = {0: 0, 1: 4, 2: 7, 3: 5, 4: 3, 5: 1, 6: 6, 7: 2}
FOLDERS = ("cohn-kanade-images", "Emotion", "Landmarks", "FACS")
_EXPECTED = "CK+ with cohn-kanade-images/ and Emotion/ (Landmarks/ and FACS/ optional)"


def _locate(root: Path) -> dict[str, Path]:
    """The CK+ folders found up to two levels below ``root`` (the shallowest of each name, or
    its same-named child when the zip was extracted one level deeper)."""
    found: dict[str, Path] = {}
    base = len(root.parts)
    for current, dirs, _ in os.walk(root):
        depth = len(Path(current).parts) - base
        for name in dirs:
            if name in FOLDERS and name not in found:
                path = Path(current) / name
                while (path / name).is_dir():  # Landmarks/Landmarks/ from nested zips
                    path = path / name
                found[name] = path
        dirs[:] = [d for d in dirs if d not in FOLDERS] if depth < 2 else []
    return found


def _read_points(path: Path, rows: int) -> np.ndarray | None:
    """An ``x y`` per line text file as (rows, 2) (or (k, 2) when ``rows`` is 0); None if bad."""
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError):
        return None
    if values.shape[1:] != (2,) or (rows and values.shape[0] != rows):
        return None
    return values


def read_ckplus(
    root: Path, *, frames: int = 1, neutral: bool = False, folds: int = 10, fold: int = 0
) -> FaceTable:
    """Parse CK+ at ``root`` (see the module docstring)."""
    if frames < 1:
        raise ValueError(f"ckplus frames must be ≥ 1, got {frames}")
    root = require_dir(root, "ckplus", _EXPECTED)
    where = _locate(root)
    for name in FOLDERS[:2]:
        if name not in where:
            raise DatasetFormatError(
                f"ckplus: no {name}/ folder under {root}; expected {_EXPECTED}"
            )
    images, emotions = where["cohn-kanade-images"], where["Emotion"]
    skipped = SkipReport()
    items: list[tuple[str, str, int, str]] = []  # (frame stem, sequence, emotion id, peak stem)
    for file in sorted(emotions.glob("S*/*/*_emotion.txt")):
        sequence = file.parent.relative_to(emotions).as_posix()
        peak = file.name.removesuffix("_emotion.txt")
        try:
            value = float(file.read_text().split()[0])
        except (IndexError, ValueError):
            value = np.nan
        if not (value.is_integer() and 0 <= value <= 7):
            skipped.add("malformed emotion file", 1, [str(file)])
            continue
        frame_files = sorted(p.stem for p in (images / sequence).glob("*.png"))
        upto = frame_files.index(peak) + 1 if peak in frame_files else len(frame_files)
        chosen = frame_files[max(0, upto - frames) : upto] if peak in frame_files else [peak]
        items += [(stem, sequence, int(value), peak) for stem in chosen]
        if neutral and frame_files and frame_files[0] not in chosen:
            items.append((frame_files[0], sequence, 0, ""))
    if not items:
        raise DatasetFormatError(f"ckplus: no usable *_emotion.txt under {emotions}")
    stems = [stem for stem, *_ in items]
    sequences = [seq for _, seq, *_ in items]
    raw = np.array([emotion for _, _, emotion, _ in items], dtype=np.int64)
    subjects = np.array([int(seq.split("/")[0].lstrip("S") or -1) for seq in sequences])
    splits = subject_folds("ckplus", subjects, folds, fold)
    table = FaceTable(
        name="ckplus",
        root=root,
        source="ckplus",
        ids=pa.array(stems, pa.string()),
        labels=canonical_labels(raw, CKPLUS_TO_CANONICAL),
        splits=splits,
        images=ImageFiles(
            images, pa.array([f"{q}/{s}.png" for s, q in zip(stems, sequences, strict=True)])
        ),
        num_classes=NUM_CLASSES_8,
        default_num_classes=NUM_CLASSES_8,
        has_val=False,
        groups=subjects,
        frame={},
        skipped=skipped,
    )
    if "Landmarks" in where:
        table.landmarks = _landmarks(where["Landmarks"], stems, sequences, skipped)
    table.extras, table.attrs["au_numbers"] = _facs(where.get("FACS"), items, skipped)
    return table


def _landmarks(folder: Path, stems: list[str], sequences: list[str], report) -> np.ndarray:
    out = np.full((len(stems), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    problems: list[str] = []
    for k, (stem, sequence) in enumerate(zip(stems, sequences, strict=True)):
        path = folder / sequence / f"{stem}_landmarks.txt"
        points = _read_points(path, NUM_LANDMARKS)
        if points is None:
            problems.append(str(path))
        else:
            out[k] = points
    report.add(
        "missing or malformed landmark file (frame kept, landmarks NaN)", len(problems), problems
    )
    return out


def _facs(folder: Path | None, items, report) -> tuple[dict[str, np.ndarray], list[int]]:
    """``aus`` (N, A) bool and ``au_intensity`` (N, A) uint8 over the sorted AU numbers seen."""
    coded: dict[tuple[str, str], np.ndarray] = {}
    problems: list[str] = []
    for _, sequence, _, peak in items:
        if not peak or folder is None or (sequence, peak) in coded:
            continue
        path = folder / sequence / f"{peak}_facs.txt"
        points = _read_points(path, 0)
        if points is None or not np.isfinite(points).all():
            problems.append(str(path))
            points = np.zeros((0, 2))
        coded[(sequence, peak)] = points
    report.add("missing or malformed FACS file (frame kept, no AUs)", len(problems), problems)
    numbers = sorted({int(au) for values in coded.values() for au in values[:, 0]})
    column = {au: j for j, au in enumerate(numbers)}
    intensity = np.zeros((len(items), len(numbers)), dtype=np.uint8)
    present = np.zeros((len(items), len(numbers)), dtype=bool)
    for k, (_, sequence, _, peak) in enumerate(items):
        for au, level in coded.get((sequence, peak), np.zeros((0, 2))):
            present[k, column[int(au)]] = True
            intensity[k, column[int(au)]] = int(level)
    return {"aus": present, "au_intensity": intensity}, numbers
