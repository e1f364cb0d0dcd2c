"""``disfa`` and ``bp4d``: the AU-coded video datasets, as labelled frames with their coded AUs.

Both ship per-frame AU codes (read by :func:`aubench.data.au_evidence.read_disfa_labels` and
:func:`~aubench.data.au_evidence.read_bp4d_occurrence`, the ``facs`` evidence) and no 68-point
landmarks (DISFA's are 66-point ``.mat`` files, BP4D's 49-point), so their landmarks come from a
detector's cache: ``aubench landmarks --data disfa:PATH`` (dlib by default). Layouts::

    DISFA/ActionUnit_Labels/SN001/SN001_au1.txt     # "frame,level" lines, 1-based frames
    DISFA/<frames>/SN001/00001.png                  # frames extracted from the left video
    BP4D/AUCoding/AU_OCC/F001_T1.csv                # occurrence per frame (0, 1, 9 = unknown)
    BP4D/<images>/F001/T1/2440.jpg                  # the 2D frames, named by frame number

DISFA is distributed as videos (``Videos_LeftCamera/LeftVideoSN001_comp.avi``); extract them once,
numbered from 1 as the label files count, e.g.
``ffmpeg -i Videos_LeftCamera/LeftVideoSN001_comp.avi Frames_LeftCamera/SN001/%05d.png``
(``first_frame=0`` when the files are numbered from 0). The frame folder is the one holding
``SN*/`` (DISFA) or ``F*/T*/`` (BP4D) image folders up to two levels below PATH (``frames=NAME``
picks one when there are several, e.g. left and right camera). A frame file is found by its
number, whatever its zero padding or extension (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``); a
labelled frame without one is a missing image (counted).

Labels (``labels=``), as canonical ids:

- ``task`` (BP4D only, its default): the emotion each task was designed to elicit (Zhang et al.,
  IVC 2014): T1 happiness, T2 sadness, T3 surprise, T5 fear, T7 anger, T8 disgust; T4
  (embarrassment) and T6 (physical pain) have no basic-emotion class and are excluded (counted).
- ``prototype`` (DISFA's only choice: its participants watched one video, and no frame carries an
  expression label): the class whose whole ``codebook`` prototype (default ``emfacs``) the frame
  shows (AU intensity > 0, BP4D occurrence 1), the largest such prototype when several are shown
  (EMFACS fear contains surprise); a tie between largest prototypes is excluded as ambiguous, a
  frame that shows AUs but no whole prototype as unlabelled, and a frame with no AU is neutral
  with ``neutral=true`` (else excluded). This is the FACS rule by which CK+'s emotion labels
  were validated; the labels come from the AUs, so the codebook–evidence agreement of such a run
  measures the rule, not the dataset.

Every labelled frame is a row (``stride=k`` keeps every k-th of each video: consecutive frames are
near duplicates). Ids are the evidence keys: ``SN001/1`` (subject / 1-based frame) and
``F001/T1/2440``. Samples carry ``aus`` (bool over ``dataset.table.attrs["au_numbers"]``) and, for
DISFA, ``au_intensity`` (uint8 0–5). Splits: subjects dealt into ``folds`` subject-independent
folds (3 by default, as the AU-detection literature does; sorted subject ids, round robin); fold
``fold`` is ``test``, the rest ``train``, ``val`` is a seeded draw of whole subjects from train.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from aubench.data.au_evidence import EvidenceTable, read_bp4d_occurrence, read_disfa_labels
from aubench.data.table import (
    DatasetFormatError,
    FaceTable,
    ImageFiles,
    SkipReport,
    require_dir,
    subject_folds,
)
from aubench.faces.codebook import NUM_CLASSES_7, NUM_CLASSES_8, Expression, get_codebook
from aubench.faces.evidence import FACS_MAX_INTENSITY

#: BP4D task → the emotion it elicits (None: no basic-emotion class).
BP4D_TASKS: dict[str, Expression | None] = {
    "T1": Expression.HAPPINESS,
    "T2": Expression.SADNESS,
    "T3": Expression.SURPRISE,
    "T4": None,  # embarrassment
    "T5": Expression.FEAR,
    "T6": None,  # physical pain
    "T7": Expression.ANGER,
    "T8": Expression.DISGUST,
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NO_TASK_CLASS = "task without a basic-emotion class (T4 embarrassment, T6 pain)"
NO_PROTOTYPE = "AUs shown match no whole prototype (unlabelled)"
AMBIGUOUS_PROTOTYPE = "AUs shown match several largest prototypes (ambiguous)"
NO_AU = "no AU shown (neutral; neutral=true keeps it)"
STRIDE = "between kept frames (stride)"
_LABEL_FOLDERS = {"ActionUnit_Labels", "AUCoding", "Landmark_Points", "AU_OCC", "AU_INT"}


def read_disfa(
    root: Path,
    *,
    labels: str = "prototype",
    codebook: str = "emfacs",
    neutral: bool = False,
    frames: str = "auto",
    first_frame: int = 1,
    stride: int = 1,
    folds: int = 3,
    fold: int = 0,
) -> FaceTable:
    """Parse DISFA at ``root`` (see the module docstring)."""
    if labels != "prototype":
        raise ValueError(
            f"disfa labels={labels!r}: DISFA has no expression labels (one video for everyone); "
            "its only labels are labels=prototype (the codebook prototype the frame's AUs show)"
        )
    root = require_dir(root, "disfa", "DISFA with ActionUnit_Labels/ and extracted frames")
    coded = read_disfa_labels(root)
    folder = _frame_folder(root, frames, r"SN\d+", "disfa", "SN001/00001.png")
    subject, frame = _split_keys(coded, 2)
    return _build(
        "disfa", root, folder, coded, subject, [subject], frame - 1 + first_frame,
        _prototype_labels(coded, codebook, neutral), stride, folds, fold,
        intensities=True,
    )  # fmt: skip


def read_bp4d(
    root: Path,
    *,
    labels: str = "task",
    codebook: str = "emfacs",
    neutral: bool = False,
    frames: str = "auto",
    stride: int = 1,
    folds: int = 3,
    fold: int = 0,
) -> FaceTable:
    """Parse BP4D at ``root`` (see the module docstring)."""
    if labels not in ("task", "prototype"):
        raise ValueError(f"bp4d labels must be 'task' or 'prototype', got {labels!r}")
    root = require_dir(root, "bp4d", "BP4D with AUCoding/AU_OCC/ and the 2D frames")
    coded = read_bp4d_occurrence(root)
    folder = _frame_folder(root, frames, r"[FM]\d+/T\d+", "bp4d", "F001/T1/2440.jpg")
    subject, task, frame = _split_keys(coded, 3)
    if labels == "task":
        known = np.array([BP4D_TASKS.get(t) is not None for t in task])
        label = np.array([int(BP4D_TASKS.get(t) or -1) for t in task], dtype=np.int64)
        reasons = np.where(known, "", NO_TASK_CLASS)
    else:
        label, reasons = _prototype_labels(coded, codebook, neutral)
    return _build(
        "bp4d", root, folder, coded, subject, [subject, task], frame, (label, reasons), stride,
        folds, fold, intensities=False,
    )  # fmt: skip


def _build(
    name: str,
    root: Path,
    folder: Path,
    coded: EvidenceTable,
    subject: np.ndarray,
    video: list[np.ndarray],
    number: np.ndarray,
    labelled: tuple[np.ndarray, np.ndarray],
    stride: int,
    folds: int,
    fold: int,
    *,
    intensities: bool,
) -> FaceTable:
    """The table of the coded frames kept by the labels and ``stride``, each with its image."""
    if stride < 1:
        raise ValueError(f"{name} stride must be ≥ 1, got {stride}")
    label, reasons = labelled
    excluded = SkipReport()
    ids = coded.keys.to_numpy(zero_copy_only=False).astype(str)
    locations = coded.locations.to_numpy(zero_copy_only=False)
    for reason in np.unique(reasons[reasons != ""]):
        where = reasons == reason
        excluded.add(str(reason), int(where.sum()), locations[where])
    keep = reasons == ""
    prefixes = np.array(["/".join(parts) for parts in zip(*video, strict=True)], dtype=str)
    rank = _rank_within(np.unique(prefixes, return_inverse=True)[1], number, keep)
    between = keep & (rank % stride != 0)
    excluded.add(STRIDE, int(between.sum()), locations[between])
    rows = np.flatnonzero(keep & ~between)
    if not len(rows):
        raise DatasetFormatError(
            f"{name}: no frame of {root} is left to use ({excluded.summary() or 'none coded'})"
        )
    paths = _image_paths(folder, list(prefixes[rows]), number[rows])
    present = coded.intensities[rows] > 0  # NaN (not coded) → False
    extras = {"aus": present}
    if intensities:
        level = np.nan_to_num(coded.intensities[rows]) * FACS_MAX_INTENSITY
        extras["au_intensity"] = np.round(level).astype(np.uint8)
    splits = subject_folds(name, subject[rows], folds, fold)
    groups = np.unique(subject[rows], return_inverse=True)[1].astype(np.int64)
    table = FaceTable(
        name=name,
        root=root,
        source=name,
        ids=pa.array(ids[rows], pa.string()),
        labels=label[rows],
        splits=splits,
        images=ImageFiles(folder, pa.array(paths, pa.string())),
        num_classes=NUM_CLASSES_8,
        default_num_classes=NUM_CLASSES_7,
        has_val=False,
        groups=groups,
        extras=extras,
        skipped=coded.skipped,
        excluded=excluded,
    )
    table.attrs["au_numbers"] = [int(au) for au in coded.aus]
    return table


def _split_keys(coded: EvidenceTable, parts: int) -> list[np.ndarray]:
    """The keys' components: strings, the last (the frame number) as int64."""
    split = np.array([key.split("/") for key in coded.keys.to_pylist()], dtype=object)
    split = split.reshape(-1, parts)
    return [*(split[:, j].astype(str) for j in range(parts - 1)), split[:, -1].astype(np.int64)]


def _prototype_labels(
    coded: EvidenceTable, codebook: str, neutral: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's class by the prototype rule (module doc), and why a frame has none ("")."""
    book = get_codebook(codebook)
    shown = coded.intensities > 0  # (N, A); NaN → not shown
    column = {int(au): j for j, au in enumerate(coded.aus)}
    classes = sorted(book.mapping, key=int)
    whole = np.zeros((len(shown), len(classes)), dtype=bool)
    size = np.array([len(book.mapping[c]) for c in classes])
    for k, expression in enumerate(classes):
        aus = book.mapping[expression]
        if aus and all(au in column for au in aus):
            whole[:, k] = shown[:, [column[au] for au in aus]].all(axis=1)
    sizes = np.where(whole, size, 0)
    largest = sizes.max(axis=1, initial=0)
    ties = (sizes == largest[:, None]) & whole
    label = np.array([int(c) for c in classes], dtype=np.int64)[ties.argmax(axis=1)]
    nothing = ~shown.any(axis=1)
    reasons = np.full(len(shown), "", dtype=object)
    reasons[~whole.any(axis=1)] = NO_PROTOTYPE
    reasons[ties.sum(axis=1) > 1] = AMBIGUOUS_PROTOTYPE
    reasons[nothing] = "" if neutral else NO_AU
    label[nothing] = int(Expression.NEUTRAL)
    return label, reasons.astype(str)


def _rank_within(video: np.ndarray, number: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Each kept frame's 0-based rank by frame number among its video's kept frames."""
    rank = np.zeros(len(video), dtype=np.int64)
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((number[rows], video[rows]))]
    start = np.r_[True, video[order][1:] != video[order][:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    rank[order] = np.arange(len(order)) - first
    return rank


def _frame_folder(root: Path, frames: str, pattern: str, name: str, example: str) -> Path:
    """The folder (up to two levels below ``root``) holding ``pattern`` folders of images."""
    if frames != "auto":
        folder = root / frames
        if not folder.is_dir():
            raise DatasetFormatError(f"{name}: frames={frames!r}: no folder {folder}")
        return folder
    depth = pattern.count("/") + 1
    found = []
    for current, dirs, _ in os.walk(root):
        here = Path(current)
        level = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in _LABEL_FOLDERS) if level < 2 else []
        if any(_holds_images(here, pattern, depth, d) for d in dirs):
            found.append(here)
            dirs[:] = []
    if not found:
        how = (
            " (DISFA ships videos: extract the frames first, e.g. `ffmpeg -i "
            "Videos_LeftCamera/LeftVideoSN001_comp.avi Frames_LeftCamera/SN001/%05d.png`)"
            if name == "disfa"
            else ""
        )
        raise DatasetFormatError(
            f"{name}: no folder of frames under {root}: expected e.g. <folder>/{example}{how}"
        )
    if len(found) > 1:
        names = ", ".join(str(f.relative_to(root)) or "." for f in found)
        raise DatasetFormatError(
            f"{name}: several folders of frames under {root} ({names}); pick one with "
            f"--data {name}:{root}?frames=NAME"
        )
    return found[0]


def _holds_images(folder: Path, pattern: str, depth: int, child: str) -> bool:
    """Whether ``folder/child`` starts a ``pattern`` path of folders whose last holds images."""
    if not re.fullmatch(pattern.split("/")[0], child):
        return False
    leaves = [folder / child]
    for _ in range(depth - 1):
        leaves = [sub for leaf in leaves for sub in sorted(leaf.iterdir()) if sub.is_dir()]
    return any(
        re.fullmatch(pattern, leaf.relative_to(folder).as_posix())
        and any(p.suffix.lower() in IMAGE_SUFFIXES for p in leaf.iterdir())
        for leaf in leaves
    )


def _image_paths(folder: Path, videos: list[str], numbers: np.ndarray) -> list[str]:
    """``video/<file>`` of each frame: the image file whose stem is the frame's number (any
    zero padding); ``video/<number>.png`` (a missing image, counted later) when none is."""
    index: dict[str, dict[int, str]] = {}
    for video in dict.fromkeys(videos):
        files = index.setdefault(video, {})
        place = folder / video
        for path in sorted(place.iterdir()) if place.is_dir() else ():
            if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit():
                files.setdefault(int(path.stem), path.name)
    return [
        f"{video}/{index[video].get(int(n), f'{int(n)}.png')}"
        for video, n in zip(videos, numbers, strict=True)
    ]
