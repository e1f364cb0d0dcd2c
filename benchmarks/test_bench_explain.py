"""Gradient-family CAMs, side by side in one run (issue #4): all six methods (GradCAM,
GradCAM++, XGradCAM, LayerCAM, HiResCAM, GradCAMElementWise) at three layers of resnet18
(112 px, batch 32). aubench: one forward + one backward for everything, then ReLU → bilinear
resize to 112² → min-max (the same product as the anchor). Anchor: pytorch-grad-cam called once
per method and layer (18 calls). Goal: ≥ 4× faster, with equal maps (1e-4).

The ratio uses each side's best round; the anchor is timed before and after aubench.
"""

import time

import numpy as np
import pytest
import pytorch_grad_cam as gc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from aubench.explain import Postprocess, explain, minmax, relu, resize
from aubench.models import create

GOAL = 4.0
BATCH, SIZE, LAYERS = 32, 112, ("layer2", "layer3", "layer4")
ANCHORS = {
    "gradcam": gc.GradCAM,
    "gradcam++": gc.GradCAMPlusPlus,
    "xgradcam": gc.XGradCAM,
    "layercam": gc.LayerCAM,
    "hirescam": gc.HiResCAM,
    "gradcam-elementwise": gc.GradCAMElementWise,
}


def best_of(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create("resnet18", 7).eval()
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    labels = torch.arange(BATCH) % 7
    return model, images, labels


def test_gradient_family_single_pass_vs_pytorch_grad_cam(benchmark, harness_info, setup):
    model, images, labels = setup
    modules = dict(model.named_modules())
    post = Postprocess([relu(), resize(SIZE), minmax()])
    targets = [ClassifierOutputTarget(int(t)) for t in labels]

    def anchor():
        maps = {}
        for method, cls in ANCHORS.items():
            for layer in LAYERS:
                with cls(model, [modules[layer]]) as cam:
                    maps[method, layer] = cam(images, targets)
        return maps

    def ours():
        raw = explain(model, images, labels, list(LAYERS), list(ANCHORS))
        return {(m, layer): post(raw[m][layer]) for m in ANCHORS for layer in LAYERS}

    start = time.perf_counter()
    expected = anchor()
    anchor_before = min(time.perf_counter() - start, best_of(anchor, 1))
    got = ours()
    for key, maps in expected.items():
        np.testing.assert_allclose(got[key].numpy(), maps, rtol=0, atol=1e-4, err_msg=str(key))
    deviation = max(float(np.abs(got[k].numpy() - v).max()) for k, v in expected.items())

    benchmark.group = "gradient-family CAMs resnet18 112px b32, 6 methods x 3 layers"
    benchmark.pedantic(ours, rounds=5, warmup_rounds=1)
    anchor_s = min(anchor_before, best_of(anchor, 1))
    speedup = anchor_s / benchmark.stats.stats.min
    harness_info.update(
        anchor_pytorch_grad_cam_s=anchor_s,
        speedup=speedup,
        goal=GOAL,
        max_abs_deviation=deviation,
        threads=torch.get_num_threads(),
    )
    print(
        f"\npytorch-grad-cam 18 calls {anchor_s:.2f} s, aubench single pass "
        f"{benchmark.stats.stats.min:.3f} s: {speedup:.1f}× (goal ≥ {GOAL:.0f}×); "
        f"max |Δ| {deviation:.1e}"
    )
    assert speedup >= GOAL, f"single pass only {speedup:.1f}× faster (goal {GOAL}×)"
