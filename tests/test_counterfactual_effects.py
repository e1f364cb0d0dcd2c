"""Causal AU effects on the synthetic faces, golden: a hand-built model whose target logit is the
mean intensity of the AU6 (cheek raiser) region moves only when AU6 is removed, a map on that
region agrees with it exactly, and every computation is one batched forward per AU or scale.

The faces are the 64 px test split's sadness faces (AUs 1, 4, 6, 15, 17 of the default
codebook) and one neutral face. AU6's pixel changes stay inside its region, and those of the
other four stay outside it (checked below on these faces), so their effects are exactly 0.
"""

import math

import pytest
import torch
from torch import nn

from aubench.bench.counterfactual import (
    au_energy,
    causal_effects,
    cue_masks,
    dose_curve,
    explainer_maps,
    mirrored_maps,
)
from aubench.data.synthetic import SyntheticFaces
from aubench.faces.codebook import ALL_AUS
from aubench.faces.heatmaps import per_au_heatmaps
from aubench.faces.synth import Intervention
from aubench.metrics.causal import au_attribution_agreement, au_top1_agreement, cue_energy_share

SADNESS, NEUTRAL = 6, 0
SADNESS_AUS = (1, 4, 6, 15, 17)
FACES = [0, 10, 2, 17, 24]  # sadness, sadness, neutral, sadness, sadness
AU = {au: k for k, au in enumerate(ALL_AUS)}


class RegionLogit(nn.Module):
    """Logits (B, 7): zero, except the sadness logit = the mean over ``mask``'s pixels of the
    image's channel sum."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", mask.float() / mask.sum())
        self.calls = 0
        self.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = images.new_zeros(len(images), 7)
        logits[:, SADNESS] = (images * self.weight).sum((1, 2, 3))
        return logits


def regions(landmarks: torch.Tensor, aus=ALL_AUS) -> torch.Tensor:
    """(B, len(aus), 64, 64) bool: each AU's region (>= 0.5), whatever the label."""
    maps, _ = per_au_heatmaps(landmarks, torch.zeros(len(landmarks), dtype=int), 64, "generic")
    return maps[:, [AU[au] for au in aus]] >= 0.5


@pytest.fixture(scope="module")
def faces() -> SyntheticFaces:
    faces = SyntheticFaces(n=28, size=64, split="test")
    assert [faces.labels[i] for i in FACES] == [SADNESS, SADNESS, NEUTRAL, SADNESS, SADNESS]
    return faces


@pytest.fixture(scope="module")
def model(faces) -> RegionLogit:
    """The AU6 regions of the four sadness faces, united: the only pixels the logit reads."""
    factual = faces.counterfactuals([0, 10, 17, 24], Intervention())
    return RegionLogit(regions(factual["landmarks"], (6,))[:, 0].any(0))


@pytest.fixture(scope="module")
def effects(faces, model):
    model.calls = 0
    result = causal_effects(model, faces, FACES, device="cpu")
    return result, model.calls


def test_pixel_changes_of_the_other_aus_miss_the_read_region(faces, model):
    factual = faces.counterfactuals(FACES, Intervention())["image"]
    for au in SADNESS_AUS:
        changed = faces.counterfactuals(FACES, Intervention.remove(au))["image"] != factual
        touched = (changed.any(1) & (model.weight > 0)).flatten(1).any(1)
        assert touched.tolist() == [au == 6, au == 6, False, au == 6, au == 6]


def test_only_the_read_au_has_an_effect(faces, model, effects):
    result, calls = effects
    assert calls == 1 + len(SADNESS_AUS)  # the factual faces, then one forward per AU shown
    shown = torch.zeros(len(FACES), len(ALL_AUS), dtype=torch.bool)
    shown[[0, 1, 3, 4], [[AU[au]] for au in SADNESS_AUS]] = True
    assert torch.equal(result.present, shown)
    assert result.targets.tolist() == [SADNESS, SADNESS, NEUTRAL, SADNESS, SADNESS]
    sad = [0, 1, 3, 4]
    for drops in (result.logit, result.probability):
        assert drops[~shown].isnan().all()  # the neutral face's row, absent AUs
        assert (drops[sad, AU[6]] > 0.01).all()
        others = drops[sad][:, [AU[au] for au in SADNESS_AUS if au != 6]]
        assert others.abs().max() <= 1e-6
    # each effect is the model's drop on that face alone, rendered one by one
    for row, index in zip(sad, [0, 10, 17, 24], strict=True):
        alone = torch.stack(
            [faces[index]["image"], faces.counterfactual(index, Intervention.remove(6))["image"]]
        )
        logits = model(alone)[:, SADNESS]
        assert result.logit[row, AU[6]].item() == pytest.approx((logits[0] - logits[1]).item())
        probs = model(alone).softmax(1)[:, SADNESS]
        assert result.probability[row, AU[6]].item() == pytest.approx((probs[0] - probs[1]).item())


def test_batches_split_by_batch_size_and_targets_resolve(faces, model, effects):
    result, _ = effects
    model.calls = 0
    chunked = causal_effects(model, faces, FACES, targets=SADNESS, batch_size=2)
    assert model.calls == 3 + 2 * len(SADNESS_AUS)  # ⌈5/2⌉ factual, ⌈4/2⌉ per AU
    torch.testing.assert_close(chunked.logit, result.logit, equal_nan=True)
    assert chunked.targets.tolist() == [SADNESS] * 5
    predicted = model(result.batch["image"]).argmax(1)  # the cheeks are bright: sadness
    assert predicted.tolist() == [SADNESS] * 5
    assert torch.equal(causal_effects(model, faces, FACES, targets="pred").targets, predicted)
    with pytest.raises(ValueError, match="out of range"):
        causal_effects(model, faces, FACES, targets=9)
    with pytest.raises(IndexError):
        causal_effects(model, faces, [28])


def test_a_map_on_the_read_region_agrees(effects):
    result, _ = effects
    landmarks = result.batch["landmarks"]
    region = regions(landmarks)
    for au, rho, top in ((6, 1.0, 1.0), (1, -0.25, 0.0)):
        maps = region[:, AU[au]].float()  # the AU's region alone: no other AU region overlaps it
        energy = au_energy(maps, landmarks)
        assert energy.shape == (len(FACES), len(ALL_AUS))
        agreement = au_attribution_agreement(energy, result.logit, result.present)
        top1 = au_top1_agreement(energy, result.logit, result.present)
        # energies and effects: one AU at the top, four tied at 0; on another AU, ρ is
        # (2·2.5·(−0.625) + 3·0.625²) / (2.5² + 4·0.625²) = −1/4
        nan = math.nan
        torch.testing.assert_close(
            agreement, torch.tensor([rho, rho, nan, rho, rho]), equal_nan=True
        )
        torch.testing.assert_close(top1, torch.tensor([top, top, nan, top, top]), equal_nan=True)


def test_au_energy_is_per_au_energy_at_the_maps_resolution(effects):
    result, _ = effects
    landmarks = result.batch["landmarks"]
    maps = torch.rand(len(FACES), 32, 32, generator=torch.Generator().manual_seed(0))
    half = landmarks * 0.5 - 0.25  # the pixel-centre rescaling from 64 to 32 px
    expected = au_energy(maps, half, (15, 6))
    torch.testing.assert_close(au_energy(maps, landmarks, (15, 6), image_size=64), expected)
    full = au_energy(maps, half)
    torch.testing.assert_close(expected, full[:, [AU[15], AU[6]]])


def test_dose_curve_tracks_the_logit(faces, model, effects):
    """A toy producer putting a share (z + 10)/20 of its mass on AU6's region (z: the logit):
    the energy is linear in the logit, slope 1/20, r = 1; the curve's ends give the effect."""
    result, _ = effects

    def maps_of(model, images, targets, landmarks):
        z = model(images).gather(1, targets[:, None])[:, :, None]
        inside = regions(landmarks, (6,))[:, 0].float()
        share = (z + 10) / 20
        return share * inside / inside.sum((1, 2), True) + (1 - share) * (1 - inside) / (
            1 - inside
        ).sum((1, 2), True)

    model.calls = 0
    scales = (0.0, 0.5, 1.0)
    curve = dose_curve(model, faces, FACES, 6, scales, maps_of)
    assert model.calls == 2 * len(scales)  # per scale: one forward, one map call
    assert curve.present.tolist() == [True, True, False, True, True]
    assert curve.logit[:, 2].isnan().all() and curve.energy[:, 2].isnan().all()
    sad = [0, 1, 3, 4]
    torch.testing.assert_close(curve.logit[2, sad] - curve.logit[0, sad], result.logit[sad, AU[6]])
    response = curve.response()
    torch.testing.assert_close(response.slope[sad], torch.full((4,), 0.05))
    torch.testing.assert_close(response.correlation[sad], torch.ones(4))
    assert response.slope[2].isnan()
    # without a producer: the model's response alone; an AU the faces lack: all NaN
    bare = dose_curve(model, faces, FACES, 6, scales)
    assert bare.energy is None
    torch.testing.assert_close(bare.logit, curve.logit, equal_nan=True)
    assert dose_curve(model, faces, FACES, 12, scales).logit.isnan().all()
    with pytest.raises(ValueError, match="must lie in"):
        dose_curve(model, faces, FACES, 6, (0.0, 1.5))


def test_cue_masks_hold_exactly_the_cue(faces):
    cued = SyntheticFaces(n=28, size=64, split="test", shortcut=1.0)
    masks = cue_masks(cued, FACES)
    assert masks.shape == (5, 64, 64) and masks.flatten(1).sum(1).tolist() == [64] * 5
    assert not cue_masks(faces, FACES).any()  # none drawn
    # the faces differ from the cue-free ones exactly on the cue
    diff = (
        cued.counterfactuals(FACES, Intervention())["image"]
        != faces.counterfactuals(FACES, Intervention())["image"]
    ).any(1)
    assert torch.equal(diff, masks)
    assert cue_energy_share(diff.float(), masks).tolist() == [1.0] * 5


class TinyNet(nn.Sequential):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 7),
        )


def test_mirror_equivariance_of_toy_and_real_producers(effects):
    result, _ = effects
    images, landmarks = result.batch["image"], result.batch["landmarks"]
    targets = result.targets
    net = TinyNet().eval()

    def pointwise(model, images, targets, landmarks):  # equivariant: a function of each pixel
        return images.sum(1)

    def left_half(model, images, targets, landmarks):  # lateralised: the image's left half
        return images.sum(1) * (torch.arange(64) < 32)

    same = mirrored_maps(net, images, targets, landmarks, pointwise)
    torch.testing.assert_close(same.equivariance, torch.ones(5))
    torch.testing.assert_close(same.maps_of_flipped, same.maps.flip(-1))
    lateral = mirrored_maps(net, images, targets, landmarks, left_half)
    assert (lateral.equivariance < 0.5).all()
    # the generic-face control follows the flipped landmarks (AU sides swapped): equivariant
    generic = mirrored_maps(net, images, targets, landmarks, explainer_maps("generic-face", "3"))
    assert generic.maps.shape == (5, 64, 64)
    torch.testing.assert_close(generic.equivariance, torch.ones(5))
    # Grad-CAM of a real (random) network: a score in [−1, 1] per face
    gradcam = mirrored_maps(net, images, targets, landmarks, explainer_maps("gradcam", "2"))
    assert ((gradcam.equivariance >= -1) & (gradcam.equivariance <= 1)).all()
    valid = torch.tensor([True, True, False, True, True])
    assert mirrored_maps(net, images, targets, landmarks, pointwise, valid).equivariance[2].isnan()
