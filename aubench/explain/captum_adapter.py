"""captum adapter: attribution methods as aubench explainers.

Input-level methods return one map at input resolution under ``"input"``; their (B, 3, H, W)
attribution is reduced over channels by ``reduce``:

- ``"sum"`` (default): ``Σ_c a_c``, the pixel's total signed attribution — captum's own
  convention (``visualize_image_attr`` sums channels), and it keeps IG/DeepLift completeness
  (the map sums to the attributed logit difference). For Saliency (``abs=True``, captum's
  default) this is ``Σ_c |∂y/∂x_c|``;
- ``"abs-sum"``: ``Σ_c |a_c|``;  ``"max-abs"``: ``max_c |a_c|`` (Simonyan et al.'s saliency).

No ReLU by default (``relu = False``): signed attributions are min-max normalised as they are.

=========================  ===============================================  ==============
name                       captum call                                      map
=========================  ===============================================  ==============
``saliency``               ``Saliency(model)``, ``abs=True``                input
``input-x-gradient``       ``InputXGradient(model)``: x ⊙ ∂y/∂x             input
``integrated-gradients``   ``IntegratedGradients(model)``, baseline 0       input
                           (the dataset-mean colour for normalised
                           images), ``n_steps=50``
``guided-backprop``        ``GuidedBackprop(model)``                        input
``deeplift``               ``DeepLift(model)``, baseline 0                  input
``occlusion``              ``Occlusion(model)``, baseline 0, windows of     input
                           3 × ⌈H/8⌉ × ⌈W/8⌉, stride = window (64 passes)
``smoothgrad``             ``NoiseTunnel(Saliency(model))``, smoothgrad,    input
                           ``nt_samples=10``, ``stdevs`` = 0.15 × the
                           batch's value range (Smilkov et al.: 10–20 %)
``layer-gradcam``          ``LayerGradCam(model, layer)``, no ReLU inside   each layer's
                           (``relu = True`` downstream, as Grad-CAM)        grid
``guided-gradcam``         ``GuidedGradCam(model, layer)``                  input, keyed by
                                                                            layer
=========================  ===============================================  ==============

Other keyword options are passed to captum's ``attribute`` (e.g. ``n_steps``,
``internal_batch_size``, ``baselines``, ``perturbations_per_eval``, ``nt_samples``). Layer
methods need a (B, C, H, W) layer; for ViT token layers use the native ``gradcam``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from aubench.explain.base import (
    DEFAULT_LAYERS,
    INPUT,
    Explainer,
    Layers,
    Targets,
    check_images,
    evaluation_mode,
    model_targets,
    register,
)
from aubench.explain.engine import layer_shapes
from aubench.models import resolve_layers

#: SmoothGrad noise σ as a fraction of the batch's value range (Smilkov et al.: 10–20 %).
SMOOTHGRAD_NOISE = 0.15

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda a: a.sum(1),
    "abs-sum": lambda a: a.abs().sum(1),
    "max-abs": lambda a: a.abs().amax(1),
}


def _occlusion_defaults(images: torch.Tensor) -> dict:
    window = (images.shape[1], *(math.ceil(side / 8) for side in images.shape[-2:]))
    return {"sliding_window_shapes": window, "strides": window}


def _smoothgrad_defaults(images: torch.Tensor) -> dict:
    spread = float(images.max() - images.min())
    return {"nt_type": "smoothgrad", "nt_samples": 10, "stdevs": SMOOTHGRAD_NOISE * spread}


@dataclass(frozen=True)
class CaptumMethod:
    """How to run one captum method.

    ``build(model[, layer])`` makes the captum object; ``per_layer``: it takes a layer and is
    run once per requested layer; ``relu``: the method defines a ReLU (applied downstream);
    ``reduce_channels``: its attribution is (B, 3, H, W) and gets the channel reduction
    (otherwise (B, 1, h, w)); ``defaults(images)``: ``attribute`` keywords that depend on the
    batch.
    """

    build: Callable[..., object]
    per_layer: bool = False
    relu: bool = False
    reduce_channels: bool = True
    defaults: Callable[[torch.Tensor], dict] = field(default=lambda images: {})


def _captum(name: str) -> Callable[..., object]:
    def build(model: nn.Module, *args):
        import captum.attr

        return getattr(captum.attr, name)(model, *args)

    return build


def _smoothgrad(model: nn.Module):
    import captum.attr

    return captum.attr.NoiseTunnel(captum.attr.Saliency(model))


#: Registered name → how to run it.
CAPTUM_METHODS: dict[str, CaptumMethod] = {
    "saliency": CaptumMethod(_captum("Saliency")),
    "input-x-gradient": CaptumMethod(_captum("InputXGradient")),
    "integrated-gradients": CaptumMethod(_captum("IntegratedGradients")),
    "guided-backprop": CaptumMethod(_captum("GuidedBackprop")),
    "deeplift": CaptumMethod(_captum("DeepLift")),
    "occlusion": CaptumMethod(_captum("Occlusion"), defaults=_occlusion_defaults),
    "smoothgrad": CaptumMethod(_smoothgrad, defaults=_smoothgrad_defaults),
    "layer-gradcam": CaptumMethod(
        _captum("LayerGradCam"), per_layer=True, relu=True, reduce_channels=False
    ),
    "guided-gradcam": CaptumMethod(_captum("GuidedGradCam"), per_layer=True),
}


class CaptumAdapter(Explainer):
    """One captum attribution method (a key of :data:`CAPTUM_METHODS`) as an explainer.

    Args:
        method: registered name (``"integrated-gradients"``, ``"layer-gradcam"``, …).
        reduce: channel reduction of input attributions: ``"sum"``, ``"abs-sum"``, ``"max-abs"``.
        **options: keywords for captum's ``attribute`` (override the defaults).
    """

    def __init__(self, method: str, reduce: str = "sum", **options):
        if method not in CAPTUM_METHODS:
            known = ", ".join(CAPTUM_METHODS)
            raise ValueError(f"unknown captum method {method!r}; known: {known}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce={reduce!r}: choose one of {', '.join(REDUCTIONS)}")
        self.name = method
        self.spec = CAPTUM_METHODS[method]
        self.relu = self.spec.relu
        self.level = "layer" if self.spec.per_layer else "input"
        self.reduce = reduce
        self.options = options

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Targets,
        layers: Layers = None,
        *,
        landmarks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        check_images(images)
        with evaluation_mode(model):
            if not self.spec.per_layer:
                target = model_targets(model, images, targets)
                return {INPUT: self._attribute(self.spec.build(model), images, target)}
            names = resolve_layers(model, DEFAULT_LAYERS if layers is None else layers)
            for name, (raw, spatial) in layer_shapes(model, names, images).items():
                if raw != spatial:
                    raise ValueError(
                        f"{self.name} needs a (B, C, H, W) layer; {name!r} outputs "
                        f"(B, {', '.join(map(str, raw))}) (tokens or channels-last): use the "
                        "native gradcam, which reshapes them"
                    )
            target = model_targets(model, images, targets)
            modules = dict(model.named_modules())
            return {
                name: self._attribute(self.spec.build(model, modules[name]), images, target)
                for name in names
            }

    def _attribute(self, method, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Run captum's ``attribute`` on a fresh leaf copy of ``images``; (B, H', W') float32."""
        inputs = images.detach().clone().requires_grad_(True)
        options = {**self.spec.defaults(images), **self.options}
        attribution = method.attribute(inputs, target=target, **options).detach().float()
        if self.spec.reduce_channels:
            return REDUCTIONS[self.reduce](attribution)
        return attribution[:, 0]


for _name in CAPTUM_METHODS:
    register(_name, partial(CaptumAdapter, _name))
