"""Miniature copies of the real datasets' on-disk formats, written into a test's tmp_path.

Every builder writes real files exactly as the datasets are distributed (shared/reference/
datasets-and-distributed.md §1): JPEG/PNG images through OpenCV, label files with the datasets'
separators, headers and number formats, ``.npy`` annotations. Images are flat grey with optional
white dots, so a test can find where a point went after crops and resizes.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np


def image(height: int, width: int, dots=(), value: int = 90, radius: int = 3) -> np.ndarray:
    """(H, W, 3) uint8 RGB grey image with a white disc at each (x, y) of ``dots``."""
    out = np.full((height, width, 3), value, dtype=np.uint8)
    for x, y in dots:
        cv2.circle(out, (round(x), round(y)), radius, (255, 255, 255), -1, lineType=cv2.LINE_8)
    return out


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Write RGB ``pixels`` to ``path`` (format from the extension: .jpg, .png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 98] if path.suffix.lower() in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), quality)
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image name whose content is not an image (a truncated JPEG header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 truncated")
    return path


def write_truncated(path: Path, pixels: np.ndarray) -> Path:
    """A real image file (format from the extension) cut to half its bytes, as an interrupted
    copy leaves it: its header is intact, its data ends early."""
    data = write_image(path, pixels).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: relative path → (size, mtime_ns, SHA-256), to show that
    opening or reading a dataset changed nothing on disk."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns, digest)
    return out


def write_paper_landmarks(path: Path, ids, points: np.ndarray) -> Path:
    """A ``landmarks.txt`` as the reference paper's pipeline writes it: ``<id>,x1..x68,y1..y68``
    with Python's ``str(float)`` numbers, ``inf`` for a failed face, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, face in zip(ids, np.asarray(points, dtype=np.float64), strict=True):
        values = [*face[:, 0].tolist(), *face[:, 1].tolist()]
        lines.append(f"{name}," + ",".join(str(v) for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


def dot_centre(pixels: np.ndarray, near: np.ndarray, window: int = 8) -> np.ndarray:
    """Intensity-weighted centre (x, y) of the bright dot within ``window`` px of ``near``."""
    gray = pixels.astype(np.float64).mean(axis=-1) if pixels.ndim == 3 else pixels
    x0, y0 = (max(0, round(v) - window) for v in near)
    patch = gray[y0 : y0 + 2 * window + 1, x0 : x0 + 2 * window + 1]
    weight = np.clip(patch - np.median(gray), 0, None)
    ys, xs = np.mgrid[: patch.shape[0], : patch.shape[1]]
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum() + [x0, y0]


def face_points(x0: float, y0: float, side: float) -> np.ndarray:
    """A plausible (68, 2) face filling the square (x0, y0, side) (the canonical mean face)."""
    from aubench.faces.landmarks import MEAN_FACE

    return (MEAN_FACE * side + [x0, y0]).astype(np.float32)


# --- RAF-DB ---------------------------------------------------------------------------------------

RAF_ROWS = [  # (name, RAF label) — every RAF label appears in train
    ("train_00001.jpg", "1"),
    ("train_00002.jpg", "2"),
    ("train_00003.jpg", "3"),
    ("train_00004.jpg", "4"),
    ("train_00005.jpg", "5"),
    ("train_00006.jpg", "6"),
    ("train_00007.jpg", "7"),
    ("train_00008.jpg", "4"),
    ("train_00009.jpg", "4"),
    ("train_00010.jpg", "7"),
    ("test_0001.jpg", "4"),
    ("test_0002.jpg", "7"),
    ("test_0003.jpg", "1"),
]


def make_rafdb(
    root: Path,
    *,
    label_file: str = "list_patition_label.txt",
    dot: tuple[float, float] | None = None,
) -> Path:
    """RAF-DB/basic with the label file (mixed tab/space separators, a blank line, malformed
    rows), aligned 100×100 images, original images (160 wide, 120 + 4k high; a white dot at
    ``dot`` when given) and bounding boxes ``20+k 30 80+k 70``. Returns ``root``."""
    basic = root / "basic"
    separators = [" ", "\t", "  "]
    lines = [f"{n}{separators[k % 3]}{label}" for k, (n, label) in enumerate(RAF_ROWS)]
    lines[3:3] = ["train_00011.jpg", "", "train_00012.jpg 9", "val_0001.jpg 3"]  # 3 malformed
    (basic / "EmoLabel").mkdir(parents=True)
    (basic / "EmoLabel" / label_file).write_text("\n".join(lines) + "\n")
    for k, (name, _) in enumerate(RAF_ROWS):
        stem = name.removesuffix(".jpg")
        write_image(basic / "Image" / "aligned" / f"{stem}_aligned.jpg", image(100, 100, value=k))
        height, width = 120 + 4 * k, 160
        dots = [dot] if dot is not None else []
        write_image(basic / "Image" / "original" / name, image(height, width, dots, value=k))
        box = basic / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
        box.parent.mkdir(parents=True, exist_ok=True)
        box.write_text(f"{20.0 + k:.2f}\t{30.0:.2f}\t{80.0 + k:.2f}\t{70.0:.2f}\n")
    return root


def paper_crop(box: tuple[float, ...], width: int, height: int) -> tuple[int, int, int, int]:
    """The reference code's crop of one RAF-DB box (``raf_db.py``, alignment off), written out
    here from its description: ``(left, upper, right, lower)`` for PIL."""
    x0, y0, x1, y1 = (int(max(float(v), 0)) for v in box)
    half_w, half_h = int((x1 - x0) * 0.3 / 2.0), int((y1 - y0) * 0.3 / 2.0)
    left, upper, right, lower = y0, x0, y1, x1
    return (
        max(0, left - half_h),
        max(0, upper - half_w),
        min(right + half_h, height - 1),
        min(lower + half_w, width - 1),
    )


def make_rafdb_tall(root: Path, boxes: dict[str, tuple[float, float, float, float]]) -> Path:
    """RAF-DB/basic with original images only, 60 wide and 200 high, one per ``boxes`` entry
    (name → the four numbers written to its box file, in that order). Returns ``root``."""
    basic = root / "basic"
    (basic / "EmoLabel").mkdir(parents=True)
    labels = [f"{name} {1 + k % 7}" for k, name in enumerate(boxes)]
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(labels) + "\n")
    for k, (name, numbers) in enumerate(boxes.items()):
        write_image(basic / "Image" / "original" / name, image(200, 60, value=20 + k))
        box = basic / "Annotation" / "boundingbox" / f"{name[:-4]}_boundingbox.txt"
        box.parent.mkdir(parents=True, exist_ok=True)
        box.write_text(" ".join(f"{v:.2f}" for v in numbers) + "\n")
    return root


# --- AffectNet ------------------------------------------------------------------------------------

AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
    "valence,arousal"
)


def affectnet_row(path: str, box, points: np.ndarray | None, expression) -> str:
    landmarks = ";".join(f"{v:.2f}" for v in points.reshape(-1)) if points is not None else ""
    x, y, w, h = box
    return f"{path},{x},{y},{w},{h},{landmarks},{expression},0.5,-0.25"


def make_affectnet_csv(root: Path, images: str = "Manually_Annotated_Images") -> dict:
    """The CSV release: training.csv (header) and validation.csv (no header), images (under
    ``images``) with a dot at landmark 30 (nose tip). Returns the rows' boxes and landmarks by
    path."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    truth = {}
    train, test = [AFFECTNET_HEADER], []
    for k, expression in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 1, 1]):
        rel = f"{100 + k}/img{k}.jpg"
        box = (30 + k, 20, 90, 90)
        points = face_points(box[0] + 4, box[1] + 4, 80)
        write_image(root / images / rel, image(160, 200, [points[30]]))
        truth[rel] = (box, points, expression)
        train.append(affectnet_row(rel, box, points, expression))
    train.append("999/short.jpg,1,2,3")  # too few fields: malformed
    train.append(affectnet_row("998/zero.jpg", (5, 5, 0, 40), None, 1))  # non-positive width
    train.append(affectnet_row("997/badlm.jpg", (5, 5, 40, 40), np.zeros((67, 2)), 2))
    write_image(root / images / "997/badlm.jpg", image(60, 60))
    train.append(affectnet_row("996/missing.jpg", (5, 5, 40, 40), face_points(5, 5, 40), 3))
    for k, expression in enumerate([6, 0, 9]):
        rel = f"200/val{k}.jpg"
        box = (10, 10, 50, 50)
        points = face_points(12, 12, 46)
        write_image(root / images / rel, image(80, 80))
        truth[rel] = (box, points, expression)
        test.append(affectnet_row(rel, box, points, expression))
    (lists / "training.csv").write_text("\n".join(train) + "\n")
    (lists / "validation.csv").write_text("\n".join(test) + "\n")
    return truth


def make_affectnet_npy(root: Path) -> dict:
    """The npy release: 224×224 crops, ``_exp.npy`` as text ('3') or as a number, ``_lnd.npy``
    interleaved x, y. Returns ``{id: (expression, points)}``."""
    truth = {}
    for set_name, expressions in (("train_set", [0, 1, 2, 7, 9, 3]), ("val_set", [4, 5])):
        for k, expression in enumerate(expressions):
            images, notes = root / set_name / "images", root / set_name / "annotations"
            notes.mkdir(parents=True, exist_ok=True)
            write_image(images / f"{k}.jpg", image(224, 224))
            value = np.array(str(expression)) if k % 2 else np.float64(expression)
            np.save(notes / f"{k}_exp.npy", value)
            points = face_points(20 + k, 30, 180)
            np.save(notes / f"{k}_lnd.npy", points.reshape(-1).astype(np.float64))
            np.save(notes / f"{k}_val.npy", np.float64(0.1))
            np.save(notes / f"{k}_aro.npy", np.float64(-0.1))
            truth[f"{set_name}/{k}"] = (expression, points)
    write_image(root / "train_set" / "images" / "90.jpg", image(224, 224))  # no annotations
    write_image(root / "train_set" / "images" / "91.jpg", image(224, 224))
    np.save(root / "train_set" / "annotations" / "91_exp.npy", np.float64(2))
    np.save(root / "train_set" / "annotations" / "91_lnd.npy", np.zeros(10))  # malformed
    truth["train_set/91"] = (2, None)
    return truth


# --- FER2013 / FERPlus ----------------------------------------------------------------------------


def fer_pixels(k: int) -> np.ndarray:
    """A distinct 48×48 uint8 face for row k."""
    return ((np.arange(48 * 48).reshape(48, 48) * (k + 1)) % 256).astype(np.uint8)


def pixel_text(pixels: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in pixels.reshape(-1))


FER_ROWS = [  # (emotion, Usage)
    ("0", "Training"),
    ("1", "Training"),
    ("2", "Training"),
    ("3", "Training"),
    ("4", "PublicTest"),
    ("5", "PublicTest"),
    ("6", "PrivateTest"),
    ("3", "PrivateTest"),
]


def make_fer2013(path: Path, *, header: str | None = "emotion,pixels,Usage", bad_rows=True) -> Path:
    """``fer2013.csv`` (or a variant header/order), rows of :data:`FER_ROWS`; with ``bad_rows``
    also a short pixel row, a 256 value, emotion 7 and an unknown Usage (rows 8–11)."""
    rows = [(e, pixel_text(fer_pixels(k)), u) for k, (e, u) in enumerate(FER_ROWS)]
    if bad_rows:
        short = " ".join(pixel_text(fer_pixels(8)).split()[:-1])
        big = pixel_text(fer_pixels(9)).rsplit(" ", 1)[0] + " 256"
        rows += [("1", short, "Training"), ("1", big, "Training")]
        rows += [("7", pixel_text(fer_pixels(10)), "Training")]
        rows += [("2", pixel_text(fer_pixels(11)), "Validation")]
    order = [0, 1, 2]
    if header is not None:
        names = [c.strip() for c in header.split(",")]
        order = [names.index(c) for c in ("emotion", "pixels", "Usage")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        if header is not None:
            handle.write(header + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            out = [""] * 3
            for value, position in zip(row, order, strict=True):
                out[position] = value
            writer.writerow(out)
    return path


#: FERPlus votes for the 8 FER rows (neutral … contempt, unknown, NF) and the expected outcome.
FERPLUS_VOTES = [
    ([0, 0, 0, 0, 8, 1, 1, 0, 0, 0], "anger"),  # clear anger (col 4)
    ([0, 0, 0, 0, 0, 5, 5, 0, 0, 0], "unknown"),  # 50/50 tie: not > half
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "unknown"),  # all single votes zeroed
    ([2, 7, 0, 0, 0, 0, 0, 0, 1, 0], "happiness"),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "nf"),  # not a face
    ([0, 0, 0, 0, 0, 0, 0, 6, 2, 2], "contempt"),
    ([0, 0, 0, 6, 0, 0, 4, 0, 0, 0], "sadness"),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "empty"),  # empty Image name
]


def make_ferplus(root: Path) -> Path:
    """``fer2013.csv`` (8 good rows, no bad ones) and ``fer2013new.csv`` with the votes above."""
    make_fer2013(root / "fer2013" / "fer2013.csv", bad_rows=False)
    lines = [
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    ]
    for k, ((_, usage), (votes, outcome)) in enumerate(zip(FER_ROWS, FERPLUS_VOTES, strict=True)):
        name = "" if outcome == "empty" else f"fer{k:07d}.png"
        lines.append(",".join([usage, name, *map(str, votes)]))
    (root / "FERPlus").mkdir(parents=True)
    (root / "FERPlus" / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    return root


# --- CK+ ------------------------------------------------------------------------------------------

#: (subject/sequence, number of frames, emotion text or None, FACS rows)
CK_SEQUENCES = [
    ("S005/001", 3, "3.0000000e+00", [(9, 4), (17, 0)]),  # disgust
    ("S010/002", 4, "5.0000000e+00", [(6, 3), (12, 4), (25, 0)]),  # happy
    ("S011/001", 2, "2.0000000e+00", [(14, 2)]),  # contempt
    ("S014/003", 2, None, []),  # no emotion label: not used
    ("S022/001", 2, "not a number", []),  # malformed emotion file
    ("S026/004", 3, "7.0000000e+00", [(1, 2), (2, 2), (5, 1), (27, 0)]),  # surprise
]


def ck_points(sequence: str, frame: int) -> np.ndarray:
    subject = int(sequence[1:4])
    return face_points(100 + subject + frame, 80 + frame, 300)


def make_ckplus(root: Path, *, nested: bool = False) -> Path:
    """A CK+ copy (``nested``: the zips extracted one level deeper)."""
    emotion = root / ("Emotion_labels/Emotion" if nested else "Emotion")
    landmarks = root / ("Landmarks/Landmarks" if nested else "Landmarks")
    facs, images = root / "FACS", root / "cohn-kanade-images"
    for sequence, frames, label, aus in CK_SEQUENCES:
        stem = sequence.replace("/", "_")
        for frame in range(1, frames + 1):
            name = f"{stem}_{frame:08d}"
            write_image(images / sequence / f"{name}.png", image(120, 160, value=frame * 10))
            points_file = landmarks / sequence / f"{name}_landmarks.txt"
            points_file.parent.mkdir(parents=True, exist_ok=True)
            if not (sequence == "S026/004" and frame == frames):  # the peak's file is missing
                rows = [f"   {x:.7e}   {y:.7e}" for x, y in ck_points(sequence, frame)]
                points_file.write_text("\n".join(rows) + "\n")
        peak = f"{stem}_{frames:08d}"
        if label is not None:
            (emotion / sequence).mkdir(parents=True, exist_ok=True)
            (emotion / sequence / f"{peak}_emotion.txt").write_text(f"   {label}\n")
        (facs / sequence).mkdir(parents=True, exist_ok=True)
        rows = [f"   {au:.7e}   {level:.7e}" for au, level in aus]
        (facs / sequence / f"{peak}_facs.txt").write_text("\n".join(rows) + "\n")
    return root
