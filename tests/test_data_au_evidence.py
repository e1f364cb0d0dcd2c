"""AU evidence readers (aubench.data.au_evidence) on miniature files in the exact formats: CK+
FACS files, DISFA and BP4D label files, OpenFace, py-feat and LibreFace outputs; every bad row,
unknown AU, missing image and id mismatch counted by reason with ``file:line``."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from aubench.data import au_evidence as ev
from aubench.data.au_evidence import (
    DATASET_AU_READERS,
    EvidenceTable,
    read_bp4d_occurrence,
    read_ckplus_facs,
    read_detector,
    read_disfa_labels,
)
from aubench.data.parsing import MALFORMED
from aubench.data.registry import open_dataset
from aubench.data.table import DatasetFormatError, SkippedRowsWarning
from aubench.faces.evidence import evidence_heatmaps
from tests.dataset_trees import ck_points, make_ckplus

NAN = math.nan


def rows(table: EvidenceTable) -> dict[str, dict[int, float]]:
    """key → {AU: intensity} (NaN kept), rounded to 1e-6."""
    return {
        key: {
            au: round(float(v), 6) if v == v else NAN
            for au, v in zip(table.aus, values, strict=True)
        }
        for key, values in zip(table.keys.to_pylist(), table.intensities, strict=True)
    }


def counts(table_or_report) -> dict[str, int]:
    report = getattr(table_or_report, "skipped", table_or_report)
    return dict(report.counts)


def example(report, reason: str) -> str:
    return report.examples[reason][0]


# --- CK+ ------------------------------------------------------------------------------------


def facs_line(au, level) -> str:
    return f"   {au:.7e}   {level:.7e}"


def make_ck_facs(root):
    """make_ckplus's CK+ copy, with a peak FACS file holding every kind of bad line, a FACS
    file in another sequence's folder and one for a frame without an image."""
    make_ckplus(root)
    facs = root / "FACS"
    peak = facs / "S005/001/S005_001_00000003_facs.txt"
    peak.write_text(
        peak.read_text()  # lines 1–2: AU9 at D, AU17 coded without intensity
        + "   1.2000000e+01\n"  # 3: one field
        + "   x   2.0000000e+00\n"  # 4: not a number
        + facs_line(105, 1)  # 5: not a FACS number
        + "\n"
        + facs_line(4, 7)  # 6: intensity beyond E
        + "\n"
        + facs_line(9, 2)  # 7: AU9 again
        + "\n"
        + facs_line(45, 0)  # 8: blink, no region in aubench
        + "\n"
    )
    (facs / "S011/001/S005_001_00000002_facs.txt").write_text(facs_line(1, 1) + "\n")
    (facs / "S010/002/S010_002_00000009_facs.txt").write_text(facs_line(1, 1) + "\n")
    return root


def test_ckplus_facs_intensities_and_every_bad_line_counted(tmp_path):
    table = read_ckplus_facs(make_ck_facs(tmp_path))
    assert table.source == "ckplus"
    assert table.aus == (1, 2, 5, 6, 9, 12, 14, 17, 25, 27, 45)
    got = rows(table)
    assert sorted(got) == [
        "S005_001_00000003",
        "S010_002_00000004",
        "S011_001_00000002",
        "S014_003_00000002",  # empty FACS file: a row of absent AUs
        "S022_001_00000002",
        "S026_004_00000003",
    ]
    present = {k: {au: v for au, v in row.items() if v} for k, row in got.items()}
    assert present["S005_001_00000003"] == {9: 0.8, 17: 1.0, 45: 1.0}  # D = 4/5; 0 = present
    assert present["S010_002_00000004"] == {6: 0.6, 12: 0.8, 25: 1.0}
    assert present["S026_004_00000003"] == {1: 0.4, 2: 0.4, 5: 0.2, 27: 1.0}
    assert present["S014_003_00000002"] == {}
    peak = tmp_path / "FACS/S005/001/S005_001_00000003_facs.txt"
    assert counts(table) == {
        MALFORMED: 1,
        ev.NOT_A_NUMBER: 1,
        ev.UNKNOWN_AU: 1,
        ev.OUT_OF_RANGE: 1,
        ev.REPEATED_LINE: 1,
        ev.ID_MISMATCH: 1,
        ev.MISSING_IMAGE: 1,
    }
    for reason, line in [
        (MALFORMED, 3),
        (ev.NOT_A_NUMBER, 4),
        (ev.UNKNOWN_AU, 5),
        (ev.OUT_OF_RANGE, 6),
        (ev.REPEATED_LINE, 7),
    ]:
        assert example(table.skipped, reason) == f"{peak}:{line}"
    assert "S005_001_00000002_facs.txt (frame S005_001_00000002 in folder S011/001)" in example(
        table.skipped, ev.ID_MISMATCH
    )
    assert example(table.skipped, ev.MISSING_IMAGE).endswith("S010/002/S010_002_00000009.png")
    assert table.locations.to_pylist()[0] == str(peak)
    assert DATASET_AU_READERS["ckplus"] is read_ckplus_facs


def test_ckplus_evidence_lines_up_with_the_loader_and_draws(tmp_path):
    root = make_ck_facs(tmp_path)
    with pytest.warns(SkippedRowsWarning):
        data = open_dataset(f"ckplus:{root}", "all")
    ids = data.table.ids.to_pylist()
    evidence, report = read_ckplus_facs(root).for_images(ids)
    assert len(evidence) == len(ids) == 4
    # the two sequences without a usable emotion are not images of the dataset
    assert counts(report) == {ev.NO_IMAGE: 2}
    column = evidence.aus.index(12)
    assert evidence.intensities[ids.index("S010_002_00000004"), column].item() == pytest.approx(0.8)
    landmarks = torch.tensor(np.stack([ck_points(i[:8].replace("_", "/"), 3) for i in ids]))
    maps, valid, _ = evidence_heatmaps(landmarks, evidence, (490, 640))
    assert valid.all() and maps.shape == (4, 490, 640)
    assert evidence.unregioned() == {45: 1}


# --- DISFA ----------------------------------------------------------------------------------

DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)


def make_disfa(root):
    labels = root / "DISFA" / "ActionUnit_Labels"
    for subject, frames in [("SN001", 4), ("SN002", 3)]:
        (labels / subject).mkdir(parents=True)
        for k, au in enumerate(DISFA_AUS):
            lines = [f"{f},{(f + k) % 6}" for f in range(1, frames + 1)]
            (labels / subject / f"{subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
    bad = labels / "SN002" / "SN002_au12.txt"
    bad.write_text(
        "1,3\n"  # 1: good
        "2\n"  # 2: one field
        "x,1\n"  # 3: not a number
        "2,7\n"  # 4: level beyond 5
        "0,1\n"  # 5: no frame 0
        "1,4\n"  # 6: frame 1 again
        # frame 2 and 3 never get a good AU12 line: NaN there
    )
    (labels / "SN002" / "SN001_au1.txt").write_text("1,5\n")  # another subject's file
    (labels / "SN002" / "SN002_auX.txt").write_text("1,5\n")  # not an AU number
    (labels / "SN002" / "SN002_au0.txt").write_text("1,5\n")  # AU 0 is not FACS
    return root / "DISFA"


def test_disfa_levels_frames_and_bad_lines(tmp_path):
    table = read_disfa_labels(make_disfa(tmp_path))
    assert table.aus == DISFA_AUS
    keys = table.keys.to_pylist()
    assert keys == ["SN001/1", "SN001/2", "SN001/3", "SN001/4", "SN002/1", "SN002/2", "SN002/3"]
    got = rows(table)
    assert got["SN001/3"][1] == 0.6 and got["SN001/3"][2] == 0.8  # (3 + k) % 6 / 5
    assert got["SN002/1"][12] == 0.6  # its one good line
    assert math.isnan(got["SN002/2"][12]) and math.isnan(got["SN002/3"][12])
    bad = tmp_path / "DISFA/ActionUnit_Labels/SN002/SN002_au12.txt"
    assert counts(table) == {
        MALFORMED: 1,
        ev.NOT_A_NUMBER: 1,
        ev.OUT_OF_RANGE: 2,
        ev.REPEATED_LINE: 1,
        ev.ID_MISMATCH: 1,
        ev.UNKNOWN_AU: 2,
    }
    assert example(table.skipped, MALFORMED) == f"{bad}:2"
    assert example(table.skipped, ev.NOT_A_NUMBER) == f"{bad}:3"
    assert table.skipped.examples[ev.OUT_OF_RANGE] == [f"{bad}:5", f"{bad}:4"]
    assert example(table.skipped, ev.REPEATED_LINE) == f"{bad}:6"
    assert "subject SN001 in folder SN002" in example(table.skipped, ev.ID_MISMATCH)
    assert table.locations.to_pylist()[4].endswith("SN002/SN002_au1.txt:1")


# --- BP4D -----------------------------------------------------------------------------------


def test_bp4d_occurrence_with_unknown_codes_and_bad_rows(tmp_path):
    occ = tmp_path / "BP4D" / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    (occ / "F001_T1.csv").write_text(
        "0,1,2,4,6,7,10,12,14,15,17,23,24,AUX\n"
        "2440,0,1,9,0,0,1,1,0,0,0,0,0,1\n"  # 2: AU4 unknown (9)
        "2441,1,1,0,1,1,1,1,0,0,0,0,0,1\n"
        "2442,1,1\n"  # 4: wrong field count
        "2443,1,2,0,0,0,0,0,0,0,0,0,0,0\n"  # 5: code 2
        "x,1,1,0,0,0,0,0,0,0,0,0,0,0\n"  # 6: frame not a number
        "2441,0,0,0,0,0,0,0,0,0,0,0,0,0\n"  # 7: frame 2441 again
    )
    (occ / "M002_T8.csv").write_text("0,6,12\n7,1,1\n")
    (occ / "notes.csv").write_text("0,1\n1,1\n")
    table = read_bp4d_occurrence(tmp_path / "BP4D")
    assert table.aus == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    got = rows(table)
    assert list(got) == ["F001/T1/2440", "F001/T1/2441", "M002/T8/7"]
    assert math.isnan(got["F001/T1/2440"][4]) and got["F001/T1/2440"][12] == 1.0
    assert got["F001/T1/2440"][1] == 0.0 and got["F001/T1/2441"][1] == 1.0
    assert got["M002/T8/7"][6] == 1.0 and math.isnan(got["M002/T8/7"][1])  # not coded there
    f001 = occ / "F001_T1.csv"
    assert counts(table) == {
        ev.UNKNOWN_AU: 1,
        MALFORMED: 1,
        ev.OUT_OF_RANGE: 1,
        ev.NOT_A_NUMBER: 1,
        ev.REPEATED: 1,
        ev.ID_MISMATCH: 1,
    }
    assert example(table.skipped, ev.UNKNOWN_AU) == f"{f001}:1 (column 'AUX')"
    assert example(table.skipped, MALFORMED) == f"{f001}:4"
    assert example(table.skipped, ev.OUT_OF_RANGE) == f"{f001}:5"
    assert example(table.skipped, ev.NOT_A_NUMBER) == f"{f001}:6"
    assert example(table.skipped, ev.REPEATED) == f"{f001}:7"


# --- detectors ------------------------------------------------------------------------------

OPENFACE_R = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
OPENFACE_C = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)


def openface_header(sequence: bool) -> list[str]:
    """OpenFace 2.x's RecorderCSV header (gaze, pose and AUs; landmarks left out)."""
    first = ["frame", "face_id", "timestamp", "confidence", "success"] if sequence else ["face"]
    gaze = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z"]
    pose = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    first += [] if sequence else ["confidence"]
    aus = [f"AU{au:02d}_r" for au in OPENFACE_R] + [f"AU{au:02d}_c" for au in OPENFACE_C]
    return [*first, *gaze, "gaze_angle_x", "gaze_angle_y", *pose, *aus]


def openface_row(sequence: bool, frame: int, r: dict, c: dict, success: int = 1) -> list[str]:
    """One row as RecorderCSV writes it: ints, %.3f timestamp, %.2f confidence and
    intensities, %.1f presence."""
    first = [str(frame), "0", f"{frame / 30:.3f}", "0.98", str(success)] if sequence else ["0"]
    first += [] if sequence else ["0.980"]
    other = ["0.012345"] * 6 + ["0.021", "-0.153"] + ["12.3"] * 3 + ["0.102"] * 3
    intens = [f"{r.get(au, 0.0):.2f}" for au in OPENFACE_R]
    pres = [f"{c.get(au, 0.0):.1f}" for au in OPENFACE_C]
    return [*first, *other, *intens, *pres]


def test_openface_feature_extraction_csv_with_its_spacing(tmp_path):
    header = ["image", *openface_header(sequence=True)]  # the user's column naming the image
    good = {12: 2.5, 6: 1.2, 45: 3.0}, {12: 1, 6: 0, 28: 1, 45: 1}
    lines = [
        ["a.png", *openface_row(True, 1, *good)],
        ["b.png", *openface_row(True, 2, *good, success=0)],  # 3: failed tracking
        ["c.png", *openface_row(True, 3, {12: 6.0}, {12: 1})],  # 4: beyond the 0–5 scale
        ["d.png", *openface_row(True, 4, {12: 1.0}, {12: 1})[:-1], "abc"],  # 5: not a number
        ["e.png", "1", "2"],  # 6: wrong field count
        ["a.png", *openface_row(True, 6, {1: 5.0}, {1: 1})],  # 7: a.png again
        ["", *openface_row(True, 7, {1: 5.0}, {1: 1})],  # 8: no key
    ]
    path = tmp_path / "processed" / "video.csv"
    path.parent.mkdir()
    path.write_text("\n".join(", ".join(fields) for fields in [header, *lines]) + "\n")
    assert path.read_text().startswith("image, frame, face_id, timestamp, confidence, success, ")
    table = read_detector(path)
    assert table.source == "openface"
    assert table.aus == tuple(sorted(set(OPENFACE_R) | set(OPENFACE_C)))
    got = rows(table)
    assert list(got) == ["a.png"]
    # AU12: intensity 2.5 → 0.5 where present; AU6: intensity but absent → 0; AU28: presence only
    assert {au: v for au, v in got["a.png"].items() if v} == {12: 0.5, 28: 1.0, 45: 0.6}
    assert counts(table) == {
        ev.DETECTOR_FAILED: 1,
        ev.OUT_OF_RANGE: 1,
        ev.NOT_A_NUMBER: 1,
        MALFORMED: 1,
        ev.REPEATED: 1,
        ev.NO_KEY: 1,
    }
    for reason, line in [
        (ev.DETECTOR_FAILED, 3),
        (ev.OUT_OF_RANGE, 4),
        (ev.NOT_A_NUMBER, 5),
        (MALFORMED, 6),
        (ev.REPEATED, 7),
        (ev.NO_KEY, 8),
    ]:
        assert example(table.skipped, reason) == f"{path}:{line}"


def test_openface_per_image_csvs_are_keyed_by_their_file_names(tmp_path):
    folder = tmp_path / "processed"
    folder.mkdir()
    header = ", ".join(openface_header(sequence=False))
    two_faces = [openface_row(False, 0, {12: 5.0}, {12: 1}), openface_row(False, 0, {4: 5}, {4: 1})]
    files = {
        "S005_001_00000003": [openface_row(False, 0, {4: 2.0, 7: 1.0}, {4: 1, 7: 1})],
        "S010_002_00000004": two_faces,  # the first face is kept, the second counted
    }
    for stem, lines in files.items():
        text = "\n".join([header, *(", ".join(line) for line in lines)]) + "\n"
        (folder / f"{stem}.csv").write_text(text)
    table = read_detector(folder)
    got = {k: {au: v for au, v in row.items() if v} for k, row in rows(table).items()}
    assert got == {"S005_001_00000003": {4: 0.4, 7: 0.2}, "S010_002_00000004": {12: 1.0}}
    assert counts(table) == {ev.REPEATED: 1}
    assert example(table.skipped, ev.REPEATED) == f"{folder / 'S010_002_00000004.csv'}:3"


PYFEAT_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 17, 20, 23, 24, 25, 26, 28, 43)
PYFEAT_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def pyfeat_fex(inputs: list[str], aus: list[dict]) -> pd.DataFrame:
    """A py-feat Fex's columns as ``Fex.to_csv`` writes them (``Feat_Test.csv``'s header)."""
    columns = {"frame": list(range(len(inputs)))}
    box = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")
    columns |= {name: [10.5] * len(inputs) for name in box}
    columns |= {f"{axis}_{i}": [50.0] * len(inputs) for axis in "xy" for i in range(68)}
    columns |= {name: [1.5] * len(inputs) for name in ("Pitch", "Roll", "Yaw")}
    columns |= {f"AU{au:02d}": [row.get(au, 0.05) for row in aus] for au in PYFEAT_AUS}
    columns |= {name: [1 / 7] * len(inputs) for name in PYFEAT_EMOTIONS}
    columns["input"] = inputs
    return pd.DataFrame(columns)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_pyfeat_fex_probabilities_keyed_by_input(tmp_path, suffix):
    inputs = ["/home/me/data/img/a.jpg", "/home/me/data/img/b.jpg", "/home/me/data/img/c.jpg"]
    fex = pyfeat_fex(inputs, [{12: 0.9, 6: 0.7, 1: 0.3}, {}, {4: 1.7}])
    au_columns = [f"AU{au:02d}" for au in PYFEAT_AUS]
    fex.loc[1, au_columns] = np.nan  # no face found: py-feat leaves its AU cells empty
    path = tmp_path / f"fex{suffix}"
    fex.to_csv(path, index=False) if suffix == ".csv" else fex.to_parquet(path, index=False)
    if suffix == ".csv":
        text = path.read_text().splitlines()
        assert text[0].startswith("frame,FaceRectX,FaceRectY,FaceRectWidth,FaceRectHeight,")
        assert ",AU01,AU02,AU04," in text[0] and text[0].endswith(",neutral,input")
        assert ",,,," in text[2]  # the empty AU cells of the face-less row
    table = read_detector(path)
    assert table.source == "py-feat" and table.aus == PYFEAT_AUS
    got = {k: {au: v for au, v in row.items() if v} for k, row in rows(table).items()}
    # probability ≥ 0.5 → present at that probability; below → absent
    assert got == {inputs[0]: {12: 0.9, 6: 0.7}}
    at = "row " if suffix == ".parquet" else ""
    first = 1 if suffix == ".parquet" else 2
    assert counts(table) == {ev.DETECTOR_FAILED: 1, ev.OUT_OF_RANGE: 1}
    assert example(table.skipped, ev.DETECTOR_FAILED) == f"{path}:{at}{first + 1}"
    assert example(table.skipped, ev.OUT_OF_RANGE) == f"{path}:{at}{first + 2}"
    relaxed = read_detector(path, threshold=0.25)
    assert rows(relaxed)[inputs[0]][1] == pytest.approx(0.3)


def libreface_frame(detected: dict, intensity: dict) -> pd.DataFrame:
    """One image's row as ``libreface.save_facial_attributes_image`` writes it."""
    row = {"facial_expression": "Happiness", "gaze_yaw": 1.5, "gaze_pitch": -2.0}
    row |= {"pitch": 3.1, "yaw": -1.2, "roll": 0.4}
    row |= {f"lm_mp_{i}_{axis}": 0.5 for i in range(3) for axis in "xyz"}
    row |= {f"au_{au}": detected.get(au, 0) for au in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)}
    row |= {
        f"au_{au}_intensity": intensity.get(au, 0.0)
        for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
    }
    return pd.DataFrame([row])


def test_libreface_per_image_csvs(tmp_path):
    folder = tmp_path / "libreface"
    folder.mkdir()
    libreface_frame({12: 1, 6: 0, 7: 1}, {12: 2.5, 6: 1.0, 25: 3.0}).to_csv(
        folder / "a.csv", index=False
    )
    libreface_frame({}, {12: 7.0}).to_csv(folder / "b.csv", index=False)  # beyond 0–5
    table = read_detector(folder)
    assert table.source == "libreface"
    got = {k: {au: v for au, v in row.items() if v} for k, row in rows(table).items()}
    # AU12 detected at 2.5 → 0.5; AU6 not detected → 0; AU7 detection only → 1; AU25 intensity only
    assert got == {"a": {12: 0.5, 7: 1.0, 25: 0.6}}
    assert counts(table) == {ev.OUT_OF_RANGE: 1}
    assert example(table.skipped, ev.OUT_OF_RANGE) == f"{folder / 'b.csv'}:2"


def test_detector_files_that_break_the_format_are_errors(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("image,happiness\na.png,0.5\n")
    with pytest.raises(DatasetFormatError, match=r"plain\.csv: no AU columns .*OpenFace"):
        read_detector(plain)
    keyless = tmp_path / "keyless.csv"
    keyless.write_text("frame, AU12_r, AU12_c\n1, 2.00, 1.0\n")
    with pytest.raises(DatasetFormatError, match=r"keyless\.csv: no column naming the image"):
        read_detector(keyless)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.csv").write_text("AU12_r, AU12_c\n2.00, 1.0\n")
    (mixed / "b.csv").write_text("AU12\n0.9\n")
    with pytest.raises(DatasetFormatError, match="mix detector formats"):
        read_detector(mixed)
    with pytest.raises(DatasetFormatError, match="does not exist"):
        read_detector(tmp_path / "nothing.csv")
    with pytest.raises(DatasetFormatError, match="no AU_OCC/ folder"):
        read_bp4d_occurrence(tmp_path)
    with pytest.raises(DatasetFormatError, match="no ActionUnit_Labels/ folder"):
        read_disfa_labels(tmp_path)


# --- matching keys to a dataset's images -----------------------------------------------------


def test_keys_match_ids_paths_and_unique_file_names(tmp_path):
    keys = [
        "S005_001_00000003",  # 0: an id
        "/data/BP4D/F001/T2/2440.jpg",  # 1: the end of a path
        "2440.png",  # 2: a file name two images share
        "F001/T1/17",  # 3: a path without extension
        "solo.jpg",  # 4: a unique file name
        "/elsewhere/missing.jpg",  # 5: no such image
        "F001/T1/17.jpg",  # 6: the same image as 3
    ]
    table = EvidenceTable(
        "py-feat",
        ev.pa.array(keys),
        (12,),
        np.linspace(0.1, 0.7, 7, dtype=np.float32)[:, None],
        ev.pa.array([f"fex.csv:{n}" for n in range(2, 9)]),
    )
    ids = ["S005_001_00000003", "b", "c", "d", "e", "f"]
    paths = [
        "S005/001/S005_001_00000003.png",
        "F001/T1/2440.jpg",
        "F001/T2/2440.jpg",
        "F001/T1/17.jpg",
        "x/solo.jpg",
        "F001/T1/18.jpg",
    ]
    found, report = table.match(ids, paths)
    assert found.tolist() == [0, -1, 1, 3, 4, -1]
    assert counts(report) == {ev.AMBIGUOUS: 1, ev.NO_IMAGE: 1, ev.REPEATED: 1, ev.NO_EVIDENCE: 2}
    assert example(report, ev.AMBIGUOUS) == "fex.csv:4"
    assert example(report, ev.NO_IMAGE) == "fex.csv:7"
    assert example(report, ev.REPEATED) == "fex.csv:8"
    assert report.examples[ev.NO_EVIDENCE] == ["b", "f"]
    evidence, _ = table.for_images(ids, paths)
    assert evidence.aus == (12,)
    values = evidence.intensities[:, 0].tolist()
    assert values[0] == pytest.approx(0.1) and values[3] == pytest.approx(0.4)
    assert math.isnan(values[1]) and math.isnan(values[5])
