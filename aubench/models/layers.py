"""Naming and resolving a model's layers: module names, timm feature indices, paper stages.

A layer spec is one of
- a module name as in ``model.named_modules()`` (``"layer4"``, ``"blocks.11"``, ``"stages.3"``);
- ``"feature:N"``: entry N of timm's ``model.feature_info`` (negative indices count from the end);
- ``"stage:N"`` (also ``"layerN"`` where the model has no module of that name): the paper's
  stage numbering, N = 1 … 5, defined per family (index 0, the input, is never a layer):

  ==============  ==========  ============  ============  ============  ====================
  family          stage 1     stage 2       stage 3       stage 4       stage 5
  ==============  ==========  ============  ============  ============  ====================
  ResNet          ``act1``    ``layer1``    ``layer2``    ``layer3``    ``layer4``
  ConvNeXt        ``stem``    ``stages.0``  ``stages.1``  ``stages.2``  ``stages.3``
  EfficientNet    ``bn1``     ``blocks.1``  ``blocks.2``  ``blocks.4``  ``bn2`` (head conv)
  ViT / DeiT      block d/5   block 2d/5    block 3d/5    block 4d/5    last block
  ==============  ==========  ============  ============  ============  ====================

  For ResNets these are the paper's indices (§4.1: 1 = stem, 5 = layer4 output, the CAM layer).
  ConvNeXt's stem plays the ResNet stem's role. EfficientNet's stage 5 is the final 1×1 head
  conv + BN + act, the last spatial map (the usual CAM layer), not ``blocks.6``. A ViT of depth
  d has stage k = the output of block ``round(k·d/5) − 1`` (0-based): for d = 12, blocks 1, 4, 6,
  9, 11. Other families: stage 5 is the last ``feature_info`` entry and stages 1–4 the four before
  it when there are ≥ 5 entries; otherwise stage specs are an error (use module names).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from aubench.models.capture import FeatureCapture
from aubench.models.support import check_layer_access

_STAGE = re.compile(r"^(?:stage:?|layer)\s*(\d+)$")
_FEATURE = re.compile(r"^feature:(-?\d+)$")


def stage_names(model: nn.Module) -> list[str]:
    """The module names of the paper's stages 1 … 5 of ``model`` (table in the module doc)."""
    from timm.models.convnext import ConvNeXt
    from timm.models.efficientnet import EfficientNet
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, ResNet):
        return ["act1", "layer1", "layer2", "layer3", "layer4"]
    if isinstance(model, ConvNeXt):
        return ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]
    if isinstance(model, EfficientNet):
        return ["bn1", "blocks.1", "blocks.2", "blocks.4", "bn2"]
    if isinstance(model, VisionTransformer):
        depth = len(model.blocks)
        return [f"blocks.{max(round(k * depth / 5) - 1, 0)}" for k in range(1, 6)]
    infos = getattr(model, "feature_info", None)
    if infos is not None and len(infos) >= 5:
        return [info["module"] for info in list(infos)[-5:]]
    raise ValueError(
        f"the paper's stage numbering is not defined for {type(model).__name__}; "
        "name the layer by module name (see `aubench list layers MODEL`) or by feature:N"
    )


def resolve_layer(model: nn.Module, spec: str | int) -> str:
    """The module name that layer spec ``spec`` denotes in ``model`` (see the module doc).

    Raises ``ValueError`` naming the spec, with near-match suggestions for module names, and
    :class:`~aubench.models.support.LayerAccessError` for a TorchScript model (no hooks).
    """
    check_layer_access(model)
    spec = str(spec).strip()
    modules = dict(model.named_modules())
    if spec in modules and spec:
        return spec
    feature = _FEATURE.match(spec)
    if feature:
        infos = list(getattr(model, "feature_info", None) or [])
        index = int(feature.group(1))
        if not -len(infos) <= index < len(infos):
            raise ValueError(
                f"layer {spec!r}: {type(model).__name__} has {len(infos)} timm feature levels"
            )
        return infos[index]["module"]
    stage = _STAGE.match(spec)
    if stage:
        number = int(stage.group(1))
        if number == 0:
            raise ValueError(f"layer {spec!r} is the input image, which cannot be a layer")
        if not 1 <= number <= 5:
            close = difflib.get_close_matches(spec, list(modules), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"layer {spec!r}: stages are numbered 1 … 5{hint}")
        return stage_names(model)[number - 1]
    close = difflib.get_close_matches(spec, list(modules), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown layer {spec!r} in {type(model).__name__}{hint} (module names, feature:N or "
        "stage:1…5; `aubench list layers MODEL` lists them)"
    )


def resolve_layers(model: nn.Module, specs: str | Sequence[str | int]) -> list[str]:
    """Resolve several specs (a sequence, or one comma-separated string) to module names."""
    if isinstance(specs, str):
        specs = [part for part in specs.split(",") if part.strip()]
    names = [resolve_layer(model, spec) for spec in specs]
    if not names:
        raise ValueError("no layer given")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class LayerInfo:
    """One module's place in a model: its name, class, output shape and paper stage (or None)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    spatial: tuple[int, int] | None
    stage: int | None


def list_layers(model: nn.Module, size: int = 224, depth: int | None = None) -> list[LayerInfo]:
    """Every named module of ``model`` with its output shape for one ``size``×``size`` input.

    ``spatial`` is the (H, W) grid the layer's output maps to (ViT tokens included), or None
    when the output is not spatial. ``depth`` keeps names with at most that many dots + 1 parts.
    Runs one forward pass on zeros, in eval mode, without gradients; the model's mode is restored.
    """
    names = [name for name, _ in model.named_modules() if name]
    if depth is not None:
        names = [name for name in names if name.count(".") < depth]
    try:
        stages = {name: k + 1 for k, name in enumerate(stage_names(model))}
    except ValueError:
        stages = {}
    modules = dict(model.named_modules())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FeatureCapture(model, names, strict=False) as capture:
            model(torch.zeros(1, 3, size, size, device=_device(model)))
            infos = []
            for name in names:
                raw = capture.raw.get(name)
                if raw is None:
                    continue
                grid = capture.grid(name)
                infos.append(
                    LayerInfo(
                        name, type(modules[name]).__name__, tuple(raw.shape), grid, stages.get(name)
                    )
                )
    finally:
        model.train(was_training)
    return infos


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
