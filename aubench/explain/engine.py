"""The single pass: one forward and at most one backward for every layer method at once.

:func:`layer_maps` runs ``model(images)`` once under :class:`~aubench.models.FeatureCapture`
on all requested layers, picks each sample's target logit ``y_b = logits[b, t_b]`` and, when a
method needs gradients, calls ``torch.autograd.grad(Σ_b y_b, [A_l for every layer l])`` once:
only the activation gradients are computed (no parameter gradients, nothing accumulates in
``.grad``). Because samples do not interact in eval mode, ``∂(Σ_b y_b)/∂A_b = ∂y_b/∂A_b``:
each sample gets the gradient of its own target. Every :class:`LayerMethod` then turns the
(A, ∂y/∂A) pair of each layer into a map, in float32 whatever the autocast dtype.

The template (as pytorch-grad-cam's): a method defines ``terms(p) -> (B, C, H, W)`` and the map
is ``Σ_k terms_k``; channel-weighting methods define only ``weights(p) -> (B, C)`` and the map is
``Σ_k w_k A_k``. :func:`explain` runs several methods, sharing the single pass among all layer
methods and calling the others one by one.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from aubench.explain.base import (
    DEFAULT_LAYERS,
    Explainer,
    Layers,
    Targets,
    check_images,
    evaluation_mode,
    get_explainer,
    resolve_targets,
)
from aubench.models import FeatureCapture, resolve_layers


@dataclass(frozen=True)
class LayerPass:
    """What the single pass hands a method at one layer (shapes for a batch of B, K classes).

    ``activations`` A (B, C, H, W) and ``gradients`` g = ∂y_t/∂A (same shape, None when no method
    of the pass needs them) are detached float32 in (B, C, H, W) layout (ViT tokens on their
    patch grid); ``logits`` (B, K) float32; ``targets`` (B,) int64; ``images`` the input batch;
    ``landmarks`` (B, 68, 2) or None; ``grid`` the layer's (H, W). When every method of the pass
    is a control (``needs_activations`` false), the model does not run on the batch:
    ``activations`` and ``logits`` are None and only ``grid`` is known.
    """

    layer: str
    activations: torch.Tensor | None
    gradients: torch.Tensor | None
    logits: torch.Tensor | None
    targets: torch.Tensor
    images: torch.Tensor
    model: nn.Module
    landmarks: torch.Tensor | None
    grid: tuple[int, int]


class LayerMethod(Explainer):
    """A map computed from one layer's activations (and gradients) in the single pass.

    Subclasses define ``terms`` (or ``weights``, see :class:`ChannelWeighted`), or override
    ``layer_map`` for maps that are not a sum over channels.
    """

    #: Whether ``terms``/``weights`` read ``p.gradients`` (a backward pass is then run).
    needs_gradients: bool = True
    #: Whether the method reads the activations (controls need only the layer's grid).
    needs_activations: bool = True

    def terms(self, p: LayerPass) -> torch.Tensor:
        """Per-channel contributions (B, C, H, W), summed over channels by :meth:`layer_map`."""
        raise NotImplementedError(f"{type(self).__name__} defines neither terms nor layer_map")

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        """The raw map (B, H, W) of layer ``p.layer``: ``Σ_k terms_k``."""
        return self.terms(p).sum(1)

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Targets,
        layers: Layers = None,
        *,
        landmarks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        return layer_maps(model, images, targets, layers, [self], landmarks=landmarks)[0]


class ChannelWeighted(LayerMethod):
    """``L = Σ_k w_k A_k`` with one weight per sample and channel; define ``weights(p)``."""

    def weights(self, p: LayerPass) -> torch.Tensor:
        """Channel weights (B, C)."""
        raise NotImplementedError

    def layer_map(self, p: LayerPass) -> torch.Tensor:
        return torch.einsum("bc,bchw->bhw", self.weights(p), p.activations)


def layer_maps(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets,
    layers: Layers,
    methods: Sequence[LayerMethod],
    *,
    landmarks: torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Maps of every method at every layer from one forward and at most one backward pass.

    Returns one ``{layer: (B, H', W') float32}`` dict per method, in the order of ``methods``.
    The model runs in eval mode (each module's mode is restored afterwards), gradients are enabled
    even inside ``torch.no_grad()``, and the capture hooks are removed on exit, errors included.
    Raises ``ValueError`` for a non-spatial layer, bad targets, or a layer the target logit does
    not depend on.
    """
    return _single_pass(model, images, targets, layers, methods, landmarks)[0]


def _single_pass(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets,
    layers: Layers,
    methods: Sequence[LayerMethod],
    landmarks: torch.Tensor | None,
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor | None]:
    """:func:`layer_maps` and the pass's (B, K) float32 logits (None when it ran no model)."""
    check_images(images)
    names = resolve_layers(model, DEFAULT_LAYERS if layers is None else layers)
    if not any(m.needs_activations for m in methods) and not isinstance(targets, str):
        return _grid_only_maps(model, images, targets, names, methods, landmarks), None
    needs_gradients = any(method.needs_gradients for method in methods)
    with (
        evaluation_mode(model),
        FeatureCapture(model, names) as capture,
        torch.set_grad_enabled(needs_gradients),
    ):
        # An input that requires grad keeps every activation in the graph even when the
        # parameters are frozen; autograd.grad below never computes the input's own gradient.
        logits = model(images.detach().requires_grad_(needs_gradients))
        if logits.dim() != 2:
            raise ValueError(f"the model must return (B, K) logits, got {tuple(logits.shape)}")
        target = resolve_targets(targets, images.shape[0], logits.shape[1], logits)
        activations = {name: capture.spatial(name) for name in names}
        gradients = dict.fromkeys(names)
        if needs_gradients:
            score = logits.gather(1, target[:, None]).sum()
            raw = [capture.raw[name] for name in names]
            grads = torch.autograd.grad(score, raw, allow_unused=True)
            for name, grad in zip(names, grads, strict=True):
                if grad is None:
                    raise ValueError(f"the logits do not depend on layer {name!r}")
                gradients[name] = capture.spatial(name, grad).detach().float()
        capture.clear()
    logits = logits.detach().float()
    passes = [
        LayerPass(
            name,
            activations[name].detach().float(),
            gradients[name],
            logits,
            target,
            images,
            model,
            landmarks,
            tuple(activations[name].shape[-2:]),
        )
        for name in names
    ]
    return _maps_of(passes, methods, images), logits


def _maps_of(
    passes: Sequence[LayerPass], methods: Sequence[LayerMethod], images: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    with torch.autocast(images.device.type, enabled=False):  # weights in float32 under AMP
        return [{p.layer: method.layer_map(p) for p in passes} for method in methods]


#: model → {(layers, image shape): {layer: (raw shape, spatial shape)}}, learnt once per model.
_SHAPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_shapes(
    model: nn.Module, names: Sequence[str], images: torch.Tensor
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each layer's output shape for inputs shaped like ``images``, per sample: ``(raw, spatial)``
    where ``raw`` is what the module returns and ``spatial`` its (C, H, W) view
    (:meth:`~aubench.models.FeatureCapture.spatial`: ViT tokens on their grid). One
    gradient-free forward of a single image the first time, then cached for the model's life."""
    cache = _SHAPES.setdefault(model, {})
    key = (tuple(names), tuple(images.shape[1:]))
    if key not in cache:
        with evaluation_mode(model), FeatureCapture(model, names) as capture, torch.no_grad():
            model(images[:1])
            cache[key] = {
                name: (tuple(capture.raw[name].shape[1:]), tuple(capture.spatial(name).shape[1:]))
                for name in names
            }
            capture.clear()
    return cache[key]


def _grid_only_maps(model, images, targets, names, methods, landmarks):
    """Controls alone: their maps need the layers' grids, not the model's pass on the batch."""
    shapes = layer_shapes(model, names, images)
    target = resolve_targets(targets, images.shape[0], None, device=images.device)
    passes = [
        LayerPass(name, None, None, None, target, images, model, landmarks, shapes[name][1][-2:])
        for name in names
    ]
    return _maps_of(passes, methods, images)


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets,
    layers: Layers = None,
    methods: Sequence[str | Explainer] = ("gradcam",),
    *,
    landmarks: torch.Tensor | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """Run several methods: ``{method: {layer: (B, H', W') raw maps}}``.

    ``methods`` are registered names (built with default options) or :class:`Explainer`
    instances (keyed by their ``name``). All :class:`LayerMethod` methods (attention, CAM, the
    gradient family, the controls) share one forward and one backward pass; the adapters run one
    after the other. Input-level methods ignore ``layers`` and return ``{"input": maps}``.
    """
    return explain_batch(model, images, targets, layers, methods, landmarks=landmarks).maps


@dataclass(frozen=True)
class Explained:
    """:func:`explain_batch`'s result: ``maps`` as :func:`explain` returns them, and ``logits``
    (B, K) float32, the model's output in eval mode from the single pass's forward (None when no
    method ran the model in it: controls and adapters only). Its ``argmax(1)`` is the batch's
    predictions, so an evaluation needs no forward of its own."""

    maps: dict[str, dict[str, torch.Tensor]]
    logits: torch.Tensor | None


def explain_batch(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets,
    layers: Layers = None,
    methods: Sequence[str | Explainer] = ("gradcam",),
    *,
    landmarks: torch.Tensor | None = None,
) -> Explained:
    """:func:`explain`, keeping the logits of the single pass (:class:`Explained`)."""
    built: dict[str, Explainer] = {}
    for method in methods:
        explainer = get_explainer(method) if isinstance(method, str) else method
        label = method if isinstance(method, str) else explainer.name
        if label in built:
            raise ValueError(f"method {label!r} is requested twice")
        built[label] = explainer
    shared = {label: e for label, e in built.items() if isinstance(e, LayerMethod)}
    results, logits = {}, None
    if shared:
        maps, logits = _single_pass(model, images, targets, layers, [*shared.values()], landmarks)
        results = dict(zip(shared, maps, strict=True))
    for label, explainer in built.items():
        if label not in results:
            results[label] = explainer(model, images, targets, layers, landmarks=landmarks)
    return Explained({label: results[label] for label in built}, logits)
