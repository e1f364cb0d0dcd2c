"""The ``disfa`` and ``bp4d`` loaders (aubench.data.au_datasets) on miniature trees in the
datasets' own layouts: frames found by number, labels by task or by the prototype rule, every
excluded frame counted by reason, subject folds, and the ``facs`` evidence matching every row."""

import numpy as np
import pytest

from aubench.data import au_datasets as ds
from aubench.data.au_evidence import NO_IMAGE, split_evidence
from aubench.data.registry import open_dataset
from aubench.data.table import DatasetFormatError, SkippedRowsWarning
from aubench.faces.codebook import EXPRESSIONS
from tests.dataset_trees import image, write_image

DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
#: frame → {AU: level} of every DISFA subject (AUs not listed: level 0)
DISFA_FRAMES = {
    1: {},  # no AU: neutral
    2: {6: 3, 12: 2},  # happiness (EMFACS 6 + 12)
    3: {1: 2, 2: 2, 5: 1, 26: 4},  # surprise
    4: {12: 5},  # AU12 alone: no whole prototype
    5: {1: 1, 4: 2, 15: 3, 6: 1, 12: 1},  # sadness (3 AUs) over happiness (2)
    6: {1: 1, 2: 1, 5: 1, 26: 1, 4: 1, 15: 1},  # surprise (4 AUs) over sadness (3)
}
SUBJECTS = ("SN001", "SN002", "SN003", "SN004")


def make_disfa(root, *, first=1, cameras=("Frames_LeftCamera",), skip=("SN002", 3)):
    labels = root / "ActionUnit_Labels"
    for subject in SUBJECTS:
        (labels / subject).mkdir(parents=True)
        for au in DISFA_AUS:
            lines = [f"{f},{levels.get(au, 0)}" for f, levels in DISFA_FRAMES.items()]
            (labels / subject / f"{subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
        for camera in cameras:
            for frame in DISFA_FRAMES:
                if (subject, frame) != skip:
                    number = frame - 1 + first
                    write_image(root / camera / subject / f"{number:05d}.png", image(40, 32))
    return root


def open_all(spec, **kwargs):
    return open_dataset(spec, "all", **kwargs)


def by_id(data) -> dict[str, str]:
    return {data.ids[i].as_py(): EXPRESSIONS[data.labels[i]] for i in range(len(data))}


def test_disfa_frames_are_labelled_by_the_prototype_rule_and_exclusions_counted(tmp_path):
    root = make_disfa(tmp_path)
    with pytest.warns(SkippedRowsWarning, match="missing image file: 1"):
        data = open_all(f"disfa:{root}")
    labels = by_id(data)
    assert {k: v for k, v in labels.items() if k.startswith("SN001/")} == {
        "SN001/2": "happiness",
        "SN001/3": "surprise",
        "SN001/5": "sadness",
        "SN001/6": "surprise",
    }
    assert "SN002/3" not in labels and len(labels) == 4 * 4 - 1
    assert data.skipped == {"missing image file": 1}
    assert data.excluded == {ds.NO_AU: 4, ds.NO_PROTOTYPE: 4}
    assert data.table.excluded.examples[ds.NO_AU][0].endswith("SN001/SN001_au1.txt:1")
    assert data.table.attrs["au_numbers"] == list(DISFA_AUS)
    sample = data[list(labels).index("SN001/5")]
    shown = [DISFA_AUS[j] for j in np.flatnonzero(sample["aus"].numpy())]
    assert shown == [1, 4, 6, 12, 15]
    assert sample["au_intensity"].tolist() == [1, 0, 2, 0, 1, 0, 1, 3, 0, 0, 0, 0]
    assert sample["image"].shape == (3, 112, 112)


def test_disfa_neutral_stride_first_frame_and_folds(tmp_path):
    root = make_disfa(tmp_path, first=0, skip=())
    data = open_all(f"disfa:{root}?neutral=true,first_frame=0,stride=2")
    labels = by_id(data)
    # kept per video: frames 1, 2, 3, 5, 6 (4 is unlabelled); every second: 1, 3, 6
    assert sorted(k for k in labels if k.startswith("SN003/")) == ["SN003/1", "SN003/3", "SN003/6"]
    assert labels["SN003/1"] == "neutral"
    assert data.excluded == {ds.NO_PROTOTYPE: 4, ds.STRIDE: 8}
    assert data.table.images.paths[0].as_py() == "SN001/00000.png"  # frame 1 is file 0
    # three folds over SN001..SN004: fold 0 = SN001 and SN004 (round robin)
    test = open_dataset(f"disfa:{root}?neutral=true,first_frame=0,stride=2", "test")
    assert {i.as_py().split("/")[0] for i in test.ids} == {"SN001", "SN004"}
    fold2 = open_dataset(f"disfa:{root}?neutral=true,first_frame=0,stride=2,fold=2", "test")
    assert {i.as_py().split("/")[0] for i in fold2.ids} == {"SN003"}


def test_disfa_evidence_matches_every_row(tmp_path):
    root = make_disfa(tmp_path, skip=())
    data = open_all(f"disfa:{root}")
    evidence = split_evidence(data, "facs")
    assert (evidence.rows >= 0).all()
    # only the frames the loader left out fit no image: 4 neutral, 4 unlabelled
    assert dict(evidence.unmatched.counts) == {NO_IMAGE: 8}
    row = [i.as_py() for i in data.ids].index("SN002/2")
    values = evidence.vectors([row])[0]
    assert values[6 - 1] == pytest.approx(0.6) and values[12 - 1] == pytest.approx(0.4)
    assert values[1 - 1] == 0.0 and np.isnan(values[7 - 1])  # AU7 is not coded in DISFA


def test_disfa_frame_folders_errors(tmp_path):
    root = make_disfa(tmp_path / "a", cameras=())
    with pytest.raises(DatasetFormatError, match=r"no folder of frames .*ffmpeg -i"):
        open_all(f"disfa:{root}")
    root = make_disfa(tmp_path / "b", cameras=("Frames_LeftCamera", "Frames_RightCamera"))
    with pytest.raises(DatasetFormatError, match=r"several folders of frames .*\?frames=NAME"):
        open_all(f"disfa:{root}")
    with pytest.warns(SkippedRowsWarning):
        right = open_all(f"disfa:{root}?frames=Frames_RightCamera")
    assert str(right.table.images.root).endswith("Frames_RightCamera")
    with pytest.raises(DatasetFormatError, match="frames='Nope': no folder"):
        open_all(f"disfa:{root}?frames=Nope")
    with pytest.raises(ValueError, match="DISFA has no expression labels"):
        open_all(f"disfa:{root}?labels=task")
    with pytest.raises(ValueError, match=r"disfa stride must be ≥ 1"):
        open_all(f"disfa:{root}?frames=Frames_RightCamera,stride=0")


BP4D_HEADER = "0,1,2,4,6,7,10,12,14,15,17,23,24"


def occurrence(*aus) -> str:
    return ",".join("1" if int(au) in aus else "0" for au in BP4D_HEADER.split(",")[1:])


def make_bp4d(root):
    occ = root / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    videos = {
        "F001_T1": {2440: (6, 12), 2441: (6, 12, 14), 2442: ()},
        "F001_T4": {10: (6, 12)},
        "M001_T8": {7: (4,), 8: (1, 4, 15)},
        "F002_T2": {100: (1, 4, 15), 101: (2,)},
    }
    for video, frames in videos.items():
        rows = [f"{frame},{occurrence(*aus)}" for frame, aus in frames.items()]
        (occ / f"{video}.csv").write_text("\n".join([BP4D_HEADER, *rows]) + "\n")
        subject, task = video.split("_")
        for frame in frames:
            write_image(root / "2D_Images" / subject / task / f"{frame}.jpg", image(40, 32))
    return root


def test_bp4d_task_labels_exclude_embarrassment_and_pain(tmp_path):
    root = make_bp4d(tmp_path)
    data = open_all(f"bp4d:{root}")
    labels = by_id(data)
    assert labels == {
        "F001/T1/2440": "happiness",
        "F001/T1/2441": "happiness",
        "F001/T1/2442": "happiness",
        "F002/T2/100": "sadness",
        "F002/T2/101": "sadness",
        "M001/T8/7": "disgust",
        "M001/T8/8": "disgust",
    }
    assert data.excluded == {ds.NO_TASK_CLASS: 1}
    assert "au_intensity" not in data[0]
    assert data.table.images.paths[0].as_py() == "F001/T1/2440.jpg"
    evidence = split_evidence(data, "facs")
    assert (evidence.rows >= 0).all() and dict(evidence.unmatched.counts) == {NO_IMAGE: 1}


def test_bp4d_prototype_labels_with_a_tie(tmp_path):
    root = make_bp4d(tmp_path)
    data = open_dataset(f"bp4d:{root}?labels=prototype", "all", num_classes=8)
    assert by_id(data) == {
        "F001/T1/2440": "happiness",
        "F001/T4/10": "happiness",
        "F002/T2/100": "sadness",
        "M001/T8/8": "sadness",
    }
    # 6 + 12 + 14 shows happiness (6, 12) and contempt (12, 14) whole: a tie
    assert data.excluded == {ds.AMBIGUOUS_PROTOTYPE: 1, ds.NO_AU: 1, ds.NO_PROTOTYPE: 2}


def test_bp4d_without_frames(tmp_path):
    occ = tmp_path / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    (occ / "F001_T1.csv").write_text(f"{BP4D_HEADER}\n1,{occurrence(6, 12)}\n")
    with pytest.raises(DatasetFormatError, match=r"bp4d: no folder of frames .*F001/T1/2440\.jpg"):
        open_all(f"bp4d:{tmp_path}")
    with pytest.raises(ValueError, match="bp4d labels must be 'task' or 'prototype'"):
        open_all(f"bp4d:{tmp_path}?labels=emfacs")
