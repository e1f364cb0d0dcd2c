"""pytorch-grad-cam adapter: its other CAM methods, returning raw maps at layer resolution.

``GradCamAdapter("ScoreCAM")`` (or a registered name below) runs the pytorch-grad-cam class
itself — its forward, targets (``ClassifierOutputTarget(t)``: the logit), backward and its own
``get_cam_image`` per layer — but stops before its ReLU, per-layer min-max, cv2 resize and
layer averaging, so the result follows the aubench map contract (raw, at the layer's grid) and
goes through the same named post-processing as every other method (``relu = True``:
pytorch-grad-cam applies a ReLU to every method).

- ViT and other token layouts: the ``reshape_transform`` is :meth:`FeatureCapture.spatial`
  (prefix tokens dropped, patch tokens on their grid); Ablation-CAM on a token model gets
  ``AblationLayerVit`` unless an ``ablation_layer`` is given.
- ``FullGrad`` ignores the layers (it uses every conv/BN bias) and returns one map at input
  resolution under ``"input"``: its sum of per-bias-layer maps, before its final min-max.
- Side effects are undone: the model's per-module train/eval modes, and the parameters'
  ``.grad`` (pytorch-grad-cam calls ``zero_grad()`` and ``backward()``); its hooks are released
  even on errors (its own ``__exit__`` would swallow an ``IndexError``).
- pytorch-grad-cam loops per image for Score-CAM and Ablation-CAM (B·C forward passes; see
  shared/reference/environment.md §5 — cap the batch or use a small model) and per image for
  the KPCA decompositions, on the CPU, in NumPy (the library has no batched form of these);
  Eigen-CAM and Eigen-Grad-CAM are native instead (:mod:`aubench.explain.eigen`).

Known upstream limitations (pytorch-grad-cam 1.5.7): ``ShapleyCAM`` needs a double backward,
which timm ViTs' fused attention lacks on the CPU, and on token layers it reshapes the
activations for its weights but not for the weighted sum. ``AblationCAM`` swaps the layer for
its ``AblationLayer`` while it runs; an error in between leaves the swap in the model.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import numpy as np
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
from aubench.models import FeatureCapture, resolve_layers

#: Registered name → pytorch-grad-cam class name. Eigen-CAM and Eigen-Grad-CAM are native
#: methods of the single pass (:mod:`aubench.explain.eigen`); their adapters keep the ``gc:``
#: prefix, for cross-checks.
GRADCAM_METHODS = {
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "gc:eigencam": "EigenCAM",
    "gc:eigengradcam": "EigenGradCAM",
    "fullgrad": "FullGrad",
    "kpca-cam": "KPCA_CAM",
    "fem": "FEM",
    "shapleycam": "ShapleyCAM",
    "seg-eigencam": "SegEigenCAM",
}


class GradCamAdapter(Explainer):
    """Any ``pytorch_grad_cam`` ``BaseCAM`` subclass, by class name, as an aubench explainer.

    Args:
        method: class name in ``pytorch_grad_cam`` (``"ScoreCAM"``, ``"GradCAMPlusPlus"``, …).
        batch_size: masked/ablated images per forward pass (Score-CAM, Ablation-CAM).
        **options: passed to the class's constructor (``k`` for FEM, ``kernel``/``gamma`` for
            KPCA-CAM, ``ratio_channels_to_ablate`` or ``ablation_layer`` for Ablation-CAM, …).
    """

    relu = True

    def __init__(self, method: str, batch_size: int | None = None, **options):
        import pytorch_grad_cam
        from pytorch_grad_cam.base_cam import BaseCAM

        cls = getattr(pytorch_grad_cam, method, None)
        if not (isinstance(cls, type) and issubclass(cls, BaseCAM)):
            raise ValueError(f"pytorch_grad_cam has no CAM class {method!r}")
        self.method = method
        self.name = next((k for k, v in GRADCAM_METHODS.items() if v == method), f"gc:{method}")
        self.batch_size = batch_size
        self.options = options
        per_layer = cls.compute_cam_per_layer is BaseCAM.compute_cam_per_layer
        self.level = "layer" if per_layer else "input"
        self._cls = _raw_maps_class(cls, per_layer=per_layer)

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Targets,
        layers: Layers = None,
        *,
        landmarks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        from pytorch_grad_cam import AblationLayerVit
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        check_images(images)
        per_layer = self.level == "layer"
        names = []
        if per_layer:
            names = resolve_layers(model, DEFAULT_LAYERS if layers is None else layers)
        modules = dict(model.named_modules())
        options = dict(self.options)
        if self.method == "AblationCAM" and getattr(model, "num_prefix_tokens", None) is not None:
            options.setdefault("ablation_layer", AblationLayerVit())
        with evaluation_mode(model), _grads_restored(model):
            target = model_targets(model, images, targets)
            with FeatureCapture(model, names) as capture:
                cam = self._cls(
                    model,
                    [modules[name] for name in names],
                    reshape_transform=partial(_as_spatial, capture) if per_layer else None,
                    **options,
                )
                try:
                    if self.batch_size is not None:
                        cam.batch_size = self.batch_size
                    maps = cam(images, [ClassifierOutputTarget(int(t)) for t in target])
                finally:
                    cam.activations_and_grads.release()
                    capture.clear()
        keys = names if per_layer else [INPUT]
        return {
            key: torch.from_numpy(np.asarray(m, dtype=np.float32)).to(images.device)
            for key, m in zip(keys, maps, strict=True)
        }


def _as_spatial(capture: FeatureCapture, tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ``reshape_transform``: an activation or gradient as (B, C, H, W)."""
    for name in capture.layers:
        raw = capture.raw.get(name)
        if raw is not None and raw.shape == tensor.shape:
            return capture.spatial(name, tensor)
    raise ValueError(f"no captured layer has the shape {tuple(tensor.shape)}")


def _raw_maps_class(cls: type, per_layer: bool) -> type:
    """``cls`` with the post-processing removed: its ``__call__`` returns a list of raw maps.

    ``per_layer``: one (B, h, w) map per target layer from the class's own ``get_cam_image``
    (what ``BaseCAM.compute_cam_per_layer`` computes before its ReLU, min-max and resize).
    Otherwise (FullGrad) the class's own per-layer maps are kept and summed, as its
    ``aggregate_multi_layers`` does, without the final min-max.
    """
    if per_layer:

        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            store = self.activations_and_grads
            as_array = (lambda t: t.cpu().data.numpy()) if self.detach else (lambda t: t)
            activations = [as_array(a) for a in store.activations]
            gradients = [as_array(g) for g in store.gradients]
            return [
                self.get_cam_image(
                    input_tensor,
                    layer,
                    targets,
                    activations[i],
                    gradients[i] if i < len(gradients) else None,
                    eigen_smooth,
                )
                for i, layer in enumerate(self.target_layers)
            ]

        def aggregate_multi_layers(self, cams):
            return cams

        namespace = {
            "compute_cam_per_layer": compute_cam_per_layer,
            "aggregate_multi_layers": aggregate_multi_layers,
        }
    else:

        def aggregate_multi_layers(self, cams):
            return [np.sum(cams, axis=1)]

        namespace = {"aggregate_multi_layers": aggregate_multi_layers}
    return type(f"Raw{cls.__name__}", (cls,), namespace)


@contextmanager
def _grads_restored(model: nn.Module):
    """Restore every parameter's ``.grad`` (object and value) on exit."""
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for parameter, grad in saved:
            parameter.grad = grad


for _name, _method in GRADCAM_METHODS.items():
    register(_name, partial(GradCamAdapter, _method))
