import numpy as np
import pytest

from aubench.data.affectnet import AFFECTNET_TO_CANONICAL
from aubench.data.parsing import MALFORMED
from aubench.data.registry import open_dataset
from aubench.data.table import DatasetFormatError, SkippedRowsWarning
from aubench.faces.codebook import Expression
from tests.dataset_trees import dot_centre, make_affectnet_csv, make_affectnet_npy

CSV_SKIPS = {
    MALFORMED: 1,
    "malformed face box (non-positive or not a number)": 1,
    "malformed landmarks (row kept, landmarks NaN)": 1,
    "missing image file": 1,
}


def test_label_table():
    names = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
    assert [Expression(AFFECTNET_TO_CANONICAL[i]).name.lower() for i in range(8)] == names


@pytest.fixture(scope="module")
def csv_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet")
    return root, make_affectnet_csv(root)


def open_csv(root, split, **kwargs):
    with pytest.warns(SkippedRowsWarning):
        return open_dataset(f"affectnet:{root}", split, **{"val_fraction": 0.2, **kwargs})


def ids_of(data):
    return [data.ids[i].as_py() for i in range(len(data))]


def test_csv_release_protocols_counts_and_labels(csv_release):
    root, truth = csv_release
    seven = [open_csv(root, s) for s in ("train", "val")]
    assert sum(map(len, seven)) == 7 + 2 + 1  # ids 0-6, two more happy rows, badlm.jpg
    excluded = {  # over both files, whatever the split asked for
        "AffectNet id 8 (none)": 1,
        "AffectNet id 9 (uncertain)": 1,
        "AffectNet id 10 (non-face)": 1,
        "contempt (7-class protocol)": 1,
    }
    assert seven[0].num_classes == 7 and seven[0].excluded == excluded
    eight = [open_csv(root, s, num_classes=8) for s in ("train", "val")]
    assert sum(map(len, eight)) == 11 and 7 in np.concatenate([d.labels for d in eight])
    for data in eight:
        for rel, label in zip(ids_of(data), data.labels, strict=True):
            if rel in truth:
                assert label == AFFECTNET_TO_CANONICAL[truth[rel][2]]
    test = open_csv(root, "test")  # validation.csv has no header
    assert ids_of(test) == ["200/val0.jpg", "200/val1.jpg"]
    assert test.labels.tolist() == [4, 0]
    assert test.excluded == excluded
    assert seven[0].skipped == CSV_SKIPS
    assert seven[0].table.skipped.examples[MALFORMED] == [
        f"{root}/Manually_Annotated_file_lists/training.csv:14"
    ]


def test_csv_landmarks_move_into_the_crop_and_stay_on_the_drawn_dot(csv_release):
    root, truth = csv_release
    data = open_csv(root, "train", num_classes=8, size=45, normalize=False)
    rel = "103/img3.jpg"
    index = ids_of(data).index(rel)
    (x, y, w, h), points, _ = truth[rel]
    assert data.table.boxes[index].tolist() == [x, y, x + w, y + h]
    np.testing.assert_allclose(data.native_landmarks(index), points - [x, y], atol=0.01)
    sample = data[index]
    nose = sample["landmarks"][30].numpy()
    np.testing.assert_allclose(nose, ((points[30] - [x, y]) + 0.5) * 0.5 - 0.5, atol=0.01)
    pixels = sample["image"].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(dot_centre(pixels, nose, window=4), nose, atol=0.35)


def test_malformed_landmarks_keep_the_image_with_nan_landmarks(csv_release):
    root, _ = csv_release
    data = open_csv(root, "train", num_classes=8, val_fraction=0.01)
    index = ids_of(data).index("997/badlm.jpg")
    assert np.isnan(data[index]["landmarks"].numpy()).all() and data[index]["label"] == 6


def test_npy_release(tmp_path):
    truth = make_affectnet_npy(tmp_path)
    with pytest.warns(SkippedRowsWarning) as caught:
        train = open_dataset(
            f"affectnet:{tmp_path}?release=npy", "train", num_classes=8, val_fraction=0.2
        )
        val = open_dataset(f"affectnet:{tmp_path}", "val", num_classes=8, val_fraction=0.2)
        test = open_dataset(f"affectnet:{tmp_path}", "test", size=224, normalize=False)
    assert "missing annotation (_exp.npy): 1" in str(caught[0].message)
    assert sorted(ids_of(train) + ids_of(val)) == sorted(
        ["train_set/0", "train_set/1", "train_set/2", "train_set/3", "train_set/5", "train_set/91"]
    )
    assert train.excluded == {"AffectNet id 9 (uncertain)": 1}
    assert train.skipped == {
        "missing annotation (_exp.npy)": 1,
        "missing or malformed landmarks (row kept, landmarks NaN)": 1,
    }
    assert ids_of(test) == ["val_set/0", "val_set/1"] and test.labels.tolist() == [3, 5]
    np.testing.assert_allclose(test[1]["landmarks"].numpy(), truth["val_set/1"][1], atol=1e-4)
    both = {
        **dict(zip(ids_of(train), train.labels, strict=True)),
        **dict(zip(ids_of(val), val.labels, strict=True)),
    }
    assert both == {
        k: AFFECTNET_TO_CANONICAL[e]
        for k, (e, _) in truth.items()
        if k.startswith("train") and e != 9
    }
    holder = train if "train_set/91" in ids_of(train) else val
    index = ids_of(holder).index("train_set/91")
    assert np.isnan(holder[index]["landmarks"].numpy()).all()


def test_layout_errors(tmp_path):
    with pytest.raises(
        DatasetFormatError, match="neither Manually_Annotated_file_lists/ nor train_set/"
    ):
        open_dataset(f"affectnet:{tmp_path}", "train")
    (tmp_path / "Manually_Annotated_file_lists").mkdir()
    with pytest.raises(DatasetFormatError, match="no image folder"):
        open_dataset(f"affectnet:{tmp_path}", "train")
    (tmp_path / "Manually_Annotated_Images").mkdir()
    with pytest.raises(DatasetFormatError, match=r"no training\.csv or validation\.csv"):
        open_dataset(f"affectnet:{tmp_path}", "train")
    with pytest.raises(ValueError, match="release must be"):
        open_dataset(f"affectnet:{tmp_path}?release=hdf5", "train")
