import numpy as np
import pytest
import torch

from aubench.faces.landmarks import rescale_landmarks
from aubench.landmarks.align import (
    align_face,
    crop_box,
    crop_face,
    eye_centres,
    resize_face,
    similarity_matrix,
    square_boxes,
    transform_points,
)
from tests.dataset_trees import dot_centre, face_points, image


def rotated_face(angle_deg: float, side: float, centre=(150.0, 140.0)) -> np.ndarray:
    points = face_points(-side / 2, -side / 2, side).astype(np.float64)
    t = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (points @ rotation.T + centre).astype(np.float32)


def test_square_boxes_keep_the_centre_and_take_the_longer_side():
    boxes = np.array([[10, 20, 50, 40], [0.4, 0.4, 10.6, 30.6], [5, 5, 25, 25]])
    np.testing.assert_array_equal(
        square_boxes(boxes), [[10, 10, 50, 50], [-10, 0, 20, 30], [5, 5, 25, 25]]
    )  # -9.5 rounds to even
    np.testing.assert_array_equal(square_boxes(boxes[2:], margin=0.5), [[0, 0, 30, 30]])


def test_crop_box_pads_with_zeros_outside_the_image():
    pixels = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3) + 1
    np.testing.assert_array_equal(crop_box(pixels, [1, 2, 4, 5]), pixels[2:5, 1:4])
    out = crop_box(pixels, [-2, -1, 3, 2])
    assert out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out[1:, 2:], pixels[:2, :3])
    assert not out[0].any() and not out[:, :2].any()
    with pytest.raises(ValueError, match="empty crop box"):
        crop_box(pixels, [3, 3, 3, 5])


def test_resize_face_matches_rescale_landmarks():
    points = face_points(4, 6, 40)
    out, moved = resize_face(image(60, 50), points, 32)
    assert out.shape == (32, 32, 3)
    expected = rescale_landmarks(torch.from_numpy(points)[None], 32 / 50, 32 / 60)[0].numpy()
    np.testing.assert_allclose(moved, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("angle", "side", "size"), [(0, 120, 112), (17, 150, 96), (-30, 200, 224), (25, 420, 64)]
)
def test_alignment_keeps_each_landmark_on_its_dot(angle, side, size):
    points = rotated_face(angle, side, centre=(300.0, 280.0))
    for index in (30, 48, 19):  # nose tip, mouth corner, brow: one dot per image
        pixels = image(600, 640, [points[index]], radius=max(3, round(side / 40)))
        crop = align_face(pixels, points, size)
        assert crop.image.shape == (size, size, 3)
        found = dot_centre(crop.image, crop.landmarks[index], window=max(6, size // 10))
        np.testing.assert_allclose(found, crop.landmarks[index], atol=0.6)
    left, right = eye_centres(crop.landmarks)
    assert abs(left[1] - right[1]) < 1e-3  # eyes level
    np.testing.assert_allclose(left, [(0.5 - 0.18) * size - 0.5, 0.4 * size - 0.5], atol=1e-3)
    np.testing.assert_allclose(right[0] - left[0], 0.36 * size, atol=1e-3)


def test_crop_face_keeps_each_landmark_on_its_dot():
    points = face_points(40, 30, 100)
    for index in (30, 36):
        pixels = image(200, 220, [points[index]])
        crop = crop_face(pixels, [40, 30, 140, 110], 64, landmarks=points, margin=0.2)
        found = dot_centre(crop.image, crop.landmarks[index], window=5)
        np.testing.assert_allclose(found, crop.landmarks[index], atol=0.4)
        np.testing.assert_allclose(crop.landmarks, transform_points(points, crop.matrix))


def test_five_point_eyes_and_similarity_matrix():
    five = np.array([[60.0, 40], [52, 40], [20, 40], [28, 40], [40, 60]])  # dlib's order
    left, right = eye_centres(five)
    np.testing.assert_allclose(left, [24, 40]) and np.testing.assert_allclose(right, [56, 40])
    matrix = similarity_matrix(left, right, 100, eye_distance=0.32, eye_line=0.4)
    np.testing.assert_allclose(
        transform_points([left, right], matrix), [[33.5, 39.5], [65.5, 39.5]], atol=1e-5
    )
    with pytest.raises(ValueError, match="cannot align"):
        similarity_matrix(left, left, 100)
    with pytest.raises(ValueError, match=r"\(68, 2\) iBUG or \(5, 2\)"):
        eye_centres(np.zeros((7, 2)))


def test_nan_landmarks_stay_nan():
    nan = np.full((68, 2), np.nan, dtype=np.float32)
    _, moved = resize_face(image(40, 40), nan, 20)
    assert np.isnan(moved).all()
