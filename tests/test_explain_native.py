"""Native explainers: exact values on a hand-built GAP + linear model, and equality with
pytorch-grad-cam (real calls) on timm resnet18 and vit_tiny for all six gradient methods."""

from functools import partial

import numpy as np
import pytest
import pytorch_grad_cam as gc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

from aubench.explain import (
    CAM,
    GRADIENT_METHODS,
    GradCAMPlusPlus,
    Postprocess,
    explain,
    explain_batch,
    first_component_maps,
    get_explainer,
    layer_maps,
    minmax,
    relu,
    resize,
)
from aubench.models import create
from tests.explain_models import HandNet, hand_inputs, one_thread  # noqa: F401 (autouse)

T = partial(torch.tensor, dtype=torch.float32)

# HandNet at layer "features", sample 0 explained for class 0 and sample 1 for class 1.
# A (sample 0) = [[1,2],[3,4]], [[0,1],[-1,2]], [[1,3],[2,6]];  W_0 = [1, -2, 0.5]
# A (sample 1) = [[0,1],[2,0]], [[1,1],[0,-2]], [[1,2],[2,-2]]; W_1 = [-1, 1, 2]
# A GAP + linear head makes g_kij = W_tk / HW = W_tk / 4 everywhere.
EXPECTED = {
    "attention": T([[[2 / 3, 2], [4 / 3, 4]], [[2 / 3, 4 / 3], [4 / 3, -4 / 3]]]),  # mean_k A_k
    "cam": T([[[1.5, 1.5], [6, 3]], [[3, 4], [2, -6]]]),  # Σ_k W_tk A_k
    "gradcam": T([[[1.5, 1.5], [6, 3]], [[3, 4], [2, -6]]]) / 4,  # CAM / HW
    "hirescam": T([[[1.5, 1.5], [6, 3]], [[3, 4], [2, -6]]]) / 4,  # Σ_k (W_tk/4) A_k
    # Σ_k ReLU(W_tk)/4 A_k: sample 0 (A0 + A2/2)/4, sample 1 (A1 + 2 A2)/4
    "layercam": T([[[1.5, 3.5], [4, 7]], [[3, 5], [4, -6]]]) / 4,
    # Σ_k ReLU(W_tk A_k)/4
    "gradcam-elementwise": T([[[1.5, 3.5], [6, 7]], [[3, 5], [4, 0]]]) / 4,
}


@pytest.fixture(scope="module")
def hand():
    return HandNet(), hand_inputs(), torch.tensor([0, 1])


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_hand_model_exact_maps(hand, method):
    model, x, y = hand
    maps = get_explainer(method)(model, x, y, ["features"])
    assert list(maps) == ["features"]
    assert maps["features"].dtype == torch.float32
    torch.testing.assert_close(maps["features"], EXPECTED[method], rtol=0, atol=1e-6)


def test_hand_model_xgradcam_is_cam_over_hw_up_to_its_epsilon(hand):
    model, x, y = hand
    got = get_explainer("xgradcam")(model, x, y, ["features"])["features"]
    # w_k = Σ_ij (W_tk/4) A_kij / (Σ_ij A_kij + 1e-7); channel sums: sample 0 [10, 2, 12],
    # sample 1 [3, 0, 3] (channel 1 sums to 0: its weight is 0 · W/4 / 1e-7 = 0)
    sums = T([[10, 2, 12], [3, 0, 3]])
    rows = T([[1, -2, 0.5], [-1, 1, 2]])
    w = rows / 4 * sums / (sums + 1e-7)
    expected = torch.einsum("bc,bchw->bhw", w, torch.cat([x, x.sum(1, keepdim=True)], 1))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got[1], EXPECTED["gradcam"][1], atol=1e-3)  # channel 1 dropped


def test_hand_model_gradcampp_both_variants(hand):
    model, x, y = hand
    got = get_explainer("gradcam++")(model, x, y, ["features"])["features"]
    # eq. 19, sample 0: g = W_0/4 = [0.25, -0.5, 0.125], Σ A = [10, 2, 12]
    # α_k = g² / (2g² + ΣA·g³ + 1e-6); w_k = Σ_ij α_k ReLU(g_k) = 4 α_k ReLU(g_k)
    a0 = 0.0625 / (2 * 0.0625 + 10 * 0.015625 + 1e-6)
    a2 = 0.015625 / (2 * 0.015625 + 12 * 0.001953125 + 1e-6)
    w0, w2 = 4 * a0 * 0.25, 4 * a2 * 0.125
    expected0 = w0 * x[0, 0] + w2 * (x[0, 0] + x[0, 1])
    torch.testing.assert_close(got[0], expected0, rtol=1e-6, atol=1e-6)
    # belharbi2024: α = g², w_k = 4 g² ReLU(g) = [0.0625, 0, 0.0078125] ∝ ReLU(W)³
    paper = GradCAMPlusPlus("belharbi2024")(model, x, y, ["features"])["features"]
    torch.testing.assert_close(
        paper[0], T([[0.0703125, 0.1484375], [0.203125, 0.296875]]), rtol=0, atol=1e-7
    )


def test_targets_pred_int_and_out_of_range(hand):
    model, x, _ = hand
    logits = model(x)
    pred = get_explainer("cam")(model, x, "pred", ["features"])["features"]
    explicit = get_explainer("cam")(model, x, logits.argmax(1), ["features"])["features"]
    torch.testing.assert_close(pred, explicit)
    both_zero = get_explainer("gradcam")(model, x, 0, ["features"])["features"]
    torch.testing.assert_close(both_zero[0], EXPECTED["gradcam"][0])
    assert not torch.allclose(both_zero[1], EXPECTED["gradcam"][1])
    with pytest.raises(ValueError, match="target class 2 is out of range"):
        get_explainer("gradcam")(model, x, [0, 2], ["features"])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        get_explainer("gradcam")(model, x, [0, 1, 1], ["features"])


def test_cam_rejects_a_head_that_is_not_gap_linear_at_that_layer():
    model = create("vit_tiny_patch16_224", 3, img_size=32, depth=2)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"GAP \+ linear head fed by layer 'blocks.1'"):
        get_explainer("cam")(model, x, [0, 1], ["blocks.1"])
    cnn = create("resnet18", 3)
    with pytest.raises(ValueError, match="'layer3' has 256 channels"):
        get_explainer("cam")(cnn, torch.randn(1, 3, 32, 32), [0], ["layer3"])
    with pytest.raises(ValueError, match="classifier is Conv2d"):
        CAM(classifier="conv1")(cnn, torch.randn(1, 3, 32, 32), [0], ["layer4"])


def test_cam_equals_gradcam_times_hw_on_timm_resnet():
    model = create("resnet18", 5)
    x = torch.randn(3, 3, 64, 64)
    maps = explain(model, x, [0, 3, 4], ["layer4"], ["cam", "gradcam"])
    torch.testing.assert_close(
        maps["cam"]["layer4"] / 4, maps["gradcam"]["layer4"], atol=1e-6, rtol=1e-5
    )


def test_non_spatial_layer_and_unused_layer_errors(hand):
    model, x, y = hand
    with pytest.raises(ValueError, match=r"'fc' output of shape .* is not spatial"):
        get_explainer("gradcam")(model, x, y, ["fc"])
    with pytest.raises(ValueError, match=r"unknown layer 'featurs'.*did you mean features"):
        get_explainer("gradcam")(model, x, y, ["featurs"])


def test_one_forward_one_backward_for_all_methods_and_layers(hand):
    model, x, y = hand
    calls = {"forward": 0, "backward": 0}

    def counter(key):
        def count(*_):
            calls[key] += 1

        return count

    handles = [
        model.register_forward_pre_hook(counter("forward")),
        model.fc.register_full_backward_hook(counter("backward")),
    ]
    try:
        methods = [*GRADIENT_METHODS, "attention", "cam", "random", "centre"]
        maps = explain(model, x, y, ["features", "pool"], methods)
        assert calls == {"forward": 1, "backward": 1}
        assert set(maps) == set(methods) and all(
            set(m) == {"features", "pool"} for m in maps.values()
        )
        calls.update(forward=0, backward=0)
        explain(model, x, y, ["features"], ["attention", "cam", "centre"])
        assert calls == {"forward": 1, "backward": 0}
    finally:
        for handle in handles:
            handle.remove()


def test_controls_alone_cost_no_model_pass_on_the_batch():
    model = create("resnet18", 4)
    x = torch.randn(5, 3, 64, 64)
    seen = []
    handle = model.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    try:
        alone = explain(model, x, [0, 1, 2, 3, 0], ["layer3", "layer4"], ["centre", "random"])
        assert seen == [1]  # one single-image forward learns the layers' grids
        explain(model, x, [0, 1, 2, 3, 0], ["layer3", "layer4"], ["centre", "random"])
        assert seen == [1]  # then cached for this model and input shape
        shared = explain(model, x, [0, 1, 2, 3, 0], ["layer3", "layer4"], ["centre", "gradcam"])
        assert seen == [1, 5]
    finally:
        handle.remove()
    assert alone["centre"]["layer3"].shape == (5, 4, 4) and alone["random"]["layer4"].shape == (
        5,
        2,
        2,
    )
    torch.testing.assert_close(
        alone["centre"]["layer4"], shared["centre"]["layer4"], rtol=0, atol=0
    )


def test_explain_batch_keeps_the_single_pass_logits_as_the_eval_forward_gives_them():
    """The evaluation takes its predictions from the single pass: its logits are the model's
    eval-mode output bit for bit (a model left in train mode included), and None when no method
    ran the model on the batch."""
    torch.manual_seed(0)
    model = create("resnet10t", 7, large_maps=True).train()
    x = torch.randn(6, 3, 64, 64)
    result = explain_batch(model, x, [0, 1, 2, 3, 4, 5], ["stage:5"], ["attention", "gradcam"])
    assert model.training  # its mode restored
    with torch.no_grad():
        expected = model.eval()(x)
    assert torch.equal(result.logits, expected)
    maps = explain(model, x, [0, 1, 2, 3, 4, 5], ["stage:5"], ["attention", "gradcam"])
    assert all(torch.equal(maps[m]["layer4"], result.maps[m]["layer4"]) for m in maps)
    assert explain_batch(model, x, [0] * 6, ["stage:5"], ["centre"]).logits is None


def test_frozen_model_under_no_grad_keeps_modes_and_grads():
    model = create("resnet18", 4)
    for p in model.parameters():
        p.requires_grad_(False)
    model.train()
    model.bn1.eval()  # a mixed-mode model: restored module by module
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = get_explainer("gradcam")(model, x, [1, 2], ["layer3", "layer4"])
    assert maps["layer3"].shape == (2, 2, 2) and maps["layer3"].abs().sum() > 0
    assert model.training and not model.bn1.training and model.layer1.training
    assert all(p.grad is None for p in model.parameters())


def test_autocast_bfloat16_gives_float32_maps_close_to_float32():
    model = create("resnet18", 4)
    x = torch.randn(2, 3, 64, 64)
    reference = layer_maps(model, x, [0, 1], ["layer3"], [get_explainer("gradcam")])[0]["layer3"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = layer_maps(model, x, [0, 1], ["layer3"], [get_explainer("gradcam")])[0]["layer3"]
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    cosine = torch.nn.functional.cosine_similarity(mixed.flatten(1), reference.flatten(1))
    assert (cosine > 0.95).all(), cosine


# --- equality with pytorch-grad-cam -----------------------------------------------------------

GC_CLASSES = {
    "gradcam": gc.GradCAM,
    "gradcam++": gc.GradCAMPlusPlus,
    "xgradcam": gc.XGradCAM,
    "layercam": gc.LayerCAM,
    "hirescam": gc.HiResCAM,
    "gradcam-elementwise": gc.GradCAMElementWise,
}
#: Issue #4: equal to pytorch-grad-cam to 1e-4 after the same normalisation (measured ≤ 4e-6).
GC_ATOL = 1e-4

BACKBONES = {
    # name: (image side, layers, reshape_transform for pytorch-grad-cam)
    "resnet18": (64, ["layer2", "layer3", "layer4"], None),
    # the last block's patch tokens do not reach the class token: use norm1 inside it
    "vit_tiny_patch16_224": (
        64,
        ["blocks.5", "blocks.11.norm1"],
        partial(vit_reshape_transform, height=4, width=4),
    ),
}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone(request):
    name = request.param
    side, layers, reshape = BACKBONES[name]
    torch.manual_seed(0)
    model = create(name, 7, img_size=side)
    x = torch.randn(3, 3, side, side)
    y = torch.tensor([0, 3, 6])
    maps = explain(model, x, y, layers, list(GC_CLASSES))
    return model, x, y, layers, reshape, maps


@pytest.mark.parametrize("method", sorted(GC_CLASSES))
def test_gradient_family_equals_pytorch_grad_cam(backbone, method):
    """aubench raw map → relu → bilinear resize (align_corners=False) to the input → min-max,
    against pytorch-grad-cam's own output (ReLU, min-max, cv2 bilinear resize, min-max)."""
    model, x, y, layers, reshape, maps = backbone
    modules = dict(model.named_modules())
    post = Postprocess([relu(), resize(x.shape[-2:]), minmax()])
    for layer in layers:
        with GC_CLASSES[method](model, [modules[layer]], reshape_transform=reshape) as cam:
            expected = cam(x, [ClassifierOutputTarget(int(t)) for t in y])
        got = post(maps[method][layer]).numpy()
        assert got.shape == expected.shape
        assert expected.max() > 0.99  # a real, non-degenerate map
        np.testing.assert_allclose(got, expected, rtol=0, atol=GC_ATOL, err_msg=f"{method} {layer}")


# --- Eigen-CAM and Eigen-Grad-CAM, native ------------------------------------------------------


def test_first_component_by_hand_and_its_sign_rule():
    # channel 0 = [[3, 0], [0, 1]] (centred: [[2, -1], [-1, 0]]), channel 1 = 0: the first
    # principal direction is channel 0, σ₁u₁ = ±[2, -1, -1, 0]; |max| > |min| fixes the sign
    a = T([[[[3, 0], [0, 1]], [[0, 0], [0, 0]]]])
    expected = T([[[2, -1], [-1, 0]]])
    torch.testing.assert_close(first_component_maps(a), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(first_component_maps(-a), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(first_component_maps(a + 5.0), expected, rtol=0, atol=1e-6)
    nan = a.clone()
    nan[0, 1, 0, 0] = float("nan")  # NaN counts as 0, as pytorch-grad-cam does
    torch.testing.assert_close(first_component_maps(nan), expected, rtol=0, atol=1e-6)


def test_eigencam_is_native_one_pass_and_eigengradcam_uses_the_gradients(hand):
    model, x, y = hand
    maps = explain(model, x, y, ["features"], ["eigencam", "eigengradcam", "gradcam"])
    a = model.features(x).detach()
    torch.testing.assert_close(maps["eigencam"]["features"], first_component_maps(a))
    # HandNet's GAP + linear head: g = W_t / 4 per channel, so g ⊙ A is A with scaled channels
    scaled = a * (model.fc.weight.detach()[y] / 4)[:, :, None, None]
    torch.testing.assert_close(maps["eigengradcam"]["features"], first_component_maps(scaled))


def _sign_fixed(raw: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam Seg-Eigen-CAM's eq. 13, per map: negate when |min| > |max|."""
    flip = np.abs(raw.min(axis=(1, 2))) > np.abs(raw.max(axis=(1, 2)))
    return np.where(flip[:, None, None], -raw, raw)


@pytest.mark.parametrize("method", ["eigencam", "eigengradcam"])
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_native_eigen_methods_equal_pytorch_grad_cam_up_to_its_sign(name, method):
    side, layers, _ = BACKBONES[name]
    torch.manual_seed(0)
    model = create(name, 7, img_size=side)
    x, y = torch.randn(3, 3, side, side), torch.tensor([0, 3, 6])
    native = explain(model, x, y, layers, [method])[method]
    library = get_explainer(f"gc:{method}")(model, x, y, layers)
    post = Postprocess([relu(), resize(x.shape[-2:]), minmax()])
    for layer in layers:
        expected = torch.from_numpy(_sign_fixed(library[layer].numpy()))
        scale = expected.abs().amax()
        torch.testing.assert_close(native[layer], expected, rtol=0, atol=1e-4 * float(scale))
        got, want = post(native[layer]).numpy(), post(expected).numpy()
        assert want.max() > 0.99
        np.testing.assert_allclose(got, want, rtol=0, atol=GC_ATOL, err_msg=f"{method} {layer}")
