import numpy as np
import pytest
import torch

from aubench.data.landmarks_txt import REPEATED, read_landmarks_txt, write_landmarks_txt
from aubench.data.registry import DATASETS, open_dataset, parse_data_spec
from aubench.data.synthetic import SyntheticFaces, export_synthetic
from aubench.data.table import DatasetFormatError, SkipReport
from aubench.faces.synth import label_of
from aubench.faces.synth_difficulty import DEFAULT_DIFFICULTY, get_difficulty
from tests.dataset_trees import face_points


def test_parse_data_spec():
    assert parse_data_spec("rafdb:/data/RAF-DB") == ("rafdb", "/data/RAF-DB", {})
    assert parse_data_spec(" RAFDB:/data/RAF-DB?images=original ") == (
        "rafdb",
        "/data/RAF-DB",
        {"images": "original"},
    )
    assert parse_data_spec("ckplus:/d/CK+?folds=5,fold=2,neutral=true") == (
        "ckplus",
        "/d/CK+",
        {"folds": 5, "fold": 2, "neutral": True},
    )
    assert parse_data_spec("folder:/odd?name/x") == ("folder", "/odd?name/x", {})
    assert parse_data_spec("synthetic") == ("synthetic", None, {})
    assert parse_data_spec("synthetic:n=2048,shortcut=0.5") == (
        "synthetic",
        None,
        {"n": 2048, "shortcut": 0.5},
    )
    assert set(DATASETS) == {
        "rafdb",
        "affectnet",
        "fer2013",
        "ferplus",
        "ckplus",
        "disfa",
        "bp4d",
        "folder",
        "synthetic",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rafbd:/x", r"unknown dataset 'rafbd' \(known: .*\); did you mean rafdb\?"),
        ("afectnet:/x", "did you mean affectnet"),
        ("imagenet:/x", r"unknown dataset 'imagenet' \(known: rafdb, affectnet"),
        ("", "data spec must be NAME:PATH"),
        ("synthetic:n", "bad option 'n' in data spec 'synthetic:n': expected key=value"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_data_spec(spec)


def test_option_and_path_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"unknown option\(s\) \['image'\] for rafdb \(accepted: images, box_order\)",
    ):
        open_dataset(f"rafdb:{tmp_path}?image=original", "train")
    with pytest.raises(ValueError, match="rafdb needs a path: --data rafdb:/path/to/rafdb"):
        open_dataset("rafdb:", "train")
    with pytest.raises(ValueError, match=r"\['size'\] cannot be given in the data spec"):
        open_dataset("synthetic:size=64", "train")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['m'\] for synthetic"):
        open_dataset("synthetic:m=3", "train")
    with pytest.raises(ValueError, match="synthetic takes options, not a path"):
        DATASETS["synthetic"]("/x", "train")
    with pytest.raises(
        DatasetFormatError, match=f"ckplus: {tmp_path}/x does not exist; expected CK"
    ):
        open_dataset(f"ckplus:{tmp_path}/x", "train")


def test_synthetic_specs_build_the_builtin_faces():
    train = open_dataset("synthetic:n=40,shortcut=0.5", "train", size=64, seed=2, num_classes=8)
    val = open_dataset("synthetic:n=40", "val", size=64)
    assert isinstance(train, SyntheticFaces) and len(train) == 40 and len(val) == 10
    assert train.config.shortcut == 0.5 and train.num_classes == 8 and train.seed == 2
    assert val.num_classes == 7
    assert len(open_dataset("synthetic", "test")) == 2048 // 4
    # a spec's faces are the moderate ones by default, SyntheticFaces' own default the easy ones
    assert (
        train.config.difficulty == get_difficulty(DEFAULT_DIFFICULTY) == get_difficulty("moderate")
    )
    assert open_dataset("synthetic:n=8,difficulty=easy", "train").config.difficulty.is_easy
    assert SyntheticFaces(8).config.difficulty.is_easy
    drawn = [label_of(2, "train", i, 8) for i in range(8)]
    assert sorted(drawn) == list(range(8))  # each class drawn once per block
    noisy = [i for i in range(40) if train.labels[i] != label_of(2, "train", i, 8)]
    assert noisy == [i for i in range(40) if train[i]["label"] != label_of(2, "train", i, 8)]
    assert len(noisy) < 8  # label noise 0.05 on the training split only
    assert val.labels == [label_of(0, "val", i) for i in range(10)]
    with pytest.raises(ValueError, match="exact landmarks"):
        open_dataset("synthetic", "train", landmarks="none")


def test_common_arguments(tmp_path):
    faces = SyntheticFaces(12, size=64, split="train", seed=5)
    export_synthetic(faces, tmp_path / "f", progress=False)
    seen = []

    def transform(sample):
        seen.append(sample["id"])
        return {**sample, "flag": True}

    data = open_dataset(
        f"folder:{tmp_path}/f", "all", size=32, normalize=False, transform=transform
    )
    sample = data[4]
    assert (
        sample["flag"]
        and seen == [sample["id"]]
        and 0 <= sample["image"].min() <= sample["image"].max() <= 1
    )
    assert data.labels.dtype == np.int64 and data.labels.tolist() == faces.labels
    with pytest.raises(ValueError, match="num_classes must be 7 or 8"):
        open_dataset(f"folder:{tmp_path}/f", "all", num_classes=6)
    with pytest.raises(ValueError, match="folder has no contempt class, so num_classes must be 7"):
        open_dataset(f"folder:{tmp_path}/f", "all", num_classes=8)
    with pytest.raises(ValueError, match="split must be one of"):
        open_dataset(f"folder:{tmp_path}/f", "dev")
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        open_dataset(f"folder:{tmp_path}/f", "val", val_fraction=1.0)
    with pytest.raises(IndexError, match="index 12 out of range"):
        data[12]
    assert data[-1]["id"] == data[11]["id"]
    assert (
        isinstance(data[0]["landmarks"], torch.Tensor)
        and data[0]["landmarks"].dtype == torch.float32
    )


def test_landmarks_txt_round_trip_and_failures(tmp_path):
    points = np.stack([face_points(k, 2 * k, 50) for k in range(4)])
    points[2, 10, 1] = np.nan
    path = write_landmarks_txt(
        tmp_path / "landmarks.txt", ["a/x.jpg", "b.jpg", "c.jpg", "d.jpg"], points
    )
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 137 and first[0] == "a/x.jpg"
    assert float(first[1]) == pytest.approx(points[0, 0, 0], abs=1e-3)  # all x first …
    assert float(first[69]) == pytest.approx(points[0, 0, 1], abs=1e-3)  # … then all y
    assert path.read_text().splitlines()[2].count("inf") == 136
    ids, read = read_landmarks_txt(path)
    assert ids.to_pylist() == ["a/x.jpg", "b.jpg", "c.jpg", "d.jpg"] and read.dtype == np.float32
    np.testing.assert_allclose(read[[0, 1, 3]], points[[0, 1, 3]], atol=1e-3)
    assert np.isnan(read[2]).all()


def test_landmarks_txt_header_malformed_rows_and_duplicates(tmp_path):
    values = ",".join(["1.5"] * 136)
    text = "\n".join(
        [
            "id," + ",".join(f"c{i}" for i in range(136)),
            f"a,{values}",
            "b,1,2",
            f"c,{values[:-3]}x.5",
            f"d,{values}",
        ]
    )
    (tmp_path / "l.txt").write_text(text + "\n")
    report = SkipReport()
    ids, read = read_landmarks_txt(tmp_path / "l.txt", report)
    assert ids.to_pylist() == ["a", "d"] and (read == 1.5).all()
    assert report.counts == {
        "malformed row (wrong number of fields)": 1,
        "malformed row (not a number)": 1,
    }
    assert report.examples["malformed row (not a number)"] == [f"{tmp_path}/l.txt:4"]
    (tmp_path / "dup.txt").write_text(f"a,{values}\nb,{values}\na,{values}\n")
    report = SkipReport()
    ids, read = read_landmarks_txt(tmp_path / "dup.txt", report)  # the same face again: once
    assert ids.to_pylist() == ["a", "b"] and report.counts == {REPEATED: 1}
    assert report.examples[REPEATED] == [f"{tmp_path}/dup.txt:3 (first on line 1)"]
    (tmp_path / "dup.txt").write_text(f"a,{values}\nb,{values}\na,{values[:-3]}2.5\n")
    with pytest.raises(
        DatasetFormatError,
        match=rf"id 'a' has two different rows \({tmp_path}/dup.txt:1 and {tmp_path}/dup.txt:3\)",
    ):
        read_landmarks_txt(tmp_path / "dup.txt")
    with pytest.raises(FileNotFoundError, match="landmarks file not found"):
        read_landmarks_txt(tmp_path / "none.txt")


def test_landmarks_file_ids_match_by_stem(tmp_path):
    faces = SyntheticFaces(3, size=64, split="val", seed=1)
    export_synthetic(faces, tmp_path / "f", progress=False)
    points = np.stack([face_points(k, k, 40) for k in range(3)])
    stems = [f"somewhere/synthetic-val-{k:06d}.jpg" for k in range(3)]
    write_landmarks_txt(tmp_path / "l.txt", stems, points)
    data = open_dataset(f"folder:{tmp_path}/f", "all", size=64, landmarks=str(tmp_path / "l.txt"))
    np.testing.assert_allclose(data[1]["landmarks"].numpy(), points[1], atol=1e-3)
