"""Per-image AU evidence from files: a dataset's own FACS coding, or an AU detector's output.

Every reader returns an :class:`EvidenceTable` — N rows keyed by image, AU intensities normalised to
[0, 1] over the FACS numbers seen (NaN: not coded) — that :meth:`EvidenceTable.for_images` lines up
with a dataset's images as :class:`aubench.faces.evidence.AUEvidence`, the input of
:func:`aubench.faces.evidence.evidence_heatmaps`. Bad rows follow the data layer's policy
(:mod:`aubench.data.base`): a file whose layout or header breaks its format is an error naming the
file; a malformed row, an unknown AU, a repeated key, a missing image or an id that disagrees is
skipped and counted by reason in :attr:`EvidenceTable.skipped`, with ``file:line`` examples.

Dataset AU labels (:data:`DATASET_AU_READERS`, the ``facs`` evidence):

=========  ==========================================================  ====================
dataset    files                                                       key, intensity
=========  ==========================================================  ====================
``ckplus`` ``FACS/S005/001/S005_001_00000011_facs.txt``: one AU per    ``S005_001_00000011``
           line, ``AU intensity`` as floats (``1.2000000e+01           (the peak frame, the
           4.0000000e+00``); intensity 1–5 = A–E, 0 = coded present    ``ckplus`` loader's
           without an intensity; AUs not listed are absent             id); k/5, and 1 for 0
``disfa``  ``ActionUnit_Labels/SN001/SN001_au1.txt``: ``frame,level``  ``SN001/1`` (subject /
           per line (1-based frames, level 0–5), one file per AU       1-based frame); k/5
           (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
``bp4d``   ``AUCoding/AU_OCC/F001_T1.csv``: a header of AU numbers     ``F001/T1/2440``
           after the frame column (``0``), then ``frame,0|1|9,…``      (the image's path in
           rows: 1 present, 0 absent, 9 unknown (→ NaN)               ``F001/T1/2440.jpg``)
=========  ==========================================================  ====================

Detector outputs (:func:`read_detector`, the ``detector:PATH`` evidence): a CSV or Parquet file,
or a folder of per-image CSV files, in the format its header names:

- **OpenFace 2.x** (``FeatureExtraction``, ``FaceLandmarkImg``): ``AU01_r … AU45_r`` intensities
  0–5 and ``AU01_c … AU45_c`` presence 0/1 (header and rows may be written with ``", "``
  separators); rows with ``success`` 0 are failed detections;
- **py-feat** (a ``Fex`` saved with ``to_csv``): ``AU01 … AU43`` probabilities 0–1, the image in
  ``input``; rows whose AU cells are empty had no face;
- **LibreFace**: ``au_1 … au_24`` presence 0/1 and ``au_1_intensity … au_26_intensity`` 0–5.

Per AU: the intensity (/5) or probability gives the value, the presence column (≥ 0.5) or the
probability (≥ ``threshold``) says whether it is there, else a value > 0 does; the weight is the
value where present, 0 where not (an AU with only a presence column weighs 1). Images are keyed
by the first of :data:`KEY_COLUMNS` in the header (py-feat: ``input``) or, in a folder of per-image
CSVs, by each file's name; a key may be a dataset id, a file name or a path
(:meth:`EvidenceTable.match`).

A split's evidence (the ``evidence`` setting of training and evaluation,
:mod:`aubench.faces.evidence_spec`): :func:`split_evidence` reads it for an opened split — the
synthetic faces' rendered AUs, the dataset's reader of :data:`DATASET_AU_READERS`, or a detector's
output — and lines it up with the split's images (:meth:`EvidenceTable.match`: what does not match
is counted); :class:`EvidenceFaces` gives each sample its vector under :data:`EVIDENCE_KEY`, from
which :func:`aubench.data.batch.add_heatmaps` draws the evidence maps after the geometric
transforms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from aubench.data.ckplus import _locate as locate_ckplus
from aubench.data.parsing import header_fields, iter_csv, read_csv, read_whitespace, to_numbers
from aubench.data.synthetic import SyntheticFaces
from aubench.data.table import DatasetFormatError, SkipReport, require_dir
from aubench.faces.codebook import ALL_AUS
from aubench.faces.evidence import (
    FACS_AU_RANGE,
    FACS_AUS,
    FACS_MAX_INTENSITY,
    AUEvidence,
)
from aubench.faces.evidence_spec import EvidenceSpec, parse_evidence

NOT_A_NUMBER = "malformed row (not a number)"
OUT_OF_RANGE = "malformed row (value out of range)"
NO_KEY = "malformed row (no image key)"
UNKNOWN_AU = "unknown AU (not a FACS number 1–99)"
MISSING_IMAGE = "missing image file"
ID_MISMATCH = "id mismatch (the file's name disagrees with its folder)"
NO_IMAGE = "id mismatch (no image of the dataset has this key)"
AMBIGUOUS = "id mismatch (the key fits several images of the dataset)"
REPEATED = "repeated key (first kept)"
REPEATED_LINE = "repeated AU or frame within a file (first kept)"
DETECTOR_FAILED = "detector failed (no face, or success = 0)"
NO_EVIDENCE = "image without evidence"

#: Header names (any case) that key a detector's rows by image, in order of preference.
KEY_COLUMNS: tuple[str, ...] = (
    "id", "image_id", "image", "file", "filename", "file_name", "image_path", "path", "input",
    "input_image_path", "name",
)  # fmt: skip
#: py-feat's presence threshold on its AU probabilities (the default of ``threshold``).
PROBABILITY_THRESHOLD = 0.5
INTENSITY, PRESENCE, PROBABILITY = "intensity", "presence", "probability"
#: The top of each kind of AU column's scale (the bottom is 0).
SCALE_TOP = {INTENSITY: FACS_MAX_INTENSITY, PRESENCE: 1.0, PROBABILITY: 1.0}


@dataclass
class EvidenceTable:
    """Per-image AU evidence read from files (N rows, A AUs).

    Attributes:
        source: ``ckplus``, ``disfa``, ``bp4d``, ``openface``, ``py-feat`` or ``libreface``.
        keys: (N,) distinct image keys: dataset ids, file names or paths (module doc).
        aus: (A,) increasing FACS AU numbers of the columns, drawable by aubench or not.
        intensities: (N, A) float32 in [0, 1]; NaN where the AU was not coded for the image.
        locations: (N,) where each row came from (``file:line``, ``file`` or ``file:row k``).
        skipped: rows and files left out, by reason.
    """

    source: str
    keys: pa.Array
    aus: tuple[int, ...]
    intensities: np.ndarray
    locations: pa.Array
    skipped: SkipReport = field(default_factory=SkipReport)

    def __post_init__(self) -> None:
        n = len(self.keys)
        if self.intensities.shape != (n, len(self.aus)) or len(self.locations) != n:
            raise ValueError(
                f"{self.source}: {n} keys, {len(self.locations)} locations and intensities "
                f"{self.intensities.shape} for {len(self.aus)} AUs disagree"
            )

    def __len__(self) -> int:
        return len(self.keys)

    def evidence(self, rows: np.ndarray | None = None) -> AUEvidence:
        """Rows ``rows`` (all by default; −1: an image without evidence, all NaN) as
        :class:`~aubench.faces.evidence.AUEvidence`."""
        values = self.intensities
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            values = np.where((rows >= 0)[:, None], values[np.maximum(rows, 0)], np.nan)
        return AUEvidence(self.aus, torch.from_numpy(np.asarray(values, dtype=np.float32)))

    def match(
        self, ids: Sequence[str], paths: Sequence[str] | None = None
    ) -> tuple[np.ndarray, SkipReport]:
        """The evidence row of each of a dataset's B images (−1: none), and what did not match.

        A key matches the image whose id it equals; else the image whose path (``paths``: the
        images' relative paths; else the ids), extension ignored, ends in the same components as
        the key, the most components first: ``/data/BP4D/F001/T1/2440.jpg`` and ``F001/T1/2440``
        fit ``F001/T1/2440.jpg``, a bare ``2440.jpg`` only when one image has that name. Counted
        (``file:line`` of the key, or the image id): keys that fit no image (:data:`NO_IMAGE`) or
        several (:data:`AMBIGUOUS`), a second key for an image (:data:`REPEATED`), and images
        without evidence (:data:`NO_EVIDENCE`).
        """
        ids = pd.Series(np.asarray(ids, dtype=object), dtype="str")
        raw = self.keys.to_pandas()
        found = pd.Index(ids).get_indexer(raw) if ids.is_unique else np.full(len(raw), -1)
        ambiguous = np.zeros(len(raw), dtype=bool)
        keys = _stems(raw)
        targets = _stems(pd.Series(np.asarray(ids if paths is None else paths, dtype=object)))
        deepest = int(targets.str.count("/").max()) + 1 if len(targets) else 0
        for depth in range(deepest, 0, -1):
            todo = np.flatnonzero(found < 0)
            suffixes = _suffix(targets, depth)
            counts = suffixes.value_counts()
            unique = pd.Series(np.arange(len(targets)), index=suffixes)
            unique = unique[unique.index.isin(counts.index[counts == 1])]
            wanted = _suffix(keys.iloc[todo], depth)
            hit = unique.index.get_indexer(wanted)
            found[todo[hit >= 0]] = unique.to_numpy()[hit[hit >= 0]]
            ambiguous[todo] |= wanted.map(counts).gt(1).to_numpy()
        report = SkipReport()
        locations = self.locations.to_numpy(zero_copy_only=False)
        lost = found < 0
        report.add(AMBIGUOUS, int((lost & ambiguous).sum()), locations[lost & ambiguous])
        report.add(NO_IMAGE, int((lost & ~ambiguous).sum()), locations[lost & ~ambiguous])
        matched = np.flatnonzero(~lost)
        again = pd.Series(found[matched]).duplicated().to_numpy()
        report.add(REPEATED, int(again.sum()), locations[matched[again]])
        out = np.full(len(ids), -1, dtype=np.int64)
        out[found[matched[~again]]] = matched[~again]
        report.add(NO_EVIDENCE, int((out < 0).sum()), ids[out < 0])
        return out, report

    def for_images(
        self, ids: Sequence[str], paths: Sequence[str] | None = None
    ) -> tuple[AUEvidence, SkipReport]:
        """:meth:`match`, then the matched rows as evidence (B images; all NaN where none)."""
        rows, report = self.match(ids, paths)
        return self.evidence(rows), report


# ---------------------------------------------------------------------------------------------
# dataset AU labels


def read_ckplus_facs(root: str | os.PathLike) -> EvidenceTable:
    """CK+'s FACS coding: one row per ``*_facs.txt`` (module doc), keyed by its peak frame.

    Counted: a file whose frame is not of its folder's sequence (:data:`ID_MISMATCH`), or whose
    peak image is missing from ``cohn-kanade-images/`` (:data:`MISSING_IMAGE`, checked when that
    folder is there); lines that are malformed, name an unknown AU, have an intensity other than
    0–5 or repeat an AU of the file. A file with no usable line is a row of absent AUs.
    """
    expected = "CK+ with FACS/S005/001/S005_001_00000011_facs.txt files"
    root = require_dir(Path(root), "ckplus", expected)
    where = locate_ckplus(root)
    if "FACS" not in where:
        raise DatasetFormatError(f"ckplus: no FACS/ folder under {root}; expected {expected}")
    facs, images = where["FACS"], where.get("cohn-kanade-images")
    report = SkipReport()
    keys, files, parts = [], [], []
    for file in sorted(facs.glob("S*/*/*_facs.txt")):
        sequence = file.parent.relative_to(facs).as_posix()
        stem = file.name.removesuffix("_facs.txt")
        if not stem.startswith(sequence.replace("/", "_") + "_"):
            report.add(ID_MISMATCH, 1, [f"{file} (frame {stem} in folder {sequence})"])
            continue
        if images is not None and not (images / sequence / f"{stem}.png").is_file():
            report.add(MISSING_IMAGE, 1, [str(images / sequence / f"{stem}.png")])
            continue
        fields, lines = read_whitespace(file, 2, report=report)
        parts.append(_lines(len(files), lines, fields[0], fields[1]))
        keys.append(stem)
        files.append(str(file))
    if not keys:
        raise DatasetFormatError(f"ckplus: no usable *_facs.txt under {facs}")
    lines = pd.concat(parts, ignore_index=True)
    au, level, keep = _pairs(lines, files, report, au_first=True)
    value = np.where(level == 0, 1.0, level / FACS_MAX_INTENSITY)  # 0: present, not graded
    rows = lines["file"].to_numpy()[keep]
    return _table("ckplus", keys, files, rows, au.astype(np.int64), value, 0.0, report)


def read_disfa_labels(root: str | os.PathLike) -> EvidenceTable:
    """DISFA's AU intensities (module doc): one row per labelled frame, keyed ``SN001/<frame>``.

    Counted: a label file whose AU is not a FACS number (:data:`UNKNOWN_AU`), whose subject is
    not its folder's (:data:`ID_MISMATCH`) or that repeats a subject's AU; lines that are
    malformed, have a frame < 1 or a level other than 0–5, or repeat a frame of the file. A
    frame missing from one AU's file is NaN (not coded) there.
    """
    expected = "DISFA with ActionUnit_Labels/SN001/SN001_au1.txt files"
    folder = _find_folder(Path(root), "ActionUnit_Labels", "disfa", expected)
    report, files, subjects, aus, parts = SkipReport(), [], [], [], []
    for file in sorted(folder.glob("*/*_au*.txt")):
        name = re.fullmatch(r"(SN\d+)_au(\d+)\.txt", file.name, re.IGNORECASE)
        subject = file.parent.name
        if name is None or int(name[2]) not in FACS_AU_RANGE:
            report.add(UNKNOWN_AU, 1, [str(file)])
        elif name[1].upper() != subject.upper():
            report.add(ID_MISMATCH, 1, [f"{file} (subject {name[1]} in folder {subject})"])
        elif (subject, int(name[2])) in zip(subjects, aus, strict=True):
            report.add(REPEATED, 1, [f"{file} (a second AU{int(name[2])} file of {subject})"])
        else:
            table, lines = read_csv(file, ("frame", "level"), header=False, report=report)
            parts.append(_lines(len(files), lines, *(c.to_pandas() for c in table.columns)))
            files.append(str(file))
            subjects.append(subject)
            aus.append(int(name[2]))
    if not files:
        raise DatasetFormatError(f"disfa: no SN*/SN*_au<number>.txt label files under {folder}")
    lines = pd.concat(parts, ignore_index=True)
    frame, level, keep = _pairs(lines, files, report, au_first=False)
    file_ids, line_numbers = lines["file"].to_numpy()[keep], lines["line"].to_numpy()[keep]
    subject = np.asarray(subjects, dtype=object)[file_ids]
    order = np.lexsort((frame, subject))  # subject, then frame
    keys = pd.Series(subject[order]) + "/" + pd.Series(frame[order].astype(np.int64)).astype(str)
    codes, unique = pd.factorize(keys)
    first = np.unique(codes, return_index=True)[1]
    locations = _at(files, file_ids[order][first], line_numbers[order][first])
    au = np.asarray(aus, dtype=np.int64)[file_ids[order]]
    value = level[order] / FACS_MAX_INTENSITY
    return _table("disfa", list(unique), list(locations), codes, au, value, np.nan, report)


def read_bp4d_occurrence(root: str | os.PathLike) -> EvidenceTable:
    """BP4D's AU occurrence (module doc): one row per frame, keyed ``F001/T1/<frame>``.

    Counted: a file not named ``<subject>_<task>.csv`` (:data:`ID_MISMATCH`); a header column
    that is not a FACS number (:data:`UNKNOWN_AU`, the column is left out); rows that are
    malformed, hold a frame that is not a whole number or a code other than 0, 1 and 9, or
    repeat a frame.
    """
    expected = "BP4D with AUCoding/AU_OCC/F001_T1.csv files"
    folder = _find_folder(Path(root), "AU_OCC", "bp4d", expected)
    report, parts = SkipReport(), []
    for file in sorted(folder.glob("*.csv")):
        name = re.fullmatch(r"([FM]\d+)_(T\d+)\.csv", file.name)
        if name is None:
            report.add(ID_MISMATCH, 1, [f"{file} (not named <subject>_<task>.csv)"])
            continue
        header = header_fields(file)
        numbers, unknown = _au_numbers(header[1:])
        columns = [f"{file}:1 (column {c!r})" for c, u in zip(header[1:], unknown, strict=True)]
        report.add(UNKNOWN_AU, int(unknown.sum()), np.asarray(columns)[unknown])
        table, lines = read_csv(file, header, header=True, report=report)
        values, bad = _numbers([table.column(int(j)) for j in [0, *(1 + np.flatnonzero(~unknown))]])
        bad = bad.any(axis=1) | np.isnan(values).any(axis=1)
        report.add(NOT_A_NUMBER, int(bad.sum()), _at([file], 0, lines[bad]))
        frames, codes = values[:, 0], values[:, 1:]
        odd = (frames != np.round(frames)) | (frames < 0) | ~np.isin(codes, (0, 1, 9)).all(1)
        odd &= ~bad
        report.add(OUT_OF_RANGE, int(odd.sum()), _at([file], 0, lines[odd]))
        ok = ~bad & ~odd
        keys = [f"{name[1]}/{name[2]}/{int(f)}" for f in frames[ok]]
        occurrence = np.where(codes[ok] == 9, np.nan, codes[ok])  # 9: unknown
        parts.append((keys, tuple(numbers[~unknown]), occurrence, list(_at([file], 0, lines[ok]))))
    if not parts:
        raise DatasetFormatError(f"bp4d: no <subject>_<task>.csv files under {folder}")
    return _stack("bp4d", parts, report)


#: Dataset name → the reader of its AU labels (the ``facs`` evidence).
DATASET_AU_READERS: dict[str, Callable[[str | os.PathLike], EvidenceTable]] = {
    "ckplus": read_ckplus_facs,
    "disfa": read_disfa_labels,
    "bp4d": read_bp4d_occurrence,
}


# ---------------------------------------------------------------------------------------------
# detector outputs


@dataclass(frozen=True)
class DetectorFormat:
    """A detector's column naming: AU columns fully match ``column`` (group 1: the AU number,
    group 2: the suffix that ``kinds`` maps to intensity, presence or probability)."""

    name: str
    column: re.Pattern
    kinds: dict[str, str]


#: The formats :func:`read_detector` recognises, tried in this order.
DETECTOR_FORMATS: tuple[DetectorFormat, ...] = (
    DetectorFormat("openface", re.compile(r"AU(\d+)_([rc])"), {"r": INTENSITY, "c": PRESENCE}),
    DetectorFormat(
        "libreface", re.compile(r"au_(\d+)(_intensity)?"), {"": PRESENCE, "_intensity": INTENSITY}
    ),
    DetectorFormat("py-feat", re.compile(r"AU(\d+)()"), {"": PROBABILITY}),
)


def detect_format(header: Sequence[str], source: str | os.PathLike) -> DetectorFormat:
    """The detector format whose AU columns ``header`` has (module doc), else a
    :class:`~aubench.data.table.DatasetFormatError` naming the file and the known formats."""
    for spec in DETECTOR_FORMATS:
        if any(spec.column.fullmatch(name) for name in header):
            return spec
    shown = ", ".join(header[:8]) + (", …" if len(header) > 8 else "")
    raise DatasetFormatError(
        f"{source}: no AU columns of a known detector in its header ({shown}); expected OpenFace "
        "(AU01_r, AU01_c), py-feat (AU01) or LibreFace (au_1, au_1_intensity) columns"
    )


def read_detector(
    path: str | os.PathLike, threshold: float = PROBABILITY_THRESHOLD
) -> EvidenceTable:
    """An AU detector's output (module doc): a ``.csv``/``.parquet`` file keyed by a column of
    :data:`KEY_COLUMNS`, or a folder of per-image ``.csv`` files keyed by their names (each
    file's first usable row: its first face).

    Counted: AU columns that are not FACS numbers (:data:`UNKNOWN_AU`); rows that are
    malformed, hold an intensity outside 0–5 or a probability or presence outside 0–1, or have
    no key; failed detections (:data:`DETECTOR_FAILED`); repeated keys (the first is kept).
    ``threshold``: the probability from which a py-feat AU counts as present.
    """
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not path.exists() or not files:
        state = "does not exist" if not path.exists() else "holds no .csv file"
        raise DatasetFormatError(
            f"detector output {path} {state}: expected a CSV or Parquet file of per-image AU "
            "outputs (OpenFace, py-feat or LibreFace), or a folder of per-image CSV files"
        )
    report, parts, names = SkipReport(), [], set()
    for file in files:
        spec, part = _read_detector_file(file, path.is_dir(), threshold, report)
        names.add(spec.name)
        parts.append(part)
    if len(names) > 1:
        raise DatasetFormatError(f"{path}: its files mix detector formats ({', '.join(names)})")
    return _stack(names.pop(), parts, report)


def _read_detector_file(
    file: Path, per_image: bool, threshold: float, report: SkipReport
) -> tuple[DetectorFormat, tuple]:
    """One detector file: its format and ``(keys, aus, weights, locations)`` of its usable rows."""
    parquet = file.suffix.lower() in (".parquet", ".pq")
    header = pq.read_schema(file).names if parquet else header_fields(file)
    spec = detect_format(header, file)
    lower = {name.lower(): name for name in header}
    key = next((lower[name] for name in KEY_COLUMNS if name in lower), None)
    if key is None and not per_image:
        raise DatasetFormatError(
            f"{file}: no column naming the image (one of {', '.join(KEY_COLUMNS)}); add one, or "
            "give a folder of per-image CSV files named after the images"
        )
    found = [(name, spec.column.fullmatch(name)) for name in header]
    found = [(name, m) for name, m in found if m]
    numbers, unknown = _au_numbers([m[1] for _, m in found])
    names = [f"{file}:1 (column {name!r})" for name, _ in found]
    report.add(UNKNOWN_AU, int(unknown.sum()), np.asarray(names, dtype=object)[unknown])
    layout: dict[int, dict[str, int]] = {}  # AU → {kind: position in `wanted`}
    wanted, top = [], []  # the AU columns to read and the top of each one's scale
    for (name, m), au, bad in zip(found, numbers, unknown, strict=True):
        if not bad:
            kind = spec.kinds[m[2] or ""]
            layout.setdefault(int(au), {})[kind] = len(wanted)
            wanted.append(name)
            top.append(SCALE_TOP[kind])
    success = ["success"] if spec.name == "openface" and "success" in header else []
    columns = [*wanted, *success]
    table, lines = _read_columns(file, parquet, header, [key] if key else [], columns, report)
    where = np.asarray(list(_at([file], 0, lines, "row " if parquet else "")), dtype=object)
    values, bad = _numbers([table.column(name) for name in columns])
    bad = bad.any(axis=1)
    report.add(NOT_A_NUMBER, int(bad.sum()), where[bad])
    aus = values[:, : len(wanted)]
    with np.errstate(invalid="ignore"):
        odd = ((aus < 0) | (aus > np.array(top))).any(axis=1) & ~bad
    report.add(OUT_OF_RANGE, int(odd.sum()), where[odd])
    failed = np.isnan(aus).all(axis=1)
    if success:
        failed |= values[:, -1] == 0
    failed &= ~bad & ~odd
    report.add(DETECTOR_FAILED, int(failed.sum()), where[failed])
    keys = _keys(table.column(key)) if key else np.full(len(where), file.stem, dtype=object)
    keyless = (keys == "") & ~bad & ~odd & ~failed
    report.add(NO_KEY, int(keyless.sum()), where[keyless])
    keep = ~(bad | odd | failed | keyless)
    weights = _weights(aus[keep], layout, threshold)
    return spec, (list(keys[keep]), tuple(layout), weights, list(where[keep]))


def _read_columns(file, parquet, header, key, wanted, report) -> tuple[pa.Table, np.ndarray]:
    """The ``key`` and ``wanted`` columns of a detector file and the rows' line numbers (a
    Parquet file's row numbers); a CSV is streamed, its malformed rows counted."""
    if parquet:
        table = pq.read_table(file, columns=[*key, *wanted])
        return table, np.arange(1, table.num_rows + 1)
    positions = [header.index(name) for name in [*key, *wanted]]
    batches, lines = [], []
    for batch, at in iter_csv(file, header, header=True, report=report):
        batches.append(batch.select(positions))
        lines.append(at)
    schema = pa.schema([(name, pa.string()) for name in [*key, *wanted]])
    table = pa.Table.from_batches(batches, schema=schema)
    return table, np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)


def _weights(values: np.ndarray, layout: dict[int, dict[str, int]], threshold: float):
    """(n, AUs) weights from the AU columns' values: the intensity (/5) or probability where the
    AU is present (presence ≥ 0.5, probability ≥ ``threshold``, else a value > 0), 0 where it
    is not, 1 with only a presence column; NaN where a column of the AU is empty."""
    out = np.empty((len(values), len(layout)))
    for a, kinds in enumerate(layout.values()):
        got = {kind: values[:, j] for kind, j in kinds.items()}
        if INTENSITY in got:
            value = got[INTENSITY] / FACS_MAX_INTENSITY
        else:
            value = got.get(PROBABILITY, np.ones(len(values)))
        if PRESENCE in got:
            present = got[PRESENCE] >= 0.5
        elif PROBABILITY in got:
            present = got[PROBABILITY] >= threshold
        else:
            present = value > 0
        unknown = np.isnan(np.column_stack(list(got.values()))).any(axis=1)
        out[:, a] = np.where(unknown, np.nan, np.where(present, value, 0.0))
    return out


# ---------------------------------------------------------------------------------------------
# the evidence of a dataset's split

#: A sample's AU evidence (:class:`EvidenceFaces`): float32 (len(FACS_AUS),), AU k in column
#: k − 1, in [0, 1]; NaN where not coded (absent, for the maps).
EVIDENCE_KEY = "au_evidence"


@dataclass
class SplitEvidence:
    """The per-image AU evidence of one opened split (:func:`split_evidence`), by position.

    Attributes:
        spec: the evidence setting it was read for.
        source: ``synthetic`` (the AUs the renderer drew), a reader's dataset (``ckplus``, …)
            or a detector's format (``openface``, ``py-feat``, ``libreface``).
        table: the evidence read from files; None for the synthetic faces.
        rows: (N,) the table row of each image of the split, −1 for none; None for synthetic.
        unmatched: what did not match (:meth:`EvidenceTable.match`: keys that fit no image or
            several, repeated keys, images without evidence); empty for synthetic faces.
        faces: the synthetic faces themselves (None for a table).
    """

    spec: EvidenceSpec
    source: str
    table: EvidenceTable | None = None
    rows: np.ndarray | None = None
    unmatched: SkipReport = field(default_factory=SkipReport)
    faces: SyntheticFaces | None = None

    def __len__(self) -> int:
        return len(self.faces) if self.faces is not None else len(self.rows)

    def vectors(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (n, len(FACS_AUS)) the evidence of the images at ``indices`` (AU k in column
        k − 1; NaN: not coded, or no evidence for the image)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.full((len(indices), len(FACS_AUS)), np.nan, dtype=np.float32)
        if self.faces is not None:  # the renderer draws ALL_AUS only: every other AU is absent
            out[:] = 0.0
            drawn = [self.faces.au_intensity(int(i)) for i in indices]
            out[:, [au - 1 for au in ALL_AUS]] = np.stack(drawn) if drawn else 0.0
            return out
        rows = self.rows[indices]
        hit = np.flatnonzero(rows >= 0)
        columns = [au - 1 for au in self.table.aus]
        out[hit[:, None], columns] = self.table.intensities[rows[hit]]
        return out

    def missing(self, indices: Sequence[int] | np.ndarray) -> int:
        """How many images at ``indices`` have no evidence (no row of the table matched them)."""
        if self.rows is None:
            return 0
        return int((self.rows[np.asarray(indices, dtype=np.int64)] < 0).sum())

    def unregioned(self, indices: Sequence[int] | np.ndarray) -> dict[int, int]:
        """AU number → how many images at ``indices`` show it present, for the AUs aubench has
        no region for (:meth:`~aubench.faces.evidence.AUEvidence.unregioned`); none for the
        synthetic faces, whose renderer draws only AUs with a region."""
        if self.faces is not None:
            return {}
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        values = self.table.intensities[rows[rows >= 0]]
        return AUEvidence(self.table.aus, torch.from_numpy(values)).unregioned()


def read_evidence(split: Dataset, evidence: str | EvidenceSpec) -> EvidenceTable | None:
    """The evidence table of ``evidence`` (``facs``, ``detector:PATH``, ``hybrid``,
    ``hybrid:PATH``; :mod:`aubench.faces.evidence_spec`) for an opened ``split`` of a dataset:
    a detector's output (:func:`read_detector`), or the dataset's coding read by its entry of
    :data:`DATASET_AU_READERS` from the dataset's folder (the same for each of its splits);
    None for the synthetic faces' ``facs`` (their rendered AUs need no file). Errors:
    ``codebook`` (no per-image evidence), a dataset without an AU reader (naming the ones with
    one), and the readers'."""
    spec = parse_evidence(evidence) if isinstance(evidence, str) else evidence
    if not spec.per_image:
        raise ValueError("evidence 'codebook' is the label's prototype, not per-image evidence")
    if spec.path is not None:
        return read_detector(spec.path)
    if isinstance(split, SyntheticFaces):
        return None
    data = getattr(split, "table", None)
    reader = DATASET_AU_READERS.get(getattr(data, "source", None))
    if reader is None:
        name = getattr(data, "name", type(split).__name__)
        raise ValueError(
            f"evidence {spec}: aubench reads no AU coding of dataset {name!r} (it reads "
            f"synthetic, {', '.join(DATASET_AU_READERS)}); give an AU detector's output for "
            "its images instead: detector:PATH"
        )
    return reader(data.root)


def split_evidence(
    split: Dataset, evidence: str | EvidenceSpec, table: EvidenceTable | None = None
) -> SplitEvidence:
    """The ``evidence`` of an opened ``split``, lined up with its images: the synthetic faces'
    rendered AUs, or ``table`` (default :func:`read_evidence`'s) matched to the split's ids and
    image paths (:meth:`EvidenceTable.match`; keys of the dataset's other splits count as
    fitting no image of this one)."""
    spec = parse_evidence(evidence) if isinstance(evidence, str) else evidence
    table = read_evidence(split, spec) if table is None else table
    faces = split if isinstance(split, SyntheticFaces) else None
    if table is None:
        return SplitEvidence(spec, "synthetic", faces=faces)
    if faces is not None:
        ids, paths = [faces.sample_id(i) for i in range(len(faces))], None
    else:
        images = split.table.images
        ids = split.ids.to_pylist()
        paths = images.paths.to_pylist() if hasattr(images, "paths") else None
    rows, unmatched = table.match(ids, paths)
    return SplitEvidence(spec, table.source, table, rows, unmatched)


def evidence_fingerprint(evidence: str | EvidenceSpec) -> str:
    """What identifies a detector output's content cheaply (each file's name, size and mtime),
    for the keys of trained models and evaluated cells; ``""`` for evidence that is the
    dataset's own (its content fingerprint covers it) or the codebook."""
    spec = parse_evidence(evidence) if isinstance(evidence, str) else evidence
    if spec.path is None:
        return ""
    path = Path(spec.path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return ";".join(f"{name}:{size}:{mtime}" for name, size, mtime in stats)


class EvidenceFaces(Dataset):
    """``faces`` (a split, or faces made from it position by position) whose items also carry
    their evidence under :data:`EVIDENCE_KEY` (from ``evidence``, read for that split).
    Attributes of ``faces`` (``labels``, ``num_classes``, …) are forwarded."""

    def __init__(self, faces: Dataset, evidence: SplitEvidence) -> None:
        if len(faces) != len(evidence):
            raise ValueError(
                f"{len(evidence)} images of {evidence.source} evidence for {len(faces)} faces"
            )
        self.faces = faces
        self.evidence = evidence

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict:
        vector = self.evidence.vectors([index])[0]
        return {**self.faces[index], EVIDENCE_KEY: torch.from_numpy(vector)}

    def __getattr__(self, name: str):
        if name == "faces":  # not set yet (unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.faces, name)


# ---------------------------------------------------------------------------------------------
# shared helpers


def _find_folder(root: Path, name: str, dataset: str, expected: str) -> Path:
    """``root`` if it is the folder ``name``, else the first ``name`` folder up to two levels
    below it; an error naming ``expected`` when there is none."""
    root = require_dir(root, dataset, expected)
    if root.name == name:
        return root
    for current, dirs, _ in os.walk(root):
        if name in dirs:
            return Path(current) / name
        if len(Path(current).relative_to(root).parts) >= 2:
            dirs[:] = []
    raise DatasetFormatError(f"{dataset}: no {name}/ folder under {root}; expected {expected}")


def _lines(file: int, lines: np.ndarray, first, second) -> pd.DataFrame:
    """Two-field lines of one file as rows ``file, line, a, b`` (the fields as strings)."""
    return pd.DataFrame(
        {"file": file, "line": lines, "a": np.asarray(first), "b": np.asarray(second)}
    )


def _at(files: Sequence, file_ids, lines, prefix: str = "") -> Iterator[str]:
    """``file:line`` of each (file id, line number), made only as far as it is read."""
    file_ids = np.broadcast_to(np.asarray(file_ids), np.shape(lines))
    return (f"{files[f]}:{prefix}{n}" for f, n in zip(file_ids, lines, strict=True))


def _au_numbers(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """AU numbers of column names or AU fields (``1``, ``01``, ``1.0``) and ``unknown``: the
    ones that are not FACS numbers 1–99."""
    values, bad = to_numbers(pd.Series(list(names), dtype="str"))
    bad |= ~np.isin(values, np.arange(FACS_AU_RANGE.start, FACS_AU_RANGE.stop))
    return np.where(bad, -1, np.nan_to_num(values)).astype(np.int64), bad


def _pairs(
    lines: pd.DataFrame, files: Sequence[str], report: SkipReport, *, au_first: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``(AU, intensity)`` (CK+, ``au_first``) or ``(frame, level)`` (DISFA) lines:
    ``(first, level, keep)``, the values of the kept lines and the mask of them.

    Counted: a field that is not a number; an unknown AU, or a frame that is not a whole
    number ≥ 1; a level that is not a whole number 0–5; a first field repeated in its file.
    """

    def count(reason: str, mask: np.ndarray) -> None:
        report.add(reason, int(mask.sum()), _at(files, lines["file"][mask], lines["line"][mask]))

    first, first_bad = to_numbers(lines["a"])
    level, level_bad = to_numbers(lines["b"])
    keep = ~(first_bad | level_bad | np.isnan(first) | np.isnan(level))
    count(NOT_A_NUMBER, ~keep)
    if au_first:
        unknown = keep & ~np.isin(first, np.arange(FACS_AU_RANGE.start, FACS_AU_RANGE.stop))
        count(UNKNOWN_AU, unknown)
        keep &= ~unknown
    else:
        odd = keep & ((first != np.round(first)) | (first < 1))
        count(OUT_OF_RANGE, odd)
        keep &= ~odd
    odd = keep & ~np.isin(level, np.arange(6))
    count(OUT_OF_RANGE, odd)
    keep &= ~odd
    again = np.zeros_like(keep)
    again[keep] = pd.DataFrame({"f": lines["file"][keep], "a": first[keep]}).duplicated()
    count(REPEATED_LINE, again)
    keep &= ~again
    return first[keep], level[keep], keep


def _numbers(columns: Sequence[pa.Array | pa.ChunkedArray]) -> tuple[np.ndarray, np.ndarray]:
    """Columns (strings, trimmed, or numbers) as an (n, c) float64 array, empty or null cells
    NaN, and ``bad`` (n, c): a non-empty cell that is not a number."""
    n = len(columns[0]) if columns else 0
    values, bad = np.empty((n, len(columns))), np.zeros((n, len(columns)), dtype=bool)
    for j, column in enumerate(columns):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            trimmed = pc.fill_null(pc.utf8_trim_whitespace(column), "")
            values[:, j], bad[:, j] = to_numbers(trimmed, empty_ok=True)
        else:
            values[:, j] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return values, bad


def _keys(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Image keys as trimmed strings with ``/`` separators (an object array; null → "")."""
    strings = pc.fill_null(pc.utf8_trim_whitespace(pc.cast(column, pa.string())), "")
    return pc.replace_substring(strings, "\\", "/").to_numpy(zero_copy_only=False).astype(object)


def _table(source, keys, locations, rows, aus, values, fill, report) -> EvidenceTable:
    """Long ``(row, AU, value)`` entries → an :class:`EvidenceTable` over the sorted AUs seen:
    the entries' cells set, the others ``fill`` (CK+ 0: not listed = absent; DISFA NaN)."""
    numbers = np.unique(aus)
    matrix = np.full((len(keys), len(numbers)), fill, dtype=np.float32)
    matrix[np.asarray(rows, dtype=np.int64), np.searchsorted(numbers, aus)] = values
    return EvidenceTable(
        source,
        pa.array(keys, pa.string()),
        tuple(int(au) for au in numbers),
        matrix,
        pa.array(locations, pa.string()),
        report,
    )


def _stack(source: str, parts: list[tuple], report: SkipReport) -> EvidenceTable:
    """Wide parts ``(keys, aus, values, locations)`` → one table over the union of their AUs
    (NaN where a part has no such column); a key seen before is counted and dropped."""
    numbers = sorted({au for _, aus, _, _ in parts for au in aus})
    blocks = []
    for keys, aus, values, _ in parts:
        block = np.full((len(keys), len(numbers)), np.nan, dtype=np.float32)
        block[:, [numbers.index(au) for au in aus]] = values
        blocks.append(block)
    keys = np.array([key for part in parts for key in part[0]], dtype=object)
    where = np.array([at for part in parts for at in part[3]], dtype=object)
    again = pd.Series(keys, dtype="str").duplicated().to_numpy()
    report.add(REPEATED, int(again.sum()), where[again])
    return EvidenceTable(
        source,
        pa.array(keys[~again].tolist(), pa.string()),
        tuple(numbers),
        np.concatenate(blocks)[~again],
        pa.array(where[~again].tolist(), pa.string()),
        report,
    )


def _stems(paths: pd.Series) -> pd.Series:
    """Trimmed paths with ``/`` separators, without the last component's extension."""
    paths = paths.astype("str").str.strip().str.replace("\\", "/", regex=False)
    return paths.str.replace(r"\.[^./]*$", "", regex=True)


def _suffix(paths: pd.Series, depth: int) -> pd.Series:
    """The last ``depth`` components of each path (NaN where it has fewer)."""
    parts = paths.str.split("/")
    return parts.str[-depth:].str.join("/").where(parts.str.len() >= depth)
