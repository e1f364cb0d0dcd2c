"""Per-image AU evidence heatmaps (aubench.faces.evidence): golden weighted maps built by hand
from the per-AU maps, the codebook map recovered exactly from the prototype, validity reasons
and the counts of AUs without a region."""

import numpy as np
import pytest
import torch

from aubench.faces.codebook import ALL_AUS, Expression, get_codebook
from aubench.faces.evidence import (
    AUEvidence,
    EvidenceReason,
    codebook_evidence,
    count_evidence_reasons,
    evidence_heatmaps,
    hybrid_evidence,
)
from aubench.faces.gaussian_regions import FaceBlobs
from aubench.faces.heatmaps import au_heatmaps, per_au_heatmaps
from aubench.faces.landmarks import MEAN_FACE
from aubench.faces.region_model import FaceBatch, RegionModel
from tests.references import random_faces

HAPPY = int(Expression.HAPPINESS)


def face(size: int = 224, dtype=torch.float64) -> torch.Tensor:
    """One plausible (1, 68, 2) face filling most of a ``size`` image."""
    return torch.tensor(MEAN_FACE * size * 0.67 + size * 0.165, dtype=dtype)[None]


def faces_of_every_class(per_class: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(1, 7), per_class)  # happiness … sadness
    return torch.tensor(random_faces(len(labels), size, rng)), torch.tensor(labels)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    return (maps - low) / (maps.amax(dim=(-2, -1), keepdim=True) - low)


# --- golden maps ----------------------------------------------------------------------------


def test_au12_at_half_and_au6_at_one_give_the_weighted_max_of_their_regions():
    landmarks = face(112)
    evidence = AUEvidence.from_scores([[5.0, 2.5]], aus=(6, 12))  # FACS 0–5 → 1.0 and 0.5
    assert evidence.intensities.tolist() == [[1.0, 0.5]]
    maps, valid, reasons = evidence_heatmaps(landmarks, evidence, 112)
    per_au, aus = per_au_heatmaps(landmarks, [HAPPY], 112)  # happiness draws AU6, AU12, AU25
    r6, r12 = per_au[0, aus.index(6)], per_au[0, aus.index(12)]
    expected = minmax(torch.maximum(1.0 * r6, 0.5 * r12))
    torch.testing.assert_close(maps[0], expected, atol=1e-12, rtol=0)
    assert valid.tolist() == [True] and reasons.tolist() == [EvidenceReason.VALID]
    # AU12's lip corners reach half of AU6's cheeks; AU25 (not in the evidence) is not drawn
    mouth = maps[0, round(landmarks[0, 48, 1].item()) - 8 :, :]
    assert 0.45 < mouth.max().item() < 0.55 and maps[0].max().item() == 1.0


def test_presence_only_evidence_gives_the_codebook_style_map_of_its_aus():
    landmarks, _ = faces_of_every_class(1, 112, seed=3)
    present = AUEvidence.from_scores(np.tile([1.0, 1.0, 0.0], (6, 1)), aus=(6, 12, 4), scale=1)
    maps, valid, _ = evidence_heatmaps(landmarks, present, 112)
    codebook = {"happiness": [6, 12]}
    expected = au_heatmaps(landmarks, [HAPPY] * 6, 112, codebook=codebook)
    assert torch.equal(maps, expected.heatmaps) and torch.equal(valid, expected.valid)


@pytest.mark.parametrize(
    ("regions", "codebook"),
    [("default", "belharbi2024-fixed"), ("belharbi2024", "belharbi2024"), ("generic", "generic")],
)
def test_the_codebook_prototype_as_evidence_is_the_codebook_map_exactly(regions, codebook):
    landmarks, labels = faces_of_every_class(2, 96, seed=1)
    landmarks[0, 5] = float("nan")  # invalid the same way in both
    landmarks[1] += 500.0  # every region outside the image
    expected = au_heatmaps(landmarks, labels, 96, regions=regions)
    ours = evidence_heatmaps(landmarks, codebook_evidence(labels, codebook), 96, regions=regions)
    assert torch.equal(ours.heatmaps, expected.heatmaps)
    assert torch.equal(ours.valid, expected.valid)
    assert ours.reasons[:2].tolist() == [EvidenceReason.NO_LANDMARKS, EvidenceReason.OUTSIDE]


def test_belharbi2024_weights_scale_each_shape_before_the_max():
    landmarks, labels = faces_of_every_class(2, 112, seed=4)
    rng = np.random.default_rng(0)
    prototype = codebook_evidence(labels, "belharbi2024")
    weights = prototype.intensities * torch.tensor(rng.uniform(0.2, 1.0, (12, 1)))
    evidence = AUEvidence(prototype.aus, weights)
    maps, valid, _ = evidence_heatmaps(landmarks, evidence, 112, regions="belharbi2024")
    # a weight common to all of a face's AUs cancels in the min-max: the codebook map
    expected = au_heatmaps(landmarks, labels, 112, regions="belharbi2024")
    torch.testing.assert_close(maps, expected.heatmaps, atol=1e-12, rtol=0)
    # unequal weights: close to the weighted max of the per-AU maps (upsampled one by one)
    uneven = torch.rand(prototype.intensities.shape, generator=torch.Generator().manual_seed(0))
    evidence = AUEvidence(prototype.aus, prototype.intensities * (0.2 + 0.8 * uneven))
    maps, valid, _ = evidence_heatmaps(landmarks, evidence, 112, regions="belharbi2024")
    per_au, _ = per_au_heatmaps(landmarks, labels, 112, regions="belharbi2024")
    expected = minmax((per_au * evidence.intensities[:, :, None, None]).amax(dim=1))
    assert valid.all() and (maps - expected).abs().mean(dim=(1, 2)).max() < 5e-3


class _PerAUOnly(RegionModel):
    """The default blobs seen only through ``per_au_maps``: the interface's generic
    ``weighted_maps``."""

    name = "test-per-au-only"
    default_codebook = "belharbi2024-fixed"

    def maps(self, faces: FaceBatch, *, jaw: bool = False):
        return FaceBlobs().maps(faces)

    def per_au_maps(self, faces: FaceBatch, aus: tuple[int, ...]) -> torch.Tensor:
        return FaceBlobs().per_au_maps(faces, aus)


def test_the_generic_weighted_maps_agree_with_the_one_pass_gaussian_max():
    landmarks, _ = faces_of_every_class(1, 64, seed=5)
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, (6, len(ALL_AUS))) * (rng.uniform(0, 1, (6, len(ALL_AUS))) < 0.4)
    scores[0] = 0.0  # nothing present
    evidence = AUEvidence.from_scores(scores, ALL_AUS, scale=1)
    fast = evidence_heatmaps(landmarks, evidence, 64)
    generic = evidence_heatmaps(landmarks, evidence, 64, regions=_PerAUOnly())
    torch.testing.assert_close(generic.heatmaps, fast.heatmaps, atol=1e-12, rtol=0)
    assert torch.equal(generic.valid, fast.valid) and not fast.valid[0]


# --- hybrid ---------------------------------------------------------------------------------


def test_hybrid_weights_the_codebook_aus_by_the_detected_intensities():
    # detector columns AU4, AU12 (no AU6, no AU25): happiness = AU6, AU12, AU25 (fixed codebook)
    detected = AUEvidence.from_scores([[2.0, 2.5], [3.0, float("nan")]], aus=(4, 12))
    hybrid = hybrid_evidence(detected, [HAPPY, HAPPY], "belharbi2024-fixed")
    book = get_codebook("belharbi2024-fixed")
    assert hybrid.aus == book.aus
    weights = dict(zip(hybrid.aus, hybrid.intensities.T.tolist(), strict=True))
    assert weights[12] == [0.5, 1.0]  # detected 2.5/5; NaN (not measured) keeps the codebook's 1
    assert weights[6] == weights[25] == [1.0, 1.0]  # the detector has no such column
    assert weights[4] == [0.0, 0.0]  # detected, but not a happiness AU
    landmarks = face(112).repeat(2, 1, 1)
    maps = evidence_heatmaps(landmarks, hybrid, 112).heatmaps
    explicit = AUEvidence((6, 12, 25), torch.tensor([[1.0, 0.5, 1.0], [1.0, 1.0, 1.0]]))
    assert torch.equal(maps, evidence_heatmaps(landmarks, explicit, 112).heatmaps)
    neutral = hybrid_evidence(detected, [0, 0], "belharbi2024-fixed")
    assert count_evidence_reasons(evidence_heatmaps(landmarks, neutral, 112).reasons) == {
        "no_present_aus": 2
    }


# --- validity and AUs without a region --------------------------------------------------------


def test_reasons_and_the_aus_without_a_region_are_counted():
    landmarks = face(112).repeat(5, 1, 1)
    landmarks[3, 0] = float("nan")
    landmarks[4] -= 400.0
    nan = float("nan")
    evidence = AUEvidence(
        (12, 45, 11),
        torch.tensor(
            [
                [0.5, 0.0, 0.0],  # valid
                [0.0, 0.8, 1.0],  # blink and AU11 only: no region
                [nan, 0.0, nan],  # nothing present (NaN = not coded)
                [0.5, 1.0, 0.0],  # lost landmarks
                [0.5, 0.0, 0.0],  # outside the image
            ]
        ),
    )
    maps, valid, reasons = evidence_heatmaps(landmarks, evidence, 112)
    assert valid.tolist() == [True, False, False, False, False]
    assert (maps[1:] == 0).all()
    assert reasons.tolist() == [0, 5, 4, 2, 3]
    assert count_evidence_reasons(reasons) == {
        "no_landmarks": 1,
        "outside": 1,
        "no_present_aus": 1,
        "no_region_aus": 1,
    }
    assert evidence.unregioned() == {45: 2, 11: 1}
    assert evidence.weights()[:, ALL_AUS.index(12)].tolist() == [0.5, 0.0, 0.0, 0.5, 0.5]


def test_bad_evidence_is_refused_with_what_is_wrong():
    with pytest.raises(ValueError, match=r"image 0, AU12 is 2\.5 .*from_scores"):
        AUEvidence((12,), torch.tensor([[2.5]]))
    with pytest.raises(ValueError, match="distinct FACS AU numbers"):
        AUEvidence((12, 12), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="distinct FACS AU numbers"):
        AUEvidence((0,), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"float \(B, 2\) tensor"):
        AUEvidence((6, 12), torch.zeros(1, 3))
    evidence = AUEvidence((12,), torch.ones(2, 1))
    with pytest.raises(ValueError, match="2 images for landmarks of 1 faces"):
        evidence_heatmaps(face(), evidence, 64)
    with pytest.raises(ValueError, match="'landmark-gaussians' has no AUs"):
        evidence_heatmaps(face().repeat(2, 1, 1), evidence, 64, regions="landmark-gaussians")
