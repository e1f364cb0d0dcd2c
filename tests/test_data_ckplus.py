import numpy as np
import pytest

from aubench.data.ckplus import CKPLUS_TO_CANONICAL
from aubench.data.registry import open_dataset
from aubench.data.table import DatasetFormatError, SkippedRowsWarning
from aubench.faces.codebook import EXPRESSIONS
from tests.dataset_trees import ck_points, make_ckplus

NO_LANDMARKS = "missing or malformed landmark file (frame kept, landmarks NaN)"


def test_label_table():
    ck = ["neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert [EXPRESSIONS[CKPLUS_TO_CANONICAL[i]] for i in range(8)] == ck


def open_ck(root, split, options="", **kwargs):
    with pytest.warns(SkippedRowsWarning, match="malformed emotion file: 1"):
        return open_dataset(f"ckplus:{root}{options}", split, **kwargs)


def all_items(root, options=""):
    data = open_ck(root, "all", options)
    return {data.ids[i].as_py(): i for i in range(len(data))}, data


@pytest.mark.parametrize("nested", [False, True])
def test_peak_frames_labels_landmarks_and_aus(tmp_path, nested):
    make_ckplus(tmp_path, nested=nested)
    items, data = all_items(tmp_path)
    assert sorted(items) == [
        "S005_001_00000003",
        "S010_002_00000004",
        "S011_001_00000002",
        "S026_004_00000003",
    ]
    labels = {k: EXPRESSIONS[data.labels[i]] for k, i in items.items()}
    assert labels == {
        "S005_001_00000003": "disgust",
        "S010_002_00000004": "happiness",
        "S011_001_00000002": "contempt",
        "S026_004_00000003": "surprise",
    }
    assert data.num_classes == 8
    np.testing.assert_allclose(
        data.native_landmarks(items["S010_002_00000004"]), ck_points("S010/002", 4), atol=1e-4
    )
    assert np.isnan(data.native_landmarks(items["S026_004_00000003"])).all()
    assert data.skipped == {"malformed emotion file": 1, NO_LANDMARKS: 1}
    numbers = data.table.attrs["au_numbers"]
    assert numbers == [1, 2, 5, 6, 9, 12, 14, 17, 25, 27]
    sample = data[items["S005_001_00000003"]]
    assert [numbers[j] for j in np.flatnonzero(sample["aus"].numpy())] == [9, 17]
    assert sample["au_intensity"].tolist() == [0, 0, 0, 0, 4, 0, 0, 0, 0, 0]
    assert sample["landmarks"].shape == (68, 2) and sample["image"].shape == (3, 112, 112)


def test_last_frames_and_neutral_first_frames(tmp_path):
    make_ckplus(tmp_path)
    items, data = all_items(tmp_path, "?frames=2,neutral=true")
    happy = [k for k in sorted(items) if k.startswith("S010")]
    assert happy == ["S010_002_00000001", "S010_002_00000003", "S010_002_00000004"]
    assert [EXPRESSIONS[data.labels[items[k]]] for k in happy] == [
        "neutral",
        "happiness",
        "happiness",
    ]
    assert not data[items["S010_002_00000001"]]["aus"].any()
    assert data[items["S010_002_00000003"]]["aus"].sum() == 3
    assert len(items) == 4 + 4 + 3  # two frames per sequence + a neutral (S011 has only 2 frames)


def test_subject_independent_folds_and_validation(tmp_path):
    make_ckplus(tmp_path)
    subjects = lambda d: {d.ids[i].as_py()[:4] for i in range(len(d))}  # noqa: E731
    for fold, expected in ((0, {"S005", "S026"}), (1, {"S010"}), (2, {"S011"})):
        options = f"?folds=3,fold={fold}"
        test = open_ck(tmp_path, "test", options)
        train = open_ck(tmp_path, "train", options, val_fraction=0.3)
        val = open_ck(tmp_path, "val", options, val_fraction=0.3)
        assert subjects(test) == expected
        assert not subjects(train) & subjects(val)
        assert not subjects(test) & (subjects(train) | subjects(val))
        assert len(train) + len(val) + len(test) == 4
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.2"):
        open_dataset(f"ckplus:{tmp_path}?folds=3,fold=3", "test")


def test_layout_errors(tmp_path):
    (tmp_path / "cohn-kanade-images").mkdir()
    with pytest.raises(DatasetFormatError, match="no Emotion/ folder"):
        open_dataset(f"ckplus:{tmp_path}", "test")
    (tmp_path / "Emotion").mkdir()
    with pytest.raises(DatasetFormatError, match=r"no usable \*_emotion\.txt"):
        open_dataset(f"ckplus:{tmp_path}", "test")
