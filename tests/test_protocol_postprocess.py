"""The ``belharbi2024`` evaluation protocol's post-processing (paper-evaluation-protocol.md items
2–4): named steps on hand-built maps with exact values, then the whole chain — reference heatmap,
CAM and attention steps, cosine, undefined → 0, per-class then macro mean — against the per-image
NumPy/OpenCV transcription in tests/references.py (≤ 1e-6)."""

import numpy as np
import pytest
import torch

from aubench.explain import get_explainer
from aubench.explain.postprocess import (
    PROTOCOLS,
    clamp,
    default_postprocess,
    protocol_postprocess,
    resize,
    shift_negative,
)
from aubench.faces.codebook import get_codebook
from aubench.faces.heatmaps import au_heatmaps
from aubench.metrics.aggregate import aggregate
from aubench.metrics.correlation import cosine
from tests.references import paper_attention, paper_cam, paper_cosine, paper_heatmap, random_faces

# bilinear, align_corners=False, 3 → 6 along one axis: src = (i + ½)/2 − ½, clamped at the borders
UP_3_TO_6 = torch.tensor(
    [[1, 0, 0], [0.75, 0.25, 0], [0.25, 0.75, 0], [0, 0.75, 0.25], [0, 0.25, 0.75], [0, 0, 1]],
    dtype=torch.float64,
)
# PyTorch's antialiased bilinear with align_corners=True, 2 → 4: scale 1/3, centres (i + ½)/3,
# triangle weights; not corner-aligned (the last output is not the last input)
AA_2_TO_4 = torch.tensor([[1, 0], [1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3]], dtype=torch.float64)


def test_cam_steps_minmax_at_the_layer_then_resize_then_clamp():
    raw = torch.tensor([[[0.0, 1, 0], [1, 4, 1], [0, 1, 0]]], dtype=torch.float64)
    steps = protocol_postprocess(get_explainer("cam"), 6, "belharbi2024")
    out = steps(raw)

    assert torch.equal(out[0], UP_3_TO_6 @ (raw[0] / 4) @ UP_3_TO_6.T)
    # the peak between the samples stays below 1 (the default min-maxes after the resize)
    assert out.max() == 0.65625 and out.min() == 0
    assert default_postprocess(get_explainer("cam"), 6)(raw).max() == 1
    assert torch.equal(clamp()(torch.tensor([[[-0.5, 0.3, 1.7]]])), torch.tensor([[[0, 0.3, 1]]]))
    constant = steps(torch.full((1, 3, 3), 2.5))  # the reference: 0/0 → NaN → 0
    assert torch.equal(constant, torch.zeros(1, 6, 6))
    relu_first = protocol_postprocess(get_explainer("gradcam"), 6, "belharbi2024")
    assert torch.equal(relu_first(raw - 1), steps((raw - 1).clamp_min(0)))


def test_attention_steps_shift_only_negative_maps_and_never_minmax():
    signed = torch.tensor([[[-1.0, 1], [3, 5]]], dtype=torch.float64)
    positive = torch.tensor([[[0.5, 1], [2, 3]]], dtype=torch.float64)
    same_size = protocol_postprocess(get_explainer("attention"), 2, "belharbi2024")
    upsampled = protocol_postprocess(get_explainer("attention"), 4, "belharbi2024")

    assert torch.equal(shift_negative()(signed), signed + 1)
    assert torch.equal(shift_negative()(positive), positive)
    assert torch.equal(same_size(signed), torch.tensor([[[0.0, 2], [4, 6]]], dtype=torch.float64))
    assert torch.equal(same_size(positive), positive)  # no min-max: the maximum stays 3
    expected = AA_2_TO_4 @ torch.tensor([[0.0, 2], [4, 6]], dtype=torch.float64) @ AA_2_TO_4.T
    torch.testing.assert_close(upsampled(signed)[0], expected, rtol=0, atol=1e-12)
    # keep_range clamps each map to its own pre-resize range (bicubic overshoots an edge)
    edge = torch.tensor([[0.0, 0, 1, 1]]).expand(4, 4)[None]
    plain = resize(16, mode="bicubic", align_corners=True)(edge)
    kept = resize(16, mode="bicubic", align_corners=True, keep_range=True)(edge)
    assert plain.min() < -0.1 and plain.max() > 1.1
    assert torch.equal(kept, plain.clamp(0, 1))


def test_protocol_steps_describe_themselves():
    cam = protocol_postprocess(get_explainer("gradcam"), 224, "belharbi2024")
    attention = protocol_postprocess(get_explainer("attention"), (224, 192), "belharbi2024")

    assert cam.describe() == (
        "relu > minmax > resize(224x224, bilinear, align_corners=False) > clamp(low=0.0, high=1.0)"
    )
    assert attention.describe() == (
        "shift-negative > resize(224x192, bilinear, align_corners=True, antialias=True, "
        "keep_range=True)"
    )
    assert attention.to_dict() == {
        "steps": [
            {"name": "shift-negative"},
            {
                "name": "resize",
                "size": [224, 192],
                "mode": "bilinear",
                "align_corners": True,
                "antialias": True,
                "keep_range": True,
            },
        ]
    }
    assert cam.to_dict()["steps"][-1] == {"name": "clamp", "low": 0.0, "high": 1.0}
    assert PROTOCOLS == ("aubench", "belharbi2024")


@pytest.mark.parametrize("method", ["cam", "gradcam", "attention", "random"])
def test_the_aubench_protocol_is_todays_default_bit_for_bit(method):
    explainer = get_explainer(method)
    maps = torch.randn(5, 7, 7, generator=torch.Generator().manual_seed(0))

    ours = protocol_postprocess(explainer, 28, "aubench")
    assert ours == default_postprocess(explainer, 28)
    assert torch.equal(ours(maps), default_postprocess(explainer, 28)(maps))
    assert protocol_postprocess(explainer, 28) == ours
    with pytest.raises(ValueError, match="unknown protocol 'paper'; known: aubench, belharbi2024"):
        protocol_postprocess(explainer, 28, "paper")


def random_layer_maps(count: int, side: int, seed: int) -> torch.Tensor:
    """Signed and non-negative maps, some all-zero (constant: the reference's NaN → 0 case; a
    constant attention map is all-zero too, whose cosine both score 0)."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn(count, side, side, generator=generator)
    maps[::3] = maps[::3].abs() + 0.1  # non-negative: attention is not shifted
    maps[1::7] = 0.0  # constant
    return maps


@pytest.mark.parametrize("method, side", [("cam", 28), ("gradcam", 14), ("attention", 7)])
def test_protocol_maps_and_scores_match_the_per_image_reference(method, side):
    count, size = 70, 224
    rng = np.random.default_rng(side)
    landmarks = random_faces(count, size, rng)
    labels = np.arange(count) % 7  # every seventh is neutral: invalid
    book = get_codebook("belharbi2024")
    explainer = get_explainer(method)
    raw = random_layer_maps(count, side, seed=side)
    heatmaps, valid = au_heatmaps(
        torch.tensor(landmarks), labels, size, regions="belharbi2024-reference"
    )
    steps = protocol_postprocess(explainer, size, "belharbi2024")
    maps = steps(raw)

    reference_maps, reference_scores = [], []
    for i in range(count):
        one = raw[i].double().numpy()
        if method == "attention":
            reference_maps.append(paper_attention(one, size, size))
        else:
            reference_maps.append(paper_cam(one, size, size, explainer.relu))
        heatmap, ok = paper_heatmap(landmarks[i], int(labels[i]), book, size, size)
        reference_scores.append(paper_cosine(reference_maps[-1], heatmap) if ok else np.nan)
    reference_maps = np.stack(reference_maps)
    # the formula, in float64; then the float32 maps explainers give, relative to each map's
    # peak (attention maps keep their scale: values of a few units)
    assert np.abs(steps(raw.double()).numpy() - reference_maps).max() <= 1e-12
    peak = np.maximum(np.abs(reference_maps).max(axis=(1, 2), keepdims=True), 1.0)
    assert (np.abs(maps.double().numpy() - reference_maps) / peak).max() <= 1e-6

    scores = cosine(maps, heatmaps, valid)
    expected = torch.tensor(reference_scores, dtype=torch.float64)
    constant = maps.flatten(1).amin(1) == maps.flatten(1).amax(1)
    assert (valid & constant).any() and torch.equal(scores.isnan(), ~valid | constant)
    filled = torch.where(valid & scores.isnan(), 0.0, scores.double())
    assert (filled[valid] - expected[valid]).abs().max() <= 1e-6

    # per ground-truth class mean over valid samples, then the unweighted mean over the
    # non-neutral classes; undefined (NaN) scores of valid samples count as 0
    summary = aggregate(scores, torch.tensor(labels), valid, fill_undefined=0.0, n_boot=0)
    per_class = [expected[(torch.tensor(labels) == c) & valid].mean().item() for c in range(1, 7)]
    assert abs(summary.macro - float(np.mean(per_class))) <= 1e-6
