"""Laterality on the synthetic faces: one-sided contempt drawn on a known side only, the face
halves split by the midline, and the lateral share of a map in an AU's region."""

import numpy as np
import pytest
import torch

from aubench.bench.runner import check_suite
from aubench.bench.suite import SuiteError, load_suite
from aubench.faces.codebook import ALL_AUS
from aubench.faces.landmarks import MEAN_FACE, face_halves, flip_landmarks
from aubench.faces.synth import (
    MOTION,
    ONE_SIDED_CLASS,
    SynthConfig,
    label_of,
    render,
    render_sample,
    sample_params,
)
from aubench.metrics.laterality import lateral_share
from tests.test_synth_counterfactual import diff_energy

ONE_SIDED = SynthConfig(num_classes=8, one_sided=True)
BOTH = SynthConfig(num_classes=8)


def contempt_faces(count: int = 6) -> list[int]:
    return [i for i in range(200) if label_of(0, "train", i, 8) == ONE_SIDED_CLASS][:count]


def test_one_sided_contempt_moves_and_marks_one_side_only():
    sides = set()
    for index in contempt_faces():
        params = sample_params(0, "train", index, ONE_SIDED)
        both = sample_params(0, "train", index, BOTH)
        assert params.side in (-1, 1) and both.side == 0
        sides.add(params.side)
        face, bilateral = render(params, 128), render(both, 128)
        neutral = render(params, 128, {})  # no AU at all
        moved = np.abs(face.landmarks - neutral.landmarks).max(1) > 1e-4
        # every moved landmark lies on the drawn side; the bilateral face moves both sides
        x = MEAN_FACE[:, 0] - 0.5
        assert moved.any() and (np.sign(x[moved]) == params.side).all()
        moved_both = np.abs(bilateral.landmarks - neutral.landmarks).max(1) > 1e-4
        assert set(np.sign(x[moved_both]).tolist()) == {-1.0, 1.0}
        # pixels change on the drawn side of the face only (up to the anti-aliased pixels at the
        # midline, where the lips meet)
        changed = diff_energy(face.image, neutral.image) > 0
        half = face_halves(torch.from_numpy(face.landmarks)[None], (128, 128),
                           torch.tensor([params.side]))[0].numpy()  # fmt: skip
        top, d = face.landmarks[27], face.landmarks[8] - face.landmarks[27]
        rows, cols = np.nonzero(changed & ~half)
        off = np.abs(d[0] * (rows - top[1]) - d[1] * (cols - top[0])) / np.linalg.norm(d)
        assert changed.sum() > 100 and len(off) <= 6 and (off < 1.5).all(), (index, off)
        sample = render_sample(0, "train", index, 64, ONE_SIDED)
        assert sample.side == params.side
    assert sides == {-1, 1}
    # other classes stay bilateral, and the easy 8-class faces are unchanged
    for index in range(16):
        if label_of(0, "train", index, 8) != ONE_SIDED_CLASS:
            a = render_sample(0, "train", index, 64, ONE_SIDED)
            b = render_sample(0, "train", index, 64, BOTH)
            assert a.side == 0 and np.array_equal(a.image, b.image)
    assert MOTION.shape == (len(ALL_AUS), 68, 2)


def test_face_halves_split_at_the_midline():
    points = torch.from_numpy(MEAN_FACE * 100 + 10).float()[None]  # upright, 120 px
    left = face_halves(points, (120, 120), torch.tensor([-1]))[0]
    right = face_halves(points, (120, 120), torch.tensor([1]))[0]
    none = face_halves(points, (120, 120), torch.tensor([0]))[0]
    midline_x = float(points[0, 27, 0])
    assert left[60, : int(midline_x) - 1].all() and not left[60, int(midline_x) + 2 :].any()
    assert right[60, int(midline_x) + 2 :].all() and not (left & right).any()
    assert not none.any()
    # the mirror image's side −1 half is the mirrored side +1 half (left/right parts swapped)
    mirrored = face_halves(flip_landmarks(points, 120), (120, 120), torch.tensor([-1]))[0]
    assert torch.equal(mirrored, right.flip(-1))


def test_lateral_share_golden():
    region = torch.zeros(1, 4, 6, dtype=torch.bool)
    region[0, 1:3, :] = True  # both sides
    side = torch.zeros(1, 4, 6, dtype=torch.bool)
    side[0, :, :3] = True
    maps = torch.zeros(3, 4, 6)
    maps[0, 1, 1] = 2.0  # on the side
    maps[1, 2, 4] = 1.0  # other side
    maps[2] = 1.0  # uniform: half the region on each side
    maps[2, 0, 0] = 50.0  # energy outside the region does not count
    share = lateral_share(maps, region.expand(3, -1, -1), side.expand(3, -1, -1))
    assert share.tolist() == [1.0, 0.0, 0.5]
    signed = torch.zeros(1, 4, 6)
    signed[0, 1, 0], signed[0, 1, 5] = 3.0, -5.0  # negative values are clipped
    assert lateral_share(signed, region, side).item() == 1.0
    empty = lateral_share(maps[:1], region, torch.zeros_like(side))
    assert torch.isnan(empty).all()
    assert torch.isnan(lateral_share(maps[:1], region, side, torch.tensor([False]))).all()


def test_the_laterality_suite_needs_one_sided_synthetic_faces():
    check_suite(load_suite("laterality"))
    for data in ("synthetic:n=96", "folder:/nowhere"):
        with pytest.raises(
            SuiteError, match=r"lateral_share scores faces whose AUs lie on a known"
        ):
            check_suite(load_suite("laterality", [f"data={data}"]))
