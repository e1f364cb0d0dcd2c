import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from aubench.faces import synth
from aubench.faces.codebook import ALL_AUS, Expression
from aubench.faces.heatmaps import au_heatmaps
from aubench.faces.synth import (
    CUE_COLOURS,
    MAX_SIZE,
    MIN_SIZE,
    SynthConfig,
    cue_box,
    face_landmarks,
    label_of,
    render,
    render_sample,
    sample_params,
)

NON_NEUTRAL = range(1, 7)
#: The default region model's extent: its Gaussian blobs at one σ (regions.py: radius = σ).
REGION_LEVEL = math.exp(-0.5)
#: The dilation of AU regions (in IOD) within which AU evidence must lie.
DILATION_IOD = 0.25


def iod(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[42:48].mean(0) - landmarks[36:42].mean(0)))


def unlit(params):
    """The same face with uniform unit gain (drawn colours reach the image unchanged)."""
    scene = dataclasses.replace(params.scene, light=np.array([1.0, 0.0, 0.0]))
    return dataclasses.replace(params, scene=scene)


def with_pose(params, **changes):
    return dataclasses.replace(params, pose=dataclasses.replace(params.pose, **changes))


def diff_energy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).sum(-1)


def region_mask(landmark_sets, label, size, codebook=None) -> np.ndarray:
    """Union over landmark sets of the label's default AU regions, dilated by DILATION_IOD."""
    points = torch.from_numpy(np.stack(landmark_sets))
    maps, valid = au_heatmaps(points, [label] * len(landmark_sets), size, codebook=codebook)
    assert valid.all()
    mask = (maps > REGION_LEVEL).any(0).numpy().astype(np.uint8)
    r = max(1, round(DILATION_IOD * iod(landmark_sets[0])))
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_split_index_gives_identical_sample():
    a = render_sample(3, "val", 17, 96)
    np.random.seed(123)  # the global RNG must play no part
    render_sample(3, "val", 5, 96)  # nor whatever was rendered before
    b = render_sample(3, "val", 17, 96)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.landmarks.tobytes() == b.landmarks.tobytes()
    assert a.label == b.label and a.shortcut == b.shortcut
    assert a.image.dtype == np.uint8 and a.image.shape == (96, 96, 3)
    assert a.landmarks.dtype == np.float32 and a.landmarks.shape == (68, 2)


@pytest.mark.parametrize(
    "other", [(3, "val", 18), (4, "val", 17), (3, "train", 17), (3, "test", 17)]
)
def test_changing_index_seed_or_split_changes_the_face(other):
    a = render_sample(3, "val", 17, 96)
    b = render_sample(*other, 96)
    assert not np.array_equal(a.image, b.image)
    assert np.abs(a.landmarks - b.landmarks).max() > 1.0


def test_golden_labels_and_landmarks_pin_the_generator():
    """(seed, split, index) → sample is a contract: these values must not drift."""
    assert [label_of(0, "train", i) for i in range(14)] == [
        3, 4, 6, 0, 1, 5, 2, 1, 3, 5, 2, 4, 0, 6
    ]  # fmt: skip
    landmarks = render_sample(0, "train", 0, 112).landmarks
    np.testing.assert_allclose(
        landmarks[[0, 8, 30, 36, 48, 66]],
        [[25.111, 41.750], [58.912, 84.978], [56.294, 54.829],
         [40.227, 41.574], [44.926, 68.090], [57.965, 74.069]],
        atol=2e-3,
    )  # fmt: skip


def test_labels_are_balanced_in_blocks_of_num_classes():
    for num_classes in (7, 8):
        labels = [label_of(1, "test", i, num_classes) for i in range(num_classes * 30)]
        blocks = np.array(labels).reshape(30, num_classes)
        assert all(sorted(block) == list(range(num_classes)) for block in blocks)
        assert len({tuple(block) for block in blocks}) > 20  # the order within blocks varies


def test_bad_arguments_are_named():
    for size in (MIN_SIZE - 1, MAX_SIZE + 1, 100.0, True):
        with pytest.raises(ValueError, match=f"size .*{size!r}"):
            render_sample(0, "train", 0, size)
    with pytest.raises(ValueError, match="'dev'"):
        sample_params(0, "dev", 0)
    with pytest.raises(ValueError, match="index"):
        sample_params(0, "train", -1)
    with pytest.raises(ValueError, match="seed"):
        sample_params(-5, "train", 0)
    with pytest.raises(ValueError, match="num_classes"):
        SynthConfig(num_classes=6)
    with pytest.raises(ValueError, match="shortcut"):
        SynthConfig(shortcut=1.5)
    with pytest.raises(ValueError, match="indistinguishable"):
        SynthConfig(codebook="generic")
    with pytest.raises(ValueError, match="AUs"):
        render(sample_params(0, "train", 0), 64, {3: 1.0})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render(sample_params(0, "train", 0), 64, {12: 1.5})
    with pytest.raises(ValueError, match="num_classes"):
        SynthConfig(num_classes=7.0)
    with pytest.raises(ValueError, match="contempt"):
        render(sample_params(0, "train", 0), 64, "contempt")  # 7 classes: no contempt


# --- landmarks and drawing agree ----------------------------------------------------------------


def test_landmarks_lie_inside_the_image_for_every_class():
    config = SynthConfig(num_classes=8)
    for index in range(300):
        params = sample_params(5, "train", index, config)
        for label in range(8):
            points = face_landmarks(params, 64, label)
            assert points.min() >= 0.0 and points.max() <= 63.0, (index, label)


def test_render_returns_the_landmarks_it_drew_from():
    params = sample_params(0, "test", 9)
    for label in range(7):
        drawn = render(params, 80, label).landmarks
        np.testing.assert_array_equal(drawn, face_landmarks(params, 80, label))


def pixel(image: np.ndarray, point: np.ndarray) -> np.ndarray:
    x, y = np.rint(point).astype(int)
    return image[y, x].astype(float)


def test_features_are_drawn_at_their_landmarks():
    size = 112
    for index in range(40):
        params = unlit(sample_params(7, "train", index))
        image, points = render(params, size, Expression.NEUTRAL)
        skin, brow = params.identity.skin, params.identity.brow_colour
        for eye in (points[36:42], points[42:48]):  # pupil and iris at the eye centre
            assert np.linalg.norm(pixel(image, eye.mean(0)) - skin) > 50, index
        for i in (18, 19, 20, 23, 24, 25):  # brows run through their landmarks
            colour = pixel(image, points[i])
            assert np.linalg.norm(colour - brow) < np.linalg.norm(colour - skin), (index, i)
        for a, b in ((50, 61), (52, 63), (58, 67), (56, 65), (62, 66)):  # lips and their seam
            colour = pixel(image, (points[a] + points[b]) / 2)
            assert np.linalg.norm(colour - skin) > 25, (index, a, b)
        for i in (31, 35):  # the nose wings' ends lie on the dark alar line
            assert pixel(image, points[i]).sum() < skin.sum() - 40, (index, i)
        cheek = pixel(image, 0.5 * (points[2] + points[31]))  # between jaw and nose: plain skin
        assert np.abs(cheek - skin).max() <= 2


def test_pose_moves_landmarks_and_drawing_together():
    """Another pose is a similarity transform T of the face: landmarks map by T exactly, and the
    face pixels of the first image warped by T match the second image."""
    size = 128
    for index in range(8):
        params = unlit(sample_params(11, "train", index))
        moved = with_pose(
            params,
            angle=params.pose.angle + 25.0,
            scale=params.pose.scale * 0.85,
            shift=params.pose.shift + np.array([0.05, -0.03]),
        )
        first, second = render(params, size), render(moved, size)
        src, dst = first.landmarks.astype(np.float64), second.landmarks.astype(np.float64)
        transform, _ = cv2.estimateAffinePartial2D(src, dst)
        mapped = src @ transform[:, :2].T + transform[:, 2]
        np.testing.assert_allclose(mapped, dst, atol=1e-3)  # landmarks: exactly a similarity
        theta = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
        assert theta == pytest.approx(25.0, abs=1e-3)

        face = np.zeros((size, size), np.uint8)
        cv2.fillPoly(face, [np.rint(dst[:17]).astype(np.int32)], 1)
        face = cv2.erode(face, np.ones((5, 5), np.uint8)) > 0
        warped = cv2.warpAffine(first.image, transform, (size, size), flags=cv2.INTER_LINEAR)
        error = diff_energy(warped, second.image)[face].mean() / 3
        reverse = transform[:, :2].T  # the same scale, rotating the other way
        shift = dst.mean(0) - reverse @ src.mean(0)
        wrong = cv2.warpAffine(first.image, np.hstack([reverse, shift[:, None]]), (size, size))
        wrong_error = diff_energy(wrong, second.image)[face].mean() / 3
        assert error < 12, (index, error)
        assert wrong_error > 2 * error


def test_integer_translation_shifts_the_face_pixels_exactly():
    size = 96
    params = unlit(sample_params(2, "val", 4))
    shifted = with_pose(params, shift=params.pose.shift + np.array([5, -3]) / size)
    a, b = render(params, size), render(shifted, size)
    np.testing.assert_allclose(b.landmarks - a.landmarks, np.tile([5.0, -3.0], (68, 1)), atol=1e-4)
    inside = np.zeros((size, size), np.uint8)
    cv2.fillPoly(inside, [np.rint(a.landmarks[:17]).astype(np.int32)], 1)
    ys, xs = np.nonzero(cv2.erode(inside, np.ones((3, 3), np.uint8)))
    assert len(ys) > 500
    assert np.array_equal(a.image[ys, xs], b.image[ys - 3, xs + 5])


# --- AU evidence lies in the AU regions ---------------------------------------------------------


def test_expression_evidence_lies_in_the_class_au_regions():
    """Same identity/pose/scene as neutral and as each class: ≥ 90% of the pixel difference lies
    in the class's default AU regions (from both renderings' landmarks), dilated by 0.25 IOD."""
    size = 112
    fractions = {label: [] for label in NON_NEUTRAL}
    for index in range(12):
        params = sample_params(13, "train", index)
        neutral = render(params, size, Expression.NEUTRAL)
        for label in NON_NEUTRAL:
            face = render(params, size, label)
            diff = diff_energy(face.image, neutral.image)
            mask = region_mask([neutral.landmarks, face.landmarks], label, size)
            assert diff.sum() > 0
            fractions[label].append(diff[mask].sum() / diff.sum())
    for label, values in fractions.items():
        assert min(values) >= 0.9, (Expression(label).name, np.round(values, 3))


@pytest.mark.parametrize("au", ALL_AUS)
def test_every_au_is_drawn_visibly_inside_its_own_region(au):
    size = 112
    fractions = []
    for index in range(6):
        params = sample_params(17, "train", index)
        plain, face = render(params, size, {}), render(params, size, {au: 1.0})
        diff = diff_energy(face.image, plain.image)
        assert diff.max() >= 90  # a visible change (summed over RGB) somewhere
        mask = region_mask([plain.landmarks, face.landmarks], 1, size, {"happiness": [au]})
        fractions.append(diff[mask].sum() / diff.sum())
    assert np.mean(fractions) >= 0.88, np.round(fractions, 3)


def test_nuisance_factors_do_not_depend_on_the_label():
    """Two configs that assign different labels to an item draw the same face parameters."""
    seven, eight = SynthConfig(num_classes=7), SynthConfig(num_classes=8)
    for index in range(30):
        a, b = sample_params(0, "train", index, seven), sample_params(0, "train", index, eight)
        assert np.array_equal(a.identity.shape, b.identity.shape)
        assert np.array_equal(a.au_intensity, b.au_intensity)
        assert a.pose.angle == b.pose.angle and np.array_equal(a.scene.clutter, b.scene.clutter)
        assert np.array_equal(render(a, 64, 3).image, render(b, 64, 3).image)


def test_contempt_shows_the_emfacs_aus_with_eight_classes():
    config = SynthConfig(num_classes=8)
    assert config.class_aus[Expression.CONTEMPT] == (12, 14)
    params = sample_params(0, "train", 0, config)
    contempt = render(params, 96, Expression.CONTEMPT).image
    explicit = render(params, 96, {12: params.au_intensity[8], 14: params.au_intensity[9]}).image
    assert ALL_AUS[8:10] == (12, 14)
    assert np.array_equal(contempt, explicit)
    assert not np.array_equal(contempt, render(params, 96, Expression.HAPPINESS).image)


# --- the shortcut cue ---------------------------------------------------------------------------


def cue_colour(image: np.ndarray, corner: int) -> int:
    """The class whose cue colour best matches the patch (chromaticity: lighting scales RGB)."""
    x0, y0, x1, y1 = cue_box(image.shape[0], corner)
    patch = image[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].reshape(-1, 3).astype(float).mean(0)
    palette = CUE_COLOURS.astype(float)
    cosine = palette @ patch / (np.linalg.norm(palette, axis=1) * np.linalg.norm(patch))
    return int(np.argmax(cosine))


def test_no_shortcut_cue_by_default():
    assert all(sample_params(0, "train", i).cue_class is None for i in range(200))


def test_full_shortcut_colours_the_cue_by_label_in_train():
    config = SynthConfig(shortcut=1.0)
    for index in range(70):
        params = sample_params(0, "train", index, config)
        assert params.cue_class == params.label
        image = render(params, 64).image
        assert cue_colour(image, params.scene.cue_corner) == params.label
        bare = render(dataclasses.replace(params, cue_class=None), 64).image
        changed = np.argwhere(diff_energy(image, bare) > 0)
        x0, y0, x1, y1 = cue_box(64, params.scene.cue_corner)
        assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1  # only the patch changes
        assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1


def test_cue_is_outside_the_face_and_every_au_region():
    config = SynthConfig(shortcut=1.0)
    size = 64
    params = [sample_params(3, "train", i, config) for i in range(200)]
    points = np.stack([face_landmarks(p, size, label) for p in params for label in range(7)])
    maps, _ = au_heatmaps(torch.from_numpy(points), [0] * len(points), size, regions="generic")
    for k, p in enumerate(params):
        x0, y0, x1, y1 = cue_box(size, p.scene.cue_corner)
        for label in range(7):
            face = points[7 * k + label]
            inside_x = (face[:, 0] >= x0 - 1) & (face[:, 0] <= x1)
            assert not (inside_x & (face[:, 1] >= y0 - 1)).any()
            assert maps[7 * k + label, y0:y1, x0:x1].max() < 0.01


def test_test_split_decorrelates_the_cue_from_the_label():
    config = SynthConfig(shortcut=1.0)
    pairs = [
        (p.label, p.cue_class) for p in (sample_params(0, "test", i, config) for i in range(700))
    ]
    agreement = np.mean([label == cue for label, cue in pairs])
    assert agreement < 0.25  # chance is 1/7; a correlated cue would give 1
    counts = np.bincount([cue for _, cue in pairs], minlength=7)
    assert counts.min() >= 60  # every colour is used, roughly uniformly (expected 100)
    forced = SynthConfig(shortcut=1.0, shortcut_mode="correlated")
    assert all(
        sample_params(0, "test", i, forced).cue_class == label_of(0, "test", i) for i in range(50)
    )
    decorrelated = SynthConfig(shortcut=1.0, shortcut_mode="decorrelated")
    train_pairs = [(p.label, p.cue_class) for p in
                   (sample_params(0, "train", i, decorrelated) for i in range(350))]  # fmt: skip
    assert np.mean([label == cue for label, cue in train_pairs]) < 0.3


def test_partial_shortcut_presence_follows_rho_independently_of_the_label():
    config = SynthConfig(shortcut=0.5)
    params = [sample_params(0, "train", i, config) for i in range(700)]
    present = np.array([p.cue_class is not None for p in params])
    labels = np.array([p.label for p in params])
    assert 0.43 < present.mean() < 0.57
    per_class = [present[labels == c].mean() for c in range(7)]
    assert max(per_class) - min(per_class) < 0.25
    assert all(p.cue_class == p.label for p in params if p.cue_class is not None)


def test_renderer_sets_no_global_state():
    threads = cv2.getNumThreads()
    state = np.random.get_state()[1].copy()
    render_sample(0, "train", 0, 64)
    assert cv2.getNumThreads() == threads
    assert np.array_equal(np.random.get_state()[1], state)
    assert synth.MOTION.shape == (len(ALL_AUS), 68, 2)
