import numpy as np
import pytest

from aubench.data.fer2013 import (
    FER2013_TO_CANONICAL,
    FERPLUS_TO_CANONICAL,
    FERPLUS_VOTES,
    ferplus_majority,
)
from aubench.data.parsing import MALFORMED
from aubench.data.registry import open_dataset
from aubench.data.table import DatasetFormatError, EmptySplitError, SkippedRowsWarning
from aubench.faces.codebook import EXPRESSIONS, Expression
from tests.dataset_trees import FER_ROWS, fer_pixels, make_fer2013, make_ferplus
from tests.dataset_trees import FERPLUS_VOTES as VOTES

BAD = "malformed row (emotion not 0-6 or unknown Usage)"
PIXELS = "malformed pixels (not 2304 values 0-255)"


def test_label_tables():
    fer = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    canonical = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert [EXPRESSIONS[FER2013_TO_CANONICAL[i]] for i in range(7)] == canonical and len(fer) == 7
    plus = [EXPRESSIONS[FERPLUS_TO_CANONICAL[i]] for i in range(8)]
    assert plus == [v if v != "contempt" else "contempt" for v in FERPLUS_VOTES[:8]]


def ids_of(data):
    return [data.ids[i].as_py() for i in range(len(data))]


@pytest.mark.parametrize(
    ("file_name", "header"),
    [
        ("fer2013.csv", "emotion,pixels,Usage"),
        ("fer2013.csv", None),
        ("icml_face_data.csv", "emotion, Usage, pixels"),
    ],
)
def test_fer2013_variants_splits_pixels_and_bad_rows(tmp_path, file_name, header):
    make_fer2013(tmp_path / file_name, header=header)
    with pytest.warns(SkippedRowsWarning, match="skipped 4 rows"):
        splits = {
            s: open_dataset(f"fer2013:{tmp_path}", s, size=48, normalize=False)
            for s in ("train", "val", "test")
        }
    assert {s: ids_of(d) for s, d in splits.items()} == {
        "train": ["fer0000000", "fer0000001", "fer0000002", "fer0000003"],
        "val": ["fer0000004", "fer0000005"],
        "test": ["fer0000006", "fer0000007"],
    }
    labels = np.concatenate([d.labels for d in splits.values()])
    assert labels.tolist() == [FER2013_TO_CANONICAL[int(e)] for e, _ in FER_ROWS]
    assert labels.tolist() == [4, 5, 3, 1, 6, 2, 0, 1]
    assert splits["train"].skipped == {PIXELS: 2, BAD: 2}
    first_data_line = 1 if header is None else 2
    assert splits["train"].table.skipped.examples[BAD] == [
        f"{tmp_path / file_name}:{first_data_line + n}" for n in (10, 11)
    ]
    sample = splits["val"][1]
    np.testing.assert_allclose(sample["image"][0].numpy() * 255, fer_pixels(5), atol=1e-4)
    np.testing.assert_array_equal(sample["image"][0], sample["image"][2])  # grey → RGB
    assert splits["val"].native_image(1).shape == (48, 48, 3)


def test_fer2013_train_csv_without_usage_is_all_train(tmp_path):
    rows = ["emotion,pixels"] + [f"{k % 7},{' '.join(['7'] * 2304)}" for k in range(5)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    assert len(open_dataset(f"fer2013:{tmp_path}", "train", val_fraction=0.2)) == 4
    with pytest.raises(
        EmptySplitError,
        match=rf"fer2013 \({tmp_path}/train.csv\): split 'test' has no rows; rows listed per "
        r"split: train 4, val 1, test 0",
    ):
        open_dataset(f"fer2013:{tmp_path}/train.csv", "test", val_fraction=0.2)


def test_fer2013_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match=r"has no fer2013\.csv"):
        open_dataset(f"fer2013:{tmp_path}", "train")
    (tmp_path / "test.csv").write_text("pixels\n" + " ".join(["1"] * 2304) + "\n")
    with pytest.raises(DatasetFormatError, match="expected columns emotion,pixels"):
        open_dataset(f"fer2013:{tmp_path}/test.csv", "train")


def reference_majority(votes):
    """microsoft/FERPlus src/ferplus.py `_process_data` + the argmax filter, transcribed."""
    emotion_raw = [float(v) for v in votes]
    size = len(emotion_raw)
    for i in range(size):
        if emotion_raw[i] < 1.0 + np.finfo(float).eps:
            emotion_raw[i] = 0.0
    total = sum(emotion_raw)
    emotion = [0.0] * size
    maxval = max(emotion_raw)
    if maxval > 0.5 * total:
        emotion[int(np.argmax(emotion_raw))] = maxval
    else:
        emotion = [0.0] * size
        emotion[-2] = 1.0
    return int(np.argmax(emotion))


def test_ferplus_majority_matches_the_reference_code():
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 6, size=(2000, 10)) * (rng.random((2000, 10)) < 0.4)
    votes = np.concatenate([votes, [row for row, _ in VOTES]])
    np.testing.assert_array_equal(ferplus_majority(votes), [reference_majority(v) for v in votes])


def test_ferplus_labels_exclusions_and_pixels(tmp_path):
    make_ferplus(tmp_path)
    train = open_dataset(f"ferplus:{tmp_path}", "train", size=48, normalize=False)
    val = open_dataset(f"ferplus:{tmp_path}", "val", size=48, normalize=False)
    test = open_dataset(f"ferplus:{tmp_path}", "test")
    assert train.num_classes == 8
    assert ids_of(train) == ["fer0000000", "fer0000003"] and train.labels.tolist() == [4, 1]
    assert ids_of(val) == ["fer0000005"] and val.labels.tolist() == [Expression.CONTEMPT]
    assert ids_of(test) == ["fer0000006"] and test.labels.tolist() == [Expression.SADNESS]
    assert train.excluded == {
        "no majority or unknown majority": 2,
        "not a face (NF majority)": 1,
        "not a face (empty Image name)": 1,
    }
    np.testing.assert_allclose(val[0]["image"][1].numpy() * 255, fer_pixels(5), atol=1e-4)
    with pytest.raises(
        EmptySplitError, match=r"split 'val' has no rows \(excluded by the protocol: .*contempt"
    ):
        open_dataset(f"ferplus:{tmp_path}", "val", num_classes=7)


def test_ferplus_malformed_vote_rows_and_missing_files(tmp_path):
    make_ferplus(tmp_path)
    votes = tmp_path / "FERPlus" / "fer2013new.csv"
    lines = votes.read_text().splitlines()
    lines[1] = lines[1].replace(",8,", ",x,")
    lines.append("Training,fer0000099.png,0,9,0,0,0,0,0,0,0,0")  # no pixel row 8
    lines.append("Training,fer0000100.png,0,9")  # too few fields
    votes.write_text("\n".join(lines) + "\n")
    with pytest.warns(SkippedRowsWarning, match="skipped 3 rows"):
        train = open_dataset(f"ferplus:{tmp_path}", "train")
    assert train.skipped == {
        "malformed row (vote not a count or unknown Usage)": 1,
        "no pixels for the row in fer2013.csv": 1,
        MALFORMED: 1,
    }
    assert ids_of(train) == ["fer0000003"]
    with pytest.raises(DatasetFormatError, match=r"has no fer2013new\.csv"):
        open_dataset(f"ferplus:{tmp_path / 'fer2013'}", "train")
