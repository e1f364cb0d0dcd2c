"""Explainer plumbing: registry, targets, post-processing steps, controls, hook hygiene, memory."""

import gc
import tracemalloc
import warnings

import numpy as np
import pytest
import torch

from aubench.explain import (
    CONTROLS,
    EXPLAINERS,
    INPUT,
    Postprocess,
    default_postprocess,
    explain,
    get_explainer,
    minmax,
    relu,
    resize,
    resolve_targets,
)
from aubench.faces.heatmaps import au_heatmaps
from aubench.faces.landmarks import MEAN_FACE
from tests.explain_models import (  # noqa: F401 (one_thread: autouse fixture)
    HandNet,
    TinyCNN,
    hand_inputs,
    hook_count,
    one_thread,
)

# --- registry and targets ---------------------------------------------------------------------


def test_registry_lists_every_method_of_the_issue():
    wanted = {
        "attention", "cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam",
        "gradcam-elementwise", "scorecam", "ablationcam", "eigencam", "eigengradcam", "fullgrad",
        "gc:eigencam", "gc:eigengradcam",
        "kpca-cam", "fem", "shapleycam", "integrated-gradients", "saliency", "input-x-gradient",
        "guided-backprop", "guided-gradcam", "deeplift", "occlusion", "layer-gradcam",
        "smoothgrad", "random", "centre", "generic-face",
    }  # fmt: skip
    assert wanted <= set(EXPLAINERS)
    assert CONTROLS == ("random", "centre", "generic-face")


def test_get_explainer_normalises_names_and_suggests_near_matches():
    assert get_explainer("Grad-CAM").name == "gradcam"
    assert get_explainer("Layer_CAM").name == "layercam"
    assert get_explainer("GradCAM++", variant="belharbi2024").variant == "belharbi2024"
    with pytest.raises(ValueError, match=r"unknown explainer 'gradcm'; did you mean gradcam"):
        get_explainer("gradcm")
    with pytest.raises(ValueError, match=r"did you mean integrated-gradients"):
        get_explainer("integratedgradient")
    with pytest.raises(ValueError, match="variant 'tf'"):
        get_explainer("gradcam++", variant="tf")


def test_resolve_targets_kinds_and_errors():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    assert resolve_targets("pred", 2, 3, logits).tolist() == [1, 0]
    assert resolve_targets(2, 2, 3).tolist() == [2, 2]
    assert resolve_targets(np.array([0, 2]), 2, 3).tolist() == [0, 2]
    assert resolve_targets(torch.tensor([1, 1]), 2, None).dtype == torch.long
    for bad, message in [
        (None, "pass the ground-truth labels"),
        ("gt", "pass the ground-truth labels"),
        (True, "not a class index"),
        (torch.tensor([0.0, 1.0]), "integer class indices"),
        (torch.tensor([[0], [1]]), r"shape \(2,\)"),
        ([0, 3], r"target class 3 is out of range \(0 … 2\)"),
        ([-1, 0], "target class -1 is out of range"),
    ]:
        with pytest.raises(ValueError, match=message):
            resolve_targets(bad, 2, 3, logits)
    with pytest.raises(ValueError, match="needs the model's logits"):
        resolve_targets("pred", 2, 3)


# --- post-processing --------------------------------------------------------------------------


def test_steps_exact_values_and_description():
    maps = torch.tensor([[[-1.0, 1.0], [3.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]])
    torch.testing.assert_close(relu()(maps)[0], torch.tensor([[0.0, 1.0], [3.0, 1.0]]))
    # min-max per map; the constant second map becomes zeros (not NaN)
    torch.testing.assert_close(
        minmax()(maps), torch.tensor([[[0.0, 0.5], [1.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    )
    # bilinear, align_corners=False, ×2: output pixel 1 samples input position 0.25
    up = resize(4)(torch.tensor([[[0.0, 4.0], [0.0, 4.0]]]))
    torch.testing.assert_close(up[0, 0], torch.tensor([0.0, 1.0, 3.0, 4.0]))
    pipeline = default_postprocess(get_explainer("gradcam"), (6, 8))
    assert pipeline.describe() == "relu > resize(6x8, bilinear, align_corners=False) > minmax"
    assert pipeline.to_dict() == {
        "steps": [
            {"name": "relu"},
            {"name": "resize", "size": [6, 8], "mode": "bilinear", "align_corners": False},
            {"name": "minmax"},
        ]
    }
    assert default_postprocess(get_explainer("cam"), 4).describe().startswith("resize(4x4")
    assert resize(3, mode="nearest").describe() == "resize(3x3, nearest)"
    assert Postprocess().describe() == "none"
    assert pipeline(maps).shape == (2, 6, 8)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        minmax()(maps[0])


# --- controls ---------------------------------------------------------------------------------


def test_controls_shapes_values_and_reproducibility():
    model, x = HandNet(), hand_inputs()
    maps = explain(model, x, [0, 1], ["features"], ["random", "centre"])
    noise = maps["random"]["features"]
    assert noise.shape == (2, 2, 2) and noise.min() >= 0 and noise.max() < 1
    again = get_explainer("random")(model, x, [0, 1], ["features"])["features"]
    torch.testing.assert_close(noise, again)  # same seed, same stream
    # centre prior at pixel centres (±0.25, ±0.25) of a 2×2 grid: exp(−0.125 / (2 · 0.25²))
    torch.testing.assert_close(maps["centre"]["features"], torch.full((2, 2, 2), np.exp(-1.0)))
    wide = get_explainer("centre", sigma=0.5)(TinyCNN(), torch.zeros(1, 3, 16, 16), 0, ["act"])
    assert wide["act"].shape == (1, 8, 8)
    assert wide["act"][0, 3, 3] == wide["act"].max() and wide["act"][0, 0, 0] == wide["act"].min()


def test_generic_face_control_is_the_all_au_map_area_averaged():
    side = 32
    face = torch.tensor(MEAN_FACE, dtype=torch.float32) * (side - 1)
    landmarks = torch.stack([face, torch.full_like(face, float("nan"))])
    model = TinyCNN()
    x = torch.randn(2, 3, side, side)
    got = get_explainer("generic-face")(model, x, [1, 2], ["act"], landmarks=landmarks)["act"]
    full = au_heatmaps(landmarks[:1], [0], side, regions="generic").heatmaps
    expected = full.reshape(1, 16, 2, 16, 2).mean((2, 4))  # 2×2 area average to the 16² grid
    torch.testing.assert_close(got[:1], expected)
    assert got[0].max() > 0.5 and (got[1] == 0).all()  # failed landmarks → all-zero map
    with pytest.raises(ValueError, match="needs the batch's landmarks"):
        get_explainer("generic-face")(model, x, [1, 2], ["act"])


# --- hooks and memory -------------------------------------------------------------------------


class Exploding(TinyCNN):
    """TinyCNN whose forward raises after the hooked layers have run."""

    def forward(self, x):
        super().forward(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    "method", ["gradcam", "attention", "scorecam", "fullgrad", "guided-backprop", "layer-gradcam"]
)
def test_hooks_are_released_after_errors(method):
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        get_explainer(method)(model, torch.randn(2, 3, 16, 16), [0, 1], ["act"])
    assert hook_count(model) == 0
    assert model.training


def test_explain_mixes_single_pass_and_adapters():
    model, x = TinyCNN(), torch.randn(2, 3, 16, 16)
    maps = explain(model, x, [0, 2], ["conv1", "act"], ["gradcam", "saliency", "eigencam"])
    assert list(maps) == ["gradcam", "saliency", "eigencam"]
    assert {k: v.shape for k, v in maps["gradcam"].items()} == {
        "conv1": (2, 16, 16),
        "act": (2, 8, 8),
    }
    assert list(maps["saliency"]) == [INPUT] and maps["saliency"][INPUT].shape == (2, 16, 16)
    assert maps["eigencam"]["act"].shape == (2, 8, 8)
    with pytest.raises(ValueError, match="requested twice"):
        explain(model, x, [0, 2], ["act"], ["gradcam", "gradcam"])
    assert hook_count(model) == 0


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on torch's deprecated module attributes
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for obj in gc.get_objects() if torch.is_tensor(obj))


def test_no_memory_growth_over_1000_calls():
    model, x, y = HandNet(), hand_inputs(), torch.tensor([0, 1])
    methods = ["gradcam", "gradcam++", "layercam", "attention", "cam"]
    for _ in range(20):  # warm-up: caches, lazy imports
        explain(model, x, y, ["features"], methods)
    tensors = _live_tensors()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            explain(model, x, y, ["features"], methods)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert _live_tensors() == tensors
    assert growth < 64 * 1024, f"{growth} bytes of Python memory kept after 1,000 calls"
    assert hook_count(model) == 0
