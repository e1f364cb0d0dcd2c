"""pytorch-grad-cam and captum adapters against direct calls of those libraries, plus
hand-computed Saliency / Input×Gradient on a linear model."""

from functools import partial

import captum.attr
import numpy as np
import pytest
import pytorch_grad_cam as gc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform
from torch import nn

from aubench.explain import (
    INPUT,
    GradCamAdapter,
    Postprocess,
    default_postprocess,
    get_explainer,
    minmax,
)
from aubench.models import create
from tests.explain_models import TinyCNN, hook_count, one_thread  # noqa: F401 (autouse)

SIDE = 16


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    model = TinyCNN()
    with torch.no_grad():  # non-trivial BN statistics
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    # eval mode, as every explainer runs the model: the direct library calls below then use the
    # same BN statistics whatever order the tests run in
    return model.eval(), torch.randn(2, 3, SIDE, SIDE), torch.tensor([0, 2])


def _direct_gc(cls, model, layer, x, y, reshape=None, **options):
    modules = dict(model.named_modules())
    with cls(model, [modules[layer]] if layer else [], reshape_transform=reshape, **options) as cam:
        return cam(x, [ClassifierOutputTarget(int(t)) for t in y])


# --- pytorch-grad-cam -------------------------------------------------------------------------

GC_LAYER_METHODS = {
    "scorecam": gc.ScoreCAM,
    "ablationcam": gc.AblationCAM,
    "gc:eigencam": gc.EigenCAM,
    "gc:eigengradcam": gc.EigenGradCAM,
    "kpca-cam": gc.KPCA_CAM,
    "fem": gc.FEM,
    "shapleycam": gc.ShapleyCAM,
    "seg-eigencam": gc.SegEigenCAM,
}


@pytest.mark.parametrize("method", sorted(GC_LAYER_METHODS))
def test_gradcam_adapter_raw_maps_match_the_library(tiny, method):
    """Raw layer maps → relu → resize → minmax equal pytorch-grad-cam's own output."""
    model, x, y = tiny
    explainer = get_explainer(method)
    maps = explainer(model, x, y, ["act"])
    assert list(maps) == ["act"] and maps["act"].shape == (2, 8, 8)
    expected = _direct_gc(GC_LAYER_METHODS[method], model, "act", x, y)
    got = default_postprocess(explainer, SIDE)(maps["act"]).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert (expected.max(axis=(1, 2)) > 0.99).all()  # real, non-degenerate maps


def test_fullgrad_is_input_level_and_matches_the_library(tiny):
    model, x, y = tiny
    maps = get_explainer("fullgrad")(model, x, y, ["act"])
    assert list(maps) == [INPUT] and maps[INPUT].shape == (2, SIDE, SIDE)
    expected = _direct_gc(gc.FullGrad, model, None, x, y)
    np.testing.assert_allclose(Postprocess([minmax()])(maps[INPUT]).numpy(), expected, atol=1e-5)


def test_gradcam_adapter_on_vit_tokens_matches_the_library_with_its_reshape():
    torch.manual_seed(0)
    model = create("vit_tiny_patch16_224", 3, img_size=32, depth=2, embed_dim=48, num_heads=3)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    reshape = partial(vit_reshape_transform, height=2, width=2)
    direct = {
        "gc:eigencam": partial(_direct_gc, gc.EigenCAM),
        "scorecam": partial(_direct_gc, gc.ScoreCAM),
        "ablationcam": partial(_direct_gc, gc.AblationCAM, ablation_layer=gc.AblationLayerVit()),
    }
    for method, call in direct.items():
        maps = get_explainer(method)(model, x, y, ["blocks.1.norm1"])
        assert maps["blocks.1.norm1"].shape == (2, 2, 2)
        expected = call(model, "blocks.1.norm1", x, y, reshape)
        got = default_postprocess(get_explainer(method), 32)(maps["blocks.1.norm1"]).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=method)
        assert (expected.max(axis=(1, 2)) > 0.99).all(), method


def test_gradcam_adapter_any_class_by_name_restores_grads_and_modes(tiny):
    model, x, y = tiny
    model.train()
    model.zero_grad(set_to_none=True)  # direct pytorch-grad-cam calls above left gradients
    marker = torch.ones_like(model.fc.weight)
    model.fc.weight.grad = marker
    maps = GradCamAdapter("GradCAM")(model, x, y, ["act"])
    native = get_explainer("gradcam")(model, x, y, ["act"])
    torch.testing.assert_close(maps["act"], native["act"], atol=1e-6, rtol=1e-5)
    assert model.fc.weight.grad is marker and model.conv1.weight.grad is None
    assert model.training and hook_count(model) == 0
    model.eval()
    model.fc.weight.grad = None
    with pytest.raises(ValueError, match="no CAM class 'GradCam'"):
        GradCamAdapter("GradCam")


# --- captum -----------------------------------------------------------------------------------


class Linear(nn.Module):
    """y = W · flatten(x) + b for (B, 2, 2, 2) inputs, 2 classes."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.arange(-8.0, 8.0).reshape(2, 8) / 4)  # row 0 < 0, row 1 ≥ 0
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_saliency_and_input_x_gradient_by_hand():
    model = Linear()
    x = torch.arange(16.0).reshape(2, 2, 2, 2) - 4
    weight = model.fc.weight.detach().reshape(2, 2, 2, 2)  # (class, channel, h, w)
    y = torch.tensor([0, 1])
    # ∂y_t/∂x = W_t; Saliency (abs=True) summed over channels: Σ_c |W_t,c|
    saliency = get_explainer("saliency")(model, x, y)[INPUT]
    torch.testing.assert_close(saliency[0], weight[0].abs().sum(0))
    torch.testing.assert_close(saliency[1], weight[1].abs().sum(0))
    assert saliency[0, 0, 0] == (2.0 + 1.0)  # |−8/4| + |−4/4|
    ixg = get_explainer("input-x-gradient")(model, x, y)[INPUT]
    torch.testing.assert_close(ixg, (x * weight[y]).sum(1))
    # IG from a zero baseline of a linear model is exactly x ⊙ W_t; it sums to y_t − y_t(0)
    ig = get_explainer("integrated-gradients", n_steps=4)(model, x, y)[INPUT]
    torch.testing.assert_close(ig, ixg)
    logits = model(x).detach()
    torch.testing.assert_close(ig.sum((1, 2)), logits[[0, 1], y])
    maxabs = get_explainer("saliency", reduce="max-abs")(model, x, y)[INPUT]
    torch.testing.assert_close(maxabs[0], weight[0].abs().amax(0))


def _reduce_sum(attribution):
    return attribution.detach().sum(1)


CAPTUM_DIRECT = {
    # name: (options for the adapter, direct call)
    "guided-backprop": ({}, lambda m, x, y: captum.attr.GuidedBackprop(m).attribute(x, target=y)),
    "deeplift": ({}, lambda m, x, y: captum.attr.DeepLift(m).attribute(x, target=y)),
    "integrated-gradients": (
        {"n_steps": 8},
        lambda m, x, y: captum.attr.IntegratedGradients(m).attribute(x, target=y, n_steps=8),
    ),
    "occlusion": (
        {"perturbations_per_eval": 16},
        lambda m, x, y: captum.attr.Occlusion(m).attribute(
            x, (3, 2, 2), strides=(3, 2, 2), target=y, perturbations_per_eval=16
        ),
    ),
}


@pytest.mark.parametrize("method", sorted(CAPTUM_DIRECT))
def test_captum_input_methods_match_direct_calls(tiny, method):
    model, x, y = tiny
    options, direct = CAPTUM_DIRECT[method]
    got = get_explainer(method, **options)(model, x, y)[INPUT]
    expected = _reduce_sum(direct(model, x.clone().requires_grad_(True), y))
    assert got.shape == (2, SIDE, SIDE) and expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_smoothgrad_matches_noise_tunnel_with_the_same_seed(tiny):
    model, x, y = tiny
    torch.manual_seed(5)
    got = get_explainer("smoothgrad", nt_samples=4)(model, x, y)[INPUT]
    torch.manual_seed(5)
    sigma = 0.15 * float(x.max() - x.min())
    tunnel = captum.attr.NoiseTunnel(captum.attr.Saliency(model))
    expected = tunnel.attribute(
        x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=4, stdevs=sigma, target=y
    )
    torch.testing.assert_close(got, _reduce_sum(expected))


def test_captum_layer_methods(tiny):
    model, x, y = tiny
    layer = get_explainer("layer-gradcam")(model, x, y, ["conv2", "act"])
    native = get_explainer("gradcam")(model, x, y, ["conv2", "act"])
    for name in ("conv2", "act"):
        torch.testing.assert_close(layer[name], native[name], atol=1e-6, rtol=1e-5)
    guided = get_explainer("guided-gradcam")(model, x, y, ["act"])
    expected = captum.attr.GuidedGradCam(model, model.act).attribute(
        x.clone().requires_grad_(True), target=y
    )
    assert guided["act"].shape == (2, SIDE, SIDE)
    torch.testing.assert_close(guided["act"], _reduce_sum(expected))
    vit = create("vit_tiny_patch16_224", 3, img_size=32, depth=1, embed_dim=48, num_heads=3)
    with pytest.raises(ValueError, match=r"needs a \(B, C, H, W\) layer; 'blocks.0' outputs"):
        get_explainer("layer-gradcam")(vit, torch.randn(1, 3, 32, 32), [0], ["blocks.0"])
    with pytest.raises(ValueError, match="reduce='mean'"):
        get_explainer("saliency", reduce="mean")


def test_captum_layer_method_runs_only_its_own_pass():
    model = create("resnet10t", 7)
    x = torch.randn(4, 3, 32, 32)
    seen = []
    handle = model.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    try:
        get_explainer("layer-gradcam")(model, x, [0, 1, 2, 3], ["layer4"])
        assert seen == [1, 4]  # a single-image probe of the layer's shape (once), captum's pass
        get_explainer("layer-gradcam")(model, x, [0, 1, 2, 3], ["layer4"])
        assert seen == [1, 4, 4]
    finally:
        handle.remove()
