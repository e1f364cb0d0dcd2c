"""Alignment losses: hand-computed values, the paper's resize-and-clamp, masking, properties."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aubench.models import FeatureCapture, create
from aubench.train.losses import (
    AlignmentLoss,
    alignment_loss,
    masked_mean,
    per_sample_alignment,
    resize_clamped,
)
from aubench.train.options import ALIGN_LOSSES, check_loss_name


def maps(*rows) -> torch.Tensor:
    """(B, 2, 2) from B flat 4-tuples."""
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2, 2)


# --- golden values on 2×2 maps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "attention", "heatmap", "expected"),
    [
        # cos([1,0,0,1], [1,1,0,0]) = 1 / (√2·√2) = 0.5
        ("cosine", (1, 0, 0, 1), (1, 1, 0, 0), 0.5),
        # cos([1,2,3,4], [4,3,2,1]) = 20 / 30
        ("cosine", (1, 2, 3, 4), (4, 3, 2, 1), 1 - 20 / 30),
        # standardised [1,2,3,4] ∝ [-1.5,-0.5,0.5,1.5]; against [0,0,0,1]: cos = 1.5 / √5
        ("std-cosine", (1, 2, 3, 4), (0, 0, 0, 1), 1 - 1.5 / math.sqrt(5)),
        # |[1,0,0,1] − [1,1,0,0]| = [0,1,0,1]: mean 0.5, squares too
        ("l1", (1, 0, 0, 1), (1, 1, 0, 0), 0.5),
        ("l2", (1, 0, 0, 1), (1, 1, 0, 0), 0.5),
        ("l2", (2, 0, 0, 0), (0, 0, 0, 0), 1.0),
    ],
)
def test_golden_2x2(kind, attention, heatmap, expected):
    loss = per_sample_alignment(maps(attention), maps(heatmap), kind)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_mean_over_valid_samples_only_and_lambda():
    attention = maps((1, 0, 0, 1), (1, 2, 3, 4), (0, 0, 0, 1))
    heatmap = maps((1, 1, 0, 0), (4, 3, 2, 1), (0, 0, 0, 1))
    valid = torch.tensor([True, True, False])
    # (0.5 + 1/3) / 2, the invalid third sample (loss 0) is not averaged in
    expected = (0.5 + (1 - 20 / 30)) / 2
    assert alignment_loss([attention], heatmap, valid).item() == pytest.approx(expected)
    assert alignment_loss([attention], heatmap, valid, lam=4).item() == pytest.approx(4 * expected)


def test_several_layers_are_averaged():
    heatmap = maps((1, 1, 0, 0))
    valid = torch.tensor([True])
    layers = [maps((1, 0, 0, 1)), maps((1, 1, 0, 0))]  # losses 0.5 and 0
    assert alignment_loss(layers, heatmap, valid, lam=2).item() == pytest.approx(2 * 0.25)


def test_zero_when_none_valid_and_still_differentiable():
    attention = torch.rand(3, 4, 4, requires_grad=True)
    loss = alignment_loss([attention], torch.rand(3, 8, 8), torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(attention.grad, torch.zeros_like(attention))


def test_nan_in_an_invalid_sample_does_not_leak():
    values = torch.tensor([0.25, float("nan")])
    assert masked_mean(values, torch.tensor([True, False])).item() == 0.25


# --- the paper's resize and clamp -----------------------------------------------------------


def test_resize_matches_the_papers_per_sample_loop():
    """§4.3 interpolates the batch, then clamps sample by sample in a Python loop."""
    torch.manual_seed(0)
    heatmaps = torch.rand(5, 32, 32) ** 3
    heatmaps[2] *= 0.3  # different per-sample ranges
    ours = resize_clamped(heatmaps, (7, 5))
    resized = F.interpolate(
        heatmaps[:, None], size=(7, 5), mode="bilinear", align_corners=True, antialias=True
    )
    for i in range(5):
        ref = torch.clamp(resized[i, 0], heatmaps[i].min().item(), heatmaps[i].max().item())
        torch.testing.assert_close(ours[i], ref, rtol=0, atol=0)


def test_resize_keeps_same_size_maps_and_constants():
    x = torch.rand(2, 6, 6)
    assert torch.equal(resize_clamped(x, (6, 6)), x)
    constant = torch.full((1, 9, 9), 0.7)
    torch.testing.assert_close(resize_clamped(constant, (3, 3)), torch.full((1, 3, 3), 0.7))


def test_resize_pins_torchs_antialiased_align_corners_quirk():
    """The paper's resize (bilinear, align_corners=True, antialias=True) is not mirror-symmetric in
    torch: output k averages around input (k + ½)·s − ½ with s = (H − 1)/(h − 1), i.e.
    align_corners=False centres with the align_corners=True scale. Pinned so an upgrade cannot
    silently move the targets; a 4×4 diagonal-quadrant map becomes:"""
    heatmap = torch.zeros(1, 4, 4)
    heatmap[0, :2, :2] = 1
    heatmap[0, 2:, 2:] = 1
    expected = torch.tensor([[[0.53125, 0.375], [0.375, 1.0]]])
    torch.testing.assert_close(resize_clamped(heatmap, (2, 2)), expected, rtol=0, atol=1e-6)
    assert per_sample_alignment(maps((1, 0, 0, 1)), heatmap).item() == pytest.approx(
        1 - (0.53125 + 1) / (math.sqrt(2) * math.sqrt(0.53125**2 + 2 * 0.375**2 + 1)), abs=1e-6
    )


# --- properties -----------------------------------------------------------------------------

finite = st.floats(0.0, 10.0, allow_nan=False, width=32)
shapes = st.tuples(st.integers(1, 4), st.just(5), st.just(5))
batch_maps = arrays("float32", shapes, elements=finite)


@settings(max_examples=40, deadline=None)
@given(batch_maps, st.sampled_from(["cosine", "l1", "l2"]))
def test_identical_maps_cost_nothing(values, kind):
    x = torch.from_numpy(values) + 0.01  # cosine needs non-zero maps
    assert per_sample_alignment(x, x, kind).abs().max().item() < 1e-5


@settings(max_examples=40, deadline=None)
@given(batch_maps, batch_maps, st.floats(0.01, 100.0))
def test_cosine_is_scale_invariant(a, b, scale):
    n = min(len(a), len(b))
    attention, heatmap = torch.from_numpy(a[:n]) + 0.01, torch.from_numpy(b[:n]) + 0.01
    base = per_sample_alignment(attention, heatmap)
    scaled_attention = per_sample_alignment(scale * attention, heatmap)
    scaled_heatmap = per_sample_alignment(attention, scale * heatmap)
    torch.testing.assert_close(scaled_attention, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(scaled_heatmap, base, atol=1e-5, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    batch_maps,
    st.lists(st.booleans(), min_size=4, max_size=4),
    st.sampled_from(ALIGN_LOSSES),
)
def test_invalid_samples_are_ignored(values, flags, kind):
    x = torch.from_numpy(values)
    n = len(x)
    attention, heatmap = x + 0.01, torch.flip(x, dims=(1,)) + 0.02
    valid = torch.tensor(flags[:n])
    scrambled = attention.clone()
    scrambled[~valid] = torch.rand_like(scrambled[~valid]) * 100
    before = alignment_loss([attention], heatmap, valid, kind)
    after = alignment_loss([scrambled], heatmap, valid, kind)
    torch.testing.assert_close(after, before)
    if not valid.any():
        assert before.item() == 0.0


# --- AMP, real models, bad input ------------------------------------------------------------


def test_float32_under_autocast():
    torch.manual_seed(0)
    attention, heatmap = torch.rand(4, 6, 6), torch.rand(4, 24, 24)
    valid = torch.ones(4, dtype=torch.bool)
    low = attention.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = alignment_loss([low], heatmap, valid)
    assert loss.dtype == torch.float32
    reference = alignment_loss([low.float()], heatmap, valid)
    assert loss.item() == pytest.approx(reference.item(), abs=1e-6)


def test_guided_gradient_reaches_the_backbone_of_a_timm_model():
    torch.manual_seed(0)
    model = create("resnet18", 7)
    images = torch.randn(2, 3, 64, 64)
    with FeatureCapture(model, ["layer4", "layer3"]) as capture:
        model(images)
    heatmaps = torch.rand(2, 64, 64)
    loss = AlignmentLoss("cosine", lam=4)(capture.features(), heatmaps, torch.tensor([True, True]))
    loss.backward()
    assert 0 < loss.item() < 8
    assert model.conv1.weight.grad.abs().sum() > 0  # the stem, through the shortcuts
    assert model.fc.weight.grad is None  # the head does not feed the attention


@pytest.mark.parametrize(("kind", "hint"), [("cosin", "cosine"), ("std_cosine", "std-cosine")])
def test_unknown_loss_suggests(kind, hint):
    with pytest.raises(ValueError, match=f"unknown alignment loss '{kind}'.*did you mean {hint}"):
        check_loss_name(kind)


@pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf")])
def test_bad_lambda(lam):
    with pytest.raises(ValueError, match="λ must be a finite number ≥ 0"):
        AlignmentLoss("cosine", lam=lam)
