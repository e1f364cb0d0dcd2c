"""``rafdb``: RAF-DB, basic (single-label) subset, as distributed (archives unzipped).

Layout (``PATH`` is ``RAF-DB/`` or its ``basic/`` folder)::

    basic/EmoLabel/list_patition_label.txt     # sic; list_partition_label.txt is accepted too
    basic/Image/aligned/train_00001_aligned.jpg  # 100×100, aligned by RAF-DB   (images=aligned)
    basic/Image/original/train_00001.jpg         # full images      (images=original, paper)
    basic/Annotation/boundingbox/train_00001_boundingbox.txt   # four numbers, one face box

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
extension (``train_00001``).

Images (the ``images`` option):

- ``aligned`` (default): RAF-DB's own 100×100 aligned faces.
- ``original``: each full image cropped to its face box, squared about its centre (zero-padded
  where it leaves the image). RAF-DB does not document the box file's axis order: ``box_order``
  is ``xyxy`` (``x_min y_min x_max y_max``, how public readers read it; the default) or ``yxyx``
  (how the reference paper's code uses the numbers). Boxes that fall outside their image (by more
  than :data:`BOX_SLACK` of their size; one image-header read per image at open) are skipped and
  counted; when most do, the order is wrong and opening fails saying so.
- ``paper``: the reference paper's 224×224 crops (``basic/Image/our_aligned/`` of Belharbi et
  al., ``dlib/datasets/raf_db.py`` with alignment off), rebuilt on the fly from the original
  image: the four numbers are truncated to non-negative ints ``a b c d``, the box enlarged by 30 %
  (15 % per side), cropped as ``(left, upper, right, lower) = (b, a, d, c)`` with the right edge
  clamped to ``height − 1`` and the lower one to ``width − 1`` (the reference code's swaps, kept),
  then resized to 224×224 with PIL's Lanczos filter. The paper's ``landmarks.txt`` is in this
  frame (its ids ``basic/Image/our_aligned/train_00001.jpg`` match by file stem).

RAF-DB ships no 68-point landmarks (only 5 manual and 37 Face++ points, not read): compute them
with ``aubench landmarks``, or load a ``landmarks.txt`` in the images' frame (one of another frame
is refused at open). Malformed label lines (field count, label outside 1–7, unknown prefix), a
name listed again (the later line) and images whose box file is missing or malformed are skipped
and counted; a name whose path leaves the dataset folder is an error naming ``file:line``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from aubench.data.parsing import read_whitespace, to_ints, to_numbers
from aubench.data.table import (
    CORRUPT_IMAGE_FIX,
    TEST,
    TRAIN,
    DatasetFormatError,
    FaceTable,
    ImageFiles,
    ImageReadError,
    SkipReport,
    canonical_labels,
    leaves_root,
    require_dir,
)
from aubench.faces.codebook import NUM_CLASSES_7
from aubench.landmarks.align import square_boxes

#: RAF-DB label id → canonical id (module docstring table).
RAF_TO_CANONICAL: dict[int, int] = {1: 2, 2: 3, 3: 5, 4: 1, 5: 6, 6: 4, 7: 0}
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")
IMAGE_MODES = ("aligned", "original", "paper")
BOX_ORDERS = ("xyxy", "yxyx")
#: A box "falls outside" its image when it passes an edge by more than this share of its size.
BOX_SLACK = 0.1
#: The reference paper's crops: box enlargement (in all, half per side) and output side.
PAPER_UPSCALE = 0.30
PAPER_SIDE = 224
_EXPECTED = "RAF-DB's basic/ folder with EmoLabel/list_patition_label.txt and Image/aligned/"
_PAPER_HINT = (
    "the reference paper's landmarks.txt for RAF-DB is in the frame of its 224×224 crops: open "
    "the dataset with ?images=paper"
)


class PaperCrops(ImageFiles):
    """RAF-DB original images cut to the reference paper's crops (module docstring), as (224,
    224, 3) uint8 RGB, decoded and resized with PIL as the paper does.

    Args:
        root, paths: the image files, as :class:`~aubench.data.table.ImageFiles`.
        crops: (N, 4) int64 ``left, upper, right, lower`` (PIL's crop box) per image.
    """

    def __init__(self, root: Path, paths: pa.Array, crops: np.ndarray) -> None:
        super().__init__(root, paths)
        self.crops = np.asarray(crops, dtype=np.int64).reshape(-1, 4)

    def read(self, index: int) -> np.ndarray:
        path = self.path(index)
        try:
            with Image.open(path) as image:
                crop = image.convert("RGB").crop(tuple(int(v) for v in self.crops[index]))
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {path}") from None
        except OSError:  # PIL: not an image, truncated, corrupt
            raise ImageReadError(
                f"cannot decode image file {path} (truncated, corrupt or not an image): "
                f"{CORRUPT_IMAGE_FIX}"
            ) from None
        resized = crop.resize((PAPER_SIDE, PAPER_SIDE), resample=Image.Resampling.LANCZOS)
        return np.array(resized, dtype=np.uint8)  # a writable copy

    def content_digest(self) -> bytes:
        """The files' digest (:meth:`ImageFiles.content_digest`) with the crop boxes."""
        return super().content_digest() + self.crops.tobytes()

    def take(self, rows: np.ndarray) -> PaperCrops:
        return PaperCrops(self.root, self.paths.take(pa.array(rows, pa.int64())), self.crops[rows])


def read_rafdb(root: Path, *, images: str = "aligned", box_order: str | None = None) -> FaceTable:
    """Parse RAF-DB basic at ``root`` (see the module docstring); ``images``: ``aligned``,
    ``original`` (cropped to the shipped face box, read in ``box_order``: ``xyxy`` by default or
    ``yxyx``) or ``paper`` (the reference paper's 224×224 crops)."""
    if images not in IMAGE_MODES:
        raise ValueError(f"rafdb images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    if box_order is not None and box_order not in BOX_ORDERS:
        raise ValueError(f"rafdb box_order must be xyxy or yxyx, got {box_order!r}")
    if box_order is not None and images != "original":
        raise ValueError(
            f"rafdb box_order applies to images=original (images={images} "
            + ("reads the boxes as the reference code does)" if images == "paper" else "has none)")
        )
    root = require_dir(root, "rafdb", _EXPECTED)
    base = root / "basic" if (root / "basic").is_dir() else root
    label_file = next((base / f for f in LABEL_FILES if (base / f).is_file()), None)
    if label_file is None:
        raise DatasetFormatError(
            f"rafdb: no {' or '.join(LABEL_FILES)} under {base}; expected {_EXPECTED}"
        )
    folder = "aligned" if images == "aligned" else "original"
    image_dir = base / "Image" / folder
    if not image_dir.is_dir():
        raise DatasetFormatError(
            f"rafdb: {image_dir} does not exist; unzip Image/{folder}.zip into {base / 'Image'}"
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
    repeated = ~bad & names.where(~bad).duplicated(keep="first").to_numpy()
    skipped.add(
        "repeated image name (the later line is skipped)",
        int(repeated.sum()),
        (f"{label_file}:{n}" for n in lines[repeated]),
    )
    keep = ~bad & ~repeated
    kept_names = names[keep].reset_index(drop=True)
    stems = kept_names.str.replace(r"\.[^.]*$", "", regex=True)
    if images == "aligned":
        paths = pa.array("Image/aligned/" + stems + "_aligned.jpg", pa.string())
    else:
        paths = pa.array("Image/original/" + kept_names, pa.string())
    outside = leaves_root(paths)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DatasetFormatError(
            f"{label_file}:{lines[keep][k]}: image name {kept_names[k]!r} leaves the dataset "
            f"folder {base}"
        )
    table = FaceTable(
        name="rafdb",
        root=root,
        source=f"rafdb-{images}",
        ids=pa.array(stems, pa.string()),
        labels=canonical_labels(raw[keep], RAF_TO_CANONICAL),
        splits=np.where(is_train[keep], TRAIN, TEST).astype(np.int8),
        images=ImageFiles(base, paths),
        num_classes=NUM_CLASSES_7,
        default_num_classes=NUM_CLASSES_7,
        has_val=False,
        attrs={} if images == "paper" else {"landmark_frame_hint": _PAPER_HINT},
        frame={"images": images} | ({"box_order": box_order} if box_order else {}),
        skipped=skipped,
    )
    if images == "aligned":
        return table
    table, values = _read_boxes(table, base)
    if images == "paper":
        return _paper_crops(table, values)
    return _original_crops(table, values, box_order or "xyxy")


def _box_file(base: Path, stem: str) -> Path:
    return base / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"


def _read_boxes(table: FaceTable, base: Path) -> tuple[FaceTable, np.ndarray]:
    """The rows with a usable ``Annotation/boundingbox`` file and their four numbers (file
    order); rows whose box file is missing or malformed are skipped (counted)."""
    folder = base / "Annotation" / "boundingbox"
    if not folder.is_dir():
        raise DatasetFormatError(
            f"rafdb: {folder} does not exist; images={table.frame['images']} needs the face "
            "boxes (unzip Annotation/boundingbox.zip)"
        )
    ids = table.ids.to_pylist()
    texts = []
    missing = np.zeros(len(ids), dtype=bool)
    for k, stem in enumerate(ids):  # one small file per image: reading them is the loop
        try:
            texts.append(_box_file(base, stem).read_text(errors="replace"))
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
    for reason, rows in (("missing face box file", missing), ("malformed face box", malformed)):
        where = (_box_file(base, ids[k]) for k in np.flatnonzero(rows))
        table.skipped.add(reason, int(rows.sum()), where)
    keep = np.flatnonzero(~missing & ~malformed)
    return table.take(keep), values[keep]


def _image_sizes(files: ImageFiles) -> np.ndarray:
    """(N, 2) ``width, height`` of each image from its header (−1 where it cannot be read)."""
    sizes = np.full((len(files), 2), -1, dtype=np.int64)
    for k in range(len(files)):
        try:
            with Image.open(files.path(k)) as image:
                sizes[k] = image.size
        except OSError:  # missing or undecodable: reported where it is checked or read
            continue
    return sizes


def _original_crops(table: FaceTable, values: np.ndarray, order: str) -> FaceTable:
    """Attach the squared boxes read in ``order``; boxes outside their image are skipped
    (counted), and most of them outside is an error naming the order to try."""
    boxes = values if order == "xyxy" else values[:, [1, 0, 3, 2]]
    sizes = _image_sizes(table.images)
    known = (sizes >= 0).all(axis=1)
    slack = BOX_SLACK * (boxes[:, 2:] - boxes[:, :2])
    outside = known & (
        (boxes[:, :2] < -slack).any(axis=1) | (boxes[:, 2:] > sizes + slack).any(axis=1)
    )
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        stem = table.ids[k].as_py()
        numbers = " ".join(f"{v:g}" for v in values[k])
        example = (
            f"{_box_file(table.images.root, stem)}: {numbers} read as {order} is outside the "
            f"{sizes[k][0]}×{sizes[k][1]} image {table.images.path(k)}"
        )
        if 2 * outside.sum() > known.sum():
            other = BOX_ORDERS[1 - BOX_ORDERS.index(order)]
            raise DatasetFormatError(
                f"rafdb: {int(outside.sum())} of {int(known.sum())} face boxes fall outside their "
                f"image with box_order={order} (e.g. {example}): the order looks wrong; open with "
                f"?images=original,box_order={other}"
            )
        table.skipped.add(
            f"face box outside the image (box_order={order})", int(outside.sum()), [example]
        )
    keep = np.flatnonzero(~outside)
    table = table.take(keep)
    table.boxes = square_boxes(boxes[keep])
    return table


def _paper_crops(table: FaceTable, values: np.ndarray) -> FaceTable:
    """Swap in :class:`PaperCrops` (the reference code's crop boxes, computed from each image's
    size); rows whose crop is empty after its clamping are skipped (counted)."""
    x0, y0, x1, y1 = np.maximum(values, 0).astype(np.int64).T  # int(max(float(v), 0))
    half_w = ((x1 - x0) * PAPER_UPSCALE / 2.0).astype(np.int64)
    half_h = ((y1 - y0) * PAPER_UPSCALE / 2.0).astype(np.int64)
    width, height = _image_sizes(table.images).T
    crops = np.stack(
        [
            np.maximum(0, y0 - half_h),
            np.maximum(0, x0 - half_w),
            np.minimum(y1 + half_h, height - 1),
            np.minimum(x1 + half_w, width - 1),
        ],
        axis=1,
    )
    known = width >= 0
    empty = known & ((crops[:, 2] <= crops[:, 0]) | (crops[:, 3] <= crops[:, 1]))
    table.skipped.add(
        "empty paper crop (face box outside the image)",
        int(empty.sum()),
        (_box_file(table.images.root, table.ids[int(k)].as_py()) for k in np.flatnonzero(empty)),
    )
    keep = np.flatnonzero(~empty)
    files = table.images.take(keep)
    table = table.take(keep)
    table.images = PaperCrops(files.root, files.paths, crops[keep])
    return table
