"""Deletion/insertion AUC, average drop / increase in confidence and AU occlusion, on tiny
hand-built models whose scores can be written down."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from aubench.metrics import (
    au_occlusion,
    average_drop,
    deletion_auc,
    increase_in_confidence,
    insertion_auc,
)
from tests import metrics_reference as ref


class WeightedSum(nn.Module):
    """Two logits: ``(Σ w ⊙ x, 0)``, so class 0's logit is a weighted pixel sum and its softmax
    probability is sigmoid of it. Counts the inputs it sees."""

    def __init__(self, weights):
        super().__init__()
        self.weights = torch.as_tensor(weights, dtype=torch.float32)
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        score = (x * self.weights).flatten(1).sum(1)
        return torch.stack([score, torch.zeros_like(score)], 1)


W = [[1.0, 2.0], [3.0, 4.0]]
ONES = torch.ones(1, 1, 2, 2)
TARGET = torch.tensor([0])


def test_golden_deletion_and_insertion_logits():
    model = WeightedSum(W)
    # steps 4 on 4 pixels: counts 0..4; the map ranks pixels by weight, highest first.
    # deletion: logits 10, 6, 3, 1, 0 → trapezoid with h = ¼: ¼ (5 + 6 + 3 + 1 + 0) = 3.75
    good = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    auc = deletion_auc(model, ONES, good, TARGET, steps=4, output="logit")
    assert auc.item() == pytest.approx(3.75)
    # reversed map: 10, 9, 7, 4, 0 → ¼ (5 + 9 + 7 + 4 + 0) = 6.25 (worse: higher)
    auc = deletion_auc(model, ONES, 1 - good / 4, TARGET, steps=4, output="logit")
    assert auc.item() == pytest.approx(6.25)
    # insertion with the good map: 0, 4, 7, 9, 10 → ¼ (0 + 4 + 7 + 9 + 5) = 6.25
    auc = insertion_auc(model, ONES, good, TARGET, steps=4, output="logit")
    assert auc.item() == pytest.approx(6.25)
    assert model.seen == 15  # three curves of 5 points, nothing else


def test_golden_uneven_steps_and_probability():
    model = WeightedSum(W)
    good = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # steps 3 on 4 pixels: stride ⌈4/3⌉ = 2, counts 0, 2, 4 at fractions 0, ½, 1:
    # logits 10, 3, 0 → ½ (10 + 3)/2 + ½ (3 + 0)/2 = 4
    auc = deletion_auc(model, ONES, good, TARGET, steps=3, output="logit")
    assert auc.item() == pytest.approx(4.0)
    # probabilities: σ(10), σ(3), σ(0) = .5
    sig = [1 / (1 + math.exp(-v)) for v in (10, 3, 0)]
    expected = 0.5 * (sig[0] + sig[1]) / 2 + 0.5 * (sig[1] + sig[2]) / 2
    assert deletion_auc(model, ONES, good, TARGET, steps=3).item() == pytest.approx(expected)


def test_ties_are_ranked_in_pixel_order():
    model = WeightedSum(W)
    flat = torch.zeros(1, 2, 2)  # all tied: removed in row-major order 1, 2, 3, 4
    # logits 10, 9, 7, 4, 0 → 6.25
    assert deletion_auc(model, ONES, flat, TARGET, steps=4, output="logit").item() == 6.25


def test_baseline_tensor_and_batching_do_not_change_scores():
    torch.manual_seed(0)
    images = torch.randn(5, 3, 6, 6)
    maps = torch.rand(5, 6, 6)
    targets = torch.tensor([0, 1, 2, 0, 1])
    model = tiny_conv_model()
    blurred = images.mean((2, 3), keepdim=True).expand_as(images)
    one = deletion_auc(model, images, maps, targets, baseline=blurred, batch_size=1, steps=7)
    many = deletion_auc(model, images, maps, targets, baseline=blurred, batch_size=64, steps=7)
    torch.testing.assert_close(one, many)
    per_channel = torch.tensor([0.1, -0.2, 0.3])[:, None, None]
    insertion_auc(model, images, maps, targets, baseline=per_channel)  # broadcastable
    with pytest.raises(ValueError, match="baseline must be a number or broadcastable"):
        insertion_auc(model, images, maps, targets, baseline=torch.zeros(2, 3))


def tiny_conv_model():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


@pytest.mark.parametrize("insert", [False, True])
@pytest.mark.parametrize("output", ["probability", "logit"])
def test_perturbation_auc_agrees_with_per_image_reference(insert, output):
    torch.manual_seed(2)
    images = torch.randn(4, 3, 5, 6)
    maps = torch.round(torch.rand(4, 5, 6) * 4) / 4  # ties: ranked in pixel order
    maps[2, 0, 0] = math.nan
    targets = torch.tensor([2, 0, 1, 1])
    model = tiny_conv_model()
    fn = insertion_auc if insert else deletion_auc
    ours = fn(model, images, maps, targets, steps=6, baseline=0.25, batch_size=7, output=output)

    def one_image(x):
        with torch.no_grad():
            return model(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()

    expected = ref.perturbation_auc(
        one_image, images.numpy(), maps.numpy(), targets.numpy(), 6, 0.25, insert, output
    )
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_invalid_samples_are_nan_and_never_run():
    model = WeightedSum(W)
    images = torch.ones(3, 1, 2, 2)
    maps = torch.rand(3, 2, 2)
    scores = deletion_auc(
        model, images, maps, torch.zeros(3, dtype=torch.long), [True, False, True], steps=4
    )
    assert scores[1].isnan() and not scores[[0, 2]].isnan().any()
    assert model.seen == 2 * 5


def test_average_drop_and_increase_golden():
    model = WeightedSum(W)
    cam = torch.tensor([[[1.0, 0.5], [0.0, 0.0]]])
    # y = 10, o = 1·1 + 2·.5 = 2 → drop (10 − 2)/10 = .8; no increase
    assert average_drop(model, ONES, cam, TARGET, output="logit").item() == pytest.approx(0.8)
    assert increase_in_confidence(model, ONES, cam, TARGET, output="logit").item() == 0.0
    # probability: y = σ(10), o = σ(2)
    y, o = 1 / (1 + math.exp(-10)), 1 / (1 + math.exp(-2))
    assert average_drop(model, ONES, cam, TARGET).item() == pytest.approx((y - o) / y)
    # a negative image makes masking raise the logit: no drop, an increase
    neg = -ONES
    assert average_drop(model, neg, cam, TARGET, output="logit").isnan().item()  # y = −10 ≤ 0
    assert increase_in_confidence(model, neg, cam, TARGET, output="logit").item() == 1.0
    assert average_drop(model, neg, cam, TARGET).item() == 0.0  # σ(−2) > σ(−10)


def test_confidence_agrees_with_reference():
    torch.manual_seed(3)
    images, maps = torch.randn(6, 3, 5, 5), torch.rand(6, 5, 5)
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    model = tiny_conv_model()

    def one_image(x):
        with torch.no_grad():
            return model(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()

    drop, increase = ref.confidence_change(one_image, images.numpy(), maps.numpy(), targets.numpy())
    np.testing.assert_allclose(
        average_drop(model, images, maps, targets, batch_size=4).numpy(), drop, atol=1e-6
    )
    np.testing.assert_array_equal(
        increase_in_confidence(model, images, maps, targets).numpy(), increase
    )


def test_input_errors_name_the_argument():
    model = WeightedSum(W)
    with pytest.raises(ValueError, match=r"maps must have shape \(B, H, W\) = \(1, 2, 2\)"):
        deletion_auc(model, ONES, torch.rand(1, 3, 3), TARGET)
    with pytest.raises(ValueError, match=r"images must be a \(B, C, H, W\) tensor"):
        deletion_auc(model, ONES[0], torch.rand(1, 2, 2), TARGET)
    with pytest.raises(ValueError, match=r"targets must be \(1,\) integer class ids"):
        deletion_auc(model, ONES, torch.rand(1, 2, 2), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        deletion_auc(model, ONES, torch.rand(1, 2, 2), TARGET, steps=0)
    with pytest.raises(ValueError, match="output must be"):
        deletion_auc(model, ONES, torch.rand(1, 2, 2), TARGET, output="prob")
    with pytest.raises(ValueError, match=r"maps must lie in \[0, 1\]"):
        average_drop(model, ONES, torch.full((1, 2, 2), 2.0), TARGET)
    with pytest.raises(ValueError, match=r"model must return \(batch, classes\) logits"):
        deletion_auc(lambda x: x.sum((1, 2, 3)), ONES, torch.rand(1, 2, 2), TARGET)


# --- AU occlusion -------------------------------------------------------------------------------


def test_au_occlusion_golden():
    image = torch.ones(1, 1, 1, 4)
    region = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    # weights (2, 1, 1, 1): masking the AU pixel drops the logit by 2, any other single pixel
    # (every non-zero cyclic shift of a 1-pixel region) by 1 → ratio 2, whatever the draws
    model = WeightedSum([[2.0, 1.0, 1.0, 1.0]])
    assert au_occlusion(model, image, region, TARGET, output="logit").item() == pytest.approx(2.0)
    # equal weights: every region of the same size drops the same → 1
    model = WeightedSum([[1.0, 1.0, 1.0, 1.0]])
    assert au_occlusion(model, image, region, TARGET, output="logit").item() == pytest.approx(1.0)
    # nothing outside the AU region matters: random drop 0 → undefined
    model = WeightedSum([[1.0, 0.0, 0.0, 0.0]])
    assert au_occlusion(model, image, region, TARGET, output="logit").isnan().item()


def test_au_occlusion_regions_seeds_and_nan_cases():
    torch.manual_seed(4)
    images = torch.rand(4, 3, 6, 6) + 0.5  # positive pixels, positive weights: positive drops
    per_au = torch.zeros(4, 2, 6, 6)
    per_au[:, 0, 1:3, 1:3] = 1.0
    per_au[:, 1, 4, 4] = 0.9
    per_au[3] = 0.0  # no region: NaN
    targets = torch.zeros(4, dtype=torch.long)  # class 1's logit is constant: no drop
    model = WeightedSum(torch.rand(6, 6))
    union = per_au.amax(1)
    a = au_occlusion(model, images, per_au, targets, output="logit", seed=3)
    b = au_occlusion(model, images, union, targets, output="logit", seed=3, batch_size=5)
    torch.testing.assert_close(a, b, equal_nan=True)  # (B, K, H, W) = their union
    assert a[3].isnan() and not a[:3].isnan().any()
    c = au_occlusion(model, images, union, targets, output="logit", seed=4)
    assert not torch.equal(a[:3], c[:3])  # other draws
    valid = torch.tensor([True, False, True, True])
    assert au_occlusion(model, images, union, targets, valid)[1].isnan()
    with pytest.raises(ValueError, match="n_random must be a positive int"):
        au_occlusion(model, images, union, targets, n_random=0)
    with pytest.raises(
        ValueError, match=r"targets must lie in \[0, 2\) for 2 logits, got \[0, 2\]"
    ):
        au_occlusion(model, images, union, torch.tensor([0, 1, 2, 0]))


def test_au_occlusion_agrees_with_reference():
    torch.manual_seed(5)
    images = torch.rand(5, 3, 7, 6) + 0.5
    heat = torch.zeros(5, 7, 6)
    heat[:, 2:4, 1:3] = 1.0
    heat[1, 6, 5] = 0.8  # a second blob, far away
    heat[3] = 0.0  # no region
    model = WeightedSum(torch.rand(7, 6) / 20)  # positive weights: every drop is positive
    targets = torch.zeros(5, dtype=torch.long)
    ours = au_occlusion(model, images, heat, targets, n_random=4, seed=9, baseline=-0.2)
    region = (heat >= 0.5).numpy()
    gen = torch.Generator().manual_seed(9)  # the draws: one per (sample with a region, copy)
    offsets = torch.randint(1, 7 * 6, (4, 4), generator=gen).numpy()

    def one_image(x):
        with torch.no_grad():
            return model(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()

    expected = ref.au_occlusion(one_image, images.numpy(), region, targets.numpy(), offsets, -0.2)
    assert np.isnan(expected).tolist() == [False, False, False, True, False]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)
