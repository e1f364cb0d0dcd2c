"""What the interpretable-by-design heads share: the map tap, min-max, head placement, checks.

A method's own map (WILDCAT's class maps, ACoL's fused maps, TS-CAM's attention-weighted maps,
APViT's attention) leaves the model through a :class:`MapTap`: an identity module the head calls
on the map during its forward pass, so that :class:`~aubench.models.FeatureCapture` (and therefore
the single explanation pass of :mod:`aubench.explain.engine`) reads it like any layer, at no
extra cost.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

Module = TypeVar("Module", bound=nn.Module)


class MapTap(nn.Identity):
    """Identity on a method's map (B, K, h, w) (K = classes, or 1 for a class-agnostic map).

    Its output is what the method's explainer reads (``model.named_modules()`` names it, e.g.
    ``fc.cams``); it holds no parameters and changes nothing.
    """


def minmax_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max over the last two dims: ``(M − min M) / (max M − min M)``; a constant map
    gives zeros (the reference's NaN, later ``nan_to_num``'d, without the NaN). (…, h, w) →
    same shape."""
    low = maps.amin((-2, -1), keepdim=True)
    span = maps.amax((-2, -1), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0)


def init_head(module: nn.Module) -> None:
    """The reference's head initialisation (``base/initialization.py``): Xavier-uniform weights
    and zero biases for every ``nn.Linear``/``nn.Conv2d`` of ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def is_token_model(model: nn.Module) -> bool:
    """Whether ``model``'s features are tokens or channels-last maps rather than (B, C, H, W)."""
    return (
        getattr(model, "num_prefix_tokens", None) is not None
        or str(getattr(model, "output_fmt", "NCHW")) == "NHWC"
    )


def replace_classifier(model: nn.Module, head: nn.Module, num_classes: int) -> nn.Module:
    """Put ``head`` where timm model ``model``'s classifier was, fed by the unpooled features.

    ``reset_classifier(0, global_pool="")`` removes the pooling (CNNs then hand (B, C, H, W) maps
    to the classifier slot, ViTs their (B, N, C) tokens) and the classifier named by the model's
    ``pretrained_cfg["classifier"]`` (``fc``, ``head``, ``head.fc``, ``classifier``) becomes
    ``head``. ``model.num_classes`` is set back to ``num_classes``. In place; returns ``model``.
    """
    path = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not path or not hasattr(model, "reset_classifier"):
        raise ValueError(f"{type(model).__name__} has no timm classifier slot to put a head in")
    model.reset_classifier(0, global_pool="")
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, head)
    model.num_classes = num_classes
    return model


def find_module(model: nn.Module, kind: type[Module], method: str) -> Module:
    """The one module of type ``kind`` in ``model``; ``ValueError`` naming ``method`` otherwise."""
    found = [module for module in model.modules() if isinstance(module, kind)]
    if len(found) != 1:
        raise ValueError(
            f"method {method!r} needs a model with one {kind.__name__}; "
            f"{type(model).__name__} has {len(found)}"
        )
    return found[0]


def tap_names(model: nn.Module) -> list[str]:
    """The module names of ``model``'s :class:`MapTap` modules."""
    return [name for name, module in model.named_modules() if isinstance(module, MapTap)]
