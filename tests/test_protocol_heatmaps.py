"""``belharbi2024-reference``: the reference code's heatmap, pinned against the per-image OpenCV
transcription in tests/references.py (paper-evaluation-protocol.md item 1; MAE ≤ 1e-4 per map,
max pixel error ≤ 1e-3), with aubench's validity fixes (items 6–7) kept and countable."""

import os

import numpy as np
import pytest
import torch

from aubench.faces.belharbi2024_reference import (
    REFERENCE_BACKGROUND,
    REFERENCE_INK,
    Belharbi2024Reference,
    reference_validity,
)
from aubench.faces.codebook import Expression, get_codebook
from aubench.faces.heatmaps import InvalidReason, au_heatmaps, invalid_reasons, per_au_heatmaps
from aubench.faces.landmarks import MEAN_FACE
from aubench.faces.region_registry import get_region_model
from tests.references import paper_au_map, paper_heatmap, random_faces

REGIONS = "belharbi2024-reference"
NON_NEUTRAL = [e for e in Expression if e not in (Expression.NEUTRAL, Expression.CONTEMPT)]


def faces_of_every_class(per_class: int, size: int, seed: int, spread: float = 0.0):
    """Random plausible faces, ``per_class`` of each non-neutral class; ``spread`` > 0 moves
    each face by up to ±spread·size so that AU regions leave the image."""
    rng = np.random.default_rng(seed)
    landmarks = random_faces(per_class * len(NON_NEUTRAL), size, rng)
    landmarks += rng.uniform(-spread, spread, (len(landmarks), 1, 2)) * size
    return landmarks, np.repeat([int(e) for e in NON_NEUTRAL], per_class)


def reference_maps(landmarks, labels, codebook, height, width):
    expected = [
        paper_heatmap(lm, int(y), get_codebook(codebook), height, width)
        for lm, y in zip(landmarks, labels, strict=True)
    ]
    return np.stack([m for m, _ in expected]), np.array([ok for _, ok in expected])


def assert_agrees(maps: torch.Tensor, expected: np.ndarray) -> None:
    errors = np.abs(maps.double().numpy() - expected)
    mae = errors.mean(axis=(1, 2))
    assert mae.max() <= 1e-4, f"worst per-map MAE {mae.max():.2e}"
    assert errors.max() <= 1e-3, f"worst pixel error {errors.max():.2e}"


@pytest.mark.parametrize("codebook", ["belharbi2024", "belharbi2024-fixed"])
@pytest.mark.parametrize("size", [224, 112])
def test_reference_heatmap_matches_the_per_image_opencv_transcription(codebook, size):
    landmarks, labels = faces_of_every_class(50, size, seed=size)
    expected, reference_valid = reference_maps(landmarks, labels, codebook, size, size)
    maps, valid = au_heatmaps(torch.tensor(landmarks), labels, size, codebook, REGIONS)

    assert reference_valid.all() and valid.all()
    assert maps.dtype == torch.float64 and maps.shape == (300, size, size)
    assert_agrees(maps, expected)
    assert (maps.amax(dim=(1, 2)) == 1).all() and (maps.amin(dim=(1, 2)) == 0).all()


@pytest.mark.parametrize("codebook", ["belharbi2024", "belharbi2024-fixed"])
def test_faces_leaving_the_image_drop_aus_and_keep_the_fixes(codebook):
    landmarks, labels = faces_of_every_class(30, 224, seed=5, spread=0.8)
    expected, reference_valid = reference_maps(landmarks, labels, codebook, 224, 224)
    lm = torch.tensor(landmarks)
    maps, valid = au_heatmaps(lm, labels, 224, codebook, REGIONS)
    reference_flags = reference_validity(lm, labels, 224, codebook).numpy()

    # some faces lose some AUs (the reference's `failed > 0` branch), some lose them all
    book = get_codebook(codebook)
    dropped = [
        sum(paper_au_map(face, au) is None for au in book.aus_of(int(y)))
        for face, y in zip(landmarks, labels, strict=True)
    ]
    assert sum(0 < d < len(book.aus_of(int(y))) for d, y in zip(dropped, labels, strict=True)) > 20
    assert 0 < (~reference_valid).sum() < len(labels) // 4
    assert reference_flags.tolist() == reference_valid.tolist()
    vanished = reference_flags & ~valid.numpy()  # the fix: valid there, all-zero maps
    assert not (valid.numpy() & ~reference_flags).any() and not expected[vanished].any()
    assert_agrees(maps, expected)  # invalid: zeros, as the reference's vanished maps
    reasons = invalid_reasons(lm, torch.tensor(labels), valid, codebook, REGIONS)
    assert (reasons[~valid] == InvalidReason.OUTSIDE).all()


def brow_face_at_top(top_row: int) -> np.ndarray:
    """A mean face moved up so that the AU1 brow centres (p20, p23) sit at row ``top_row``."""
    face = MEAN_FACE * 160 + 32
    face[:, 1] += top_row - face[[20, 23], 1].mean()
    face[[20, 23], 1] = top_row
    return face


def test_a_face_whose_regions_vanish_is_invalid_and_counted():
    # AU1's ellipses (semi-axes 28 × 22) centred 20 rows above the image paint rows 0-2 only,
    # which the 28×28 resize never reads (its first taps are rows 3 and 4)
    brow_only = {"happiness": [1]}
    faces = np.stack([brow_face_at_top(-20), brow_face_at_top(-10), brow_face_at_top(-40)])
    labels = [int(Expression.HAPPINESS)] * 3
    book = get_codebook(brow_only)
    reference = [paper_heatmap(f, y, book) for f, y in zip(faces, labels, strict=True)]
    maps, valid = au_heatmaps(torch.tensor(faces), labels, 224, brow_only, REGIONS)

    assert [ok for _, ok in reference] == [True, True, False]  # the reference: valid, zero map
    assert not reference[0][0].any()
    assert valid.tolist() == [False, True, False]
    assert reference_validity(faces, labels, 224, brow_only).tolist() == [True, True, False]
    assert not maps[0].any() and maps[1].amax() == 1
    assert_agrees(maps, np.stack([m for m, _ in reference]))
    reasons = invalid_reasons(torch.tensor(faces), torch.tensor(labels), valid, brow_only, REGIONS)
    assert reasons.tolist() == [InvalidReason.OUTSIDE, InvalidReason.VALID, InvalidReason.OUTSIDE]


def test_non_finite_landmarks_are_invalid_and_leave_the_others_alone():
    landmarks, labels = faces_of_every_class(2, 224, seed=3)
    bad = landmarks.copy()
    bad[0, 30, 0] = np.nan  # the reference's int() raises ValueError
    bad[1, 50, 1] = np.inf  # and OverflowError here
    maps, valid = au_heatmaps(torch.tensor(bad), labels, 224, regions=REGIONS)
    clean, _ = au_heatmaps(torch.tensor(landmarks[2:]), labels[2:], 224, regions=REGIONS)

    assert valid.tolist() == [False, False] + [True] * (len(labels) - 2)
    assert not maps[:2].any() and torch.equal(maps[2:], clean)
    reasons = invalid_reasons(torch.tensor(bad), torch.tensor(labels), valid, regions=REGIONS)
    assert reasons[:2].tolist() == [InvalidReason.NO_LANDMARKS] * 2
    assert reference_validity(bad, labels, 224).tolist() == valid.tolist()
    neutral = au_heatmaps(torch.tensor(landmarks[:1]), [0], 224, regions=REGIONS)
    assert not neutral.valid.any() and not neutral.heatmaps.any()


def test_per_au_maps_are_the_reference_canvases_rescaled_to_unit_ink():
    landmarks, labels = faces_of_every_class(3, 224, seed=7, spread=0.3)
    per_au, aus = per_au_heatmaps(torch.tensor(landmarks), labels, 224, regions=REGIONS)
    book = get_codebook("belharbi2024")

    assert aus == book.aus and per_au.shape == (len(labels), len(aus), 224, 224)
    for i, (lm, label) in enumerate(zip(landmarks, labels, strict=True)):
        for k, au in enumerate(aus):
            canvas = paper_au_map(lm, au) if au in book.aus_of(int(label)) else None
            if canvas is None:  # not in the label's set, or outside the image
                assert not per_au[i, k].any()
                continue
            unit = (canvas - REFERENCE_BACKGROUND) / (REFERENCE_INK - REFERENCE_BACKGROUND)
            assert np.abs(per_au[i, k].numpy() - unit).max() <= 1e-9


def test_non_square_images_dtype_and_the_registry():
    landmarks, labels = faces_of_every_class(3, 160, seed=11)
    landmarks[..., 0] += 20  # a 160-row, 200-column image
    expected, _ = reference_maps(landmarks, labels, "belharbi2024", 160, 200)
    maps, valid = au_heatmaps(torch.tensor(landmarks).float(), labels, (160, 200), regions=REGIONS)

    assert isinstance(get_region_model(REGIONS), Belharbi2024Reference)
    assert get_region_model(REGIONS).default_codebook == "belharbi2024"
    assert maps.dtype == torch.float32 and maps.shape == (len(labels), 160, 200) and valid.all()
    assert_agrees(maps, expected)
    empty = au_heatmaps(torch.empty(0, 68, 2), torch.empty(0, dtype=torch.long), 64, None, REGIONS)
    assert empty.heatmaps.shape == (0, 64, 64) and empty.valid.shape == (0,)


DEVICE = torch.device(os.environ.get("AUBENCH_TEST_DEVICE", "cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")
def test_the_device_version_equals_the_cpu_one():
    landmarks, labels = faces_of_every_class(20, 224, seed=13, spread=0.2)
    cpu = au_heatmaps(torch.tensor(landmarks), labels, 224, regions=REGIONS)
    moved = torch.tensor(landmarks, device=DEVICE)
    on_device = au_heatmaps(moved, labels, 224, regions=REGIONS)
    per_au, _ = per_au_heatmaps(moved, labels, 224, regions=REGIONS)

    assert on_device.heatmaps.device.type == DEVICE.type and per_au.device.type == DEVICE.type
    assert torch.equal(on_device.valid.cpu(), cpu.valid)
    assert (on_device.heatmaps.cpu() - cpu.heatmaps).abs().max() <= 1e-6
