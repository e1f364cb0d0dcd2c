import cv2
import numpy as np
import pytest

from aubench.data.parsing import MALFORMED
from aubench.data.rafdb import RAF_TO_CANONICAL
from aubench.data.registry import open_dataset
from aubench.data.table import DatasetFormatError, EmptySplitError, SkippedRowsWarning
from aubench.faces.codebook import Expression
from tests.dataset_trees import RAF_ROWS, make_rafdb

BAD_ROW = "malformed row (label not 1-7 or name not train_/test_)"


def open_raf(root, split, options="", **kwargs):
    with pytest.warns(SkippedRowsWarning, match="skipped 3 rows"):
        return open_dataset(f"rafdb:{root}{options}", split, **kwargs)


def test_label_table_matches_the_raf_readme():
    names = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger"}
    names[7] = "neutral"
    assert {raf: Expression(c).name.lower() for raf, c in RAF_TO_CANONICAL.items()} == names


def test_official_splits_labels_ids_and_malformed_rows(tmp_path):
    make_rafdb(tmp_path)
    test = open_raf(tmp_path, "test", normalize=False)
    assert [test.ids[i].as_py() for i in range(len(test))] == [
        "test_0001",
        "test_0002",
        "test_0003",
    ]
    assert test.labels.tolist() == [1, 0, 2]  # RAF 4 happiness, 7 neutral, 1 surprise
    assert test.skipped == {MALFORMED: 1, BAD_ROW: 2}
    assert test.table.skipped.examples[BAD_ROW] == [
        f"{tmp_path}/basic/EmoLabel/list_patition_label.txt:6",
        f"{tmp_path}/basic/EmoLabel/list_patition_label.txt:7",
    ]
    assert test.table.skipped.examples[MALFORMED] == [
        f"{tmp_path}/basic/EmoLabel/list_patition_label.txt:4"
    ]
    sample = test[0]
    assert sample["id"] == "test_0001" and sample["label"] == 1
    assert sample["image"].shape == (3, 112, 112)
    assert np.isnan(sample["landmarks"].numpy()).all() and test.landmark_source == "none"
    assert test.num_classes == 7


def test_validation_is_a_seeded_stratified_carve_of_train(tmp_path):
    make_rafdb(tmp_path)
    train = open_raf(tmp_path, "train", val_fraction=0.2)
    val = open_raf(tmp_path, "val", val_fraction=0.2)
    train_ids = {train.ids[i].as_py() for i in range(len(train))}
    val_ids = {val.ids[i].as_py() for i in range(len(val))}
    assert len(val_ids) == 2 and len(train_ids) == 8 and not train_ids & val_ids
    assert train_ids | val_ids == {n[:-4] for n, _ in RAF_ROWS if n.startswith("train")}
    again = open_raf(tmp_path, "val", val_fraction=0.2)
    assert [again.ids[i].as_py() for i in range(2)] == [val.ids[i].as_py() for i in range(2)]
    other = [open_raf(tmp_path, "val", val_fraction=0.2, seed=s) for s in range(1, 6)]
    assert any({o.ids[i].as_py() for i in range(2)} != val_ids for o in other)
    # the two rows of the largest classes (happiness ×3, neutral ×2) go first
    assert set(val.labels.tolist()) <= {1, 0}


def test_aligned_images_are_read_and_resized(tmp_path):
    make_rafdb(tmp_path)
    data = open_raf(tmp_path, "train", val_fraction=0.1, size=50, normalize=False)
    index = [data.ids[i].as_py() for i in range(len(data))].index("train_00003")
    path = tmp_path / "basic/Image/aligned/train_00003_aligned.jpg"
    expected = cv2.resize(
        cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB),
        (50, 50),
        interpolation=cv2.INTER_AREA,
    )
    np.testing.assert_allclose(
        data[index]["image"].permute(1, 2, 0).numpy() * 255, expected, atol=1e-3
    )


def test_original_images_are_cropped_to_the_squared_box(tmp_path):
    make_rafdb(tmp_path)
    data = open_raf(tmp_path, "test", "?images=original", normalize=False)
    # test_0002 is row k=11: box (31, 30)-(91, 70): 60×40, squared to 60×60 about (61, 50)
    index = [data.ids[i].as_py() for i in range(len(data))].index("test_0002")
    assert data.table.boxes[index].tolist() == [31, 20, 91, 80]
    original = cv2.cvtColor(
        cv2.imread(str(tmp_path / "basic/Image/original/test_0002.jpg")), cv2.COLOR_BGR2RGB
    )
    np.testing.assert_array_equal(data.native_image(index), original[20:80, 31:91])
    assert data.fingerprint != open_raf(tmp_path, "test").fingerprint  # other native images


def test_missing_box_and_image_files_are_counted(tmp_path):
    make_rafdb(tmp_path, label_file="list_partition_label.txt")
    (tmp_path / "basic/Annotation/boundingbox/test_0001_boundingbox.txt").unlink()
    (tmp_path / "basic/Annotation/boundingbox/test_0003_boundingbox.txt").write_text("1 2 3\n")
    (tmp_path / "basic/Image/original/test_0002.jpg").unlink()
    with pytest.raises(EmptySplitError) as caught:  # every test row is gone: said at open
        open_dataset(f"rafdb:{tmp_path}/basic?images=original", "test")
    message = str(caught.value)
    assert message.startswith(f"rafdb ({tmp_path}/basic): split 'test' has no rows (skipped: ")
    for reason in (f"{MALFORMED}: 1", f"{BAD_ROW}: 2", "missing face box file: 1"):
        assert reason in message
    assert "malformed face box: 1" in message
    assert f"missing image file: 1 (e.g. {tmp_path}/basic/Image/original/test_0002.jpg)" in message
    assert message.endswith("rows listed per split: train 9, val 1, test 1")


def test_layout_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetFormatError, match=f"{tmp_path}/nothing does not exist"):
        open_dataset(f"rafdb:{tmp_path}/nothing", "train")
    (tmp_path / "basic/Image/aligned").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=r"no EmoLabel/list_patition_label\.txt"):
        open_dataset(f"rafdb:{tmp_path}", "train")
    make_rafdb(tmp_path / "copy")
    for folder in ("aligned", "original"):
        for f in (tmp_path / "copy/basic/Image" / folder).iterdir():
            f.unlink()
        (tmp_path / "copy/basic/Image" / folder).rmdir()
    with pytest.raises(DatasetFormatError, match=r"unzip Image/aligned\.zip"):
        open_dataset(f"rafdb:{tmp_path}/copy", "train")
    with pytest.raises(ValueError, match="must be one of aligned, original, paper, got 'cropped'"):
        open_dataset(f"rafdb:{tmp_path}/copy?images=cropped", "train")
