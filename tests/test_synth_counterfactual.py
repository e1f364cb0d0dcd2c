"""AU counterfactuals of the synthetic faces: an intervention removes or scales exactly an AU's
landmark displacement and appearance cues, and nothing else."""

import hashlib
import math
import pickle

import cv2
import numpy as np
import pytest
import torch

from aubench.data.batch import HeatmapCollate
from aubench.data.synthetic import SyntheticFaces
from aubench.faces import synth
from aubench.faces.codebook import ALL_AUS
from aubench.faces.synth import (
    MOTION,
    Intervention,
    SynthConfig,
    cue_box,
    render,
    render_sample,
    rendered_intensity,
    sample_params,
)

EIGHT = SynthConfig(num_classes=8)  # the default codebook's classes, plus contempt (AU12 + AU14)
#: Anti-aliasing margin (pixels) around the renderer's geometry: cv2's LINE_AA edges spread one
#: pixel, and the test rasterises the geometry without anti-aliasing (one more pixel).
AA_MARGIN_PX = 2.0
#: Half-width (IOD) of what is drawn along a landmark contour: the brows (half-width ≤ 0.1), the
#: nostrils (0.05 + 0.01 from the alar points), lid, alar and lip lines (≤ 0.03).
CONTOUR_REACH_IOD = 0.1
#: What an eye's landmarks define beyond their hull (IOD): the lid crease 0.1 above the upper
#: lid (0.025 wide) and the iris (radius ≤ 0.13) centred on the eye.
EYE_REACH_IOD = 0.16
CHAINS = (range(0, 17), range(17, 22), range(22, 27), range(27, 31), range(31, 36))
RINGS = (range(48, 60), range(60, 68))
EYES = (list(range(36, 42)), list(range(42, 48)))
EDGES = [(c[k], c[k + 1]) for c in CHAINS for k in range(len(c) - 1)] + [
    (r[k], r[(k + 1) % len(r)]) for r in RINGS for k in range(len(r))
]
AU5, AU23 = ALL_AUS.index(5), ALL_AUS.index(23)


def mark_reach(marks) -> float:
    """How far (IOD) an AU's marks reach from their region centre: line points plus half the
    line width, blob centres plus the larger semi-axis."""
    reach = 0.0
    if len(marks.points):
        reach = np.linalg.norm(marks.points, axis=1).max() + marks.width / 2
    if marks.blob_tones:
        ends = np.linalg.norm(marks.blob_centres, axis=1) + marks.blob_axes.max(1)
        reach = max(reach, ends.max())
    return float(reach)


def dependent_region(params, size, factual, counter, a_factual, a_counter) -> np.ndarray:
    """bool (size, size): where the renderer draws anything that depends on the AUs whose
    intensity differs between two renderings of ``params`` (landmarks and intensities given),
    from the renderer's own geometry, each piece in both renderings, plus AA_MARGIN_PX:

    - every contour edge with a moved end (the quad it sweeps), widened by CONTOUR_REACH_IOD;
    - an eye with a moved landmark or a changed AU5 (sclera): its hull, widened by EYE_REACH_IOD;
    - moved inner-lip points: the inner lips' hull (the teeth); AU23 changed: the lips' hull;
    - the marks of every AU drawn in either rendering whose intensity changed or whose centre
      landmarks moved (or that take the lip colour, when AU23 changed): a disc of its reach
      around each of its centres.
    """
    linear, _ = synth._pose_transform(params.pose, size)
    iod_px = params.identity.iod * params.pose.scale * size
    moved = (factual != counter).any(1)
    changed = a_factual != a_counter
    mask = np.zeros((size, size), np.uint8)

    def add(points: np.ndarray, reach_px: float) -> None:
        hull = cv2.convexHull(np.rint(np.asarray(points).reshape(-1, 2) * 16).astype(np.int32))
        piece = np.zeros_like(mask)
        cv2.fillConvexPoly(piece, hull, 1, cv2.LINE_8, 4)
        r = math.ceil(reach_px + AA_MARGIN_PX)
        mask[:] |= cv2.dilate(piece, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))

    for i, j in EDGES:
        if moved[i] or moved[j]:
            add(np.stack([factual[[i, j]], counter[[i, j]]]), CONTOUR_REACH_IOD * iod_px)
    for eye in EYES:
        if moved[eye].any() or changed[AU5]:
            add(np.stack([factual[eye], counter[eye]]), EYE_REACH_IOD * iod_px)
    if moved[60:68].any():
        add(np.stack([factual[60:68], counter[60:68]]), 0.0)
    if changed[AU23]:
        add(np.stack([factual[48:60], counter[48:60]]), 0.0)
    for marks in synth._PLACED_SKIN + synth._PLACED_LIP:
        k = marks.au_index
        anchors = (marks.weights > 0).any(0)
        if max(a_factual[k], a_counter[k]) > 0 and (
            changed[k] or moved[anchors].any() or (changed[AU23] and marks.base == "lip")
        ):
            offset = (marks.offset * params.identity.iod) @ linear.T
            for points in (factual, counter):
                for centre in marks.weights @ points + offset:
                    add(centre, mark_reach(marks) * iod_px)
    return mask > 0


def diff_energy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(-1)


def motion_px(params, size: int, au: int) -> np.ndarray:
    """(68, 2) pixel displacement of ``au`` at full intensity on this face."""
    linear, _ = synth._pose_transform(params.pose, size)
    return (MOTION[ALL_AUS.index(au)] * params.identity.iod) @ linear.T


# --- the intervention type ----------------------------------------------------------------------


def test_interventions_are_values_with_a_stable_string_form():
    assert Intervention() == Intervention.remove() == Intervention.scale(12, 1.0)
    assert Intervention().is_identity and str(Intervention()) == "factual"
    both = Intervention.remove(12, 6)
    assert both == Intervention({6: 0.0, 12: 0}) and hash(both) == hash(Intervention({12: 0, 6: 0}))
    assert str(both) == "au6x0+au12x0" and both.factors == {6: 0.0, 12: 0.0}
    assert str(Intervention({4: 0.25, 17: 1.0, 1: 1 / 3})) == "au1x0.3333333333333333+au4x0.25"
    assert str(Intervention.scale(9, 1e-5)) == "au9x0.00001"
    for v in (both, Intervention(), Intervention({4: 0.25, 1: 1 / 3}), Intervention.scale(9, 1e-5)):
        assert Intervention.parse(str(v)) == v
    assert len({Intervention.remove(12), Intervention.scale(12, 0.0), Intervention()}) == 2
    assert repr(Intervention.scale(4, 0.5)) == "Intervention({4: 0.5})"
    vector = Intervention({4: 0.5, 12: 0.0}).vector
    assert vector.tolist() == [0.5 if au == 4 else 0.0 if au == 12 else 1.0 for au in ALL_AUS]
    with pytest.raises(ValueError, match="read-only"):
        vector[0] = 2.0
    with pytest.raises(AttributeError, match="immutable"):
        both._factors = ()
    assert pickle.loads(pickle.dumps(both)) == both  # DataLoader workers receive them


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        ({3: 0.0}, "unknown AU 3"),
        ({12: 1.5}, r"AU12's factor must lie in \[0, 1\], got 1.5"),
        ({12: -0.1}, r"\[0, 1\]"),
        ({12: float("nan")}, "nan"),
        ({12: True}, "number"),
        ({12: "0"}, "number"),
        ({True: 0.0}, "unknown AU True"),
    ],
)
def test_bad_interventions_are_named(factors, message):
    with pytest.raises(ValueError, match=message):
        Intervention(factors)


def test_bad_strings_and_types_are_named():
    for text in ("", "au12", "au12x-1", "AU12x0", "au12x0,au6x0"):
        with pytest.raises(ValueError, match="malformed intervention"):
            Intervention.parse(text)
    with pytest.raises(ValueError, match="unknown AU 3"):
        Intervention.parse("au3x0")
    with pytest.raises(TypeError, match="Intervention or None, got dict"):
        render(sample_params(0, "train", 0), 64, intervention={12: 0.0})


# --- factual faces are untouched ------------------------------------------------------------------


def test_factual_faces_are_bit_identical_to_before_interventions():
    """SHA-256 of images, landmarks, labels and shortcut flags computed before interventions
    existed (OpenCV 5.1, numpy 2.4): committed reports depend on these faces."""
    cases = {
        "5d1b5eda3d1367b5683d9af46de2a2cba63d492e04e41454d8b4ea7788d12e6f": [
            (0, "train", i, 112, None) for i in range(14)
        ],
        "564986311cf590767706979d9d95a399103629c34d34ae12b51cba568f8dda3f": [
            (3, "test", i, 64, SynthConfig(num_classes=8, shortcut=0.5)) for i in range(16)
        ],
    }
    for expected, faces in cases.items():
        digest = hashlib.sha256()
        for face in faces:
            s = render_sample(*face)
            digest.update(s.image.tobytes() + s.landmarks.tobytes() + bytes([s.label, s.shortcut]))
        assert digest.hexdigest() == expected
    assert SyntheticFaces(21).content_fingerprint == "dbee72f77d257264"


def test_removing_nothing_reproduces_the_factual_face_bit_for_bit():
    for index in range(8):
        params = sample_params(4, "val", index, EIGHT)
        factual = render(params, 96)
        absent = next(au for au in ALL_AUS if au not in EIGHT.class_aus[params.label])
        for nothing in (Intervention(), Intervention.scale(12, 1.0), Intervention.remove(absent)):
            face = render(params, 96, intervention=nothing)
            assert face.image.tobytes() == factual.image.tobytes()
            assert face.landmarks.tobytes() == factual.landmarks.tobytes()


# --- an intervention changes exactly its AU -------------------------------------------------------


@pytest.mark.parametrize("label", range(1, 8))
def test_removing_an_au_changes_only_its_landmarks_and_its_region(label):
    """For each AU of the class, on faces of that class: the landmarks it moves go back by exactly
    its displacement and no other landmark moves; every changed pixel lies in the region the
    renderer draws from those landmarks and that AU (:func:`dependent_region`), which is small;
    the change is visible; and the face is the one drawn from scratch without that AU."""
    size = 112
    indices = [i for i in range(64) if synth.label_of(9, "train", i, 8) == label][:3]
    for index in indices:
        params = sample_params(9, "train", index, EIGHT)
        factual = render(params, size)
        a = rendered_intensity(params)
        for au in EIGHT.class_aus[label]:
            k = ALL_AUS.index(au)
            face = render(params, size, intervention=Intervention.remove(au))
            b = rendered_intensity(params, intervention=Intervention.remove(au))
            assert b[k] == 0 and np.array_equal(np.delete(a, k), np.delete(b, k))

            moves = (MOTION[k] != 0).any(1)
            assert np.array_equal(face.landmarks[~moves], factual.landmarks[~moves])
            np.testing.assert_allclose(
                face.landmarks - factual.landmarks, -a[k] * motion_px(params, size, au), atol=1e-4
            )

            diff = diff_energy(face.image, factual.image)
            region = dependent_region(params, size, factual.landmarks, face.landmarks, a, b)
            outside = np.argwhere((diff > 0) & ~region)
            assert len(outside) == 0, (index, au, outside[:5].tolist())
            assert diff.max() >= 40, (index, au)  # a visible change
            assert region.mean() < 0.2, (index, au)  # the region is a small part of the image

            scratch = {n: float(v) for n, v in zip(ALL_AUS, b, strict=True) if v > 0}
            assert np.array_equal(render(params, size, scratch).image, face.image)


@pytest.mark.parametrize("au", ALL_AUS)
def test_removing_any_au_from_a_face_showing_every_au(au):
    """The hardest case for confinement: all 20 AUs drawn at once, so every other AU's marks ride
    on the landmarks this one moves."""
    size = 96
    every = dict.fromkeys(ALL_AUS, 0.8)
    for index in range(2):
        params = sample_params(21, "test", index)
        factual = render(params, size, every)
        face = render(params, size, every, Intervention.remove(au))
        a = rendered_intensity(params, every)
        b = rendered_intensity(params, every, Intervention.remove(au))
        diff = diff_energy(face.image, factual.image)
        region = dependent_region(params, size, factual.landmarks, face.landmarks, a, b)
        assert diff.max() >= 40 and not ((diff > 0) & ~region).any(), (index, au)


def test_shortcut_patch_and_scene_are_kept():
    params = sample_params(0, "train", 3, SynthConfig(shortcut=1.0))
    factual = render(params, 80)
    face = render(params, 80, intervention=Intervention.remove(*EIGHT.class_aus[params.label]))
    x0, y0, x1, y1 = cue_box(80, params.scene.cue_corner)
    assert np.array_equal(face.image[y0:y1, x0:x1], factual.image[y0:y1, x0:x1])
    assert np.array_equal(face.image, render(params, 80, {}).image)  # every AU gone: neutral


# --- determinism and dose -------------------------------------------------------------------------


def test_same_key_gives_the_identical_counterfactual():
    remove = Intervention.remove(4)
    first = render_sample(2, "test", 6, 80, None, remove)
    np.random.seed(7)  # the global RNG plays no part, nor what was rendered before
    render_sample(2, "test", 5, 80, None, Intervention.scale(1, 0.5))
    again = render_sample(2, "test", 6, 80, None, Intervention({4: 0}))
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)


def test_scale_zero_is_remove_and_scale_one_is_factual():
    for index in range(7):
        factual = render_sample(1, "train", index, 64)
        for au in synth._DEFAULT_CONFIG.class_aus[factual.label]:
            zero = render_sample(1, "train", index, 64, None, Intervention.scale(au, 0.0))
            removed = render_sample(1, "train", index, 64, None, Intervention.remove(au))
            one = render_sample(1, "train", index, 64, None, Intervention.scale(au, 1.0))
            assert np.array_equal(zero.image, removed.image)
            assert np.array_equal(one.image, factual.image)
            assert np.array_equal(one.au_intensity, factual.au_intensity)


@pytest.mark.parametrize("au", [4, 6, 12, 26])
def test_evidence_grows_with_the_scale(au):
    """Dose-response: landmarks move linearly with the factor, and the mean pixel difference to
    the AU-removed face grows strictly with it."""
    label = next(c for c, aus in enumerate(EIGHT.class_aus) if au in aus)
    index = next(i for i in range(64) if synth.label_of(3, "val", i, 8) == label)
    params = sample_params(3, "val", index, EIGHT)
    k = ALL_AUS.index(au)
    scales = (0.0, 0.25, 0.5, 0.75, 1.0)
    faces = [render(params, 112, intervention=Intervention.scale(au, s)) for s in scales]
    for s, face in zip(scales, faces, strict=True):
        expected = faces[0].landmarks + s * params.au_intensity[k] * motion_px(params, 112, au)
        np.testing.assert_allclose(face.landmarks, expected, atol=1e-4)
    energy = [diff_energy(face.image, faces[0].image).mean() for face in faces]
    assert energy[0] == 0 and all(np.diff(energy) > 0), np.round(energy, 3)


# --- the dataset API ------------------------------------------------------------------------------


def test_dataset_exposes_the_rendered_intensities():
    dataset = SyntheticFaces(8, size=64, num_classes=8)
    for index in range(8):
        sample, params = dataset[index], sample_params(0, "train", index, dataset.config)
        shown = [ALL_AUS[k] for k in np.flatnonzero(sample["au_intensity"].numpy())]
        assert shown == sorted(dataset.config.class_aus[sample["label"]])
        assert sample["au_intensity"].dtype == torch.float32
        np.testing.assert_array_equal(
            sample["au_intensity"].numpy(), rendered_intensity(params).astype(np.float32)
        )


def test_counterfactual_sample_matches_the_renderer():
    dataset = SyntheticFaces(10, size=64, split="test", seed=5, normalize=False)
    index = 4
    label = dataset[index]["label"]
    au = dataset.config.class_aus[label][0]
    remove = Intervention.remove(au)
    sample = dataset.counterfactual(index, remove)
    raw = render_sample(5, "test", index, 64, dataset.config, remove)
    assert set(sample) == set(dataset[index])
    assert sample["id"] == f"synthetic-test-000004@au{au}x0" == dataset.sample_id(index, remove)
    assert sample["label"] == label
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy() * 255, raw.image)
    np.testing.assert_array_equal(sample["landmarks"].numpy(), raw.landmarks)
    assert sample["au_intensity"][ALL_AUS.index(au)] == 0
    identity, factual = dataset.counterfactual(-6, Intervention()), dataset[index]
    for key, value in factual.items():
        same = (
            torch.equal(identity[key], value) if torch.is_tensor(value) else identity[key] == value
        )
        assert same, key


def test_batched_counterfactuals_equal_single_ones():
    dataset = SyntheticFaces(7, size=64, seed=2)
    indices = [0, 3, 3, 6]
    interventions = [Intervention.remove(6), Intervention(), Intervention.scale(4, 0.5)] * 2
    batch = dataset.counterfactuals(indices, interventions[:4])
    assert batch["image"].shape == (4, 3, 64, 64) and batch["au_intensity"].shape == (4, 20)
    for row, (index, v) in enumerate(zip(indices, interventions[:4], strict=True)):
        single = dataset.counterfactual(index, v)
        assert batch["id"][row] == single["id"]
        for key in ("image", "landmarks", "au_intensity"):
            assert torch.equal(batch[key][row], single[key]), key
    with_maps = dataset.counterfactuals([1, 2], Intervention.remove(12), HeatmapCollate())
    assert with_maps["heatmap"].shape == (2, 64, 64) and with_maps["id"][0].endswith("@au12x0")
    with pytest.raises(ValueError, match="2 indices but 3 interventions"):
        dataset.counterfactuals([0, 1], interventions[:3])
    with pytest.raises(IndexError):
        dataset.counterfactuals([7], Intervention())
