"""The synthetic faces' difficulty knobs (aubench.faces.synth_difficulty): each knob does what its
documentation says and nothing else, the easy faces are untouched, counterfactuals keep a face's
occluder and noise, and the presets and data-spec options resolve as documented."""

import cv2
import numpy as np
import pytest

from aubench.data.registry import open_dataset
from aubench.data.synthetic import SyntheticFaces
from aubench.faces.codebook import ALL_AUS
from aubench.faces.synth import (
    Intervention,
    SynthConfig,
    given_label_of,
    label_of,
    render,
    render_sample,
    rendered_intensity,
    sample_params,
)
from aubench.faces.synth_difficulty import (
    DIFFICULTIES,
    OCCLUDERS,
    Difficulty,
    get_difficulty,
)
from tests.test_synth_counterfactual import EIGHT, dependent_region, diff_energy


def config(**knobs) -> SynthConfig:
    return SynthConfig(difficulty=knobs)


def test_easy_is_the_default_and_draws_nothing_new():
    assert SynthConfig().difficulty == DIFFICULTIES["easy"] == Difficulty()
    assert SynthConfig().difficulty.is_easy and not DIFFICULTIES["moderate"].is_easy
    params = sample_params(0, "train", 5)
    assert params.degradation is None and params.given_label == params.label
    for index in range(6):  # the explicit preset renders the same bytes as the default
        a, b = render_sample(2, "val", index, 64), render_sample(2, "val", index, 64, config())
        assert a.image.tobytes() == b.image.tobytes() and a.label == b.label
    # easy faces keep their earlier fingerprint (pinned in test_synth_counterfactual), others not
    easy = SyntheticFaces(21, difficulty="easy").content_fingerprint
    assert easy == "dbee72f77d257264"
    assert SyntheticFaces(21, difficulty="moderate").content_fingerprint != easy


def test_intensity_range_is_drawn_from():
    low, high = 0.1, 0.3
    for index in range(20):
        params = sample_params(1, "train", index, config(intensity=(low, high)))
        assert ((params.au_intensity >= low) & (params.au_intensity <= high)).all()
    # the same uniforms, mapped onto the range: the order of AU intensities is kept
    easy = sample_params(1, "train", 3).au_intensity
    subtle = sample_params(1, "train", 3, config(intensity=(low, high))).au_intensity
    np.testing.assert_allclose((easy - 0.6) / 0.4, (subtle - low) / (high - low), atol=1e-12)


def test_noise_is_gaussian_deterministic_and_kept_by_counterfactuals():
    sigma = 12.0
    clean = render_sample(0, "test", 4, 96).image.astype(float)
    noisy = render_sample(0, "test", 4, 96, config(noise=sigma)).image.astype(float)
    again = render_sample(0, "test", 4, 96, config(noise=sigma)).image.astype(float)
    assert np.array_equal(noisy, again)
    middle = (clean > 3 * sigma) & (clean < 255 - 3 * sigma)  # no clipping there
    residual = (noisy - clean)[middle]
    assert abs(residual.mean()) < 0.5 and abs(residual.std() - sigma) < 0.5
    other = render_sample(0, "test", 5, 96, config(noise=sigma)).image.astype(float)
    other_clean = render_sample(0, "test", 5, 96).image.astype(float)
    assert not np.array_equal(noisy - clean, other - other_clean)  # a draw per face
    # removing an AU of a noisy face changes only the pixels it changes without noise
    for index in [i for i in range(16) if label_of(9, "train", i, 8) != 0][:4]:
        params = sample_params(9, "train", index, SynthConfig(8, difficulty={"noise": sigma}))
        au = EIGHT.class_aus[params.label][0]
        factual, face = (
            render(params, 112),
            render(params, 112, intervention=Intervention.remove(au)),
        )
        a, b = (
            rendered_intensity(params),
            rendered_intensity(params, intervention=Intervention.remove(au)),
        )
        region = dependent_region(params, 112, factual.landmarks, face.landmarks, a, b)
        assert not ((diff_energy(face.image, factual.image) > 0) & ~region).any(), index


def sharpness(image: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F)).mean())


def test_blur_softens_the_face_and_scales_with_the_face():
    for index in range(3):
        sharp = render_sample(0, "train", index, 112).image
        soft = render_sample(0, "train", index, 112, config(blur=0.06)).image
        softer = render_sample(0, "train", index, 112, config(blur=0.12)).image
        assert sharpness(softer) < sharpness(soft) < 0.8 * sharpness(sharp)
    # σ is in inter-ocular distances: the same face at twice the size is blurred the same
    small = render_sample(0, "train", 0, 64, config(blur=0.1)).image
    large = render_sample(0, "train", 0, 128, config(blur=0.1)).image
    down = cv2.resize(large, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(float) - down).mean() < 6


def test_occluders_cover_their_part_of_the_face_only():
    every = config(occluders=1.0)
    kinds = [sample_params(0, "train", i, every).degradation.occluder for i in range(60)]
    assert set(kinds) == {0, 1, 2} and min(kinds.count(k) for k in range(3)) >= 10
    for index in range(12):
        params = sample_params(0, "train", index, every)
        plain = render_sample(0, "train", index, 128).image
        covered = render(params, 128).image
        changed = diff_energy(covered, plain) > 0
        points = render(params, 128).landmarks
        rows = np.nonzero(changed)[0]
        name = OCCLUDERS[params.degradation.occluder]
        centre_y = rows.mean()
        if name == "hand":  # around the mouth and chin
            assert centre_y > points[33, 1], (index, name)
        elif name == "glasses":  # around the eyes
            assert abs(centre_y - points[36:48, 1].mean()) < 0.1 * 128, (index, name)
        else:  # fringe: above the eyes
            assert centre_y < points[36:48, 1].mean(), (index, name)
        assert 0.01 < changed.mean() < 0.25, (index, name)
    none = config(occluders=0.0, noise=1.0)
    assert all(sample_params(0, "train", i, none).degradation.occluder is None for i in range(20))


def test_pose_and_identity_stretch_their_ranges_only():
    wide = [sample_params(0, "train", i, config(pose=2.0)) for i in range(200)]
    base = [sample_params(0, "train", i) for i in range(200)]
    angles = np.array([p.pose.angle for p in wide])
    np.testing.assert_allclose(angles, 2 * np.array([p.pose.angle for p in base]), atol=1e-9)
    assert np.abs(angles).max() > 20 and np.abs(angles).max() <= 30
    assert all(
        np.array_equal(a.identity.shape, b.identity.shape) for a, b in zip(wide, base, strict=True)
    )
    varied = [sample_params(0, "train", i, config(identity=2.0)) for i in range(200)]
    spread = np.std([np.ptp(p.identity.shape[48:68, 0]) for p in varied])
    assert spread > 1.5 * np.std([np.ptp(p.identity.shape[48:68, 0]) for p in base])
    assert all(
        np.array_equal(a.identity.skin, b.identity.skin) for a, b in zip(varied, base, strict=True)
    )
    assert all(a.pose.angle == b.pose.angle for a, b in zip(varied, base, strict=True))


def test_label_noise_flips_training_labels_only_and_the_face_keeps_its_class():
    noisy = SynthConfig(difficulty={"label_noise": 0.2})
    n = 2000
    given = np.array([given_label_of(0, "train", i, noisy) for i in range(n)])
    true = np.array([label_of(0, "train", i) for i in range(n)])
    flipped = given != true
    assert 0.17 < flipped.mean() < 0.23  # binomial(2000, 0.2): ±3.4σ
    assert np.bincount(given[flipped], minlength=7).min() > 20  # any other class
    for index in np.flatnonzero(flipped)[:5].tolist():
        sample = render_sample(0, "train", index, 64, noisy)
        assert sample.label == given[index]
        drawn = {au for au, v in zip(ALL_AUS, sample.au_intensity, strict=True) if v > 0}
        assert drawn == set(noisy.class_aus[true[index]])  # it shows its true class
    for split in ("val", "test"):
        assert all(given_label_of(0, split, i, noisy) == label_of(0, split, i) for i in range(200))
    faces = SyntheticFaces(40, 64, difficulty={"label_noise": 0.5})
    assert faces.labels == [faces[i]["label"] for i in range(40)]


def test_presets_knobs_and_data_spec_options():
    assert get_difficulty("hard") == DIFFICULTIES["hard"]
    assert get_difficulty({"preset": "moderate", "noise": 2}).noise == 2
    assert get_difficulty({"blur": 0.1}) == Difficulty(blur=0.1)
    assert get_difficulty("moderate", intensity=[0.3, 0.5]).intensity == (0.3, 0.5)
    with pytest.raises(ValueError, match="unknown difficulty 'brutal'; expected one of easy"):
        get_difficulty("brutal")
    with pytest.raises(ValueError, match=r"unknown difficulty knobs \['glare'\]"):
        get_difficulty({"glare": 1})
    with pytest.raises(ValueError, match=r"intensity must be .* got \(0.8, 0.2\)"):
        Difficulty(intensity=(0.8, 0.2))
    with pytest.raises(ValueError, match="occluders must be a probability"):
        Difficulty(occluders=1.5)
    with pytest.raises(ValueError, match="noise must be a number in"):
        Difficulty(noise=-1)
    data = open_dataset(
        "synthetic:n=14,difficulty=hard,noise=0,intensity_low=0.5", "train", size=64
    )
    assert data.config.difficulty == Difficulty(
        intensity=(0.5, 0.85), noise=0, blur=0.03, occluders=0.25, pose=1.3, identity=1.3,
        label_noise=0.05,
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown option"):
        open_dataset("synthetic:n=14,glare=1", "train")


def test_aubench_synth_exports_a_difficulty(tmp_path):
    from aubench.cli import build_parser, main

    synth = next(
        action.choices["synth"]
        for action in build_parser()._actions
        if getattr(action, "choices", None) and "synth" in action.choices
    )
    flag = next(a for a in synth._actions if "--difficulty" in a.option_strings)
    assert tuple(flag.choices) == tuple(DIFFICULTIES)  # the CLI lists every preset
    out = tmp_path / "hard"
    assert main(["synth", "--n", "3", "--size", "64", "--difficulty", "hard", "--out", str(out),
                 "--quiet", "--no-preview"]) in (0, None)  # fmt: skip
    image = cv2.cvtColor(
        cv2.imread(str(out / "images/synthetic-train-000001.png")), cv2.COLOR_BGR2RGB
    )
    expected = render_sample(0, "train", 1, 64, SynthConfig(difficulty="hard")).image
    assert np.array_equal(image, expected)
    assert '"difficulty"' in (out / "synth.json").read_text()
