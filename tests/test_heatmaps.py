import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from aubench.faces import belharbi2024 as b24
from aubench.faces.codebook import ALL_AUS, Expression, get_codebook
from aubench.faces.gaussian_regions import FaceBlobs
from aubench.faces.heatmaps import (
    InvalidReason,
    au_heatmaps,
    count_reasons,
    invalid_reasons,
    per_au_heatmaps,
)
from aubench.faces.landmarks import MEAN_FACE, flip_landmarks, rescale_landmarks
from aubench.faces.region_model import FaceBatch, RegionModel
from aubench.faces.region_registry import REGION_MODELS, get_region_model, register_region_model
from tests.references import paper_heatmap, random_faces

NON_NEUTRAL = [e for e in Expression if e not in (Expression.NEUTRAL, Expression.CONTEMPT)]


def faces_of_every_class(per_class: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    landmarks = random_faces(per_class * len(NON_NEUTRAL), size, rng)
    labels = np.repeat([int(e) for e in NON_NEUTRAL], per_class)
    return landmarks, labels


# --- belharbi2024: the paper's pipeline -------------------------------------------------------


@pytest.mark.parametrize("codebook", ["belharbi2024", "belharbi2024-fixed"])
def test_belharbi2024_matches_per_image_opencv_reference(codebook):
    landmarks, labels = faces_of_every_class(200, 224)
    book = get_codebook(codebook)
    expected = [paper_heatmap(lm, int(y), book) for lm, y in zip(landmarks, labels, strict=True)]
    maps, valid = au_heatmaps(torch.tensor(landmarks), labels, 224, codebook, "belharbi2024")

    assert valid.tolist() == [ok for _, ok in expected]
    assert valid.all()
    errors = (maps.numpy() - np.stack([m for m, _ in expected])).__abs__().mean(axis=(1, 2))
    assert errors.max() <= 0.02, f"worst per-map MAE {errors.max():.4f}"
    # every class is covered and each class's mean error is small, not just the overall mean
    for label in np.unique(labels):
        assert errors[labels == label].mean() < 0.01


def test_belharbi2024_disgust_quirk_draws_eyes_not_upper_lip():
    face = torch.tensor(MEAN_FACE * 160 + 32)[None]
    paper = au_heatmaps(face, [Expression.DISGUST], 224, regions="belharbi2024").heatmaps[0]
    fixed = au_heatmaps(
        face, [Expression.DISGUST], 224, "belharbi2024-fixed", "belharbi2024"
    ).heatmaps[0]
    eye = (int(face[0, [37, 38, 40, 41], 1].mean()), int(face[0, 36:42, 0].mean()))
    assert paper[eye] > 0.2  # AU5, the upper lid raiser: a small blob on the eye
    assert fixed[eye] == 0  # AU10 lives on the upper lip: nothing reaches the eye


def test_sampling_taps_equal_opencv_linear_resize():
    rng = np.random.default_rng(3)
    for n_in, n_out in [(224, 28), (100, 28), (28, 224), (28, 100), (57, 28), (28, 150)]:
        canvas = rng.random((5, n_in))
        idx, w = b24._linear_taps(n_in, n_out)
        ours = (canvas[:, idx] * w).sum(-1)
        theirs = cv2.resize(canvas, (n_out, 5), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_sampling_blur_matrices_equal_cv2():
    rng = np.random.default_rng(4)
    for height, width in [(224, 224), (150, 100), (64, 96)]:
        canvas = rng.random((height, width))
        rows, _ = b24._linear_taps(height, 28)
        cols, _ = b24._linear_taps(width, 28)
        samples = canvas[rows.flatten()][:, cols.flatten()]  # (56, 56): 2×2 taps per cell
        ours = b24._sample_blur_matrix_np(height) @ samples @ b24._sample_blur_matrix_np(width).T
        theirs = cv2.blur(cv2.resize(canvas, (28, 28)), (3, 3))
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize(
    "height, width",
    # even multiples of 28 rows take the broadcast-lerp path, the others the dense matmul
    [(224, 224), (112, 112), (56, 300), (224, 150), (150, 100), (84, 84), (28, 28), (20, 40)],
)
def test_upsample_equals_cv2_resize(height, width):
    grids = np.random.default_rng(height * width).random((3, 28, 28))
    up = b24._upsample(torch.tensor(grids), height, width).numpy()
    for grid, ours in zip(grids, up, strict=True):
        np.testing.assert_allclose(ours, cv2.resize(grid, (width, height)), atol=1e-12)
    single = b24._upsample(torch.tensor(grids, dtype=torch.float32), height, width)
    assert single.dtype == torch.float32 and single.is_contiguous()
    np.testing.assert_allclose(single.numpy(), up, atol=1e-6)


@pytest.mark.parametrize("height, width", [(224, 224), (160, 160), (150, 100)])
def test_windowed_cells_equal_the_dense_sample_blur_product(height, width):
    # AUs of one or two ellipses anywhere, many touching or crossing a border (where the blur
    # reflects) or outside the image: the windowed rasterisation must equal G_y · I · G_xᵀ with I
    # the union tested at all 56×56 samples
    rng = np.random.default_rng(height + width)
    count = 300
    # pairs stay close in y (as the paper's left/right AU pairs do), so the row windows are short
    # and sit at every offset, the borders included
    first = rng.uniform(-20, [width + 20, height + 20], (count, 1, 2))
    first[:60, 0, 1] = rng.choice([0.0, 3.0, height - 4.0, height - 1.0], 60)
    first[60:120, 0, 0] = rng.choice([0.0, 3.0, width - 4.0, width - 1.0], 60)
    centres = first + np.stack(
        [rng.uniform(-60, 60, (count, 2)), rng.uniform(-6, 6, (count, 2))], -1
    )
    centres[:, 0] = first[:, 0]
    axes = np.stack([rng.integers(1, 40, (count, 2)), rng.integers(1, 12, (count, 2))], -1)
    axes = axes + b24.CV2_FILL_MARGIN
    ellipses = np.concatenate([centres, axes], axis=-1)
    ellipses[::3, 1] = ellipses[::3, 0]  # one-ellipse AUs repeat their ellipse
    ours = b24._blurred_samples(torch.tensor(ellipses), height, width).numpy()
    rows, _ = b24._linear_taps(height, 28)
    cols, _ = b24._linear_taps(width, 28)
    ys, xs = rows.flatten()[None, :, None], cols.flatten()[None, None, :]
    inside = np.zeros((count, 56, 56))
    for e in range(2):
        cx, cy, ax, ay = (ellipses[:, e, i, None, None] for i in range(4))
        inside = np.maximum(inside, ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1)
    dense = b24._sample_blur_matrix_np(height) @ inside @ b24._sample_blur_matrix_np(width).T
    np.testing.assert_allclose(ours, dense, atol=1e-12)
    assert (dense > 0).any(axis=(1, 2)).sum() > count // 2  # most AUs reach the grid
    start, taps = b24._row_window(torch.tensor(ellipses), height)
    size = taps.shape[1]  # the batch's window height m
    assert size < 20 and {0, 1, 27 - size, 28 - size} <= set(start.tolist())  # windows everywhere


def test_belharbi2024_other_resolutions_follow_the_reference():
    landmarks, labels = faces_of_every_class(10, 160, seed=5)
    book = get_codebook("belharbi2024")
    maps, valid = au_heatmaps(torch.tensor(landmarks), labels, (160, 160), regions="belharbi2024")
    expected = np.stack(
        [
            paper_heatmap(lm, int(y), book, 160, 160)[0]
            for lm, y in zip(landmarks, labels, strict=True)
        ]
    )
    assert valid.all()
    assert np.abs(maps.numpy() - expected).mean(axis=(1, 2)).max() <= 0.02


# --- golden values ----------------------------------------------------------------------------


def test_landmark_gaussians_golden_single_point():
    # every landmark at one point: the map is one Gaussian of σ = 8 px (224 px image), min-maxed
    point = (100.0, 60.0)
    landmarks = torch.tensor(point).expand(1, 68, 2)
    maps, valid = au_heatmaps(landmarks, [0], 224, regions="landmark-gaussians")
    ys, xs = np.mgrid[0:224, 0:224]
    gauss = np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * 8.0**2))
    expected = (gauss - gauss.min()) / (gauss.max() - gauss.min())
    assert valid.item()  # label-agnostic: neutral is valid
    np.testing.assert_allclose(maps[0].numpy(), expected, atol=1e-6)
    assert maps[0, 60, 108].item() == pytest.approx(np.exp(-0.5), abs=1e-6)


def test_default_blob_golden_values():
    # happiness = AU6, AU12, AU25 (belharbi2024-fixed); check one AU12 blob at its landmark
    face = torch.tensor(MEAN_FACE * 150 + 37, dtype=torch.float64)[None]
    maps, aus = per_au_heatmaps(face, [Expression.HAPPINESS], 224)
    assert aus == get_codebook("belharbi2024-fixed").aus
    au12 = maps[0, aus.index(12)]
    scale = 0.4 * 150  # inter-ocular distance of MEAN_FACE scaled by 150
    sigma = 0.22 * scale  # AU12's radius, in face units
    x48, y48 = face[0, 48].tolist()
    grid = torch.arange(224, dtype=torch.float64)
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    left = torch.exp(-((xs - x48) ** 2 + (ys - y48) ** 2) / (2 * sigma**2))
    x54, y54 = face[0, 54].tolist()
    right = torch.exp(-((xs - x54) ** 2 + (ys - y54) ** 2) / (2 * sigma**2))
    torch.testing.assert_close(au12, torch.maximum(left, right), atol=1e-9, rtol=0)
    assert maps[0, aus.index(1)].abs().max() == 0  # AU1 is not part of happiness


def test_per_au_maps_combine_into_the_heatmap():
    landmarks, labels = faces_of_every_class(4, 128, seed=7)
    lm = torch.tensor(landmarks)
    for regions, tolerance in [("default", 1e-6), ("belharbi2024", 5e-3)]:
        per_au, _ = per_au_heatmaps(lm, labels, 128, regions=regions)
        combined = per_au.amax(dim=1)
        low = combined.amin(dim=(1, 2), keepdim=True)
        high = combined.amax(dim=(1, 2), keepdim=True)
        expected = (combined - low) / (high - low)
        maps, _ = au_heatmaps(lm, labels, 128, regions=regions)
        assert (maps - expected).abs().mean(dim=(1, 2)).max() <= tolerance, regions


# --- default model properties -------------------------------------------------------------------


@pytest.mark.parametrize("regions", ["default", "generic"])
def test_default_maps_are_resolution_independent(regions):
    landmarks, labels = faces_of_every_class(20, 224, seed=11)
    big = torch.tensor(landmarks)
    small = rescale_landmarks(big, 0.5, 0.5)
    maps224, valid224 = au_heatmaps(big, labels, 224, regions=regions)
    maps112, valid112 = au_heatmaps(small, labels, 112, regions=regions)
    assert valid224.all() and valid112.all()
    down = F.interpolate(maps224[:, None], size=112, mode="area")[:, 0]
    errors = (down - maps112).abs().mean(dim=(1, 2))
    assert errors.max() <= 0.02, f"worst MAE {errors.max():.4f}"


face_batches = st.builds(
    lambda seed, n, width, height: (seed, n, width, height),
    st.integers(0, 2**31 - 1),
    st.integers(1, 6),
    st.integers(48, 160),
    st.integers(48, 160),
)


@settings(max_examples=25, deadline=None)
@given(face_batches, st.sampled_from(["default", "generic", "landmark-gaussians"]))
def test_flip_equivariance(batch, regions):
    seed, n, width, height = batch
    rng = np.random.default_rng(seed)
    landmarks = torch.tensor(random_faces(n, min(width, height), rng))
    labels = torch.tensor(rng.integers(0, 7, n))
    maps, valid = au_heatmaps(landmarks, labels, (height, width), regions=regions)
    flipped, flipped_valid = au_heatmaps(
        flip_landmarks(landmarks, width), labels, (height, width), regions=regions
    )
    assert torch.equal(valid, flipped_valid)
    torch.testing.assert_close(flipped, maps.flip(-1), atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["default", "belharbi2024", "generic"]))
def test_maps_are_in_unit_range_and_peak_at_one(seed, regions):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(64, 225))
    landmarks = torch.tensor(random_faces(4, size, rng), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 7, 4))
    maps, valid = au_heatmaps(landmarks, labels, size, regions=regions)
    assert maps.dtype == torch.float32 and maps.shape == (4, size, size)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    # belharbi2024 min-maxes on the 28×28 grid: the upsampled peak can sit a hair below 1
    # (≥ 0.9995 over 3,000 faces); the Gaussian models peak at exactly 1
    tolerance = 1e-3 if regions == "belharbi2024" else 1e-5
    assert torch.allclose(maps.amax(dim=(1, 2)), valid.float(), atol=tolerance)


# --- validity -----------------------------------------------------------------------------------


def test_validity_rules_and_reasons():
    size = 112
    face = torch.tensor(MEAN_FACE * 80 + 16, dtype=torch.float32)
    far_away = face + 1000
    lost = torch.full((68, 2), float("nan"))
    landmarks = torch.stack([face, face, lost, far_away, lost])
    labels = torch.tensor([1, 0, 3, 2, 0])
    for regions in ["default", "belharbi2024", "generic", "landmark-gaussians"]:
        maps, valid = au_heatmaps(landmarks, labels, size, regions=regions)
        reasons = invalid_reasons(landmarks, labels, valid, regions=regions)
        assert not torch.isnan(maps).any() and not torch.isinf(maps).any()
        assert (maps[~valid] == 0).all()
        expected_neutral = regions in ("generic", "landmark-gaussians")
        assert valid.tolist() == [True, expected_neutral, False, False, False], regions
        assert reasons[2] == InvalidReason.NO_LANDMARKS
        assert reasons[3] == InvalidReason.OUTSIDE
        assert reasons[4] == (
            InvalidReason.NO_LANDMARKS if expected_neutral else InvalidReason.NO_AUS
        )
    reasons = invalid_reasons(landmarks, labels, au_heatmaps(landmarks, labels, size).valid)
    assert count_reasons(reasons) == {"no_aus": 2, "no_landmarks": 1, "outside": 1}


def test_one_bad_face_does_not_change_the_others():
    landmarks, labels = faces_of_every_class(2, 96, seed=2)
    clean = au_heatmaps(torch.tensor(landmarks), labels, 96).heatmaps
    broken = landmarks.copy()
    broken[3, 10] = np.inf
    maps, valid = au_heatmaps(torch.tensor(broken), labels, 96)
    assert valid.tolist() == [i != 3 for i in range(len(labels))]
    keep = torch.arange(len(labels)) != 3
    torch.testing.assert_close(maps[keep], clean[keep])


def test_contempt_is_invalid_in_seven_class_codebooks_and_valid_in_emfacs():
    face = torch.tensor(MEAN_FACE * 80 + 16)[None]
    assert not au_heatmaps(face, [Expression.CONTEMPT], 112).valid.item()
    assert au_heatmaps(face, [Expression.CONTEMPT], 112, codebook="emfacs").valid.item()


def test_custom_codebook_mapping():
    face = torch.tensor(MEAN_FACE * 80 + 16)[None]
    only_brows = {"happiness": ["AU1", 2]}
    maps, valid = au_heatmaps(face, [1], 112, codebook=only_brows)
    assert valid.item()
    rows = maps[0].sum(dim=1)
    brow_row, mouth_row = int(face[0, 19, 1]), int(face[0, 62, 1])
    assert rows[brow_row] > 10 * rows[mouth_row]


def test_float64_in_float64_out_and_device_follows_input():
    face = torch.tensor(MEAN_FACE * 80 + 16, dtype=torch.float64)[None]
    maps, valid = au_heatmaps(face, torch.tensor([2]), 112)
    assert maps.dtype == torch.float64 and maps.device == face.device
    assert valid.device == face.device


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("landmarks", "labels", "size", "kwargs", "message"),
    [
        (np.zeros((2, 67, 2)), [1, 1], 64, {}, r"shape \(B, 68, 2\).*\(2, 67, 2\)"),
        (np.zeros((2, 68, 3)), [1, 1], 64, {}, r"\(2, 68, 3\)"),
        (np.zeros((2, 68, 2)), [1, 9], 64, {}, r"out of range.*\[9\]"),
        (np.zeros((2, 68, 2)), [1, -1], 64, {}, r"out of range.*\[-1\]"),
        (np.zeros((2, 68, 2)), [1.0, 2.0], 64, {}, "integer class ids"),
        (np.zeros((2, 68, 2)), [1], 64, {}, r"labels must have shape \(2,\)"),
        (np.zeros((1, 68, 2)), [1], (64, 0), {}, "size must be positive"),
        (np.zeros((1, 68, 2)), [1], 64, {"regions": "defualt"}, "unknown region model"),
        (np.zeros((1, 68, 2)), [1], 64, {"codebook": "emfac"}, "did you mean 'emfacs'"),
        (np.zeros((1, 68, 2)), [1], 64, {"codebook": {"joy": [6]}}, "unknown expression 'joy'"),
        (np.zeros((1, 68, 2)), [1], 64, {"codebook": {"happiness": [99]}}, "unknown AU 99"),
    ],
)
def test_bad_input_is_a_clear_error(landmarks, labels, size, kwargs, message):
    with pytest.raises(ValueError, match=message):
        au_heatmaps(landmarks, labels, size, **kwargs)


def test_per_au_maps_need_an_au_model():
    with pytest.raises(ValueError, match="no AUs"):
        per_au_heatmaps(np.zeros((1, 68, 2)), [1], 64, regions="landmark-gaussians")


def test_every_au_has_default_and_paper_geometry():
    face = torch.tensor(MEAN_FACE * 150 + 37)[None]
    for regions in ["default", "belharbi2024"]:
        maps, aus = per_au_heatmaps(face, [1], 224, codebook={"happiness": list(ALL_AUS)},
                                    regions=regions)  # fmt: skip
        assert aus == ALL_AUS
        # the paper's small eye ellipses lose most of their area in the 28×28 point sampling
        assert (maps[0].amax(dim=(1, 2)) > 0.3).all(), regions


@pytest.mark.parametrize("regions", ["default", "belharbi2024", "generic", "landmark-gaussians"])
def test_empty_all_invalid_and_non_square_batches(regions):
    maps, valid = au_heatmaps(
        torch.zeros(0, 68, 2), torch.zeros(0, dtype=torch.long), 64, regions=regions
    )
    assert maps.shape == (0, 64, 64) and valid.shape == (0,)
    face = torch.tensor(MEAN_FACE * 40 + 5, dtype=torch.float32)
    maps, valid = au_heatmaps(face.expand(3, 68, 2), [0, 0, 0], (50, 120), regions=regions)
    label_agnostic = regions in ("generic", "landmark-gaussians")
    assert maps.shape == (3, 50, 120) and valid.tolist() == [label_agnostic] * 3
    assert torch.isfinite(maps).all() and (maps[~valid] == 0).all()


def test_invalid_reasons_checks_its_inputs():
    face = torch.tensor(MEAN_FACE * 80 + 16, dtype=torch.float32).expand(2, 68, 2)
    valid = torch.tensor([True, False])
    with pytest.raises(ValueError, match=r"out of range.*\[8\]"):
        invalid_reasons(face, [1, 8], valid)
    with pytest.raises(ValueError, match=r"valid must be a bool tensor of shape \(2,\)"):
        invalid_reasons(face, [1, 0], torch.tensor([True]))
    with pytest.raises(ValueError, match="unknown region model"):
        invalid_reasons(face, [1, 0], valid, regions="ellipses")
    assert invalid_reasons(face, [1, 0], valid).tolist() == [0, int(InvalidReason.NO_AUS)]


# --- region-model registry --------------------------------------------------------------------


def test_region_registry_lists_the_built_ins_and_suggests_near_names():
    assert list(REGION_MODELS) == [
        "default", "belharbi2024", "landmark-gaussians", "generic", "belharbi2024-reference"
    ]  # fmt: skip
    assert [m.default_codebook for m in REGION_MODELS.values()] == [
        "belharbi2024-fixed", "belharbi2024", None, "generic", "belharbi2024"
    ]  # fmt: skip
    assert get_region_model("belharbi2024") is REGION_MODELS["belharbi2024"]
    with pytest.raises(ValueError, match=r"unknown region model 'belharbi'; did you mean belharbi"):
        get_region_model("belharbi")
    with pytest.raises(ValueError, match=r"known: default, belharbi2024, landmark-gaussians"):
        get_region_model("zzz")
    with pytest.raises(ValueError, match="already registered"):
        register_region_model(FaceBlobs())
    with pytest.raises(ValueError, match="always uses the 'generic' codebook"):
        au_heatmaps(MEAN_FACE * 80 + 16, [1], 112, codebook="emfacs", regions="generic")


class _EmfacsBlobs(FaceBlobs):
    name = "test-emfacs-blobs"
    default_codebook = "emfacs"


class _Disc(RegionModel):
    """Label-agnostic: a disc of radius 10 px around the nose tip."""

    name = "test-nose-disc"

    def maps(self, faces: FaceBatch, *, jaw: bool = False):
        ys = torch.arange(faces.height, dtype=faces.points.dtype)[:, None]
        xs = torch.arange(faces.width, dtype=faces.points.dtype)
        nose = faces.points[:, 30, :, None, None]
        inside = (xs - nose[:, 0]) ** 2 + (ys - nose[:, 1]) ** 2 <= 100
        valid = faces.finite & inside.flatten(1).any(dim=1)
        return (inside & valid[:, None, None]).to(faces.points.dtype), valid


def test_a_registered_region_model_works_by_name_without_other_changes():
    landmarks, labels = faces_of_every_class(2, 96, seed=9)
    lm = torch.tensor(landmarks)
    try:
        register_region_model(_EmfacsBlobs())
        register_region_model(_Disc())
        ours = au_heatmaps(lm, labels, 96, regions="test-emfacs-blobs")
        expected = au_heatmaps(lm, labels, 96, codebook="emfacs")
        assert torch.equal(ours.heatmaps, expected.heatmaps)
        assert torch.equal(ours.valid, expected.valid)
        per_au, aus = per_au_heatmaps(lm, labels, 96, regions="test-emfacs-blobs")
        assert aus == get_codebook("emfacs").aus
        assert torch.equal(per_au, per_au_heatmaps(lm, labels, 96, codebook="emfacs")[0])
        disc, valid = au_heatmaps(lm, [0] * len(labels), 96, regions="test-nose-disc")
        assert valid.all() and (disc.sum(dim=(1, 2)) > 200).all()  # neutral is valid: no AUs
        reasons = invalid_reasons(lm, [0] * len(labels), valid, regions="test-nose-disc")
        assert (reasons == InvalidReason.VALID).all()
        with pytest.raises(ValueError, match="'test-nose-disc' has no AUs"):
            per_au_heatmaps(lm, labels, 96, regions="test-nose-disc")
    finally:
        REGION_MODELS.pop("test-emfacs-blobs", None)
        REGION_MODELS.pop("test-nose-disc", None)
    # an unregistered instance is accepted as it is
    instance = au_heatmaps(lm, labels, 96, regions=_EmfacsBlobs())
    assert torch.equal(instance.heatmaps, expected.heatmaps)
