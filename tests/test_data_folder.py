import csv

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aubench.data.batch import HeatmapCollate
from aubench.data.folder import LANDMARK_COLUMNS
from aubench.data.registry import open_dataset
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.data.table import (
    DatasetFormatError,
    EmptySplitError,
    ImageReadError,
    SkippedRowsWarning,
)
from aubench.faces.landmarks import rescale_landmarks
from tests.dataset_trees import face_points, image, write_corrupt, write_image


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    faces = SyntheticFaces(14, size=64, split="test", seed=3, num_classes=8)
    return faces, export_synthetic(
        faces, tmp_path_factory.mktemp("export") / "faces", progress=False
    )


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_reads_a_synthetic_export_exactly(export):
    faces, folder = export
    data = open_dataset(f"folder:{folder}", "all", size=64)
    assert len(data) == 14 and data.num_classes == 8 and data.landmark_source == "dataset"
    assert data.labels.tolist() == faces.labels
    for index in (0, 5, 13):
        ours, theirs = data[index], faces[index]
        assert ours["id"] == f"images/{theirs['id']}.png"
        assert ours["label"] == theirs["label"]
        torch.testing.assert_close(ours["image"], theirs["image"])  # PNG is lossless
        torch.testing.assert_close(ours["landmarks"], theirs["landmarks"], atol=5e-4, rtol=0)


def test_resizing_moves_landmarks_with_the_pixels(export):
    faces, folder = export
    data = open_dataset(f"folder:{folder}", "all", size=40, normalize=False)
    raw = faces.render(2)
    expected = cv2.resize(raw.image, (40, 40), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(data[2]["image"].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)
    moved = rescale_landmarks(torch.from_numpy(raw.landmarks)[None], 40 / 64, 40 / 64)[0]
    torch.testing.assert_close(data[2]["landmarks"], moved, atol=5e-4, rtol=0)


def test_batches_with_heatmaps(export):
    _, folder = export
    data = open_dataset(f"folder:{folder}", "all", size=48)
    batch = next(iter(DataLoader(data, batch_size=5, collate_fn=HeatmapCollate())))
    assert batch["image"].shape == (5, 3, 48, 48) and batch["heatmap"].shape == (5, 48, 48)
    assert batch["valid"].tolist() == [label != 0 for label in batch["label"].tolist()]


def test_plain_csv_with_names_or_ids_and_no_landmarks(tmp_path):
    for k in range(4):
        write_image(tmp_path / "pics" / f"{k}.jpg", image(30, 40, value=40 * k))
    write_csv(
        tmp_path / "my.csv",
        ["image", "label", "note"],
        [
            ["pics/0.jpg", "Happiness", "x"],
            ["pics/1.jpg", " 6 ", "y"],
            ["pics/2.jpg", "anger", ""],
            ["pics/3.jpg", "3", "z"],
        ],
    )
    data = open_dataset(f"folder:{tmp_path}/my.csv", "all", size=20)
    assert data.labels.tolist() == [1, 6, 4, 3] and data.num_classes == 7
    assert data[1]["image"].shape == (3, 20, 20)
    assert torch.isnan(data[1]["landmarks"]).all() and data.landmark_source == "none"


def test_unsplit_folder_carves_disjoint_test_val_and_train(export):
    _, folder = export
    every = open_dataset(f"folder:{folder}", "all")
    test = open_dataset(f"folder:{folder}", "test")
    train = open_dataset(f"folder:{folder}", "train", val_fraction=0.25, seed=1)
    val = open_dataset(f"folder:{folder}", "val", val_fraction=0.25, seed=1)
    ids = lambda d: {d.ids[i].as_py() for i in range(len(d))}  # noqa: E731
    assert len(every) == 14 and len(test) == 3 and len(val) == 3 and len(train) == 8
    assert ids(train) | ids(val) | ids(test) == ids(every)
    assert not ids(train) & ids(val) and not (ids(train) | ids(val)) & ids(test)
    # the test carve does not depend on the training seed
    assert ids(open_dataset(f"folder:{folder}", "test", seed=5)) == ids(test)


def test_split_column_and_split_subfolders(tmp_path, export):
    _, folder = export
    with open(folder / "labels.csv") as handle:
        header, *rows = list(csv.reader(handle))
    splits = ["train", "val", "test"] * 5
    body = [[f"faces/{r[0]}", *r[1:], s] for r, s in zip(rows, splits, strict=False)]
    write_csv(folder.parent / "with_split.csv", [*header, "split"], body)
    data = open_dataset(f"folder:{folder.parent}/with_split.csv", "val")
    assert len(data) == 5 and data.table.has_val
    for split, n in (("train", 6), ("val", 3)):
        export_synthetic(SyntheticFaces(n, 64, split, 0), tmp_path / split, progress=False)
    train = open_dataset(f"folder:{tmp_path}", "train")
    assert len(train) == 6 and train[0]["id"] == "train/images/synthetic-train-000000.png"
    assert len(open_dataset(f"folder:{tmp_path}", "val")) == 3
    with pytest.raises(
        EmptySplitError,
        match=rf"folder \({tmp_path}\): split 'test' has no rows; rows listed per split: "
        r"train 6, val 3, test 0$",
    ):
        open_dataset(f"folder:{tmp_path}", "test")


def test_landmark_cells_empty_or_infinite_mean_unknown(tmp_path):
    points = face_points(5, 5, 30)
    good = [f"{v:.3f}" for v in (*points[:, 0], *points[:, 1])]
    write_image(tmp_path / "a.png", image(40, 40))
    write_image(tmp_path / "b.png", image(40, 40))
    write_image(tmp_path / "c.png", image(40, 40))
    empty = [*good[:10], "", *good[11:]]
    inf = [*good[:3], "inf", *good[4:]]
    header = ["image", "label", *LANDMARK_COLUMNS]
    write_csv(
        tmp_path / "labels.csv",
        header,
        [["a.png", 1, *good], ["b.png", 2, *empty], ["c.png", 3, *inf]],
    )
    data = open_dataset(f"folder:{tmp_path}", "all", size=40)
    torch.testing.assert_close(data[0]["landmarks"], torch.from_numpy(points), atol=5e-4, rtol=0)
    assert torch.isnan(data[1]["landmarks"]).all() and torch.isnan(data[2]["landmarks"]).all()


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (
            ["image", "label"],
            ["a.png", "hapiness"],
            r"labels.csv:3: column 'label': expected a canonical id 0-7 or an expression name, "
            r"got 'hapiness'",
        ),
        (["image", "label"], ["a.png", "8"], r"labels.csv:3: column 'label'.*got '8'"),
        (
            ["image", "label", "expression"],
            ["a.png", "1", "fear"],
            r"labels.csv:3: column 'expression': does not name the same",
        ),
        (
            ["image", "label", "split"],
            ["a.png", "1", "dev"],
            r"labels.csv:3: column 'split': expected train, val or test, got 'dev'",
        ),
        (
            ["image", "label", *LANDMARK_COLUMNS],
            ["a.png", "1", *["1"] * 135, "x"],
            r"labels.csv:3: column 'y67': expected a number",
        ),
        (["image", "label"], ["a.png", "1", "extra"], r"labels.csv:3"),
        (["image", "labels"], ["a.png", "1"], r"missing column\(s\) \['label'\]"),
        (["image", "label", "x0"], ["a.png", "1", "3"], r"all of x0..x67,y0..y67 or none"),
    ],
)
def test_bad_values_are_errors_naming_file_line_column_and_value(tmp_path, header, row, message):
    good = ["b.png", "0"] + [""] * (len(header) - 2)
    if "split" in header:
        good[2] = "train"
    if "expression" in header:
        good[2] = "neutral"
    write_csv(tmp_path / "labels.csv", header, [good, row])
    with pytest.raises(DatasetFormatError, match=message):
        open_dataset(f"folder:{tmp_path}", "all")


def test_duplicate_images_and_bad_paths(tmp_path):
    write_csv(
        tmp_path / "labels.csv", ["image", "label"], [["a.png", 1], ["b.png", 2], ["a.png", 3]]
    )
    with pytest.raises(
        DatasetFormatError,
        match=r"'a.png' is listed more than once \(\S*labels.csv:2 'a.png', \S*labels.csv:4 'a",
    ):
        open_dataset(f"folder:{tmp_path}", "all")
    with pytest.raises(DatasetFormatError, match=f"{tmp_path}/none does not exist: expected a CSV"):
        open_dataset(f"folder:{tmp_path}/none", "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match=r"has no labels\.csv"):
        open_dataset(f"folder:{tmp_path}/empty", "all")


def test_missing_images_are_skipped_and_corrupt_ones_raise_naming_the_file(tmp_path):
    write_image(tmp_path / "a.png", image(20, 20))
    write_corrupt(tmp_path / "bad.png")
    rows = [["a.png", 1], ["gone.png", 2], ["bad.png", 3], ["gone2.png", 0]]
    write_csv(tmp_path / "labels.csv", ["image", "label"], rows)
    with pytest.warns(
        SkippedRowsWarning, match=r"skipped 2 rows — missing image file: 2 \(e.g. .*gone.png"
    ):
        data = open_dataset(f"folder:{tmp_path}", "all")
    assert len(data) == 2 and data.skipped == {"missing image file": 2}
    assert data[0]["label"] == 1
    with pytest.raises(ImageReadError, match=f"cannot decode image file {tmp_path}/bad.png"):
        data[1]
