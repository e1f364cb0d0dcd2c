"""Bad inputs as users meet them (issue #12): each is one clear error line naming the file, field
and value, or an exclusion counted by reason — and nothing on disk is changed.

Every test builds a miniature tree in the real format (``tests/dataset_trees.py``), opens it the
way the command line does (``open_dataset("NAME:PATH", split)``, then ``dataset[i]``) and checks
the message and that the tree is byte-for-byte what it was.
"""

import csv
import os

import numpy as np
import pytest

from aubench.cli import main
from aubench.data.folder import LANDMARK_COLUMNS
from aubench.data.landmarks_txt import REPEATED
from aubench.data.registry import open_dataset
from aubench.data.table import (
    DatasetFormatError,
    EmptySplitError,
    ImageReadError,
    SkippedRowsWarning,
)
from tests.dataset_trees import (
    dot_centre,
    face_points,
    fer_pixels,
    image,
    make_affectnet_csv,
    make_affectnet_npy,
    make_fer2013,
    make_rafdb,
    make_rafdb_tall,
    paper_crop,
    pixel_text,
    snapshot,
    write_image,
    write_paper_landmarks,
    write_truncated,
)


def write_labels(folder, rows, header=("image", "label")):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([list(header), *rows])
    return folder / "labels.csv"


def one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, message
    return message


# --- 1. corrupt images ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_image_fails_when_read_naming_the_file_and_the_fix(tmp_path, name):
    write_image(tmp_path / "good.png", image(32, 32))
    write_truncated(tmp_path / name, image(32, 32, [(10, 10)]))
    write_labels(tmp_path, [["good.png", 1], [name, 2]])
    before = snapshot(tmp_path)
    data = open_dataset(f"folder:{tmp_path}", "all")  # found when read, not at open
    assert data[0]["label"] == 1
    with pytest.raises(ImageReadError) as caught:
        data[1]
    message = one_line(caught.value)
    assert message.startswith(f"cannot decode image file {tmp_path / name} (truncated")
    assert "replace it with a good copy, or delete it" in message
    # one line and exit status 2 on the command line; the landmark cache still sees an OSError
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OSError)
    assert snapshot(tmp_path) == before
    (tmp_path / name).unlink()  # the fix the message gives: the row is now skipped, counted
    with pytest.warns(SkippedRowsWarning, match=f"missing image file: 1 .*{name}"):
        assert len(open_dataset(f"folder:{tmp_path}", "all")) == 1


# --- 2. messages that name what was really read ---------------------------------------------------


def test_fer2013_without_labels_names_the_file_read_and_what_it_lacks(tmp_path):
    unlabelled = tmp_path / "kaggle" / "fer2013.csv"  # not called test.csv: the message says so
    unlabelled.parent.mkdir()
    unlabelled.write_text("pixels\n" + pixel_text(fer_pixels(0)) + "\n")
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"fer2013:{tmp_path}/kaggle", "train")
    message = one_line(caught.value)
    assert message.startswith(f"fer2013: {unlabelled} has no 'emotion' column (its header: pixels")
    bad = make_fer2013(tmp_path / "bad" / "fer2013.csv", bad_rows=False)
    bad.write_text(bad.read_text().replace("\n0,", "\n9,").replace("\n1,", "\n8,"))
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([lines[0], *(f"7{line[1:]}" for line in lines[1:])]) + "\n")
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"fer2013:{tmp_path}/bad", "train")
    message = one_line(caught.value)
    assert f"fer2013: {bad} has no usable labelled rows: 8 rows" in message
    assert "none with an emotion 0-6" in message and "test.csv" not in message


def test_an_image_listed_twice_names_both_real_lines(tmp_path):
    write_image(tmp_path / "a.png", image(20, 20))
    write_image(tmp_path / "b.png", image(20, 20))
    labels = write_labels(tmp_path, [["a.png", 1], ["b.png", 2], ["./a.png", 3], ["b.png", 4]])
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"folder:{tmp_path}", "all")
    message = one_line(caught.value)  # a.png on lines 2 and 4, not "2, 3" (line 3 is b.png)
    assert message.startswith(
        f"image 'a.png' is listed more than once ({labels}:2 'a.png', {labels}:4 './a.png'); "
        "1 more image(s) are listed twice"
    )
    values = ",".join(["1.5"] * 136)
    other = ",".join(["2.5"] * 136)
    (tmp_path / "l.txt").write_text(f"id,{values}\n\na,{values}\nb,{values}\na,{other}\n")
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"folder:{tmp_path}", "all", landmarks=str(tmp_path / "l.txt"))
    assert snapshot(tmp_path) == before | {"l.txt": snapshot(tmp_path)["l.txt"]}
    write_labels(tmp_path, [["a.png", 1]])
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"folder:{tmp_path}", "all", landmarks=str(tmp_path / "l.txt"))
    assert one_line(caught.value) == (
        f"{tmp_path}/l.txt: id 'a' has two different rows ({tmp_path}/l.txt:3 and "
        f"{tmp_path}/l.txt:5); each face may appear once"
    )


# --- 3. paths outside the dataset folder ----------------------------------------------------------


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "pics/../../x.png"])
def test_image_paths_leaving_the_dataset_folder_are_refused_at_open(tmp_path, path):
    write_image(tmp_path / "data" / "a.png", image(20, 20))
    labels = write_labels(tmp_path / "data", [["a.png", 1], [path, 2]])
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"folder:{tmp_path}/data", "all")
    assert one_line(caught.value).startswith(
        f"{labels}:3: column 'image': the image path leaves the dataset folder {tmp_path}/data, "
        f"got {path!r}"
    )
    assert snapshot(tmp_path) == before


def test_split_folders_may_share_images_but_not_leave_the_dataset(tmp_path):
    write_image(tmp_path / "shared" / "a.png", image(20, 20))
    write_labels(tmp_path / "train", [["../shared/a.png", 1]])  # inside PATH: fine
    assert len(open_dataset(f"folder:{tmp_path}", "train", val_fraction=0.5)) == 1
    write_labels(tmp_path / "test", [["../../a.png", 1]])
    with pytest.raises(DatasetFormatError, match=r"test/labels.csv:2: column 'image': the image"):
        open_dataset(f"folder:{tmp_path}", "train")


def test_affectnet_paths_leaving_the_image_folder_are_refused(tmp_path):
    make_affectnet_csv(tmp_path)
    listed = tmp_path / "Manually_Annotated_file_lists" / "validation.csv"
    listed.write_text(listed.read_text().replace("200/val1.jpg", "../../val1.jpg"))
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"affectnet:{tmp_path}", "test")
    assert one_line(caught.value) == (
        f"{listed}:2: subDirectory_filePath '../../val1.jpg' leaves the image folder"
    )


# --- 4. empty splits ------------------------------------------------------------------------------


def test_an_empty_split_is_said_at_open_with_the_other_splits_sizes(tmp_path, capsys):
    for k in range(5):
        write_image(tmp_path / f"{k}.png", image(20, 20))
    rows = [[f"{k}.png", k % 3, "train" if k < 3 else "val"] for k in range(5)]
    write_labels(tmp_path, rows, header=("image", "label", "split"))
    with pytest.raises(EmptySplitError) as caught:
        open_dataset(f"folder:{tmp_path}", "test")
    assert one_line(caught.value) == (
        f"folder ({tmp_path}): split 'test' has no rows; rows listed per split: train 3, val 2, "
        "test 0"
    )
    write_labels(tmp_path / "none", [])  # header only: the command line says so in one line
    assert main(["landmarks", "--data", f"folder:{tmp_path}/none", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"aubench landmarks: error: folder ({tmp_path}/none): split 'all' has no rows; rows "
        "listed per split: train 0, val 0, test 0\n"
    )


# --- 5. the content fingerprint -------------------------------------------------------------------


def test_content_fingerprint_follows_labels_landmarks_and_image_files(tmp_path):
    for k in range(4):
        write_image(tmp_path / f"{k}.png", image(30, 30, value=10 * k))
    points = [f"{v:.3f}" for v in face_points(2, 2, 24).T.reshape(-1)]
    header = ("image", "label", *LANDMARK_COLUMNS)
    rows = [[f"{k}.png", k, *points] for k in range(4)]
    write_labels(tmp_path, rows, header)

    def key():
        data = open_dataset(f"folder:{tmp_path}", "all")
        return data.content_fingerprint, data.fingerprint

    first, cache_key = key()
    assert len(first) == 16 and key() == (first, cache_key)  # re-opening: the same
    before = snapshot(tmp_path)
    seen = {first}

    def changed():
        now, same_cache_key = key()
        assert now not in seen and same_cache_key == cache_key
        seen.add(now)

    write_labels(tmp_path, [[*rows[0][:1], 5, *rows[0][2:]], *rows[1:]], header)  # relabel
    changed()
    moved = [*points[:5], "9.000", *points[6:]]
    write_labels(tmp_path, [rows[0], [*rows[1][:2], *moved], *rows[2:]], header)  # landmarks
    changed()
    write_labels(tmp_path, rows[:3], header)  # a row removed
    changed()
    write_labels(tmp_path, rows, header)  # back as it was: as it was
    assert key()[0] == first
    stat = (tmp_path / "2.png").stat()
    os.utime(tmp_path / "2.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    changed()
    write_image(tmp_path / "new.png", image(30, 30, value=99))
    os.replace(tmp_path / "new.png", tmp_path / "3.png")  # replaced by another file
    changed()
    write_image(tmp_path / "4.png", image(30, 30))  # an image added
    write_labels(tmp_path, [*rows, ["4.png", 1, *points]], header)
    changed()
    assert set(snapshot(tmp_path)) == set(before) | {"4.png"}  # only the test wrote


def test_content_fingerprint_of_a_pixel_array_hashes_the_pixels(tmp_path):
    path = make_fer2013(tmp_path / "fer2013.csv", bad_rows=False)
    first = open_dataset(f"fer2013:{path}", "train").content_fingerprint
    assert open_dataset(f"fer2013:{path}", "train").content_fingerprint == first
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(",0 ", ",1 ", 1)  # one pixel of the first training face
    path.write_text("\n".join(lines) + "\n")
    assert open_dataset(f"fer2013:{path}", "train").content_fingerprint != first


# --- 6a. the reference paper's RAF-DB crops and landmarks ----------------------------------------

DOT = (50.0, 45.0)  # drawn in every original image, inside every paper crop


def paper_frame(tmp_path):
    """A RAF-DB tree and the paper's landmarks.txt for it (224×224 crop frame, nose on the dot)."""
    make_rafdb(tmp_path / "RAF-DB", dot=DOT)
    ids, faces = [], {}
    names = [f"train_{i:05d}" for i in range(1, 11)] + [f"test_{i:04d}" for i in range(1, 4)]
    for k, name in enumerate(names):
        left, upper, right, lower = paper_crop((20 + k, 30, 80 + k, 70), 160, 120 + 4 * k)
        scale = np.array([224 / (right - left), 224 / (lower - upper)])
        nose = (np.array(DOT) - [left, upper] + 0.5) * scale - 0.5
        points = face_points(20, 20, 180)
        points[30] = nose
        ids.append(f"basic/Image/our_aligned/{name}.jpg")
        faces[name] = points
    txt = write_paper_landmarks(tmp_path / "test" / "landmarks.txt", ids, list(faces.values()))
    return tmp_path / "RAF-DB", txt, faces


def test_paper_landmarks_are_refused_in_another_frame_and_fit_the_paper_crops(tmp_path):
    root, txt, faces = paper_frame(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"rafdb:{root}", "test", landmarks=str(txt))  # aligned: 100×100
    message = one_line(caught.value)
    assert message.startswith(
        f"{txt}: its landmarks are not in the frame of rafdb's images (rafdb-aligned): 3 of 3"
    )
    assert "in a 100×100 image" in message and "open the dataset with ?images=paper" in message
    with pytest.warns(SkippedRowsWarning):
        data = open_dataset(
            f"rafdb:{root}?images=paper", "test", landmarks=str(txt), size=224, normalize=False
        )
    assert data.landmark_source == f"file:{txt}" and len(data) == 3
    for index in range(3):
        sample = data[index]
        assert sample["image"].shape == (3, 224, 224)
        nose = sample["landmarks"][30].numpy()
        np.testing.assert_allclose(nose, faces[sample["id"]][30], atol=1e-4)
        pixels = sample["image"].permute(1, 2, 0).numpy() * 255
        np.testing.assert_allclose(dot_centre(pixels, nose, window=24), nose, atol=1.0)
    assert snapshot(tmp_path) == before


def test_paper_crops_match_the_reference_arithmetic(tmp_path):
    from PIL import Image

    make_rafdb(tmp_path, dot=DOT)
    with pytest.warns(SkippedRowsWarning):
        data = open_dataset(f"rafdb:{tmp_path}?images=paper", "test", normalize=False)
    index = [data.ids[i].as_py() for i in range(len(data))].index("test_0002")  # row k = 11
    original = Image.open(tmp_path / "basic/Image/original/test_0002.jpg").convert("RGB")
    expected = original.crop(paper_crop((31, 30, 91, 70), 160, 164)).resize(
        (224, 224), resample=Image.Resampling.LANCZOS
    )
    np.testing.assert_array_equal(data.native_image(index), np.asarray(expected))
    with pytest.warns(SkippedRowsWarning):
        original = open_dataset(f"rafdb:{tmp_path}?images=original", "test")
    assert data.fingerprint != original.fingerprint


# --- 6b. RAF-DB box order -------------------------------------------------------------------------


def test_box_order_is_an_option_and_boxes_outside_the_image_are_found(tmp_path):
    written = {  # y_min x_min y_max x_max: the other reading, in 60-wide, 200-high images
        "train_00001.jpg": (120, 10, 170, 50),
        "train_00002.jpg": (100, 5, 160, 45),
        "train_00003.jpg": (300, 10, 350, 50),  # outside the image whatever the order
        "test_0001.jpg": (110, 12, 150, 52),
    }
    root = make_rafdb_tall(tmp_path / "RAF-DB", written)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"rafdb:{root}?images=original", "test")
    message = one_line(caught.value)
    assert message.startswith("rafdb: 4 of 4 face boxes fall outside their image with box_order=")
    assert (
        "train_00001_boundingbox.txt: 120 10 170 50 read as xyxy is outside the 60×200" in message
    )
    assert message.endswith("the order looks wrong; open with ?images=original,box_order=yxyx")
    with pytest.warns(
        SkippedRowsWarning, match=r"face box outside the image \(box_order=yxyx\): 1"
    ):
        test = open_dataset(f"rafdb:{root}?images=original,box_order=yxyx", "test")
    assert test.table.boxes.tolist() == [[12, 110, 52, 150]]  # x 12..52, y 110..150
    with pytest.raises(ValueError, match="box_order applies to images=original"):
        open_dataset(f"rafdb:{root}?box_order=yxyx", "test")
    assert snapshot(tmp_path) == before


# --- 6c. AffectNet's compressed-archive layout ----------------------------------------------------


def test_affectnet_manually_annotated_compressed_layout_is_read(tmp_path):
    truth = make_affectnet_csv(tmp_path, "Manually_Annotated_compressed/Manually_Annotated_Images")
    with pytest.warns(SkippedRowsWarning):
        test = open_dataset(f"affectnet:{tmp_path}", "test")
    assert [test.ids[i].as_py() for i in range(len(test))] == ["200/val0.jpg", "200/val1.jpg"]
    assert test[0]["image"].shape == (3, 112, 112) and "200/val0.jpg" in truth
    (tmp_path / "Manually_Annotated_compressed").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetFormatError, match="Manually_Annotated_compressed/Manually_Ann"):
        open_dataset(f"affectnet:{tmp_path}", "test")


# --- 6d. the paper's split files concatenated; AffectNet stems that collide ---------------------


def test_concatenated_paper_split_files_say_test_is_repeated_as_valid(tmp_path):
    root, txt, faces = paper_frame(tmp_path)
    lines = txt.read_text().splitlines()
    train = [line for line in lines if "/train_" in line]
    test = [line for line in lines if "/test_" in line]
    both = tmp_path / "all.txt"  # cat train/ valid/ test/ landmarks.txt: valid/ is test/ again
    both.write_text("\n".join([*train, *test, *test]) + "\n")
    with pytest.warns(SkippedRowsWarning) as caught:
        data = open_dataset(f"rafdb:{root}?images=paper", "test", landmarks=str(both))
    message = str(caught[-1].message)
    assert f"{REPEATED}: 3 (e.g. {both}:14 (first on line 11)" in message
    assert "split files concatenated" in message and len(data) == 3
    np.testing.assert_allclose(data.native_landmarks(0), faces[data.ids[0].as_py()], atol=1e-4)


def test_affectnet_landmark_files_with_colliding_stems_match_by_path_or_say_why_not(tmp_path):
    truth = make_affectnet_npy(tmp_path)
    ids = sorted(truth)
    ids = [i for i in ids if truth[i][1] is not None]
    moved = {i: truth[i][1] + 1.0 for i in ids}  # not the shipped values: from the file
    paths = [i.replace("/", "/images/") + ".jpg" for i in ids]  # as the paper writes them
    txt = write_paper_landmarks(tmp_path / "paper.txt", paths, [moved[i] for i in ids])
    with pytest.warns(SkippedRowsWarning):
        test = open_dataset(f"affectnet:{tmp_path}", "test", landmarks=str(txt))
    for index in range(len(test)):  # val_set/0 and train_set/0 share the stem 0
        expected = moved[test.ids[index].as_py()]
        np.testing.assert_allclose(test.native_landmarks(index), expected, atol=1e-4)
    names = [i.replace("train_set/", "train/").replace("val_set/", "val/") + ".jpg" for i in ids]
    other = write_paper_landmarks(tmp_path / "other.txt", names, [moved[i] for i in ids])
    with pytest.raises(DatasetFormatError) as caught:
        open_dataset(f"affectnet:{tmp_path}", "test", landmarks=str(other))
    message = one_line(caught.value)
    assert message.startswith(
        f"{other}: none of its {len(ids)} ids matches a row of affectnet (2 rows"
    )
    assert (
        "matching by file name is off because names repeat in the file ('train/0.jpg' and"
        in message
    )
    assert message.endswith(
        "write the dataset's ids or image paths such as 'val_set/images/0.jpg' in its first column"
    )
