import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aubench.faces.landmarks import (
    FLIP_PERMUTATION,
    GROUPS,
    MEAN_FACE,
    as_landmarks,
    face_scale,
    finite_faces,
    flip_landmarks,
    rescale_landmarks,
)


def test_groups_partition_the_68_points():
    indices = sorted(i for group in GROUPS.values() for i in group)
    assert indices == list(range(68))


def test_flip_permutation_is_an_involution_that_swaps_sides():
    perm = FLIP_PERMUTATION
    assert all(perm[perm[i]] == i for i in range(68))
    assert perm[36] == 45 and perm[39] == 42 and perm[48] == 54 and perm[0] == 16
    assert [perm[i] for i in (8, 27, 30, 33, 51, 57, 62, 66)] == [8, 27, 30, 33, 51, 57, 62, 66]
    for left, right in [("left_eye", "right_eye"), ("left_brow", "right_brow")]:
        assert {perm[i] for i in GROUPS[left]} == set(GROUPS[right])


def test_mean_face_is_mirror_symmetric():
    face = torch.tensor(MEAN_FACE)[None]
    mirrored = flip_landmarks(face, width=2)  # x ↦ 1 − x: the mirror of the unit frame
    torch.testing.assert_close(mirrored, face)


@settings(max_examples=30, deadline=None)
@given(st.floats(10, 300), st.floats(-np.pi, np.pi), st.floats(-50, 50), st.floats(-50, 50))
def test_face_scale_is_the_inter_ocular_distance_and_pose_invariant(size, angle, dx, dy):
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = torch.tensor(MEAN_FACE @ rotation.T * size + [dx, dy])[None]
    assert face_scale(face).item() == pytest.approx(0.4 * size, rel=1e-9)


def test_flip_twice_is_identity_and_mirrors_x():
    face = torch.tensor(MEAN_FACE * 90 + 5)[None]
    flipped = flip_landmarks(face, 100)
    assert flipped[0, 45, 0] == pytest.approx(99 - face[0, 36, 0].item())
    torch.testing.assert_close(flip_landmarks(flipped, 100), face)


def test_rescale_uses_pixel_centres():
    point = torch.tensor([[[0.0, 0.0]]]).expand(1, 68, 2)
    # pixel 0 of a 2× upsampled image covers source [−0.5, 0): its centre is −0.25
    assert rescale_landmarks(point, 2, 2)[0, 0].tolist() == [0.5, 0.5]
    assert rescale_landmarks(rescale_landmarks(point, 2, 2), 0.5, 0.5).allclose(point)


def test_validity_and_shape_checks():
    good = np.zeros((3, 68, 2))
    good[1, 40, 0] = np.nan
    good[2, 0, 1] = np.inf
    assert finite_faces(as_landmarks(good)).tolist() == [True, False, False]
    assert as_landmarks(np.zeros((68, 2))).shape == (1, 68, 2)
    assert as_landmarks(np.zeros((2, 68, 2), dtype=np.int64)).dtype == torch.float32
    assert face_scale(as_landmarks(good))[1].isnan()
    with pytest.raises(ValueError, match=r"\(B, 68, 2\).*\(5, 2\)"):
        as_landmarks(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="real numbers"):
        as_landmarks(np.zeros((68, 2), dtype=bool))
